"""accelbench: accelerator training benchmarks recorded as MLflow runs.

Importing this package is cheap and changes nothing: it imports no torch (the CLI's `list` relies on that) and sets
no environment variable (the MLflow client's defaults are applied by the entry points that talk to MLflow:
suite.tracking.client.configure).
"""

import time

__version__ = "0.1.0"

# Wall time when this process first imported the suite: the start of every e2e_time. (The OS's process start time
# would also count whatever ran in the same PID before an `exec`, such as a setup script.)
STARTED_AT = time.time()
