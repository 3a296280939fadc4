"""How much training ASHA saves: the best score found as a function of cumulative trial-epochs,
for TPE and random search, each with ASHA early stopping and without, on the same data, space,
seeds and trial budget.

The unit is the trial-epoch (one epoch of one trial), not seconds, so the comparison holds on a
busy machine. A trial's score counts once it has trained to max_epochs (a score at an early rung
is not comparable with a finished one). The headline: the trial-epochs TPE + ASHA spends before it
finds a score at least as good as the best of TPE without early stopping, divided by the
trial-epochs TPE without early stopping spent to find that score (target: at most 0.25).

    python benchmarks/asha_efficiency.py [--quick] [--data DIR] [--seeds 0 1 2] [--json FILE]
        [--plot FILE] [--set scheduler.metric=val_loss ...]

Paired over seeds at equal trial-epochs (the budget TPE without early stopping spent): TPE +
ASHA's best within that budget against TPE without early stopping's best, strictly better /
tied / worse, and the mean difference with a bootstrap 95 % interval.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import REPO, emit
from replay_metrics import binomial_ci, bootstrap_ci, strict_sign
from tune_jobs.config import load_config
from tune_jobs.outcome import Outcome, epochs_done, outcome_of
from tune_jobs.searchjob import run_search

ARMS = (("tpe", True), ("tpe", False), ("random", True), ("random", False))


@dataclass(frozen=True)
class Budget:
    trials: int
    max_epochs: int
    grace_period: int  # ASHA's first rung; reduction factor 3
    image_size: int


QUICK = Budget(trials=8, max_epochs=5, grace_period=1, image_size=32)
FULL = Budget(trials=20, max_epochs=9, grace_period=3, image_size=32)


def arm_name(algorithm: str, early: bool) -> str:
    return f"{algorithm} + {'ASHA' if early else 'no early stopping'}"


def epoch_events(grid, max_epochs: int) -> list[tuple[float, float | None]]:
    """One event per trained epoch of any trial, in the order they were reported:
    (time, the score when that epoch finished a trial at max_epochs, else None)."""
    events = []
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None or frame.empty:
            continue
        for _, row in frame.iterrows():
            if outcome_of(row) != Outcome.TRAINED or epochs_done(row) < 1:
                continue  # a rejected or failed trial's report: no epoch trained
            done = row["epoch"] >= max_epochs
            events.append((float(row["reported_at"]), float(row["score"]) if done else None))
    return sorted(events, key=lambda e: e[0])


def best_curve(events: list[tuple[float, float | None]]) -> list[tuple[int, float]]:
    """(cumulative trial-epochs, best finished score so far) at each improvement."""
    curve, best = [], None
    for n, (_, score) in enumerate(events, start=1):
        if score is not None and (best is None or score < best):
            best = score
            curve.append((n, best))
    return curve


def epochs_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, best in curve if best <= target), None)


def best_within(curve: list[tuple[int, float]], trial_epochs: int) -> float | None:
    """The best finished score after at most `trial_epochs` trial-epochs (None: none yet)."""
    return next((best for n, best in reversed(curve) if n <= trial_epochs), None)


def run_arm(algorithm: str, early: bool, seed: int, budget: Budget, data: Path,
            root: Path, trials: int, overrides: list[str]) -> dict:
    study = f"asha-{algorithm}-{'asha' if early else 'fifo'}-{seed}-{time.time_ns()}"
    out = root / study
    cfg = load_config("demo.yaml", [
        f"data.path={data}", f"output={out}", f"search.study={study}",
        f"search.storage=sqlite:///{out / 'study.db'}", f"search.algorithm={algorithm}",
        f"search.seed={seed}", f"search.num_samples={trials}",
        f"scheduler.max_epochs={budget.max_epochs}",
        f"scheduler.grace_period={budget.grace_period}",
        "scheduler.reduction_factor=3", f"scheduler.early_stopping={str(early).lower()}",
        f"space.train.image_size=[{budget.image_size}]", *overrides])
    start = time.perf_counter()
    grid, _ = run_search(cfg)
    events = epoch_events(grid, budget.max_epochs)
    curve = best_curve(events)
    return {"arm": arm_name(algorithm, early), "algorithm": algorithm, "early_stopping": early,
            "seed": seed, "trials": trials, "trial_epochs": len(events),
            "rung_metric": cfg.scheduler.metric if early else None, "overrides": overrides,
            "wall_s": time.perf_counter() - start,
            "best": curve[-1][1] if curve else None, "curve": curve}


def summarize(runs: list[dict], seeds: list[int]) -> dict:
    """Per seed: the epochs each arm needs to reach TPE-without-early-stopping's best, as a
    ratio of what TPE without early stopping needed; then the spread over seeds."""
    per_seed = []
    for seed in seeds:
        arms = {r["arm"]: r for r in runs if r["seed"] == seed}
        reference = arms[arm_name("tpe", False)]
        target = reference["best"]
        ref_epochs = epochs_to_reach(reference["curve"], target)
        row = {"seed": seed, "target": target, "reference_epochs": ref_epochs}
        for name, r in arms.items():
            needed = epochs_to_reach(r["curve"], target)
            row[name] = {"epochs": needed, "ratio": needed / ref_epochs if needed else None,
                         "best": r["best"], "trial_epochs": r["trial_epochs"]}
        per_seed.append(row)
    headline = [s[arm_name("tpe", True)]["ratio"] for s in per_seed]
    reached = [x for x in headline if x is not None]
    return {"per_seed": per_seed, "tpe_asha_ratio": headline,
            "tpe_asha_ratio_median": statistics.median(reached) if reached else None,
            "reached_in": f"{len(reached)} of {len(headline)} seeds",
            "equal_epochs": equal_epochs(runs, seeds)}


def equal_epochs(runs: list[dict], seeds: list[int]) -> dict:
    """TPE + ASHA against TPE without early stopping, seed by seed, at the trial-epochs the
    latter spent: ASHA's best within them minus its best (lower is better; a seed where ASHA
    finished nothing within them counts as worse and is left out of the difference)."""
    diffs, signs = [], []
    for seed in seeds:
        arms = {r["arm"]: r for r in runs if r["seed"] == seed}
        fifo, asha = arms[arm_name("tpe", False)], arms.get(arm_name("tpe", True))
        if asha is None or fifo["best"] is None:
            continue
        mine = best_within(asha["curve"], fifo["trial_epochs"])
        signs.append(strict_sign(mine, fifo["best"]))  # nothing finished within it: worse
        if mine is not None:
            diffs.append(mine - fifo["best"])
    better, column = signs.count(1), np.array(diffs)
    return {"seeds": len(signs), "better": better, "tied": signs.count(0),
            "worse": signs.count(-1), "better_share_ci95": list(binomial_ci(better, len(signs))),
            "mean_difference": float(column.mean()) if diffs else None,
            "difference_ci95": list(bootstrap_ci(np.mean, column)) if len(diffs) > 1 else None}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip([arm_name(a, e) for a, e in ARMS], ["C0", "C1", "C2", "C3"], strict=True))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labelled = set()
    for r in runs:
        if not r["curve"]:
            continue
        xs, ys = zip(*r["curve"], strict=True)
        xs, ys = [*xs, r["trial_epochs"]], [*ys, ys[-1]]  # hold the best to the arm's end
        ax.step(xs, ys, where="post", color=colors[r["arm"]], alpha=0.8,
                label=None if r["arm"] in labelled else r["arm"])
        labelled.add(r["arm"])
    ax.set_xlabel("cumulative trial-epochs")
    ax.set_ylabel("best score of a finished trial (lower is better)")
    ax.set_title("ASHA efficiency, fmnist-taco6 (one line per seed)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def to_markdown(runs: list[dict], summary: dict, budget: Budget, asha_trials: int) -> str:
    lines = [f"Budget: {budget.trials} trials of up to {budget.max_epochs} epochs at "
             f"{budget.image_size} px per arm and seed ({asha_trials} for the ASHA arms); ASHA "
             f"grace period {budget.grace_period}, reduction factor 3.", "",
             "| seed | arm | trial-epochs | best score | epochs to reach TPE's best | ratio |",
             "|---:|---|---:|---:|---:|---:|"]
    for s in summary["per_seed"]:
        for arm in [arm_name(a, e) for a, e in ARMS if arm_name(a, e) in s]:
            a = s[arm]
            best = "-" if a["best"] is None else f"{a['best']:.4f}"
            needed = "not reached" if a["epochs"] is None else str(a["epochs"])
            ratio = "-" if a["ratio"] is None else f"{a['ratio']:.2f}"
            lines.append(f"| {s['seed']} | {arm} | {a['trial_epochs']} | {best} | {needed} "
                         f"| {ratio} |")
    med = summary["tpe_asha_ratio_median"]
    ratios = ", ".join("not reached" if x is None else f"{x:.2f}"
                       for x in summary["tpe_asha_ratio"])
    lines += ["", f"TPE + ASHA / TPE without early stopping, trial-epochs to the latter's best: "
              f"{ratios} (median {'-' if med is None else f'{med:.2f}'}; reached in "
              f"{summary['reached_in']}; target <= 0.25)."]
    eq = summary["equal_epochs"]
    if eq["seeds"]:
        ci = eq["difference_ci95"]
        interval = "" if ci is None else f" [{ci[0]:+.4f}, {ci[1]:+.4f}]"
        mean = "-" if eq["mean_difference"] is None else f"{eq['mean_difference']:+.4f}"
        lines += ["", f"At TPE without early stopping's trial-epochs, TPE + ASHA is strictly "
                  f"better / tied / worse in {eq['better']} / {eq['tied']} / {eq['worse']} of "
                  f"{eq['seeds']} seeds; best score difference (ASHA - none) {mean}{interval}."]
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"one seed, {QUICK.trials} trials of {QUICK.max_epochs} epochs")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fmnist-taco6")
    p.add_argument("--seeds", type=int, nargs="+", help="default: 0 (quick) or 0 1 2")
    p.add_argument("--asha-trials", type=int, help="trials of the ASHA arms (default: the same "
                   "trial budget as the others; more gives them the epochs they saved)")
    p.add_argument("--reuse", type=Path, help="an earlier --json of the same budget and seeds: "
                   "its runs of the arms without early stopping are taken, not run again")
    p.add_argument("--merge", type=Path, nargs="+", help="earlier --json files of the same "
                   "budget (e.g. one per seed, run one after another): summarized together, "
                   "nothing is run")
    p.add_argument("--algorithms", nargs="+", default=["tpe", "random"],
                   choices=["tpe", "random"], help="searchers to run (tpe is the reference)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every arm (e.g. scheduler.metric=val_loss)")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path, help="PNG of best score vs trial-epochs")
    return p


def main(args: argparse.Namespace) -> dict:
    os.environ.setdefault("LITESEARCH_CACHE", str(Path.home() / ".cache" / "litesearch"))
    budget = QUICK if args.quick else FULL
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    asha_trials = args.asha_trials or budget.trials
    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        if any(part["budget"] != budget.__dict__ for part in parts):
            raise SystemExit(f"--merge: every file must have the budget {budget.__dict__}")
        runs = [r for part in parts for r in part["rows"]]
        metrics = {r.get("rung_metric") for r in runs if r["early_stopping"]}
        if len(metrics) > 1:  # (files written before rows recorded it have None)
            raise SystemExit(f"--merge: the ASHA arms ranked by different metrics {metrics}")
        seeds = sorted({r["seed"] for r in runs})
        asha_trials = max(r["trials"] for r in runs if r["early_stopping"])
        return _report(runs, seeds, budget, asha_trials, args, merged=[str(f) for f in args.merge])
    reused = []
    if args.reuse:  # the expensive arms (every trial to max_epochs) from an earlier run
        earlier = json.loads(args.reuse.read_text())
        if earlier["budget"] != budget.__dict__:
            raise SystemExit(f"{args.reuse}: budget {earlier['budget']} is not {budget.__dict__}")
        reused = [r for r in earlier["rows"] if not r["early_stopping"] and r["seed"] in seeds]
    have = {(r["algorithm"], r["seed"]) for r in reused}
    with tempfile.TemporaryDirectory() as tmp:
        runs = reused + [
            run_arm(a, e, seed, budget, args.data.resolve(), Path(tmp),
                    asha_trials if e else budget.trials, args.overrides)
            for seed in seeds for a, e in ARMS
            if a in args.algorithms and (e or (a, seed) not in have)]
    return _report(runs, seeds, budget, asha_trials, args,
                   reused=str(args.reuse) if args.reuse else None)


def _report(runs: list[dict], seeds: list[int], budget: Budget, asha_trials: int,
            args: argparse.Namespace, **fields: object) -> dict:
    summary = summarize(runs, seeds)
    if args.plot:
        plot(runs, args.plot)
    return emit("asha_efficiency", to_markdown(runs, summary, budget, asha_trials), runs,
                args.json, data=str(args.data), budget=budget.__dict__, seeds=seeds,
                asha_trials=asha_trials, summary=summary, **fields)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
