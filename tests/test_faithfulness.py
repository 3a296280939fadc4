"""Our builder reproduces torchvision's nets layer for layer: same parameter count, MACs within
1 %. This checks the block implementations against a peer implementation, not against ourselves."""

import pytest
import torch
from torch import nn

import models
from models.cost import count_macs, count_params


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v2", "shufflenet_v2_x0_5"])
def test_preset_matches_torchvision(name: str) -> None:
    ours = models.build(name, num_classes=1000, input_size=224)
    theirs = models.build(f"tv/{name}", num_classes=1000)
    assert count_params(ours) == count_params(theirs)
    ours_macs, theirs_macs = count_macs(ours, 224), count_macs(theirs, 224)
    assert abs(ours_macs - theirs_macs) <= 0.01 * theirs_macs


def test_mobilenet_v3_small_mac_count_is_the_published_one() -> None:
    # The MobileNetV3 paper reports 56M multiply-adds for Small 1.0 at 224 px.
    macs = count_macs(models.build("mobilenet_v3_small", num_classes=1000, input_size=224), 224)
    assert 55e6 < macs < 58e6


def test_single_conv_macs_equal_hand_count() -> None:
    conv = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
    # output 16 x 16 x 16 at 32 px input; each output value is 3*3*3 multiply-adds
    assert count_macs(conv, 32) == 16 * 16 * 16 * 3 * 3 * 3
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    assert count_macs(lin, 8) == 3 * 8 * 8 * 10
    assert count_macs(conv, 32, batch=4) == 4 * count_macs(conv, 32)


def test_reference_nets_build_with_task_classes() -> None:
    for name in models.reference.REFERENCE_NETS:
        net = models.build(f"tv/{name}", num_classes=6).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 3, 64, 64)).shape == (1, 6)
    half = models.build("tv/mobilenet_v2", num_classes=6, width=0.5)
    assert count_params(half) < count_params(models.build("tv/mobilenet_v2", num_classes=6))
    with pytest.raises(ValueError, match="fixed width"):
        models.build("tv/shufflenet_v2_x0_5", width=0.5)
    with pytest.raises(KeyError, match="unknown reference net 'resnet9'"):
        models.build("tv/resnet9")
