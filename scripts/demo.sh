#!/usr/bin/env bash
# The README's main job: set up, then run the whole method on the synthetic `demo`
# benchmark (generated on first use): `psl pipeline --profile demo`. Extra arguments go to
# `psl pipeline` (e.g. --seed 1, --force). A second run reuses the finished stages.
set -euo pipefail
cd "$(dirname "$0")/.."
unset PYTHONDONTWRITEBYTECODE  # bytecode is cached: see scripts/setup.sh
bash scripts/setup.sh
exec .venv/bin/psl pipeline --profile demo "$@"
