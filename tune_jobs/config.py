"""The one typed configuration of a search, loaded from YAML with `--set a.b=value` overrides.

Errors name the key and the file: an unknown key, a wrong type, an impossible range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from configs import config_dir

CONFIG_DIR = config_dir()
DEFAULT_CONFIG = CONFIG_DIR / "demo.yaml"

Scalar = bool | int | float | str


class ConfigError(ValueError):
    """A bad configuration; the message names the file and the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(Strict):
    """A numeric range: float unless `int: true`; sampled log-uniformly with `log: true`."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    int: bool = False

    @model_validator(mode="after")
    def _check(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step:
            raise ValueError("a range cannot be both log and stepped")
        return self


# A searchable value: a fixed list of choices, or a numeric range.
Param = list[Scalar] | Range


def _nonempty(name: str, value: Param) -> None:
    if isinstance(value, list) and not value:
        raise ValueError(f"{name} lists no choices")


class SlotSpace(Strict):
    """One stage slot: which block, and the ranges of its arguments (sampled only when the
    chosen block takes them)."""

    blocks: list[str]
    out: Param = [16, 24, 32]
    stride: list[int] = [1, 2]
    repeat: Param = [1, 2]
    kernel: Param = [3, 5]
    expansion: Param = [1.0, 3.0, 6.0]
    se: list[bool] = [False, True]
    act: list[str] = ["relu", "hardswish"]

    @model_validator(mode="after")
    def _check(self) -> SlotSpace:
        for name in type(self).model_fields:
            _nonempty(name, getattr(self, name))
        return self


class StemSpace(Strict):
    channels: Param = [16]
    act: list[str] = ["hardswish"]


class HeadSpace(Strict):
    channels: Param = Range(low=128, high=1024, step=64, int=True)
    dropout: Param = [0.2]
    act: list[str] = ["hardswish"]


class TrainSpace(Strict):
    image_size: list[int] = [32, 48, 64]
    batch_size: list[int] = [64, 128]
    optimizer: list[str] = ["sgd", "adamw"]
    lr: Param = Range(low=1e-3, high=0.2, log=True)
    weight_decay: Param = Range(low=1e-5, high=1e-3, log=True)
    schedule: list[str] = ["cosine", "onecycle"]
    label_smoothing: Param = Range(low=0.0, high=0.2)
    augment_magnitude: Param = Range(low=0.0, high=0.6)


class SpaceConfig(Strict):
    stem: StemSpace = StemSpace()
    slots: list[SlotSpace]
    head: HeadSpace = HeadSpace()
    width: Param = [0.25, 0.5, 0.75, 1.0]
    depth: Param = [0.25, 0.5, 0.75, 1.0]
    max_downsample: int = Field(32, ge=1, description="total stride budget, stem included")
    train: TrainSpace = TrainSpace()


class DataConfig(Strict):
    path: str | None = None  # None: the built-in demo data
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1, description="held out when no test/ folder")
    resize: Literal["resize", "pad"] = "resize"
    cache_dir: str | None = None
    workers: int | None = Field(None, ge=1)
    class_weights: Literal["none", "inverse", "effective"] = "none"
    balanced_sampler: bool = False


class ObjectiveConfig(Strict):
    # score: the competition's (lower is better); f1: the highest validation macro-F1 under
    # the budgets below (how a team with a latency budget states it). search.algorithm nsga2
    # searches the Pareto front of F1 vs latency instead.
    kind: Literal["score", "f1"] = "score"
    f1_ref: float = Field(0.70, gt=0, lt=1)
    reference: str = "baseline"  # a preset or tv/<name>: the latency reference
    reference_size: int = Field(64, ge=8)
    latency_threads: int = Field(1, ge=1)
    # how the latency ratio is timed (tune_jobs/trial/objective.py): eager PyTorch (torch),
    # ONNX Runtime fp32 (ort), or the candidate quantized to int8 in ORT against the fp32
    # reference (ort-int8: what the robot runs when int8 ships)
    latency: Literal["torch", "ort", "ort-int8"] = "torch"
    max_params: int | None = Field(None, ge=1)
    max_macs: int | None = Field(None, ge=1)
    max_latency_ratio: float | None = Field(None, gt=0)
    # A torchvision net (e.g. mobilenet_v3_small) whose latency ratio, timed with each
    # candidate's at the candidate's image size, is a latency budget: the accurate operating
    # point's "the most accurate net no slower than the usual pick"
    max_latency_of: str | None = None


class TPEConfig(Strict):
    """Optuna's TPE sampler (search.algorithm: tpe). `multivariate` models the parameters
    jointly (`group`: per group of the define-by-run space's conditional values);
    `constant_liar` keeps trials proposed while others still run from landing on the same
    point. The defaults are Optuna 5's for one objective: measured on the learning-curve
    replay, independent TPE proposed the same grid cell again in half of its trials and did
    worse than random search (BENCHMARKS.md, "Searcher settings")."""

    multivariate: bool = True
    group: bool = False
    constant_liar: bool = True
    n_startup_trials: int = Field(10, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TPEConfig:
        if self.group and not self.multivariate:
            raise ValueError("group needs multivariate: true")
        return self


class SearchConfig(Strict):
    algorithm: Literal["tpe", "gp", "nsga2", "random", "hyperopt"] = "tpe"
    tpe: TPEConfig = TPEConfig()
    num_samples: int = Field(24, ge=1)
    # Optuna samplers: a proposal equal to a finished trial reuses its result, trains nothing
    deduplicate: bool = True
    max_concurrent: int = Field(2, ge=1)
    seed: int = 0
    storage: str | None = None  # None: $LITESEARCH_STORAGE, else SQLite in the run folder
    study: str = "litesearch"
    # Tune's experiment and trial checkpoints. None: $LITESEARCH_RESULTS, else OUTPUT/ray.
    # On a cluster every node must reach it: an s3://bucket/prefix URI or a shared folder.
    results_path: str | None = None
    max_failures: int = Field(1, ge=0, description="retries of a trial whose worker died")
    # A trial saves a checkpoint when this many seconds of training passed since its last
    # one (0: every epoch). A retried or resumed trial restarts from it; short trials rarely
    # need one, and each one is a write plus, in Tune, an experiment snapshot.
    checkpoint_interval_s: float = Field(30, ge=0)


# What an ASHA rung ranks trials by, and which way is better. The searcher always learns the
# objective; a rung only decides which trials go on training.
# tse_ema: training-speed estimation (Ru et al., NeurIPS 2021), the training losses of the
# epochs so far summed with weights 0.9 ** age (`trial/report.py` `next_tse_ema`).
RUNG_METRICS: dict[str, str] = {"score": "min", "f1": "max", "val_loss": "min",
                                "accuracy": "max", "tse_ema": "min"}


class SchedulerConfig(Strict):
    max_epochs: int = Field(8, ge=1)
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3, gt=1)
    early_stopping: bool = True  # False: every trial trains to max_epochs (FIFO)
    # asha: every trial may run to max_epochs. pasha (Bohdal et al. 2023): the maximum starts
    # at the second rung and rises a rung at a time only while the top two rungs rank their
    # trials differently; a trial stopped at the maximum of its time is COMPLETE at it.
    algorithm: Literal["asha", "pasha"] = "asha"
    # The rungs' ranking. TSE-EMA by default: early in training the score is the latency
    # ratio in disguise (its F1 term is flat below f1_ref) and F1 at argmax barely moves,
    # while how fast the training loss falls already orders the candidates that learn;
    # latency, params and MACs are budgets checked before training, not something a rung
    # re-ranks. Chosen on table A2 and confirmed on the held-out table B (BENCHMARKS.md): at
    # epoch 3 Spearman with the final score +0.71 against val loss's +0.34 on B, and ASHA
    # ending 0.040 [0.011, 0.071] better than by val loss (within noise of no pruning).
    metric: Literal["score", "f1", "val_loss", "accuracy", "tse_ema"] = "tse_ema"

    @model_validator(mode="after")
    def _check(self) -> SchedulerConfig:
        if self.grace_period > self.max_epochs:
            raise ValueError(f"grace_period ({self.grace_period}) exceeds max_epochs "
                             f"({self.max_epochs})")
        return self


class ResourcesConfig(Strict):
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0)
    num_cpus: int | None = Field(None, ge=1, description="for a local Ray only")
    # Tune's reuse_actors: a new trial takes a finished trial's worker process (no process
    # start, torch import or data fetch per trial). false: every trial starts its own, so
    # trials shorter than a node's worker start-up still spread over every node instead of
    # all going to the first node's warm workers (and a trial never inherits another's memory)
    reuse_actors: bool = True


class TrackingConfig(Strict):
    wandb: Literal["disabled", "offline", "online"] = "offline"
    project: str = "litesearch"


class FinalConfig(Strict):
    epochs: int = Field(30, ge=1)
    # trainings per model (searched and each baseline) from different seeds: the report gives
    # means with 95 % intervals and ships the median run; one run has no interval
    seeds: int = Field(1, ge=1)
    # COMPLETE trials with distinct architectures re-evaluated with `seeds` fresh seeds on
    # the training split before the final training (1: the best trial as the search saw it)
    top_k: int = Field(1, ge=1)
    # trainings at once on a CPU, one thread each (None: one per core); a GPU runs them in turn
    workers: int | None = Field(None, ge=1)
    # int8 (ONNX Runtime static quantization) of every final model and seed, beside fp32:
    # shipped only when its mean test macro-F1 is within `int8_max_f1_drop` and it is faster
    int8: bool = True
    int8_calibration_images: int = Field(300, ge=1)  # from the training split
    int8_max_f1_drop: float = Field(0.01, ge=0)
    # Train in channels_last under torch.compile (CPU; finaljob/runs.py training_module):
    # 1.5-1.9x the images per second at 48 px, F1 within noise, 26-55 s to compile a net the
    # first time (BENCHMARKS.md, "Training speed on a CPU"). auto: only where that pays back,
    # a training of at least COMPILE_MIN_IMAGES images (epochs x training images)
    compile: bool | Literal["auto"] = "auto"
    # The claim judged (tune_jobs/finaljob/claims.py). fast (objective.kind score):
    # non-inferior to every baseline within `margin` macro-F1 at <= `latency_fraction` of the
    # fastest baseline's latency; accurate (kind f1): better than every baseline at <= the
    # latency of objective.max_latency_of
    margin: float = Field(0.02, ge=0)
    latency_fraction: float = Field(1 / 3, gt=0, le=1)
    # Input sizes each baseline is also tried at, beside the searched one (every size with
    # each recipe, once on the training split; the best on validation is the baseline, timed
    # and judged at its size). torchvision trains these nets at 224: a net that downsamples
    # 32x sees a 2x2 map at 48 px, so it may need a larger input to be at its best.
    baseline_image_sizes: list[Annotated[int, Field(ge=8, le=1024)]] = Field(
        default_factory=list)


class Config(Strict):
    data: DataConfig = DataConfig()
    space: SpaceConfig
    objective: ObjectiveConfig = ObjectiveConfig()
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    final: FinalConfig = FinalConfig()
    output: str = "runs/litesearch"


# The operating points a user picks by name (`search.py --point NAME`), as overrides applied
# before the user's own --set: what each means is the claim the final job judges.
# The accurate point's budget is timed in ONNX Runtime, the runtime the job ships to: timed in
# eager PyTorch, whose per-op overhead at batch 1 favours few wide layers, the best net of an
# accurate search on fmnist-taco6 was 0.66x MobileNetV3-Small's latency at 96 px, and 1.60x
# in ONNX Runtime (benchmarks/claim_latency.py).
POINTS: dict[str, dict[str, Any]] = {
    "fast": {"objective.kind": "score"},
    "accurate": {"objective.kind": "f1", "objective.max_latency_of": "mobilenet_v3_small",
                 "objective.latency": "ort"},
}


def _set(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        if key.isdigit() and isinstance(node, list):
            node = node[int(key)]
            continue
        if not isinstance(node.get(key), dict | list):
            node[key] = {}
        node = node[key]
    last = keys[-1]
    if last.isdigit() and isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value`: the value is read as YAML, so `3`, `0.5`, `true`, `[1, 2]` keep their types."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. search.num_samples=8")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({err})") from None


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("list[", "function")))
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; check the spelling against configs/demo.yaml")
        else:
            lines.append(f"  {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def resolve_config_path(path: str | Path | None) -> Path:
    """A config file: the path as given when it exists, else the shipped preset it names
    (`taco`, `taco.yaml` or `configs/taco.yaml` work from any folder, installed or not)."""
    if not path:
        return DEFAULT_CONFIG
    path = Path(path)
    shipped = CONFIG_DIR / (path.name if path.suffix else f"{path.name}.yaml")
    if not path.is_file() and path.parent.name in ("", "configs") and shipped.is_file():
        return shipped
    return path


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The config at `path` (default: the demo preset) with `key=value` overrides applied."""
    path = resolve_config_path(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (presets: "
                          f"{', '.join(p.name for p in sorted(CONFIG_DIR.glob('*.yaml')))})"
                          ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a config is a YAML mapping of sections")
    for text in overrides or []:
        key, value = parse_override(text)
        try:
            _set(tree, key, value)
        except (IndexError, AttributeError, TypeError):
            raise ConfigError(f"--set {text!r}: {key} does not name a setting") from None
    source = f"{path}" + (f" with --set {' '.join(overrides)}" if overrides else "")
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None
