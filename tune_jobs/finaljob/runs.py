"""The final job's trainings: one network, one recipe, one seed, on the training split (judged
on validation) or on train + validation (judged on test). Every run checkpoints each epoch under
its own tag, so an interrupted final job resumes each run where it stopped and never repeats a
finished one; another run folder's checkpoints of the same trainings on the same data are taken
over the same way (`--reuse-from`). Independent runs go to a pool of processes with one thread
each on a CPU: small nets use a second core poorly inside one training and fully as a second
training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
import zlib
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
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


def _resumable(state: dict, tag: str, epochs: int, digest: str) -> bool:
    """A checkpoint of this training: the same tag and epochs, and the same data (a checkpoint
    written before digests were recorded has none and is trusted as before)."""
    return (state.get("tag") == tag and state.get("epochs") == epochs
            and state.get("digest", digest) == digest)


def adopt(source: Path, checkpoint: Path, tag: str, epochs: int, digest: str) -> bool:
    """Copy another run's checkpoint of this training (finished or not) to `checkpoint`,
    where `retrain` resumes it, each epoch of its history marked with where it was trained
    (`from`); False, with the reason logged, when it is not the same training on the same
    data."""
    if not source.is_file():
        return False
    state = torch.load(source, map_location="cpu", weights_only=False)
    if not _resumable(state, tag, epochs, digest) or "digest" not in state:
        log.info("%s: not reused from %s: %s", tag, source.parent, "other data or settings"
                 if "digest" in state else "written before its data was recorded")
        return False
    state["history"] = [{"from": str(source.parent), **h} for h in state["history"]]
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

    @property
    def taken_over(self) -> bool:
        """Every epoch trained by another run (`--reuse-from`): none of its time is this
        job's."""
        return bool(self.history) and all("from" in h for h in self.history)


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
    """One training: `net` initialised from `seed`, trained with `params` on `split`."""

    name: str
    net: Net
    params: TrainParams
    seed: int
    split: Split


@dataclass
class Bench:
    """What every run of one final job shares: the config, the data (prepared once per image
    size), the device, the epochs, the folder its checkpoints go to, and how many runs may
    train at once (`workers`; CPU only: one GPU trains them one after another). `reuse`:
    another run's checkpoint folder, whose trainings of the same jobs on the same data are
    taken over instead of repeated. `finished`: every run of this job so far, in order."""

    cfg: Config
    folder: Path
    epochs: int
    device: torch.device
    progress: bool = True
    workers: int = 1
    reuse: Path | None = None
    data: dict[int, PreparedData] = dataclasses.field(default_factory=dict)
    finished: list[Run] = dataclasses.field(default_factory=list)

    def prepared(self, size: int) -> PreparedData:
        if size not in self.data:
            self.data[size] = prepare_run_data(self.cfg, size, self.progress)
        return self.data[size]

    def run(self, job: Job) -> tuple[nn.Module, Run]:
        """Train the job's net and measure it on the split that judges it (validation for
        a run on the training split; the test split is read only for `trainval` runs)."""
        data = self.prepared(job.params.image_size)
        parts = [data.train] if job.split == "train" else [data.train, data.val]
        judge = data.val if job.split == "train" else data.test
        images = np.concatenate([p.images for p in parts])
        labels = np.concatenate([p.labels for p in parts])
        digest = training_digest(self.cfg, data.classes, [h for p in parts for h in p.hashes],
                                 labels)
        torch.manual_seed(job.seed)
        model = job.net()
        # a checkpoint is resumed only by the same network, recipe, epochs, split and seed
        recipe_id = zlib.crc32(json.dumps([dataclasses.asdict(job.params), self.epochs,
                                           repr(job.net), job.split, job.seed]).encode())
        tag = f"{job.name}-{job.split}-s{job.seed}-{recipe_id:08x}"
        self.folder.mkdir(parents=True, exist_ok=True)
        checkpoint = self.folder / f"checkpoint-{tag}.pt"
        if self.reuse is not None and not checkpoint.exists():
            adopt(self.reuse / checkpoint.name, checkpoint, tag, self.epochs, digest)
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
                          training_check(history), history)

    def batch(self, total: int) -> Batch:
        """A batch of `total` trainings, submitted as they become known (`Batch`)."""
        return Batch(self, total)

    def run_all(self, jobs: list[Job]) -> list[tuple[nn.Module, Run]]:
        """Every job, in order; on a CPU up to `workers` at once, one thread each. One log
        line per finished training, with the time this batch has left."""
        with self.batch(len(jobs)) as batch:
            return batch.results(batch.submit(jobs))


class Batch:
    """Trainings run on one pool of worker processes (a CPU with `workers` > 1) or one after
    another as they are submitted (one worker, a GPU). Trainings that wait for others' results
    (a baseline's seeds wait for its recipe trials) are submitted to the same pool once those
    results are read, so no worker idles at the end of one group while another is queued.
    Leaving the `with` block on an exception (Ctrl+C, a failed training) ends the pool at once."""

    def __init__(self, bench: Bench, total: int) -> None:
        self.bench = bench
        n = min(bench.workers, total)
        self.progress = BatchProgress(total, bench.epochs, n)
        self.pool: ProcessPoolExecutor | None = None
        if n > 1 and bench.device.type == "cpu":
            worker = dataclasses.replace(bench, progress=False, workers=1, data={}, finished=[])
            # spawn: a fork of a process that already ran torch can deadlock in its thread pools
            self.pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker, initargs=(worker,))
        self.jobs: dict[Future, Job] = {}  # every training submitted to the pool
        self.pending: set[Future] = set()  # of those, the ones not yet logged as finished

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        if self.pool is None:
            return
        if kind is not None:
            _stop(self.pool)
        else:
            self.pool.shutdown()

    def submit(self, jobs: list[Job]) -> list[Future]:
        """Queue `jobs`, the biggest input first (a long training last would leave the other
        workers idle while it finishes); their futures in the jobs' order."""
        self.progress.submitted(jobs)
        for size in {job.params.image_size for job in jobs}:
            self.bench.prepared(size)  # decode (and cache) once here, not in every worker
        futures: dict[int, Future] = {}
        for i in sorted(range(len(jobs)), key=lambda i: -jobs[i].params.image_size):
            futures[i] = self._start(jobs[i])
        return [futures[i] for i in range(len(jobs))]

    def _start(self, job: Job) -> Future:
        if self.pool is not None:
            future = self.pool.submit(_run_in_worker, job)
            self.jobs[future] = job
            self.pending.add(future)
            return future
        ran: Future = Future()
        ran.set_result(self.bench.run(job))
        self._finished(job, ran)
        return ran

    def results(self, futures: list[Future]) -> list[tuple[nn.Module, Run]]:
        """Wait for `futures` (logging every training of the batch that finishes meanwhile);
        each training's model and run, in the futures' order."""
        if any(f in self.pending for f in futures):
            for future in as_completed(list(self.pending)):
                self.pending.remove(future)
                self._finished(self.jobs[future], future)
                if not any(f in self.pending for f in futures):
                    break
        out = []
        for future in futures:
            model, run = future.result()
            if not isinstance(model, nn.Module):  # a worker's weights: the net rebuilt here
                state, model = model, self.jobs[future].net()
                model.load_state_dict(state)
            out.append((model.to(self.bench.device), run))
        return out

    def _finished(self, job: Job, future: Future) -> None:
        run = future.result()[1]  # a failed training raises here
        self.progress.done(job, run)
        self.bench.finished.append(run)


class BatchProgress:
    """Logs each finished training of a batch with the time the batch has left. The estimate
    is each waiting training's own cost (the mean epoch seconds of the finished trainings of
    the same name, else of all, times its epochs) over the `workers` that share them, the
    trainings not yet submitted counted at the mean of all: a finished training resumed or
    taken over from a checkpoint costs this job nothing, but its recorded epochs still say
    what a training of its kind costs."""

    def __init__(self, total: int, epochs: int, workers: int) -> None:
        self.total, self.epochs, self.workers = total, epochs, max(1, workers)
        self.waiting: list[Job] = []  # submitted, not finished
        self.finished, self.started = 0, time.monotonic()
        self.seconds: dict[str, list[float]] = {}  # per job name: each epoch's seconds

    def submitted(self, jobs: list[Job]) -> None:
        self.waiting += jobs

    def done(self, job: Job, run: Run) -> None:
        self.waiting.remove(job)
        self.finished += 1
        self.seconds.setdefault(job.name, []).extend(h["seconds"] for h in run.history)
        spent = time.monotonic() - self.started
        log.info("training %d of %d done%s: %s seed %d, macro-F1 %.4f on %s; %s spent, about "
                 "%s left in this batch", self.finished, self.total,
                 f" (taken over from {run.history[0]['from']})" if run.taken_over else "",
                 job.name, job.seed, run.f1, "validation" if job.split == "train" else "test",
                 _minutes(spent), _minutes(self.left()))

    def left(self) -> float:
        """Seconds of training still waiting or still to be submitted, over the workers."""
        every = [s for per_name in self.seconds.values() for s in per_name]
        if not every:
            return 0.0

        def epoch(name: str | None) -> float:
            measured = self.seconds.get(name or "") or every
            return sum(measured) / len(measured)
        unsubmitted = self.total - self.finished - len(self.waiting)
        cost = sum(epoch(job.name) for job in self.waiting) + unsubmitted * epoch(None)
        return cost * self.epochs / self.workers


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _stop(pool: ProcessPoolExecutor) -> None:
    """Ctrl+C or a failed training: end the batch now. Leaving the pool's `with` would wait
    for every queued training (hours), and a worker that got the terminal's SIGINT abandons
    its training and takes the next one. Ending the workers loses at most the epoch each was
    in: checkpoints are replaced atomically per epoch, and the rerun resumes from them."""
    processes = list((pool._processes or {}).values())  # no public way before Python 3.14
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=30)


_WORKER: Bench | None = None


def _start_worker(bench: Bench) -> None:
    global _WORKER
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("data_utils").setLevel(logging.WARNING)  # the parent logged it
    _WORKER = bench


def _run_in_worker(job: Job) -> tuple[dict, Run]:
    assert _WORKER is not None
    model, run = _WORKER.run(job)
    return {k: v.cpu() for k, v in model.state_dict().items()}, run


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


def select_recipe(trials: list[RecipeTrial]) -> RecipeTrial:
    """The recipe to use: the highest validation macro-F1 among those that trained (the loss
    fell), else the highest validation macro-F1. Only validation numbers are looked at."""
    pool = [t for t in trials if t.training.trained] or trials
    return max(pool, key=lambda t: t.val_f1)


__all__ = ["COMPILE_MIN_IMAGES", "Batch", "BatchProgress", "Bench", "Job", "Net", "RecipeTrial",
           "Run", "Split", "compiles", "retrain", "select_recipe", "training_check"]
