"""COCO annotations + photos -> an ImageFolder of box crops through a class mapping.

    python -m data_utils.coco ANNOTATIONS.json --images DIR --out DIR [--mapping FILE]
        [--min-size PX] [--pad FRACTION] [--workers N]

Writes `out/<Class>/<image-stem>_<ann-id>.jpg` and `out/manifest.csv`, and prints crops per
class and boxes skipped per reason. Re-running is idempotent: existing crops are kept, crops
the new run no longer produces are removed, and the manifest is rewritten.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from data_utils.images import BadImage, open_rgb
from data_utils.mapping import ClassMapping, load_mapping
from data_utils.skips import DataError, SkipLog

REQUIRED_KEYS = ("images", "annotations", "categories")
MANIFEST_FIELDS = ["crop_file", "class", "source_image", "annotation_id", "x", "y", "w", "h"]


@dataclass
class Box:
    ann_id: int
    cls: str
    x: float
    y: float
    w: float
    h: float


@dataclass
class ImageJob:
    file_name: str
    path: Path
    boxes: list[Box] = field(default_factory=list)


@dataclass
class ConvertResult:
    counts: Counter  # crops per class
    skipped: SkipLog  # boxes, by reason
    manifest: Path


def load_coco(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such annotation file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a JSON file ({err}); pass a COCO annotation file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a COCO file is a JSON object, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{path}: missing or not a list: {', '.join(missing)}; a COCO file "
                        "needs images, annotations and categories")
    return data


def _box(ann: dict) -> tuple[float, float, float, float] | None:
    bbox = ann.get("bbox")
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox):
        return None
    return tuple(float(v) for v in bbox)


def plan_crops(
    coco: dict, mapping: ClassMapping, images_dir: Path, min_size: float = 1.0
) -> tuple[list[ImageJob], SkipLog]:
    """Which box goes to which class, grouped by photo; everything else skipped with a reason.
    Reads no pixels: missing or unreadable photos are found when cropping."""
    skipped = SkipLog(what="boxes")
    categories = {c.get("id"): c for c in coco["categories"] if isinstance(c, dict)}
    images = {i.get("id"): i for i in coco["images"] if isinstance(i, dict)}
    jobs: dict[object, ImageJob] = {}
    for ann in coco["annotations"]:
        if not isinstance(ann, dict):
            skipped.add(repr(ann)[:60], "malformed annotation (not an object)")
            continue
        item = f"annotation {ann.get('id')}"
        cat = categories.get(ann.get("category_id"))
        image = images.get(ann.get("image_id"))
        box = _box(ann)
        if cat is None:
            skipped.add(item, f"unknown category id {ann.get('category_id')!r}")
            continue
        if image is None or "file_name" not in image:
            skipped.add(item, f"unknown image id {ann.get('image_id')!r}")
            continue
        if box is None or "id" not in ann:
            skipped.add(item, "malformed annotation (needs id and bbox [x, y, w, h])")
            continue
        cls, why = mapping.resolve(str(cat.get("name", "")), str(cat.get("supercategory", "")))
        if cls is None:
            skipped.add(item, why)
            continue
        x, y, w, h = box
        width, height = image.get("width"), image.get("height")
        if w <= 0 or h <= 0:
            skipped.add(item, "box with zero or negative size")
        elif width and height and (x >= width or y >= height or x + w <= 0 or y + h <= 0):
            skipped.add(item, "box outside the image")
        elif min(w, h) < min_size:
            skipped.add(item, f"box smaller than --min-size {min_size:g} px")
        else:
            job = jobs.setdefault(image["id"], ImageJob(image["file_name"],
                                                        images_dir / image["file_name"]))
            job.boxes.append(Box(int(ann["id"]), cls, x, y, w, h))
    return list(jobs.values()), skipped


def crop_file_name(job: ImageJob, box: Box) -> str:
    return f"{box.cls}/{Path(job.file_name).stem}_{box.ann_id}.jpg"


def crop_image(job: ImageJob, out: Path, pad: float, quality: int = 95):
    """Worker: crop every box of one photo. Returns (manifest rows, [(item, skip reason)])."""
    rows, skips = [], []
    if not job.path.is_file():
        return rows, [(f"annotation {b.ann_id}", f"missing image file ({job.file_name})")
                      for b in job.boxes]
    try:
        img = open_rgb(job.path)
    except BadImage as err:
        return rows, [(f"annotation {b.ann_id}", f"unreadable image ({err.reason})")
                      for b in job.boxes]
    width, height = img.size
    for b in job.boxes:
        left = max(0, int(b.x - pad * b.w))
        top = max(0, int(b.y - pad * b.h))
        right = min(width, round(b.x + b.w + pad * b.w))
        bottom = min(height, round(b.y + b.h + pad * b.h))
        if right <= left or bottom <= top:
            skips.append((f"annotation {b.ann_id}", "box outside the image"))
            continue
        name = crop_file_name(job, b)
        target = out / name
        if not target.is_file():  # idempotent: an existing crop is kept as it is
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".tmp{os.getpid()}.jpg")
            img.crop((left, top, right, bottom)).save(tmp, "JPEG", quality=quality)
            os.replace(tmp, target)
        rows.append({"crop_file": name, "class": b.cls, "source_image": job.file_name,
                     "annotation_id": b.ann_id, "x": left, "y": top, "w": right - left,
                     "h": bottom - top})
    return rows, skips


def _remove_stale(out: Path, manifest: Path, keep: set[str]) -> int:
    """Delete crops listed by the previous manifest that this run no longer produces."""
    if not manifest.is_file():
        return 0
    removed = 0
    with manifest.open(newline="") as f:
        for row in csv.DictReader(f):
            name = row.get("crop_file", "")
            if name and name not in keep and (out / name).is_file():
                (out / name).unlink()
                removed += 1
    return removed


def convert(
    annotations: str | Path,
    images: str | Path,
    out: str | Path,
    mapping: ClassMapping | None = None,
    min_size: float = 1.0,
    pad: float = 0.0,
    workers: int = 1,
    progress: bool = True,
) -> ConvertResult:
    if pad < 0:
        raise DataError(f"--pad must be >= 0, got {pad}")
    coco = load_coco(annotations)
    mapping = mapping or load_mapping()
    out = Path(out)
    jobs, skipped = plan_crops(coco, mapping, Path(images), min_size)
    out.mkdir(parents=True, exist_ok=True)
    work = partial(crop_image, out=out, pad=pad)
    bar = tqdm(total=len(jobs), desc="cropping", unit="photo", disable=not progress)
    rows: list[dict] = []
    with ProcessPoolExecutor(workers) if workers > 1 else _Serial() as pool:
        for job_rows, job_skips in pool.map(work, jobs):
            rows += job_rows
            for item, reason in job_skips:
                skipped.add(item, reason)
            bar.update()
    bar.close()
    rows.sort(key=lambda r: r["annotation_id"])
    manifest = out / "manifest.csv"
    _remove_stale(out, manifest, {r["crop_file"] for r in rows})
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return ConvertResult(Counter(r["class"] for r in rows), skipped, manifest)


class _Serial:
    """The in-process stand-in for a pool (workers=1: no process start-up, easy to debug)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def map(fn, items):
        return map(fn, items)


def summary(result: ConvertResult, classes: tuple[str, ...]) -> str:
    lines = ["crops per class:"]
    lines += [f"  {result.counts.get(c, 0):6d}  {c}" for c in classes]
    lines.append(f"  {sum(result.counts.values()):6d}  total -> {result.manifest}")
    lines.append(result.skipped.summary())
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", type=Path, help="COCO annotation JSON")
    parser.add_argument("--images", type=Path, required=True, help="root of the photos")
    parser.add_argument("--out", type=Path, required=True, help="output ImageFolder")
    parser.add_argument("--mapping", type=Path, help="class mapping YAML "
                        "(default configs/taco_classes.yaml)")
    parser.add_argument("--min-size", type=float, default=8.0,
                        help="skip boxes with a side under this many pixels")
    parser.add_argument("--pad", type=float, default=0.0,
                        help="context around each box, as a fraction of its size")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return parser


def main(args: argparse.Namespace) -> int:
    try:
        mapping = load_mapping(args.mapping)
        result = convert(args.annotations, args.images, args.out, mapping, args.min_size,
                         args.pad, args.workers)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(result, mapping.classes))
    return 0


def cli() -> None:
    """The console script (see [project.scripts] in pyproject.toml)."""
    sys.exit(main(get_args_parser().parse_args()))


if __name__ == "__main__":
    cli()
