"""The Ray Tune trainable: one candidate, trained an epoch at a time, reported per epoch.

It never raises: a candidate over budget, a diverged loss, an out-of-memory error or any
other exception ends the trial with a final report saying why (`outcome`, `reason`), so the
search goes on and the study records every trial honestly. Only a dead worker reaches Tune
as an error (and is retried by `FailureConfig`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
import traceback
import zlib
from pathlib import Path

import torch
from torch import nn

import models
from data_utils.loader import BatchLoader
from tune_jobs.config import Config
from tune_jobs.outcome import Outcome
from tune_jobs.trial.data import TrialData
from tune_jobs.trial.engine import NonFiniteLoss, evaluate, train_epoch
from tune_jobs.trial.objective import Costs, measure_costs
from tune_jobs.trial.recipe import make_recipe
from tune_jobs.trial.report import TrialReport, Where, next_tse_ema
from tune_jobs.trial.space import Candidate, candidate_from_config

CHECKPOINT_FILE = "state.pt"
# A trial config may carry its own seed under this name (weights, data order, augmentation);
# without it every trial uses search.seed. The learning-curve build trains a second seed.
SEED_KEY = "seed"


def _report(report: TrialReport, checkpoint_dir: str | None = None) -> None:
    from ray import tune

    checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
    tune.report(report.as_result(), checkpoint=checkpoint)


def _device(config: Config) -> torch.device:
    wants_gpu = config.resources.gpus_per_trial > 0
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def _where(cand: Candidate, costs: Costs, started_at: float) -> Where:
    import ray
    from ray import tune

    return Where(
        latency_ratio=costs.latency_ratio, params=costs.params, macs=costs.macs,
        latency_ms=costs.candidate_ms, reference_ms=costs.reference_ms,
        image_size=cand.train.image_size, node=platform.node(),
        node_id=ray.get_runtime_context().get_node_id(),
        gpu_ids=",".join(str(g) for g in ray.get_gpu_ids()), started_at=started_at,
        trial_dir=tune.get_context().get_trial_dir())


def _failure(err: Exception) -> Outcome:
    """The outcome an exception in a trial stands for."""
    if isinstance(err, NonFiniteLoss):
        return Outcome.NAN_LOSS
    return Outcome.OOM if isinstance(err, torch.OutOfMemoryError) else Outcome.ERROR


def train_candidate(config: dict, data: TrialData) -> None:
    """Tune function trainable; `config` holds the searcher's draws (flat or nested names)."""
    cfg = data.config
    f1_ref = cfg.objective.f1_ref
    # Ray logs every checkpoint at INFO from the worker; the study records where they are
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    torch.set_num_threads(max(1, int(cfg.resources.cpus_per_trial)))
    started, started_at = time.perf_counter(), time.time()
    where = Where()
    try:
        cand = candidate_from_config(config, cfg.space, len(data.classes))
        # The same candidate gets the same initial weights on any worker, reused or not.
        seed = int(config.get(SEED_KEY, cfg.search.seed))
        drawn = json.dumps(cand.params, sort_keys=True, default=str).encode()
        torch.manual_seed(zlib.crc32(drawn) ^ seed)
        model = models.build_model(cand.spec)
        costs = measure_costs(model, cand.train.image_size, cfg.objective,
                              num_classes=len(data.classes))
        where = _where(cand, costs, started_at)
        why = costs.over_budget(cfg.objective)
        if why:
            _report(TrialReport.failed(Outcome.OVER_BUDGET, why, f1_ref, where))
            return
        _train(cfg, data, cand, model, where, started, seed)
    except Exception as err:  # recorded, never raised: one bad trial must not stop the search
        outcome = _failure(err)
        if outcome == Outcome.OOM and torch.cuda.is_available():
            torch.cuda.empty_cache()  # the worker may be reused by the next trial
        _report(TrialReport.failed(outcome, f"{type(err).__name__}: {err}", f1_ref, where,
                                   traceback.format_exc()[-4000:]))


def train_listed(config: dict, data: TrialData, configs: list[dict]) -> None:
    """Tune function over a fixed list of trial configs (a grid, e.g. the learning-curve
    build): trains `configs[config["index"]]` with `train_candidate`."""
    train_candidate(configs[config["index"]], data)


def _train(cfg: Config, data: TrialData, cand: Candidate, model: nn.Module, where: Where,
           started: float, seed: int) -> None:
    from ray import tune

    device = _device(cfg)
    model.to(device)
    size, epochs = cand.train.image_size, cfg.scheduler.max_epochs
    train, val = data.train[size], data.val[size]
    recipe = make_recipe(model, train.images, train.labels, cand.train, cfg.data,
                         len(data.classes), epochs, device, seed)
    optimizer, scheduler = recipe.optimizer, recipe.scheduler
    val_loader = BatchLoader(val.images, val.labels, 256, device=device)
    start_epoch, tse_ema = 0, 0.0
    checkpoint = tune.get_checkpoint()
    if checkpoint:  # resume where the last report left off (a retried or restored trial)
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device,
                               weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, tse_ema = state["epoch"], state.get("tse_ema", 0.0)
    last_checkpoint = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        recipe.loader.set_epoch(epoch)
        stats = train_epoch(model, recipe.loader, optimizer, scheduler, recipe.criterion, device,
                            recipe.scaler)
        ev = evaluate(model, val_loader, len(data.classes), device)
        tse_ema = next_tse_ema(tse_ema, stats.loss)
        report = TrialReport.trained(
            where, epoch + 1, ev.f1, ev.accuracy, ev.loss, stats.loss, cfg.objective.f1_ref,
            lr=optimizer.param_groups[0]["lr"], tse_ema=tse_ema, epoch_seconds=stats.seconds,
            images_per_second=stats.images / max(stats.seconds, 1e-9),
            wall_seconds=time.perf_counter() - started, reported_at=time.time())
        if time.perf_counter() - last_checkpoint < cfg.search.checkpoint_interval_s:
            _report(report)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                        "tse_ema": tse_ema,
                        "spec": cand.spec.to_yaml()}, os.path.join(tmp, CHECKPOINT_FILE))
            _report(report, tmp)
        last_checkpoint = time.perf_counter()
