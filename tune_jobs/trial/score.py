"""The competition's score, made hardware-neutral (lower is better), and the budgets a
candidate must fit; free of torch so that the learning-curve replay's trials start without it.

score = 0.5 * latency_ratio + sigmoid(20 * (f1_ref - f1)), with latency_ratio the candidate's
latency over the reference model's, measured back to back in the same process.
"""

from __future__ import annotations

import math
from typing import Any


def score(f1: float, latency_ratio: float, f1_ref: float = 0.70) -> float:
    return 0.5 * latency_ratio + 1.0 / (1.0 + math.exp(-20.0 * (f1_ref - f1)))


def failure_score(latency_ratio: float, f1_ref: float = 0.70) -> float:
    """The score of a candidate that learned nothing (f1 = 0): what a failed trial reports,
    so that searchers learn to avoid its region instead of ignoring it."""
    return score(0.0, latency_ratio, f1_ref)


def over_budget(params: float | None, macs: float | None, latency_ratio: float | None,
                budgets: Any) -> str:
    """Why a candidate breaks a budget of `budgets` (an ObjectiveConfig: max_params, max_macs,
    max_latency_ratio), or "" when it fits; an unknown cost is not judged."""
    checks = [("params", params, budgets.max_params), ("MACs", macs, budgets.max_macs),
              ("latency ratio", latency_ratio, budgets.max_latency_ratio)]
    return "; ".join(f"{name} {value:,.6g} > {limit:,.6g}" for name, value, limit in checks
                     if limit is not None and value is not None and value > limit)


__all__ = ["failure_score", "over_budget", "score"]
