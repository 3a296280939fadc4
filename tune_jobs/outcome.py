"""How a trial ended, and the one rule from that to its state in the study.

The trainable ends every trial with an `outcome` in its last report; the study mirror, the
recorder of non-Optuna searchers and the live metrics all read it through `trial_state`, so
they cannot disagree about a trial.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from optuna.trial import TrialState

try:
    from enum import StrEnum
except ImportError:  # Python 3.10

    class StrEnum(str, enum.Enum):  # type: ignore[no-redef]
        def __str__(self) -> str:
            return str(self.value)


class Outcome(StrEnum):
    TRAINED = "trained"  # reported epochs normally (to the budget, or until a rung stopped it)
    STOPPED_EARLY = "stopped_early"  # trained, but stopped by the scheduler before the budget
    OVER_BUDGET = "over_budget"  # params, MACs or latency over a limit: never trained
    NAN_LOSS = "nan_loss"  # the loss diverged
    OOM = "oom"  # out of (GPU) memory
    ERROR = "error"  # any other exception in the trial
    WORKER_LOST = "worker_lost"  # the worker died and Tune's retries were used up
    UNKNOWN = "unknown"  # the last report said nothing about how it ended


FAILED = frozenset({Outcome.NAN_LOSS, Outcome.OOM, Outcome.ERROR, Outcome.WORKER_LOST})


def outcome_of(result: Mapping[str, Any] | None, error: bool = False) -> Outcome:
    """The outcome a trial's last result states; `error`: Tune saw its worker die."""
    if error:
        return Outcome.WORKER_LOST
    try:
        return Outcome(result.get("outcome") if result is not None else None)
    except ValueError:
        return Outcome.UNKNOWN


# The epochs the scheduler gave a trial when that was less than max_epochs (PASHA writes it
# into the trial's last result when it stops a trial at the maximum of its time)
BUDGET = "budget_epochs"


def budget_of(result: Mapping[str, Any] | None, max_epochs: int) -> int:
    """The epochs a trial was to train: what its scheduler gave it, else `max_epochs`."""
    given = result.get(BUDGET) if result is not None else None
    return int(given) if given else max_epochs


def trial_state(outcome: Outcome, epochs_done: int, max_epochs: int) -> TrialState:
    """COMPLETE only when trained to its full budget (`max_epochs`: `budget_of` the result);
    FAIL when it broke; PRUNED otherwise (stopped by the scheduler, over a budget, or of
    unknown outcome: never a full result)."""
    if outcome in FAILED:
        return TrialState.FAIL
    if outcome == Outcome.TRAINED and epochs_done >= max_epochs:
        return TrialState.COMPLETE
    return TrialState.PRUNED


def epochs_done(result: Mapping[str, Any] | None) -> int:
    """Epochs a trial trained (failures report epoch -1, an over-budget candidate 0)."""
    epoch = result.get("epoch") if result is not None else None
    return max(0, int(epoch)) if epoch is not None and epoch == epoch else 0  # NaN: none


__all__ = ["BUDGET", "FAILED", "Outcome", "StrEnum", "budget_of", "epochs_done", "outcome_of",
           "trial_state"]
