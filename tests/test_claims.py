"""The operating points' claims without training: each verdict from the interval against its
bound (non-inferiority within the margin for fast, superiority for accurate), the latency
conditions, never a verdict from one seed or a model that did not train, and the seeds a
+-0.01 claim needs checked against Welch's interval itself."""

import numpy as np
import pytest

from tune_jobs.config import POINTS, load_config
from tune_jobs.finaljob.claims import (
    ClaimVerdict,
    LatencyLimit,
    Point,
    Versus,
    judge,
    latency_limit,
    onnxruntime_check,
    seeds_for_half_width,
    size_cap,
)
from tune_jobs.finaljob.stats import difference, estimate

FAST = load_config("ci.yaml", [f"{k}={v}" for k, v in POINTS["fast"].items()])
ACCURATE = load_config("ci.yaml", [f"{k}={v}" for k, v in POINTS["accurate"].items()])


def versus(name: str, searched: list[float], baseline: list[float], trained: bool = True
           ) -> Versus:
    return Versus(name, difference(searched, baseline),
                  (estimate(searched).std, estimate(baseline).std), trained)


SEARCHED = [0.80, 0.81, 0.79, 0.80, 0.81]
TIGHT = [0.800, 0.801, 0.799, 0.800, 0.801]


@pytest.mark.parametrize(("searched", "baseline", "fast", "accurate"), [
    # clearly below the searched model: both shown
    (SEARCHED, [0.70, 0.71, 0.69, 0.70, 0.71], ClaimVerdict.SHOWN, ClaimVerdict.SHOWN),
    # the same: within the 0.02 margin (fast shown); the interval straddles zero (accurate
    # not shown)
    (SEARCHED, SEARCHED, ClaimVerdict.SHOWN, ClaimVerdict.NOT_SHOWN),
    # the baseline 0.01 better, tightly: inside the margin, the interval below zero
    (TIGHT, [x + 0.01 for x in TIGHT], ClaimVerdict.SHOWN, ClaimVerdict.REFUTED),
    # the baseline 0.05 better: the whole interval below -0.02 as well
    (SEARCHED, [0.85, 0.86, 0.84, 0.85, 0.86], ClaimVerdict.REFUTED, ClaimVerdict.REFUTED),
    # a noisy baseline: the interval crosses -0.02 and zero
    (SEARCHED, [0.70, 0.95, 0.78, 0.90, 0.86], ClaimVerdict.NOT_SHOWN, ClaimVerdict.NOT_SHOWN),
])
def test_each_point_reads_its_own_bound(searched, baseline, fast, accurate) -> None:
    v = versus("mobilenet_v3_small", searched, baseline)
    fits = LatencyLimit(1.0, "a limit the searched model meets")
    assert judge(FAST, {"searched": 0.3}, fits, [v]).verdict == fast
    assert judge(ACCURATE, {"searched": 0.3}, fits, [v]).verdict == accurate


def test_fast_needs_every_baseline_and_the_latency() -> None:
    fits = LatencyLimit(1.0, "fits")
    good = versus("a", SEARCHED, [0.70, 0.71, 0.69, 0.70, 0.71])
    open_ = versus("b", SEARCHED, [0.70, 0.95, 0.78, 0.90, 0.86])
    claim = judge(FAST, {"searched": 0.3}, fits, [good, open_])
    assert claim.verdict == ClaimVerdict.NOT_SHOWN  # one check open: the claim is open
    assert [c.verdict for c in claim.checks] == [ClaimVerdict.SHOWN, ClaimVerdict.NOT_SHOWN]
    assert claim.checks[0].bound == -0.02 and claim.margin == 0.02
    too_slow = judge(FAST, {"searched": 1.2}, fits, [good])
    assert not too_slow.fast_enough and too_slow.verdict == ClaimVerdict.REFUTED
    assert judge(FAST, {"searched": 0.3}, LatencyLimit(None, "no baseline"), [good]).verdict == \
        ClaimVerdict.REFUTED  # fast with nothing to be faster than cannot hold


@pytest.mark.parametrize("case", ["one seed", "did not train", "no baseline"])
def test_no_verdict_without_an_interval(case) -> None:
    fits = LatencyLimit(1.0, "fits")
    vs = {"one seed": [versus("a", [0.8], [0.7])],
          "did not train": [versus("a", SEARCHED, [0.70, 0.71, 0.69], trained=False)],
          "no baseline": []}[case]
    claim = judge(FAST, {"searched": 0.3}, fits, vs)
    assert claim.verdict == ClaimVerdict.UNJUDGED
    assert claim.half_width is None and claim.seeds_for_target is None


def test_the_latency_limits() -> None:
    ratios = {"mobilenet_v3_small": 1.5, "shufflenet_v2_x0_5": 1.8}
    fast = latency_limit(FAST, ratios)
    assert fast.ratio == pytest.approx(1.5 / 3) and "mobilenet_v3_small" in fast.basis
    assert latency_limit(ACCURATE, ratios).ratio == 1.5
    # the budget's net need not be a baseline: its own measurement is used
    assert latency_limit(ACCURATE, {"shufflenet_v2_x0_5": 1.8}, 1.4).ratio == 1.4
    with pytest.raises(ValueError, match="mobilenet_v3_small"):
        latency_limit(ACCURATE, {})
    plain_f1 = load_config("ci.yaml", ["objective.kind=f1", "objective.max_latency_ratio=2.5"])
    assert latency_limit(plain_f1, ratios).ratio == 2.5
    assert latency_limit(FAST, {}).ratio is None
    claim = judge(ACCURATE, {"searched": 0.3}, latency_limit(ACCURATE, ratios), [])
    assert claim.point == Point.ACCURATE


def test_the_latency_condition_in_onnx_runtime_is_reported_beside_the_verdict() -> None:
    """Derived from the baselines' exports as the claim's limit is from their ratios; never
    a limit in ms from a ratio; the verdict still follows `objective.latency`, and the
    report says when the two disagree."""
    from tune_jobs.finaljob.report import _onnxruntime

    ms = {"mobilenet_v3_small": 0.6, "shufflenet_v2_x0_5": 0.9}
    fast = onnxruntime_check(FAST, 0.25, ms)
    assert fast.limit_ms == pytest.approx(0.2) and not fast.met
    assert "mobilenet_v3_small's ONNX Runtime latency 0.600 ms" in fast.basis
    accurate = onnxruntime_check(ACCURATE, 0.55, ms)
    assert accurate.limit_ms == 0.6 and accurate.met
    # the budget's net not exported beside them, or a bare ratio budget: no limit in ms
    assert onnxruntime_check(ACCURATE, 0.55, {"shufflenet_v2_x0_5": 0.9}) is None
    plain_f1 = load_config("ci.yaml", ["objective.kind=f1", "objective.max_latency_ratio=2.5"])
    assert onnxruntime_check(plain_f1, 0.55, ms) is None
    assert onnxruntime_check(FAST, 0.25, {}) is None
    good = versus("mobilenet_v3_small", SEARCHED, [0.70, 0.71, 0.69, 0.70, 0.71])
    met = judge(FAST, {"searched": 0.3}, LatencyLimit(0.5, "x"), [good], fast)
    assert met.verdict == ClaimVerdict.SHOWN and met.onnxruntime == fast
    assert "not met; **the runtimes disagree**" in _onnxruntime(met)
    agree = judge(ACCURATE, {"searched": 0.3}, LatencyLimit(0.5, "x"), [good], accurate)
    assert "0.550 ms against 0.600 ms" in _onnxruntime(agree)
    assert "met; it agrees." in _onnxruntime(agree)
    assert _onnxruntime(judge(FAST, {"searched": 0.3}, LatencyLimit(0.5, "x"), [good])) == ""


def test_only_the_accurate_budget_net_as_a_baseline_lets_the_searched_net_resize() -> None:
    both = ["mobilenet_v3_small", "shufflenet_v2_x0_5"]
    assert size_cap(ACCURATE, both) == "mobilenet_v3_small"
    # its latency as shipped is unknown without it: the searched net keeps its size
    assert size_cap(ACCURATE, ["shufflenet_v2_x0_5"]) is None
    assert size_cap(FAST, both) is None  # a third of the fastest: a larger input won't do
    plain_f1 = load_config("ci.yaml", ["objective.kind=f1", "objective.max_latency_ratio=2.5"])
    assert size_cap(plain_f1, both) is None


def test_the_points_are_what_their_names_promise() -> None:
    assert FAST.objective.kind == "score" and FAST.objective.max_latency_of is None
    assert ACCURATE.objective.kind == "f1"
    assert ACCURATE.objective.max_latency_of == "mobilenet_v3_small"


@pytest.mark.parametrize(("sa", "sb", "half"), [(0.01, 0.03, 0.01), (0.02, 0.02, 0.01),
                                                (0.015, 0.005, 0.02), (0.0, 0.0, 0.01)])
def test_the_seeds_for_a_width_give_that_width_and_one_fewer_does_not(sa, sb, half) -> None:
    n = seeds_for_half_width(sa, sb, half)

    def runs(s: float, k: int) -> list[float]:
        """k runs whose sample standard deviation is exactly s."""
        if k % 2 == 0:
            return list(0.8 + np.resize([1.0, -1.0], k) * s * np.sqrt((k - 1) / k))
        return list(0.8 + np.append(np.resize([1.0, -1.0], k - 1) * s, 0.0))

    def reached(k: int) -> float:
        low, high = difference(runs(sa, k), runs(sb, k)).ci95
        return (high - low) / 2

    assert reached(n) <= half + 1e-9
    if n > 2:
        assert reached(n - 1) > half
