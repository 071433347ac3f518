"""Workloads: a shared detection library (`cases.detection`) and one small package per case.

This package's own import is torch-free so that the registry can locate case folders cheaply.
"""
