"""The numbers: one folder per accelerator with vendor.yaml and <case>/<NxM>.yaml (data only, no code)."""
