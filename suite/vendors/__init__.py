"""Vendor adapters: the one place where device APIs differ (one class per vendor, no `if vendor ==` elsewhere)."""
