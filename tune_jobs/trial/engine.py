"""The training engine shared by trials and the final job: optimisers and schedules by name,
one epoch of training, evaluation with macro-F1. Mixed precision on CUDA."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from data_utils.augment import to_input

# (pixels, labels): uint8 or [0, 1] float pixels, normalised on the device (`to_input`)
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the run diverged."""


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    # No weight decay on norms and biases (1-D tensors): it only hurts small nets.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


OPTIMIZERS: dict[str, Callable[[list[dict], float], torch.optim.Optimizer]] = {
    "sgd": lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True),
    "adamw": lambda groups, lr: torch.optim.AdamW(groups, lr=lr),
    "rmsprop": lambda groups, lr: torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-3,
                                                      momentum=0.9),
    # torchvision's reference recipe for the MobileNetV3s (TensorFlow's RMSprop: eps 0.0316)
    "rmsprop_torchvision": lambda groups, lr: torch.optim.RMSprop(
        groups, lr=lr, alpha=0.9, eps=0.0316, momentum=0.9),
}


def make_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float):
    try:
        build = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}") from None
    return build(_param_groups(model, weight_decay), lr)


def _cosine(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _onecycle(peak_of: Callable[[int, int], int]) -> Callable[[int, int], Callable[[int], float]]:
    """Linear up from 4 % to the peak learning rate, then linear down to 0.1 % at the end;
    `peak_of(total steps, steps per epoch)` is where the peak is."""

    def shape(total: int, steps_per_epoch: int) -> Callable[[int], float]:
        peak = max(1, min(total, peak_of(total, steps_per_epoch)))

        def factor(step: int) -> float:
            if step < peak:
                return 0.04 + 0.96 * step / peak
            return max(1e-3, (total - step) / max(1, total - peak))

        return factor

    return shape


SCHEDULES: dict[str, Callable[[int, int], Callable[[int], float]]] = {
    "cosine": _cosine,  # linear warm-up over the first epoch, then cosine to zero
    "onecycle": _onecycle(lambda total, per_epoch: int(0.3 * total)),  # up for 30 %, then down
    # The same with its warm-up fixed in epochs, not a share of the run: an early rung then
    # sees nets that trained at their full learning rate (#22: the rungs and the warm-up)
    "onecycle_2ep": _onecycle(lambda total, per_epoch: 2 * per_epoch),
    "constant": lambda total, warmup: (lambda step: 1.0),
}


def make_schedule(name: str, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                  epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule over the whole run (so a trial stopped early still saw warm-up)."""
    try:
        shape = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}") from None
    factor = shape(steps_per_epoch * epochs, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(device: torch.device):
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@dataclass
class EpochStats:
    loss: float
    seconds: float
    images: int


def train_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer,
                scheduler, criterion: nn.Module, device: torch.device,
                scaler: torch.amp.GradScaler | None = None) -> EpochStats:
    model.train()
    start, total, count = time.perf_counter(), 0.0, 0
    for x, y in batches:
        x, y = to_input(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            loss = criterion(model(x), y)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss is {loss.item()} after {count} images")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        total += loss.item() * len(y)
        count += len(y)
    return EpochStats(total / max(count, 1), time.perf_counter() - start, count)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(y_true * num_classes + y_pred,
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class_f1(confusion: np.ndarray) -> np.ndarray:
    tp = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(0), confusion.sum(1)
    denom = predicted + actual
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the labels or the predictions (as scikit-learn's
    `f1_score(average="macro", zero_division=0)`)."""
    present = (confusion.sum(0) + confusion.sum(1)) > 0
    return float(per_class_f1(confusion)[present].mean()) if present.any() else 0.0


@dataclass
class EvalStats:
    loss: float
    accuracy: float
    f1: float
    confusion: np.ndarray


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, num_classes: int,
             device: torch.device) -> EvalStats:
    model.eval()
    losses, preds, labels = [], [], []
    for x, y in batches:
        x, y = to_input(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        with _autocast(device):
            logits = model(x)
        losses.append(nn.functional.cross_entropy(logits.float(), y, reduction="sum").item())
        preds.append(logits.argmax(1).cpu().numpy())
        labels.append(y.cpu().numpy())
    y_pred, y_true = np.concatenate(preds), np.concatenate(labels)
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    return EvalStats(sum(losses) / len(y_true), float((y_pred == y_true).mean()),
                     macro_f1(confusion), confusion)
