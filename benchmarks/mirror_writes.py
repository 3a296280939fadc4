"""The study mirror's hot path: the time each searcher callback Tune makes takes, on SQLite and
PostgreSQL. Tune calls them in its driver loop (one slow call delays every trial's next step;
Tune warns above 0.5 s), so the target is a p95 under 50 ms.

A real `MirroredOptunaSearch` over the demo config's space and a real study; trials are
suggested, report one result per epoch (`on_trial_result`: an intermediate value) and end
(`on_trial_complete`: the record with its spec, metrics and learning curve), as Tune drives
them; nothing trains. Two trials run at once, as in the demo.

    python benchmarks/mirror_writes.py [--storage URL] [--trials 20] [--epochs 10]
        [--json benchmarks/results/mirror_writes.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import optuna

from common import emit
from tune_jobs.config import load_config
from tune_jobs.study.mirror import MirroredOptunaSearch, RecordContext
from tune_jobs.study.storage import mask_url, open_storage
from tune_jobs.trial.space import define_by_run

CALLS = ("suggest", "on_trial_result", "on_trial_complete")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", help="a PostgreSQL URL, measured beside SQLite")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--json", type=Path)
    return p


def measure(url: str, trials: int, epochs: int) -> dict[str, list[float]]:
    """Milliseconds per call, by callback."""
    cfg = load_config("demo.yaml")
    record = RecordContext(("score",), epochs, cfg.space, 6)
    searcher = MirroredOptunaSearch(
        space=define_by_run(cfg.space, 6), metric="score", mode="min",
        sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=True),
        storage=open_storage(url), study_name=f"bench-{uuid.uuid4().hex[:8]}", record=record,
        run_id="bench", num_samples=trials)
    times: dict[str, list[float]] = defaultdict(list)

    def timed(name: str, call, *args):
        start = time.perf_counter()
        out = call(*args)
        times[name].append(1e3 * (time.perf_counter() - start))
        return out

    for pair in range(0, trials, 2):  # two trials at a time, their epochs interleaved
        ids = [f"t{i}" for i in range(pair, min(pair + 2, trials))]
        configs = {tid: timed("suggest", searcher.suggest, tid) for tid in ids}
        for epoch in range(1, epochs + 1):
            for k, tid in enumerate(ids):
                result = {"score": 1.0 / epoch + k, "f1": 0.5, "val_loss": 1.0 / epoch,
                          "accuracy": 0.5, "loss": 1.0, "epoch": epoch,
                          "training_iteration": epoch, "outcome": "trained", "params": 1000,
                          "macs": 10000, "latency_ratio": 0.5, "config": configs[tid]}
                timed("on_trial_result", searcher.on_trial_result, tid, result)
                if epoch == epochs:
                    timed("on_trial_complete", searcher.on_trial_complete, tid, result)
    return times


def stats(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"calls": len(ms), "median_ms": statistics.median(ms),
            "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "max_ms": ordered[-1]}


def main(args: argparse.Namespace) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"SQLite": f"sqlite:///{tmp}/study.db"}
        if args.storage:
            urls["PostgreSQL"] = args.storage
        for name, url in urls.items():
            times = measure(url, args.trials, args.epochs)
            rows += [{"storage": name, "call": call, **stats(times[call])} for call in CALLS]
    lines = ["| storage | call | calls | median ms | p95 ms | max ms |", "|---" * 6 + "|"]
    lines += [f"| {r['storage']} | {r['call']} | {r['calls']} | {r['median_ms']:.1f} | "
              f"{r['p95_ms']:.1f} | {r['max_ms']:.1f} |" for r in rows]
    emit("mirror_writes", "\n".join(lines), rows, args.json, trials=args.trials,
         epochs=args.epochs, storage=mask_url(args.storage) if args.storage else None)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
