"""What every trial of a search shares (put once in Ray's object store by
`tune.with_parameters`): the config, the classes, and the decoded arrays per image size.
Free of torch, so that a trial that does not train (the replay) starts without it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tune_jobs.config import Config


@dataclass
class SplitArrays:
    images: np.ndarray  # (N, 3, S, S) uint8
    labels: np.ndarray  # (N,) int64


@dataclass
class TrialData:
    config: Config
    classes: list[str]
    train: dict[int, SplitArrays]  # by image size
    val: dict[int, SplitArrays]
    # what the study records of the run (study/trials.py's StudyAttr: test_source, data_path)
    study_attrs: dict[str, Any] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # what only the trials read (a replay's table)


SEP = "/"  # flat names of drawn values: "s2/kernel", "train/lr"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A trial config as Tune passes it (nested: Tune splits names on '/') -> flat names."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{SEP}{key}" if prefix else str(key)
        if isinstance(value, dict):
            out |= flatten(value, name)
        else:
            out[name] = value
    return out


__all__ = ["SEP", "SplitArrays", "TrialData", "flatten"]
