import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_utils.cache import (
    build_cache,
    cache_bytes,
    cache_key,
    damage,
    load_cache,
    remove_dead_builders,
)
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


@pytest.mark.parametrize("harm", ["truncate images", "garble meta", "drop labels",
                                  "shrink meta"])
def test_a_damaged_entry_is_logged_removed_and_decoded_again(fmnist_train, tmp_path, caplog,
                                                             harm: str) -> None:
    """A cache entry whose files disagree with its meta.json (a full disk, a copy cut short)
    used to end every search with numpy's `mmap length is greater than file size`."""
    import json

    index = scan_folder(_copy_sample(fmnist_train, tmp_path / "data"))
    first = np.asarray(build_cache(index, 24, cache_dir=tmp_path / "c", workers=1,
                                   progress=False).images).copy()
    entry = tmp_path / "c" / cache_key(index, 24, "resize")
    if harm == "truncate images":
        with open(entry / "images.npy", "r+b") as f:
            f.truncate((entry / "images.npy").stat().st_size // 2)
    elif harm == "garble meta":
        (entry / "meta.json").write_text('{"files": [')
    elif harm == "drop labels":
        (entry / "labels.npy").unlink()
    else:  # meta.json lists a file fewer than the arrays hold
        meta = json.loads((entry / "meta.json").read_text())
        meta["files"] = meta["files"][:-1]
        (entry / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger="data_utils.cache"):
        again = build_cache(index, 24, cache_dir=tmp_path / "c", workers=1, progress=False)
    np.testing.assert_array_equal(np.asarray(again.images), first)
    assert f"cache entry {entry} is damaged" in caplog.text
    assert damage(entry) == ""  # rebuilt whole


def test_only_this_hosts_dead_builders_are_cleaned_up(tmp_path) -> None:
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])  # a pid that has exited
    dead.wait()
    key, host = "0" * 24, socket.gethostname()
    folders = {
        "dead here": tmp_path / f".tmp-{key}-{host}-{dead.pid}",
        "alive here": tmp_path / f".tmp-{key}-{host}-{os.getpid()}",
        "another host": tmp_path / f".tmp-{key}-elsewhere-{dead.pid}",
        "older name": tmp_path / f".tmp-{key}-{dead.pid}",  # before host names were written
    }
    for folder in folders.values():
        folder.mkdir()
        (folder / "raw.npy").write_bytes(b"\0" * 1024)
    removed = remove_dead_builders(tmp_path)
    assert sorted(removed) == sorted([folders["dead here"], folders["older name"]])
    assert folders["alive here"].is_dir() and folders["another host"].is_dir()


def test_a_build_that_cannot_fit_stops_before_decoding(fmnist_train, tmp_path) -> None:
    """On a real 1 MB file system (tmpfs): the error names the folder and the bytes."""
    import subprocess

    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: the test mounts a tmpfs")
        pytest.skip("needs root (mounts a tmpfs)")
    index = scan_folder(_copy_sample(fmnist_train, tmp_path / "data"))  # 36 images
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        with pytest.raises(DataError, match=rf"{small}: decoding 36 images at 128x128 needs "
                                            r"3\.5 MB free .* Free space there"):
            build_cache(index, 128, cache_dir=small, workers=1, progress=False)
        assert not list(small.iterdir())  # nothing decoded, nothing left
        assert build_cache(index, 24, cache_dir=small, workers=1, progress=False).images.shape \
            == (36, 3, 24, 24)  # what fits is built
    finally:
        subprocess.run(["umount", str(small)], check=True)
