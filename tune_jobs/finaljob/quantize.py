"""int8 for shipping: ONNX Runtime static quantization (`models/int8.py`, in every format of
its registry) calibrated on training images through exactly the preprocessing `predict` runs,
the model's metadata written in; and, when int8 loses accuracy, the tensors that lose most
(ORT's QDQ debugging tools). Free of torch.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.int8 import FORMATS, Int8Format, ort_tools, preprocess, quantize_static
from tune_jobs.finaljob.meta import ModelMeta, write_onnx_meta
from tune_jobs.finaljob.preprocess import load_batch

log = logging.getLogger(__name__)


class QuantizeError(RuntimeError):
    """A model that could not be quantized; the message says why."""


class CalibrationImages:
    """ORT's `CalibrationDataReader` protocol over up to `count` image files, drawn from
    `files` with a fixed seed, decoded and normalised by `preprocess.load_batch` (the
    deployment path), `batch` at a time. Re-iterable (`rewind`)."""

    def __init__(self, files: Sequence[Path | str], meta: ModelMeta, count: int = 300,
                 batch: int = 32, seed: int = 0) -> None:
        picked = list(files)
        random.Random(seed).shuffle(picked)
        self.files, self.meta, self.batch = picked[:count], meta, batch
        self.used = 0  # images decoded in the last pass
        self._batches: Iterator[np.ndarray] = iter(())
        self.rewind()

    def _iter(self) -> Iterator[np.ndarray]:
        self.used = 0
        for start in range(0, len(self.files), self.batch):
            x, kept, _ = load_batch(self.files[start:start + self.batch], self.meta)
            self.used += len(kept)
            if len(kept):
                yield x

    def rewind(self) -> None:
        self._batches = self._iter()

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._batches, None)
        return None if x is None else {"images": x}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        return iter(self.get_next, None)


def quantize(fp32: Path, out: Path, reader: CalibrationImages, fmt: Int8Format,
             meta: ModelMeta, warning: str | None = None) -> Path:
    """Static int8 quantization of `fp32` (already `preprocess`ed) to `out`: per-channel
    weights, MinMax ranges over the calibration images; `meta` is written into it with the
    format as its precision. Raises `QuantizeError` naming what went wrong."""
    if not reader.files:
        raise QuantizeError("no calibration images (the training split lists no files)")
    try:
        quantize_static(fp32, out, reader, fmt)
    except Exception as err:  # ORT raises many types; the caller flags the model with it
        if reader.used == 0:
            raise QuantizeError(f"none of {len(reader.files)} calibration images could be "
                                f"decoded (first: {reader.files[0]})") from err
        raise QuantizeError(f"{fmt.label}: {type(err).__name__}: {err}") from err
    write_onnx_meta(out, ModelMeta(meta.classes, meta.input_size, meta.resize,
                                   f"int8 {fmt.label}", warning))
    return out


@dataclass(frozen=True)
class TensorLoss:
    """One activation of a QDQ model: signal-to-quantization-noise ratio (dB, higher is
    better) of quantizing it alone (`own_db`) and of the int8 model's value against the fp32
    model's (`model_db`, the error accumulated up to there)."""

    tensor: str
    own_db: float
    model_db: float


def worst_tensors(fp32: Path, qdq: Path, reader: CalibrationImages,
                  k: int = 5) -> list[TensorLoss]:
    """The `k` activations that quantizing loses most at (lowest own SQNR), from ORT's QDQ
    debugging tools; `fp32` is the preprocessed model `qdq` was made from."""
    with ort_tools(), tempfile.TemporaryDirectory() as tmp:
        from onnxruntime.quantization import qdq_loss_debug as dbg

        saved = []
        for path in (fp32, qdq):
            augmented = Path(tmp) / f"{path.stem}.debug.onnx"
            dbg.modify_model_output_intermediate_tensors(str(path), str(augmented))
            saved.append(dbg.collect_activations(str(augmented), reader))
        matched = dbg.create_activation_matching(saved[1], saved[0])
        errors = dbg.compute_activation_error({n: m for n, m in matched.items()
                                               if "float" in m})
    losses = [TensorLoss(n, float(e["qdq_err"]), float(e.get("xmodel_err", np.nan)))
              for n, e in errors.items()]
    return sorted(losses, key=lambda t: t.own_db)[:k]


__all__ = ["FORMATS", "CalibrationImages", "Int8Format", "QuantizeError", "TensorLoss",
           "preprocess", "quantize", "worst_tensors"]
