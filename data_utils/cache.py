"""Decode once: every image of a split decoded and resized once into a uint8 array on disk.

Trials read the array (memory-mapped, so all trials on a node share one copy in the page
cache) instead of decoding JPEGs every epoch, which was the seed projects' bottleneck.
The cache is keyed by the file list (paths, sizes, mtimes, labels), the target size and the
resize mode; a changed file makes a new key, a re-run with the same inputs reuses it.

An entry appears whole (built in a `.tmp-*` folder, then renamed), but a disk can still damage
it later (a full disk, a copy cut short, a hand edit): an entry whose files disagree with its
`meta.json` is logged, removed and decoded again, never read. `.tmp-*` folders of builders
that died are removed; a build that cannot fit on the disk stops before decoding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import socket
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_utils.folder import FolderIndex
from data_utils.images import BadImage, fit, open_rgb
from data_utils.skips import DataError, SkipLog

log = logging.getLogger(__name__)

CACHE_VERSION = 1
KEY_CHARS = 24  # of the sha256 hex digest: the entry's folder name
DEFAULT_CACHE_DIR = Path(os.environ.get("LITESEARCH_CACHE", Path.home() / ".cache/litesearch"))


@dataclass
class DecodedSplit:
    """A split's pixels (N, 3, S, S) uint8, labels (N,), and where each row came from.

    Planar (channels first): the layout the network reads, so a batch needs no transpose.
    """

    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    hashes: list[str]  # content hash per row, for duplicate checks across splits
    classes: list[str]
    skipped: SkipLog

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> DecodedSplit:
        rows = np.asarray(rows)
        return DecodedSplit(self.images[rows], self.labels[rows],
                            [self.files[i] for i in rows], [self.hashes[i] for i in rows],
                            self.classes, self.skipped)


def cache_bytes(n: int, size: int) -> int:
    """Memory of a cache: N * S * S * 3 bytes."""
    return n * size * size * 3


def cache_key(index: FolderIndex, size: int, mode: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, size, mode, index.classes]).encode())
    for path, label in zip(index.files, index.labels, strict=True):
        st = path.stat()
        h.update(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
    return h.hexdigest()[:KEY_CHARS]


def _decode(job: tuple[str, int, str]) -> tuple[np.ndarray | None, str, str]:
    """Worker: (pixels or None, content hash, skip reason)."""
    path, size, mode = job
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return None, "", f"unreadable file ({err.strerror})"
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        return fit(open_rgb(data, draft=size), size, mode), digest, ""
    except BadImage as err:
        return None, digest, err.reason


def _decode_all(jobs: list[tuple[str, int, str]], workers: int, progress: bool) -> Iterator:
    bar = tqdm(total=len(jobs), desc="decoding", unit="img", disable=not progress, leave=False)
    try:
        if workers <= 1:
            for job in jobs:
                yield _decode(job)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for result in pool.map(_decode, jobs, chunksize=64):
                    yield result
                    bar.update()
    finally:
        bar.close()


def _dedupe(labels: list[int], hashes: list[str], files: list[str], classes: list[str],
            keep: np.ndarray, skipped: SkipLog) -> None:
    """Keep the first of identical files; drop every copy of one filed under two classes."""
    groups: dict[str, list[int]] = {}
    for i, digest in enumerate(hashes):
        if keep[i]:
            groups.setdefault(digest, []).append(i)
    for rows in groups.values():
        if len(rows) == 1:
            continue
        labelled = sorted({classes[labels[i]] for i in rows})
        if len(labelled) > 1:
            for i in rows:
                keep[i] = False
                skipped.add(files[i], f"same image filed under {' and '.join(labelled)}")
        else:
            for i in rows[1:]:
                keep[i] = False
                skipped.add(files[i], "duplicate file (same content as another)")


def build_cache(
    index: FolderIndex,
    size: int,
    mode: str = "resize",
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> DecodedSplit:
    """Decode `index` at `size` into `cache_dir/<key>/`, or load it if already there."""
    cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR)
    target = cache_dir / cache_key(index, size, mode)
    if target.exists():
        why = damage(target)
        if not why:
            return load_cache(target)
        log.warning("cache entry %s is damaged (%s): removing it and decoding again", target,
                    why)
        shutil.rmtree(target, ignore_errors=True)

    workers = workers or max(1, (os.cpu_count() or 1))
    n = len(index)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_builders(cache_dir)
    _check_free_space(cache_dir, n, size)
    log.info("decoding %d images at %dx%d (%s) into %s: %.1f MB", n, size, size, mode, target,
             cache_bytes(n, size) / 1e6)
    tmp = cache_dir / f".tmp-{target.name}-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = [str(p) for p in index.files]
    skipped = SkipLog()
    skipped.extend(index.skipped)
    raw = np.lib.format.open_memmap(tmp / "raw.npy", "w+", np.uint8, (max(n, 1), 3, size, size))
    keep = np.zeros(n, bool)
    hashes = [""] * n
    jobs = [(f, size, mode) for f in files]
    for i, (pixels, digest, reason) in enumerate(_decode_all(jobs, workers, progress)):
        hashes[i] = digest
        if pixels is None:
            skipped.add(files[i], reason)
        else:
            raw[i] = pixels.transpose(2, 0, 1)
            keep[i] = True
    _dedupe(index.labels, hashes, files, index.classes, keep, skipped)
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{index.root}: none of the {n} images could be used\n"
                        f"{skipped.summary()}")
    images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8,
                                       (len(rows), 3, size, size))
    for start in range(0, len(rows), 1024):  # bounded memory for big caches
        images[start:start + 1024] = raw[rows[start:start + 1024]]
    images.flush()
    del raw, images
    (tmp / "raw.npy").unlink()
    np.save(tmp / "labels.npy", np.asarray(index.labels, np.int64)[rows])
    meta = {
        "version": CACHE_VERSION, "size": size, "mode": mode, "classes": index.classes,
        "root": str(index.root), "files": [files[i] for i in rows],
        "hashes": [hashes[i] for i in rows], "skipped": skipped.to_dict(),
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(tmp, target)  # atomic: a half-written cache is never found
    except OSError:  # another process finished the same cache first
        shutil.rmtree(tmp, ignore_errors=True)
    if skipped.total:
        log.warning("%s: %s", index.root, skipped.summary())
    return load_cache(target)


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset from a .npy file's header (the data is not read)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            raise ValueError(f".npy format {version} (this reader knows 1.0 and 2.0)")
        shape, _, dtype = readers[version](f)
        return shape, dtype, f.tell()


def damage(path: Path) -> str:
    """Why the cache entry at `path` cannot be read as whole, or "" when its arrays are the
    shapes and byte counts its `meta.json` promises."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as err:
        return f"meta.json unreadable: {type(err).__name__}: {err}"
    missing = {"files", "size", "hashes", "classes", "skipped"} - set(meta)
    if missing:
        return f"meta.json lacks {', '.join(sorted(missing))}"
    n, size = len(meta["files"]), int(meta["size"])
    for name, shape in (("images.npy", (n, 3, size, size)), ("labels.npy", (n,))):
        try:
            found, dtype, offset = _npy_layout(path / name)
        except (OSError, ValueError) as err:
            return f"{name} unreadable: {type(err).__name__}: {err}"
        if found != shape:
            return f"{name} holds {found}, meta.json says {shape}"
        want, got = offset + math.prod(shape) * dtype.itemsize, (path / name).stat().st_size
        if got != want:
            return f"{name} is {got} bytes, its header says {want}"
    return ""


def remove_dead_builders(cache_dir: Path) -> list[Path]:
    """Remove the `.tmp-<key>-<host>-<pid>` folders of this host's builders that are no longer
    running (killed mid-decode: each holds up to twice its cache's bytes). Other hosts' (a
    shared cache folder) are left alone. Returns what was removed."""
    removed = []
    for tmp in cache_dir.glob(".tmp-*"):
        host, _, pid = tmp.name[len(".tmp-") + KEY_CHARS:].lstrip("-").rpartition("-")
        if (host and host != socket.gethostname()) or not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("removed %s, left by a cache builder that died", tmp)
        removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _check_free_space(cache_dir: Path, n: int, size: int) -> None:
    """A build holds every decoded image twice on disk (all decoded, then the kept rows) until
    it finishes: fail before decoding, naming the folder and the bytes, when that cannot fit."""
    needed, free = 2 * cache_bytes(n, size), shutil.disk_usage(cache_dir).free
    if free < needed:
        raise DataError(
            f"{cache_dir}: decoding {n} images at {size}x{size} needs {needed / 1e6:.1f} MB free "
            f"while the cache is built ({n} x 3 x {size} x {size} bytes, twice), and "
            f"{free / 1e6:.1f} MB are free. Free space there, or point data.cache_dir (or "
            f"$LITESEARCH_CACHE) at a larger disk.")


def load_cache(path: str | Path) -> DecodedSplit:
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    return DecodedSplit(
        images=np.load(path / "images.npy", mmap_mode="r"),
        labels=np.load(path / "labels.npy"),
        files=meta["files"],
        hashes=meta["hashes"],
        classes=meta["classes"],
        skipped=SkipLog.from_dict(meta["skipped"]),
    )
