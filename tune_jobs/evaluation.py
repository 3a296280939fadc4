"""Benchmark a trained network on the test split: accuracy metrics, cost, speed and scores."""

from __future__ import annotations

import time
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
from tune_jobs.engine import evaluate, per_class_f1
from tune_jobs.objective import score

# The competition's reference submit time (seconds for its whole test set at batch 1).
COMPETITION_SUBMIT_REF_S = 43.16


def test_metrics(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                 classes: list[str], device: torch.device) -> dict:
    ev = evaluate(model.to(device), BatchLoader(images, labels, 256, device=device),
                  len(classes), device)
    cm = ev.confusion
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = per_class_f1(cm)
    return {
        "f1": ev.f1, "accuracy": ev.accuracy, "loss": ev.loss, "confusion": cm.tolist(),
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]),
                          "f1": float(f1[i]), "support": int(cm[i].sum())}
                      for i, c in enumerate(classes)},
    }


def _throughput(run, batch: int, repeats: int = 5) -> float:
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return batch * repeats / (time.perf_counter() - start)


def speed(model: nn.Module, size: int, ts_path: Path, onnx_path: Path, threads: int = 1,
          repeats: int = 50) -> dict:
    """CPU latency at batch 1 (eager, TorchScript, ONNX Runtime) with fixed threads, and
    throughput at batch 64; the same on CUDA when there is one."""
    model = model.eval().cpu()
    out = {"threads": threads, "cpu": {
        "eager_ms": measure_latency(model, size, threads=threads, repeats=repeats).median_ms,
        "torchscript_ms": measure_latency(model, size, threads=threads, repeats=repeats,
                                          backend="torchscript").median_ms,
        "onnxruntime_ms": measure_onnx_latency(onnx_path, size, threads=threads,
                                               repeats=repeats).median_ms,
    }}
    batch = torch.randn(64, 3, size, size)
    session = onnx_session(onnx_path, threads)
    with fixed_threads(threads), torch.inference_mode():
        out["cpu"]["eager_batch64_img_s"] = _throughput(lambda: model(batch), 64)
    out["cpu"]["onnxruntime_batch64_img_s"] = _throughput(
        lambda: session.run(None, {"images": batch.numpy()}), 64)
    if torch.cuda.is_available():
        gpu = model.cuda()
        out["cuda"] = {"eager_ms": measure_latency(gpu, size, repeats=repeats).median_ms}
        big = batch.cuda()
        with torch.inference_mode():
            out["cuda"]["eager_batch64_img_s"] = _throughput(
                lambda: (gpu(big), torch.cuda.synchronize()), 64, repeats=20)
        model.cpu()
    return out


def submit_time(onnx_path: Path, files: list[str], size: int, mode: str,
                threads: int = 1) -> dict:
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
    return {"seconds": time.perf_counter() - start, "images": len(files) - skipped,
            "skipped": skipped}


def costs(model: nn.Module, size: int) -> dict:
    return {"params": count_params(model), "macs": count_macs(model, size),
            "size_bytes": serialized_size(model)}


def reference_ratio(model: nn.Module, reference: nn.Module, size: int, reference_size: int,
                    threads: int) -> dict:
    r = latency_ratio(model.eval().cpu(), reference.eval(), size,
                      reference_size=reference_size, threads=threads, rounds=20)
    return {"latency_ratio": r.ratio, "latency_ms": r.candidate_ms,
            "reference_ms": r.reference_ms}


def scores(f1: float, ratio: float, f1_ref: float, submit_seconds: float) -> dict:
    return {
        "score": score(f1, ratio, f1_ref),
        # the same formula with the submit time as the latency term and the fixed 0.70
        "competition_score": score(f1, submit_seconds / COMPETITION_SUBMIT_REF_S, 0.70),
    }
