#!/usr/bin/env bash
# The GPU checks in one run, for a session lent a GPU machine (the `device` tool: 15 minutes
# in all, so one call). The lent machines have PyTorch but neither Ray nor Optuna (Ray's wheel
# is larger than a call may carry), so nothing is installed there: these scripts need only
# torch, torchvision, numpy, Pillow and PyYAML. The Ray path (gpu_packing.py) runs where Ray is.
#
# Before the call, here:   every third image of each class of fmnist-taco6's train/ (15 MB:
#                          the whole 44 MB no longer fits the call's 64 MiB beside the repo)
#   echo /.gpu-data/ >> .git/info/exclude; for c in ../shared/data/fmnist-taco6/train/*/; do
#     mkdir -p .gpu-data/train/$(basename $c); ls $c | awk 'NR%3==1' |
#     xargs -I{} cp $c/{} .gpu-data/train/$(basename $c)/; done      (carry: [".gpu-data"])
# The call:                bash benchmarks/gpu.sh      (writes JSON and logs under $OUT)
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
DATA=${DATA:-.gpu-data/train}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/benchmarks"
export LITESEARCH_CACHE=/tmp/litesearch-cache

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  | tee -a "$OUT/gpu.txt"

# 1. data path: uint8 batches to the GPU, augmentation there, vs the seed projects' path
timeout 200 python benchmarks/data_path.py --device cuda --data "$DATA" --sizes 64 128 224 \
  --repeats 2 --json "$OUT/data_path_cuda.json" 2>&1 | tee "$OUT/data_path_cuda.log" | tail -n 8
# 2. sharing one GPU: 1, 2, 4, 8 trainings at once (the real trial path, bf16 autocast)
timeout 330 python benchmarks/gpu_share.py --data "$DATA" --size 64 --shares 1 2 4 8 \
  --seconds 15 --json "$OUT/gpu_share.json" 2>&1 | tee "$OUT/gpu_share.log" | tail -n 10
