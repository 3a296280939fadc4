"""The objective: the competition's score, made hardware-neutral (lower is better).

score = 0.5 * latency_ratio + sigmoid(20 * (f1_ref - f1)), with latency_ratio the candidate's
latency over the reference model's, measured back to back in the same process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

import models
from models.cost import count_macs, count_params, latency_ratio
from tune_jobs.config import ObjectiveConfig


def score(f1: float, latency_ratio: float, f1_ref: float = 0.70) -> float:
    return 0.5 * latency_ratio + 1.0 / (1.0 + math.exp(-20.0 * (f1_ref - f1)))


def failure_score(latency_ratio: float, f1_ref: float = 0.70) -> float:
    """The score of a candidate that learned nothing (f1 = 0): what a failed trial reports,
    so that searchers learn to avoid its region instead of ignoring it."""
    return score(0.0, latency_ratio, f1_ref)


@dataclass(frozen=True)
class Costs:
    params: int
    macs: int
    latency_ratio: float
    candidate_ms: float
    reference_ms: float

    def over_budget(self, cfg: ObjectiveConfig) -> str:
        """Why the candidate breaks a budget, or "" when it fits."""
        checks = [
            ("params", self.params, cfg.max_params),
            ("MACs", self.macs, cfg.max_macs),
            ("latency ratio", self.latency_ratio, cfg.max_latency_ratio),
        ]
        broken = [f"{name} {value:,.6g} > {limit:,.6g}" for name, value, limit in checks
                  if limit is not None and value > limit]
        return "; ".join(broken)


def measure_costs(model: nn.Module, input_size: int, cfg: ObjectiveConfig,
                  reference: nn.Module | None = None) -> Costs:
    """Params, MACs and CPU latency ratio against the reference model (built when not given)."""
    reference = reference or models.build(cfg.reference, input_size=cfg.reference_size)
    ratio = latency_ratio(model, reference, input_size, reference_size=cfg.reference_size,
                          threads=cfg.latency_threads)
    return Costs(count_params(model), count_macs(model, input_size), ratio.ratio,
                 ratio.candidate_ms, ratio.reference_ms)
