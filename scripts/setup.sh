#!/usr/bin/env bash
# Creates .venv (if missing), installs the pinned dependencies and builds psl with its
# native extension. Safe to re-run: it rebuilds only when csrc/ or setup.py changed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Python writes the bytecode of what it imports only where PYTHONDONTWRITEBYTECODE is unset; with
# it set (as on some CI images) and pip's --no-compile below, every process would compile torch
# and mlflow again: 7.3 s to import psl's CLI instead of 3.5 s, 12:09 for the test suite
# instead of about 7 minutes (2-core AMD EPYC). The scripts that run psl unset it too.
unset PYTHONDONTWRITEBYTECODE

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
