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
    python benchmarks/curves.py pairs REPLAY.json --pairs "gp + fifo=tpe + fifo" ... [--quality]
    python benchmarks/curves.py splice --table T --with T2 --replace NAME=VALUE --out T3
    python benchmarks/curves.py finals --table T2 --against T --name NAME [--only NAME=VALUE]
        [--against-only NAME=VALUE] [--json FILE]

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
from functools import reduce
from pathlib import Path

from common import REPO, emit
from replay_metrics import (
    cell_quality,
    paired_finals,
    pairs_markdown,
    plot_replay,
    replay_markdown,
    summarize_arms,
)
from tune_jobs.trial.replay import cell_key
from tune_jobs.trial.report import COLUMN, has_training_loss, next_tse_ema

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
    from tune_jobs.trial.report import CURVE_METRICS  # a row's curve: one list per epoch

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

# Candidate rung metrics, each "higher is better" from a training's curve up to the rung
# (points [epoch, f1, val_loss, accuracy, score, loss, lr]). Params, MACs and latency are
# known before training: budgets checked at epoch 0, not something a rung should re-rank.
RUNG_METRICS: dict[str, Callable[[list[list], int], float]] = {
    "score": lambda c, rung: -c[rung - 1][COLUMN["score"]],
    "f1": lambda c, rung: c[rung - 1][COLUMN["f1"]],
    "val_loss": lambda c, rung: -c[rung - 1][COLUMN["val_loss"]],
    "accuracy": lambda c, rung: c[rung - 1][COLUMN["accuracy"]],
    # training-speed estimation (Ru et al. 2021): the epochs' training losses summed (TSE),
    # or folded as a trial reports them, recent epochs weighted most (TSE-EMA)
    "tse": lambda c, rung: -sum(p[COLUMN["loss"]] for p in c[:rung]),
    "tse_ema": lambda c, rung: -reduce(next_tse_ema, (p[COLUMN["loss"]] for p in c[:rung]),
                                       0.0),
}
NEEDS_TRAINING_LOSS = ("tse", "tse_ema")  # not in a table built before 2026-12-03


def rung_metrics(rows: list[dict]) -> list[str]:
    """The rung metrics every row's curve can give."""
    has_loss = all(has_training_loss(r["curve"]) for r in rows)
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

    score, f1 = COLUMN["score"], COLUMN["f1"]
    if full and all(len(rs) >= 2 for rs in cells.values()):
        others = [[o for o in cells[r["key"]] if o is not r] for r in full]
        return (full, [-end(o, score) for o in others], [end(o, f1) for o in others],
                "held-out seed")
    first = [r for r in full if r["seed"] == min(x["seed"] for x in full)]
    return (first, [-end([r], score) for r in first], [end([r], f1) for r in first],
            "own final")


def _projection_features(curve: list[list], rung: int, with_loss: bool) -> list[float]:
    """What a learning-curve projection sees at a rung: the last epoch's F1, val loss,
    accuracy and score, how much the val loss fell over the last two epochs, and TSE-EMA
    (`with_loss`: the tables have the training loss); with a constant for the intercept."""
    point, before = curve[rung - 1], curve[max(0, rung - 3)]
    names = ("f1", "val_loss", "accuracy", "score")
    features = [1.0, *(point[COLUMN[n]] for n in names),
                before[COLUMN["val_loss"]] - point[COLUMN["val_loss"]]]
    return [*features, RUNG_METRICS["tse_ema"](curve, rung)] if with_loss else features


def fit_projection(rows: list[dict], max_epochs: int, rungs: list[int], with_loss: bool
                   ) -> Callable[[list[list], int], float]:
    """A rung metric fitted on one table (#22 item 3): per rung, least squares from
    `_projection_features` to the final score each training should predict (`_finals`),
    so the metric is the projected final score, higher is better. Fit it on one table and
    rank another with it: the projection is then tested out of sample."""
    import numpy as np

    full, final_score, _, _ = _finals(rows, max_epochs)
    coef = {rung: np.linalg.lstsq(np.array([_projection_features(r["curve"], rung, with_loss)
                                            for r in full]), np.array(final_score),
                                  rcond=None)[0] for rung in rungs}
    return lambda curve, rung: float(coef[rung] @ np.array(
        _projection_features(curve, rung, with_loss)))


def rung_correlations(rows: list[dict], max_epochs: int, rungs: list[int],
                      extra: dict[str, Callable[[list[list], int], float]] | None = None
                      ) -> list[dict]:
    """Per rung and candidate metric: Spearman's rank correlation, over the trainings that
    reached the full budget, between the metric at the rung and the final score (and final
    F1) the training should predict (`_finals`); and what a rung ranking by that metric
    keeps: of the best 2.5 % by that final score, how many are in the metric's top third at
    the rung (what ASHA with eta 3 lets go on). `extra`: more metrics by name (a fitted
    projection)."""
    from scipy.stats import spearmanr

    full, final_score, final_f1, target = _finals(rows, max_epochs)
    top_k, third = max(1, round(0.025 * len(full))), max(1, len(full) // 3)
    best = set(sorted(range(len(full)), key=lambda i: -final_score[i])[:top_k])
    out = []
    metrics = {name: RUNG_METRICS[name] for name in rung_metrics(full)} | (extra or {})
    for rung in rungs:
        for name, metric in metrics.items():
            at = [metric(r["curve"], rung) for r in full]
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
    F1, SCORE = COLUMN["f1"], COLUMN["score"]
    return {"pairs": len(pairs),
            "f1_mean_abs_diff": statistics.mean(abs(a[F1] - b[F1]) for a, b in pairs),
            "score_mean_abs_diff": statistics.mean(abs(a[SCORE] - b[SCORE]) for a, b in pairs),
            "spearman_final_score": float(spearmanr([a[SCORE] for a, _ in pairs],
                                                    [b[SCORE] for _, b in pairs]).statistic)}


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
    scheduler: str = "fifo"  # fifo (every trial to the full budget), asha or pasha
    metric: str = "score"  # what ASHA's rungs rank by
    grace: int = 1
    eta: float = 3
    extra: tuple[str, ...] = ()  # config overrides, e.g. search.tpe.multivariate=true

    @property
    def name(self) -> str:
        more = "".join(f" +{e}" for e in self.extra)
        if self.searcher == "optuna":  # plain Optuna (optuna_replay.py): scheduler = pruner
            from optuna_replay import RUNG_RULES

            rungs = (f", grace {self.grace}, eta {self.eta:g}"
                     if self.scheduler in RUNG_RULES else "")
            return f"plain optuna tpe + {self.scheduler} pruner ({self.metric}{rungs})"
        if self.scheduler == "fifo":
            return f"{self.searcher} + fifo{more}"
        return (f"{self.searcher} + {self.scheduler}({self.metric}, grace {self.grace}, eta "
                f"{self.eta:g}){more}")

    def overrides(self) -> list[str]:
        stops = self.scheduler != "fifo"
        return [*self.extra, f"search.algorithm={self.searcher}",
                f"scheduler.early_stopping={str(stops).lower()}",
                *([f"scheduler.algorithm={self.scheduler}"] if stops else []),
                f"scheduler.metric={self.metric}", f"scheduler.grace_period={self.grace}",
                f"scheduler.reduction_factor={self.eta}"]


REFERENCE = Arm()  # TPE without early stopping: what every arm is measured against


def default_arm() -> Arm:
    """TPE with the demo preset's scheduler settings: what a user gets out of the box."""
    from tune_jobs.config import load_config

    s = load_config("demo").scheduler
    return Arm("tpe", s.algorithm if s.early_stopping else "fifo", s.metric, s.grace_period,
               s.reduction_factor)


def replay_config(meta: dict, base: str, overrides: list[str]):
    """The base config with the table's space and budget (the grid the table covers)."""
    from tune_jobs.config import Config, load_config

    tree = load_config(base, overrides).model_dump(mode="json")
    tree["space"] = meta["space"]
    tree["scheduler"]["max_epochs"] = meta["max_epochs"]
    return Config.model_validate(tree)


def trajectory(study, key_of: Callable[[dict], str]) -> dict:
    """A replayed study's trajectory (`replay_metrics.trajectory`): its trials in the order
    they ended (`key_of`: a trial's drawn values -> its cell key). A reused duplicate costs
    nothing; its result counts at the epochs of the training it copies."""
    from optuna.trial import TrialState

    from replay_metrics import Ended
    from replay_metrics import trajectory as fold
    from tune_jobs.study.trials import study_trials

    ended = sorted((t for t in study_trials(study) if t.completed_at),
                   key=lambda t: (t.completed_at, t.number))
    def counted(t) -> Ended:
        score = t.score if t.state == TrialState.COMPLETE else None
        return Ended(t.epochs_done, t.wall_seconds, "" if score is None else key_of(t.params),
                     score, t.level, t.trained)

    return fold(map(counted, ended))


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
    from tune_jobs.trial.replay import CONFIG_KEY, TABLE_KEY, config_key, config_keys, replay_trial
    from tune_jobs.trial.space import candidate_from_config

    table = replayed_trainings(rows, trainings)
    classes = meta.get("classes") or [f"class{i}" for i in range(6)]
    space = SpaceConfig.model_validate(meta["space"])
    configs = config_keys(space, len(classes))

    def key_of(params: dict) -> str:  # hyperopt draws every name, used or not: rebuild
        return configs.get(config_key(params)) or cell_key(
            candidate_from_config(params, space, len(classes)).params)

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
            out.append({"seed": seed} | trajectory(study, key_of))
    return out


def replay_parallel(arm: Arm, meta: dict, rows: list[dict], seeds: list[int],
                    args: argparse.Namespace) -> list[dict]:
    """The seeds split over `args.workers` processes, each with its own local Ray: a replayed
    search is mostly Tune waiting (trial start, about 10 s of actor clean-up at its end), not
    computing, so several overlap well even on two cores."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if arm.searcher == "optuna":  # no Ray: a plain Optuna script replays in seconds
        from optuna_replay import replay_optuna

        return replay_optuna(arm.scheduler, arm.metric, meta,
                             replayed_trainings(rows, args.trainings), seeds, args.num_samples,
                             grace=arm.grace, eta=arm.eta)
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


def parse_arm(text: str) -> Arm:
    """searcher:scheduler[:metric[:grace[:eta]]][+key=value...], e.g. tpe:asha:f1:3:3 or
    tpe:fifo+search.tpe.multivariate=true; optuna:PRUNER[:score|val_loss[:grace[:eta]]] is
    plain Optuna with one of its pruners (none, median, sha, hyperband) or a rung rule of
    pasha.py (asha, pasha), optuna_replay.py."""
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
                    "[+key=value...] (default: TPE with the demo preset's scheduler); the "
                    "reference always runs too")
    rp.add_argument("--reference", default="tpe:fifo", help="the arm every other is read "
                    "against (default TPE without early stopping through Ray; optuna:none, "
                    "plain Optuna's TPE without pruning, replays in seconds)")
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
                    "table, seeds and trainings are not replayed again (without it, --json "
                    "itself: a killed replay continues)")
    rp.add_argument("--json", type=Path)
    rp.add_argument("--plot", type=Path)
    pr = sub.add_parser("pairs", help="two arms of a replay's JSON, seed by seed")
    pr.add_argument("replay", type=Path, help="a replay's JSON (--json of `replay`)")
    pr.add_argument("--pairs", nargs="+", required=True, metavar="ARM=OTHER",
                    help="arm names as in the replay's table, e.g. 'gp + fifo=tpe + fifo'")
    pr.add_argument("--quality", action="store_true",
                    help="read each pair at the incumbent's quality, as `replay` reads an arm "
                    "against TPE-fifo (replays that kept the incumbent), instead of the best "
                    "score seen")
    pr.add_argument("--json", type=Path)
    r = sub.add_parser("rungs", help="how well each rung metric predicts the end")
    r.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    r.add_argument("--rungs", type=int, nargs="+", default=[1, 3, 9])
    r.add_argument("--only", action="append", default=[], metavar="NAME=VALUE",
                   help="only the candidates that drew VALUE for NAME, e.g. "
                   "train/schedule=cosine (repeatable)")
    r.add_argument("--fit", type=Path, metavar="TABLE",
                   help="also rank by a learning-curve projection fitted on TABLE (another "
                   "table: tested out of sample; the same: in-sample)")
    r.add_argument("--json", type=Path)
    sp = sub.add_parser("splice", help="a table with one value's candidates taken from another "
                        "table of the same grid (table_ops.py)")
    sp.add_argument("--table", type=Path, required=True)
    sp.add_argument("--with", dest="other", type=Path, required=True,
                    help="the table whose rows replace them (built with another value there)")
    sp.add_argument("--replace", required=True, metavar="NAME=VALUE",
                    help="the drawn value whose candidates are replaced, e.g. "
                    "train/schedule=onecycle")
    sp.add_argument("--out", type=Path, required=True)
    fi = sub.add_parser("finals", help="each candidate against its twin in another table "
                        "(the same but one drawn value), on its final score and F1")
    fi.add_argument("--table", type=Path, required=True)
    fi.add_argument("--against", type=Path, required=True)
    fi.add_argument("--name", required=True, help="the drawn name the twins differ in")
    fi.add_argument("--only", action="append", default=[], metavar="NAME=VALUE",
                    help="only the table's candidates that drew VALUE for NAME")
    fi.add_argument("--against-only", action="append", default=[], metavar="NAME=VALUE",
                    help="the same for the other table (both may be one table: "
                    "--only train/schedule=cosine --against-only train/schedule=onecycle)")
    fi.add_argument("--json", type=Path)
    return p


def _earlier_trajectories(path: Path | None, same: dict) -> dict[str, list[dict]]:
    """The arms of an earlier replay's JSON made the same way (table, seeds, trainings)."""
    if not path or not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    keyed = all(len(p) == 4 for trajs in earlier["trajectories"].values()
                for t in trajs for p in t["points"])  # the incumbent kept per point
    if keyed and all(earlier.get(k) == v for k, v in same.items()):
        return earlier["trajectories"]
    print(f"{path}: another table, seeds, trainings or format; not reused", file=sys.stderr)
    return {}


def run_replay(args: argparse.Namespace) -> dict:
    """Every arm over the seeds, then the summary. Each arm's trajectories are written to
    `--json` as soon as it is done, so a killed replay run again with the same `--json`
    (or `--reuse`) replays only the arms it lacks."""
    meta, rows = read_table(args.table)
    seeds = list(range(8 if args.quick else args.seeds))
    chosen = [parse_arm(a) for a in args.arms] if args.arms else [default_arm()]
    reference = parse_arm(args.reference)
    arms = [reference] + [a for a in chosen if a != reference]
    same = {"table": str(args.table), "seeds": seeds, "num_samples": args.num_samples,
            "trainings": args.trainings}
    results = _earlier_trajectories(args.reuse, same) or _earlier_trajectories(args.json, same)
    for arm in arms:
        if arm.name in results:
            continue
        print(f"replaying {arm.name} over {len(seeds)} seeds", file=sys.stderr)
        results[arm.name] = replay_parallel(arm, meta, rows, seeds, args)
        if args.json:
            args.json.write_text(json.dumps({**same, "partial": True,
                                             "trajectories": results}))
    quality = cell_quality(rows, meta["max_epochs"])
    summary = summarize_arms(results, quality, reference.name)
    if args.plot:
        plot_replay(results, quality, args.plot)
    return emit("curves_replay", replay_markdown(summary, reference.name), summary, args.json,
                **same, concurrency=args.concurrency, max_epochs=meta["max_epochs"],
                reference=reference.name, trajectories=results)


def main(args: argparse.Namespace) -> int:
    if args.command == "replay":
        run_replay(args)
        return 0
    if args.command == "pairs":
        replay = json.loads(args.replay.read_text())
        results = replay["trajectories"]
        if args.quality:  # each arm against the other as the replay reads it against TPE-fifo
            meta, rows = read_table(Path(replay["table"]))
            quality = cell_quality(rows, meta["max_epochs"])
            out = []
            for arm, other in (pair.split("=", 1) for pair in args.pairs):
                both = {other: results[other], arm: results[arm]}
                out += [r | {"arm": f"{arm} vs {other}", "against": other}
                        for r in summarize_arms(both, quality, other) if r["arm"] == arm]
            emit("curves_pairs_quality", replay_markdown(out, "each pair's second arm"), out,
                 args.json, replay=str(args.replay))
            return 0
        rows = [paired_finals(results, *pair.split("=", 1)) for pair in args.pairs]
        emit("curves_pairs", pairs_markdown(rows), rows, args.json, replay=str(args.replay))
        return 0
    if args.command == "splice":
        from table_ops import splice

        name, value = args.replace.split("=", 1)
        meta, rows = splice(*read_table(args.table), *read_table(args.other), name, value)
        if args.out.exists():
            raise SystemExit(f"--out {args.out}: exists; a splice writes a new table")
        append_rows(args.out, [meta, *rows])
        print(f"{len(rows)} rows in {args.out}")
        return 0
    if args.command == "finals":
        from table_ops import compare_finals, finals_markdown

        meta, rows = read_table(args.table)
        other_meta, other = read_table(args.against)
        if meta["max_epochs"] != other_meta["max_epochs"]:
            raise SystemExit("finals: the tables train for different numbers of epochs")
        result = compare_finals(only_drawn(rows, args.only),
                                only_drawn(other, args.against_only), args.name,
                                meta["max_epochs"])
        emit("curves_finals", finals_markdown(result, str(args.table), str(args.against)),
             [result], args.json, table=str(args.table), against=str(args.against),
             only=args.only, against_only=args.against_only)
        return 0
    if args.command == "rungs":
        meta, rows = read_table(args.table)
        rows = only_drawn(rows, args.only)
        extra = {}
        if args.fit:
            fit_meta, fit_rows = read_table(args.fit)
            if fit_meta["max_epochs"] != meta["max_epochs"]:
                raise SystemExit(f"--fit {args.fit}: {fit_meta['max_epochs']} epochs, the "
                                 f"table {meta['max_epochs']}: a projection needs the same")
            # TSE-EMA among its inputs only where both tables have the training loss
            with_loss = all(has_training_loss(r["curve"]) for r in [*rows, *fit_rows])
            extra["projection"] = fit_projection(fit_rows, meta["max_epochs"], args.rungs,
                                                 with_loss)
        corr = rung_correlations(rows, meta["max_epochs"], args.rungs, extra)
        noise = seed_noise(rows, meta["max_epochs"])
        emit("curves_rungs", rungs_markdown(corr, noise), corr, args.json,
             table=str(args.table), only=args.only, noise=noise,
             fit=str(args.fit) if args.fit else None)
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
