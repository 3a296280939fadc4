"""What a final job measured, as types (metrics.json is `FinalResult.to_json()`): the chosen
trial, the top-k re-evaluation, every model over its seeds, the comparisons, the claim and
the int8 results. The job builds them; the report and the benchmarks read them.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from tune_jobs.finaljob.assess import Assessment
from tune_jobs.finaljob.claims import Claim
from tune_jobs.finaljob.int8 import Int8Result
from tune_jobs.finaljob.recipes import Recipe
from tune_jobs.finaljob.runs import RecipeTrial, Run
from tune_jobs.finaljob.stats import Estimate, Verdict


@dataclass(frozen=True)
class ChosenTrial:
    """The trial the final job retrained, as the search saw it."""

    number: int
    state: TrialState
    why: str
    score: float | None
    f1: float | None  # validation macro-F1 in the search
    latency_ratio: float | None
    epochs_done: int
    params: dict[str, Any]


@dataclass(frozen=True)
class CandidateCheck:
    """One of the top-K trials retrained on the training split with fresh seeds."""

    number: int
    why: str
    search_f1: float | None
    search_score: float | None
    latency_ratio: float | None
    val_f1: Estimate
    rank_value: float  # the study's objective from the mean validation F1; lower is better
    runs: list[Run]


@dataclass(frozen=True)
class ModelResult:
    """One model of the comparison over its seeds (metrics.json's `models`)."""

    name: str
    recipe: Recipe
    f1: Estimate  # test macro-F1 over the seeds
    accuracy: Estimate
    per_class_f1: dict[str, Estimate]
    trained: bool  # False: flagged, never counted as a comparison
    shipped_seed: int  # the median run: the one exported and assessed in full
    latency_ratio: float
    onnxruntime_ms: float
    params: int
    macs: int
    runs: list[Run]
    recipe_trials: list[RecipeTrial]  # a baseline's recipe choice on validation
    image_size: int  # what it trained, was tested and timed at

    @property
    def seeds(self) -> int:
        return self.f1.n


@dataclass(frozen=True)
class Comparison:
    """The searched model against one baseline: macro-F1 difference of the means (searched -
    baseline, Welch 95 % interval), the latency ratio (searched / baseline), the verdict."""

    baseline: str
    f1_difference: Estimate
    latency_ratio: float
    verdict: Verdict


def _plain(tree: Any) -> Any:
    """JSON-ready: enums by name (TrialState) or value (the string enums)."""
    if isinstance(tree, dict):
        return {str(k): _plain(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_plain(v) for v in tree]
    if isinstance(tree, TrialState):
        return tree.name
    if isinstance(tree, enum.Enum):
        return tree.value
    return tree


@dataclass(frozen=True)
class FinalResult:
    """What the final job measured. `model` and `baselines` are the full assessments of each
    model's median run; `models` summarises every model over its seeds."""

    study: str
    epochs: int
    input_size: int
    test_source: str
    reference: str
    f1_ref: float
    seeds: int
    history: list[dict]  # per epoch of the shipped retrain: epoch, loss, lr, seconds
    chosen: ChosenTrial
    model: Assessment
    baselines: dict[str, Assessment]
    models: list[ModelResult]
    comparisons: list[Comparison]
    candidates: list[CandidateCheck]
    int8: list[Int8Result] = dataclasses.field(default_factory=list)  # one per model
    claim: Claim | None = None  # the operating point's claim, judged against the baselines
    ran_on: dict[str, Any] | None = None  # node and GPUs, when run as a Ray task
    trainings: int = 0  # every training of the job: top-k checks, recipe trials, seeds
    taken_over: int = 0  # of them, finished by another run (`--reuse-from`), not here
    reused_from: str | None = None  # that run's folder

    def to_json(self) -> dict:
        tree = _plain(dataclasses.asdict(self))
        if self.ran_on is None:
            del tree["ran_on"]
        return tree


__all__ = ["CandidateCheck", "ChosenTrial", "Comparison", "FinalResult", "ModelResult"]
