"""Means with their noise: the 95 % interval of a mean over seeds (Student's t) and of the
difference of two means (Welch: the two models' variances need not be equal), and the verdict
a report may draw from an interval. One run has no interval, and no verdict is drawn from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from tune_jobs.outcome import StrEnum

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over `n` runs, its sample standard deviation and its 95 % interval (None for
    one run: no spread is known)."""

    n: int
    mean: float
    std: float
    ci95: tuple[float, float] | None

    def text(self, digits: int = 4) -> str:
        if self.ci95 is None:
            return f"{self.mean:.{digits}f} (1 run)"
        low, high = self.ci95
        d = digits
        return f"{self.mean:.{d}f} ± {self.std:.{d}f} [{low:.{d}f}, {high:.{d}f}]"


def _interval(centre: float, se: float, df: float) -> tuple[float, float]:
    if se == 0:  # identical runs: the interval is the point
        return centre, centre
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    return centre - half, centre + half


def estimate(values: Sequence[float]) -> Estimate:
    """Mean, sample standard deviation (ddof 1) and the t interval of the mean."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to estimate from")
    mean = math.fsum(values) / n
    if n == 1:
        return Estimate(1, mean, 0.0, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(n, mean, std, _interval(mean, std / math.sqrt(n), n - 1))


def difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) - mean(b) with Welch's interval (Welch-Satterthwaite degrees of freedom);
    `n` is the smaller sample, `std` the difference's standard error. No interval unless both
    have at least two runs."""
    ea, eb = estimate(a), estimate(b)
    diff = ea.mean - eb.mean
    if ea.n < 2 or eb.n < 2:
        return Estimate(min(ea.n, eb.n), diff, 0.0, None)
    va, vb = ea.std**2 / ea.n, eb.std**2 / eb.n
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (ea.n - 1) + vb**2 / (eb.n - 1)) if se > 0 else 1.0
    return Estimate(min(ea.n, eb.n), diff, se, _interval(diff, se, df))


class Verdict(StrEnum):
    """What an interval of (searched - baseline) lets a report say."""

    BETTER = "better"
    SAME = "no detectable difference"
    WORSE = "worse"
    UNJUDGED = "not judged"  # one run, or a model that did not train


def verdict(diff: Estimate) -> Verdict:
    """From the interval of (searched - baseline), higher is better: "better" only when the
    whole interval is above zero, "worse" when below; one run is never judged."""
    if diff.ci95 is None:
        return Verdict.UNJUDGED
    low, high = diff.ci95
    return Verdict.BETTER if low > 0 else Verdict.WORSE if high < 0 else Verdict.SAME


def median_index(values: Sequence[float]) -> int:
    """The index of the median run (the lower of the two middle ones for an even count): the
    run a report ships, typical rather than lucky."""
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    return order[(len(values) - 1) // 2]


__all__ = ["Estimate", "Verdict", "difference", "estimate", "median_index", "verdict"]
