#!/usr/bin/env bash
# Every GPU benchmark in one run, for a session lent a GPU machine (the `device` tool: 15 minutes
# in all, so one call). Not yet run: no session so far was lent a GPU.
#
# Before the call, here:   mkdir -p .gpu-data && cp -r ../shared/data/fmnist-taco6 .gpu-data/ &&
#                          echo /.gpu-data/ >> .git/info/exclude     (55 MB; carry: [".gpu-data"])
# The call:                bash benchmarks/gpu.sh      (writes JSON and logs under $OUT)
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
DATA=${DATA:-.gpu-data/fmnist-taco6}
export PYTHONUNBUFFERED=1 LITESEARCH_CACHE=/tmp/litesearch-cache

pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" | tail -n 3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# 1. data path: the cache's batches and augmentation on the GPU vs the seed path
timeout 240 python benchmarks/data_path.py --device cuda --data "$DATA/train" --quick \
  --json "$OUT/data_path_cuda.json" 2>&1 | tee "$OUT/data_path_cuda.log" | tail -n 8
# 2. fractional GPUs: 1, 2, 4, 8 trials per GPU, trials/hour and nvidia-smi utilization
timeout 300 python benchmarks/gpu_packing.py --data "$DATA" --json "$OUT/gpu_packing.json" \
  2>&1 | tee "$OUT/gpu_packing.log" | tail -n 10
# 3. the final model's latency on CUDA (the final job measures it when a GPU is present)
timeout 200 python tune_jobs/search.py --config configs/ci.yaml --data "$DATA" \
  --output /tmp/ci-gpu --set resources.gpus_per_trial=0.5 --final 2>&1 | tail -n 3
python - "$OUT" <<'PY'
import json, sys
m = json.load(open("/tmp/ci-gpu/final/metrics.json"))["model"]
json.dump({"speed": m["speed"], "costs": m["costs"]}, open(f"{sys.argv[1]}/final_cuda.json", "w"),
          indent=2)
print(json.dumps(m["speed"], indent=1))
PY
