"""accelbench: accelerator training benchmarks recorded as MLflow runs.

Importing this package is cheap: it does not import torch (the CLI's `list` and `show-config` rely on that).
"""

__version__ = "0.1.0"
