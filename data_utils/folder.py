"""Index an ImageFolder (`root/<Class>/*.jpg`), optionally with `train/` and `test/` splits.

Only the file system is read here; pixels are checked when the cache decodes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from data_utils.images import IMAGE_EXTENSIONS, is_image_file
from data_utils.skips import DataError, SkipLog

log = logging.getLogger(__name__)


@dataclass
class FolderIndex:
    """The image files of one split and their labels (indices into `classes`)."""

    root: Path
    classes: list[str]
    files: list[Path]
    labels: list[int]
    skipped: SkipLog = field(default_factory=SkipLog)
    missing_classes: list[str] = field(default_factory=list)  # in `classes`, no files here

    def __len__(self) -> int:
        return len(self.files)


def _class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected class folders {root}/<Class>/*.jpg")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DataError(f"{root}: no class folders; put images in {root}/<Class>/*.jpg")
    return dirs


def scan_folder(root: str | Path, classes: list[str] | None = None) -> FolderIndex:
    """Index `root/<Class>/*`. With `classes` (a test split read against the training classes),
    a class folder outside that list is an error and a class without a folder is recorded."""
    root = Path(root)
    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if classes is None:
        if len(dirs) < 2:
            raise DataError(f"{root}: only one class folder ({names[0]}); a classifier needs "
                            "at least two classes, one folder each")
        classes = names
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{root}: class folder(s) {', '.join(unknown)} are not among the "
                            f"training classes ({', '.join(classes)}); rename or remove them")
    index = FolderIndex(root=root, classes=list(classes), files=[], labels=[])
    for d in dirs:
        label = classes.index(d.name)
        found = 0
        for path in sorted(d.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if not is_image_file(path):
                index.skipped.add(str(path), "not an image extension "
                                  f"({'/'.join(sorted(IMAGE_EXTENSIONS))})")
                continue
            if path.stat().st_size == 0:
                index.skipped.add(str(path), "empty file (0 bytes)")
                continue
            index.files.append(path)
            index.labels.append(label)
            found += 1
        if found == 0:
            raise DataError(f"{d}: class folder has no usable images; add images or remove "
                            "the folder")
    index.missing_classes = [c for c in classes if c not in names]
    for c in index.missing_classes:
        log.warning("%s: no folder for class %r; its test metrics will be undefined", root, c)
    return index


@dataclass
class DatasetFolders:
    train: FolderIndex
    test: FolderIndex | None


def scan_dataset(path: str | Path) -> DatasetFolders:
    """`path/train/<Class>` (+ optional `path/test/<Class>`), or `path/<Class>` as train only."""
    path = Path(path)
    if (path / "train").is_dir():
        train = scan_folder(path / "train")
        test = scan_folder(path / "test", train.classes) if (path / "test").is_dir() else None
        return DatasetFolders(train, test)
    return DatasetFolders(scan_folder(path), None)
