#!/usr/bin/env bash
# Set up .venv, then run the linter and the test suite (CPU-only, offline; slow learning checks excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
