"""`build_model(spec)`: the one loop that turns a `ModelSpec` into a network."""

from __future__ import annotations

import torch
from torch import nn

from models.layers import ConvNormAct
from models.registry import get_act, get_block
from models.spec import ModelSpec


class LiteNet(nn.Module):
    """stem -> stages -> head conv -> global pool -> classifier; `spec` is kept for export."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        stem_ch = spec.channels(spec.stem.channels)
        stem: list[nn.Module] = [
            ConvNormAct(3, stem_ch, spec.stem.kernel, spec.stem.stride, act=spec.stem.act)
        ]
        if spec.stem.pool:
            stem.append(nn.MaxPool2d(3, 2, padding=1))
        self.stem = nn.Sequential(*stem)

        blocks: list[nn.Module] = []
        channels = stem_ch
        for stage in spec.stages:
            block_cls = get_block(stage.block)
            if block_cls.skips:
                continue
            out_ch = spec.channels(stage.out_channels)
            for i in range(spec.repeats(stage.repeats)):
                block = block_cls(channels, out_ch, stage.stride if i == 0 else 1,
                                  **stage.block_args())
                blocks.append(block)
                channels = block.out_channels
        self.blocks = nn.Sequential(*blocks)

        head = spec.head
        if head.channels:
            self.head_conv: nn.Module = ConvNormAct(channels, head.channels, 1, act=head.act)
            channels = head.channels
        else:
            self.head_conv = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        classifier: list[nn.Module] = []
        if head.hidden:
            classifier += [nn.Linear(channels, head.hidden), get_act(head.act)]
            channels = head.hidden
        classifier += [nn.Dropout(head.dropout), nn.Linear(channels, spec.num_classes)]
        self.classifier = nn.Sequential(*classifier)
        self.num_features = channels
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_conv(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def _init_weights(module: nn.Module) -> None:
    # torchvision's MobileNet initialisation: trains from scratch at search learning rates.
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0, 0.01)
        nn.init.zeros_(module.bias)


def build_model(spec: ModelSpec) -> LiteNet:
    return LiteNet(spec)
