"""Exports of a trained network: the spec, a state dict, TorchScript and ONNX, each carrying
what a deployment needs to preprocess images (classes, input size, resize mode)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.cost import export_onnx, onnx_session
from models.spec import ModelSpec
from tune_jobs.finaljob.meta import META_KEY, ModelMeta, write_onnx_meta


def save_state(model: nn.Module, spec: ModelSpec, meta: ModelMeta, path: Path) -> Path:
    torch.save({"state_dict": model.state_dict(), "spec": spec.to_yaml(),
                "meta": meta.to_json()}, path)
    return path


def load_state(path: Path) -> tuple[nn.Module, ModelSpec, ModelMeta]:
    from models import build_model

    blob = torch.load(path, map_location="cpu", weights_only=True)
    spec = ModelSpec.from_yaml(blob["spec"])
    model = build_model(spec)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), spec, ModelMeta.from_json(blob["meta"])


def export_torchscript(model: nn.Module, meta: ModelMeta, path: Path) -> Path:
    model = model.eval().cpu()
    example = torch.randn(1, 3, meta.input_size, meta.input_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in 2.14
        # check_exports compares its logits with the model's on a real batch; trace's own
        # check would run both modules again (2 s a net on two cores)
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={META_KEY: meta.to_json()})
    return path


def load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, ModelMeta]:
    extra = {META_KEY: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), ModelMeta.from_json(extra[META_KEY])


def export_onnx_with_meta(model: nn.Module, meta: ModelMeta, path: Path) -> Path:
    export_onnx(model.eval().cpu(), meta.input_size, path)
    write_onnx_meta(path, meta)
    return path


def check_exports(model: nn.Module, ts_path: Path, onnx_path: Path, size: int,
                  atol: float = 1e-4) -> dict[str, float]:
    """Max absolute difference of each export's logits from the model's on one batch."""
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    model = model.eval().cpu()
    with torch.no_grad():
        expected = model(x).numpy()
        scripted = load_torchscript(ts_path)[0](x).numpy()
    onnx_out = onnx_session(onnx_path).run(None, {"images": x.numpy()})[0]
    diffs = {"torchscript": float(np.abs(scripted - expected).max()),
             "onnx": float(np.abs(onnx_out - expected).max())}
    bad = {k: v for k, v in diffs.items() if v > atol}
    if bad:
        raise RuntimeError(f"exports disagree with the model beyond {atol}: {bad}")
    return diffs
