"""What a network is: block registry, blocks, `ModelSpec`, the builder, cost metrics, references."""

from models.builder import LiteNet, build_model
from models.registry import BLOCKS, get_block, register_block
from models.spec import HeadSpec, ModelSpec, SpecError, StageSpec, StemSpec
from models.zoo import build, list_presets, load_preset

__all__ = [
    "BLOCKS",
    "HeadSpec",
    "LiteNet",
    "ModelSpec",
    "SpecError",
    "StageSpec",
    "StemSpec",
    "build",
    "build_model",
    "get_block",
    "list_presets",
    "load_preset",
    "register_block",
]
