"""int8 by ONNX Runtime static quantization, the part every caller shares: the formats (a
registry) and one call that turns a pre-processed fp32 ONNX file into an int8 one. Free of
torch. The final job (`tune_jobs/finaljob/quantize.py`) adds calibration on real images, the
model's metadata and the diagnosis of lost accuracy; the search's `objective.latency:
ort-int8` only needs the graph, whose speed does not depend on the calibrated ranges.

ORT runs QDQ (quantize/dequantize pairs that its optimiser fuses) and QOperator (QLinearConv,
...) graphs through different kernels, so which one is faster depends on the net and the CPU.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Int8Format:
    name: str
    label: str
    quant_format: str  # onnxruntime.quantization.QuantFormat member
    activations: str  # QuantType member
    weights: str


FORMATS: dict[str, Int8Format] = {f.name: f for f in (
    # ORT's default for CNNs: signed activations and weights, QDQ nodes around each op
    Int8Format("qdq-s8s8", "QDQ S8S8", "QDQ", "QInt8", "QInt8"),
    # unsigned activations: the x86 kernels' native input (VPMADDUBSW / VNNI take u8 x s8)
    Int8Format("qdq-u8s8", "QDQ U8S8", "QDQ", "QUInt8", "QInt8"),
    # QLinear* operators instead of QDQ pairs: another kernel path
    Int8Format("qop-u8s8", "QOperator U8S8", "QOperator", "QUInt8", "QInt8"),
)}
# What the search times when it times int8: the fastest format at batch 1 for 80 of 100
# random candidates of the demo and taco spaces on the measured x86 CPU (QDQ U8S8 for the
# rest; QDQ S8S8 never: 2.5-3.8x slower than fp32; BENCHMARKS.md, "int8").
FASTEST = "qop-u8s8"


class CalibrationReader(Protocol):
    """ONNX Runtime's `CalibrationDataReader`: batches of the model's input until None."""

    def get_next(self) -> dict[str, np.ndarray] | None: ...

    def rewind(self) -> None: ...


class ArrayCalibration:
    """One calibration batch from an array already in the model's input form (N, 3, S, S)
    float32: for timing a quantized graph, where the ranges do not matter."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self._given = False

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._given:
            return None
        self._given = True
        return {"images": self.images}

    def rewind(self) -> None:
        self._given = False


@contextlib.contextmanager
def ort_tools() -> Iterator[None]:
    """Around every use of ORT's quantization tools: they import `onnxruntime.transformers`,
    which appends its own folder (and `tools/`, `..`) to `sys.path`. Its `models` folder then
    shadows litesearch's `models` package in every process spawned later (the final job's
    training workers failed with "module 'models' has no attribute 'build_model'")."""
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ORT's quantizer warns on the root logger for every tensor it leaves in fp32 (shapes,
    indices): hundreds of lines per model that say nothing about its accuracy."""
    root = logging.getLogger()
    drop = logging.Filter("-")  # passes only a logger named "-": drops root's own records
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def preprocess(fp32: Path, out: Path) -> Path:
    """`quant_pre_process`: shape inference and graph optimisation (BatchNorm folded) before
    quantization, as ORT's guide asks."""
    with ort_tools():
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(fp32), str(out))
    return out


def quantize_static(fp32: Path, out: Path, reader: CalibrationReader, fmt: Int8Format) -> Path:
    """Static int8 quantization of `fp32` (already `preprocess`ed) to `out`: per-channel
    weights, MinMax ranges over the reader's batches. ORT's own exceptions pass through."""
    reader.rewind()
    with ort_tools(), _quiet_root_logger():
        from onnxruntime import quantization as q

        q.quantize_static(
            str(fp32), str(out), reader, quant_format=getattr(q.QuantFormat, fmt.quant_format),
            per_channel=True, activation_type=getattr(q.QuantType, fmt.activations),
            weight_type=getattr(q.QuantType, fmt.weights),
            calibrate_method=q.CalibrationMethod.MinMax)
    return out


__all__ = ["FASTEST", "FORMATS", "ArrayCalibration", "CalibrationReader", "Int8Format",
           "ort_tools", "preprocess", "quantize_static"]
