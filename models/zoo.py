"""One way to get any network by name: a spec, a preset under `configs/models/`, or a
torchvision reference (`tv/<name>`), so benchmarks and the final job compare like with like."""

from __future__ import annotations

from torch import nn

from configs import config_dir
from models.builder import build_model
from models.reference import build_reference
from models.spec import ModelSpec

PRESET_DIR = config_dir() / "models"
REFERENCE_PREFIX = "tv/"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> ModelSpec:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown model preset {name!r}; presets in {PRESET_DIR}: "
                       f"{', '.join(list_presets())}")
    return ModelSpec.from_yaml(path)


def build(
    source: str | ModelSpec,
    num_classes: int | None = None,
    input_size: int | None = None,
    width: float | None = None,
) -> nn.Module:
    """Build a network from a spec, a preset name, or `tv/<torchvision name>`.

    `num_classes`, `input_size` and `width` override the spec's values when given.
    """
    if isinstance(source, str) and source.startswith(REFERENCE_PREFIX):
        return build_reference(source.removeprefix(REFERENCE_PREFIX), num_classes or 6,
                               1.0 if width is None else width)
    spec = load_preset(source) if isinstance(source, str) else source
    overrides = {"num_classes": num_classes, "input_size": input_size, "width": width}
    return build_model(spec.replace(**{k: v for k, v in overrides.items() if v is not None}))
