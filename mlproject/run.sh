#!/usr/bin/env bash
# The command of every MLproject entry point: `run.sh STAGE [psl options]`.
# It builds psl's native extension in place when the Python that MLflow chose cannot load
# it yet, then runs `python -m psl STAGE ...` from the project root. MLflow passes every
# parameter, so options with an empty value are dropped (an empty `data` means the
# synthetic benchmark), `--force true|false` becomes a flag, and `--set "a.b=1 c=[x, y]"`
# becomes repeated --set options: the overrides are split at spaces (tabs, newlines)
# outside brackets, braces and quotes, and each goes on as written, `=` in its value
# included (psl splits an override at its first `=`). Training stages keep their
# checkpoints in runs/MLFLOW_RUN_ID, so that repeated runs of an entry point do not meet.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import psl.ops as o, sys; sys.exit(not o.native_available())" 2>/dev/null; then
  echo "Building psl's native extension for $(python --version) (about two minutes)..." >&2
  python setup.py --quiet build_ext --inplace >&2
fi

# Appends `--set ITEM` to args for each override in $1, split at whitespace outside [...],
# {...}, '...' and "..." (so YAML values such as [psl-2s, psl-5s] or 'a b' keep their
# spaces); nothing is glob-expanded.
add_overrides() {
  local text=$1 item="" quote="" depth=0 c i
  for ((i = 0; i < ${#text}; i++)); do
    c=${text:i:1}
    if [ -n "$quote" ]; then
      if [ "$c" = "$quote" ]; then
        quote=""
      elif [ "$c" = '\' ] && [ "$quote" = '"' ] && ((i + 1 < ${#text})); then
        item+=$c # an escape inside "...": the next character cannot close it
        i=$((i + 1))
        c=${text:i:1}
      fi
    else
      case "$c" in
        "'" | '"') quote=$c ;;
        '[' | '{') depth=$((depth + 1)) ;;
        ']' | '}') if ((depth > 0)); then depth=$((depth - 1)); fi ;;
        ' ' | $'\t' | $'\n')
          if ((depth == 0)); then
            if [ -n "$item" ]; then args+=(--set "$item"); fi
            item=""
            continue
          fi
          ;;
      esac
    fi
    item+=$c
  done
  if [ -n "$item" ]; then args+=(--set "$item"); fi
}

args=("$1")
case "$1" in
  teacher | baseline | student | transfer) args+=(--out "runs/${MLFLOW_RUN_ID:-$1}") ;;
esac
shift
while (($#)); do
  case "$1" in
    --set) add_overrides "$2" ;;
    --force) if [ "$2" = true ]; then args+=(--force); fi ;;
    *) if [ -n "$2" ]; then args+=("$1" "$2"); fi ;;
  esac
  shift 2
done
exec python -m psl "${args[@]}"
