"""`ModelSpec`: an architecture as typed, validated data that round-trips through YAML exactly.

A spec is what the search samples, what a trial records, and what the final job, the
benchmarks and a user read and edit. It is frozen: a spec that exists has passed validation.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

import models.blocks  # noqa: F401  (registers the blocks the spec may name)
from models.layers import make_divisible
from models.registry import ACTIVATIONS, BLOCKS

# Five stride-2 reductions (32x), as in MobileNet/ShuffleNet and the seed projects' space.
MAX_TOTAL_STRIDE = 32
KERNELS = (1, 3, 5, 7)
# Spec fields a stage may set for its block; None means "the block's default".
STAGE_BLOCK_ARGS = ("kernel", "expansion", "se", "act")


class SpecError(ValueError):
    """An invalid spec; the message names the field (e.g. `stages[2].stride`)."""


@dataclass(frozen=True)
class StemSpec:
    channels: int = 16
    kernel: int = 3
    stride: int = 2
    act: str = "hardswish"
    pool: bool = False  # a 3x3/2 max-pool after the stem conv (ShuffleNet)


@dataclass(frozen=True)
class StageSpec:
    block: str
    out_channels: int
    repeats: int = 1
    stride: int = 1  # of the first block; the repeats keep stride 1
    kernel: int | None = None
    expansion: float | None = None
    se: bool | None = None
    act: str | None = None

    def block_args(self) -> dict[str, Any]:
        """The keyword arguments this stage passes to its block (unset ones use its default)."""
        return {k: getattr(self, k) for k in STAGE_BLOCK_ARGS if getattr(self, k) is not None}


@dataclass(frozen=True)
class HeadSpec:
    channels: int = 576  # 1x1 conv before pooling; 0 = none. Absolute, not width-scaled.
    hidden: int = 0  # Linear + act after pooling (MobileNetV3 uses 1024); 0 = none
    dropout: float = 0.2
    act: str = "hardswish"


@dataclass(frozen=True)
class ModelSpec:
    stages: tuple[StageSpec, ...]
    stem: StemSpec = field(default_factory=StemSpec)
    head: HeadSpec = field(default_factory=HeadSpec)
    name: str = "litenet"
    width: float = 1.0  # multiplies stem and stage channels (rounded to multiples of 8)
    depth: float = 1.0  # multiplies stage repeats (rounded up, at least 1)
    input_size: int = 64
    num_classes: int = 6

    def __post_init__(self) -> None:
        # Accept lists from callers; store tuples so specs are hashable and compare exactly.
        object.__setattr__(self, "stages", tuple(self.stages))
        _validate(self)

    # -- derived quantities (one place, used by the builder and the validation) --------------
    def channels(self, channels: int) -> int:
        return make_divisible(channels * self.width)

    def repeats(self, repeats: int) -> int:
        return max(1, math.ceil(repeats * self.depth))

    def total_stride(self) -> int:
        stride = self.stem.stride * (2 if self.stem.pool else 1)
        for stage in self.stages:
            if not BLOCKS[stage.block].skips:
                stride *= stage.stride
        return stride

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "spec") -> ModelSpec:
        try:
            return _from_plain(cls, data, "")
        except SpecError as err:
            raise SpecError(f"{source}: {err}") from None

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> ModelSpec:
        """Read a spec from YAML text or a `.yaml`/`.yml` file path."""
        source = "spec"
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or text.endswith((".yaml", ".yml")):
            path = Path(text_or_path)
            if not path.is_file():
                raise SpecError(f"{path}: no such spec file")
            source, text = str(path), path.read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise SpecError(f"{source}: not valid YAML ({err})") from None
        return cls.from_dict(data, source)


# ---------------------------------------------------------------------------------------------
# Validation: every rule names the field it checks.


def _check(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise SpecError(f"{where} {message}")


def _check_act(name: str, where: str) -> None:
    _check(name in ACTIVATIONS, where, f"is {name!r}, not a known activation "
           f"({', '.join(sorted(ACTIVATIONS))})")


def _validate(spec: ModelSpec) -> None:
    _check(len(spec.stages) > 0, "stages", "must list at least one stage")
    _check(0 < spec.width <= 4, "width", f"must be in (0, 4], got {spec.width}")
    _check(0 < spec.depth <= 4, "depth", f"must be in (0, 4], got {spec.depth}")
    _check(spec.input_size >= 8, "input_size", f"must be >= 8 pixels, got {spec.input_size}")
    _check(spec.num_classes >= 2, "num_classes", f"must be >= 2, got {spec.num_classes}")

    stem = spec.stem
    _check(stem.channels > 0, "stem.channels", f"must be > 0, got {stem.channels}")
    _check(stem.kernel in KERNELS, "stem.kernel", f"must be one of {KERNELS}, got {stem.kernel}")
    _check(stem.stride in (1, 2), "stem.stride", f"must be 1 or 2, got {stem.stride}")
    _check_act(stem.act, "stem.act")

    for i, stage in enumerate(spec.stages):
        where = f"stages[{i}]"
        if stage.block not in BLOCKS:
            raise SpecError(f"{where}.block is {stage.block!r}, not a known block; known "
                            f"blocks: {', '.join(sorted(BLOCKS))}")
        _check(stage.out_channels > 0, f"{where}.out_channels",
               f"must be > 0, got {stage.out_channels}")
        _check(stage.repeats >= 1, f"{where}.repeats", f"must be >= 1, got {stage.repeats}")
        _check(stage.stride in (1, 2), f"{where}.stride", f"must be 1 or 2, got {stage.stride}")
        accepted = inspect.signature(BLOCKS[stage.block]).parameters
        for name, _value in stage.block_args().items():
            _check(name in accepted, f"{where}.{name}",
                   f"is set, but block {stage.block!r} takes no {name!r} (it takes: "
                   f"{', '.join(a for a in STAGE_BLOCK_ARGS if a in accepted) or 'nothing'})")
        if stage.kernel is not None:
            _check(stage.kernel in KERNELS, f"{where}.kernel",
                   f"must be one of {KERNELS}, got {stage.kernel}")
        if stage.expansion is not None:
            _check(0 < stage.expansion <= 12, f"{where}.expansion",
                   f"must be in (0, 12], got {stage.expansion}")
        if stage.act is not None:
            _check_act(stage.act, f"{where}.act")

    head = spec.head
    _check(head.channels >= 0, "head.channels", f"must be >= 0, got {head.channels}")
    _check(head.hidden >= 0, "head.hidden", f"must be >= 0, got {head.hidden}")
    _check(0 <= head.dropout < 1, "head.dropout", f"must be in [0, 1), got {head.dropout}")
    _check_act(head.act, "head.act")

    total = spec.total_stride()
    _check(total <= MAX_TOTAL_STRIDE, "stages",
           f"downsample by {total}x in all, over the budget of {MAX_TOTAL_STRIDE}x "
           "(five stride-2 layers, stem included): set some stage strides to 1")
    _check(total <= spec.input_size, "input_size",
           f"is {spec.input_size}, smaller than the total stride {total}: the feature map "
           "would vanish; raise input_size or lower strides")


# ---------------------------------------------------------------------------------------------
# Plain-data conversion with type checks (no pydantic: specs are small frozen dataclasses and
# must stay cheap to construct inside search loops).


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is not None:  # unset optional fields stay out of the YAML
                out[f.name] = _to_plain(value)
        return out
    if isinstance(obj, tuple | list):
        return [_to_plain(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _from_plain(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # `X | None`
        inner = [a for a in get_args(tp) if a is not type(None)]
        return None if value is None else _from_plain(inner[0], value, where)
    if origin is tuple:  # tuple[StageSpec, ...]
        if not isinstance(value, list | tuple):
            raise SpecError(f"{where or 'value'} must be a list, got {type(value).__name__}")
        item_tp = get_args(tp)[0]
        return tuple(_from_plain(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SpecError(f"{where or 'spec'} must be a mapping, got {type(value).__name__}")
        hints = get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise SpecError(f"{where + '.' if where else ''}{unknown[0]} is not a known field "
                            f"(known: {', '.join(sorted(names))})")
        missing = [f.name for f in dataclasses.fields(tp) if f.name not in value
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SpecError(f"{where + '.' if where else ''}{missing[0]} is required")
        kwargs = {k: _from_plain(hints[k], v, f"{where + '.' if where else ''}{k}")
                  for k, v in value.items()}
        return tp(**kwargs)
    # Scalars: bool is not an int here, and an int is accepted where a float is meant.
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise SpecError(f"{where} must be {_type_name(tp)}, got {value!r}")
