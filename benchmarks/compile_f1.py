"""Does training in channels_last under torch.compile (`final.compile`) keep macro-F1? Paired
seeds, eager against compiled, per net, as the final job trains them.

    python benchmarks/compile_f1.py [--data DIR] [--nets searched mobilenet_v3_small ...]
        [--seeds 5] [--epochs 10] [--workers 2] [--json FILE] [--render]

The nets and recipe are `train_speed.py`'s (the committed fmnist-taco6 final job's searched
net and both baselines, 48 px, that trial's recipe). Every run is one final-job training
(`Bench.run`: from scratch on train + validation, initialisation, data order and augmentation
from the seed, judged on the test split), eager or compiled from the same seed, two at a time
with one thread each (the final job's way). Each finished run is appended to the JSON at once,
so a killed benchmark resumes where it stopped (`--render` only rewrites the table).

Per net: test macro-F1 of each arm over the seeds, the paired difference (compiled - eager)
with its 95 % interval, and the training speed from the runs' own epoch times (median epoch
after the first; the first compiled epoch's extra is the compile time, seconds when Inductor's
on-disk cache already holds the graphs).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from train_speed import DEFAULT_DATA, NUM_CLASSES, searched_candidate

from common import REPO, emit
from tune_jobs.config import Config, load_config
from tune_jobs.finaljob.runs import Bench, Job, Net
from tune_jobs.finaljob.stats import estimate
from tune_jobs.trial.space import TrainParams

ARMS = ("eager", "compiled")
RESULT = REPO / "benchmarks" / "results" / "compile_f1.json"


def _searched() -> tuple[Net, TrainParams]:
    cand = searched_candidate()
    return Net(cand.spec, NUM_CLASSES), cand.train


def _baseline(name: str) -> Callable[[], tuple[Net, TrainParams]]:
    def build() -> tuple[Net, TrainParams]:
        return Net(f"tv/{name}", NUM_CLASSES), searched_candidate().train
    return build


NETS: dict[str, Callable[[], tuple[Net, TrainParams]]] = {
    "searched": _searched,
    "mobilenet_v3_small": _baseline("mobilenet_v3_small"),
    "shufflenet_v2_x0_5": _baseline("shufflenet_v2_x0_5"),
}


def config(data: Path, arm: str) -> Config:
    return load_config("demo.yaml", [f"data.path={data}", f"final.compile={arm == 'compiled'}"])


def train(net: str, arm: str, seed: int, data: Path, epochs: int, folder: Path) -> dict:
    """One final-job training; its test F1 and epoch times."""
    torch.set_num_threads(1)
    model, params = NETS[net]()
    bench = Bench(config(data, arm), folder / arm, epochs, torch.device("cpu"), progress=False)
    _, run = bench.run(Job(net, model, params, seed, "trainval"))
    return {"net": net, "arm": arm, "seed": seed, "epochs": epochs, "f1": run.f1,
            "accuracy": run.accuracy, "trained": run.training.trained,
            "epoch_seconds": [h["seconds"] for h in run.history]}


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for net in dict.fromkeys(r["net"] for r in rows):
        by = {(r["arm"], r["seed"]): r for r in rows if r["net"] == net}
        seeds = sorted(s for a, s in by if a == "eager" and ("compiled", s) in by)
        if not seeds:
            continue
        f1 = {arm: [by[arm, s]["f1"] for s in seeds] for arm in ARMS}
        diff = estimate([c - e for c, e in zip(f1["compiled"], f1["eager"], strict=True)])
        epoch = {arm: statistics.median(t for s in seeds for t in by[arm, s]["epoch_seconds"][1:])
                 for arm in ARMS}
        compile_s = statistics.median(by["compiled", s]["epoch_seconds"][0] - epoch["compiled"]
                                      for s in seeds)
        low, high = diff.ci95 or (diff.mean, diff.mean)
        out.append({"net": net, "seeds": len(seeds), "epochs": by["eager", seeds[0]]["epochs"],
                    "eager_f1": estimate(f1["eager"]).__dict__,
                    "compiled_f1": estimate(f1["compiled"]).__dict__,
                    "difference": diff.__dict__,
                    "verdict": ("not judged" if diff.ci95 is None else
                                "no detectable difference" if low <= 0 <= high else
                                "higher" if low > 0 else "lower"),
                    "within_0_02": diff.ci95 is not None and low > -0.02 and high < 0.02,
                    "speed_ratio": epoch["eager"] / epoch["compiled"],
                    "compile_seconds": compile_s})
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| net | seeds x epochs | eager test F1 | compiled test F1 | compiled - eager "
             "(paired) | verdict | within ±0.02 | speed (epoch time ratio) "
             "| first epoch's extra s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        e, c, d = r["eager_f1"], r["compiled_f1"], r["difference"]
        ci = d["ci95"] or (d["mean"], d["mean"])
        lines.append(f"| {r['net']} | {r['seeds']} x {r['epochs']} | {e['mean']:.4f} ± "
                     f"{e['std']:.4f} | {c['mean']:.4f} ± {c['std']:.4f} | {d['mean']:+.4f} "
                     f"[{ci[0]:+.4f}, {ci[1]:+.4f}] | {r['verdict']} | "
                     f"{'yes' if r['within_0_02'] else 'no'} | {r['speed_ratio']:.2f}x | "
                     f"{max(r['compile_seconds'], 0.0):.0f} |")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path, default=RESULT)
    p.add_argument("--render", action="store_true", help="only print the saved result")
    return p


def main(args: argparse.Namespace) -> dict:
    saved = json.loads(args.json.read_text()) if args.json.is_file() else {}
    runs: list[dict] = saved.get("runs", [])
    if not args.render:
        done = {(r["net"], r["arm"], r["seed"], r["epochs"]) for r in runs}
        # seed by seed, a pair at a time: the two arms of a seed share the machine alike
        todo = [(net, arm, seed) for seed in range(1, args.seeds + 1) for net in args.nets
                for arm in ARMS if (net, arm, seed, args.epochs) not in done]
        Bench(config(args.data, "eager"), Path(), 1, torch.device("cpu"),
              progress=False).prepared(NETS[args.nets[0]]()[1].image_size)  # decode once
        # spawn: a fork of a process that already ran torch can deadlock in its thread pools
        with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(
                args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(train, *t, args.data, args.epochs, Path(tmp)) for t in todo]
            for future in as_completed(futures):
                runs.append(future.result())
                r = runs[-1]
                print(f"{r['net']} {r['arm']} seed {r['seed']}: test macro-F1 {r['f1']:.4f}",
                      flush=True)
                args.json.write_text(json.dumps({"runs": runs}, indent=1))  # resumable
    rows = summarize(runs)
    return emit("compile_f1", markdown(rows), rows, args.json, data=str(args.data), runs=runs)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
