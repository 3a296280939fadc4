"""Small building pieces shared by the blocks: channel rounding, conv-norm-act, squeeze-excite."""

from __future__ import annotations

import torch
from torch import nn

from models.registry import get_act, get_norm


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor` without dropping more than 10 %.

    The same rule as the MobileNet papers and torchvision, so that presets match them exactly.
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation, 'same' padding; the conv has a bias only without a norm."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: str = "relu",
        norm: str = "bn",
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups,
                bias=norm == "none",
            ),
            get_norm(norm, out_ch),
            get_act(act),
        )


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> 1x1 reduce -> act -> 1x1 expand -> gate -> scale."""

    def __init__(self, channels: int, squeeze: int, act: str = "relu", gate: str = "hardsigmoid"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = get_act(act)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = get_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))
        return x * scale
