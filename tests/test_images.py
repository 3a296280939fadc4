import numpy as np
import pytest
from PIL import Image

from data_utils.images import BadImage, decode_file, fit, open_rgb


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "mode,fmt,suffix",
    [("L", "JPEG", ".jpg"), ("CMYK", "JPEG", ".jpg"), ("RGBA", "PNG", ".png"),
     ("P", "PNG", ".png"), ("RGB", "WEBP", ".webp"), ("RGB", "BMP", ".bmp"), ("LA", "PNG", ".png")],
)
def test_every_mode_and_format_becomes_rgb(tmp_path, mode, fmt, suffix) -> None:
    path = _save(Image.new(mode, (30, 20)), tmp_path / f"x{suffix}", format=fmt)
    img = open_rgb(path)
    assert img.mode == "RGB" and img.size == (30, 20)


def test_transparent_pixels_become_white(tmp_path) -> None:
    path = _save(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), tmp_path / "a.png")
    assert np.asarray(open_rgb(path))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    Image.new("RGB", (40, 20)).save(path, exif=exif.tobytes())
    assert open_rgb(path).size == (20, 40)


def test_bad_files_raise_with_a_countable_reason(tmp_path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("this is not a picture")
    good = _save(Image.effect_noise((64, 64), 50).convert("RGB"), tmp_path / "g.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    for path, reason in [(empty, "empty file"), (text, "not an image"),
                         (truncated, "truncated or corrupt")]:
        with pytest.raises(BadImage) as info:
            open_rgb(path)
        assert info.value.reason.startswith(reason)


def test_decompression_bomb_is_a_bad_image(tmp_path, monkeypatch) -> None:
    path = _save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(BadImage, match="too large"):
        open_rgb(path)


def test_8000_px_wide_image_decodes_to_the_target_size(tmp_path) -> None:
    wide = Image.linear_gradient("L").resize((8000, 300)).convert("RGB")
    path = _save(wide, tmp_path / "wide.jpg", quality=80)
    for mode in ("resize", "pad"):
        pixels = decode_file(path, 64, mode)
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8


def test_pad_mode_keeps_aspect_ratio() -> None:
    img = Image.new("RGB", (40, 10), (200, 10, 10))
    padded = fit(img, 40, "pad")
    # the object spans the middle rows only; the padding is its mean colour, so equal here
    assert padded.shape == (40, 40, 3)
    stretched = fit(Image.new("RGB", (40, 10), (0, 0, 0)).copy(), 40, "resize")
    assert stretched.shape == (40, 40, 3)
    with pytest.raises(ValueError, match="resize mode must be one of"):
        fit(img, 40, "crop")
