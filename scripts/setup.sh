#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the suite with its test tools.
# constraints.txt pins torch/torchvision to the releases this project tests with (they lie on its machines' disk, so
# a fresh venv resolves fast); the package itself only states ranges (see the README's vendor sections).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[test]' > .venv/pip-install.log 2>&1; then
  cat .venv/pip-install.log >&2
  echo "setup: pip install failed (log above)" >&2
  exit 1
fi
# pip byte-compiles what it installs, but an editable install leaves the project's own modules as sources; where
# PYTHONDONTWRITEBYTECODE is set, every process would compile them again (about 0.2 CPU-s each). Stale files are
# harmless: Python checks each one against its source.
.venv/bin/python -m compileall -q suite cases tests benchmarks > /dev/null
.venv/bin/python -c "import suite, torch, torchvision, mlflow, pycocotools" # fail here, not later, if the install broke
