"""ASHA whose rungs survive a driver restart.

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

from ray.tune.schedulers import ASHAScheduler


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
        state = pickle.dumps({k: v for k, v in self.__dict__.items() if k != "_saved"})
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
        self.__dict__.update(state)
        self._saved = b""
        if os.path.isfile(self._state_file):
            with open(self._state_file, "rb") as f:
                self.__dict__.update(pickle.load(f))


__all__ = ["ResumableASHA"]
