from pathlib import Path

import pytest
from PIL import Image

from data_utils.folder import scan_dataset, scan_folder
from data_utils.skips import DataError


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), (1, 2, 3)).save(path)
    return path


def test_counts_match_the_real_folder(fmnist) -> None:
    index = scan_folder(fmnist / "train")
    assert index.classes == ["Metal", "Paper", "Paperpack", "Plastic", "Plasticbag", "Styrofoam"]
    for c, name in enumerate(index.classes):
        on_disk = len(list((fmnist / "train" / name).glob("*.jpg")))
        assert index.labels.count(c) == on_disk
    assert len(index) == 9382 and index.skipped.total == 0


def test_scan_dataset_reads_train_and_test(fmnist) -> None:
    folders = scan_dataset(fmnist)
    assert len(folders.train) == 9382 and len(folders.test) == 2343
    assert folders.test.classes == folders.train.classes


def test_other_files_and_empty_files_are_counted_skips(tmp_path) -> None:
    _img(tmp_path / "a" / "1.jpg")
    _img(tmp_path / "b" / "1.png")
    (tmp_path / "b" / "notes.txt").write_text("hi")
    (tmp_path / "b" / "zero.jpg").write_bytes(b"")
    index = scan_folder(tmp_path)
    assert len(index) == 2
    assert index.skipped.total == 2
    assert any("empty file" in r for r in index.skipped.counts)
    assert any("not an image extension" in r for r in index.skipped.counts)


def test_empty_class_folder_is_an_error_naming_it(tmp_path) -> None:
    _img(tmp_path / "a" / "1.jpg")
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"/b: class folder has no usable images"):
        scan_folder(tmp_path)


def test_one_class_is_an_error(tmp_path) -> None:
    _img(tmp_path / "only" / "1.jpg")
    with pytest.raises(DataError, match="only one class folder"):
        scan_folder(tmp_path)


def test_missing_or_flat_folder_is_an_error(tmp_path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        scan_folder(tmp_path / "nope")
    _img(tmp_path / "1.jpg")
    with pytest.raises(DataError, match="no class folders"):
        scan_folder(tmp_path)


def test_test_split_against_training_classes(tmp_path) -> None:
    for c in ("a", "b", "c"):
        _img(tmp_path / "train" / c / "1.jpg")
    _img(tmp_path / "test" / "a" / "1.jpg")
    _img(tmp_path / "test" / "b" / "1.jpg")
    folders = scan_dataset(tmp_path)
    assert folders.test.missing_classes == ["c"]  # in train, not in test: recorded, not fatal
    assert folders.test.labels == [0, 1]
    _img(tmp_path / "test" / "z" / "1.jpg")
    with pytest.raises(DataError, match=r"class folder.*z are not among the training classes"):
        scan_dataset(tmp_path)
