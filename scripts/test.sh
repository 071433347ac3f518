#!/usr/bin/env bash
# Set up .venv (and SLURM's Debian packages for the cluster tests), then run the linter and the test suite (CPU-only,
# offline; slow learning checks excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_slurm.sh || true  # the SLURM tests' cluster (Debian packages); they skip, saying why, without
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
