#!/usr/bin/env bash
# The one script to run on a lent GPU machine (see DEVELOPERS.md): builds psl with its
# CUDA kernels over the machine's own torch, checks the kernels against the references
# and prints the benchmark table. The machine has no package registry and no mlflow:
# nothing here imports mlflow.
#   run: bash scripts/gpu_check.sh        (not yet timed on a GPU; the build is most of it)
set -euo pipefail
cd "$(dirname "$0")/.."

export FORCE_CUDA=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

start=$(date +%s)
pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | tail -n 20
echo "build: $(( $(date +%s) - start )) s"
python -c "import psl.ops as o; assert o.cuda_kernels_built(), 'psl._C was built without CUDA'"

python -m pytest -q -p no:cacheprovider tests/test_ops_cuda.py tests/test_log_mel.py tests/test_chunk_pool.py \
  tests/test_op_registration.py

for batch in 256 1024; do
  psl bench ops --device cuda --batch "$batch" --repeats 20
done
# End to end at AudioSet's shape (527 classes, width 1.0, bf16, batch 256, 10-s clips):
# teacher and student training and `psl label` against the model alone.
psl bench train --device cuda
