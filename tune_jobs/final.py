"""Retrain the chosen configuration of a study, benchmark it, export it, and report.

    python tune_jobs/final.py --study NAME [--storage URL] [--output DIR]
        [--trial N | --pareto --max-latency-ratio X] [--epochs N]
        [--baselines mobilenet_v3_small,shufflenet_v2_x0_5] [--baseline-sizes 96,224]
        [--seeds N] [--top-k K] [--data PATH] [--gpus N] [--no-int8]

Writes OUTPUT/final/: spec.yaml, model.pt, model.ts, model.onnx, model.int8.onnx,
metrics.json, report.md and pareto.png, learning_curves.png, retrain_curves.png,
confusion.png.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tune_jobs.config import ConfigError
from tune_jobs.finaljob.options import FinalOptions, add_final_flags


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", help="study database URL (default $LITESEARCH_STORAGE, else "
                   "OUTPUT/study.db)")
    p.add_argument("--output", default="runs/demo", help="run folder (default runs/demo)")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--trial", type=int, help="retrain this trial number")
    choice.add_argument("--pareto", action="store_true",
                        help="the most accurate COMPLETE trial under --max-latency-ratio")
    p.add_argument("--max-latency-ratio", type=float)
    p.add_argument("--epochs", type=int, help="override final.epochs of the config")
    add_final_flags(p)
    p.add_argument("--data", help="data path on this machine (default: the study's)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for latency")
    p.add_argument("--gpus", type=float, default=0, help="run the retrain as a Ray task "
                   "holding this many GPUs, on the cluster of $RAY_ADDRESS (as inside `ray job "
                   "submit`) or a local Ray; 0 (default): in this process")
    return p


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import optuna

    from data_utils.skips import DataError
    from tune_jobs.finaljob.job import run_final
    from tune_jobs.study.ranking import NoCompleteTrial
    from tune_jobs.study.storage import mask_url, open_storage, resolve_storage_url

    output = Path(args.output)
    url = resolve_storage_url(args.storage, output)
    opts = FinalOptions.from_args(args, trial=args.trial, pareto=args.pareto,
                                  max_latency_ratio=args.max_latency_ratio, epochs=args.epochs,
                                  data=args.data, threads=args.threads)
    try:
        study = optuna.load_study(study_name=args.study, storage=open_storage(url))
    except KeyError:
        print(f"error: no study {args.study!r} in {mask_url(url)}", file=sys.stderr)
        return 2
    except ConnectionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        if args.gpus > 0:
            import os

            import ray

            from tune_jobs.finaljob.remote import run_final_on_cluster

            ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=True)
            metrics = run_final_on_cluster(study, output, opts, args.gpus)
        else:
            metrics = run_final(study, output, opts)
    except (ConfigError, DataError, NoCompleteTrial) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl+C, or SIGTERM mid-batch (finaljob.batch.Stopped)
        print("interrupted: run the same command again to go on (finished trainings are "
              "kept, the others resume from their last finished epoch)", file=sys.stderr)
        return 128 + getattr(stop, "signum", 2)  # as a shell says: 130 (SIGINT), 143 (SIGTERM)
    print((output / "final" / "report.md").read_text())
    print(f"test macro-F1 {metrics.model.test.f1:.4f}, score "
          f"{metrics.model.scores.score:.4f}; artifacts in {output / 'final'}")
    return 0


def cli() -> None:
    """The console script (see [project.scripts] in pyproject.toml)."""
    sys.exit(main(get_args_parser().parse_args()))


if __name__ == "__main__":
    cli()
