"""How many small trainings should share one GPU? k processes train at once on one device,
each the real training path of a trial (decoded uint8 cache -> BatchLoader on the device ->
batched augmentation -> `train_epoch` with mixed precision), for a fixed time; aggregate and
per-process images/s and the GPU's utilization (`nvidia-smi`) per k.

What `gpu_packing.py` measures through Ray Tune with fractional GPUs, without Ray: the GPU
machines lent here have PyTorch but no Ray (its wheel is over the 64 MiB a call may carry), so
this is the sharing measurement they can run. On a CPU-only machine it runs on the CPU
(utilization not measured), which checks the script, not the hardware.

    python benchmarks/gpu_share.py [--data DIR] [--size 64] [--shares 1 2 4 8] [--seconds 20]
        [--model baseline] [--device cuda] [--json FILE]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import REPO, UtilizationSampler, emit

BATCH = 128


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path,
                   default=REPO.parent / "shared" / "data" / "fmnist-taco6" / "train")
    p.add_argument("--size", type=int, default=64, help="image size (px)")
    p.add_argument("--shares", type=int, nargs="+", default=[1, 2, 4, 8],
                   help="processes training at once on the device")
    p.add_argument("--seconds", type=float, default=20.0, help="timed training per process")
    p.add_argument("--model", default="baseline", help="a preset or tv/<name>")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path)
    return p


def _train(rank: int, cache: str, size: int, model_name: str, device: str, seconds: float,
           start: mp.Event, out: mp.Queue) -> None:
    """One process: train `model_name` on the cache until `seconds` have passed."""
    import numpy as np

    import models
    from data_utils.augment import AugmentConfig, BatchAugment
    from data_utils.loader import BatchLoader
    from tune_jobs.trial.engine import make_optimizer, make_schedule, train_epoch

    torch.set_num_threads(1)
    dev = torch.device(device)
    data = np.load(cache)
    images, labels = data["images"], data["labels"]
    model = models.build(model_name, num_classes=int(labels.max()) + 1, input_size=size).to(dev)
    loader = BatchLoader(images, labels, BATCH, shuffle=True, device=dev, seed=rank,
                         augment=BatchAugment(AugmentConfig()), drop_last=True)
    opt = make_optimizer("sgd", model, 0.05, 5e-5)
    sched = make_schedule("cosine", opt, len(loader), 1000)
    criterion = torch.nn.CrossEntropyLoss()
    train_epoch(model, loader, opt, sched, criterion, dev)  # warm-up: kernels, allocator
    start.wait()
    t0, n, epochs, last_loss = time.perf_counter(), 0, 0, float("nan")
    while time.perf_counter() - t0 < seconds:
        loader.set_epoch(epochs + 1)
        stats = train_epoch(model, loader, opt, sched, criterion, dev)
        n, epochs, last_loss = n + stats.images, epochs + 1, stats.loss
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out.put({"rank": rank, "images": n, "seconds": time.perf_counter() - t0, "epochs": epochs,
             "loss": last_loss,
             "peak_mb": (torch.cuda.max_memory_allocated(dev) / 2**20
                         if dev.type == "cuda" else None)})


def run_share(k: int, cache: Path, args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_train, args=(r, str(cache), args.size, args.model,
                                              args.device, args.seconds, start, out))
             for r in range(k)]
    for p in procs:
        p.start()
    time.sleep(2 + 2 * k)  # let every process load and warm up before the clock starts
    with UtilizationSampler() as util:
        start.set()
        results = [out.get(timeout=args.seconds * 4 + 300) for _ in procs]
    for p in procs:
        p.join()
    rates = [r["images"] / r["seconds"] for r in results]
    return {"share": k, "img_per_s": sum(rates), "per_process_img_per_s": statistics.mean(rates),
            "epochs": sum(r["epochs"] for r in results),
            "gpu_util_mean": statistics.mean(util.samples) if util.samples else None,
            "peak_mb_per_process": max((r["peak_mb"] or 0) for r in results) or None,
            "finite_loss": all(r["loss"] == r["loss"] for r in results)}


def to_markdown(rows: list[dict]) -> str:
    base = rows[0]["img_per_s"]
    lines = ["| processes on the device | images/s, all | per process | vs one | GPU util % "
             "| peak MB per process |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        util = "-" if r["gpu_util_mean"] is None else f"{r['gpu_util_mean']:.0f}"
        peak = "-" if r["peak_mb_per_process"] is None else f"{r['peak_mb_per_process']:.0f}"
        lines.append(f"| {r['share']} | {r['img_per_s']:,.0f} | "
                     f"{r['per_process_img_per_s']:,.0f} | {r['img_per_s'] / base:.2f}x | "
                     f"{util} | {peak} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    import numpy as np

    from data_utils.cache import build_cache
    from data_utils.folder import scan_folder

    with tempfile.TemporaryDirectory() as tmp:
        split = build_cache(scan_folder(args.data), args.size, cache_dir=tmp, workers=4,
                            progress=False)
        cache = Path(tmp) / "train.npz"
        np.savez(cache, images=np.asarray(split.images), labels=np.asarray(split.labels))
        rows = [run_share(k, cache, args) for k in args.shares]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    return emit("gpu_share", to_markdown(rows), rows, args.json, device=name,
                model=args.model, size=args.size, batch=BATCH, seconds=args.seconds,
                torch=torch.__version__)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
