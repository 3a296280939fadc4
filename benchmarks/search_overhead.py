"""Per-trial overhead of Ray Tune and of the study mirror, side by side.

Trials of a known duration (they sleep, reporting and checkpointing once per "epoch" like the
real trainable) run through (a) plain Tune with its random generator, (b) Tune with
litesearch's MirroredOptunaSearch on SQLite, and (c) the same on PostgreSQL when a URL is
given. Overhead = wall time minus the ideal (trials x duration / concurrency), per trial and
as a share of wall time.

    python benchmarks/search_overhead.py [--quick] [--storage URL] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import optuna
import ray
from ray import tune

from common import emit
from tune_jobs.study.mirror import MirroredOptunaSearch, RecordContext
from tune_jobs.study.storage import mask_url, open_storage


def sleeper(config: dict) -> None:
    """A trial of known length: `epochs` reports, each after `seconds / epochs` of sleep."""
    epochs, seconds = config["epochs"], config["seconds"]
    for epoch in range(1, epochs + 1):
        time.sleep(seconds / epochs)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "state.bin").write_bytes(os.urandom(64 * 1024))
            tune.report({"score": config["x"] / epoch, "epoch": epoch, "outcome": "trained"},
                        checkpoint=tune.Checkpoint.from_directory(tmp))


class SleeperSpace:
    """The sleeper's one drawn value (a class: OptunaSearch pickles its space)."""

    def __call__(self, trial):
        trial.suggest_float("x", 0.0, 1.0)
        return {}


def run(variant: str, n: int, seconds: float, epochs: int, concurrency: int,
        storage_url: str | None, root: Path, reuse_actors: bool) -> dict:
    constants = {"epochs": epochs, "seconds": seconds}
    search_alg = None
    param_space = {"x": tune.uniform(0, 1), **constants}
    if variant != "plain":
        study = f"overhead-{variant}-{time.time_ns()}"
        record = RecordContext(("score",), epochs, None, 6)  # no space: specs are not rebuilt
        search_alg = MirroredOptunaSearch(space=SleeperSpace(), metric="score", mode="min",
                                          storage=open_storage(storage_url), study_name=study,
                                          record=record, run_id=study)
        param_space = constants
    tuner = tune.Tuner(
        sleeper, param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=n,
                                    max_concurrent_trials=concurrency,
                                    reuse_actors=reuse_actors),
        run_config=tune.RunConfig(name=variant, storage_path=str(root), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    assert not grid.errors, grid.errors
    ideal = n * seconds / concurrency
    if variant != "plain":
        trials = optuna.load_study(study_name=study, storage=open_storage(storage_url)).trials
        assert len(trials) == n and all(t.state.is_finished() for t in trials)
    return {"variant": variant, "reuse_actors": reuse_actors, "trials": n,
            "trial_seconds": seconds, "wall_s": wall,
            "ideal_s": ideal, "overhead_per_trial_s": (wall - ideal) * concurrency / n,
            "overhead_share": (wall - ideal) / wall}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="0 s and 5 s trials (minutes)")
    p.add_argument("--storage", default=os.environ.get("LITESEARCH_STORAGE"),
                   help="PostgreSQL URL for variant (c)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--no-reuse-actors", dest="reuse_actors", action="store_false",
                   help="start a worker per trial (Tune's default) instead of reusing one, "
                   "as tune_jobs/search.py does")
    p.add_argument("--json", type=Path)
    return p


def to_markdown(rows: list[dict]) -> str:
    lines = ["| trial length | variant | trials | wall s | ideal s | overhead / trial s "
             "| overhead share |", "|---:|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['trial_seconds']:g} s | {r['variant']} | {r['trials']} | {r['wall_s']:.1f} "
              f"| {r['ideal_s']:.1f} | {r['overhead_per_trial_s']:.2f} | "
              f"{100 * r['overhead_share']:.1f} % |" for r in rows]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False,
             log_to_driver=False)
    # (trial seconds, trials): trivial trials expose the fixed cost; long ones its share
    plan = [(0.0, 8), (5.0, 4)] if args.quick else [(0.0, 16), (10.0, 8), (60.0, 4)]
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{tmp}/overhead.db"
        variants = [("plain", None), ("sqlite", sqlite)]
        if args.storage:
            variants.append(("postgres", args.storage))
        rows = [run(v, n, seconds, 10 if seconds else 1, args.concurrency, url, Path(tmp),
                    args.reuse_actors) for seconds, n in plan for v, url in variants]
    ray.shutdown()
    return emit("search_overhead", to_markdown(rows), rows, args.json,
                storage=mask_url(args.storage) if args.storage else None,
                concurrency=args.concurrency, reuse_actors=args.reuse_actors)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
