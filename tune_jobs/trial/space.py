"""The search space: one sampling function over the declarative space of the config.

`sample(space, chooser)` walks the slots in a loop and asks the chooser for each value it
needs: an Optuna trial (define-by-run, so a block's arguments are asked only when that block
is chosen), or a dict of values a searcher already drew (the trainable re-runs the same walk
on its config to rebuild the candidate). Invalid networks cannot be drawn: strides are asked
only while the downsampling budget lasts, channels are rounded by the spec.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Protocol

from models.registry import BLOCKS
from models.spec import MAX_TOTAL_STRIDE, STAGE_BLOCK_ARGS, HeadSpec, ModelSpec, StageSpec, StemSpec
from tune_jobs.config import Param, Range, Scalar, SpaceConfig
from tune_jobs.trial.data import SEP, flatten

STEM_STRIDE = 2


class Chooser(Protocol):
    def choose(self, name: str, param: Param) -> Scalar: ...


class OptunaChooser:
    """Asks an Optuna trial (`suggest_*`), so the study records the distribution of each value."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def choose(self, name: str, param: Param) -> Scalar:
        if isinstance(param, list):
            return self.trial.suggest_categorical(name, param)
        if param.int:
            return self.trial.suggest_int(name, int(param.low), int(param.high),
                                          step=int(param.step or 1), log=param.log)
        return self.trial.suggest_float(name, param.low, param.high, step=param.step,
                                        log=param.log)


class DictChooser:
    """Reads values a searcher already drew (flat names like `s2/kernel`)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def choose(self, name: str, param: Param) -> Scalar:
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(f"the trial config has no value for {name!r}") from None


@dataclass(frozen=True)
class TrainParams:
    image_size: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    schedule: str
    label_smoothing: float
    augment_magnitude: float


@dataclass(frozen=True)
class Candidate:
    spec: ModelSpec
    train: TrainParams
    params: dict[str, Scalar]  # every value drawn, by flat name


# Every value's flat name, written once: `sample` asks by these, `flat_params` lists them all.
STEM_FIELDS = ("channels", "act")
SLOT_FIELDS = ("type", "stride", "out", "repeat", *STAGE_BLOCK_ARGS)
HEAD_FIELDS = ("channels", "dropout", "act")
WHOLE_FIELDS = ("width", "depth")  # of the whole network: named as they are


def part_name(part: str, field: str) -> str:
    """`train/lr`, `stem/act`, `head/dropout`."""
    return f"{part}{SEP}{field}"


def slot_name(i: int, field: str) -> str:
    """`s2/kernel`: slot i's field (`type` is the block drawn from its `blocks`)."""
    return f"s{i}{SEP}{field}"


def _slot_param(slot: Any, field: str) -> Param:
    return slot.blocks if field == "type" else getattr(slot, field)


def _accepts(block: str) -> set[str]:
    return set(inspect.signature(BLOCKS[block]).parameters)


def sample(space: SpaceConfig, chooser: Chooser, num_classes: int) -> Candidate:
    drawn: dict[str, Scalar] = {}

    def pick(name: str, param: Param) -> Any:
        # a single choice is a constant: nothing to search, nothing to record
        value = param[0] if isinstance(param, list) and len(param) == 1 else chooser.choose(
            name, param)
        drawn[name] = value
        return value

    t = space.train
    train = TrainParams(**{f: pick(part_name("train", f), getattr(t, f))
                           for f in TrainParams.__dataclass_fields__})
    stem = StemSpec(channels=int(pick(part_name("stem", "channels"), space.stem.channels)),
                    stride=STEM_STRIDE, act=pick(part_name("stem", "act"), space.stem.act))
    budget = min(MAX_TOTAL_STRIDE, space.max_downsample, train.image_size) // STEM_STRIDE
    stages: list[StageSpec] = []
    for i, slot in enumerate(space.slots):
        block = pick(slot_name(i, "type"), slot.blocks)
        if BLOCKS[block].skips:
            continue  # an empty slot adds nothing to the network
        stride = 1
        if budget >= 2:
            stride = int(pick(slot_name(i, "stride"), slot.stride))
            budget //= stride
        accepted = _accepts(block)
        args = {a: pick(slot_name(i, a), getattr(slot, a)) for a in STAGE_BLOCK_ARGS
                if a in accepted}
        if "kernel" in args:
            args["kernel"] = int(args["kernel"])
        if "expansion" in args:
            args["expansion"] = float(args["expansion"])
        stages.append(StageSpec(block=block, out_channels=int(pick(slot_name(i, "out"), slot.out)),
                                repeats=int(pick(slot_name(i, "repeat"), slot.repeat)),
                                stride=stride, **args))
    if not stages:  # every slot drew `pass`: the network is the stem and the head
        stages.append(StageSpec(block="pass", out_channels=stem.channels))
    head = HeadSpec(channels=int(pick(part_name("head", "channels"), space.head.channels)),
                    dropout=float(pick(part_name("head", "dropout"), space.head.dropout)),
                    act=pick(part_name("head", "act"), space.head.act))
    spec = ModelSpec(stages=stages, stem=stem, head=head, name="candidate",
                     **{f: float(pick(f, getattr(space, f))) for f in WHOLE_FIELDS},
                     input_size=train.image_size, num_classes=num_classes)
    return Candidate(spec, train, drawn)


class PathChooser:
    """Takes choice `path[k]` at the k-th decision (0 past the path's end) and records how many
    choices each decision offered: one walk of the define-by-run tree (see `enumerate_space`)."""

    def __init__(self, path: list[int]) -> None:
        self.path = path
        self.options: list[int] = []

    def choose(self, name: str, param: Param) -> Scalar:
        if not isinstance(param, list):
            raise ValueError(f"{name}: a grid needs a list of choices, not a range ({param})")
        k = len(self.options)
        self.options.append(len(param))
        return param[self.path[k] if k < len(self.path) else 0]


def enumerate_space(space: SpaceConfig, num_classes: int) -> list[Candidate]:
    """Every distinct candidate of a space whose values are all lists of choices: the leaves
    of its define-by-run tree (a block's arguments count only where that block is chosen),
    in a fixed order. An odometer over the decisions of each walk: the last decision with
    another choice left moves on, the later ones start again from their first."""
    found, path = [], []
    while True:
        chooser = PathChooser(path)
        found.append(sample(space, chooser, num_classes))
        taken = path + [0] * (len(chooser.options) - len(path))
        k = len(taken) - 1
        while k >= 0 and taken[k] + 1 >= chooser.options[k]:
            k -= 1
        if k < 0:
            return found
        path = [*taken[:k], taken[k] + 1]


def flat_params(space: SpaceConfig) -> dict[str, Param]:
    """Every name `sample` may ask, with its range (for searchers that draw all up front)."""
    params: dict[str, Param] = {part_name("train", f): getattr(space.train, f)
                                for f in TrainParams.__dataclass_fields__}
    params |= {part_name("stem", f): getattr(space.stem, f) for f in STEM_FIELDS}
    for i, slot in enumerate(space.slots):
        params |= {slot_name(i, f): _slot_param(slot, f) for f in SLOT_FIELDS}
    params |= {part_name("head", f): getattr(space.head, f) for f in HEAD_FIELDS}
    params |= {f: getattr(space, f) for f in WHOLE_FIELDS}
    return {k: v for k, v in params.items() if not (isinstance(v, list) and len(v) == 1)}


class DefineByRun:
    """What OptunaSearch calls with each new trial (a class, so the searcher can be pickled
    into Tune's experiment checkpoint for `--resume`)."""

    def __init__(self, space: SpaceConfig, num_classes: int) -> None:
        self.space, self.num_classes = space, num_classes

    def __call__(self, trial: Any) -> None:
        sample(self.space, OptunaChooser(trial), self.num_classes)


def define_by_run(space: SpaceConfig, num_classes: int) -> DefineByRun:
    return DefineByRun(space, num_classes)


def tune_domains(space: SpaceConfig) -> dict[str, Any]:
    """The same space as Ray Tune domains (flat; conditional values are drawn but unused)."""
    from ray import tune

    def domain(param: Param):
        if isinstance(param, list):
            return tune.choice(param)
        if param.int:
            return (tune.lograndint(int(param.low), int(param.high) + 1) if param.log else
                    tune.qrandint(int(param.low), int(param.high), int(param.step or 1)))
        if param.log:
            return tune.loguniform(param.low, param.high)
        return (tune.quniform(param.low, param.high, param.step) if param.step else
                tune.uniform(param.low, param.high))

    return {name: domain(p) for name, p in flat_params(space).items()}


def optuna_distributions(space: SpaceConfig) -> dict[str, Any]:
    """Optuna distributions of every name, to record trials drawn by other searchers."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    def dist(param: Param):
        if isinstance(param, list):
            return CategoricalDistribution(param)
        if param.int:
            return IntDistribution(int(param.low), int(param.high), log=param.log,
                                   step=int(param.step or 1))
        return FloatDistribution(param.low, param.high, log=param.log, step=param.step)

    return {name: dist(p) for name, p in flat_params(space).items()}


def candidate_from_config(config: dict[str, Any], space: SpaceConfig,
                          num_classes: int) -> Candidate:
    return sample(space, DictChooser(flatten(config)), num_classes)


__all__ = ["Candidate", "Range", "TrainParams", "candidate_from_config", "define_by_run",
           "enumerate_space", "flat_params", "optuna_distributions", "sample", "tune_domains"]
