"""The search's trial scheduler (`make_scheduler`, by `scheduler.algorithm`): ASHA, or PASHA
(`pasha.py`: ASHA whose maximum resource grows only while its top rungs disagree), both with
rungs that survive a driver restart; or none (FIFO) without early stopping.

`Tuner.restore` does not restore the scheduler (ray issue 30838): it unpickles the scheduler
as it was when the run started, so after `--resume` every rung is empty and the next trials
at each rung pass unjudged. Each scheduler here writes its state (ASHA: rungs, the trials'
brackets, counts; PASHA: its `Rungs`) to a file in the run folder whenever it changed, and
reloads it when Tune unpickles it at restore: a resumed search stops the trials an
uninterrupted one would.

PASHA stops a trial at the maximum of its time as done: in `on_trial_complete`, which Tune
calls before it hands the trial's last result to the searcher and the callbacks, it writes
the epochs that trial was given into that result (`outcome.BUDGET`), so the study records
it COMPLETE at its budget instead of PRUNED (`outcome.trial_state`).
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from tune_jobs.config import RUNG_METRICS, Config
from tune_jobs.internals import restore_scheduler_state, scheduler_state
from tune_jobs.outcome import BUDGET
from tune_jobs.pasha import Rungs

STEP = "training_iteration"


class _Persisted:
    """A scheduler whose `__dict__` is written to `state_file` when it changed and read back
    when Tune unpickles the scheduler of the run's start."""

    def _start_state(self, state_file: str, keep: bool) -> None:
        self._state_file = state_file
        Path(state_file).parent.mkdir(parents=True, exist_ok=True)
        self._saved: bytes = b""
        if keep:
            # a run that goes on without Tune's state (`continue_study`): the rungs so far
            # judge its next trials as they judged the first (the old trials' ids stay in
            # them as the population each rung compares against)
            self._read_saved()
        else:
            Path(state_file).unlink(missing_ok=True)  # a new run starts with empty rungs

    def _read_saved(self) -> None:
        """The last state written to `_state_file`, if any; the file stays this run's own
        (a run folder moved since keeps writing where it is now)."""
        if os.path.isfile(self._state_file):
            with open(self._state_file, "rb") as f:
                restore_scheduler_state(self, {**pickle.load(f),
                                               "_state_file": self._state_file})

    def _persist(self) -> None:
        # a few kB, compared before written: a rung's record is never lost to a kill, and
        # ASHA's many results between rungs cost no write
        state = pickle.dumps(scheduler_state(self, leave_out=("_saved",)))
        if state == self._saved:
            return
        tmp = f"{self._state_file}.tmp"
        with open(tmp, "wb") as f:
            f.write(state)
        os.replace(tmp, self._state_file)  # atomic: a kill never leaves half a state
        self._saved = state

    def __setstate__(self, state: dict) -> None:
        # Tune unpickles the scheduler of the run's start: take the last saved state instead
        restore_scheduler_state(self, state)
        self._saved = b""
        self._read_saved()


class ResumableASHA(_Persisted, ASHAScheduler):
    def __init__(self, *args: Any, state_file: str, keep: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_state(state_file, keep)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        self._persist()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._persist()


class ResumablePASHA(_Persisted, FIFOScheduler):
    """PASHA's stop rule (`pasha.Rungs`) on `metric` per training iteration (epoch)."""

    def __init__(self, *, state_file: str, metric: str, mode: str, max_t: int,
                 grace_period: int, reduction_factor: float, keep: bool = False) -> None:
        super().__init__()
        self._metric, self._sign = metric, 1.0 if mode == "min" else -1.0
        self.rungs = Rungs(grace_period, reduction_factor, max_t)
        self._start_state(state_file, keep)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        value = result.get(self._metric)
        if STEP not in result or value is None or not math.isfinite(float(value)):
            return TrialScheduler.CONTINUE  # a failing trial ends by its own outcome
        stop = self.rungs.on_result(trial.trial_id, int(result[STEP]), self._sign * float(value))
        self._persist()
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        budget = self.rungs.done_at.get(trial.trial_id)
        if budget is not None and trial.last_result is not None:
            trial.last_result[BUDGET] = budget  # read by the searcher and callbacks next

    def debug_string(self) -> str:
        return (f"Using PASHA: maximum {self.rungs.budget} of {self.rungs.levels[-1]} epochs, "
                f"epsilon {self.rungs.epsilon:.4g}")


# scheduler.algorithm -> its Tune scheduler, given the state file and the rung settings
SCHEDULERS: dict[str, Callable[..., TrialScheduler]] = {
    "asha": lambda **kwargs: ResumableASHA(time_attr=STEP, **kwargs),
    "pasha": ResumablePASHA,
}


def make_scheduler(cfg: Config, output: Path, keep_state: bool = False) -> TrialScheduler:
    """`scheduler.*` of the config: `scheduler.algorithm` on `scheduler.metric` (its state in
    the run folder, read back when `keep_state`: a run continued without Tune's state), or
    FIFO when `scheduler.early_stopping` is off."""
    s = cfg.scheduler
    if not s.early_stopping:
        return FIFOScheduler()
    return SCHEDULERS[s.algorithm](
        state_file=str(output / f"{s.algorithm}-{cfg.search.study}.pkl"), metric=s.metric,
        mode=RUNG_METRICS[s.metric], max_t=s.max_epochs, grace_period=s.grace_period,
        reduction_factor=s.reduction_factor, keep=keep_state)


__all__ = ["SCHEDULERS", "ResumableASHA", "ResumablePASHA", "make_scheduler"]
