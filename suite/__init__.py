"""accelbench: accelerator training benchmarks recorded as MLflow runs.

Importing this package is cheap: it does not import torch (the CLI's `list` and `show-config` rely on that).
"""

import os
import time

__version__ = "0.1.0"

# Wall time when this process first imported the suite: the start of every e2e_time. (The OS's process start time
# would also count whatever ran in the same PID before an `exec`, such as a setup script.)
STARTED_AT = time.time()

# No network at run time: MLflow's client otherwise phones home (config.mlflow-telemetry.io) on the first tracking
# call, seen on the GPU machine. A user who wants it can set MLFLOW_DISABLE_TELEMETRY=false explicitly.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# A tracking server that is down should cost seconds, not minutes: MLflow's client retries 7 times with doubling
# waits (about 4 minutes) before it gives up. The run then goes on offline (suite.spool); a user's own settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
# And a server that accepts connections but never answers would hold each request for MLflow's 120 s, three tries
# at the start and three at the end: 12 minutes. A healthy server answers a batch in well under a second.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
