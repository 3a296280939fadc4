"""How the search scales out: trials per minute of short fixed-length trials on a simulated
cluster of 1, 2 and 4 worker nodes (`ray.cluster_utils.Cluster`, logical CPUs; the head holds
none), through the real search path (Tune + the study mirror on SQLite, worker reuse).

The trials sleep (reporting and checkpointing each "epoch" like the real trainable), so the
measure is the search machinery's, not the machine's arithmetic: linear scaling means trials
per minute grows with the node count. Efficiency = measured / ideal, ideal = slots x 60 /
trial seconds. Medians over repeats.

    python benchmarks/scaling.py [--quick] [--nodes 1 2 4] [--cpus-per-node 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.cluster_utils import Cluster

from common import emit
from search_overhead import SleeperSpace, sleeper
from tune_jobs.study.mirror import MirroredOptunaSearch, RecordContext
from tune_jobs.study.storage import open_storage


def trials_per_minute(slots: int, trials: int, seconds: float, epochs: int, root: Path,
                      keep: int) -> dict:
    study = f"scaling-{time.time_ns()}"
    url = f"sqlite:///{root / 'scaling.db'}"
    searcher = MirroredOptunaSearch(space=SleeperSpace(), metric="score", mode="min",
                                    storage=open_storage(url), study_name=study,
                                    record=RecordContext(("score",), epochs, None, 6),
                                    run_id=study)
    tuner = tune.Tuner(
        tune.with_resources(sleeper, {"cpu": 1}),
        param_space={"epochs": epochs, "seconds": seconds},
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials,
                                    max_concurrent_trials=slots, reuse_actors=True),
        run_config=tune.RunConfig(name=study, storage_path=str(root), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=keep)))
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    assert not grid.errors, grid.errors
    return {"wall_s": wall, "trials_per_min": trials / wall * 60}


def run_size(nodes: int, cpus: int, seconds: float, rounds: int, repeats: int,
             root: Path, keep: int) -> dict:
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    try:
        slots = nodes * cpus
        runs = [trials_per_minute(slots, rounds * slots, seconds, 4, root, keep)
                for _ in range(repeats)]
    finally:
        ray.shutdown()
        cluster.shutdown()
    measured = statistics.median(r["trials_per_min"] for r in runs)
    ideal = slots * 60 / seconds
    return {"nodes": nodes, "slots": slots, "trials": rounds * slots, "trial_seconds": seconds,
            "trials_per_min": measured, "ideal_per_min": ideal, "efficiency": measured / ideal,
            "walls_s": [r["wall_s"] for r in runs]}


def to_markdown(rows: list[dict]) -> str:
    base = rows[0]["trials_per_min"] / rows[0]["nodes"]
    lines = ["| nodes | concurrent trials | trials | trials / min | ideal / min | efficiency "
             "| speed-up vs 1 node |", "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['nodes']} | {r['slots']} | {r['trials']} | {r['trials_per_min']:.1f} | "
              f"{r['ideal_per_min']:.1f} | {100 * r['efficiency']:.0f} % | "
              f"{r['trials_per_min'] / base:.2f} (linear {r['nodes']}) |" for r in rows]
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 s trials, one repeat")
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--cpus-per-node", type=int, default=2)
    p.add_argument("--keep", type=int, default=1, help="checkpoints kept per trial (Tune's "
                   "num_to_keep; each trial checkpointing that often forces an experiment "
                   "snapshot in the driver)")
    p.add_argument("--json", type=Path)
    return p


def main(args: argparse.Namespace) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    seconds, rounds, repeats = (2.0, 3, 1) if args.quick else (5.0, 4, 3)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_size(n, args.cpus_per_node, seconds, rounds, repeats, Path(tmp), args.keep)
                for n in args.nodes]
    return emit("scaling", to_markdown(rows), rows, args.json,
                cpus_per_node=args.cpus_per_node, repeats=repeats, keep=args.keep)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
