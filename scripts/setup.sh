#!/usr/bin/env bash
# Creates .venv (if missing), installs the pinned dependencies and builds psl with its
# native extension. Safe to re-run: it rebuilds only when csrc/ or setup.py changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# --no-compile: pip would byte-compile every file of torch, mlflow and their libraries (most
# never imported); Python compiles what it imports on first use instead.
.venv/bin/python -m pip install --quiet --no-compile -r requirements-dev.txt

built=$(ls psl/_C*.so 2>/dev/null | head -n 1 || true)
if [ -z "$built" ] || [ -n "$(find csrc setup.py -newer "$built" -print -quit)" ]; then
  echo "Building psl and its native extension (about a minute on 2 cores)..."
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
fi
.venv/bin/python -c "import psl.ops as o; assert o.native_available(), 'psl._C did not build'"
