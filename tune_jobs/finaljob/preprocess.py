"""What a deployed model does to an image file before it runs: decode, fit to the input size,
scale and normalise. Free of torch: `predict` runs it beside ONNX Runtime alone, and int8
calibration runs exactly it, so the ranges an int8 model is calibrated on are the ranges it
meets when deployed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_utils.images import BadImage, decode_file
from tune_jobs.finaljob.meta import ModelMeta

# ImageNet statistics, as data_utils.augment.normalize (not imported: it needs torch)
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def to_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 (N, 3, S, S) pixels -> the network's float32 input."""
    return ((pixels.astype(np.float32) / 255 - MEAN) / STD).astype(np.float32)


def load_batch(files: Sequence[Path | str], meta: ModelMeta
               ) -> tuple[np.ndarray, list[Path | str], list[tuple[Path | str, str]]]:
    """The network's input for `files` (those that decode), the files it holds, and the
    skipped ones with the reason."""
    pixels, kept, skipped = [], [], []
    for f in files:
        try:
            pixels.append(decode_file(f, meta.input_size, meta.resize))
            kept.append(f)
        except BadImage as err:
            skipped.append((f, err.reason))
    if not pixels:
        empty = np.zeros((0, 3, meta.input_size, meta.input_size), np.float32)
        return empty, kept, skipped
    return to_input(np.stack(pixels).transpose(0, 3, 1, 2)), kept, skipped
