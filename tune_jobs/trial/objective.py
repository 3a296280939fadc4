"""A candidate's costs and budgets: params, MACs and CPU latency ratio against the reference
model, measured back to back in the same process (the score formula is in `score.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

import models
from models.cost import count_macs, count_params, latency_ratio
from tune_jobs.config import ObjectiveConfig
from tune_jobs.trial.score import over_budget


@dataclass(frozen=True)
class Costs:
    params: int
    macs: int
    latency_ratio: float
    candidate_ms: float
    reference_ms: float

    def over_budget(self, cfg: ObjectiveConfig) -> str:
        """Why the candidate breaks a budget, or "" when it fits."""
        return over_budget(self.params, self.macs, self.latency_ratio, cfg)


def measure_costs(model: nn.Module, input_size: int, cfg: ObjectiveConfig,
                  reference: nn.Module | None = None) -> Costs:
    """Params, MACs and CPU latency ratio against the reference model (built when not given)."""
    reference = reference or models.build(cfg.reference, input_size=cfg.reference_size)
    ratio = latency_ratio(model, reference, input_size, reference_size=cfg.reference_size,
                          threads=cfg.latency_threads)
    return Costs(count_params(model), count_macs(model, input_size), ratio.ratio,
                 ratio.candidate_ms, ratio.reference_ms)
