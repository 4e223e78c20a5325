#!/usr/bin/env bash
# The README's test command: set up, lint, then run the default (CPU, fast) test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE  # bytecode is cached: see scripts/setup.sh
bash scripts/setup.sh
.venv/bin/ruff check psl tests scripts
.venv/bin/ruff format --check psl tests scripts
exec .venv/bin/python -m pytest "$@"
