"""The blocks a search can place in a stage, one class each, all built by the same contract.

Contract: `Block(in_ch, out_ch, stride, **block_args)`; every block sets `self.out_channels`
(what the next block receives) and `self.stride` (how much it downsamples). The keyword
arguments a block's constructor takes are exactly the spec fields it accepts; `ModelSpec`
reads the signature to reject fields a block would ignore.
"""

from __future__ import annotations

import torch
from torch import nn

from models.layers import ConvNormAct, SqueezeExcite, make_divisible
from models.registry import register_block


class Block(nn.Module):
    """Base: records shape bookkeeping and adds the residual when shapes allow."""

    # True for blocks that leave the slot empty: the builder's channel/stride bookkeeping and
    # the spec's stride budget skip them.
    skips: bool = False

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.in_channels = in_ch
        self.out_channels = out_ch
        self.stride = stride

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@register_block("conv")
class ConvBlock(Block):
    """Plain conv-bn-act (the seed projects' 'Conv')."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel: int = 3, act: str = "relu"):
        super().__init__(in_ch, out_ch, stride)
        self.conv = ConvNormAct(in_ch, out_ch, kernel, stride, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@register_block("dwsep")
class DepthwiseSeparable(Block):
    """MobileNetV1 depthwise kxk + pointwise 1x1, optional SE, residual when shapes match."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int = 3, se: bool = False,
        act: str = "relu",
    ) -> None:
        super().__init__(in_ch, out_ch, stride)
        self.dw = ConvNormAct(in_ch, in_ch, kernel, stride, groups=in_ch, act=act)
        self.se = SqueezeExcite(in_ch, make_divisible(in_ch / 4)) if se else nn.Identity()
        self.pw = ConvNormAct(in_ch, out_ch, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pw(self.se(self.dw(x)))
        return x + out if self.has_residual else out


class _InvertedResidual(Block):
    """MobileNetV2/V3 and EfficientNet MBConv: 1x1 expand -> kxk depthwise -> SE -> 1x1 project.

    The expansion conv is left out when the expanded width equals the input width, as in
    torchvision, so presets match its parameter counts exactly.
    """

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, *, kernel: int, expansion: float, act: str,
        se_channels: int, se_act: str, se_gate: str,
    ) -> None:
        super().__init__(in_ch, out_ch, stride)
        hidden = make_divisible(in_ch * expansion)
        layers: list[nn.Module] = []
        if hidden != in_ch:
            layers.append(ConvNormAct(in_ch, hidden, 1, act=act))
        layers.append(ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se_channels:
            layers.append(SqueezeExcite(hidden, se_channels, act=se_act, gate=se_gate))
        layers.append(ConvNormAct(hidden, out_ch, 1, act="none"))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.has_residual else out


@register_block("irv2")
class InvertedResidualV2(_InvertedResidual):
    """MobileNetV2 inverted residual (ReLU6, linear bottleneck)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int = 3, expansion: float = 6.0,
        act: str = "relu6",
    ) -> None:
        super().__init__(
            in_ch, out_ch, stride, kernel=kernel, expansion=expansion, act=act,
            se_channels=0, se_act="relu", se_gate="hardsigmoid",
        )


@register_block("irv3")
class InvertedResidualV3(_InvertedResidual):
    """MobileNetV3 inverted residual: SE on the expanded width (1/4, hard-sigmoid gate)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int = 3, expansion: float = 4.0,
        se: bool = True, act: str = "hardswish",
    ) -> None:
        hidden = make_divisible(in_ch * expansion)
        super().__init__(
            in_ch, out_ch, stride, kernel=kernel, expansion=expansion, act=act,
            se_channels=make_divisible(hidden // 4) if se else 0, se_act="relu",
            se_gate="hardsigmoid",
        )


@register_block("mbconv")
class MBConv(_InvertedResidual):
    """EfficientNet MBConv: SiLU, SE sized on the input width (1/4), sigmoid gate."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int = 3, expansion: float = 6.0,
        se: bool = True, act: str = "silu",
    ) -> None:
        super().__init__(
            in_ch, out_ch, stride, kernel=kernel, expansion=expansion, act=act,
            se_channels=max(1, in_ch // 4) if se else 0, se_act=act, se_gate="sigmoid",
        )


@register_block("fused_mbconv")
class FusedMBConv(Block):
    """EfficientNetV2 Fused-MBConv: one kxk expand conv (strided) + 1x1 project.

    With expansion 1 it is a single kxk conv, as in EfficientNetV2.
    """

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int = 3, expansion: float = 4.0,
        se: bool = False, act: str = "silu",
    ) -> None:
        super().__init__(in_ch, out_ch, stride)
        if expansion == 1:
            layers: list[nn.Module] = [ConvNormAct(in_ch, out_ch, kernel, stride, act=act)]
        else:
            hidden = make_divisible(in_ch * expansion)
            layers = [ConvNormAct(in_ch, hidden, kernel, stride, act=act)]
            if se:
                layers.append(SqueezeExcite(hidden, max(1, in_ch // 4), act=act, gate="sigmoid"))
            layers.append(ConvNormAct(hidden, out_ch, 1, act="none"))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.has_residual else out


@register_block("fire")
class Fire(Block):
    """SqueezeNet Fire: 1x1 squeeze to out/8, then 1x1 and 3x3 expands concatenated.

    SqueezeNet downsamples with max-pools between fires; a strided Fire pools first. BN is
    added (SqueezeNet 1.1 has none) so deep stacks train at search learning rates.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, act: str = "relu") -> None:
        super().__init__(in_ch, out_ch, stride)
        squeeze = make_divisible(out_ch / 8)
        self.pool = (
            nn.MaxPool2d(3, stride, padding=1) if stride > 1 else nn.Identity()
        )
        self.squeeze = ConvNormAct(in_ch, squeeze, 1, act=act)
        self.expand1 = ConvNormAct(squeeze, out_ch // 2, 1, act=act)
        self.expand3 = ConvNormAct(squeeze, out_ch - out_ch // 2, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(self.pool(x))
        out = torch.cat([self.expand1(s), self.expand3(s)], dim=1)
        return x + out if self.has_residual else out


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


@register_block("shuffle")
class ShuffleUnit(Block):
    """ShuffleNetV2 unit. With stride 1 and equal widths it splits the channels in half and
    transforms one half; otherwise (downsampling or widening) both branches see the input."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int = 3, act: str = "relu"
    ) -> None:
        super().__init__(in_ch, out_ch, stride)
        if out_ch % 2:
            raise ValueError(f"shuffle block needs an even out_channels, got {out_ch}")
        branch = out_ch // 2
        self.split = stride == 1 and in_ch == out_ch
        if self.split:
            self.branch1 = nn.Identity()
            branch2_in = branch
        else:
            self.branch1 = nn.Sequential(
                ConvNormAct(in_ch, in_ch, kernel, stride, groups=in_ch, act="none"),
                ConvNormAct(in_ch, branch, 1, act=act),
            )
            branch2_in = in_ch
        self.branch2 = nn.Sequential(
            ConvNormAct(branch2_in, branch, 1, act=act),
            ConvNormAct(branch, branch, kernel, stride, groups=branch, act="none"),
            ConvNormAct(branch, branch, 1, act=act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.branch2(x2)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


@register_block("pass")
class Pass(Block):
    """An empty slot: the input passes through unchanged (width and resolution kept)."""

    skips = True

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__(in_ch, in_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
