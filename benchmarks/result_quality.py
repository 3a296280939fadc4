"""Is the searched model worth it? The final job's comparison, as a benchmark: the searched net
against the nets a user would pick instead (MobileNetV3-Small, ShuffleNetV2 x0.5 by default),
each trained from scratch `--seeds` times on train + validation, each baseline with the better
(on validation) of the searched recipe and its family's standard one; tested on the test split.
The target: a higher mean macro-F1 than every baseline with the 95 % interval of the difference
above zero, at no more than a third of the fastest baseline's latency.

    python benchmarks/result_quality.py [--quick] [--study NAME --storage URL] [--data DIR]
        [--epochs N] [--seeds N] [--top-k K] [--baselines A,B] [--output DIR] [--json FILE]

Without --study it first runs a search (the demo preset on --data; --quick: a short one).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import optuna

from common import BASELINES, REPO, emit
from tune_jobs.config import load_config
from tune_jobs.finaljob.job import run_final
from tune_jobs.finaljob.options import FinalOptions
from tune_jobs.finaljob.results import FinalResult
from tune_jobs.finaljob.stats import Verdict
from tune_jobs.searchjob import run_search
from tune_jobs.study.storage import mask_url, open_storage

LATENCY_TARGET = 1 / 3  # of the fastest baseline's


def search_first(data: Path, quick: bool, root: Path) -> tuple[str, str]:
    study = f"quality-{time.time_ns()}"
    overrides = [f"data.path={data}", f"output={root}", f"search.study={study}",
                 f"search.storage=sqlite:///{root / 'study.db'}"]
    if quick:
        overrides += ["search.num_samples=8", "scheduler.max_epochs=6",
                      "scheduler.grace_period=2", "space.train.image_size=[32]"]
    _, url = run_search(load_config("demo.yaml", overrides))
    return study, url


def verdict(result: FinalResult) -> dict:
    """Per baseline: the interval verdict and the latency ratio; `met` when the searched model
    is better than every baseline (interval above zero) within the latency target."""
    searched = result.models[0]
    fastest = min((m.latency_ratio for m in result.models[1:]), default=float("inf"))
    checks = {c.baseline: {"verdict": c.verdict, "f1_difference": c.f1_difference.mean,
                           "ci95": c.f1_difference.ci95, "latency_ratio": c.latency_ratio}
              for c in result.comparisons}
    met = (bool(checks) and all(c["verdict"] == Verdict.BETTER for c in checks.values())
           and searched.latency_ratio <= LATENCY_TARGET * fastest)
    return {"baselines": checks, "met": met,
            "latency_vs_fastest_baseline": searched.latency_ratio / fastest}


def rows_of(result: FinalResult) -> list[dict]:
    return [{"model": m.name, "recipe": m.recipe, "image_size": m.image_size, "seeds": m.seeds,
             "trained": m.trained,
             "f1_mean": m.f1.mean, "f1_std": m.f1.std, "f1_ci95": m.f1.ci95,
             "accuracy_mean": m.accuracy.mean, "latency_ratio": m.latency_ratio,
             "onnxruntime_ms": m.onnxruntime_ms, "params": m.params, "macs": m.macs,
             "f1_runs": [r.f1 for r in m.runs]} for m in result.models]


def to_markdown(result: FinalResult, check: dict) -> str:
    lines = [f"{result.seeds} seed(s) per model, {result.epochs} epochs on train + validation, "
             f"tested on the {result.test_source} test split; CPU, batch 1, one thread.", "",
             "| model | recipe | px | seeds | macro-F1 mean ± sd [95 % CI] | latency ratio "
             "| ORT ms | params |", "|---|---|---:|---:|---|---:|---:|---:|"]
    lines += [f"| {m.name} | {m.recipe} | {m.image_size} | {m.seeds} | {m.f1.text()} | "
              f"{m.latency_ratio:.3f} | {m.onnxruntime_ms:.3f} | {m.params:,} |"
              for m in result.models]
    lines.append("")
    lines += [f"- vs {c.baseline}: F1 difference {c.f1_difference.text()}, latency ratio "
              f"{c.latency_ratio:.3f}: {c.verdict}" for c in result.comparisons]
    lines.append(f"- target (better than every baseline at <= 1/3 of the fastest one's "
                 f"latency): {'met' if check['met'] else 'MISSED'}")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short search, 3 epochs each")
    p.add_argument("--study", help="a finished search's study (default: search first)")
    p.add_argument("--storage", help="its database URL")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fmnist-taco6")
    p.add_argument("--epochs", type=int, help="default: 3 (quick) or the study's final.epochs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--baselines", default=",".join(BASELINES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", type=Path, help="keep the final job's folder (default: a "
                   "temporary one)")
    p.add_argument("--json", type=Path)
    return p


def main(args: argparse.Namespace) -> dict:
    os.environ.setdefault("LITESEARCH_CACHE", str(Path.home() / ".cache" / "litesearch"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.output or Path(tmp)
        study_name, url = args.study, args.storage
        if not study_name:
            study_name, url = search_first(args.data.resolve(), args.quick, work / "search")
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
        opts = FinalOptions(epochs=args.epochs or (3 if args.quick else None),
                            baselines=tuple(b for b in args.baselines.split(",") if b),
                            data=str(args.data.resolve()), threads=args.threads,
                            seeds=args.seeds, top_k=args.top_k, progress=False)
        result = run_final(study, work, opts)
    check = verdict(result)
    return emit("result_quality", to_markdown(result, check), rows_of(result), args.json,
                study=study_name, storage=mask_url(url), chosen=result.chosen.number,
                epochs=result.epochs, seeds=result.seeds, check=check)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
