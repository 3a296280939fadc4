"""The search's trial scheduler (`make_scheduler`): ASHA whose rungs survive a driver restart,
or none (FIFO) without early stopping.

`Tuner.restore` does not restore the scheduler (ray issue 30838): it unpickles the scheduler
as it was when the run started, so after `--resume` every rung is empty and the next trials
at each rung pass unjudged. `ResumableASHA` writes its state (rungs, the trials' brackets,
counts) to a file in the run folder whenever it changed (a rung recorded a result, a trial
started or ended; not on the results between rungs), and reloads it when
Tune unpickles it at restore: a resumed search stops the trials an uninterrupted one would.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from tune_jobs.config import RUNG_METRICS, Config
from tune_jobs.internals import restore_scheduler_state, scheduler_state


class ResumableASHA(ASHAScheduler):
    def __init__(self, *args: Any, state_file: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state_file = state_file
        Path(state_file).parent.mkdir(parents=True, exist_ok=True)
        Path(state_file).unlink(missing_ok=True)  # a new run starts with empty rungs
        self._saved: bytes = b""

    def _persist(self) -> None:
        # a few kB, compared before written: a rung's record is never lost to a kill, and
        # the many results between rungs cost no write
        state = pickle.dumps(scheduler_state(self, leave_out=("_saved",)))
        if state == self._saved:
            return
        tmp = f"{self._state_file}.tmp"
        with open(tmp, "wb") as f:
            f.write(state)
        os.replace(tmp, self._state_file)  # atomic: a kill never leaves half a state
        self._saved = state

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        self._persist()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._persist()

    def __setstate__(self, state: dict) -> None:
        # Tune unpickles the scheduler of the run's start: take the last saved rungs instead
        restore_scheduler_state(self, state)
        self._saved = b""
        if os.path.isfile(self._state_file):
            with open(self._state_file, "rb") as f:
                restore_scheduler_state(self, pickle.load(f))


def make_scheduler(cfg: Config, output: Path) -> TrialScheduler:
    """`scheduler.*` of the config: ResumableASHA on `scheduler.metric` (its state in the run
    folder), or FIFO when `scheduler.early_stopping` is off."""
    s = cfg.scheduler
    if not s.early_stopping:
        return FIFOScheduler()
    return ResumableASHA(state_file=str(output / f"asha-{cfg.search.study}.pkl"),
                         time_attr="training_iteration", metric=s.metric,
                         mode=RUNG_METRICS[s.metric], max_t=s.max_epochs,
                         grace_period=s.grace_period, reduction_factor=s.reduction_factor)


__all__ = ["ResumableASHA", "make_scheduler"]
