import math

import pytest
import torch
from torch import nn

from models.registry import BLOCKS, get_act, get_block, register_block

SIZES = [(32, 32), (33, 47)]


def _expected_channels(block: nn.Module, in_ch: int, out_ch: int) -> int:
    return in_ch if block.skips else out_ch


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("in_ch,out_ch", [(16, 32), (24, 24)])
def test_block_forward_and_backward(name: str, stride: int, in_ch: int, out_ch: int) -> None:
    torch.manual_seed(0)
    block = get_block(name)(in_ch, out_ch, stride)
    for h, w in SIZES:
        x = torch.randn(2, in_ch, h, w, requires_grad=True)
        y = block(x)
        eff_stride = block.stride
        assert y.shape == (
            2, _expected_channels(block, in_ch, out_ch), math.ceil(h / eff_stride),
            math.ceil(w / eff_stride),
        )
        assert block.out_channels == y.shape[1]
        assert torch.isfinite(y).all()
        block.zero_grad()
        y.square().mean().backward()
        for pname, param in block.named_parameters():
            assert param.grad is not None, f"{name}: no gradient reaches {pname}"
            assert torch.isfinite(param.grad).all()
        assert x.grad is not None


def test_pass_block_keeps_shape_and_has_no_parameters() -> None:
    block = get_block("pass")(16, 64, 2)
    x = torch.randn(1, 16, 9, 9)
    assert block(x) is x
    assert not list(block.parameters())


def test_unknown_block_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown block 'nope'.*irv3"):
        get_block("nope")


def test_duplicate_block_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_block("irv3")
        class Again(nn.Module):
            pass


def test_unknown_activation_raises() -> None:
    with pytest.raises(KeyError, match="unknown activation 'swishy'"):
        get_act("swishy")


def test_shuffle_block_rejects_odd_width() -> None:
    with pytest.raises(ValueError, match="even out_channels"):
        get_block("shuffle")(16, 33, 2)
