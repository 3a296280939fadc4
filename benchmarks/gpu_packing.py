"""Fractional GPUs: how many trials should share one GPU? The same short search (the demo space
on fmnist-taco6 at 32 px, every trial trained a fixed number of epochs) with 1, 2, 4 and 8
trials per GPU (`resources.gpus_per_trial` = 1/k, k trials at once): trials per hour and the
GPU's utilization, sampled from `nvidia-smi` while the search runs.

Without a GPU it runs on one logical GPU (CPU training; utilization not measured), which
checks the script, not the hardware.

    python benchmarks/gpu_packing.py [--quick] [--packing 1 2 4 8] [--data DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from common import REPO, UtilizationSampler, emit
from tune_jobs.config import load_config
from tune_jobs.searchjob import run_search


def run_packing(k: int, trials: int, epochs: int, data: Path, root: Path) -> dict:
    study = f"packing-{k}-{time.time_ns()}"
    cpus = max(1, min(4, (os.cpu_count() or 2) // k))
    cfg = load_config("demo.yaml", [
        f"data.path={data}", f"output={root / study}", f"search.study={study}",
        f"search.storage=sqlite:///{root / study / 'study.db'}", "search.algorithm=random",
        f"search.num_samples={trials}", f"search.max_concurrent={k}",
        f"scheduler.max_epochs={epochs}", "scheduler.grace_period=1",
        "scheduler.early_stopping=false",
        "space.train.image_size=[32]", f"resources.gpus_per_trial={1 / k}",
        f"resources.cpus_per_trial={cpus}"])
    with UtilizationSampler() as util:
        start = time.perf_counter()
        grid, _ = run_search(cfg)
        wall = time.perf_counter() - start
    return {"trials_per_gpu": k, "trials": len(grid), "epochs": epochs, "cpus_per_trial": cpus,
            "wall_s": wall, "trials_per_hour": len(grid) / wall * 3600,
            "gpu_util_mean": statistics.mean(util.samples) if util.samples else None,
            "gpu_util_samples": len(util.samples)}


def to_markdown(rows: list[dict], gpu: str) -> str:
    base = rows[0]["trials_per_hour"]
    lines = [f"GPU: {gpu}", "", "| trials per GPU | trials | wall s | trials / hour | vs 1 per GPU "
             "| GPU util % |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        util = "-" if r["gpu_util_mean"] is None else f"{r['gpu_util_mean']:.0f}"
        lines.append(f"| {r['trials_per_gpu']} | {r['trials']} | {r['wall_s']:.0f} | "
                     f"{r['trials_per_hour']:.0f} | {r['trials_per_hour'] / base:.2f}x | {util} |")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 epochs per trial, 1 round")
    p.add_argument("--packing", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fmnist-taco6")
    p.add_argument("--json", type=Path)
    return p


def main(args: argparse.Namespace) -> dict:
    os.environ.setdefault("LITESEARCH_CACHE", str(Path.home() / ".cache" / "litesearch"))
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "none (one logical GPU, CPU training)"
    # one GPU (real or logical); the search attaches to this Ray instead of starting its own
    ray.init(address="local", num_gpus=1, include_dashboard=False, log_to_driver=False)
    epochs, rounds = (2, 1) if args.quick else (4, 3)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_packing(k, rounds * k, epochs, args.data.resolve(), Path(tmp))
                for k in args.packing]
    ray.shutdown()
    return emit("gpu_packing", to_markdown(rows, gpu), rows, args.json, gpu=gpu)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
