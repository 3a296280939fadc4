import pytest
import torch

from data_utils.augment import (
    OPS,
    AugmentConfig,
    BatchAugment,
    normalize,
    prepare_eval,
    to_float,
    to_input,
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


def test_identity_config_returns_the_uint8_input_and_to_input_normalises_it() -> None:
    x = _batch()
    out = BatchAugment(IDENTITY)(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and torch.equal(out, x)  # stays pixels until the device
    torch.testing.assert_close(to_input(out), normalize(to_float(x)), atol=1e-5, rtol=0)


def test_flip_is_a_true_mirror() -> None:
    x = _batch()
    cfg = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=1.0, jitter=0.0,
                        ops=0, magnitude=0.0)
    out = BatchAugment(cfg)(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and torch.equal(out, x.flip(-1))
    assert torch.equal(BatchAugment(cfg)(x)[0], x[0].flip(-1)) and torch.equal(x, _batch())


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
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1


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
    assert not torch.allclose(out, to_float(x), atol=1e-3)


def test_eval_preparation_equals_float_normalisation() -> None:
    x = _batch()
    torch.testing.assert_close(prepare_eval(x), normalize(to_float(x)), atol=1e-5, rtol=0)
    # to_input reads uint8 pixels and [0, 1] floats alike
    torch.testing.assert_close(to_input(to_float(x)), to_input(x), atol=1e-5, rtol=0)


def test_box_mean_equals_avg_pool_without_padded_zeros() -> None:
    from data_utils.augment import box_mean3

    x = torch.rand(4, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1,
                                              count_include_pad=False)
    torch.testing.assert_close(box_mean3(x), expected, atol=1e-6, rtol=0)


def test_pixel_ops_masked_for_the_gpu_equal_the_cpu_subsets() -> None:
    from data_utils.augment import pixel_ops

    x = to_float(_batch(16))
    g = torch.Generator().manual_seed(5)
    aug = BatchAugment(AugmentConfig(ops=4, magnitude=0.7))
    masks = aug._op_masks(16, g, x.device)
    torch.testing.assert_close(pixel_ops(x.clone(), masks, 0.7, masked=True),
                               pixel_ops(x.clone(), masks, 0.7, masked=False),
                               atol=1e-6, rtol=0)
