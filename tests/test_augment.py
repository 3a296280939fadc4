import pytest
import torch

from data_utils.augment import (
    OPS,
    AugmentConfig,
    BatchAugment,
    normalize,
    prepare_eval,
    to_float,
)

IDENTITY = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, jitter=0.0,
                         ops=0, magnitude=0.0)


def _batch(n: int = 8, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_shapes_and_dtype() -> None:
    x = _batch()
    out = BatchAugment()(x, torch.Generator().manual_seed(1))
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    resized = BatchAugment(out_size=24)(x, torch.Generator().manual_seed(1))
    assert resized.shape == (8, 3, 24, 24)
    assert prepare_eval(x, 16).shape == (8, 3, 16, 16)


def test_identity_config_returns_the_normalised_input() -> None:
    x = _batch()
    out = BatchAugment(IDENTITY)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, normalize(to_float(x)), atol=1e-5, rtol=0)


def test_flip_is_a_true_mirror() -> None:
    x = _batch()
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=1.0, jitter=0.0,
                        ops=0, magnitude=0.0)
    out = BatchAugment(cfg)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, normalize(to_float(x)).flip(-1), atol=1e-5, rtol=0)


def test_random_choices_are_per_sample() -> None:
    x = _batch(1).repeat(16, 1, 1, 1)  # sixteen copies of one image
    out = BatchAugment(AugmentConfig(ops=2, magnitude=0.5))(x, torch.Generator().manual_seed(3))
    flat = out.flatten(1)
    distinct = {tuple(row[:50].round(decimals=4).tolist()) for row in flat}
    assert len(distinct) == 16


def test_deterministic_under_a_seed() -> None:
    x = _batch()
    aug = BatchAugment(AugmentConfig(ops=2, magnitude=0.5))
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("magnitude", [0.0, 0.5, 1.0])
def test_every_magnitude_keeps_pixels_in_range(magnitude: float) -> None:
    cfg = AugmentConfig(ops=len(OPS), magnitude=magnitude, jitter=0.4)
    out = BatchAugment(cfg)(_batch(), torch.Generator().manual_seed(0))
    pixels = out * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) + torch.tensor(
        [0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_affine_grid_equals_torch() -> None:
    from data_utils.augment import affine_grid

    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.affine_grid(theta, [5, 3, 17, 17], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, 17), expected, atol=1e-5, rtol=0)


def test_jitter_without_geometry_still_changes_colours() -> None:
    x = _batch()
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, jitter=0.4,
                        ops=0, magnitude=0.0)
    out = BatchAugment(cfg)(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(out, normalize(to_float(x)), atol=1e-3)


def test_eval_preparation_equals_float_normalisation() -> None:
    x = _batch()
    torch.testing.assert_close(prepare_eval(x), normalize(to_float(x)), atol=1e-5, rtol=0)
