"""Phase 2 of a final job (the baselines' recipe trials, the searched model's seeds, the
baselines' seeds) replayed on N workers under two schedules, from the training times a real
run recorded in its checkpoints (each epoch's seconds), and for a training whose checkpoint is
gone (a run folder lost with its machine) in its trainings.jsonl line:

- two batches (before 9209c93): the searched seeds and the recipe trials in one pool, every
  worker waiting for the last of them, then the baselines' seeds in a second pool;
- one pool (now): the recipe trials (the biggest input first), the searched seeds behind them,
  and the baselines' seeds queued once the last recipe trial has finished.

Both are list schedules (a free worker takes the next queued training), as
ProcessPoolExecutor runs them. What it leaves out: each process's start and the evaluation
after each training (seconds, the same in both), and that a training's time depends on what
runs beside it (measured once, under the schedule the run had, on this machine's cores: on
more workers each training would share memory bandwidth with more others). A run that shared
its cores with other work (tests, a CI run) also gets a free-cores estimate of one pool
(`on_free_cores`).

    python benchmarks/final_schedule.py runs/night-fmnist-taco6-accurate/final \
        --workers 2 4 8 16 --json benchmarks/results/final_schedule.json
"""

from __future__ import annotations

import argparse
import heapq
import json
import re
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from common import emit
from tune_jobs.finaljob import TRAININGS

CHECKPOINT = re.compile(r"checkpoint-(?P<name>.+)-(?P<split>train|trainval)-s(?P<seed>\d+)"
                        r"-[0-9a-f]{8}\.pt")
RECIPE = re.compile(r"(?P<net>.+)-(?P<recipe>searched|standard)-(?P<size>\d+)px")


@dataclass(frozen=True)
class Training:
    name: str
    split: str
    seed: int
    seconds: float  # every epoch's, summed
    recorded: bool = False  # from trainings.jsonl: its checkpoint is gone
    epochs: tuple[float, ...] = ()  # each epoch's seconds (none: a line with only a total)

    @property
    def recipe(self) -> re.Match | None:
        return RECIPE.fullmatch(self.name)


def trainings(folder: Path) -> tuple[list[Training], list[str]]:
    """The finished trainings of a final job's checkpoints, then those trainings.jsonl records
    whose checkpoints are gone (the last line of each), and why any file or line was left
    out."""
    found, left_out = [], []
    for path in sorted(folder.glob("checkpoint-*.pt")):
        m = CHECKPOINT.fullmatch(path.name)
        if m is None:
            left_out.append(f"{path.name}: not a final-job checkpoint name")
            continue
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["epoch"] < state["epochs"]:
            left_out.append(f"{path.name}: unfinished ({state['epoch']} of {state['epochs']})")
            continue
        epochs = tuple(h["seconds"] for h in state["history"])
        found.append(Training(m["name"], m["split"], int(m["seed"]), sum(epochs), epochs=epochs))
    have = {(t.name, t.split, t.seed) for t in found}
    lines: dict[tuple, Training] = {}
    path = folder / TRAININGS
    for n, text in enumerate(path.read_text().splitlines() if path.is_file() else [], 1):
        try:
            line = json.loads(text)
            epochs = tuple(float(h["seconds"]) for h in line.get("history") or [])
            seconds = sum(epochs) if epochs else float(line["seconds"])  # else: its total
            t = Training(line["name"], line["split"], int(line["seed"]), seconds, True, epochs)
        except (ValueError, KeyError, TypeError):
            left_out.append(f"{TRAININGS} line {n}: not a finished training")
            continue
        if (t.name, t.split, t.seed) not in have:
            lines[(t.name, t.split, t.seed)] = t
    return found + list(lines.values()), left_out


def phases(found: list[Training], searched_size: int
           ) -> tuple[list[Training], list[Training], list[Training]]:
    """Phase 2's recipe trials (as `recipes_for` lists them: per net, the searched input size
    first, then the others; searched recipe before standard), searched seeds and baseline
    seeds (per net, by seed). Nets in name order."""
    def listed(t: Training) -> tuple:
        m = t.recipe
        assert m is not None
        size = int(m["size"])
        return m["net"], size != searched_size, size, m["recipe"]

    trials = sorted((t for t in found if t.split == "train" and t.recipe), key=listed)
    searched = sorted((t for t in found if t.split == "trainval" and t.name == "searched"),
                      key=lambda t: t.seed)
    baselines = sorted((t for t in found if t.split == "trainval" and t.recipe),
                       key=lambda t: (t.name, t.seed))
    return trials, searched, baselines


def on_free_cores(found: list[Training]) -> list[Training]:
    """Each training timed as if nothing else had run beside the job: its epochs at the
    median epoch of the fastest training of its kind (name and split), the one that shared
    the cores least. A training recorded with only its total keeps it. An estimate, not a
    measurement: it assumes the fastest training of each kind ran on free cores."""
    best: dict[tuple[str, str], float] = {}
    for t in found:
        if t.epochs:
            key = (t.name, t.split)
            best[key] = min(best.get(key, float("inf")), statistics.median(t.epochs))
    return [replace(t, seconds=len(t.epochs) * best[(t.name, t.split)])
            if t.epochs else t for t in found]


def list_schedule(free: list[float], seconds: list[float], release: float = 0.0
                  ) -> list[float]:
    """Each training, in order, to the worker free first (not before `release`); `free`
    (the workers' free times) is updated; returns each training's finish time."""
    heapq.heapify(free)
    finish = []
    for s in seconds:
        start = max(heapq.heappop(free), release)
        finish.append(start + s)
        heapq.heappush(free, finish[-1])
    return finish


def two_batches(trials: list[Training], searched: list[Training], baselines: list[Training],
                workers: int) -> float:
    first = list_schedule([0.0] * workers, [t.seconds for t in searched + trials])
    barrier = max(first, default=0.0)
    second = list_schedule([barrier] * workers, [t.seconds for t in baselines])
    return max(second, default=barrier)


def one_pool(trials: list[Training], searched: list[Training], baselines: list[Training],
             workers: int) -> float:
    biggest_first = sorted(trials, key=lambda t: (t.recipe["net"], -int(t.recipe["size"])))
    free = [0.0] * workers
    first = list_schedule(free, [t.seconds for t in biggest_first + searched])
    chosen = max(first[:len(trials)], default=0.0)  # the last recipe trial's end
    rest = list_schedule(free, [t.seconds for t in baselines], release=chosen)
    return max(first + rest, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a final job's folder (RUN/final)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    metrics = args.folder / "metrics.json"
    if not metrics.is_file():
        raise SystemExit(f"{metrics}: not found; replay a final job that has finished")
    found, left_out = trainings(args.folder)
    size = json.loads(metrics.read_text())["input_size"]
    trials, searched, baselines = phases(found, size)
    if not (trials and searched and baselines):
        raise SystemExit(f"{args.folder}: no finished recipe trials, searched seeds and "
                         "baseline seeds to replay (is the final job done?)")
    free = phases(on_free_cores(found), size)
    work = sum(t.seconds for t in trials + searched + baselines)
    recorded = sum(t.recorded for t in trials + searched + baselines)
    rows = []
    for n in args.workers:
        before = two_batches(trials, searched, baselines, n)
        after = one_pool(trials, searched, baselines, n)
        rows.append({"workers": n, "two_batches_s": round(before), "one_pool_s": round(after),
                     "all_busy_s": round(work / n), "ratio": before / after,
                     "one_pool_free_cores_s": round(one_pool(*free, n))})
    markdown = "\n".join([
        f"Phase 2 of `{args.folder}`: {len(trials)} recipe trials, {len(searched)} searched "
        f"seeds, {len(baselines)} baseline seeds, {work / 3600:.2f} h of training in all.",
        "", "| workers | two batches | one pool | every worker busy (bound) | two batches / "
        "one pool | one pool, free cores (estimate) |", "|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['workers']} | {r['two_batches_s'] / 3600:.2f} h | {r['one_pool_s'] / 3600:.2f}"
          f" h | {r['all_busy_s'] / 3600:.2f} h | {r['ratio']:.3f}x | "
          f"{r['one_pool_free_cores_s'] / 3600:.2f} h |" for r in rows),
        "", "Free cores: each training's epochs at the median epoch of the fastest training "
        "of its kind (`on_free_cores`), as if nothing had run beside the job.",
        *([f"- from {TRAININGS} (checkpoint gone): {recorded} trainings"] if recorded else []),
        *(f"- left out: {why}" for why in left_out)])
    emit("final_schedule", markdown, rows, args.json, folder=str(args.folder),
         training_seconds=round(work), left_out=left_out)


if __name__ == "__main__":
    main()
