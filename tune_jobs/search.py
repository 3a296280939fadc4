"""Search architectures and training hyperparameters for a small, fast image classifier.

    python tune_jobs/search.py [--config FILE] [--data PATH] [--storage URL] [--study NAME]
        [--num-samples N] [--resume] [--output DIR] [--point fast|accurate]
        [--set key=value ...]
        [--final [--baselines NETS] [--seeds N] [--top-k K]]

With no arguments it runs configs/demo.yaml on the built-in demo data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tune_jobs.config import POINTS, ConfigError, load_config
from tune_jobs.finaljob.options import FinalOptions, add_final_flags


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="experiment YAML (default configs/demo.yaml)")
    p.add_argument("--data", help="ImageFolder with train/ (and test/); default: demo data")
    p.add_argument("--storage", help="study database URL (PostgreSQL); default "
                   "$LITESEARCH_STORAGE, else SQLite in the output folder")
    p.add_argument("--study", help="study name")
    p.add_argument("--num-samples", type=int, help="number of trials")
    p.add_argument("--output", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--point", choices=sorted(POINTS), help="the operating point: fast (as "
                   "accurate as the baselines at a fraction of their latency; the default "
                   "objective) or accurate (the highest macro-F1 no slower than "
                   "mobilenet_v3_small in ONNX Runtime); the final job judges its claim")
    p.add_argument("--final", action="store_true",
                   help="then retrain, benchmark and export the winner (tune_jobs/final.py)")
    add_final_flags(p)  # with --final
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config value, e.g. search.seed=3")
    return p


def overrides_from(args: argparse.Namespace) -> list[str]:
    flags = {"data.path": args.data, "search.storage": args.storage, "search.study": args.study,
             "search.num_samples": args.num_samples, "output": args.output}
    point = [f"{k}={v}" for k, v in POINTS[args.point].items()] if args.point else []
    return point + [f"{k}={v}" for k, v in flags.items() if v is not None] + args.overrides


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, overrides_from(args))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from data_utils.skips import DataError
    from tune_jobs.searchjob import run_search, stop_ray
    from tune_jobs.study.summary import console_summary, write_outputs

    try:
        _, url = run_search(cfg, resume=args.resume)
    except (ConfigError, DataError, ConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        # Disconnect before the summary: a private Ray's workers, stopped at exit while the
        # driver still forwards their output, print SIGTERM tracebacks after it otherwise
        stop_ray()
    import optuna

    from tune_jobs.study.storage import open_storage

    study = optuna.load_study(study_name=cfg.search.study, storage=open_storage(url))
    summary = write_outputs(study, Path(cfg.output))
    print(console_summary(study, summary))
    # Ctrl+C: Tune stops the trials, saves its state and returns as if the search had ended;
    # its result grid even marks the stopped trials TERMINATED (Ray 2.60). The study does not:
    # they stay RUNNING there until --resume finishes them.
    states, wanted = summary["states"], cfg.search.num_samples
    stopped = states.get("RUNNING", 0) > 0
    if stopped:
        finished, complete = summary["trials"] - states["RUNNING"], states.get("COMPLETE", 0)
        print(f"warning: the search stopped early: {finished} of {wanted} trials finished, "
              f"{complete} COMPLETE. Run the same command with --resume to finish it"
              + (f"; the final job goes on with the {complete} COMPLETE trial(s) so far."
                 if args.final and complete else "."), file=sys.stderr)
    if not summary.get("best"):
        return 1
    if args.final:
        from tune_jobs.finaljob.job import run_final

        try:
            run_final(study, Path(cfg.output), FinalOptions.from_args(args))
        except KeyboardInterrupt:
            print(f"interrupted: `python tune_jobs/final.py --study {cfg.search.study} "
                  f"--output {cfg.output}` with the same final-job flags goes on (finished "
                  "trainings are kept, the others resume from their last finished epoch)",
                  file=sys.stderr)
            return 130
        print((Path(cfg.output) / "final" / "report.md").read_text())
    return 130 if stopped and not args.final else 0  # 130: interrupted, as a shell says


def cli() -> None:
    """The console script (see [project.scripts] in pyproject.toml)."""
    sys.exit(main(get_args_parser().parse_args()))


if __name__ == "__main__":
    cli()
