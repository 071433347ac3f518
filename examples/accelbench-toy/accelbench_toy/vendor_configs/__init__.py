"""Vendor config folders shipped by this package (entry point group accelbench.vendor_configs)."""
