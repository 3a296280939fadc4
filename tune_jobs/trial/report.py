"""What a trial reports to Tune: one typed record (`TrialReport`), built by the trainable and
by the learning-curve replay, each report a trained epoch (`TrialReport.trained`) or the one
report of a trial that ended without training (`TrialReport.failed`). The study mirror reads
these names back from Tune's results (`study/trials.py` keeps the ones the study records).

Free of torch and Ray, so that a replayed trial starts without them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from tune_jobs.outcome import Outcome
from tune_jobs.trial.score import failure_score, score

# Per epoch, the learning curve a trial leaves in the study (user attribute `curve`) and a
# row of a learning-curve table keeps (benchmarks/curves.py): `[epoch, *CURVE_METRICS]`,
# whatever the objective. The training loss and learning rate come last: tables built
# before they were recorded hold the first four only. `COLUMN`: a name's index in a point.
CURVE_METRICS = ("f1", "val_loss", "accuracy", "score", "loss", "lr")
COLUMN = {name: i for i, name in enumerate(("epoch", *CURVE_METRICS))}


def has_training_loss(curve: list[list]) -> bool:
    """Does every point of a curve hold the training loss (tables since 2026-12-03)?"""
    return all(len(p) > COLUMN["loss"] and p[COLUMN["loss"]] is not None for p in curve)


# Training-speed estimation (Ru et al., NeurIPS 2021) as a rung metric: the mean training
# losses of the epochs so far, each weighted by TSE_EMA_DECAY ** its age in epochs, summed.
TSE_EMA_DECAY = 0.9


def next_tse_ema(previous: float, loss: float) -> float:
    """TSE-EMA after one more epoch of mean training loss `loss` (0.0 before the first)."""
    return TSE_EMA_DECAY * previous + loss


@dataclass(frozen=True)
class Where:
    """What a trial's every report repeats: its costs and where it runs (None: not known, as
    for a replayed trial, which has no worker of its own)."""

    latency_ratio: float = 1.0  # candidate / reference, as `objective.latency` times it
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    reference_ms: float | None = None
    image_size: int | None = None
    node: str | None = None
    node_id: str | None = None
    gpu_ids: str | None = None
    started_at: float | None = None
    trial_dir: str | None = None


@dataclass(frozen=True)
class TrialReport:
    """One report of a trial (`as_result()` is the dict `tune.report` takes). `epoch`: the
    epochs trained so far; a trial that broke reports -1, one over a budget 0."""

    outcome: Outcome
    epoch: int
    score: float
    f1: float
    accuracy: float
    val_loss: float
    loss: float
    where: Where = field(default_factory=Where)
    reason: str = ""
    traceback: str | None = None
    lr: float | None = None  # the learning rate the epoch ended at (after its last step)
    tse_ema: float | None = None  # `next_tse_ema` over the epochs trained so far
    epoch_seconds: float | None = None
    images_per_second: float | None = None
    wall_seconds: float | None = None
    reported_at: float | None = None

    @classmethod
    def trained(cls, where: Where, epoch: int, f1: float, accuracy: float, val_loss: float,
                loss: float, f1_ref: float, **more: float | None) -> TrialReport:
        """A trained epoch (`loss`: the mean training loss over it); its score from the F1
        and the candidate's latency ratio. `more`: the learning rate and timings."""
        return cls(Outcome.TRAINED, epoch, score(f1, where.latency_ratio, f1_ref), f1, accuracy,
                   val_loss, loss, where, **more)

    @classmethod
    def failed(cls, outcome: Outcome, reason: str, f1_ref: float, where: Where | None = None,
               traceback: str | None = None) -> TrialReport:
        """A trial that ended without a trained epoch: over a budget (epoch 0) or broken
        (epoch -1). It scores as a net that learned nothing at its latency, so that searchers
        learn to avoid its region instead of ignoring it."""
        where = where or Where()
        epoch = 0 if outcome == Outcome.OVER_BUDGET else -1
        return cls(outcome, epoch, failure_score(where.latency_ratio, f1_ref), 0.0, 0.0,
                   math.inf, math.nan, where, reason[:2000], traceback, tse_ema=math.inf)

    def as_result(self) -> dict[str, Any]:
        """The flat dict Tune records (unknown values left out; the outcome as its string)."""
        out = dataclasses.asdict(self.where) | {f.name: getattr(self, f.name)
                                                for f in dataclasses.fields(self)
                                                if f.name != "where"}
        out["outcome"] = self.outcome.value
        return {k: v for k, v in out.items() if v is not None}


__all__ = ["TSE_EMA_DECAY", "TrialReport", "Where", "next_tse_ema"]
