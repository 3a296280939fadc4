"""PASHA and ASHA's stop rule (tune_jobs/pasha.py) on synthetic curves whose right answer is
known: rankings that never change keep PASHA's maximum at the second rung; rankings that
flip beyond the noise raise it; flips within the noise the curves show do not."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from tune_jobs.pasha import Rungs, rung_levels


def feed(rungs: Rungs, curves: dict[str, list[float]]) -> dict[str, int]:
    """Each trial in turn reports its curve epoch by epoch until the rule stops it; the
    epochs each one trained."""
    trained = {}
    for trial, curve in curves.items():
        for epoch, value in enumerate(curve, start=1):
            if rungs.on_result(trial, epoch, value):
                break
        trained[trial] = epoch
    return trained


def test_rung_levels_end_at_the_budget() -> None:
    assert rung_levels(3, 3, 27) == [3, 9, 27]
    assert rung_levels(1, 3, 27) == [1, 3, 9, 27]
    assert rung_levels(1, 2, 10) == [1, 2, 4, 8, 10]
    assert rung_levels(5, 3, 5) == [5]


def test_rankings_that_never_change_keep_the_maximum_at_the_second_rung() -> None:
    """Curves a / epoch**0.5 never cross: the top two rungs always agree, so every trial
    stops at epoch 9 and the answer is the best trial at 9, the true best."""
    levels = [1.0 + 0.1 * i for i in (5, 2, 8, 0, 7, 3, 9, 1, 6, 4)]
    curves = {f"t{i}": [a / e ** 0.5 for e in range(1, 28)] for i, a in enumerate(levels)}
    pasha = Rungs(3, 3, 27)
    trained = feed(pasha, curves)
    assert pasha.budget == 9 and pasha.raised_at == []
    assert max(trained.values()) == 9 and sum(trained.values()) < 10 * 9
    assert pasha.done_at["t3"] == 9  # a = 1.0, the lowest curve, finished at the maximum
    asha = Rungs(3, 3, 27, progressive=False)
    trained_asha = feed(asha, curves)
    assert asha.budget == 27 and max(trained_asha.values()) == 27
    assert sum(trained.values()) < sum(trained_asha.values())
    assert "t3" in asha.done_at and trained_asha["t3"] == 27


def test_a_ranking_that_flips_between_rungs_raises_the_maximum() -> None:
    """Two trials ordered one way at epoch 3 and the other way at epoch 9, crossing once (no
    flip back, so epsilon stays 0): PASHA raises its maximum to the full budget, and the
    trial that reports after that trains to 27."""
    def line(start: float, end: float) -> list[float]:
        return [start + (end - start) * min(e, 9) / 9 for e in range(1, 28)]

    pasha = Rungs(3, 3, 27)
    # "late" reports first (the first value at a rung always passes), "early" is better at
    # epoch 3 (0.63 against 0.70) and worse at 9 (0.9 against 0.3)
    assert feed(pasha, {"late": line(0.9, 0.3), "early": line(0.5, 0.9)}) == {"late": 9,
                                                                           "early": 9}
    assert pasha.budget == 27 and pasha.epsilon == 0.0 and len(pasha.raised_at) == 1
    assert feed(pasha, {"next": line(0.1, 0.05)}) == {"next": 27}


def test_flips_within_the_noise_do_not_raise_the_maximum() -> None:
    """Pairs of trials that trade places epoch after epoch (noise, which PASHA reads as
    epsilon from orders that flip and flip back: the pairs' gap at epoch 9, 0.04) and lie
    1.0 apart from the other pairs: a pair in the other order at epoch 9 than at 3, where
    they are 0.02 apart, is noise, not a change of ranking, so the maximum stays at 9. With
    epsilon forced to 0 the same curves raise it."""
    def pair(base: float) -> dict[str, list[float]]:
        # the sign alternates up to epoch 8 and stays at 9: epochs 3 and 9 differ
        wobble = [(0.01 if e <= 3 else 0.02) * (-1) ** min(e, 8) for e in range(1, 28)]
        return {f"{base}b": [base - w for w in wobble], f"{base}a": [base + w for w in wobble]}

    # worst first, so that every trial passes ASHA's cutoffs and reaches epoch 9
    curves = {k: v for base in (3.0, 2.0, 1.0) for k, v in pair(base).items()}
    pasha = Rungs(3, 3, 27)
    assert set(feed(pasha, curves).values()) == {9}
    assert pasha.budget == 9 and pasha.epsilon == pytest.approx(0.04)

    class NoSoftRanking(Rungs):
        def _noise(self, low: int, high: int) -> float:
            return 0.0

    hard = NoSoftRanking(3, 3, 27)
    feed(hard, curves)
    assert hard.budget == 27


def test_asha_stops_a_trial_outside_the_best_third_of_a_rung() -> None:
    """Ray's cutoff: at a rung a trial continues when its value is within the best 1/eta of
    the values recorded there before it."""
    asha = Rungs(1, 3, 9, progressive=False)
    assert not asha.on_result("a", 1, 0.5)  # the first at a rung always continues
    assert asha.on_result("b", 1, 0.9)
    assert not asha.on_result("c", 1, 0.1)
    assert asha.rungs[0] == {"a": 0.5, "b": 0.9, "c": 0.1}


def test_plain_optuna_runs_pasha_and_asha_as_pruners() -> None:
    """The rung rules in the plain-Optuna replay: on curves that never cross, PASHA stops
    every trial by the second rung (those it stops there have finished their budget) and
    hands back the best of them; ASHA trains some to the end and costs more."""
    from curves import cell_key, replayed_trainings

    from optuna_replay import replay_optuna
    from tune_jobs.config import load_config
    from tune_jobs.trial.space import enumerate_space

    cfg = load_config("ci.yaml", ["space.slots.0.blocks=[conv]", "space.slots.0.out=[8]",
                                  "space.slots.1.blocks=[pass]", "space.head.channels=[64]",
                                  "space.width=[0.5, 1.0]", "space.train.lr=[0.01, 0.05]",
                                  "space.train.augment_magnitude=[0.0]",
                                  "space.train.optimizer=[sgd]"])
    cands = enumerate_space(cfg.space, 6)
    rows = [{"key": cell_key(c.params), "seed": 0, "params": c.params, "epoch_seconds": 0.5,
             "curve": [[e, 0.1, (1 + i) / e, 0.1, (2 + i) / e] for e in range(1, 28)]}
            for i, c in enumerate(cands)]
    meta = {"max_epochs": 27, "space": cfg.space.model_dump(mode="json")}
    table = replayed_trainings(rows)
    pasha, = replay_optuna("pasha", "val_loss", meta, table, [0], 12, grace=3, eta=3)
    asha, = replay_optuna("asha", "val_loss", meta, table, [0], 12, grace=3, eta=3)
    assert pasha["budget"] == 9 and pasha["complete"] >= 1
    assert pasha["trial_epochs"] <= 12 * 9 < asha["trial_epochs"]
    assert asha["budget"] == 27 and asha["complete"] >= 1
    best_cell = cell_key(cands[0].params)  # the lowest curves
    assert pasha["points"][-1][3] == asha["points"][-1][3] == best_cell
    assert pasha["points"][-1][2] == pytest.approx(2 / 9)  # its score at the rung it reached
    # TSE-EMA of the training loss (column 5), folded as the trainable folds it
    rows = [{**r, "curve": [[*p, (1.0 + i) / p[0], 0.01] for p in r["curve"]]}
            for i, r in enumerate(rows)]
    tse, = replay_optuna("pasha", "tse_ema", meta, replayed_trainings(rows), [0], 12, grace=3,
                         eta=3)
    assert tse["budget"] == 9 and tse["points"][-1][3] == best_cell
