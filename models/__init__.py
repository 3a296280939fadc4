"""What a network is: registry (the block registry), blocks and layers (what a stage is made
of), spec (`ModelSpec`), builder (the one loop that builds it), zoo (presets and torchvision
nets by name), reference (the latency reference nets), cost (params, MACs, latency), int8
(ONNX Runtime static quantization)."""

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
