"""Learning-curve tables: every candidate of a finite grid trained to the full budget, per
epoch, so that search strategies can be compared over many seeds by replaying the table
instead of training (as NAS-Bench-201 and Syne Tune's blackbox replays do).

    python benchmarks/curves.py build [--config curves] [--seeds 1] [--second-seed 32]
        [--out TABLE] [--set key=value ...]
    python benchmarks/curves.py build --study NAME [--storage URL] --out TABLE
    python benchmarks/curves.py rungs [--table TABLE] [--rungs 1 3 9] [--only NAME=VALUE]
        [--json FILE]
    python benchmarks/curves.py replay [--table TABLE] [--arms tpe:asha:f1:1:3 ...]
        [--seeds 30] [--num-samples 40] [--trainings drawn|first] [--quick] [--json FILE]
        [--plot PNG]
    python benchmarks/curves.py pairs REPLAY.json --pairs "gp + fifo=tpe + fifo" ...

`build` with a config trains every candidate of its space (all values lists of choices)
through the real trainable and recipe, no early stopping, in parallel over Ray workers, and
appends one line per trained candidate to the table as it finishes: a killed build continues
where it stopped. `--seeds K` trains every candidate with K seeds (training noise that the
replay draws from); `--second-seed N` trains N candidates (spread over the grid) once more
with the next seed, a cheaper measure of that noise. `build --study` makes the same table
from a study whose trials ran to the full budget (a `scheduler.early_stopping: false` search
on your own data), to tune early stopping on it before spending a cluster.

A table is JSON lines: a header (`"kind": "meta"`: command, machine, date, data, budget, the
space) and one row per (candidate, seed): its drawn values, outcome, latency ratio, params,
MACs, seconds per epoch and the curve, per epoch the header's `metrics`: `[epoch, f1,
val_loss, accuracy, score, loss, lr]` (loss: the mean training loss; lr: where the epoch's
schedule ended; tables built before 2026-12-03 stop at the score).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from common import REPO, emit
from tune_jobs.trial.replay import cell_key

DEFAULT_TABLE = REPO / "benchmarks" / "results" / "curves" / "demo-grid.jsonl"


# --------------------------------------------------------------------------------- the table


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
    from tune_jobs.study.mirror import CURVE_METRICS  # a row's curve: one list per epoch

    return {"kind": "meta", "command": " ".join(["python", *sys.argv]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": date.today().isoformat(), "source": source, "data": data,
            "max_epochs": cfg.scheduler.max_epochs, "metrics": ["epoch", *CURVE_METRICS],
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


def grid_jobs(candidates: list, second_seed: int, base_seed: int, seeds: int = 1
              ) -> list[dict]:
    """(params, seed) per training: every candidate with `seeds` seeds from `base_seed` on,
    the first seed of all before the next; then `second_seed` of them, evenly spread over
    the grid's order, once more with the next seed."""
    jobs = [{"params": c.params, "seed": base_seed + k}
            for k in range(seeds) for c in candidates]
    if second_seed:
        step = max(1, len(candidates) // second_seed)
        jobs += [{"params": c.params, "seed": base_seed + seeds}
                 for c in candidates[::step][:second_seed]]
    return jobs


def _writer(table: Path, jobs: list[dict]):
    from ray.tune import Callback

    from tune_jobs.study.mirror import CurveLog

    class TableWriter(Callback):
        """Appends a trial's row the moment it ends (so a killed build keeps it); the curve
        is collected as the study's mirror collects it."""

        def __init__(self) -> None:
            self.curves = CurveLog()
            self.seconds: dict[str, list[float]] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.curves.add(trial.trial_id, result)
            if result.get("epoch_seconds") is not None:
                self.seconds.setdefault(trial.trial_id, []).append(result["epoch_seconds"])

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            job = jobs[trial.config["index"]]
            append_rows(table, [make_row(job["params"], job["seed"], trial.last_result or {},
                                         self.curves.pop(trial.trial_id),
                                         self.seconds.pop(trial.trial_id, []))])

    return TableWriter()


def build_grid(cfg, table: Path, second_seed: int, args: argparse.Namespace, seeds: int = 1
               ) -> int:
    """Train what the table lacks; returns the number of trainings left to do before."""
    from ray import tune

    from tune_jobs.searchjob import init_ray, prepare_trial_data, results_path
    from tune_jobs.study.trials import StudyAttr
    from tune_jobs.trial.space import enumerate_space
    from tune_jobs.trial.trainable import SEED_KEY, train_listed

    data = prepare_trial_data(cfg)
    candidates = enumerate_space(cfg.space, len(data.classes))
    jobs = grid_jobs(candidates, second_seed, cfg.search.seed, seeds)
    meta, rows = read_table(table)
    if not meta:
        append_rows(table, [header(args, cfg, data.study_attrs[StudyAttr.DATA_PATH], "grid")
                            | {"classes": data.classes}])
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
    from tune_jobs.study.trials import StudyAttr, study_trials

    if StudyAttr.CONFIG not in study.user_attrs:
        raise SystemExit(f"study {study.study_name!r} holds no litesearch config")
    cfg = Config.model_validate(study.user_attrs[StudyAttr.CONFIG])
    full = [t for t in study_trials(study)
            if t.state == TrialState.COMPLETE and t.curve
            and t.epochs_done >= cfg.scheduler.max_epochs]
    if not full:
        raise SystemExit(f"study {study.study_name!r} has no trial trained to its full "
                         f"budget of {cfg.scheduler.max_epochs} epochs with a recorded curve "
                         "(run the search with scheduler.early_stopping=false)")
    if cfg.scheduler.early_stopping:
        print(f"note: study {study.study_name!r} ran with early stopping; the table holds "
              f"only its {len(full)} trials that reached the full budget, a biased sample",
              file=sys.stderr)
    from tune_jobs.trial.space import candidate_from_config

    classes = study.user_attrs.get(StudyAttr.CLASSES)
    rows = []
    for t in full:
        params = candidate_from_config(t.params, cfg.space, len(classes or [0, 1])).params
        rows.append(make_row(params, cfg.search.seed, t.attrs, [list(p) for p in t.curve],
                             [t.wall_seconds / max(1, t.epochs_done)]))
        rows[-1]["trial"] = t.number
    meta = header(args, cfg, str(study.user_attrs.get(StudyAttr.DATA_PATH, "")),
                  f"study {study.study_name}") | {"classes": classes}
    table.unlink(missing_ok=True)
    append_rows(table, [meta, *rows])
    return len(rows)


# --------------------------------------------------------------------- rung metric analysis

def _tse(curve: list[list], rung: int, decay: float = 1.0) -> float:
    """Training-speed estimation (Ru et al., NeurIPS 2021): the sum of the mean training
    losses of epochs 1..rung, each weighted by decay ** (rung - epoch) (1: TSE; 0.9: TSE-EMA,
    which weighs the latest epochs most). Lower: the net learns faster."""
    return sum(decay ** (rung - p[0]) * p[5] for p in curve[:rung])


# Candidate rung metrics, each "higher is better" from a training's curve up to the rung
# (points [epoch, f1, val_loss, accuracy, score, loss, lr]). Params, MACs and latency are
# known before training: budgets checked at epoch 0, not something a rung should re-rank.
RUNG_METRICS: dict[str, Callable[[list[list], int], float]] = {
    "score": lambda c, rung: -c[rung - 1][4],
    "f1": lambda c, rung: c[rung - 1][1],
    "val_loss": lambda c, rung: -c[rung - 1][2],
    "accuracy": lambda c, rung: c[rung - 1][3],
    "tse": lambda c, rung: -_tse(c, rung),
    "tse_ema": lambda c, rung: -_tse(c, rung, 0.9),
}
NEEDS_TRAINING_LOSS = ("tse", "tse_ema")  # not in a table built before 2026-12-03


def rung_metrics(rows: list[dict]) -> list[str]:
    """The rung metrics every row's curve can give."""
    has_loss = all(len(p) > 5 and p[5] is not None for r in rows for p in r["curve"])
    return [m for m in RUNG_METRICS if has_loss or m not in NEEDS_TRAINING_LOSS]


def _finals(rows: list[dict], max_epochs: int) -> tuple[list[dict], list[float], list[float],
                                                         str]:
    """The trainings to rank and what each should predict: (rows, final score, final F1,
    target). Where every candidate has several trainings, a training's target is the mean
    final of its candidate's other trainings ("held-out seed": what a rung can hope to see
    through training noise); otherwise the first seed's trainings, each with its own end."""
    full = [r for r in rows if len(r["curve"]) >= max_epochs]
    cells: dict[str, list[dict]] = {}
    for r in full:
        cells.setdefault(r["key"], []).append(r)

    def end(rs: list[dict], column: int) -> float:
        return statistics.mean(r["curve"][max_epochs - 1][column] for r in rs)

    if full and all(len(rs) >= 2 for rs in cells.values()):
        others = [[o for o in cells[r["key"]] if o is not r] for r in full]
        return (full, [-end(o, 4) for o in others], [end(o, 1) for o in others],
                "held-out seed")
    first = [r for r in full if r["seed"] == min(x["seed"] for x in full)]
    return first, [-end([r], 4) for r in first], [end([r], 1) for r in first], "own final"


def rung_correlations(rows: list[dict], max_epochs: int, rungs: list[int]) -> list[dict]:
    """Per rung and candidate metric: Spearman's rank correlation, over the trainings that
    reached the full budget, between the metric at the rung and the final score (and final
    F1) the training should predict (`_finals`); and what a rung ranking by that metric
    keeps: of the best 2.5 % by that final score, how many are in the metric's top third at
    the rung (what ASHA with eta 3 lets go on)."""
    from scipy.stats import spearmanr

    full, final_score, final_f1, target = _finals(rows, max_epochs)
    top_k, third = max(1, round(0.025 * len(full))), max(1, len(full) // 3)
    best = set(sorted(range(len(full)), key=lambda i: -final_score[i])[:top_k])
    out = []
    for rung in rungs:
        for name in rung_metrics(full):
            at = [RUNG_METRICS[name](r["curve"], rung) for r in full]
            kept = set(sorted(range(len(full)), key=lambda i: -at[i])[:third])
            out.append({"rung": rung, "metric": name, "n": len(full), "target": target,
                        "spearman_final_score": float(spearmanr(at, final_score).statistic),
                        "spearman_final_f1": float(spearmanr(at, final_f1).statistic),
                        "top_k": top_k, "top_k_kept_in_top_third": len(best & kept)})
    return out


def only_drawn(rows: list[dict], only: list[str]) -> list[dict]:
    """The rows whose drawn values match every NAME=VALUE of `only` (compared as text)."""
    wanted = dict(o.split("=", 1) for o in only)
    unknown = [n for n in wanted if rows and n not in rows[0]["params"]]
    if unknown:
        raise SystemExit(f"--only {unknown[0]}: not a drawn name of this table; its names: "
                         f"{', '.join(rows[0]['params'])}")
    kept = [r for r in rows if all(str(r["params"][n]) == v for n, v in wanted.items())]
    if rows and not kept:
        raise SystemExit(f"--only {' '.join(only)}: no row of the table matches")
    return kept


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
    metrics = list(dict.fromkeys(c["metric"] for c in corr))
    lines = ["| rung (epoch) | n | " + " | ".join(f"{m}: final score / final F1"
                                                  for m in metrics) + " |",
             "|---:|---:|" + "---:|" * len(metrics)]
    for rung in sorted({c["rung"] for c in corr}):
        cells = {c["metric"]: c for c in corr if c["rung"] == rung}
        lines.append(f"| {rung} | {cells[metrics[0]]['n']} | " + " | ".join(
            f"{cells[m]['spearman_final_score']:+.2f} / {cells[m]['spearman_final_f1']:+.2f}"
            for m in metrics) + " |")
    lines += ["", f"n: trainings; the final each should predict: its {corr[0]['target']} "
              "(`curves.py` `_finals`).", "",
              f"Of the {corr[0]['top_k']} best trainings by that final score, how many a rung "
              "keeps in its top third:", "",
              "| rung (epoch) | " + " | ".join(metrics) + " |", "|---:|" + "---:|" * len(metrics)]
    for rung in sorted({c["rung"] for c in corr}):
        cells = {c["metric"]: c for c in corr if c["rung"] == rung}
        lines.append(f"| {rung} | " + " | ".join(
            f"{cells[m]['top_k_kept_in_top_third']}/{cells[m]['top_k']}" for m in metrics) + " |")
    if noise.get("pairs", 0) >= 3:
        lines.append(f"\nTraining noise ({noise['pairs']} candidates, two seeds): final F1 "
                     f"differs by {noise['f1_mean_abs_diff']:.3f} on average, the score by "
                     f"{noise['score_mean_abs_diff']:.3f}; Spearman between the seeds' final "
                     f"scores {noise['spearman_final_score']:+.2f}.")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class Arm:
    """One search strategy: searcher, scheduler, and the scheduler's rung settings."""

    searcher: str = "tpe"
    scheduler: str = "fifo"  # fifo (every trial to the full budget) or asha
    metric: str = "score"  # what ASHA's rungs rank by
    grace: int = 1
    eta: float = 3
    extra: tuple[str, ...] = ()  # config overrides, e.g. search.tpe.multivariate=true

    @property
    def name(self) -> str:
        more = "".join(f" +{e}" for e in self.extra)
        if self.scheduler == "fifo":
            return f"{self.searcher} + fifo{more}"
        return (f"{self.searcher} + asha({self.metric}, grace {self.grace}, eta "
                f"{self.eta:g}){more}")

    def overrides(self) -> list[str]:
        return [*self.extra, f"search.algorithm={self.searcher}",
                f"scheduler.early_stopping={str(self.scheduler == 'asha').lower()}",
                f"scheduler.metric={self.metric}", f"scheduler.grace_period={self.grace}",
                f"scheduler.reduction_factor={self.eta}"]


REFERENCE = Arm()  # TPE without early stopping: what every arm is measured against


def default_arm() -> Arm:
    """TPE with the demo preset's scheduler settings: what a user gets out of the box."""
    from tune_jobs.config import load_config

    s = load_config("demo").scheduler
    return Arm("tpe", "asha" if s.early_stopping else "fifo", s.metric, s.grace_period,
               s.reduction_factor)


def replay_config(meta: dict, base: str, overrides: list[str]):
    """The base config with the table's space and budget (the grid the table covers)."""
    from tune_jobs.config import Config, load_config

    tree = load_config(base, overrides).model_dump(mode="json")
    tree["space"] = meta["space"]
    tree["scheduler"]["max_epochs"] = meta["max_epochs"]
    return Config.model_validate(tree)


def trajectory(study) -> dict:
    """Trials in the order they ended: cumulative trial-epochs, table seconds, and the best
    final score of a COMPLETE trial so far (a reused duplicate costs nothing)."""
    from optuna.trial import TrialState

    from tune_jobs.study.trials import study_trials

    ended = sorted((t for t in study_trials(study) if t.completed_at),
                   key=lambda t: (t.completed_at, t.number))
    cost, seconds, best, points = 0, 0.0, None, []
    for t in ended:
        cost += t.epochs_done
        seconds += t.wall_seconds
        if t.state == TrialState.COMPLETE and t.score is not None:
            best = t.score if best is None else min(best, t.score)
        points.append([cost, seconds, best])
    trained = [t for t in ended if t.trained]
    return {"points": points, "trial_epochs": cost, "table_seconds": seconds, "best": best,
            "complete": sum(t.state == TrialState.COMPLETE for t in trained),
            "trials": len(trained), "duplicates": len(ended) - len(trained)}


# Which of a candidate's trainings a replayed trial reports: one drawn per (candidate, replay
# seed) (`replay.drawn_row`), so training noise enters the comparison; or always the first
# seed's, as every replay before the tables carried noise did (a noise-free table).
TRAININGS = ("drawn", "first")


def replayed_trainings(rows: list[dict], trainings: str = "drawn") -> dict[str, list[dict]]:
    """Cell key -> the rows a replayed trial may report."""
    if trainings not in TRAININGS:
        raise ValueError(f"trainings: {trainings!r}, expected one of {TRAININGS}")
    first_seed = min(r["seed"] for r in rows)
    table: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        if trainings == "drawn" or r["seed"] == first_seed:
            table.setdefault(r["key"], []).append(r)
    return table


def replay_arm(arm: Arm, meta: dict, rows: list[dict], seeds: list[int], base: str,
               num_samples: int, concurrency: int, trainings: str = "drawn") -> list[dict]:
    """One replayed search per seed through `run_search` (SQLite study, the real searcher,
    scheduler, mirror); returns each seed's trajectory."""
    import tempfile

    import optuna

    from tune_jobs.config import SpaceConfig
    from tune_jobs.searchjob import run_search
    from tune_jobs.study.storage import open_storage
    from tune_jobs.study.trials import StudyAttr
    from tune_jobs.trial.data import TrialData
    from tune_jobs.trial.replay import CONFIG_KEY, TABLE_KEY, config_keys, replay_trial

    table = replayed_trainings(rows, trainings)
    classes = meta.get("classes") or [f"class{i}" for i in range(6)]
    configs = config_keys(SpaceConfig.model_validate(meta["space"]), len(classes))
    out = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
            cfg = replay_config(meta, base, [
                f"search.seed={seed}", f"search.num_samples={num_samples}",
                f"search.max_concurrent={concurrency}", "search.study=replay",
                f"search.storage=sqlite:///{tmp}/study.db", f"output={tmp}",
                "search.max_failures=0", "tracking.wandb=disabled",
                f"resources.cpus_per_trial={1 / concurrency}",
                *arm.overrides()])  # last: an arm's own settings win (+search.num_samples=80)
            data = TrialData(cfg, classes, {}, {},
                             study_attrs={StudyAttr.DATA_PATH: meta.get("data", ""),
                                          StudyAttr.TEST_SOURCE: "none"},
                             extra={TABLE_KEY: table, CONFIG_KEY: configs})
            _, url = run_search(cfg, data=data, trial_fn=replay_trial)
            study = optuna.load_study(study_name="replay", storage=open_storage(url))
            out.append({"seed": seed} | trajectory(study))
    return out


def replay_parallel(arm: Arm, meta: dict, rows: list[dict], seeds: list[int],
                    args: argparse.Namespace) -> list[dict]:
    """The seeds split over `args.workers` processes, each with its own local Ray: a replayed
    search is mostly Tune waiting (trial start, about 10 s of actor clean-up at its end), not
    computing, so several overlap well even on two cores."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if args.workers <= 1:
        return replay_arm(arm, meta, rows, seeds, args.config, args.num_samples,
                          args.concurrency, args.trainings)
    parts = [seeds[i::args.workers] for i in range(args.workers)]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(replay_arm, arm, meta, rows, part, args.config,
                               args.num_samples, args.concurrency, args.trainings)
                   for part in parts if part]
        out = [t for f in futures for t in f.result()]
    return sorted(out, key=lambda t: t["seed"])


def best_within(traj: dict, budget: float) -> float | None:
    best = None
    for cost, _, b in traj["points"]:
        if cost > budget:
            break
        best = b
    return best


def epochs_to_reach(traj: dict, target: float) -> float:
    return next((cost for cost, _, b in traj["points"] if b is not None and b <= target),
                float("inf"))


def _median_ci(values: list[float], rng) -> tuple[float, float, float]:
    """Median and a bootstrap 95 % interval over seeds."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    boots = np.median(rng.choice(v, size=(2000, len(v)), replace=True), axis=1)
    return float(np.median(v)), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def paired_finals(results: dict[str, list[dict]], arm: str, other: str,
                  resamples: int = 4000) -> dict:
    """`arm` against `other` seed by seed on the final best score (lower is better): how many
    seeds each is strictly better in and how many tie (a noise-free table ties often), and
    the mean paired difference (arm - other) with a bootstrap 95 % interval."""
    import numpy as np

    mine = {t["seed"]: t["best"] for t in results[arm]}
    theirs = {t["seed"]: t["best"] for t in results[other]}
    seeds = sorted(s for s in set(mine) & set(theirs)
                   if mine[s] is not None and theirs[s] is not None)
    diffs = np.array([mine[s] - theirs[s] for s in seeds])
    boots = np.random.default_rng(0).choice(diffs, (resamples, len(diffs))).mean(1)
    low, high = np.quantile(boots, [0.025, 0.975])
    return {"arm": arm, "against": other, "seeds": len(seeds),
            "better": int((diffs < -1e-12).sum()), "worse": int((diffs > 1e-12).sum()),
            "tied": int((abs(diffs) <= 1e-12).sum()), "mean_difference": float(diffs.mean()),
            "difference_ci95": [float(low), float(high)]}


def pairs_markdown(rows: list[dict]) -> str:
    lines = ["| arm | against | strictly better | tied | strictly worse | mean difference of "
             "final bests [95 % CI] |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['arm']} | {r['against']} | {r['better']} | {r['tied']} | {r['worse']} | "
              f"{r['mean_difference']:+.3f} [{r['difference_ci95'][0]:+.3f}, "
              f"{r['difference_ci95'][1]:+.3f}] |" for r in rows]
    return "\n".join(lines)


def summarize_arms(results: dict[str, list[dict]]) -> list[dict]:
    """Per arm, against TPE without early stopping on the same seeds: the trial-epochs to
    reach its median final best (ratio), and the share of seeds at least as good at equal
    trial-epochs."""
    import numpy as np

    rng = np.random.default_rng(0)
    ref = {t["seed"]: t for t in results[REFERENCE.name]}
    bests = [t["best"] for t in ref.values() if t["best"] is not None]
    if not bests:
        raise SystemExit("no seed of TPE without early stopping finished a trial: is the "
                         "table complete for this space?")
    target = statistics.median(bests)
    ref_need = statistics.median(epochs_to_reach(t, target) for t in ref.values())
    rows = []
    for name, trajs in results.items():
        ratios = [epochs_to_reach(t, target) / ref_need for t in trajs]
        wins, losses = [], []  # at least as good as TPE-fifo; strictly worse than it
        for t in trajs:
            r = ref[t["seed"]]
            budget = min(t["trial_epochs"], r["trial_epochs"])
            mine, theirs = best_within(t, budget), best_within(r, budget)
            wins.append(mine is not None and (theirs is None or mine <= theirs))
            losses.append(theirs is not None and (mine is None or theirs < mine))
        finite = [x if np.isfinite(x) else 1e9 for x in ratios]
        med, lo, hi = _median_ci(finite, rng)
        best_med, best_lo, best_hi = _median_ci(
            [t["best"] if t["best"] is not None else 9.0 for t in trajs], rng)
        rows.append({"arm": name, "seeds": len(trajs), "target_score": target,
                     "median_ratio_to_reach_fifo_best": med, "ratio_ci95": [lo, hi],
                     "reached": int(sum(np.isfinite(ratios))), "win_rate_vs_tpe_fifo":
                     float(sum(wins) / len(wins)),
                     "tpe_fifo_better_rate": float(sum(losses) / len(losses)),
                     "median_final_best": best_med,
                     "final_best_ci95": [best_lo, best_hi],
                     "median_trial_epochs": statistics.median(t["trial_epochs"] for t in trajs),
                     "median_table_seconds": statistics.median(t["table_seconds"]
                                                               for t in trajs)})
    return rows


def replay_markdown(rows: list[dict]) -> str:
    def fmt(x: float) -> str:
        return "never" if x >= 1e8 else f"{x:.2f}"

    def ratio(r: dict) -> str:
        return (f"{fmt(r['median_ratio_to_reach_fifo_best'])} [{fmt(r['ratio_ci95'][0])}, "
                f"{fmt(r['ratio_ci95'][1])}]")

    lines = ["| arm | seeds | trial-epochs to reach TPE-fifo's median best, ratio [95 % CI] "
             "| reached | at least as good at equal trial-epochs | TPE-fifo better "
             "| final best [95 % CI] | trial-epochs |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['arm']} | {r['seeds']} | {ratio(r)} | {r['reached']}/{r['seeds']} | "
              f"{100 * r['win_rate_vs_tpe_fifo']:.0f} % | "
              f"{100 * r['tpe_fifo_better_rate']:.0f} % | "
              f"{r['median_final_best']:.4f} "
              f"[{r['final_best_ci95'][0]:.4f}, {r['final_best_ci95'][1]:.4f}] | "
              f"{r['median_trial_epochs']:.0f} |" for r in rows]
    return "\n".join(lines)


def plot_replay(results: dict[str, list[dict]], path: Path) -> None:
    """Best final score against trial-epochs: median and interquartile band per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    top = max(t["trial_epochs"] for trajs in results.values() for t in trajs)
    grid = np.linspace(0, top, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, trajs in results.items():
        curves = np.array([[best_within(t, g) if best_within(t, g) is not None else np.nan
                            for g in grid] for t in trajs], dtype=float)
        med = np.nanmedian(curves, axis=0)
        ax.plot(grid, med, label=name)
        ax.fill_between(grid, np.nanquantile(curves, 0.25, axis=0),
                        np.nanquantile(curves, 0.75, axis=0), alpha=0.2)
    ax.set_xlabel("trial-epochs")
    ax.set_ylabel("best final score so far (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_arm(text: str) -> Arm:
    """searcher:scheduler[:metric[:grace[:eta]]][+key=value...], e.g. tpe:asha:f1:3:3 or
    tpe:fifo+search.tpe.multivariate=true."""
    spec, *extra = text.split("+")
    kinds = [str, str, str, int, float]
    fields = [kind(v) for kind, v in zip(kinds, spec.split(":"), strict=False)]
    return Arm(*fields, extra=tuple(extra))


# ---------------------------------------------------------------------------------- the CLI


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train a grid, or read a study, into a table")
    b.add_argument("--config", default="curves", help="the grid (default configs/curves.yaml)")
    b.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE")
    b.add_argument("--seeds", type=int, default=1,
                   help="seeds every candidate is trained with (training noise)")
    b.add_argument("--second-seed", type=int, default=32,
                   help="candidates (spread over the grid) trained once more with the next "
                   "seed (a cheaper measure of training noise)")
    b.add_argument("--study", help="build from this study instead of training a grid")
    b.add_argument("--storage", help="the study's database URL (default $LITESEARCH_STORAGE)")
    b.add_argument("--out", type=Path, default=DEFAULT_TABLE, help="the table (JSON lines)")
    rp = sub.add_parser("replay", help="search strategies replayed over many seeds")
    rp.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    rp.add_argument("--config", default="curves", help="base config (the table's space and "
                    "budget replace its own)")
    rp.add_argument("--arms", nargs="+", help="searcher:scheduler[:rung metric[:grace[:eta]]]"
                    "[+key=value...] (default: TPE with the demo preset's scheduler); TPE "
                    "without early stopping (tpe:fifo) always runs as the reference")
    rp.add_argument("--seeds", type=int, default=30)
    rp.add_argument("--num-samples", type=int, default=40)
    rp.add_argument("--concurrency", type=int, default=2, help="trials at once")
    rp.add_argument("--workers", type=int, default=3, help="replays at once (processes)")
    rp.add_argument("--quick", action="store_true", help="8 seeds")
    rp.add_argument("--trainings", choices=TRAININGS, default="drawn",
                    help="of a candidate trained with several seeds, the training a replayed "
                    "trial reports: one drawn per replay seed (default), or the first seed's "
                    "(a noise-free table, as the replays published before 2026-12-03 ran)")
    rp.add_argument("--reuse", type=Path, help="an earlier replay JSON: its arms on the same "
                    "seeds are not replayed again")
    rp.add_argument("--json", type=Path)
    rp.add_argument("--plot", type=Path)
    pr = sub.add_parser("pairs", help="two arms of a replay's JSON, seed by seed")
    pr.add_argument("replay", type=Path, help="a replay's JSON (--json of `replay`)")
    pr.add_argument("--pairs", nargs="+", required=True, metavar="ARM=OTHER",
                    help="arm names as in the replay's table, e.g. 'gp + fifo=tpe + fifo'")
    pr.add_argument("--json", type=Path)
    r = sub.add_parser("rungs", help="how well each rung metric predicts the end")
    r.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    r.add_argument("--rungs", type=int, nargs="+", default=[1, 3, 9])
    r.add_argument("--only", action="append", default=[], metavar="NAME=VALUE",
                   help="only the candidates that drew VALUE for NAME, e.g. "
                   "train/schedule=cosine (repeatable)")
    r.add_argument("--json", type=Path)
    return p


def run_replay(args: argparse.Namespace) -> dict:
    meta, rows = read_table(args.table)
    seeds = list(range(8 if args.quick else args.seeds))
    chosen = [parse_arm(a) for a in args.arms] if args.arms else [default_arm()]
    arms = [REFERENCE] + [a for a in chosen if a != REFERENCE]
    results: dict[str, list[dict]] = {}
    if args.reuse and args.reuse.is_file():
        earlier = json.loads(args.reuse.read_text())
        if (earlier.get("seeds") == seeds and earlier.get("num_samples") == args.num_samples
                and earlier.get("trainings", "first") == args.trainings):
            results = earlier["trajectories"]
    for arm in arms:
        if arm.name not in results:
            print(f"replaying {arm.name} over {len(seeds)} seeds", file=sys.stderr)
            results[arm.name] = replay_parallel(arm, meta, rows, seeds, args)
    summary = summarize_arms(results)
    if args.plot:
        plot_replay(results, args.plot)
    return emit("curves_replay", replay_markdown(summary), summary, args.json,
                table=str(args.table), seeds=seeds, num_samples=args.num_samples,
                concurrency=args.concurrency, trainings=args.trainings,
                max_epochs=meta["max_epochs"],
                trajectories=results)


def main(args: argparse.Namespace) -> int:
    if args.command == "replay":
        run_replay(args)
        return 0
    if args.command == "pairs":
        results = json.loads(args.replay.read_text())["trajectories"]
        rows = [paired_finals(results, *pair.split("=", 1)) for pair in args.pairs]
        emit("curves_pairs", pairs_markdown(rows), rows, args.json, replay=str(args.replay))
        return 0
    if args.command == "rungs":
        meta, rows = read_table(args.table)
        rows = only_drawn(rows, args.only)
        corr = rung_correlations(rows, meta["max_epochs"], args.rungs)
        noise = seed_noise(rows, meta["max_epochs"])
        emit("curves_rungs", rungs_markdown(corr, noise), corr, args.json,
             table=str(args.table), only=args.only, noise=noise)
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
    build_grid(cfg, args.out, args.second_seed, args, args.seeds)
    _, rows = read_table(args.out)
    print(f"{len(rows)} rows in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
