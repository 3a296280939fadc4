"""A TACO-shaped crop set this repository does not hold, made the way a user makes theirs: the
real TACO annotation file (shared/data/taco), a photo for each of its photos, and litesearch's
own COCO converter (`python -m data_utils.coco`) cutting the boxes out.

TACO's photos are on Flickr, out of reach here, so each photo is a stand-in: the declared size
(times --scale), a cluttered background, and in every box the class mapping keeps an article
of Fashion-MNIST's *test* split (Debian's dataset-fashion-mnist; fmnist-taco6 took only the
training split), drawn from its class's group of labels. The groups differ from
fmnist-taco6's: there, the look-alikes share a class (coat and shirt are both Plasticbag);
here they are spread over different classes (pullover, coat, shirt and T-shirt are four
classes, boot, sneaker and sandal three). So the crops have TACO's real class proportions,
box sizes, aspect ratios and overlaps (a later box paints over an earlier one), and objects
and a task no benchmark of this repository has chosen anything on.

    apt-get install dataset-fashion-mnist
    python benchmarks/taco_standin.py --out /work/data/taco-standin
    NAME=taco-standin bash benchmarks/night.sh fast /work/data/taco-standin/crops
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_utils.mapping import load_mapping  # noqa: E402

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
ANNOTATIONS = REPO.parent / "shared" / "data" / "taco" / "annotations.json"
# Fashion-MNIST labels: 0 T-shirt, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt,
# 7 sneaker, 8 bag, 9 ankle boot (trousers are left out)
GROUPS: dict[str, tuple[int, ...]] = {
    "Metal": (9,), "Paper": (2,), "Paperpack": (7,), "Plastic": (0, 8),
    "Plasticbag": (4, 3), "Styrofoam": (6, 5),
}


class StandinError(Exception):
    """Missing or unusable input, with what to do about it."""


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped), as Fashion-MNIST ships: images (N, 28, 28) or labels (N,)."""
    try:
        data = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise StandinError(f"{path}: not found; install Debian's dataset-fashion-mnist "
                           "(apt-get install dataset-fashion-mnist) or pass "
                           "--fashion-mnist DIR") from None
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


@dataclass(frozen=True)
class Paint:
    """One box of a photo and the article painted into it."""

    x: float
    y: float
    w: float
    h: float
    article: np.ndarray  # (28, 28) uint8


@dataclass(frozen=True)
class Photo:
    path: Path
    width: int
    height: int
    seed: int
    boxes: tuple[Paint, ...]


def plan(coco: dict, articles: np.ndarray, labels: np.ndarray, scale: float, seed: int,
         photos: Path, limit: int | None = None) -> tuple[dict, list[Photo]]:
    """The scaled annotation file and the photos to paint: every box the class mapping keeps
    gets an article of its class's group, each article used once."""
    mapping = load_mapping()
    categories = {c["id"]: mapping.resolve(c["name"], c["supercategory"])[0]
                  for c in coco["categories"]}
    out = copy.deepcopy(coco)  # scaled; the photos are painted from it
    for image in out["images"]:
        image["width"], image["height"] = (round(image[k] * scale) for k in ("width", "height"))
    for ann in out["annotations"]:
        ann["bbox"] = [v * scale for v in ann["bbox"]]
        ann["area"] = ann.get("area", 0) * scale * scale
    kept: dict[int, list[dict]] = {}
    for ann in out["annotations"]:
        if categories[ann["category_id"]] is not None:
            kept.setdefault(ann["image_id"], []).append(ann)
    images = [i for i in out["images"] if i["id"] in kept][:limit]
    if limit is not None:  # the file names only the photos painted
        chosen = {i["id"] for i in images}
        out["images"] = images
        out["annotations"] = [a for a in out["annotations"] if a["image_id"] in chosen]
    rng = np.random.default_rng(seed)
    pools = {cls: list(rng.permutation(np.flatnonzero(np.isin(labels, group))))
             for cls, group in GROUPS.items()}
    todo = []
    for image in images:
        boxes = []
        for ann in kept[image["id"]]:
            cls = categories[ann["category_id"]]
            if not pools[cls]:
                raise StandinError(f"class {cls}: more boxes than Fashion-MNIST test articles "
                                   f"of labels {GROUPS[cls]}")
            boxes.append(Paint(*ann["bbox"], articles[pools[cls].pop()]))
        todo.append(Photo(photos / image["file_name"], image["width"], image["height"],
                          seed * 100_003 + image["id"], tuple(boxes)))
    return out, todo


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A gradient between two colours, sensor noise, and a few shapes of clutter."""
    a, b = rng.integers(30, 226, size=(2, 3))
    if rng.random() < 0.5:  # top to bottom, else left to right
        t = np.linspace(0, 1, height)[:, None, None] * np.ones((1, width, 1))
    else:
        t = np.linspace(0, 1, width)[None, :, None] * np.ones((height, 1, 1))
    pixels = a + (b - a) * t + rng.normal(0, 8, (height, width, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(3, 9)):
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def paint(photo: Photo) -> str:
    """Worker: draw one photo and save it as a JPEG."""
    rng = np.random.default_rng(photo.seed)
    img = _background(rng, photo.width, photo.height)
    for box in photo.boxes:
        w, h = max(1, round(box.w)), max(1, round(box.h))
        article = Image.fromarray(box.article).resize((w, h), Image.BILINEAR)
        if rng.random() < 0.5:
            article = article.transpose(Image.FLIP_LEFT_RIGHT)
        shade = np.asarray(article, np.float32)[..., None] / 255
        colour = rng.integers(40, 256, 3)
        fill = Image.fromarray((colour * (0.35 + 0.65 * shade)).astype(np.uint8))
        mask = Image.fromarray(np.clip(shade[..., 0] * 400, 0, 255).astype(np.uint8))
        img.paste(fill, (round(box.x), round(box.y)), mask)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))
    photo.path.parent.mkdir(parents=True, exist_ok=True)
    img.save(photo.path, "JPEG", quality=int(rng.integers(60, 96)))
    return photo.path.name


def make(out: Path, fashion_mnist: Path = FASHION_MNIST, annotations: Path = ANNOTATIONS,
         scale: float = 0.5, seed: int = 0, limit: int | None = None, workers: int = 1) -> Path:
    """Photos and annotations under `out`, then the crops `out/crops` (the converter's
    ImageFolder, with its manifest); returns the crops folder."""
    articles = read_idx(fashion_mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fashion_mnist / "t10k-labels-idx1-ubyte.gz")
    coco = json.loads(annotations.read_text())
    scaled, photos = plan(coco, articles, labels, scale, seed, out / "photos", limit)
    out.mkdir(parents=True, exist_ok=True)
    (out / "annotations.json").write_text(json.dumps(scaled))
    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(paint, photos, chunksize=8):
            pass
    # the user's step, as the README gives it
    subprocess.run([sys.executable, "-m", "data_utils.coco", str(out / "annotations.json"),
                    "--images", str(out / "photos"), "--out", str(out / "crops"),
                    "--workers", str(workers)], cwd=REPO, check=True)
    return out / "crops"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for photos/, "
                   "annotations.json and crops/ (outside the repository)")
    p.add_argument("--fashion-mnist", type=Path, default=FASHION_MNIST)
    p.add_argument("--annotations", type=Path, default=ANNOTATIONS)
    p.add_argument("--scale", type=float, default=0.5, help="photo size over the declared "
                   "one (0.5: photos up to 2,000 px; 3,277 crops of 8 to 1,844 px, median "
                   "131 x 122 px)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="only the first N photos (a quick look)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return p


def main() -> int:
    args = get_args_parser().parse_args()
    try:
        crops = make(args.out, args.fashion_mnist, args.annotations, args.scale, args.seed,
                     args.limit, args.workers)
    except StandinError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"crops in {crops}: NAME={args.out.name} bash benchmarks/night.sh fast {crops}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
