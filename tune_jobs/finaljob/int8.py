"""int8 beside fp32 for one model of the final job: every seed's trained net quantized in every
format, test macro-F1 of int8 and fp32 through ONNX Runtime (the same runtime and
preprocessing a deployment runs), latency of each format against fp32 interleaved in one
process, file sizes; then the format to ship, or the reason fp32 stays shipped.

int8 ships only when some format keeps the mean F1 within `max_f1_drop` of fp32 *and* is
faster at batch 1 (by more than the measurement's noise); otherwise the model is flagged with
the reason (for an accuracy loss, the tensors that lose most), fp32 stays the shipped model,
and the int8 file is still written, its metadata carrying the warning.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from data_utils.cache import DecodedSplit
from models.cost import onnx_latency_ratios, onnx_session
from tune_jobs.finaljob.export import export_onnx_with_meta
from tune_jobs.finaljob.meta import ModelMeta, write_onnx_meta
from tune_jobs.finaljob.preprocess import to_input
from tune_jobs.finaljob.quantize import (
    FORMATS,
    CalibrationImages,
    Int8Format,
    QuantizeError,
    TensorLoss,
    preprocess,
    quantize,
    worst_tensors,
)
from tune_jobs.finaljob.stats import Estimate, estimate
from tune_jobs.trial.engine import macro_f1

log = logging.getLogger(__name__)

DEBUG_IMAGES = 64  # calibration images the loss debugging runs (it keeps every activation)
# int8 must beat fp32 by more than the interleaved ratio's noise (a few % on a loaded 2-core
# machine) to ship: a tie is not a reason to deploy the lossier file.
SHIP_BELOW_RATIO = 0.95


@dataclass(frozen=True)
class FormatResult:
    """One int8 format of one model: F1 per seed and its paired difference from fp32, speed
    and size of the shipped seed's file; `error` when it could not be made."""

    format: str
    label: str
    f1: list[float]  # test macro-F1 per seed, in the order of `Int8Result.seeds`
    f1_difference: Estimate | None  # int8 - fp32, paired by seed
    agreement: float | None  # shipped seed: share of test images with the same prediction
    latency_ratio: float | None  # int8 / fp32, ORT, batch 1, interleaved
    int8_ms: float | None
    fp32_ms: float | None  # measured interleaved with it
    batch64_ratio: float | None  # the same at batch 64
    size_bytes: int | None
    size_ratio: float | None
    error: str | None = None


@dataclass(frozen=True)
class Int8Result:
    """int8 against fp32 for one model over its seeds (metrics.json's `int8`)."""

    name: str
    seeds: list[int]
    shipped_seed: int
    fp32_f1: list[float]  # ORT fp32 test macro-F1 per seed
    fp32_ms: float | None  # shipped seed, ORT, batch 1
    fp32_size_bytes: int
    formats: list[FormatResult]
    chosen: str | None  # the format written as <name>.int8.onnx
    shipped: str  # "int8" or "fp32"
    flags: list[str]  # why int8 is not shipped (empty when it is)
    worst_tensors: list[TensorLoss]  # for an accuracy loss: where quantizing loses most
    path: str | None  # the int8 file, None when no format could be made


def ort_predictions(path: Path, images: np.ndarray, threads: int = 1,
                    batch: int = 256) -> np.ndarray:
    """Class index per image of uint8 (N, 3, S, S) `images`, through ONNX Runtime."""
    session = onnx_session(path, threads)
    out = [session.run(None, {"images": to_input(images[i:i + batch])})[0].argmax(1)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def ort_f1(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return macro_f1(confusion)


def _try_quantize(pre: Path, out: Path, reader: CalibrationImages, fmt: Int8Format,
                  meta: ModelMeta) -> str | None:
    try:
        quantize(pre, out, reader, fmt, meta)
    except QuantizeError as err:
        log.warning("int8 %s of %s failed: %s", fmt.label, pre.name, err)
        return str(err)
    return None


def choose(formats: Sequence[FormatResult], max_f1_drop: float
           ) -> tuple[FormatResult | None, list[str]]:
    """The format to write (the fastest of those within the F1 limit, else the most accurate)
    and the reasons not to ship it (none: ship int8)."""
    made = [f for f in formats if f.error is None]
    if not made:
        return None, ["cannot quantize: " + "; ".join(f"{f.error}" for f in formats)]
    accurate = [f for f in made if f.f1_difference.mean >= -max_f1_drop]
    if not accurate:
        best = max(made, key=lambda f: f.f1_difference.mean)
        return best, [f"int8 loses accuracy: mean test macro-F1 {best.f1_difference.mean:+.4f} "
                      f"against fp32 in the best format ({best.label}), limit -{max_f1_drop}"]
    fastest = min(accurate, key=lambda f: f.latency_ratio)
    if fastest.latency_ratio >= SHIP_BELOW_RATIO:
        return fastest, [f"int8 is not faster: {fastest.latency_ratio:.2f}x fp32 latency at "
                         f"batch 1 in its fastest accurate format ({fastest.label}); it "
                         f"ships below {SHIP_BELOW_RATIO}x"]
    return fastest, []


def assess_int8(name: str, trained: Sequence[nn.Module], seeds: Sequence[int], shipped: int,
                meta: ModelMeta, test: DecodedSplit, calibration: Sequence[str],
                target: Path, *, images: int = 300, threads: int = 1,
                max_f1_drop: float = 0.01) -> Int8Result:
    """Quantize each of `trained` (one per seed; `shipped` indexes the exported one) in every
    format, calibrated on `images` of the `calibration` files; measure against fp32 on
    `test`; write the chosen format's file of the shipped seed to `target`. Never raises for
    a model that cannot be quantized: the result says why."""
    work = target.parent / f"{target.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    reader = CalibrationImages(calibration, meta, images)
    k = len(meta.classes)
    try:
        fp32, pre, fp32_f1, fp32_pred = [], [], [], []
        for model, seed in zip(trained, seeds, strict=True):
            path = export_onnx_with_meta(model, meta, work / f"s{seed}.onnx")
            fp32.append(path)
            pred = ort_predictions(path, test.images, threads)
            fp32_pred.append(pred)
            fp32_f1.append(ort_f1(pred, test.labels, k))
            try:
                pre.append(preprocess(path, work / f"s{seed}.pre.onnx"))
            except Exception as err:  # shape inference or the optimiser refused the graph
                pre.append(None)
                log.warning("int8 pre-processing of %s failed: %s", path, err)
        formats = [_measure_format(fmt, pre, fp32, fp32_f1, fp32_pred, seeds, shipped, meta,
                                   test, reader, work, threads)
                   for fmt in FORMATS.values()]
        fp32_ms = next((f.fp32_ms for f in formats if f.fp32_ms), None)
        chosen, flags = choose(formats, max_f1_drop)
        losses: list[TensorLoss] = []
        if flags and chosen is not None and flags[0].startswith("int8 loses accuracy"):
            losses = _debug_losses(pre[shipped], work / f"s{seeds[shipped]}.qdq-s8s8.onnx",
                                   calibration, meta)
        path = None
        if chosen is not None:
            path = target
            shutil.copyfile(work / f"s{seeds[shipped]}.{chosen.format}.onnx", path)
            write_onnx_meta(path, ModelMeta(meta.classes, meta.input_size, meta.resize,
                                            f"int8 {chosen.label}",
                                            "; ".join(flags) or None))
        result = Int8Result(
            name=name, seeds=list(seeds), shipped_seed=seeds[shipped], fp32_f1=fp32_f1,
            fp32_ms=fp32_ms, fp32_size_bytes=fp32[shipped].stat().st_size, formats=formats,
            chosen=chosen.format if chosen else None, shipped="fp32" if flags else "int8",
            flags=flags, worst_tensors=losses, path=str(path) if path else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s int8: %s", name, "shipped (" + result.chosen + ")" if not result.flags
             else "flagged: " + "; ".join(result.flags))
    return result


def _measure_format(fmt: Int8Format, pre: list[Path | None], fp32: list[Path],
                    fp32_f1: list[float], fp32_pred: list[np.ndarray], seeds: Sequence[int],
                    shipped: int, meta: ModelMeta, test: DecodedSplit,
                    reader: CalibrationImages, work: Path, threads: int) -> FormatResult:
    f1s, shipped_pred = [], None
    for i, (p, seed) in enumerate(zip(pre, seeds, strict=True)):
        out = work / f"s{seed}.{fmt.name}.onnx"
        error = ("the fp32 graph could not be pre-processed for quantization" if p is None
                 else _try_quantize(p, out, reader, fmt, meta))
        if error:
            return FormatResult(fmt.name, fmt.label, f1s, None, None, None, None, None, None,
                                None, None, error)
        pred = ort_predictions(out, test.images, threads)
        f1s.append(ort_f1(pred, test.labels, len(meta.classes)))
        if i == shipped:
            shipped_pred = pred
    int8 = work / f"s{seeds[shipped]}.{fmt.name}.onnx"
    one = onnx_latency_ratios([int8], fp32[shipped], meta.input_size, threads=threads)[0]
    many = onnx_latency_ratios([int8], fp32[shipped], meta.input_size, batch=64,
                               threads=threads, warmup=2, rounds=5, per_round=1)[0]
    size = int8.stat().st_size
    return FormatResult(
        fmt.name, fmt.label, f1s, estimate([a - b for a, b in zip(f1s, fp32_f1, strict=True)]),
        float(np.mean(shipped_pred == fp32_pred[shipped])), one.ratio, one.candidate_ms,
        one.reference_ms, many.ratio, size, size / fp32[shipped].stat().st_size)


def _debug_losses(pre: Path | None, qdq: Path, calibration: Sequence[str],
                  meta: ModelMeta) -> list[TensorLoss]:
    if pre is None or not qdq.is_file():
        return []
    try:
        return worst_tensors(pre, qdq, CalibrationImages(calibration, meta, DEBUG_IMAGES))
    except Exception as err:  # the debugging is a diagnosis: never lose the result for it
        log.warning("int8 loss debugging failed: %s", err)
        return []


__all__ = ["FormatResult", "Int8Result", "assess_int8", "choose", "ort_f1", "ort_predictions"]
