"""The built-in demo data: a small TACO-shaped crop set that ships with the repo.

`demo_root()` is the default dataset of `tune_jobs/search.py`. It was drawn with
`python -m data_utils.demo --source ../shared/data/fmnist-taco6` (see its README).
"""

from __future__ import annotations

import argparse
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np

from data_utils.folder import scan_folder


def demo_root() -> Path:
    """The demo crops, package data of `data_utils` (a real folder: wheels install unzipped)."""
    return Path(str(files("data_utils") / "demo_data"))


def draw_subset(source: Path, dest: Path, n: int, seed: int) -> dict[str, int]:
    """Copy `n` images of `source/<Class>/` to `dest/<Class>/`, keeping class proportions."""
    index = scan_folder(source)
    labels = np.asarray(index.labels)
    counts = np.bincount(labels, minlength=len(index.classes))
    quota = np.floor(counts / counts.sum() * n).astype(int)
    quota[np.argsort(-(counts / counts.sum() * n - quota))[: n - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    drawn = {}
    for c, name in enumerate(index.classes):
        rows = rng.choice(np.flatnonzero(labels == c), quota[c], replace=False)
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i in sorted(rows):
            shutil.copy2(index.files[i], dest / name / index.files[i].name)
        drawn[name] = int(quota[c])
    return drawn


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Draw the built-in demo data subset.")
    parser.add_argument("--source", type=Path, required=True, help="fmnist-taco6 folder")
    parser.add_argument("--dest", type=Path, default=demo_root())
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(args: argparse.Namespace) -> None:
    for split, n in (("train", args.train), ("test", args.test)):
        shutil.rmtree(args.dest / split, ignore_errors=True)
        print(split, draw_subset(args.source / split, args.dest / split, n, args.seed))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
