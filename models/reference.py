"""Reference nets from torchvision behind the litesearch build interface.

Built with random weights (`weights=None`): nothing is downloaded. Benchmarks train them with
the same recipe as a searched model to compare like with like.
"""

from __future__ import annotations

from collections.abc import Callable

import torchvision.models as tvm
from torch import nn

ReferenceFactory = Callable[[int, float], nn.Module]


def _fixed_width(name: str, build: Callable[..., nn.Module]) -> ReferenceFactory:
    """ShuffleNetV2's width is part of its name in torchvision; other widths are other names."""

    def factory(num_classes: int, width: float) -> nn.Module:
        if width != 1.0:
            raise ValueError(f"{name} has a fixed width; pick another shufflenet_v2_x* name")
        return build(weights=None, num_classes=num_classes)

    return factory


def _width_mult(build: Callable[..., nn.Module]) -> ReferenceFactory:
    def factory(num_classes: int, width: float) -> nn.Module:
        return build(weights=None, num_classes=num_classes, width_mult=width)

    return factory


REFERENCE_NETS: dict[str, ReferenceFactory] = {
    "mobilenet_v3_small": _width_mult(tvm.mobilenet_v3_small),
    "mobilenet_v3_large": _width_mult(tvm.mobilenet_v3_large),
    "mobilenet_v2": _width_mult(tvm.mobilenet_v2),
    "shufflenet_v2_x0_5": _fixed_width("shufflenet_v2_x0_5", tvm.shufflenet_v2_x0_5),
    "shufflenet_v2_x1_0": _fixed_width("shufflenet_v2_x1_0", tvm.shufflenet_v2_x1_0),
}


def build_reference(name: str, num_classes: int, width: float = 1.0) -> nn.Module:
    try:
        factory = REFERENCE_NETS[name]
    except KeyError:
        raise KeyError(
            f"unknown reference net {name!r}; known: {', '.join(sorted(REFERENCE_NETS))}"
        ) from None
    return factory(num_classes, width)
