#!/usr/bin/env bash
# The main job: set up .venv, then run the smoke benchmark of all three cases on synthetic data (CPU), recorded in the
# local MLflow store (./mlflow.db unless MLFLOW_TRACKING_URI says otherwise), and print the results table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/accelbench smoke "$@"
