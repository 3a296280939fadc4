"""What a replayed search found, measured so that no metric can be degenerate (#22 item 4):
every number is about the candidate the search would hand back (its incumbent: the finished
trial with the best score it saw), valued at its *quality*, the mean final score of that
candidate over all of its trainings in the table, not the one noisy training it was shown.

Per arm, against the reference arm (TPE without early stopping) on the same replay seeds:
- (a) trial-epochs until the incumbent is one of the table's top 2.5 % of candidates by
  quality. A seed that never gets there within the reference's budget (its median total
  trial-epochs) counts as that budget: the restricted mean over seeds, as survival analysis
  reads a censored time, stays defined where a median would be "never" (the reference
  itself reaches the top 2.5 % in about half of its seeds). Reported as the ratio of the
  arm's restricted mean to the reference's, with a paired bootstrap 95 % interval;
- (b) at equal trial-epochs (the smaller of the two runs' totals): strictly better, tied,
  strictly worse, and the share strictly better with its exact binomial 95 % interval;
- (c) the incumbent's quality at the full trial budget, and the mean paired difference from
  the reference with a bootstrap 95 % interval.
Lower scores are better throughout. A trajectory point is `[trial-epochs, table seconds,
best score seen, incumbent's cell key]`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tune_jobs.trial.report import COLUMN

SCORE = COLUMN["score"]  # a curve point's score
TOP_SHARE = 0.025  # the fixed quality to reach: the table's best 2.5 % of candidates
RESAMPLES = 4000


@dataclass(frozen=True)
class Ended:
    """One trial of a replayed search as its trajectory counts it."""

    epochs: int  # the trial-epochs it cost (a reused copy of another trial's result: 0)
    seconds: float  # what those epochs took when the table was built
    key: str  # its candidate's cell
    score: float | None  # its objective when it finished its budget (COMPLETE), else None
    level: int  # the epochs its result is at (under PASHA, budgets differ)
    trained: bool = True  # False: a reused copy


def trajectory(ended: Iterable[Ended]) -> dict:
    """Trials in the order they ended, folded into the points `[trial-epochs, table seconds,
    the incumbent's score, the incumbent's cell key]`: the incumbent is the finished trial
    trained the most epochs, the best score among those (as `tune_jobs.study.ranking`
    ranks), so an arm is read at what it would hand back."""
    cost, seconds, best, incumbent, points = 0, 0.0, None, None, []
    trials = complete = duplicates = 0
    for t in ended:
        cost, seconds = cost + t.epochs, seconds + t.seconds
        if t.score is not None and (best is None or (-t.level, t.score) < best):
            best, incumbent = (-t.level, t.score), t.key
        points.append([cost, seconds, None if best is None else best[1], incumbent])
        trials, duplicates = trials + t.trained, duplicates + (not t.trained)
        complete += t.trained and t.score is not None
    return {"points": points, "trial_epochs": cost, "table_seconds": seconds,
            "best": None if best is None else best[1], "complete": complete, "trials": trials,
            "duplicates": duplicates}


def cell_quality(rows: list[dict], max_epochs: int) -> dict[str, float]:
    """Each candidate's quality: its final (epoch `max_epochs`) score averaged over every
    training of it in the table that reached the full budget."""
    finals: dict[str, list[float]] = {}
    for r in rows:
        if r.get("outcome", "trained") == "trained" and len(r["curve"]) >= max_epochs:
            finals.setdefault(r["key"], []).append(r["curve"][max_epochs - 1][SCORE])
    return {key: statistics.mean(v) for key, v in finals.items()}


def top_threshold(quality: dict[str, float], share: float = TOP_SHARE) -> float:
    """The quality of the worst candidate in the best `share` of them."""
    ranked = sorted(quality.values())
    return ranked[max(1, round(share * len(ranked))) - 1]


def incumbent_within(traj: dict, budget: float, quality: dict[str, float]) -> float | None:
    """The quality of the incumbent after the trials that ended within `budget` trial-epochs
    (None: no trial had finished)."""
    found = None
    for cost, _, _, key in traj["points"]:
        if cost > budget:
            break
        found = key
    return None if found is None else quality[found]


def epochs_to_quality(traj: dict, quality: dict[str, float], threshold: float) -> float:
    """Trial-epochs until the incumbent's quality is `threshold` or better (inf: never)."""
    return next((cost for cost, _, _, key in traj["points"]
                 if key is not None and quality[key] <= threshold), math.inf)


def bootstrap_ci(stat, *columns: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """A paired bootstrap 95 % interval of `stat(*columns)` over resampled seeds (rows);
    resamples where the statistic is undefined (nan) are left out."""
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    picks = rng.integers(0, n, size=(RESAMPLES, n))
    values = np.array([stat(*(c[p] for c in columns)) for p in picks], dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return math.nan, math.nan
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def _mean_ratio(arm: np.ndarray, ref: np.ndarray) -> float:
    return float(arm.mean() / ref.mean())


def binomial_ci(successes: int, trials: int) -> tuple[float, float]:
    """Clopper-Pearson (exact) 95 % interval of a proportion."""
    from scipy.stats import binomtest

    if trials == 0:
        return math.nan, math.nan
    ci = binomtest(successes, trials).proportion_ci(0.95)
    return float(ci.low), float(ci.high)


def strict_sign(mine: float | None, theirs: float | None) -> int:
    """+1: mine strictly better (lower), -1: strictly worse, 0: tied (or neither found)."""
    if mine is None or theirs is None:
        return 0 if mine is theirs else (1 if theirs is None else -1)
    return 0 if abs(mine - theirs) <= 1e-12 else (1 if mine < theirs else -1)


def summarize_arms(results: dict[str, list[dict]], quality: dict[str, float],
                   reference: str) -> list[dict]:
    """Per arm, (a)-(c) of the module's docstring against `reference` on the same seeds."""
    threshold = top_threshold(quality)
    ref = {t["seed"]: t for t in results[reference]}
    cap = statistics.median(t["trial_epochs"] for t in ref.values())  # never = this budget
    rows = []
    for name, trajs in results.items():
        trajs = [t for t in trajs if t["seed"] in ref]
        theirs = [ref[t["seed"]] for t in trajs]
        need = np.array([epochs_to_quality(t, quality, threshold) for t in trajs])
        capped = np.minimum(need, cap)
        ref_capped = np.minimum([epochs_to_quality(t, quality, threshold) for t in theirs], cap)
        signs = [strict_sign(incumbent_within(t, b, quality), incumbent_within(r, b, quality))
                 for t, r in zip(trajs, theirs, strict=True)
                 for b in [min(t["trial_epochs"], r["trial_epochs"])]]
        better = signs.count(1)
        worst = max(quality.values())  # a run that finished nothing counts as the worst
        final = np.array([incumbent_within(t, math.inf, quality) or worst for t in trajs])
        ref_final = np.array([incumbent_within(r, math.inf, quality) or worst for r in theirs])
        diff = final - ref_final
        rows.append({
            "arm": name, "seeds": len(trajs), "top_share": TOP_SHARE, "top_quality": threshold,
            "reached": int((need <= cap).sum()), "budget": cap,
            "epochs_to_top_restricted_mean": float(capped.mean()),
            "epochs_to_top_ratio": _mean_ratio(capped, ref_capped),
            "epochs_to_top_ratio_ci95": list(bootstrap_ci(_mean_ratio, capped, ref_capped)),
            "equal_epochs": {"better": better, "tied": signs.count(0), "worse": signs.count(-1)},
            "better_share": better / len(signs) if signs else math.nan,
            "better_share_ci95": list(binomial_ci(better, len(signs))),
            "final_quality_median": float(np.median(final)),
            "final_quality_ci95": list(bootstrap_ci(np.median, final)),
            "final_difference_mean": float(diff.mean()),
            "final_difference_ci95": list(bootstrap_ci(np.mean, diff)),
            "median_trial_epochs": statistics.median(t["trial_epochs"] for t in trajs),
            "median_table_seconds": statistics.median(t["table_seconds"] for t in trajs)})
    return rows


def replay_markdown(rows: list[dict], reference: str) -> str:
    def num(x: float, fmt: str = ".2f") -> str:
        return "never" if math.isinf(x) else ("-" if math.isnan(x) else format(x, fmt))

    def ci(pair: list[float], fmt: str = ".2f") -> str:
        return f"[{num(pair[0], fmt)}, {num(pair[1], fmt)}]"

    budget = f"{rows[0]['budget']:g}"
    lines = [f"Against {reference} on the same seeds; quality: a candidate's mean final score "
             f"over its trainings (lower is better); top {100 * TOP_SHARE:g} %: quality <= "
             f"{rows[0]['top_quality']:.4f}; trial-epochs to the top: restricted mean, a seed "
             f"that never gets there within {budget} counting as {budget}.", "",
             "| arm | seeds | trial-epochs to the top, ratio [95 % CI] | reached | equal "
             "trial-epochs: better / tied / worse | strictly better [95 % CI] | final quality "
             "[95 % CI] | final - reference [95 % CI] | trial-epochs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        e = r["equal_epochs"]
        lines.append(
            f"| {r['arm']} | {r['seeds']} | {num(r['epochs_to_top_ratio'])} "
            f"{ci(r['epochs_to_top_ratio_ci95'])} | {r['reached']}/{r['seeds']} | "
            f"{e['better']} / {e['tied']} / {e['worse']} | {100 * r['better_share']:.0f} % "
            f"{ci([100 * x for x in r['better_share_ci95']], '.0f')} | "
            f"{r['final_quality_median']:.4f} {ci(r['final_quality_ci95'], '.4f')} | "
            f"{r['final_difference_mean']:+.4f} {ci(r['final_difference_ci95'], '+.4f')} | "
            f"{r['median_trial_epochs']:.0f} |")
    return "\n".join(lines)


def plot_replay(results: dict[str, list[dict]], quality: dict[str, float], path: Path) -> None:
    """The incumbent's quality against trial-epochs: median and interquartile band per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max(t["trial_epochs"] for trajs in results.values() for t in trajs)
    grid = np.linspace(0, top, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, trajs in results.items():
        curves = np.array([[q if (q := incumbent_within(t, g, quality)) is not None else np.nan
                            for g in grid] for t in trajs], dtype=float)
        ax.plot(grid, np.nanmedian(curves, axis=0), label=name)
        ax.fill_between(grid, np.nanquantile(curves, 0.25, axis=0),
                        np.nanquantile(curves, 0.75, axis=0), alpha=0.2)
    ax.axhline(top_threshold(quality), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("trial-epochs")
    ax.set_ylabel("incumbent's quality: mean final score (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def paired_finals(results: dict[str, list[dict]], arm: str, other: str) -> dict:
    """`arm` against `other` seed by seed on the final best score seen (lower is better): how
    many seeds each is strictly better in and how many tie (a noise-free table ties often),
    and the mean paired difference (arm - other) with a bootstrap 95 % interval. Reads any
    replay JSON, those written before trajectories kept the incumbent too."""
    mine = {t["seed"]: t["best"] for t in results[arm]}
    theirs = {t["seed"]: t["best"] for t in results[other]}
    seeds = sorted(s for s in set(mine) & set(theirs)
                   if mine[s] is not None and theirs[s] is not None)
    diffs = np.array([mine[s] - theirs[s] for s in seeds])
    low, high = bootstrap_ci(np.mean, diffs)
    return {"arm": arm, "against": other, "seeds": len(seeds),
            "better": int((diffs < -1e-12).sum()), "worse": int((diffs > 1e-12).sum()),
            "tied": int((abs(diffs) <= 1e-12).sum()), "mean_difference": float(diffs.mean()),
            "difference_ci95": [low, high]}


def pairs_markdown(rows: list[dict]) -> str:
    lines = ["| arm | against | strictly better | tied | strictly worse | mean difference of "
             "final bests [95 % CI] |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['arm']} | {r['against']} | {r['better']} | {r['tied']} | {r['worse']} | "
              f"{r['mean_difference']:+.3f} [{r['difference_ci95'][0]:+.3f}, "
              f"{r['difference_ci95'][1]:+.3f}] |" for r in rows]
    return "\n".join(lines)
