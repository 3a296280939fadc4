"""The presets that ship with litesearch: experiment configs (`demo.yaml`, `ci.yaml`,
`taco.yaml`), model presets (`models/`), the TACO class mapping (`taco_classes.yaml`) and the
cluster scripts (`cluster/`). A package so that an installed litesearch finds them through
`importlib.resources` exactly as a checkout does."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def config_dir() -> Path:
    """The folder of the shipped presets (a real folder: wheels install unzipped)."""
    return Path(str(files(__name__)))


__all__ = ["config_dir"]
