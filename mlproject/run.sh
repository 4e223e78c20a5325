#!/usr/bin/env bash
# The command of every MLproject entry point: `run.sh STAGE [psl options]`.
# It builds psl's native extension in place when the Python that MLflow chose cannot load
# it yet, then runs `python -m psl STAGE ...` from the project root. MLflow passes every
# parameter, so options with an empty value are dropped (an empty `data` means the
# synthetic benchmark), `--force true|false` becomes a flag, and `--set "a.b=1 c=2"`
# becomes repeated --set options. Training stages keep their checkpoints in
# runs/MLFLOW_RUN_ID, so that repeated runs of an entry point do not meet.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import psl.ops as o, sys; sys.exit(not o.native_available())" 2>/dev/null; then
  echo "Building psl's native extension for $(python --version) (about two minutes)..." >&2
  python setup.py --quiet build_ext --inplace >&2
fi

args=("$1")
case "$1" in
  teacher | baseline | student | transfer) args+=(--out "runs/${MLFLOW_RUN_ID:-$1}") ;;
esac
shift
while (($#)); do
  case "$1" in
    --set) for item in $2; do args+=(--set "$item"); done ;;
    --force) if [ "$2" = true ]; then args+=(--force); fi ;;
    *) if [ -n "$2" ]; then args+=("$1" "$2"); fi ;;
  esac
  shift 2
done
exec python -m psl "${args[@]}"
