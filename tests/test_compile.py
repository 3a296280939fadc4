"""`final.compile`: a final-job training in channels_last under torch.compile computes what the
eager one does (same seed, no dropout: the same losses up to float reassociation), and its
checkpoint is the plain model's (it resumes and exports as an eager run's does)."""

import dataclasses

import numpy as np
import pytest
import torch

import models
from models.spec import ModelSpec
from tune_jobs.config import load_config
from tune_jobs.finaljob.runs import retrain
from tune_jobs.trial.space import TrainParams

# torch.compile takes tens of seconds the first time on a CPU: the slow lane
pytestmark = pytest.mark.slow

# Two inverted-residual stages (one with squeeze-excitation, hardswish) and a head: the
# operations of the real nets, in a graph that compiles in half the time of the full baseline
SMALL = ModelSpec.from_yaml("""
name: small
stem: {channels: 16, kernel: 3, stride: 2, act: hardswish, pool: false}
stages:
- {block: irv3, out_channels: 16, repeats: 1, stride: 2, kernel: 3, expansion: 1.0, se: true,
   act: relu}
- {block: irv3, out_channels: 24, repeats: 2, stride: 2, kernel: 3, expansion: 4.0, se: false,
   act: hardswish}
head: {channels: 64, hidden: 0, dropout: 0.2, act: hardswish}
width: 1.0
depth: 1.0
input_size: 32
num_classes: 6
""")

PARAMS = TrainParams(image_size=32, batch_size=32, optimizer="sgd", lr=0.05,
                     weight_decay=1e-4, schedule="cosine", label_smoothing=0.0,
                     augment_magnitude=0.0)


def _train(compiled: bool, tmp_path, epochs: int = 2) -> tuple[list[dict], dict]:
    cfg = load_config("ci.yaml", [f"final.compile={compiled}"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (128, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(128) % 6
    torch.manual_seed(0)
    model = models.build_model(SMALL)
    for m in model.modules():  # compiled dropout draws other masks: take chance out
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    checkpoint = tmp_path / f"compiled-{compiled}.pt"
    history = retrain(model, images, labels, PARAMS, cfg, 6, epochs, checkpoint, "t",
                      torch.device("cpu"), progress=False, seed=0)
    return history, torch.load(checkpoint, weights_only=False)


def test_a_compiled_training_is_the_eager_one(tmp_path) -> None:
    eager, _ = _train(False, tmp_path)
    compiled, state = _train(True, tmp_path)
    # the first epoch (four steps) agrees to float noise; on random labels the runs then drift
    # apart as any two float orders of the same training do
    assert compiled[0]["loss"] == pytest.approx(eager[0]["loss"], rel=1e-3)
    assert compiled[1]["loss"] == pytest.approx(eager[1]["loss"], rel=0.05)
    # the checkpoint holds the model's own weights, loadable by a fresh eager model
    assert not any(k.startswith(("_orig_mod", "net.")) for k in state["model"])
    fresh = models.build_model(SMALL)
    fresh.load_state_dict(state["model"])


def test_without_a_compiler_it_trains_eagerly_and_says_so(tmp_path, monkeypatch, caplog) -> None:
    from tune_jobs.finaljob.runs import training_module

    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    model = models.build("baseline", num_classes=6, input_size=32)
    with caplog.at_level("WARNING", logger="tune_jobs.finaljob.runs"):
        assert training_module(model, True, torch.device("cpu")) is model
    assert "no C++ compiler" in caplog.text


def test_one_process_trains_a_net_compiled_at_one_size_and_then_another(tmp_path) -> None:
    """A pool worker of the final job trains one training after another: ShuffleNetV2 at one
    input size, then at another. Against the first training's compiled graphs the second
    compiled with symbolic sizes and Inductor failed ("cannot determine truth value of
    Relational"); each training now compiles afresh."""
    cfg = load_config("ci.yaml", ["final.compile=true"])
    rng = np.random.default_rng(0)
    for size in (32, 16):
        images = rng.integers(0, 256, (120, 3, size, size), dtype=np.uint8)  # a last batch of 24
        params = dataclasses.replace(PARAMS, image_size=size)
        torch.manual_seed(0)
        model = models.build("tv/shufflenet_v2_x0_5", num_classes=6)
        history = retrain(model, images, np.arange(120) % 6, params, cfg, 6, 1,
                          tmp_path / f"{size}.pt", f"s{size}", torch.device("cpu"),
                          progress=False, seed=0)
        assert np.isfinite(history[0]["loss"])
