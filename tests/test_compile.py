"""`final.compile`: a final-job training in channels_last under torch.compile computes what the
eager one does (same seed, no dropout: the same losses up to float reassociation), and its
checkpoint is the plain model's (it resumes and exports as an eager run's does)."""

import numpy as np
import pytest
import torch

import models
from tune_jobs.config import load_config
from tune_jobs.finaljob.runs import retrain
from tune_jobs.trial.space import TrainParams

# torch.compile takes tens of seconds the first time on a CPU: the slow lane
pytestmark = pytest.mark.slow

PARAMS = TrainParams(image_size=32, batch_size=32, optimizer="sgd", lr=0.05,
                     weight_decay=1e-4, schedule="cosine", label_smoothing=0.0,
                     augment_magnitude=0.0)


def _train(compiled: bool, tmp_path, epochs: int = 2) -> tuple[list[dict], dict]:
    cfg = load_config("ci.yaml", [f"final.compile={compiled}"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (128, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(128) % 6
    torch.manual_seed(0)
    model = models.build("baseline", num_classes=6, input_size=32)
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
    fresh = models.build("baseline", num_classes=6, input_size=32)
    fresh.load_state_dict(state["model"])


def test_without_a_compiler_it_trains_eagerly_and_says_so(tmp_path, monkeypatch, caplog) -> None:
    from tune_jobs.finaljob.runs import training_module

    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    model = models.build("baseline", num_classes=6, input_size=32)
    with caplog.at_level("WARNING", logger="tune_jobs.finaljob.runs"):
        assert training_module(model, True, torch.device("cpu")) is model
    assert "no C++ compiler" in caplog.text
