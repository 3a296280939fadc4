"""int8 beside fp32 on really trained nets: the final job's quantization step (every seed of
every model, every format; `tune_jobs.finaljob.int8`) on the searched net of the committed
fmnist-taco6 final job (trial #17) and the two baselines, each trained `--seeds` times on
train + validation through the final job's own trainer, with the searched recipe.

    python benchmarks/int8.py --data ../shared/data/fmnist-taco6 [--epochs 12] [--seeds 5]
        [--workers 2] [--json benchmarks/results/int8.json]
    python benchmarks/int8.py --render benchmarks/results/int8.json   (the tables again)

Trainings checkpoint under --output, so an interrupted run resumes; the int8 step runs after
every training has finished, alone on the machine (its latencies are timed interleaved).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from common import BASELINES, REPO, emit
from tune_jobs.config import load_config
from tune_jobs.finaljob.batch import run_all
from tune_jobs.finaljob.int8 import Int8Result
from tune_jobs.finaljob.job import int8_of, seed_jobs
from tune_jobs.finaljob.meta import ModelMeta
from tune_jobs.finaljob.runs import Bench, Net
from tune_jobs.trial.space import candidate_from_config

SEARCHED = REPO / "benchmarks" / "results" / "final_fmnist13_full" / "metrics.json"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for latency")
    p.add_argument("--output", type=Path, default=Path("runs/int8-bench"))
    p.add_argument("--json", type=Path)
    p.add_argument("--render", type=Path, help="print the tables of a saved --json and exit")
    return p


def rows_of(results: list[Int8Result]) -> list[dict]:
    rows = []
    for r in results:
        for f in r.formats:
            d = f.f1_difference
            rows.append({
                "model": r.name, "format": f.label, "seeds": len(r.seeds),
                "fp32_f1": sum(r.fp32_f1) / len(r.fp32_f1),
                "int8_minus_fp32": d.mean if d else None, "ci95": d.ci95 if d else None,
                "agreement": f.agreement, "fp32_ms": f.fp32_ms, "int8_ms": f.int8_ms,
                "latency_ratio": f.latency_ratio, "batch64_ratio": f.batch64_ratio,
                "size_ratio": f.size_ratio, "error": f.error,
                "shipped": r.shipped == "int8" and r.chosen == f.format})
    return rows


def markdown(rows: list[dict], verdicts: dict[str, str]) -> str:
    """The table of `rows_of` and a line per model (`verdicts`: model -> what shipped, why)."""
    lines = ["| model | format | int8 - fp32 test macro-F1 [95 % CI] | agreement | fp32 ms | "
             "int8 / fp32 latency (batch 1) | (batch 64) | size ratio |", "|---" * 8 + "|"]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['model']} | {r['format']} | error: {r['error']} ||||||")
            continue
        low, high = r["ci95"]
        lines.append(f"| {r['model']} | {r['format']} | {r['int8_minus_fp32']:+.4f} "
                     f"[{low:+.4f}, {high:+.4f}] | {r['agreement']:.3f} | {r['fp32_ms']:.3f} | "
                     f"{r['latency_ratio']:.2f} | {r['batch64_ratio']:.2f} | "
                     f"{r['size_ratio']:.2f} |")
    lines.append("")
    lines += [f"- {model}: {verdict}" for model, verdict in verdicts.items()]
    return "\n".join(lines)


def verdicts_of(results: list[dict]) -> dict[str, str]:
    """From `metrics.json`-shaped results (dataclasses.asdict of `Int8Result`)."""
    return {r["name"]: (f"int8 ({r['chosen']}) shipped" if not r["flags"]
                        else "fp32 shipped; " + "; ".join(r["flags"])) for r in results}


def main(args: argparse.Namespace) -> None:
    if args.render:  # the tables of a saved run, as BENCHMARKS.md quotes them
        saved = json.loads(args.render.read_text())
        print(markdown(saved["rows"], verdicts_of(saved["results"])))
        return
    if args.data is None:
        raise SystemExit("--data: the crop folder to train on (or --render a saved --json)")
    chosen = json.loads(SEARCHED.read_text())["chosen"]
    cfg = load_config("demo.yaml", [f"data.path={args.data}"])
    cand = candidate_from_config(chosen["params"], cfg.space, 6)
    size = cand.train.image_size
    bench = Bench(cfg, args.output, args.epochs, torch.device("cpu"), workers=args.workers)
    data = bench.prepared(size)
    seeds = [cfg.search.seed + 1 + i for i in range(args.seeds)]
    nets = {"searched": Net(cand.spec, 6), **{b: Net(f"tv/{b}", 6) for b in BASELINES}}
    start = time.perf_counter()
    jobs = [j for name, net in nets.items() for j in seed_jobs(name, net, cand.train, seeds)]
    trained = run_all(bench, jobs)
    train_s = time.perf_counter() - start
    meta = ModelMeta(data.classes, size, cfg.data.resize)
    results, start = [], time.perf_counter()
    for i, name in enumerate(nets):
        runs = trained[i * len(seeds):(i + 1) * len(seeds)]
        results.append(int8_of(name, runs, data, meta, cfg, args.output / f"{name}.int8.onnx",
                               args.threads))
    int8_s = time.perf_counter() - start
    as_dicts = [dataclasses.asdict(r) for r in results]
    emit("int8", markdown(rows_of(results), verdicts_of(as_dicts)), rows_of(results), args.json,
         data=str(args.data), input_size=size, epochs=args.epochs, seeds=seeds,
         threads=args.threads, searched_trial=chosen["number"], train_seconds=train_s,
         int8_seconds=int8_s, results=as_dicts)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
