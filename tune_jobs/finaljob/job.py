"""The final job: choose a trial from the study, retrain it from scratch on train +
validation, benchmark it on the test split against baselines, export it, and report.

Everything comes from the study (the config, the classes, the chosen spec and
hyperparameters), so it runs on another machine than the one that searched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn
from tqdm import tqdm

import models
from data_utils.dataset import PreparedData
from models.spec import ModelSpec
from tune_jobs.config import Config, ConfigError
from tune_jobs.finaljob.assess import (
    Assessment,
    TrainingCheck,
    costs,
    reference_ratio,
    scores,
    speed,
    submit_time,
    test_metrics,
)
from tune_jobs.finaljob.export import (
    ModelMeta,
    check_exports,
    export_onnx_with_meta,
    export_torchscript,
    save_state,
)
from tune_jobs.finaljob.report import plot_confusion, plot_curves, plot_pareto, write_report
from tune_jobs.study.summary import best_complete, compute_ledger, objective_name, trial_score
from tune_jobs.trial.engine import train_epoch
from tune_jobs.trial.recipe import make_recipe, prepare_run_data
from tune_jobs.trial.space import TrainParams, candidate_from_config

log = logging.getLogger("litesearch.final")


@dataclass(frozen=True)
class FinalOptions:
    trial: int | None = None
    pareto: bool = False
    max_latency_ratio: float | None = None
    epochs: int | None = None
    baselines: tuple[str, ...] = ()
    data: str | None = None
    threads: int = 1
    progress: bool = True


@dataclass(frozen=True)
class ChosenTrial:
    """The trial the final job retrained, as the search saw it."""

    number: int
    state: str
    why: str
    score: float | None
    f1: float | None  # validation macro-F1 in the search
    latency_ratio: float | None
    epochs_done: int | None
    params: dict[str, Any]


@dataclass(frozen=True)
class FinalResult:
    """What the final job measured (metrics.json is `to_json()` of it)."""

    study: str
    epochs: int
    input_size: int
    test_source: str
    reference: str
    f1_ref: float
    history: list[dict]  # per epoch of the retrain: epoch, loss, lr, seconds
    chosen: ChosenTrial
    model: Assessment
    baselines: dict[str, Assessment]
    ran_on: dict[str, Any] | None = None  # node and GPUs, when run as a Ray task

    def to_json(self) -> dict:
        tree = dataclasses.asdict(self)
        if self.ran_on is None:
            del tree["ran_on"]
        return tree


# ------------------------------------------------------------------------------------ choose


def choose_trial(study: optuna.Study, opts: FinalOptions) -> tuple[FrozenTrial, str]:
    trials = study.get_trials(deepcopy=False)
    if opts.trial is not None:
        match = [t for t in trials if t.number == opts.trial]
        if not match or "spec" not in match[0].user_attrs:
            raise ConfigError(f"study {study.study_name!r} has no trial #{opts.trial} with a "
                              f"recorded spec (trials 0-{len(trials) - 1})")
        return match[0], f"--trial {opts.trial}"
    if opts.pareto:
        if opts.max_latency_ratio is None:
            raise ConfigError("--pareto needs --max-latency-ratio X")
        fits = [t for t in trials if t.state == TrialState.COMPLETE
                and t.user_attrs.get("latency_ratio") is not None
                and t.user_attrs["latency_ratio"] <= opts.max_latency_ratio]
        if not fits:
            fastest = min((t.user_attrs.get("latency_ratio") or float("inf") for t in trials
                           if t.state == TrialState.COMPLETE), default=float("nan"))
            raise ConfigError(f"no COMPLETE trial has latency ratio <= "
                              f"{opts.max_latency_ratio}; the fastest has {fastest:.3f}")
        best = max(fits, key=lambda t: t.user_attrs["f1"])
        return best, (f"the highest validation macro-F1 among COMPLETE trials with latency "
                      f"ratio <= {opts.max_latency_ratio}")
    return best_complete(study), f"the best {objective_name(study)} among COMPLETE trials"


# ----------------------------------------------------------------------------------- retrain


def retrain(model: nn.Module, images: np.ndarray, labels: np.ndarray, train: TrainParams,
            cfg: Config, num_classes: int, epochs: int, checkpoint: Path, tag: str,
            device: torch.device, progress: bool = True) -> list[dict]:
    """Train from scratch for `epochs`, checkpointing each epoch; resumes from `checkpoint`
    when it holds an unfinished run of the same `tag` (model and recipe)."""
    model.to(device)
    recipe = make_recipe(model, images, labels, train, cfg.data, num_classes, epochs, device,
                         cfg.search.seed)
    start, history = 0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("tag") == tag and state.get("epochs") == epochs:
            model.load_state_dict(state["model"])
            recipe.optimizer.load_state_dict(state["optimizer"])
            recipe.scheduler.load_state_dict(state["scheduler"])
            start, history = state["epoch"], state["history"]
            log.info("%s: resuming at epoch %d of %d", tag, start, epochs)
    bar = tqdm(range(start, epochs), initial=start, total=epochs, desc=f"retrain {tag}",
               unit="epoch", disable=not progress)
    for epoch in bar:
        recipe.loader.set_epoch(epoch)
        stats = train_epoch(model, recipe.loader, recipe.optimizer, recipe.scheduler,
                            recipe.criterion, device, recipe.scaler)
        lr = recipe.optimizer.param_groups[0]["lr"]
        history.append({"epoch": epoch + 1, "loss": stats.loss, "lr": lr,
                        "seconds": stats.seconds})
        bar.set_postfix(loss=f"{stats.loss:.4f}", lr=f"{lr:.2e}")
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"tag": tag, "epochs": epochs, "epoch": epoch + 1, "history": history,
                    "model": model.state_dict(), "optimizer": recipe.optimizer.state_dict(),
                    "scheduler": recipe.scheduler.state_dict()}, tmp)
        os.replace(tmp, checkpoint)  # atomic: an interruption never leaves half a checkpoint
    return history


# --------------------------------------------------------------------------------- benchmark


def training_check(history: list[dict]) -> TrainingCheck:
    """Did the recipe train this net? A last-epoch loss not clearly below the first epoch's
    means it diverged or stalled, and its test row says more about the recipe than the net."""
    first, last = history[0]["loss"], history[-1]["loss"]
    return TrainingCheck(first, last, bool(last < 0.95 * first))


def assess(model: nn.Module, data: PreparedData, meta: ModelMeta, cfg: Config,
           reference: nn.Module, out: Path, name: str, threads: int,
           device: torch.device) -> Assessment:
    """Export the trained `model` next to `out/name` and measure it on the test split."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    ts, onnx = out / f"{name}.ts", out / f"{name}.onnx"
    export_torchscript(model, meta, ts)
    export_onnx_with_meta(model, meta, onnx)
    size = meta.input_size
    test = test_metrics(model, data.test.images, data.test.labels, data.classes, device)
    model_costs = costs(model.cpu(), size)
    model_speed = speed(model.cpu(), size, ts, onnx, threads)
    ratio = reference_ratio(model.cpu(), reference, size, cfg.objective.reference_size, threads)
    submit = submit_time(onnx, data.test.files, size, cfg.data.resize, threads)
    return Assessment(
        test=test, costs=model_costs, speed=model_speed, ratio=ratio, submit=submit,
        scores=scores(test.f1, ratio.latency_ratio, cfg.objective.f1_ref, submit.seconds),
        export_max_abs_diff=check_exports(model, ts, onnx, size), test_images=len(data.test))


def load_run_config(study: optuna.Study, data: str | None) -> Config:
    if "config" not in study.user_attrs:
        raise ConfigError(f"study {study.study_name!r} holds no litesearch config; was it "
                          "made by tune_jobs/search.py?")
    tree = dict(study.user_attrs["config"])
    if data:
        tree["data"] = {**tree["data"], "path": data}
    return Config.model_validate(tree)


def run_final(study: optuna.Study, output: Path, opts: FinalOptions) -> FinalResult:
    cfg = load_run_config(study, opts.data)
    chosen, why = choose_trial(study, opts)
    classes = study.user_attrs.get("classes")
    spec = ModelSpec.from_yaml(chosen.user_attrs["spec"])
    cand = candidate_from_config(chosen.params, cfg.space, spec.num_classes)
    epochs = opts.epochs or cfg.final.epochs
    size = cand.train.image_size
    data = prepare_run_data(cfg, size, opts.progress)
    if classes and classes != data.classes:
        raise ConfigError(f"the data's classes {data.classes} differ from the study's {classes}")
    if data.test is None:
        raise ConfigError("no test split: add a test/ folder or set data.test_fraction > 0")
    images = np.concatenate([data.train.images, data.val.images])
    labels = np.concatenate([data.train.labels, data.val.labels])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    final = output / "final"
    final.mkdir(parents=True, exist_ok=True)
    meta = ModelMeta(data.classes, size, cfg.data.resize)
    reference = models.build(cfg.objective.reference, input_size=cfg.objective.reference_size)

    # a checkpoint is resumed only by the same network, recipe and epoch count
    recipe_id = zlib.crc32(json.dumps([dataclasses.asdict(cand.train), epochs,
                                       spec.to_yaml()]).encode())
    torch.manual_seed(cfg.search.seed)
    model = models.build_model(spec)
    history = retrain(model, images, labels, cand.train, cfg, len(data.classes), epochs,
                      final / "checkpoint.pt", f"trial{chosen.number}-{recipe_id:08x}", device,
                      opts.progress)
    spec.to_yaml(final / "spec.yaml")
    save_state(model, spec, meta, final / "model.pt")
    searched = assess(model, data, meta, cfg, reference, final, "model", opts.threads, device)
    baselines: dict[str, Assessment] = {}
    for name in opts.baselines:
        torch.manual_seed(cfg.search.seed)
        net = models.build(f"tv/{name}", num_classes=len(data.classes))
        run = retrain(net, images, labels, cand.train, cfg, len(data.classes), epochs,
                      final / f"checkpoint-{name}.pt", f"{name}-{recipe_id:08x}", device,
                      opts.progress)
        baselines[name] = dataclasses.replace(
            assess(net, data, meta, cfg, reference, final / "baselines", name, opts.threads,
                   device), training=training_check(run))
    metrics = FinalResult(
        study=study.study_name, epochs=epochs, input_size=size, test_source=data.test_source,
        reference=cfg.objective.reference, f1_ref=cfg.objective.f1_ref, history=history,
        chosen=ChosenTrial(number=chosen.number, state=chosen.state.name, why=why,
                           score=trial_score(chosen), f1=chosen.user_attrs.get("f1"),
                           latency_ratio=chosen.user_attrs.get("latency_ratio"),
                           epochs_done=chosen.user_attrs.get("epochs_done"),
                           params=chosen.params),
        model=dataclasses.replace(searched, training=training_check(history)),
        baselines=baselines)
    trials = study.get_trials(deepcopy=False)
    plots = {"pareto": plot_pareto(trials, chosen, final / "pareto.png").name,
             "curves": plot_curves(trials, final / "learning_curves.png").name,
             "confusion": plot_confusion(metrics.model.test.confusion, data.classes,
                                         final / "confusion.png").name}
    (final / "metrics.json").write_text(json.dumps(metrics.to_json(), indent=2))
    write_report(final / "report.md", metrics, trials, data.classes, plots,
                 compute_ledger(study))
    return metrics
