"""The peer a user would pick instead of litesearch, replayed on the same learning-curve
tables: plain Optuna, its TPE sampler and one of its pruners, two workers on one in-memory
storage, each trial reporting the table's curve of the candidate it drew, epoch by epoch,
and asking `should_prune()` as a training loop would.

The two workers are simulated, not threads: each trial's epochs take the time its table row
took, and every epoch of every running trial is reported in the order those times say (a
worker asks for its next trial when its last one ends). Threads (`study.optimize(n_jobs=2)`)
interleave the two workers' draws from one sampler as the OS schedules them, so a seed did
not give the same search twice; the simulation does (the replays before 2026-12-04 ran
threads).

No Ray and no mirror: this is what a user's 20-line Optuna script does. Optuna's defaults
are kept (`TPESampler(seed=...)`; each pruner with its own defaults, Hyperband's resource
range set to the table's epochs, as its documentation asks). Like litesearch's replay, a
trial sees one of its candidate's trainings (`replay.drawn_row`), the objective is the score
at the last epoch (lower is better), and a repeated proposal trains again: plain Optuna has
no duplicate reuse, so it pays for it.

Two more rules run as pruners in the same loop, for a side-by-side on one implementation
(`tune_jobs/pasha.py`): `asha` (litesearch's stopping ASHA, grace and eta from the arm) and
`pasha` (PASHA: the maximum resource grows only while the top two rungs disagree). A trial
a rung rule stops at the maximum of its time has finished (as in litesearch's study), and
the incumbent is the finished trial trained the most epochs, the best among those.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
)

from replay_metrics import Ended, trajectory
from tune_jobs.pasha import Rungs
from tune_jobs.trial.report import COLUMN, has_training_loss, next_tse_ema

# Optuna's pruners by name, each with its defaults, given the table's epochs
PRUNERS: dict[str, Callable[[int], BasePruner]] = {
    "none": lambda max_epochs: NopPruner(),
    "median": lambda max_epochs: MedianPruner(),
    "sha": lambda max_epochs: SuccessiveHalvingPruner(),
    "hyperband": lambda max_epochs: HyperbandPruner(min_resource=1, max_resource=max_epochs),
}
# Rung rules of tune_jobs/pasha.py by name: progressive (PASHA) or not (ASHA)
RUNG_RULES = {"asha": False, "pasha": True}
# What a trial reports per epoch for the pruner to judge, from its curve: a column, or
# TSE-EMA folded over the training loss as the trainable folds it
REPORTED: dict[str, Callable[[list], list[float]]] = {
    "score": lambda curve: [p[COLUMN["score"]] for p in curve],
    "val_loss": lambda curve: [p[COLUMN["val_loss"]] for p in curve],
    "tse_ema": lambda curve: list(itertools.accumulate(
        (p[COLUMN["loss"]] for p in curve), next_tse_ema, initial=0.0))[1:],
}


class RungPruner(BasePruner):
    """A `tune_jobs.pasha.Rungs` rule as an Optuna pruner: every reported value goes to the
    rungs."""

    def __init__(self, rungs: Rungs) -> None:
        self.rungs = rungs

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        return self.rungs.on_result(str(trial.number), step, trial.intermediate_values[step])


def replay_optuna(pruner: str, metric: str, meta: dict, table: dict[str, list[dict]],
                  seeds: list[int], num_samples: int, workers: int = 2, grace: int = 1,
                  eta: float = 3) -> list[dict]:
    """One plain-Optuna search per seed over `table` (cell key -> its rows); each seed's
    trajectory as `curves.trajectory` gives it (points: trial-epochs, table seconds, best
    score so far, the incumbent's cell key). `grace`, `eta`: of the rung rules only."""
    known = [*PRUNERS, *RUNG_RULES]
    if pruner not in known or metric not in REPORTED:
        raise ValueError(f"optuna arm: pruner {pruner!r} (known: {', '.join(known)}), "
                         f"reported {metric!r} (known: {', '.join(REPORTED)})")
    if metric == "tse_ema" and not all(has_training_loss(r["curve"]) for rows in
                                       table.values() for r in rows):
        raise ValueError("optuna arm: reporting tse_ema needs the training loss per epoch, "
                         "which tables built before 2026-12-03 lack: rebuild the table, or "
                         "report score or val_loss")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return [{"seed": seed} | _search(pruner, metric, meta, table, seed, num_samples, workers,
                                     grace, eta)
            for seed in seeds]


def _search(pruner: str, metric: str, meta: dict, table: dict[str, list[dict]], seed: int,
            num_samples: int, workers: int, grace: int, eta: float) -> dict:
    from tune_jobs.config import SpaceConfig
    from tune_jobs.trial.replay import config_key, config_keys, drawn_row
    from tune_jobs.trial.space import define_by_run

    space = SpaceConfig.model_validate(meta["space"])
    classes = meta.get("classes") or [f"class{i}" for i in range(6)]
    keys = config_keys(space, len(classes))
    max_epochs, reported = meta["max_epochs"], REPORTED[metric]
    rule = (RungPruner(Rungs(grace, eta, max_epochs, progressive=RUNG_RULES[pruner]))
            if pruner in RUNG_RULES else None)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=rule if rule is not None else PRUNERS[pruner](max_epochs))
    ended: list[Ended] = []  # in the order the trials ended
    events: list[tuple[float, int, int]] = []  # (when its next epoch ends, tie-break, worker)
    running: dict[int, _Running] = {}
    order, asked = itertools.count(), itertools.count()

    def start(worker: int, now: float) -> None:
        if next(asked) >= num_samples:
            return
        trial = study.ask()
        define_by_run(space, len(classes))(trial)
        key = keys[config_key(trial.params)]
        row = drawn_row(key, table[key], seed)
        curve = row["curve"][:max_epochs]
        running[worker] = _Running(trial, key, curve, reported(curve),
                                   float(row.get("epoch_seconds") or 0.0))
        heapq.heappush(events, (now + running[worker].seconds, next(order), worker))

    def finish(run: _Running, epochs: int, now: float, done: bool, worker: int) -> None:
        # done: trained its curve to the end, or stopped by a rung rule at its maximum (as
        # litesearch's study records it: COMPLETE at the budget it was given)
        score = run.curve[epochs - 1][COLUMN["score"]]
        if done:
            study.tell(run.trial, score)
        else:
            study.tell(run.trial, state=optuna.trial.TrialState.PRUNED)
        ended.append(Ended(epochs, epochs * run.seconds, run.key, score if done else None,
                           epochs))
        start(worker, now)

    for worker in range(workers):
        start(worker, 0.0)
    while events:  # the epochs of all running trials in the order they end
        now, _, worker = heapq.heappop(events)
        run = running[worker]
        point, value = run.curve[run.epochs], run.reported[run.epochs]
        run.epochs += 1
        run.trial.report(value, int(point[0]))
        # a training loop asks after every epoch; a rung rule stops every trial at its
        # maximum, and at the full budget that is the end
        if run.trial.should_prune() and (rule is None or run.epochs < max_epochs):
            finish(run, run.epochs, now, rule is not None
                   and str(run.trial.number) in rule.rungs.done_at, worker)
        elif run.epochs == len(run.curve):
            finish(run, run.epochs, now, True, worker)
        else:
            heapq.heappush(events, (now + run.seconds, next(order), worker))
    out = trajectory(ended)
    if rule is not None:
        out["budget"] = rule.rungs.budget  # PASHA's maximum resource at the end
    return out


@dataclass
class _Running:
    """A trial on a simulated worker."""

    trial: optuna.Trial
    key: str
    curve: list
    reported: list[float]  # per epoch, what it reports
    seconds: float  # per epoch, as the table's training took
    epochs: int = 0  # reported so far
