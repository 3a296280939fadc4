"""Name -> class registries for blocks, activations and norms.

Specs and configs name things by string; these tables turn names into classes without
`eval` and without if/elif chains. Adding a block is one decorated class: nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

T = TypeVar("T", bound=type)

BLOCKS: dict[str, type[nn.Module]] = {}


def register_block(name: str) -> Callable[[T], T]:
    """Class decorator: make a block buildable by `name` from a spec."""

    def wrap(cls: T) -> T:
        if name in BLOCKS:
            raise ValueError(
                f"block name {name!r} is already registered by {BLOCKS[name].__qualname__}; "
                "choose another name"
            )
        BLOCKS[name] = cls
        cls.block_name = name
        return cls

    return wrap


def _lookup(table: dict, kind: str, name: str):
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise KeyError(f"unknown {kind} {name!r}; known {kind}s: {known}") from None


def get_block(name: str) -> type[nn.Module]:
    return _lookup(BLOCKS, "block", name)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": nn.Hardsigmoid,
    "none": nn.Identity,
}

# In-place activations save memory on the small devices we target; GELU/Sigmoid have no
# in-place form, so only these take `inplace=True`.
_INPLACE = {"relu", "relu6", "hardswish", "silu", "hardsigmoid"}


def get_act(name: str) -> nn.Module:
    cls = _lookup(ACTIVATIONS, "activation", name)
    return cls(inplace=True) if name in _INPLACE else cls()


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "none": lambda channels: nn.Identity(),
}


def get_norm(name: str, channels: int) -> nn.Module:
    return _lookup(NORMS, "norm", name)(channels)
