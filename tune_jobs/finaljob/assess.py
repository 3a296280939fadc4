"""Benchmark a trained network on the test split: accuracy metrics, cost, speed and scores.

Each measurement is a frozen dataclass; `Assessment` holds them all, and `to_json` turns it
into the nested dict of metrics.json only at the edge.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_utils.augment import prepare_eval
from data_utils.images import BadImage, decode_file
from data_utils.loader import BatchLoader
from models.cost import (
    count_macs,
    count_params,
    fixed_threads,
    latency_ratio,
    measure_latency,
    measure_onnx_latency,
    onnx_session,
    serialized_size,
)
from tune_jobs.trial.engine import evaluate, per_class_f1
from tune_jobs.trial.score import score

# The competition's reference submit time (seconds for its whole test set at batch 1).
COMPETITION_SUBMIT_REF_S = 43.16


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class TestMetrics:
    f1: float  # macro
    accuracy: float
    loss: float
    confusion: list[list[int]]  # rows: true class, columns: predicted
    per_class: dict[str, ClassMetrics]


@dataclass(frozen=True)
class ModelCosts:
    params: int
    macs: int
    size_bytes: int


@dataclass(frozen=True)
class CpuSpeed:
    eager_ms: float  # batch 1, median
    torchscript_ms: float
    onnxruntime_ms: float
    eager_batch64_img_s: float
    onnxruntime_batch64_img_s: float


@dataclass(frozen=True)
class CudaSpeed:
    eager_ms: float
    eager_batch64_img_s: float


@dataclass(frozen=True)
class Speed:
    threads: int
    cpu: CpuSpeed
    cuda: CudaSpeed | None = None


@dataclass(frozen=True)
class LatencyRatio:
    latency_ratio: float  # candidate / reference, measured back to back
    latency_ms: float
    reference_ms: float


@dataclass(frozen=True)
class SubmitTime:
    seconds: float  # the whole test set at batch 1, JPEG decoding included
    images: int
    skipped: int


@dataclass(frozen=True)
class Scores:
    score: float
    competition_score: float


@dataclass(frozen=True)
class TrainingCheck:
    """Did the recipe train the net? (see `finaljob.job.training_check`)"""

    first_loss: float
    last_loss: float
    trained: bool


@dataclass(frozen=True)
class Assessment:
    """Everything measured of one trained network on the test split."""

    test: TestMetrics
    costs: ModelCosts
    speed: Speed
    ratio: LatencyRatio
    submit: SubmitTime
    scores: Scores
    export_max_abs_diff: dict[str, float]  # per export (torchscript, onnx): max |logit diff|
    test_images: int
    training: TrainingCheck | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def test_metrics(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                 classes: list[str], device: torch.device) -> TestMetrics:
    ev = evaluate(model.to(device), BatchLoader(images, labels, 256, device=device),
                  len(classes), device)
    cm = ev.confusion
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = per_class_f1(cm)
    return TestMetrics(
        f1=ev.f1, accuracy=ev.accuracy, loss=ev.loss, confusion=cm.tolist(),
        per_class={c: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]),
                                   int(cm[i].sum())) for i, c in enumerate(classes)},
    )


def _throughput(run, batch: int, repeats: int = 5) -> float:
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return batch * repeats / (time.perf_counter() - start)


def speed(model: nn.Module, size: int, ts_path: Path, onnx_path: Path, threads: int = 1,
          repeats: int = 50) -> Speed:
    """CPU latency at batch 1 (eager, TorchScript, ONNX Runtime) with fixed threads, and
    throughput at batch 64; the same on CUDA when there is one."""
    model = model.eval().cpu()
    eager_ms = measure_latency(model, size, threads=threads, repeats=repeats).median_ms
    ts_ms = measure_latency(model, size, threads=threads, repeats=repeats,
                            backend="torchscript").median_ms
    ort_ms = measure_onnx_latency(onnx_path, size, threads=threads, repeats=repeats).median_ms
    batch = torch.randn(64, 3, size, size)
    session = onnx_session(onnx_path, threads)
    with fixed_threads(threads), torch.inference_mode():
        eager_batch = _throughput(lambda: model(batch), 64)
    ort_batch = _throughput(lambda: session.run(None, {"images": batch.numpy()}), 64)
    cpu = CpuSpeed(eager_ms, ts_ms, ort_ms, eager_batch, ort_batch)
    cuda = None
    if torch.cuda.is_available():
        gpu = model.cuda()
        big = batch.cuda()
        with torch.inference_mode():
            cuda = CudaSpeed(
                eager_ms=measure_latency(gpu, size, repeats=repeats).median_ms,
                eager_batch64_img_s=_throughput(
                    lambda: (gpu(big), torch.cuda.synchronize()), 64, repeats=20))
        model.cpu()
    return Speed(threads, cpu, cuda)


def submit_time(onnx_path: Path, files: list[str], size: int, mode: str,
                threads: int = 1) -> SubmitTime:
    """The competition's "submit time": the whole test set at batch 1 from the JPEG files,
    decoding, preprocessing and ONNX Runtime inference included, model loading too."""
    start = time.perf_counter()
    session = onnx_session(onnx_path, threads)
    skipped = 0
    for path in files:
        try:
            pixels = decode_file(path, size, mode)
        except BadImage:
            skipped += 1
            continue
        x = prepare_eval(torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy())).numpy()
        session.run(None, {"images": x})
    return SubmitTime(time.perf_counter() - start, len(files) - skipped, skipped)


def costs(model: nn.Module, size: int) -> ModelCosts:
    return ModelCosts(count_params(model), count_macs(model, size), serialized_size(model))


def reference_ratio(model: nn.Module, reference: nn.Module, size: int, reference_size: int,
                    threads: int) -> LatencyRatio:
    r = latency_ratio(model.eval().cpu(), reference.eval(), size,
                      reference_size=reference_size, threads=threads, rounds=20)
    return LatencyRatio(r.ratio, r.candidate_ms, r.reference_ms)


def scores(f1: float, ratio: float, f1_ref: float, submit_seconds: float) -> Scores:
    return Scores(
        score=score(f1, ratio, f1_ref),
        # the same formula with the submit time as the latency term and the fixed 0.70
        competition_score=score(f1, submit_seconds / COMPETITION_SUBMIT_REF_S, 0.70),
    )


__all__ = ["Assessment", "ClassMetrics", "CpuSpeed", "CudaSpeed", "LatencyRatio",
           "ModelCosts", "Scores", "Speed", "SubmitTime", "TestMetrics", "TrainingCheck",
           "costs", "reference_ratio", "scores", "speed", "submit_time", "test_metrics"]
