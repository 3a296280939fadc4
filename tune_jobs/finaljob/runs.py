"""The final job's trainings: one network, one recipe, one seed, on the training split (judged
on validation) or on train + validation (judged on test). Every run checkpoints each epoch under
its own tag, so an interrupted final job resumes each run where it stopped and never repeats a
finished one; another run folder's checkpoints of the same trainings on the same data are taken
over the same way (`--reuse-from`). A finished training whose checkpoint is gone (a run folder
lost with its machine, its trainings.jsonl kept elsewhere and put back) or unfinished (a
retrain for weights, stopped) is taken from its line in trainings.jsonl, without its weights:
the job trains again only the runs whose weights it ships (finaljob/job.py, `weighed`). Many
runs at once: finaljob/batch.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import models
from data_utils.dataset import PreparedData
from data_utils.loader import BatchLoader
from models.spec import ModelSpec
from tune_jobs.config import Config
from tune_jobs.finaljob import TRAININGS
from tune_jobs.finaljob.assess import TrainingCheck
from tune_jobs.finaljob.recipes import Recipe, recipe_label
from tune_jobs.trial.engine import evaluate, per_class_f1, train_epoch
from tune_jobs.trial.recipe import make_recipe, prepare_run_data
from tune_jobs.trial.space import TrainParams

log = logging.getLogger(__name__)

Split = Literal["train", "trainval"]  # judged on validation / on test


class _ChannelsLast(nn.Module):
    """The net with its input in channels_last: compiled together, the layout change is
    fused into the graph instead of costing a copy per batch."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


# final.compile auto compiles a training of at least this many images (epochs x training
# images): compiling took 26-55 s and saved 0.35-0.94 ms per image at 48 px on two cores, so
# it paid back after 60k-160k images (benchmarks/results/train_speed_compile.json); the
# built-in demo's 30 epochs of 1,500 images stay eager, fmnist-taco6's compile.
COMPILE_MIN_IMAGES = 200_000


def compiles(setting: bool | str, epochs: int, images: int) -> bool:
    """Whether a training of `epochs` over `images` runs compiled under `final.compile`."""
    return epochs * images >= COMPILE_MIN_IMAGES if setting == "auto" else bool(setting)


def training_module(model: nn.Module, compiled: bool, device: torch.device) -> nn.Module:
    """What the training steps call: the model itself, or (`final.compile`, CPU only) the
    model in channels_last under `torch.compile`, 1.5-1.9x the images per second of eager
    for the searched net and both baselines at 48 px on two cores, F1 within noise over five
    paired seeds (BENCHMARKS.md, "Training speed on a CPU"). Either way the weights are the
    model's own, so checkpoints, evaluation and exports use the plain module."""
    if not compiled or device.type != "cpu":
        return model
    if not shutil.which(os.environ.get("CXX") or "g++"):
        # Inductor writes C++ for a CPU: without a compiler it would fail at the first step
        log.warning("final.compile: no C++ compiler (g++ or $CXX) found; training eagerly")
        return model
    model.to(memory_format=torch.channels_last)
    # Each training compiles afresh: Dynamo's cache outlives a training in a pool worker, so
    # the next one (another net, another input size) would recompile against it with symbolic
    # sizes, which failed inside Inductor for ShuffleNetV2 after a first size
    # (InductorError "cannot determine truth value of Relational"), and piles graphs up to its
    # recompile limit. Inductor's on-disk cache keeps the fresh compile to seconds.
    torch._dynamo.reset()
    return torch.compile(_ChannelsLast(model))


def training_digest(cfg: Config, classes: list[str], rows: list[str], labels: np.ndarray
                    ) -> str:
    """What a training's weights depend on beyond its tag (net, recipe, epochs, split, seed):
    the rows it trains on, by content and label and in order, and the settings that shape a
    training outside its recipe. Equal digests and tags train the same, wherever the data
    folder is on each machine; the rows it is judged on are not part of it."""
    h = hashlib.sha256(json.dumps([classes, cfg.data.resize, cfg.data.class_weights,
                                   cfg.data.balanced_sampler, str(cfg.final.compile),
                                   rows]).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def identity(tag: str) -> str:
    """What makes a training the same training, whatever its job is named: a tag's end,
    `{split}-s{seed}-{recipe id}` (the recipe id hashes the net, recipe, epochs, split and
    seed), so that another run's training of one recipe under another label (a baseline's
    recipe chosen there, `Recipe.REUSED` here) is taken over all the same."""
    return "-".join(tag.rsplit("-", 3)[1:])


def taken_from(folder: Path, history: list[dict]) -> list[dict]:
    """A history taken over from `folder`: each epoch marked `from` where it was trained
    (kept when marked already: the run that trained it, not the one that passed it on)."""
    return [{"from": str(folder), **h} for h in history]


def _resumable(state: dict, tag: str, epochs: int, digest: str) -> bool:
    """A checkpoint of this training: the same tag and epochs, and the same data (a checkpoint
    written before digests were recorded has none and is trusted as before)."""
    return (state.get("tag") == tag and state.get("epochs") == epochs
            and state.get("digest", digest) == digest)


def _finished(checkpoint: Path, tag: str, epochs: int, digest: str) -> bool:
    # mmap: only the few fields read here come off the disk, not the weights (a restart
    # over an intact run folder asks this of every finished training, in the parent)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    return _resumable(state, tag, epochs, digest) and state["epoch"] >= epochs


def adopt(folder: Path, checkpoint: Path, tag: str, epochs: int, digest: str) -> bool:
    """Copy another run's checkpoint of this training (finished or not; its own name, else
    any of the same `identity`) from `folder` to `checkpoint`, where `retrain` resumes it,
    each epoch of its history marked with where it was trained (`from`); False, with the
    reason logged, when there is none or it is not the same training on the same data."""
    source = folder / checkpoint.name
    if not source.is_file():
        source = next(iter(sorted(folder.glob(f"checkpoint-*-{identity(tag)}.pt"))), source)
    if not source.is_file():
        return False
    state = torch.load(source, map_location="cpu", weights_only=False)
    state = {**state, "tag": tag} if identity(state.get("tag", "")) == identity(tag) else state
    if not _resumable(state, tag, epochs, digest) or "digest" not in state:
        log.info("%s: not reused from %s: %s", tag, source.parent, "other data or settings"
                 if "digest" in state else "written before its data was recorded")
        return False
    state["history"] = taken_from(source.parent, state["history"])
    _save(checkpoint, state)
    log.info("%s: reused from %s (%d of %d epochs done there)", tag, source.parent,
             state["epoch"], epochs)
    return True


def retrain(model: nn.Module, images: np.ndarray, labels: np.ndarray, train: TrainParams,
            cfg: Config, num_classes: int, epochs: int, checkpoint: Path, tag: str,
            device: torch.device, progress: bool = True, seed: int | None = None,
            digest: str = "") -> list[dict]:
    """Train from scratch for `epochs`, checkpointing each epoch; resumes from `checkpoint`
    when it holds an unfinished (or finished) run of the same `tag` (model, recipe, seed)
    and `digest` (the data, `training_digest`). `seed` orders the data and draws the
    augmentation (default: search.seed)."""
    model.to(device)
    trained = training_module(model, compiles(cfg.final.compile, epochs, len(labels)), device)
    recipe = make_recipe(model, images, labels, train, cfg.data, num_classes, epochs, device,
                         cfg.search.seed if seed is None else seed)
    start, history = 0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if _resumable(state, tag, epochs, digest):
            model.load_state_dict(state["model"])
            recipe.optimizer.load_state_dict(state["optimizer"])
            recipe.scheduler.load_state_dict(state["scheduler"])
            start, history = state["epoch"], state["history"]
            if start < epochs:
                log.info("%s: resuming at epoch %d of %d", tag, start, epochs)
            elif "digest" not in state:  # finished before digests: record it for --reuse-from
                _save(checkpoint, {**state, "digest": digest})
        elif state.get("tag") == tag:
            log.warning("%s: %s holds this training on other data or settings; training "
                        "again", tag, checkpoint)
    bar = tqdm(range(start, epochs), initial=start, total=epochs, desc=f"retrain {tag}",
               unit="epoch", disable=not progress)
    for epoch in bar:
        recipe.loader.set_epoch(epoch)
        stats = train_epoch(trained, recipe.loader, recipe.optimizer, recipe.scheduler,
                            recipe.criterion, device, recipe.scaler)
        lr = recipe.optimizer.param_groups[0]["lr"]
        history.append({"epoch": epoch + 1, "loss": stats.loss, "lr": lr,
                        "seconds": stats.seconds})
        bar.set_postfix(loss=f"{stats.loss:.4f}", lr=f"{lr:.2e}")
        _save(checkpoint, {"tag": tag, "epochs": epochs, "epoch": epoch + 1,
                           "history": history, "digest": digest, "model": model.state_dict(),
                           "optimizer": recipe.optimizer.state_dict(),
                           "scheduler": recipe.scheduler.state_dict()})
    return history


def _save(checkpoint: Path, state: dict) -> None:
    tmp = checkpoint.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, checkpoint)  # atomic: an interruption never leaves half a checkpoint


def training_check(history: list[dict]) -> TrainingCheck:
    """Did the recipe train this net? A last-epoch loss not clearly below the first epoch's
    means it diverged or stalled, and its test row says more about the recipe than the net."""
    first, last = history[0]["loss"], history[-1]["loss"]
    return TrainingCheck(first, last, bool(last < 0.95 * first))


@dataclass(frozen=True)
class Run:
    """One training and how it did on the split it is judged on (validation for a run on
    the training split, test for a run on train + validation)."""

    seed: int
    split: Split
    f1: float  # macro
    accuracy: float
    per_class_f1: dict[str, float]
    training: TrainingCheck
    history: list[dict]  # per epoch: epoch, loss, lr, seconds, and `from` if taken over
    tag: str = ""  # the training's tag (`Bench.run`): job name, then its `identity`
    digest: str = ""  # the data it trained on (`training_digest`)
    from_record: bool = False  # taken from trainings.jsonl: finished earlier, weights not kept
    recorded_elsewhere: bool = False  # ... from another run's (`--reuse-from`)

    @property
    def taken_over(self) -> bool:
        """Every epoch trained by another run (`--reuse-from`): none of its time is this
        job's (a line from before epochs were recorded says so by where it was read)."""
        return self.recorded_elsewhere or (bool(self.history)
                                           and all("from" in h for h in self.history))


def record(folder: Path, name: str, run: Run) -> None:
    """Append the finished training `name` to `folder`/trainings.jsonl, one JSON line: its
    numbers outlive the job (a job stopped before its report, a run folder lost with its
    machine once the file was copied away), and with its tag, data digest and history a
    line stands in for the training when its checkpoint is gone (`Records`). A re-run
    appends again as each training resumes from its checkpoint, so the last line of a
    (name, split, seed) is its result."""
    line = {"name": name, "split": run.split, "seed": run.seed, "f1": run.f1,
            "accuracy": run.accuracy, "per_class_f1": run.per_class_f1,
            "trained": run.training.trained, "epochs": len(run.history),
            "seconds": round(sum(h["seconds"] for h in run.history if "from" not in h), 1),
            "taken_over": run.taken_over, "tag": run.tag, "digest": run.digest,
            "history": run.history}
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / TRAININGS).open("a") as f:
        f.write(json.dumps(line) + "\n")


@dataclass
class Records:
    """The finished trainings that `folder`/trainings.jsonl records, read once, by `identity`
    (the last line of each counts). A line is taken only for the same identity, data digest
    and epochs; a line written before tags were recorded (no `tag`) for the same name, split,
    seed and epochs, and only in this run folder's own file (`taken` False), trusted as
    that folder's, as a checkpoint without a digest is. A line that does not parse (a job
    killed while appending it) is skipped, with a warning. `taken`: the file is another
    run's (`--reuse-from`): its runs come with each epoch marked `from` that folder."""

    folder: Path
    taken: bool = False
    lines: dict[str, dict] | None = None  # identity, or name/split/seed of a line without

    @staticmethod
    def legacy_key(name: str, split: str, seed: int) -> str:
        return f"{name}\t{split}\ts{seed}"

    def _read(self) -> dict[str, dict]:
        lines: dict[str, dict] = {}
        path = self.folder / TRAININGS
        bad = 0
        for text in path.read_text().splitlines() if path.is_file() else []:
            try:
                line = json.loads(text)
                key = (identity(line["tag"]) if line.get("tag")
                       else self.legacy_key(line["name"], line["split"], int(line["seed"])))
            except (ValueError, KeyError, TypeError, AttributeError):
                bad += 1
                continue
            lines[key] = line
        if bad:
            log.warning("%s: %d line(s) that are not a finished training skipped", path, bad)
        return lines

    def _lines(self) -> dict[str, dict]:
        if self.lines is None:
            self.lines = self._read()
        return self.lines

    def find(self, job: Job, tag: str, digest: str, epochs: int) -> Run | None:
        """The recorded run of this training, or None."""
        lines = self._lines()
        line = lines.get(identity(tag))
        if line is None or line.get("digest") != digest:
            line = lines.get(self.legacy_key(job.name, job.split, job.seed))
            if line is None or "tag" in line or self.taken:
                return None
        if line.get("epochs") != epochs:
            return None
        try:
            history = line.get("history") or []
            history = taken_from(self.folder, history) if self.taken else history
            check = (training_check(history) if history  # a line without: its verdict only
                     else TrainingCheck(math.nan, math.nan, bool(line["trained"])))
            return Run(job.seed, job.split, float(line["f1"]), float(line["accuracy"]),
                       {str(k): float(v) for k, v in line["per_class_f1"].items()}, check,
                       history, tag, digest, from_record=True,
                       recorded_elsewhere=self.taken)
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("%s: the line of %s lacks a field; training it again",
                        self.folder / TRAININGS, tag)
            return None

    def retag(self, job: Job, run: Run) -> None:
        """A line from before tags, taken for `run`: append it again with the tag and digest
        it was matched by (its numbers as they were), once, so that another run's
        `--reuse-from` can match it by what it is and on which rows, as it does every newer
        line."""
        lines = self._lines()
        line = lines.get(self.legacy_key(job.name, job.split, job.seed))
        if self.taken or line is None or "tag" in line or identity(run.tag) in lines:
            return
        lines[identity(run.tag)] = {**line, "tag": run.tag, "digest": run.digest}
        with (self.folder / TRAININGS).open("a") as f:
            f.write(json.dumps(lines[identity(run.tag)]) + "\n")


@dataclass(frozen=True)
class Net:
    """A fresh network, picklable: a litesearch spec, or a torchvision net (`tv/<name>`)."""

    source: ModelSpec | str
    num_classes: int

    def __call__(self) -> nn.Module:
        if isinstance(self.source, ModelSpec):
            return models.build_model(self.source)
        return models.build(self.source, num_classes=self.num_classes)


@dataclass(frozen=True)
class Job:
    """One training: `net` initialised from `seed`, trained with `params` on `split`.
    `from_record`: its line in trainings.jsonl may stand in for it when its checkpoint is
    gone (the run without weights); False trains it again for its weights."""

    name: str
    net: Net
    params: TrainParams
    seed: int
    split: Split
    from_record: bool = True


@dataclass
class Bench:
    """What every run of one final job shares: the config, the data (prepared once per image
    size), the device, the epochs, the folder its checkpoints go to, and how many runs may
    train at once (`workers`; CPU only: one GPU trains them one after another). `reuse`:
    another run's checkpoint folder, whose trainings of the same jobs on the same data are
    taken over instead of repeated. `finished`: every run of this job so far, in order.
    `records`: the finished trainings its trainings.jsonl holds (read once per process)."""

    cfg: Config
    folder: Path
    epochs: int
    device: torch.device
    progress: bool = True
    workers: int = 1
    reuse: Path | None = None
    data: dict[int, PreparedData] = dataclasses.field(default_factory=dict)
    finished: list[Run] = dataclasses.field(default_factory=list)
    records: list[Records] | None = None  # this job's trainings.jsonl, then `reuse`'s

    def prepared(self, size: int) -> PreparedData:
        if size not in self.data:
            self.data[size] = prepare_run_data(self.cfg, size, self.progress)
        return self.data[size]

    def record_files(self) -> list[Records]:
        """This job's trainings.jsonl, then `reuse`'s, each read once."""
        if self.records is None:
            self.records = [Records(self.folder)] + (
                [Records(self.reuse, taken=True)] if self.reuse is not None else [])
        return self.records

    def _parts(self, job: Job) -> tuple[list, str, str, Path]:
        """The splits the job trains on, its data digest, its tag and its checkpoint."""
        data = self.prepared(job.params.image_size)
        parts = [data.train] if job.split == "train" else [data.train, data.val]
        digest = training_digest(self.cfg, data.classes, [h for p in parts for h in p.hashes],
                                 np.concatenate([p.labels for p in parts]))
        # a checkpoint is resumed only by the same network, recipe, epochs, split and seed
        recipe_id = zlib.crc32(json.dumps([dataclasses.asdict(job.params), self.epochs,
                                           repr(job.net), job.split, job.seed]).encode())
        tag = f"{job.name}-{job.split}-s{job.seed}-{recipe_id:08x}"
        return parts, digest, tag, self.folder / f"checkpoint-{tag}.pt"

    def recorded(self, job: Job) -> Run | None:
        """The job's run as trainings.jsonl records it (this job's, then `reuse`'s), when it
        has no finished checkpoint here or to take over (`job.from_record`); else None: it
        trains, or resumes or takes over a checkpoint. Cheap: a batch asks before it starts a
        worker."""
        return self._recorded(job, *self._parts(job)[1:])

    def _recorded(self, job: Job, digest: str, tag: str, checkpoint: Path) -> Run | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.reuse is not None and not checkpoint.exists():
            adopt(self.reuse, checkpoint, tag, self.epochs, digest)
        if not job.from_record:
            return None
        for records in self.record_files():
            found = records.find(job, tag, digest, self.epochs)
            if found is None:
                continue
            # a finished checkpoint has the weights too; an unfinished one (a retrain for
            # weights, killed) would repeat what the line records: it waits for `weighed`
            if checkpoint.exists() and _finished(checkpoint, tag, self.epochs, digest):
                return None
            log.info("%s: finished earlier, taken from %s (its weights were not kept)", tag,
                     records.folder / TRAININGS)
            return found
        return None

    def run(self, job: Job) -> tuple[nn.Module | None, Run]:
        """Train the job's net and measure it on the split that judges it (validation for
        a run on the training split; the test split is read only for `trainval` runs). A
        training finished earlier whose checkpoint is gone comes from trainings.jsonl
        (`recorded`), without its weights (None)."""
        parts, digest, tag, checkpoint = self._parts(job)
        found = self._recorded(job, digest, tag, checkpoint)
        if found is not None:
            return None, found
        data = self.prepared(job.params.image_size)
        judge = data.val if job.split == "train" else data.test
        images = np.concatenate([p.images for p in parts])
        labels = np.concatenate([p.labels for p in parts])
        torch.manual_seed(job.seed)
        model = job.net()
        history = retrain(model, images, labels, job.params, self.cfg, len(data.classes),
                          self.epochs, checkpoint, tag, self.device, self.progress, job.seed,
                          digest)
        ev = evaluate(model.eval(), BatchLoader(judge.images, judge.labels, 256,
                                                device=self.device),
                      len(data.classes), self.device)
        per_class = dict(zip(data.classes, map(float, per_class_f1(ev.confusion)),
                             strict=True))
        log.info("%s: macro-F1 %.4f on %s", tag, ev.f1,
                 "validation" if job.split == "train" else "test")
        return model, Run(job.seed, job.split, ev.f1, ev.accuracy, per_class,
                          training_check(history), history, tag, digest)


@dataclass(frozen=True)
class RecipeTrial:
    """A baseline trained with one recipe at one input size on the training split, judged on
    validation."""

    recipe: Recipe
    source: str
    params: dict  # TrainParams' fields, the input size among them
    val_f1: float
    training: TrainingCheck

    @property
    def image_size(self) -> int:
        return int(self.params["image_size"])

    @property
    def label(self) -> str:
        return recipe_label(self.recipe, self.image_size)


def select_recipe(trials: list[RecipeTrial], max_size: int | None = None) -> RecipeTrial:
    """The recipe to use: the highest validation macro-F1 among those that trained (the loss
    fell), else the highest validation macro-F1. Only validation numbers are looked at.
    `max_size`: only trials at that input size or below count (the first trial, at the
    searched size, whatever its size, when none is)."""
    fits = [t for t in trials if max_size is None or t.image_size <= max_size] or trials[:1]
    pool = [t for t in fits if t.training.trained] or fits
    return max(pool, key=lambda t: t.val_f1)


__all__ = ["COMPILE_MIN_IMAGES", "TRAININGS", "Bench", "Job", "Net", "RecipeTrial", "Records",
           "Run", "Split", "compiles", "identity", "record", "retrain",
           "select_recipe", "training_check"]
