"""One training epoch of data over fmnist-taco6/train: the seed projects' path vs the cache.

(a) seed path: torchvision ImageFolder + PIL decode/resize + flip + ToTensor + Normalize,
    DataLoader with 2 workers (what the seed projects did every epoch);
(b) litesearch, decode once into the uint8 cache (build time reported separately), then
    BatchLoader + BatchAugment with the same transforms as (a) (flip, normalise): the like-for-
    like comparison the target is stated for. Batches stay uint8 until the device, where the
    training step's first op (`to_input`) normalises them; "(b) + to_input" also counts that
    op, so that both paths end with the float tensor the network reads;
(c) the same cache with the search's full batched augmentation (random resized crop, flip,
    colour jitter, RandAugment ops), far more work per image than (a) does.

Prints images/s of both and the ratio per image size, the cache build time, and the share of
(c)'s data time in a training step of the baseline model (batch 128, CPU; the step counts
`to_input`), and writes JSON.

    python benchmarks/data_path.py [--data DIR] [--sizes 32 64 96 128] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import models
from common import emit
from data_utils.augment import AugmentConfig, BatchAugment, to_input
from data_utils.cache import build_cache
from data_utils.folder import scan_folder
from data_utils.loader import BatchLoader

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/fmnist-taco6/train"
BATCH = 128
# (b): what the seed path's transforms do, on the cache: horizontal flip, normalisation.
SAME_AS_SEED = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.5, jitter=0.0,
                             ops=0, magnitude=0.0)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an ImageFolder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128])
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per path")
    parser.add_argument("--quick", action="store_true", help="one timed epoch per path")
    parser.add_argument("--device", default="cpu", help="where the cache path's batches and "
                        "the training step run (cpu, cuda)")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser


def seed_epoch(root: Path, size: int) -> float:
    tf = transforms.Compose([
        transforms.Resize((size, size)), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    loader = DataLoader(datasets.ImageFolder(str(root), tf), batch_size=BATCH, shuffle=True,
                        num_workers=2)
    start = time.perf_counter()
    n = sum(len(y) for _, y in loader)
    return n / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # kernels run asynchronously: time them to the end
        torch.cuda.synchronize(device)


def cache_epoch(loader: BatchLoader, device: torch.device, normalise: bool = False) -> float:
    """Images per second of the batches handed to the device (uint8, or [0, 1] float after a
    resampling augmentation); `normalise`: also `to_input`, the step's first op there."""
    start = time.perf_counter()
    n = 0
    for x, y in loader:
        if normalise:
            to_input(x)
        n += len(y)
    _sync(device)
    return n / (time.perf_counter() - start)


def train_step_seconds(size: int, repeats: int, device: torch.device) -> float:
    """Median seconds of one training step of the baseline preset, batch 128: `to_input` of
    an augmented [0, 1] batch (the step's first op, on the device), forward, backward, SGD."""
    model = models.build("baseline", num_classes=6, input_size=size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    pixels = torch.rand(BATCH, 3, size, size, device=device)
    y = torch.randint(0, 6, (BATCH,), device=device)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(to_input(pixels)), y).backward()
        opt.step()
        _sync(device)
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_size(root: Path, size: int, repeats: int, device: torch.device) -> dict:
    index = scan_folder(root)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        split = build_cache(index, size, cache_dir=tmp, workers=2, progress=False)
        build_s = time.perf_counter() - start
        loaders = {
            "same": BatchLoader(split.images, split.labels, BATCH, shuffle=True,
                                augment=BatchAugment(SAME_AS_SEED), device=device),
            "full": BatchLoader(split.images, split.labels, BATCH, shuffle=True,
                                augment=BatchAugment(AugmentConfig()), device=device),
        }
        rates: dict[str, list[float]] = {"seed": [], "same": [], "same_norm": [], "full": []}
        for r in range(repeats):  # interleave the paths so machine noise hits all alike
            rates["seed"].append(seed_epoch(root, size))
            for name, loader in loaders.items():
                loader.set_epoch(r)
                rates[name].append(cache_epoch(loader, device))
            rates["same_norm"].append(cache_epoch(loaders["same"], device, normalise=True))
    seed, same, same_norm, full = (statistics.median(rates[k])
                                   for k in ("seed", "same", "same_norm", "full"))
    step = train_step_seconds(size, 5, device)
    data_per_batch = BATCH / full
    return {
        "size": size, "images": len(index), "seed_img_per_s": seed,
        "cache_same_img_per_s": same, "cache_full_img_per_s": full,
        "cache_same_normalised_img_per_s": same_norm, "ratio_same_normalised": same_norm / seed,
        "ratio_same": same / seed, "ratio_full": full / seed, "cache_build_s": build_s,
        "cache_mb": split.images.nbytes / 1e6, "train_step_s": step,
        "data_share_of_step": data_per_batch / (data_per_batch + step),
    }


def to_markdown(rows: list[dict]) -> str:
    lines = ["| size | (a) seed img/s | (b) cache, same transforms | (b) + to_input "
             "| (c) cache, full augment | cache build s | cache MB | (c) data share of a step |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['size']} | {r['seed_img_per_s']:,.0f} | "
              f"{r['cache_same_img_per_s']:,.0f} ({r['ratio_same']:.1f}x) | "
              f"{r['cache_same_normalised_img_per_s']:,.0f} "
              f"({r['ratio_same_normalised']:.1f}x) | "
              f"{r['cache_full_img_per_s']:,.0f} ({r['ratio_full']:.1f}x) | "
              f"{r['cache_build_s']:.1f} | {r['cache_mb']:.0f} | "
              f"{100 * r['data_share_of_step']:.1f} % |" for r in rows]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(2)
    repeats = 1 if args.quick else args.repeats
    device = torch.device(args.device)
    rows = [run_size(args.data, size, repeats, device) for size in args.sizes]
    return emit("data_path", to_markdown(rows), rows, args.json, data=str(args.data),
                batch=BATCH, repeats=repeats, torch_threads=torch.get_num_threads(),
                device=str(device))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
