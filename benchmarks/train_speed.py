"""Where a final-job training's time goes on a CPU, and which changes buy speed.

    python benchmarks/train_speed.py [--data DIR] [--nets searched mobilenet_v3_small ...]
        [--image-size 48] [--steps 30] [--repeats 3] [--threads 1] [--quick] [--json FILE]

The nets: the searched net of the committed fmnist-taco6 final job
(`results/final_fmnist13_full`, rebuilt from its trial's values on configs/demo.yaml's space,
48 px) and the two baselines at the same size, each with that trial's recipe (batch 64, SGD),
on fmnist-taco6's training split through the real loader and augmentation (`make_recipe`).
`--image-size 96` times all three at the baselines' usual size instead (where the accurate
point's final job trains them).

1. Profile (eager fp32, the final job's way: one thread per training): one training step split
   into data (batch, augmentation, `to_input`), forward (with the loss), backward and optimizer
   step (with the schedule); then, per epoch, the evaluation of the validation split and one
   checkpoint; and once per run, the latency measurement. Images per second, the share of each
   phase in an epoch, and the share of the CPU's peak FLOP/s the step reaches: 6 x MACs per
   image (forward 2, backward 4) against a large fp32 GEMM timed on the same threads.
2. Changes side by side, interleaved over `--repeats` rounds (median images/s of training
   steps, data included, and the ratio to eager): channels_last, bf16 autocast (on CPUs with
   native bf16: AMX or AVX512-BF16), both, `torch.compile` (its compile time, and the epochs of
   30 it needs to pay that back) alone and with either, two threads in one training.

Speed only: a change is kept only once its F1 holds over seeds (a separate, longer run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import models
from common import REPO, emit
from data_utils.augment import to_input
from data_utils.dataset import prepare_data
from data_utils.loader import BatchLoader
from models.cost import count_macs, latency_ratio
from tune_jobs.config import load_config
from tune_jobs.trial.engine import evaluate
from tune_jobs.trial.recipe import Recipe, make_recipe
from tune_jobs.trial.space import Candidate, TrainParams, candidate_from_config

DEFAULT_DATA = REPO.parent / "shared" / "data" / "fmnist-taco6"
SEARCHED_RUN = REPO / "benchmarks" / "results" / "final_fmnist13_full" / "metrics.json"
EPOCHS = 30  # the final job's (configs/demo.yaml final.epochs): what compile must pay back over
NUM_CLASSES = 6


def searched_candidate() -> Candidate:
    """The committed final job's chosen trial, rebuilt from its drawn values."""
    params = json.loads(SEARCHED_RUN.read_text())["chosen"]["params"]
    return candidate_from_config(params, load_config("demo.yaml").space, NUM_CLASSES)


def searched_net() -> tuple[nn.Module, TrainParams]:
    cand = searched_candidate()
    return models.build_model(cand.spec), cand.train


def baseline(name: str) -> Callable[[], tuple[nn.Module, TrainParams]]:
    """A torchvision net with the searched recipe (the final job's first recipe trial)."""
    def build() -> tuple[nn.Module, TrainParams]:
        return models.build(f"tv/{name}", num_classes=NUM_CLASSES), searched_net()[1]

    return build


NETS: dict[str, Callable[[], tuple[nn.Module, TrainParams]]] = {
    "searched": searched_net,
    "mobilenet_v3_small": baseline("mobilenet_v3_small"),
    "shufflenet_v2_x0_5": baseline("shufflenet_v2_x0_5"),
}


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16); elsewhere autocast
    emulates it, slower than fp32."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "amx_bf16" in flags or "avx512_bf16" in flags


@dataclass(frozen=True)
class Change:
    """One way of running a training step: memory format, autocast dtype, compiled, threads."""

    channels_last: bool = False
    bf16: bool = False
    compiled: bool = False
    threads: int = 1


CHANGES: dict[str, Change] = {
    "eager": Change(),
    "channels_last": Change(channels_last=True),
    "bf16 autocast": Change(bf16=True),
    "channels_last + bf16": Change(channels_last=True, bf16=True),
    "torch.compile": Change(compiled=True),
    "channels_last + compile": Change(channels_last=True, compiled=True),
    "bf16 + compile": Change(bf16=True, compiled=True),
    "2 threads": Change(threads=2),
}


class Trainer:
    """One net's training steps under a `Change`, on the recipe's own loader."""

    def __init__(self, net: str, change: Change, images, labels, cfg) -> None:
        torch.manual_seed(0)
        model, params = NETS[net]()
        self.change, self.batch = change, params.batch_size
        self.format = torch.channels_last if change.channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.format)
        self.recipe: Recipe = make_recipe(self.model, images, labels, params, cfg.data,
                                          NUM_CLASSES, EPOCHS, torch.device("cpu"), seed=0)
        self.forward = torch.compile(self.model) if change.compiled else self.model
        self.batches = self._batches()

    def _batches(self) -> Iterator:
        epoch = 0
        while True:
            self.recipe.loader.set_epoch(epoch)
            yield from self.recipe.loader
            epoch += 1

    def _autocast(self):
        return (torch.autocast("cpu", dtype=torch.bfloat16) if self.change.bf16
                else contextlib.nullcontext())

    def step(self, timer: dict[str, float] | None = None) -> int:
        """One training step; adds each phase's seconds to `timer`; returns the images."""
        t0 = time.perf_counter()
        x, y = next(self.batches)
        x = to_input(x).contiguous(memory_format=self.format)
        t1 = time.perf_counter()
        self.recipe.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.recipe.criterion(self.forward(x), y)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        self.recipe.optimizer.step()
        self.recipe.scheduler.step()
        t4 = time.perf_counter()
        if timer is not None:
            for phase, seconds in (("data", t1 - t0), ("forward", t2 - t1),
                                   ("backward", t3 - t2), ("optimizer", t4 - t3)):
                timer[phase] = timer.get(phase, 0.0) + seconds
        return len(y)

    def images_per_second(self, steps: int) -> float:
        start, n = time.perf_counter(), 0
        for _ in range(steps):
            n += self.step()
        return n / (time.perf_counter() - start)


def gemm_peak(threads: int, dtype: torch.dtype = torch.float32, n: int = 1024) -> float:
    """FLOP/s of a large matrix product on `threads` threads: what the CPU reaches at best."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def profile(net: str, data, cfg, steps: int, threads: int, size: int) -> dict:
    torch.set_num_threads(threads)
    trainer = Trainer(net, Change(threads=threads), data.train.images, data.train.labels, cfg)
    for _ in range(3):  # warm-up: the allocator, oneDNN's kernels
        trainer.step()
    timer: dict[str, float] = {}
    images = sum(trainer.step(timer) for _ in range(steps))
    step_seconds = sum(timer.values())
    per_epoch_steps = len(trainer.recipe.loader)
    epoch_train = step_seconds / steps * per_epoch_steps
    start = time.perf_counter()
    evaluate(trainer.model, BatchLoader(data.val.images, data.val.labels, 256),
             NUM_CLASSES, torch.device("cpu"))
    eval_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        torch.save({"model": trainer.model.state_dict(),
                    "optimizer": trainer.recipe.optimizer.state_dict()}, Path(tmp) / "c.pt")
        checkpoint_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = models.build(cfg.objective.reference, input_size=cfg.objective.reference_size)
    latency_ratio(trainer.model.eval(), reference, size,
                  reference_size=cfg.objective.reference_size, threads=threads)
    latency_seconds = time.perf_counter() - start
    macs = count_macs(NETS[net]()[0], size)
    flops = 6 * macs * images / step_seconds
    epoch = {"train steps": epoch_train, "evaluation": eval_seconds,
             "checkpoint": checkpoint_seconds}
    total = sum(epoch.values())
    return {
        "net": net, "image_size": size, "threads": threads,
        "images_per_second": images / step_seconds,
        "macs": macs, "gflops": flops / 1e9, "peak_share": flops / gemm_peak(threads),
        "step_share": {k: v / step_seconds for k, v in timer.items()},
        "epoch_seconds": total, "epoch_share": {k: v / total for k, v in epoch.items()},
        "latency_measurement_seconds": latency_seconds,
    }


def compare(net: str, data, cfg, steps: int, repeats: int, changes: list[str]) -> list[dict]:
    """Every change's training steps, interleaved round by round; median images/s."""
    trainers, compile_seconds = {}, {}
    for name in changes:
        change = CHANGES[name]
        torch.set_num_threads(change.threads)
        trainers[name] = Trainer(net, change, data.train.images, data.train.labels, cfg)
        start = time.perf_counter()
        for _ in range(3):  # warm-up; for torch.compile, the compilation
            trainers[name].step()
        compile_seconds[name] = time.perf_counter() - start
    speeds: dict[str, list[float]] = {name: [] for name in changes}
    for _ in range(repeats):
        for name in changes:
            torch.set_num_threads(CHANGES[name].threads)
            speeds[name].append(trainers[name].images_per_second(steps))
    eager = statistics.median(speeds["eager"])
    images = len(data.train.labels)
    rows = []
    for name in changes:
        speed = statistics.median(speeds[name])
        row = {"net": net, "change": name, "images_per_second": speed,
               "ratio": speed / eager, "runs": speeds[name]}
        if CHANGES[name].compiled:
            # compile time beyond the eager warm-up, against what it saves per epoch
            extra = compile_seconds[name] - compile_seconds["eager"]
            saved = images / eager - images / speed
            row |= {"compile_seconds": extra,
                    "payback_epochs": extra / saved if saved > 0 else None}
        rows.append(row)
    return rows


def markdown(profiles: list[dict], rows: list[dict]) -> str:
    lines = ["| net | images/s (1 thread) | GFLOP/s | share of fp32 GEMM peak | data | forward "
             "| backward | optimizer | epoch s | evaluation | checkpoint |",
             "|" + "---|" * 11]
    for p in profiles:
        s, e = p["step_share"], p["epoch_share"]
        lines.append(f"| {p['net']} | {p['images_per_second']:.0f} | {p['gflops']:.1f} | "
                     f"{100 * p['peak_share']:.1f} % | {100 * s['data']:.0f} % | "
                     f"{100 * s['forward']:.0f} % | {100 * s['backward']:.0f} % | "
                     f"{100 * s['optimizer']:.0f} % | {p['epoch_seconds']:.1f} | "
                     f"{100 * e['evaluation']:.1f} % | {100 * e['checkpoint']:.1f} % |")
    lines += ["", "| net | change | images/s | ratio to eager | compile s | payback epochs |",
              "|" + "---|" * 6]
    for r in rows:
        payback = r.get("payback_epochs")
        lines.append(f"| {r['net']} | {r['change']} | {r['images_per_second']:.0f} | "
                     f"{r['ratio']:.2f}x | "
                     + (f"{r['compile_seconds']:.0f} | " if "compile_seconds" in r else "| ")
                     + (f"{payback:.1f} |" if payback is not None else "|"))
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an ImageFolder")
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--changes", nargs="+", default=list(CHANGES), choices=list(CHANGES))
    p.add_argument("--image-size", type=int, default=48,
                   help="decode and train at this size (the searched trial's own: 48)")
    p.add_argument("--steps", type=int, default=30, help="training steps per timing")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds of all changes")
    p.add_argument("--threads", type=int, default=1, help="threads of the profile")
    p.add_argument("--quick", action="store_true", help="5 steps, 1 round (a smoke run)")
    p.add_argument("--json", type=Path, help="write the results here")
    return p


def main(args: argparse.Namespace) -> dict:
    if args.quick:
        args.steps, args.repeats = 5, 1
    cfg = load_config("demo.yaml", [f"data.path={args.data}"])
    data = prepare_data(args.data, args.image_size, val_fraction=cfg.data.val_fraction,
                        cache_dir=cfg.data.cache_dir, progress=False)
    changes = ["eager", *[c for c in args.changes if c != "eager"]]
    if not native_bf16():
        changes = [c for c in changes if not CHANGES[c].bf16]
    profiles = [profile(net, data, cfg, args.steps, args.threads, args.image_size)
                for net in args.nets]
    rows = [r for net in args.nets
            for r in compare(net, data, cfg, args.steps, args.repeats, changes)]
    return emit("train_speed", markdown(profiles, rows), rows, args.json, profiles=profiles,
                image_size=args.image_size, steps=args.steps, repeats=args.repeats,
                native_bf16=native_bf16(), data=str(args.data))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
