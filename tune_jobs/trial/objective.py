"""A candidate's costs and budgets: params, MACs and CPU latency ratio against the reference
model, measured back to back in the same process (the score formula is in `score.py`).

The latency is timed the way `objective.latency` names, each a function in `LATENCY`: eager
PyTorch (`torch`), ONNX Runtime on the exported fp32 graphs (`ort`), or the candidate's int8
graph in ONNX Runtime against the fp32 reference (`ort-int8`). Eager PyTorch time is mostly
per-operator overhead for nets this small, which ONNX Runtime does not have: on 50 random
demo candidates it ranks the shipped ORT latency at Spearman 0.42, `ort` at 0.99
(benchmarks/results/int8_latency.json; BENCHMARKS.md, "int8").

`objective.max_latency_of` names a torchvision net whose latency is a budget: it is timed in
the same mode, interleaved with the candidate at the candidate's image size, so the budget
moves with the machine and the image size exactly as the candidate's ratio does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
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
    latency_ratios,
    onnx_latency_ratios,
    per_candidate,
)
from models.int8 import FASTEST, FORMATS, ArrayCalibration, preprocess, quantize_static
from models.zoo import REFERENCE_PREFIX
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
    # the latency ratio of objective.max_latency_of's net, timed with the candidate's at its
    # image size (None: no such budget)
    latency_limit: float | None = None

    def over_budget(self, cfg: ObjectiveConfig) -> str:
        """Why the candidate breaks a budget, or "" when it fits."""
        why = [over_budget(self.params, self.macs, self.latency_ratio, cfg)]
        if self.latency_limit is not None and self.latency_ratio > self.latency_limit:
            why.append(f"latency ratio {self.latency_ratio:.4g} > {self.latency_limit:.4g} "
                       f"({cfg.max_latency_of}'s)")
        return "; ".join(w for w in why if w)


# How one mode times models against the reference: one ratio per model, all timed
# interleaved in one process (a candidate and its latency budget's net measured alike), at
# one input size for all or one per model.
Timer = Callable[[list[nn.Module], nn.Module, int | Sequence[int], ObjectiveConfig],
                 list[LatencyRatio]]


def _torch(nets: list[nn.Module], reference: nn.Module, size: int | Sequence[int],
           cfg: ObjectiveConfig) -> list[LatencyRatio]:
    return latency_ratios(nets, reference, size, reference_size=cfg.reference_size,
                          threads=cfg.latency_threads)


def _ort(int8: bool) -> Timer:
    def timed(nets: list[nn.Module], reference: nn.Module, size: int | Sequence[int],
              cfg: ObjectiveConfig) -> list[LatencyRatio]:
        sizes, _ = per_candidate(size, len(nets), cfg.reference_size)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            ref = export_onnx(reference, cfg.reference_size, folder / "reference.onnx")
            files = [export_onnx(net, s, folder / f"net{i}.onnx")
                     for i, (net, s) in enumerate(zip(nets, sizes, strict=True))]
            if int8:
                files = [quantize_static(preprocess(f, folder / f"pre{i}.onnx"),
                                         folder / f"int8-{i}.onnx",
                                         ArrayCalibration(_noise_images(s)), FORMATS[FASTEST])
                         for i, (f, s) in enumerate(zip(files, sizes, strict=True))]
            return onnx_latency_ratios(files, ref, sizes, reference_size=cfg.reference_size,
                                       threads=cfg.latency_threads)
    return timed


def _noise_images(size: int) -> np.ndarray:
    """Calibration input for a model quantized only to be timed: its speed, not its
    accuracy, counts."""
    return np.random.default_rng(0).standard_normal(
        (CALIBRATION_IMAGES, 3, size, size)).astype(np.float32)


LATENCY: dict[str, Timer] = {"torch": _torch, "ort": _ort(int8=False),
                             "ort-int8": _ort(int8=True)}


def budget_net(cfg: ObjectiveConfig, num_classes: int) -> nn.Module | None:
    """objective.max_latency_of's net (random weights: only its speed counts), or None."""
    if cfg.max_latency_of is None:
        return None
    return models.build(f"{REFERENCE_PREFIX}{cfg.max_latency_of}", num_classes=num_classes)


def measure_costs(model: nn.Module, input_size: int, cfg: ObjectiveConfig,
                  reference: nn.Module | None = None, num_classes: int = 6) -> Costs:
    """Params, MACs and CPU latency ratio against the reference model (built when not given),
    timed as `cfg.latency` says; with `max_latency_of`, that net's ratio beside it."""
    reference = reference or models.build(cfg.reference, input_size=cfg.reference_size)
    limit = budget_net(cfg, num_classes)
    ratios = LATENCY[cfg.latency]([model] + ([limit] if limit else []), reference, input_size,
                                  cfg)
    return Costs(count_params(model), count_macs(model, input_size), ratios[0].ratio,
                 ratios[0].candidate_ms, ratios[0].reference_ms,
                 ratios[1].ratio if limit else None)
