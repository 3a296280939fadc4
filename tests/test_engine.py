import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from tune_jobs.trial.engine import (
    NonFiniteLoss,
    confusion_matrix,
    macro_f1,
    make_optimizer,
    make_schedule,
    train_epoch,
)
from tune_jobs.trial.score import failure_score, score


def test_macro_f1_equals_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y_true = rng.integers(0, 6, 200)
        y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
        ours = macro_f1(confusion_matrix(y_true, y_pred, 6))
        assert ours == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))


def test_score_formula() -> None:
    assert score(0.70, 1.0) == pytest.approx(1.0)  # 0.5 * 1 + sigmoid(0)
    assert score(0.95, 0.5) < score(0.60, 0.5) < score(0.60, 1.0)
    assert failure_score(1.0) == pytest.approx(0.5 + 1 / (1 + np.exp(-14)))


@pytest.mark.parametrize("name", ["cosine", "onecycle", "onecycle_2ep", "constant"])
def test_schedules_stay_positive_and_bounded(name: str) -> None:
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer("sgd", model, 0.1, 0.0)
    sched = make_schedule(name, opt, steps_per_epoch=10, epochs=5)
    lrs = []
    for _ in range(50):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(0 <= lr <= 0.1 + 1e-9 for lr in lrs)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("sawtooth", opt, 10, 5)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lion", model, 0.1, 0.0)


def test_one_cycle_peaks_at_30_percent_or_after_two_epochs() -> None:
    def peak(name: str, epochs: int) -> int:
        opt = make_optimizer("sgd", torch.nn.Linear(2, 2), 0.1, 0.0)
        sched = make_schedule(name, opt, steps_per_epoch=10, epochs=epochs)
        lrs = []
        for _ in range(10 * epochs):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert lrs[0] == pytest.approx(0.004)  # from 4 % of the peak
        top = int(np.argmax(lrs))
        assert top == len(lrs) - 1 or lrs[-1] < 0.01  # down to near zero after the peak
        return top

    assert (peak("onecycle", 30), peak("onecycle", 10)) == (90, 30)
    assert (peak("onecycle_2ep", 30), peak("onecycle_2ep", 10)) == (20, 20)
    assert peak("onecycle_2ep", 1) == 9  # a run shorter than the warm-up only warms up


def test_weight_decay_skips_norms_and_biases() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    groups = make_optimizer("adamw", model, 0.01, 0.05).param_groups
    assert groups[0]["weight_decay"] == 0.05 and all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.ndim == 1 for p in groups[1]["params"])


def test_a_diverging_run_raises_non_finite_loss() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    opt = make_optimizer("sgd", model, 1e30, 0.0)
    sched = make_schedule("constant", opt, 4, 1)
    batches = [(torch.rand(8, 3, 2, 2) * 1e20, torch.randint(0, 2, (8,))) for _ in range(4)]
    with pytest.raises(NonFiniteLoss, match="loss is"):
        train_epoch(model, batches, opt, sched, torch.nn.CrossEntropyLoss(),
                    torch.device("cpu"))
