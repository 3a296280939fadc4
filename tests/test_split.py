import numpy as np
import pytest

from data_utils.split import (
    balanced_sample_weights,
    class_counts,
    class_weights,
    stratified_split,
)

LABELS = np.repeat(np.arange(4), [500, 120, 60, 3])


def test_stratified_split_keeps_proportions_and_is_reproducible() -> None:
    train, val = stratified_split(LABELS, 0.2, seed=1)
    assert len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) == len(LABELS)
    val_counts = class_counts(LABELS[val], 4)
    assert val_counts.tolist() == [100, 24, 12, 1]  # 20 % of each class, at least one
    again = stratified_split(LABELS, 0.2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again, strict=True))
    other = stratified_split(LABELS, 0.2, seed=2)[1]
    assert not np.array_equal(val, other)


def test_a_class_with_one_image_stays_in_train() -> None:
    labels = np.array([0, 0, 0, 0, 1])
    train, val = stratified_split(labels, 0.5, seed=0)
    assert 4 in train and 4 not in val


def test_bad_fraction_is_rejected() -> None:
    with pytest.raises(ValueError, match="val_fraction must be in"):
        stratified_split(LABELS, 1.0, seed=0)


@pytest.mark.parametrize("method", ["inverse", "effective"])
def test_class_weights_favour_rare_classes(method: str) -> None:
    counts = class_counts(LABELS, 4)
    w = class_weights(counts, method)
    assert w.dtype == np.float32 and w.mean() == pytest.approx(1.0)
    assert np.all(np.diff(w) > 0)  # counts fall from class 0 to 3, weights rise


def test_inverse_weights_are_proportional_to_one_over_count() -> None:
    w = class_weights(np.array([100, 50, 25]), "inverse")
    assert w[1] / w[0] == pytest.approx(2) and w[2] / w[0] == pytest.approx(4)
    assert class_weights(np.array([100, 50]), "none").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="class weight method must be one of"):
        class_weights(np.array([1, 2]), "sqrt")


def test_balanced_sample_weights_give_each_class_equal_mass() -> None:
    w = balanced_sample_weights(LABELS, 4)
    mass = [w[c == LABELS].sum() for c in range(4)]
    assert mass == pytest.approx([1.0] * 4)
