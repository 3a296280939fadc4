"""A candidate's costs and budgets: params, MACs and CPU latency ratio against the reference
model, measured back to back in the same process (the score formula is in `score.py`).

The latency is timed the way `objective.latency` names, each a function in `LATENCY`: eager
PyTorch (`torch`), ONNX Runtime on the exported fp32 graphs (`ort`), or the candidate's int8
graph in ONNX Runtime against the fp32 reference (`ort-int8`). Eager PyTorch time is mostly
per-operator overhead for nets this small, which ONNX Runtime does not have: on 50 random
demo candidates it ranks the shipped ORT latency at Spearman 0.42, `ort` at 0.99
(benchmarks/results/int8_latency.json; BENCHMARKS.md, "int8").
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

import models
from models.cost import (
    LatencyRatio,
    count_macs,
    count_params,
    export_onnx,
    latency_ratio,
    onnx_latency_ratios,
)
from models.int8 import FASTEST, FORMATS, ArrayCalibration, preprocess, quantize_static
from tune_jobs.config import ObjectiveConfig
from tune_jobs.trial.score import over_budget

CALIBRATION_IMAGES = 8  # int8 ranges for timing only: the graph's speed does not depend on them


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


def _torch(model: nn.Module, reference: nn.Module, size: int, cfg: ObjectiveConfig
           ) -> LatencyRatio:
    return latency_ratio(model, reference, size, reference_size=cfg.reference_size,
                         threads=cfg.latency_threads)


def _ort(int8: bool) -> Callable[[nn.Module, nn.Module, int, ObjectiveConfig], LatencyRatio]:
    def timed(model: nn.Module, reference: nn.Module, size: int, cfg: ObjectiveConfig
              ) -> LatencyRatio:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            ref = export_onnx(reference, cfg.reference_size, folder / "reference.onnx")
            cand = export_onnx(model, size, folder / "candidate.onnx")
            if int8:
                images = np.random.default_rng(0).standard_normal(
                    (CALIBRATION_IMAGES, 3, size, size)).astype(np.float32)
                cand = quantize_static(preprocess(cand, folder / "pre.onnx"),
                                       folder / "int8.onnx", ArrayCalibration(images),
                                       FORMATS[FASTEST])
            return onnx_latency_ratios([cand], ref, size, reference_size=cfg.reference_size,
                                       threads=cfg.latency_threads)[0]
    return timed


LATENCY: dict[str, Callable[[nn.Module, nn.Module, int, ObjectiveConfig], LatencyRatio]] = {
    "torch": _torch, "ort": _ort(int8=False), "ort-int8": _ort(int8=True)}


def measure_costs(model: nn.Module, input_size: int, cfg: ObjectiveConfig,
                  reference: nn.Module | None = None) -> Costs:
    """Params, MACs and CPU latency ratio against the reference model (built when not given),
    timed as `cfg.latency` says."""
    reference = reference or models.build(cfg.reference, input_size=cfg.reference_size)
    ratio = LATENCY[cfg.latency](model, reference, input_size, cfg)
    return Costs(count_params(model), count_macs(model, input_size), ratio.ratio,
                 ratio.candidate_ms, ratio.reference_ms)
