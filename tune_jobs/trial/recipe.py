"""The training recipe of a candidate, shared by search trials and the final retraining: the
same loader, augmentation, loss, optimiser and schedule from the same hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from data_utils.augment import AugmentConfig, BatchAugment
from data_utils.dataset import PreparedData, prepare_data
from data_utils.demo import demo_root
from data_utils.loader import BatchLoader
from data_utils.split import balanced_sample_weights, class_weights
from tune_jobs.config import Config, DataConfig
from tune_jobs.trial.engine import make_optimizer, make_schedule
from tune_jobs.trial.space import TrainParams


def data_path(cfg: Config) -> str:
    return str(cfg.data.path or demo_root())


def prepare_run_data(cfg: Config, size: int, progress: bool = True) -> PreparedData:
    """The run's data at `size`, split the same way by the search and the final job (the
    held-out test rows depend on every one of these settings)."""
    return prepare_data(data_path(cfg), size, mode=cfg.data.resize,
                        val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction,
                        seed=cfg.search.seed, cache_dir=cfg.data.cache_dir,
                        workers=cfg.data.workers, progress=progress)


@dataclass
class Recipe:
    loader: BatchLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    scaler: torch.amp.GradScaler | None


def make_recipe(model: nn.Module, images: np.ndarray, labels: np.ndarray, train: TrainParams,
                data_cfg: DataConfig, num_classes: int, epochs: int, device: torch.device,
                seed: int) -> Recipe:
    weights = balanced_sample_weights(labels, num_classes) if data_cfg.balanced_sampler else None
    loader = BatchLoader(images, labels, train.batch_size, shuffle=True,
                         augment=BatchAugment(AugmentConfig(magnitude=train.augment_magnitude)),
                         sample_weights=weights, drop_last=len(labels) > train.batch_size,
                         device=device, seed=seed)
    optimizer = make_optimizer(train.optimizer, model, train.lr, train.weight_decay)
    scheduler = make_schedule(train.schedule, optimizer, len(loader), epochs)
    counts = np.bincount(labels, minlength=num_classes)
    loss_weights = torch.as_tensor(class_weights(counts, data_cfg.class_weights), device=device)
    criterion = nn.CrossEntropyLoss(weight=loss_weights, label_smoothing=train.label_smoothing)
    # fp16 needs loss scaling; bf16 (and CPU fp32) do not
    scaler = (torch.amp.GradScaler("cuda") if device.type == "cuda"
              and not torch.cuda.is_bf16_supported() else None)
    return Recipe(loader, optimizer, scheduler, criterion, scaler)
