import shutil

import numpy as np

from data_utils.dataset import prepare_data
from data_utils.demo import demo_root
from data_utils.folder import scan_dataset


def test_demo_data_ships_with_the_repo_in_task_proportions() -> None:
    folders = scan_dataset(demo_root())
    assert folders.train.classes == ["Metal", "Paper", "Paperpack", "Plastic", "Plasticbag",
                                     "Styrofoam"]
    assert len(folders.train) == 1500 and len(folders.test) == 500
    share = np.bincount(folders.train.labels) / 1500
    # fmnist-taco6 proportions (data README): Metal 7.5 %, Paper 30.9 %, ..., Styrofoam 7.0 %
    np.testing.assert_allclose(share, [0.075, 0.309, 0.065, 0.170, 0.312, 0.070], atol=0.002)


def test_prepare_demo_data(tmp_path) -> None:
    data = prepare_data(demo_root(), 24, val_fraction=0.2, seed=0, cache_dir=tmp_path,
                        workers=1, progress=False)
    assert data.num_classes == 6
    assert len(data.train) + len(data.val) == 1500 and len(data.test) == 500
    counts = data.counts()
    assert np.allclose(np.array(counts["val"]) / np.array(counts["train"]), 0.25, atol=0.03)
    text = data.summary()
    assert "Plasticbag" in text and "cache: 2000 images at 24x24: 3.5 MB" in text
    assert data.train.images.shape[1:] == (3, 24, 24)


def test_train_copies_of_test_images_are_dropped(tmp_path) -> None:
    root = tmp_path / "d"
    for split in ("train", "test"):
        for c in ("Metal", "Paper"):
            src = demo_root() / split / c
            (root / split / c).mkdir(parents=True)
            for f in sorted(src.glob("*.jpg"))[:10]:
                shutil.copy2(f, root / split / c / f.name)
    leak = sorted((root / "test" / "Paper").glob("*.jpg"))[0]
    shutil.copy2(leak, root / "train" / "Paper" / "leaked.jpg")
    data = prepare_data(root, 16, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert data.skipped.counts["also in the test split (kept there)"] == 1
    assert len(data.train) + len(data.val) == 20
    assert len(data.test) == 20


def test_without_a_test_folder_a_stratified_holdout_is_the_test_split(tmp_path) -> None:
    kwargs = dict(val_fraction=0.2, test_fraction=0.2, seed=3, cache_dir=tmp_path, workers=1,
                  progress=False)
    data = prepare_data(demo_root() / "train", 16, **kwargs)
    assert data.test_source == "holdout"
    # 20 % of each class, rounded per class
    assert abs(len(data.test) - 300) <= 6
    assert len(data.test) + len(data.train) + len(data.val) == 1500
    assert set(data.test.files).isdisjoint(data.train.files + data.val.files)
    again = prepare_data(demo_root() / "train", 16, **kwargs)
    assert again.test.files == data.test.files  # the final job finds the same rows
    none = prepare_data(demo_root() / "train", 16, **{**kwargs, "test_fraction": 0.0})
    assert none.test is None and none.test_source == "none"


def _too_little(root):
    """Class A: three files that are not images; class B: one real picture."""
    from PIL import Image

    (root / "A").mkdir(parents=True)
    (root / "B").mkdir()
    for i in range(3):
        (root / "A" / f"{i}.jpg").write_bytes(b"not a jpeg" * 50)
    Image.new("RGB", (20, 20), (9, 9, 9)).save(root / "B" / "1.jpg")
    return root


def test_a_class_left_without_usable_images_is_a_clear_error(tmp_path) -> None:
    import pytest

    from data_utils.skips import DataError

    root = _too_little(tmp_path / "data")
    with pytest.raises(DataError) as err:
        prepare_data(root, 16, cache_dir=tmp_path / "cache", progress=False)
    message = str(err.value)
    assert "A: 0 usable of 3 image file(s)" in message
    assert "B: 1 usable of 1 image file(s)" in message  # one cannot feed train and val
    assert "at least 2 (train, validation)" in message
    with pytest.raises(DataError, match=r"at least 3 .*held-out test"):
        prepare_data(root, 16, test_fraction=0.2, cache_dir=tmp_path / "cache",
                     progress=False)
    # two pictures per class are enough for train + validation
    from PIL import Image

    for c, name in enumerate("AB"):
        for i in range(2):
            Image.new("RGB", (20, 20), (60 * c + 20 * i, 9, 9)).save(root / name / f"ok{i}.jpg")
    data = prepare_data(root, 16, cache_dir=tmp_path / "cache", progress=False)
    assert data.counts()["val"] == [1, 1]
