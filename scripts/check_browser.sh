#!/usr/bin/env bash
# Headless-browser checks of the comparison report and the MLflow UI (tests/test_browser.py), which the default test
# run skips where chromium is missing. Installs Debian's chromium if needed (root), sets up .venv, runs the tests and
# leaves the screenshots in runs/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium > /dev/null; then
  apt-get install -y -q chromium > /dev/null || { apt-get update -q > /dev/null && apt-get install -y -q chromium > /dev/null; }
fi
bash scripts/setup.sh
mkdir -p runs/screenshots
ACCELBENCH_SCREENSHOTS="$PWD/runs/screenshots" .venv/bin/python -m pytest tests/test_browser.py -v "$@"
ls -l runs/screenshots
