"""From a folder on disk to the arrays a trial trains on: scan, decode once, check, split.

`prepare_data` is what the search, the final job and the benchmarks call; everything it
skipped is in one `SkipLog` and its summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_utils.cache import DecodedSplit, build_cache, cache_bytes
from data_utils.folder import scan_dataset
from data_utils.skips import DataError, SkipLog
from data_utils.split import class_counts, stratified_split

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    classes: list[str]
    train: DecodedSplit
    val: DecodedSplit
    test: DecodedSplit | None
    skipped: SkipLog
    test_source: str = "folder"  # "folder" (test/), "holdout" (split off train), or "none"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> dict[str, list[int]]:
        splits = {"train": self.train, "val": self.val, "test": self.test}
        return {name: class_counts(s.labels, self.num_classes).tolist()
                for name, s in splits.items() if s is not None}

    def summary(self) -> str:
        counts = self.counts()
        header = f"{'class':<14}" + "".join(f"{name:>8}" for name in counts)
        rows = [header] + [
            f"{c:<14}" + "".join(f"{counts[s][i]:>8}" for s in counts)
            for i, c in enumerate(self.classes)
        ]
        size = self.train.size
        total = sum(len(s) for s in (self.train, self.val, self.test) if s is not None)
        rows.append(f"cache: {total} images at {size}x{size}: "
                    f"{cache_bytes(total, size) / 1e6:.1f} MB")
        rows.append(self.skipped.summary())
        return "\n".join(rows)


def check_enough_images(split: DecodedSplit, found: list[int], need: int, root: Path,
                        splits: str) -> None:
    """Every class must keep `need` usable images after the skips (one per split it feeds),
    or the search would start and every trial fail on an empty split: a `DataError` naming
    the classes, their counts and what to do, before any trial."""
    usable = class_counts(split.labels, len(split.classes))
    short = [(c, int(usable[i]), found[i]) for i, c in enumerate(split.classes)
             if usable[i] < need]
    if short:
        rows = "\n".join(f"  {c}: {u} usable of {f} image file(s)" for c, u, f in short)
        raise DataError(
            f"{root}: too few usable images; each class needs at least {need} ({splits}):\n"
            f"{rows}\nadd readable images to these class folders or remove the folders "
            "(the skipped files and why are logged above)")


def prepare_data(
    path: str | Path,
    size: int,
    *,
    mode: str = "resize",
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> PreparedData:
    """Decode `path` (`train/` + optional `test/`, or class folders) at `size`, drop training
    images that also appear in the test split, and split train/validation stratified.

    Without a `test/` folder, `test_fraction` of the training images (stratified, from
    `seed`) is held out as the test split, the same rows on every run with the same files.
    """
    folders = scan_dataset(path)
    train = build_cache(folders.train, size, mode, cache_dir, workers, progress)
    skipped = SkipLog()
    skipped.extend(train.skipped)
    test = None
    if folders.test is not None:
        test = build_cache(folders.test, size, mode, cache_dir, workers, progress)
        skipped.extend(test.skipped)
        # The same picture in train and test inflates the test score: keep the test copy.
        test_hashes = set(test.hashes)
        leaked = np.array([h in test_hashes for h in train.hashes])
        for i in np.flatnonzero(leaked):
            skipped.add(train.files[i], "also in the test split (kept there)")
        if leaked.any():
            train = train.subset(np.flatnonzero(~leaked))
    source = "folder" if test is not None else "none"
    holdout = test is None and test_fraction > 0
    found = class_counts(np.asarray(folders.train.labels), len(folders.train.classes)).tolist()
    check_enough_images(train, found, 3 if holdout else 2, folders.train.root,
                        "train, validation" + (" and the held-out test split" if holdout
                                               else ""))
    if holdout:
        rest, held_out = stratified_split(train.labels, test_fraction, seed + 1)
        train, test, source = train.subset(rest), train.subset(held_out), "holdout"
    train_rows, val_rows = stratified_split(train.labels, val_fraction, seed)
    data = PreparedData(train.classes, train.subset(train_rows), train.subset(val_rows), test,
                        skipped, source)
    log.info("data from %s:\n%s", path, data.summary())
    return data
