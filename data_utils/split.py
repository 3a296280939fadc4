"""Stratified split, class counts, and the imbalance remedies (class weights, balanced sampling)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels), minlength=num_classes)


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val): each class contributes `val_fraction` of its rows (rounded,
    at least one when it has two or more) to validation. Sorted, reproducible from the seed."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(len(rows) - 1, max(1, round(len(rows) * val_fraction)))
        val.append(rows[:n_val])
    val_rows = np.sort(np.concatenate(val)) if val else np.empty(0, np.int64)
    train_rows = np.setdiff1d(np.arange(len(labels)), val_rows)
    return train_rows, val_rows


def _uniform(counts: np.ndarray, beta: float) -> np.ndarray:
    return np.ones(len(counts))


def _inverse(counts: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / np.maximum(counts, 1)


def _effective(counts: np.ndarray, beta: float) -> np.ndarray:
    # Cui et al. 2019: weight by 1 / effective number of samples, (1 - beta^n) / (1 - beta).
    return (1.0 - beta) / (1.0 - np.power(beta, np.maximum(counts, 1)))


CLASS_WEIGHTS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "none": _uniform,
    "inverse": _inverse,
    "effective": _effective,
}


def class_weights(counts: np.ndarray, method: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Loss weights per class, normalised to mean 1 (so the learning rate keeps its meaning)."""
    try:
        weights = CLASS_WEIGHTS[method](np.asarray(counts, np.float64), beta)
    except KeyError:
        raise ValueError(f"class weight method must be one of {sorted(CLASS_WEIGHTS)}, "
                         f"got {method!r}") from None
    return (weights / weights.mean()).astype(np.float32)


def balanced_sample_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-row sampling weights that draw every class equally often (a class-balanced sampler)."""
    counts = class_counts(labels, num_classes)
    return (1.0 / np.maximum(counts, 1))[np.asarray(labels)]
