"""The competition's score, made hardware-neutral (lower is better); free of torch so that
the learning-curve replay's trials start without it.

score = 0.5 * latency_ratio + sigmoid(20 * (f1_ref - f1)), with latency_ratio the candidate's
latency over the reference model's, measured back to back in the same process.
"""

from __future__ import annotations

import math


def score(f1: float, latency_ratio: float, f1_ref: float = 0.70) -> float:
    return 0.5 * latency_ratio + 1.0 / (1.0 + math.exp(-20.0 * (f1_ref - f1)))


def failure_score(latency_ratio: float, f1_ref: float = 0.70) -> float:
    """The score of a candidate that learned nothing (f1 = 0): what a failed trial reports,
    so that searchers learn to avoid its region instead of ignoring it."""
    return score(0.0, latency_ratio, f1_ref)


__all__ = ["failure_score", "score"]
