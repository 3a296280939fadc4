"""A study's trials as litesearch reads them: one typed view (`StudyTrial.of`) over Optuna's
FrozenTrial and the user attributes the study mirror writes, and the names of those attributes
(`Attr`, `REPORTED`). The mirror is the only writer of these names; everything downstream (the
summary, the final job, its report, the benchmarks) reads trials through `StudyTrial` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tune_jobs.outcome import BUDGET, Outcome, StrEnum

# What a trial's last report (trial/report.py) carries that the study keeps, by the same name
REPORTED = ("score", "f1", "accuracy", "loss", "val_loss", "epoch", "params", "macs",
            "latency_ratio", "latency_ms", "reference_ms", "image_size", "node", "node_id",
            "trial_dir", "wall_seconds", "images_per_second", BUDGET)


class Attr(StrEnum):
    """The user attributes the mirror writes besides the `REPORTED` metrics."""

    OUTCOME = "outcome"  # an Outcome's value
    REASON = "reason"  # why it ended so ("" for a trained trial)
    TRACEBACK = "traceback"  # of a trial that raised
    SPEC = "spec"  # the candidate's ModelSpec as YAML (what the final job rebuilds)
    SPEC_ERROR = "spec_error"  # why a config could not be rebuilt into a spec
    EPOCHS_DONE = "epochs_done"
    CURVE = "curve"  # per trained epoch [epoch, *report.CURVE_METRICS]
    # set on a proposal that repeated a finished trial's values: that trial's number; the
    # proposal trained nothing and carries the earlier result (the mirror's dedupe)
    DUPLICATE_OF = "duplicate_of"
    RUN = "run"  # the search run that asked for the trial (what --resume adopts)
    TUNE_TRIAL_ID = "tune_trial_id"  # Tune's id (trials recorded by StudyRecorder)


class StudyAttr(StrEnum):
    """The study's own user attributes (`searchjob.record_run`): what a final job on another
    machine needs to know of the search."""

    CONFIG = "config"  # the whole litesearch config, as JSON
    CLASSES = "classes"
    OBJECTIVE = "objective"  # the metric names of the study's values, e.g. ["score"]
    TEST_SOURCE = "test_source"
    DATA_PATH = "data_path"


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class StudyTrial:
    """One trial of a study, typed. `params` are the searcher's drawn values; `n_params` is
    the network's parameter count (the attribute `params`)."""

    number: int
    state: TrialState
    params: dict[str, Any]
    intermediate: dict[int, float]  # per step, the value the sampler and pruner saw
    outcome: Outcome
    reason: str
    spec: str | None
    score: float | None
    f1: float | None  # validation macro-F1 at the last epoch
    latency_ratio: float | None
    epochs_done: int
    wall_seconds: float
    n_params: int | None
    macs: int | None
    image_size: int | None
    node: str | None
    duplicate_of: int | None
    curve: list[list]
    completed_at: datetime | None
    attrs: Mapping[str, Any]  # everything the mirror wrote, for tables that list it all

    @classmethod
    def of(cls, t: FrozenTrial) -> StudyTrial:
        a = t.user_attrs
        try:
            outcome = Outcome(a.get(Attr.OUTCOME))
        except ValueError:
            outcome = Outcome.UNKNOWN
        return cls(
            number=t.number, state=t.state, params=dict(t.params),
            intermediate=dict(t.intermediate_values), outcome=outcome,
            reason=a.get(Attr.REASON) or "", spec=a.get(Attr.SPEC), score=_float(a.get("score")),
            f1=_float(a.get("f1")), latency_ratio=_float(a.get("latency_ratio")),
            epochs_done=int(a.get(Attr.EPOCHS_DONE) or 0),
            wall_seconds=float(a.get("wall_seconds") or 0.0), n_params=a.get("params"),
            macs=a.get("macs"), image_size=a.get("image_size"), node=a.get("node"),
            duplicate_of=a.get(Attr.DUPLICATE_OF), curve=a.get(Attr.CURVE) or [],
            completed_at=t.datetime_complete, attrs=a)

    @property
    def trained(self) -> bool:
        """Not a reused copy of another trial's result: rankings, counts and the ledger count
        each training once."""
        return self.duplicate_of is None

    @property
    def level(self) -> int:
        """The epochs its result is at: those it trained, or for a reused copy those of the
        training it copies. Under PASHA COMPLETE trials differ in it; ranked first by it."""
        if self.trained:
            return self.epochs_done
        return int(self.curve[-1][0]) if self.curve else 0

    @property
    def complete(self) -> bool:
        """Trained to the full budget, with a result of its own."""
        return self.state == TrialState.COMPLETE and self.trained


def study_trials(study: optuna.Study) -> list[StudyTrial]:
    return [StudyTrial.of(t) for t in study.get_trials(deepcopy=False)]


__all__ = ["REPORTED", "Attr", "StudyAttr", "StudyTrial", "study_trials"]
