"""Learning-curve tables: every candidate of a finite grid trained to the full budget, per
epoch, so that search strategies can be compared over many seeds by replaying the table
instead of training (as NAS-Bench-201 and Syne Tune's blackbox replays do).

    python benchmarks/curves.py build [--config curves] [--second-seed 32] [--out TABLE]
        [--set key=value ...]
    python benchmarks/curves.py build --study NAME [--storage URL] --out TABLE
    python benchmarks/curves.py rungs [--table TABLE] [--rungs 1 3 9] [--json FILE]

`build` with a config trains every candidate of its space (all values lists of choices)
through the real trainable and recipe, no early stopping, in parallel over Ray workers, and
appends one line per trained candidate to the table as it finishes: a killed build continues
where it stopped. `--second-seed N` trains N candidates (spread over the grid) again with
another seed, to measure training noise. `build --study` makes the same table from a study
whose trials ran to the full budget (a `scheduler.early_stopping: false` search on your own
data), to tune early stopping on it before spending a cluster.

A table is JSON lines: a header (`"kind": "meta"`: command, machine, date, data, budget, the
space) and one row per (candidate, seed): its drawn values, outcome, latency ratio, params,
MACs, seconds per epoch and the curve, `[epoch, f1, val_loss, accuracy, score]` per epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
from datetime import date
from pathlib import Path
from typing import Any

from common import REPO, emit

CURVE_FIELDS = ["epoch", "f1", "val_loss", "accuracy", "score"]
DEFAULT_TABLE = REPO / "benchmarks" / "results" / "curves" / "demo-grid.jsonl"


# --------------------------------------------------------------------------------- the table


def cell_key(params: dict[str, Any]) -> str:
    """A candidate's identity: its drawn values (every name, constants included)."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_table(path: Path) -> tuple[dict, list[dict]]:
    """(header, rows); a last line cut short by a killed build is ignored."""
    meta, rows = {}, []
    if not path.is_file():
        return meta, rows
    for n, line in enumerate(path.read_text().splitlines()):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            print(f"{path}:{n + 1}: an incomplete line (a killed build?), ignored",
                  file=sys.stderr)
            continue
        if item.get("kind") == "meta":
            meta = item
        else:
            rows.append(item)
    return meta, rows


def append_rows(path: Path, items: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for item in items:
            f.write(json.dumps(item, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def header(args: argparse.Namespace, cfg, data: str, source: str) -> dict:
    return {"kind": "meta", "command": " ".join(["python", *sys.argv]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": date.today().isoformat(), "source": source, "data": data,
            "max_epochs": cfg.scheduler.max_epochs, "metrics": CURVE_FIELDS,
            "objective": cfg.objective.model_dump(mode="json"),
            "space": cfg.space.model_dump(mode="json")}


def make_row(params: dict, seed: int, last: dict, curve: list[list], seconds: list[float]
             ) -> dict:
    return {"key": cell_key(params), "seed": seed, "params": params,
            "outcome": last.get("outcome", "unknown"), "reason": last.get("reason", ""),
            "latency_ratio": last.get("latency_ratio"), "n_params": last.get("params"),
            "macs": last.get("macs"),
            "epoch_seconds": statistics.median(seconds) if seconds else None,
            "curve": curve}


# --------------------------------------------------------------------------- build: the grid


def grid_jobs(candidates: list, second_seed: int, base_seed: int) -> list[dict]:
    """(params, seed) per training: every candidate once, and `second_seed` of them, evenly
    spread over the grid's order, again with another seed."""
    jobs = [{"params": c.params, "seed": base_seed} for c in candidates]
    if second_seed:
        step = max(1, len(candidates) // second_seed)
        jobs += [{"params": c.params, "seed": base_seed + 1}
                 for c in candidates[::step][:second_seed]]
    return jobs


def _writer(table: Path, jobs: list[dict]):
    from ray.tune import Callback

    class TableWriter(Callback):
        """Appends a trial's row the moment it ends (so a killed build keeps it)."""

        def __init__(self) -> None:
            self.curves: dict[str, dict[int, list]] = {}
            self.seconds: dict[str, list[float]] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if result.get("outcome") == "trained" and result.get("epoch", 0) >= 1:
                self.curves.setdefault(trial.trial_id, {})[int(result["epoch"])] = [
                    int(result["epoch"]), *(result.get(m) for m in CURVE_FIELDS[1:])]
                self.seconds.setdefault(trial.trial_id, []).append(result["epoch_seconds"])

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            job = jobs[trial.config["index"]]
            curve = [v for _, v in sorted(self.curves.pop(trial.trial_id, {}).items())]
            append_rows(table, [make_row(job["params"], job["seed"], trial.last_result or {},
                                         curve, self.seconds.pop(trial.trial_id, []))])

    return TableWriter()


def build_grid(cfg, table: Path, second_seed: int, args: argparse.Namespace) -> int:
    """Train what the table lacks; returns the number of trainings left to do before."""
    from ray import tune

    from tune_jobs.searchjob import init_ray, prepare_trial_data, results_path
    from tune_jobs.trial.space import enumerate_space
    from tune_jobs.trial.trainable import SEED_KEY, train_listed

    data = prepare_trial_data(cfg)
    candidates = enumerate_space(cfg.space, len(data.classes))
    jobs = grid_jobs(candidates, second_seed, cfg.search.seed)
    meta, rows = read_table(table)
    if not meta:
        append_rows(table, [header(args, cfg, data.extra["data_path"], "grid")])
    elif meta.get("space") != cfg.space.model_dump(mode="json"):
        raise SystemExit(f"{table}: built from another space; use another --out")
    done = {(r["key"], r["seed"]) for r in rows}
    todo = [j for j in jobs if (cell_key(j["params"]), j["seed"]) not in done]
    print(f"{len(candidates)} candidates, {len(jobs)} trainings of {cfg.scheduler.max_epochs} "
          f"epochs; {len(jobs) - len(todo)} in {table} already, {len(todo)} to train")
    if not todo:
        return 0
    init_ray(cfg)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    resources = {"cpu": cfg.resources.cpus_per_trial, "gpu": cfg.resources.gpus_per_trial}
    configs = [{**j["params"], SEED_KEY: j["seed"]} for j in todo]
    trainable = tune.with_resources(
        tune.with_parameters(train_listed, data=data, configs=configs), resources)
    tune.Tuner(
        trainable, param_space={"index": tune.grid_search(list(range(len(todo))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.search.max_concurrent,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"curves-{cell_key({'t': str(table)})}",
            storage_path=results_path(cfg, Path(cfg.output).resolve()),
            failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures),
            callbacks=[_writer(table, todo)], verbose=1),
    ).fit()
    return len(todo)


# -------------------------------------------------------------------------- build: a study


def build_from_study(study, table: Path, args: argparse.Namespace) -> int:
    """The table of a study's trials that ran to its full budget; returns the row count."""
    from optuna.trial import TrialState

    from tune_jobs.config import Config

    if "config" not in study.user_attrs:
        raise SystemExit(f"study {study.study_name!r} holds no litesearch config")
    cfg = Config.model_validate(study.user_attrs["config"])
    full = [t for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and t.user_attrs.get("curve")
            and t.user_attrs.get("epochs_done", 0) >= cfg.scheduler.max_epochs]
    if not full:
        raise SystemExit(f"study {study.study_name!r} has no trial trained to its full "
                         f"budget of {cfg.scheduler.max_epochs} epochs with a recorded curve "
                         "(run the search with scheduler.early_stopping=false)")
    if cfg.scheduler.early_stopping:
        print(f"note: study {study.study_name!r} ran with early stopping; the table holds "
              f"only its {len(full)} trials that reached the full budget, a biased sample",
              file=sys.stderr)
    from tune_jobs.trial.space import candidate_from_config

    num_classes = len(study.user_attrs.get("classes") or [0, 1])
    rows = []
    for t in full:
        a = t.user_attrs
        params = candidate_from_config(t.params, cfg.space, num_classes).params
        rows.append(make_row(params, cfg.search.seed, a, [list(p) for p in a["curve"]],
                             [a["wall_seconds"] / max(1, a["epochs_done"])]))
        rows[-1]["trial"] = t.number
    meta = header(args, cfg, str(study.user_attrs.get("data_path", "")),
                  f"study {study.study_name}")
    table.unlink(missing_ok=True)
    append_rows(table, [meta, *rows])
    return len(rows)


# --------------------------------------------------------------------- rung metric analysis

# Candidate rung metrics, each as "higher is better" from a curve point
# [epoch, f1, val_loss, accuracy, score]. Params, MACs and latency are known before training:
# budgets checked at epoch 0, not something a rung should re-rank.
RUNG_METRICS = {
    "score": lambda p: -p[4],
    "f1": lambda p: p[1],
    "val_loss": lambda p: -p[2],
    "accuracy": lambda p: p[3],
}


def rung_correlations(rows: list[dict], max_epochs: int, rungs: list[int]) -> list[dict]:
    """Per rung and candidate metric: Spearman's rank correlation, over the candidates trained
    to the full budget, between the metric at the rung and the final score (and final F1);
    what a rung ranking by that metric keeps."""
    from scipy.stats import spearmanr

    full = [r for r in rows if r["seed"] == min(x["seed"] for x in rows)
            and len(r["curve"]) >= max_epochs]
    final_score = [-r["curve"][max_epochs - 1][4] for r in full]
    final_f1 = [r["curve"][max_epochs - 1][1] for r in full]
    out = []
    for rung in rungs:
        for name, value in RUNG_METRICS.items():
            at = [value(r["curve"][rung - 1]) for r in full]
            out.append({"rung": rung, "metric": name, "n": len(full),
                        "spearman_final_score": float(spearmanr(at, final_score).statistic),
                        "spearman_final_f1": float(spearmanr(at, final_f1).statistic)})
    return out


def seed_noise(rows: list[dict], max_epochs: int) -> dict:
    """The same candidates trained with two seeds: how far their final numbers differ."""
    from scipy.stats import spearmanr

    by = {}
    for r in rows:
        if len(r["curve"]) >= max_epochs:
            by.setdefault(r["key"], {})[r["seed"]] = r["curve"][max_epochs - 1]
    pairs = [(v[min(v)], v[max(v)]) for v in by.values() if len(v) == 2]
    if len(pairs) < 3:
        return {"pairs": len(pairs)}
    return {"pairs": len(pairs),
            "f1_mean_abs_diff": statistics.mean(abs(a[1] - b[1]) for a, b in pairs),
            "score_mean_abs_diff": statistics.mean(abs(a[4] - b[4]) for a, b in pairs),
            "spearman_final_score": float(spearmanr([a[4] for a, _ in pairs],
                                                    [b[4] for _, b in pairs]).statistic)}


def rungs_markdown(corr: list[dict], noise: dict) -> str:
    metrics = list(RUNG_METRICS)
    lines = ["| rung (epoch) | n | " + " | ".join(f"{m}: final score / final F1"
                                                  for m in metrics) + " |",
             "|---:|---:|" + "---:|" * len(metrics)]
    for rung in sorted({c["rung"] for c in corr}):
        cells = {c["metric"]: c for c in corr if c["rung"] == rung}
        lines.append(f"| {rung} | {cells[metrics[0]]['n']} | " + " | ".join(
            f"{cells[m]['spearman_final_score']:+.2f} / {cells[m]['spearman_final_f1']:+.2f}"
            for m in metrics) + " |")
    if noise.get("pairs", 0) >= 3:
        lines.append(f"\nTraining noise ({noise['pairs']} candidates, two seeds): final F1 "
                     f"differs by {noise['f1_mean_abs_diff']:.3f} on average, the score by "
                     f"{noise['score_mean_abs_diff']:.3f}; Spearman between the seeds' final "
                     f"scores {noise['spearman_final_score']:+.2f}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- the CLI


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train a grid, or read a study, into a table")
    b.add_argument("--config", default="curves", help="the grid (default configs/curves.yaml)")
    b.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE")
    b.add_argument("--second-seed", type=int, default=32,
                   help="candidates trained again with another seed (training noise)")
    b.add_argument("--study", help="build from this study instead of training a grid")
    b.add_argument("--storage", help="the study's database URL (default $LITESEARCH_STORAGE)")
    b.add_argument("--out", type=Path, default=DEFAULT_TABLE, help="the table (JSON lines)")
    r = sub.add_parser("rungs", help="how well each rung metric predicts the end")
    r.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    r.add_argument("--rungs", type=int, nargs="+", default=[1, 3, 9])
    r.add_argument("--json", type=Path)
    return p


def main(args: argparse.Namespace) -> int:
    if args.command == "rungs":
        meta, rows = read_table(args.table)
        corr = rung_correlations(rows, meta["max_epochs"], args.rungs)
        noise = seed_noise(rows, meta["max_epochs"])
        emit("curves_rungs", rungs_markdown(corr, noise), corr, args.json,
             table=str(args.table), noise=noise)
        return 0
    if args.study:
        import optuna

        from tune_jobs.study.storage import open_storage, resolve_storage_url

        url = resolve_storage_url(args.storage, Path("."))
        study = optuna.load_study(study_name=args.study, storage=open_storage(url))
        print(f"{build_from_study(study, args.out, args)} rows in {args.out}")
        return 0
    from tune_jobs.config import load_config

    cfg = load_config(args.config, args.overrides)
    build_grid(cfg, args.out, args.second_seed, args)
    _, rows = read_table(args.out)
    print(f"{len(rows)} rows in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
