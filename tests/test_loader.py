import numpy as np
import pytest
import torch

from data_utils.augment import AugmentConfig, BatchAugment
from data_utils.loader import BatchLoader
from data_utils.split import balanced_sample_weights


def _data(n: int = 50, size: int = 8):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    labels = np.arange(n) % 3
    return images, labels


def test_one_epoch_visits_every_row_once() -> None:
    images, labels = _data()
    loader = BatchLoader(images, labels, 16, shuffle=True)
    assert len(loader) == 4
    seen = []
    for x, y in loader:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 8, 8)  # pixels until the device
        seen += y.tolist()
    assert sorted(seen) == sorted(labels.tolist())
    assert len(BatchLoader(images, labels, 16, drop_last=True)) == 3


def test_order_depends_on_seed_and_epoch_only() -> None:
    images, labels = _data()
    aug = BatchAugment(AugmentConfig())

    def epoch(seed: int, e: int) -> torch.Tensor:
        loader = BatchLoader(images, labels, 16, shuffle=True, augment=aug, seed=seed)
        loader.set_epoch(e)
        return torch.cat([x for x, _ in loader])

    torch.testing.assert_close(epoch(1, 2), epoch(1, 2), atol=0, rtol=0)
    assert not torch.equal(epoch(1, 2), epoch(1, 3))
    assert not torch.equal(epoch(1, 2), epoch(2, 2))


def test_balanced_sampler_draws_classes_evenly() -> None:
    labels = np.repeat(np.arange(3), [900, 90, 10])
    images = np.zeros((len(labels), 3, 4, 4), np.uint8)
    weights = balanced_sample_weights(labels, 3)
    loader = BatchLoader(images, labels, 100, sample_weights=weights)
    drawn = np.bincount(torch.cat([y for _, y in loader]).numpy(), minlength=3)
    assert drawn.sum() == len(labels)
    assert np.all(np.abs(drawn - len(labels) / 3) < 0.15 * len(labels) / 3)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="50 images but 3 labels"):
        BatchLoader(_data()[0], np.zeros(3), 4)
