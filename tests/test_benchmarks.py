"""The benchmarks' own arithmetic (the runs themselves are measured, not tested): how the ASHA
benchmark turns reports into a best-score curve and a ratio, and the result-quality verdict."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from asha_efficiency import arm_name, best_curve, epochs_to_reach, summarize
from result_quality import verdict


def test_only_finished_trials_count_and_the_curve_keeps_improvements() -> None:
    # (time, score when the epoch finished a trial at max_epochs else None)
    events = [(1, None), (2, 0.9), (3, None), (4, 1.2), (5, 0.7), (6, None), (7, 0.8)]
    assert best_curve(events) == [(2, 0.9), (5, 0.7)]
    assert epochs_to_reach(best_curve(events), 0.75) == 5
    assert epochs_to_reach(best_curve(events), 0.5) is None


def test_the_headline_ratio_is_against_tpe_without_early_stopping() -> None:
    runs = [
        {"arm": arm_name("tpe", False), "seed": 0, "best": 0.5, "trial_epochs": 100,
         "curve": [(40, 0.8), (80, 0.5)]},
        {"arm": arm_name("tpe", True), "seed": 0, "best": 0.45, "trial_epochs": 30,
         "curve": [(10, 0.6), (20, 0.45)]},
        {"arm": arm_name("random", True), "seed": 0, "best": 0.7, "trial_epochs": 30,
         "curve": [(12, 0.7)]},
        {"arm": arm_name("random", False), "seed": 0, "best": 0.5, "trial_epochs": 100,
         "curve": [(90, 0.5)]},
    ]
    summary = summarize(runs, [0])
    assert summary["tpe_asha_ratio"] == [pytest.approx(20 / 80)]
    seed = summary["per_seed"][0]
    assert seed[arm_name("random", True)]["ratio"] is None  # never reached 0.5
    assert seed[arm_name("random", False)]["ratio"] == pytest.approx(90 / 80)


def test_the_quality_target_needs_higher_f1_and_lower_latency() -> None:
    row = {"onnxruntime_ms": 0.1, "latency_ratio": 0.5}
    rows = [{"model": "searched", "f1": 0.80, **row},
            {"model": "slow_but_better", "f1": 0.85, "onnxruntime_ms": 0.2, "latency_ratio": 1.5},
            {"model": "worse", "f1": 0.70, "onnxruntime_ms": 0.2, "latency_ratio": 1.5}]
    checks = verdict(rows)
    assert not checks["searched vs slow_but_better"]["met"]
    assert checks["searched vs worse"]["met"]
    assert checks["searched vs worse"]["onnx_speedup"] == pytest.approx(2.0)
