"""The peer a user would pick instead of litesearch, replayed on the same learning-curve
tables: plain Optuna, `study.optimize` with its TPE sampler and one of its pruners, two
workers (threads) on one in-memory storage, each trial reporting the table's curve of the
candidate it drew, epoch by epoch, and asking `should_prune()` as a training loop would.

No Ray and no mirror: this is what a user's 20-line Optuna script does. Optuna's defaults
are kept (`TPESampler(seed=...)`; each pruner with its own defaults, Hyperband's resource
range set to the table's epochs, as its documentation asks). Like litesearch's replay, a
trial sees one of its candidate's trainings (`replay.drawn_row`), the objective is the score
at the last epoch (lower is better), and a repeated proposal trains again: plain Optuna has
no duplicate reuse, so it pays for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
)

# Optuna's pruners by name, each with its defaults, given the table's epochs
PRUNERS: dict[str, Callable[[int], BasePruner]] = {
    "none": lambda max_epochs: NopPruner(),
    "median": lambda max_epochs: MedianPruner(),
    "sha": lambda max_epochs: SuccessiveHalvingPruner(),
    "hyperband": lambda max_epochs: HyperbandPruner(min_resource=1, max_resource=max_epochs),
}
# What a trial reports per epoch for the pruner to judge (a curve point's column)
REPORTED = {"score": 4, "val_loss": 2}


def replay_optuna(pruner: str, metric: str, meta: dict, table: dict[str, list[dict]],
                  seeds: list[int], num_samples: int, workers: int = 2) -> list[dict]:
    """One plain-Optuna search per seed over `table` (cell key -> its rows); each seed's
    trajectory as `curves.trajectory` gives it (points: trial-epochs, table seconds, best
    score so far, the incumbent's cell key)."""
    if pruner not in PRUNERS or metric not in REPORTED:
        raise ValueError(f"optuna arm: pruner {pruner!r} (known: {', '.join(PRUNERS)}), "
                         f"reported {metric!r} (known: {', '.join(REPORTED)})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return [{"seed": seed} | _search(pruner, metric, meta, table, seed, num_samples, workers)
            for seed in seeds]


def _search(pruner: str, metric: str, meta: dict, table: dict[str, list[dict]], seed: int,
            num_samples: int, workers: int) -> dict:
    from tune_jobs.config import SpaceConfig
    from tune_jobs.trial.replay import config_key, config_keys, drawn_row
    from tune_jobs.trial.space import define_by_run

    space = SpaceConfig.model_validate(meta["space"])
    classes = meta.get("classes") or [f"class{i}" for i in range(6)]
    keys = config_keys(space, len(classes))
    max_epochs, column = meta["max_epochs"], REPORTED[metric]
    lock = threading.Lock()
    ended: list[tuple[float, int, float | None, str]] = []  # (when, epochs, final, cell key)

    def objective(trial: optuna.Trial) -> float:
        define_by_run(space, len(classes))(trial)
        key = keys[config_key(trial.params)]
        curve = drawn_row(key, table[key], seed)["curve"][:max_epochs]
        for point in curve:  # a training loop: report each epoch, stop when told to
            trial.report(point[column], int(point[0]))
            if trial.should_prune():
                with lock:
                    ended.append((time.monotonic(), int(point[0]), None, key))
                raise optuna.TrialPruned()
        with lock:
            ended.append((time.monotonic(), len(curve), curve[-1][4], key))
        return curve[-1][4]

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=PRUNERS[pruner](max_epochs))
    study.optimize(objective, n_trials=num_samples, n_jobs=workers)
    return _trajectory(sorted(ended, key=lambda e: e[0]), table)


def _trajectory(ended: list[tuple[float, int, float | None, str]],
                table: dict[str, list[dict]]) -> dict:
    cost, seconds, best, incumbent, points = 0, 0.0, None, None, []
    for _, epochs, final, key in ended:
        cost += epochs
        seconds += epochs * float(table[key][0].get("epoch_seconds") or 0.0)
        if final is not None and (best is None or final < best):
            best, incumbent = final, key
        points.append([cost, seconds, best, incumbent])
    return {"points": points, "trial_epochs": cost, "table_seconds": seconds, "best": best,
            "complete": sum(final is not None for _, _, final, _ in ended),
            "trials": len(ended), "duplicates": 0}
