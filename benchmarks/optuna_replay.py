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

Two more rules run as pruners in the same loop, for a side-by-side on one implementation
(`tune_jobs/pasha.py`): `asha` (litesearch's stopping ASHA, grace and eta from the arm) and
`pasha` (PASHA: the maximum resource grows only while the top two rungs disagree). A PASHA search
hands back the best trial of the highest rung reached, not the best finished one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
)

from tune_jobs.pasha import Rungs

# Optuna's pruners by name, each with its defaults, given the table's epochs
PRUNERS: dict[str, Callable[[int], BasePruner]] = {
    "none": lambda max_epochs: NopPruner(),
    "median": lambda max_epochs: MedianPruner(),
    "sha": lambda max_epochs: SuccessiveHalvingPruner(),
    "hyperband": lambda max_epochs: HyperbandPruner(min_resource=1, max_resource=max_epochs),
}
# Rung rules of tune_jobs/pasha.py by name: progressive (PASHA) or not (ASHA)
RUNG_RULES = {"asha": False, "pasha": True}
# What a trial reports per epoch for the pruner to judge (a curve point's column)
REPORTED = {"score": 4, "val_loss": 2}


class RungPruner(BasePruner):
    """A `tune_jobs.pasha.Rungs` rule as an Optuna pruner: every reported value goes to the
    rungs, one worker at a time."""

    def __init__(self, rungs: Rungs) -> None:
        self.rungs, self.lock = rungs, threading.Lock()

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        with self.lock:
            return self.rungs.on_result(str(trial.number), step,
                                        trial.intermediate_values[step])


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
    max_epochs, column = meta["max_epochs"], REPORTED[metric]
    rule = (RungPruner(Rungs(grace, eta, max_epochs, progressive=RUNG_RULES[pruner]))
               if pruner in RUNG_RULES else None)
    lock = threading.Lock()
    curves: dict[str, tuple[str, list]] = {}  # trial number -> (cell key, the curve it saw)
    # per ended trial, in the order they ended: (its cell key, epochs, complete, the best
    # score so far, the incumbent's cell key)
    ended: list[tuple[str, int, bool, float | None, str | None]] = []
    best: list = [None, None]  # the best finished trial: [score, cell key]

    def end(epochs: int, final: float | None, key: str) -> None:
        with lock:
            if final is not None and (best[0] is None or final < best[0]):
                best[:] = [final, key]
            incumbent = best
            if rule is not None:  # the best trial of the highest rung reached
                with rule.lock:
                    found = rule.rungs.incumbent()
                if found is not None:
                    ikey, icurve = curves[found[0]]
                    incumbent = [icurve[found[1] - 1][4], ikey]
            ended.append((key, epochs, final is not None, *incumbent))

    def objective(trial: optuna.Trial) -> float:
        define_by_run(space, len(classes))(trial)
        key = keys[config_key(trial.params)]
        curve = drawn_row(key, table[key], seed)["curve"][:max_epochs]
        curves[str(trial.number)] = (key, curve)
        for point in curve:  # a training loop: report each epoch, stop when told to
            epoch = int(point[0])
            trial.report(point[column], epoch)
            # a rung rule stops every trial at its maximum: at the budget that is the end
            if trial.should_prune() and (rule is None or epoch < max_epochs):
                end(epoch, None, key)
                raise optuna.TrialPruned()
        end(len(curve), curve[-1][4], key)
        return curve[-1][4]

    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=rule if rule is not None else PRUNERS[pruner](max_epochs))
    study.optimize(objective, n_trials=num_samples, n_jobs=workers)
    out = _trajectory(ended, table)
    if rule is not None:
        out["budget"] = rule.rungs.budget  # PASHA's maximum resource at the end
    return out


def _trajectory(ended: list[tuple[str, int, bool, float | None, str | None]],
                table: dict[str, list[dict]]) -> dict:
    cost, seconds, points = 0, 0.0, []
    for key, epochs, _, best, incumbent in ended:
        cost += epochs
        seconds += epochs * float(table[key][0].get("epoch_seconds") or 0.0)
        points.append([cost, seconds, best, incumbent])
    return {"points": points, "trial_epochs": cost, "table_seconds": seconds,
            "best": points[-1][2] if points else None,
            "complete": sum(complete for _, _, complete, _, _ in ended),
            "trials": len(ended), "duplicates": 0}
