"""Decode one image file to RGB pixels, robustly: any format PIL reads, EXIF orientation
applied, grayscale/palette/CMYK/alpha made RGB, and a bad file raised as `BadImage` with a
short reason that callers count and skip."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
RESIZE_MODES = ("resize", "pad")
# Alpha is composited onto white: crops with transparent borders look like paper, not night.
_BACKGROUND = (255, 255, 255)


class BadImage(Exception):
    """A file that is not a usable image; `reason` is short and countable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def open_rgb(data: bytes | str | Path, draft: int | None = None) -> Image.Image:
    """Decode to an RGB image. `draft` lets the JPEG decoder downscale by up to 8x while
    decoding (never below `draft` px): an 8,000 px photo bound for a 64 px cache decodes fast."""
    if isinstance(data, str | Path):
        data = Path(data).read_bytes()
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        if draft and img.format == "JPEG":
            img.draft("RGB", (draft, draft))
        img = ImageOps.exif_transpose(img)
        img.load()
    except UnidentifiedImageError:
        raise BadImage("not an image (unreadable format)") from None
    except Image.DecompressionBombError:
        raise BadImage(f"too large (over {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage(f"truncated or corrupt image ({err})") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def fit(img: Image.Image, size: int, mode: str = "resize") -> np.ndarray:
    """(size, size, 3) uint8. "resize" stretches; "pad" centres the image on a square of its
    mean colour first, so the aspect ratio survives."""
    if mode == "pad":
        w, h = img.size
        side = max(w, h)
        mean = tuple(int(c) for c in np.asarray(img).reshape(-1, 3).mean(0))
        square = Image.new("RGB", (side, side), mean)
        square.paste(img, ((side - w) // 2, (side - h) // 2))
        img = square
    elif mode != "resize":
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    resized = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(resized, dtype=np.uint8)


def decode_file(path: str | Path, size: int, mode: str = "resize") -> np.ndarray:
    return fit(open_rgb(path, draft=size), size, mode)
