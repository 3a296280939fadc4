import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_utils.cache import build_cache, cache_bytes, cache_key, load_cache
from data_utils.folder import FolderIndex, scan_folder
from data_utils.images import decode_file
from data_utils.skips import DataError


def _copy_sample(fmnist_train: Path, dest: Path, per_class: int = 6) -> Path:
    """A small real ImageFolder: the first `per_class` JPEGs of each fmnist-taco6 class."""
    for class_dir in sorted(fmnist_train.iterdir()):
        (dest / class_dir.name).mkdir(parents=True)
        for f in sorted(class_dir.glob("*.jpg"))[:per_class]:
            shutil.copy2(f, dest / class_dir.name / f.name)
    return dest


def test_real_folder_cache_round_trip_gives_identical_pixels(fmnist_train, tmp_path) -> None:
    full = scan_folder(fmnist_train)
    rows = list(range(0, len(full), 97))  # ~100 real JPEGs across all classes
    index = FolderIndex(full.root, full.classes, [full.files[i] for i in rows],
                        [full.labels[i] for i in rows])
    split = build_cache(index, 32, cache_dir=tmp_path, workers=1, progress=False)
    assert split.images.shape == (len(rows), 3, 32, 32) and split.images.dtype == np.uint8
    assert split.images.nbytes == cache_bytes(len(rows), 32)
    for k in (0, 7, len(rows) - 1):
        planar = decode_file(index.files[k], 32).transpose(2, 0, 1)
        np.testing.assert_array_equal(split.images[k], planar)
        assert split.labels[k] == index.labels[k]
    again = load_cache(tmp_path / cache_key(index, 32, "resize"))
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(split.images))
    assert isinstance(again.images, np.memmap)  # shared through the page cache, not copied


def test_cache_is_reused_and_keyed_by_contents_and_size(fmnist_train, tmp_path) -> None:
    root = _copy_sample(fmnist_train, tmp_path / "data")
    index = scan_folder(root)
    first = build_cache(index, 24, cache_dir=tmp_path / "c", workers=1, progress=False)
    stamp = (tmp_path / "c" / cache_key(index, 24, "resize") / "images.npy").stat().st_mtime_ns
    second = build_cache(scan_folder(root), 24, cache_dir=tmp_path / "c", progress=False)
    assert (tmp_path / "c" / cache_key(index, 24, "resize") / "images.npy").stat().st_mtime_ns \
        == stamp
    np.testing.assert_array_equal(np.asarray(first.images), np.asarray(second.images))
    assert cache_key(index, 32, "resize") != cache_key(index, 24, "resize")
    assert cache_key(index, 24, "pad") != cache_key(index, 24, "resize")
    before = cache_key(index, 24, "resize")
    touched = index.files[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    assert cache_key(scan_folder(root), 24, "resize") != before


def test_parallel_build_equals_serial_build(fmnist_train, tmp_path) -> None:
    index = scan_folder(_copy_sample(fmnist_train, tmp_path / "data", per_class=12))
    serial = build_cache(index, 20, cache_dir=tmp_path / "a", workers=1, progress=False)
    parallel = build_cache(index, 20, cache_dir=tmp_path / "b", workers=2, progress=False)
    np.testing.assert_array_equal(np.asarray(serial.images), np.asarray(parallel.images))
    assert serial.files == parallel.files


def test_corrupted_jpeg_is_skipped_and_counted(fmnist_train, tmp_path) -> None:
    root = _copy_sample(fmnist_train, tmp_path / "data")
    victim = sorted((root / "Paper").glob("*.jpg"))[2]
    victim.write_bytes(victim.read_bytes()[:200])  # a real JPEG, cut short
    junk = root / "Metal" / "junk.jpg"
    junk.write_text("<html>not found</html>")
    index = scan_folder(root)
    split = build_cache(index, 16, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert len(split) == len(index) - 2
    assert str(victim) not in split.files and str(junk) not in split.files
    assert split.skipped.total == 2
    assert sum(n for r, n in split.skipped.counts.items() if r.startswith("truncated")) == 1
    assert sum(n for r, n in split.skipped.counts.items() if r.startswith("not an image")) == 1
    # the skip record survives a reload from disk
    assert load_cache(tmp_path / "c" / cache_key(index, 16, "resize")).skipped.total == 2


def test_duplicate_files_keep_one_and_conflicting_labels_keep_none(fmnist_train, tmp_path) -> None:
    root = _copy_sample(fmnist_train, tmp_path / "data")
    paper = sorted((root / "Paper").glob("*.jpg"))
    shutil.copy2(paper[0], root / "Paper" / "copy_of_first.jpg")
    shutil.copy2(paper[1], root / "Plastic" / "mislabelled.jpg")
    index = scan_folder(root)
    split = build_cache(index, 16, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert len(split) == len(index) - 1 - 2
    assert split.skipped.counts["duplicate file (same content as another)"] == 1
    assert split.skipped.counts["same image filed under Paper and Plastic"] == 2
    copies = {str(paper[0]), str(root / "Paper" / "copy_of_first.jpg")}
    assert len(copies & set(split.files)) == 1  # one of the identical pair is kept


def test_all_bad_images_is_an_error(tmp_path) -> None:
    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        (tmp_path / "d" / c / "x.jpg").write_text("nope")
    with pytest.raises(DataError, match="none of the 2 images could be used"):
        build_cache(scan_folder(tmp_path / "d"), 16, cache_dir=tmp_path / "c", workers=1,
                    progress=False)


def test_grayscale_and_png_with_alpha_enter_the_cache_as_rgb(tmp_path) -> None:
    (tmp_path / "d" / "a").mkdir(parents=True)
    (tmp_path / "d" / "b").mkdir(parents=True)
    Image.new("L", (30, 50), 128).save(tmp_path / "d" / "a" / "gray.jpg")
    Image.new("RGBA", (50, 30), (0, 0, 255, 255)).save(tmp_path / "d" / "b" / "alpha.png")
    split = build_cache(scan_folder(tmp_path / "d"), 16, cache_dir=tmp_path / "c", workers=1,
                        progress=False)
    assert split.images.shape == (2, 3, 16, 16)
    assert split.images[1, :, 8, 8].tolist() == [0, 0, 255]
