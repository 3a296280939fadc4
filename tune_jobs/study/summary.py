"""What a search leaves behind, read from the study (the one truth): the best COMPLETE
trial's spec, a table of all trials, and a console summary with the Pareto front."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from models.spec import ModelSpec
from tune_jobs.outcome import DUPLICATE_ATTR, trained

COLUMNS = ["number", "state", "outcome", "score", "f1", "latency_ratio", "params", "macs",
           "epochs_done", "image_size", "node", "wall_seconds", "reason", DUPLICATE_ATTR]


class NoCompleteTrial(RuntimeError):
    pass


def trial_score(t: FrozenTrial) -> float | None:
    """The trial's score whatever the study's objective (NSGA-II studies store F1 and latency)."""
    if "score" in t.user_attrs and t.user_attrs["score"] is not None:
        return float(t.user_attrs["score"])
    return None


def objective_name(study: optuna.Study) -> str:
    """What "best" means in this study: "F1" for `objective.kind: f1`, else "score"."""
    return "F1" if study.user_attrs.get("objective") == ["f1"] else "score"


def rank_key(study: optuna.Study) -> Callable[[FrozenTrial], float | None]:
    """Lower is better: the score, or minus the validation F1 in an F1 study (NSGA-II
    studies are ranked by score; their front is the Pareto summary)."""
    if objective_name(study) == "F1":
        return lambda t: None if t.user_attrs.get("f1") is None else -float(t.user_attrs["f1"])
    return trial_score


def best_complete(study: optuna.Study) -> FrozenTrial:
    """The best COMPLETE trial by the study's objective: a PRUNED trial's short-budget value
    never wins."""
    key = rank_key(study)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if key(t) is not None and trained(t)]
    if not done:
        counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        raise NoCompleteTrial(f"study {study.study_name!r} has no COMPLETE trial "
                              f"({dict(counts) or 'no trials'}); run more samples or epochs")
    return min(done, key=key)


def pareto_front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials not beaten on both F1 (higher) and latency ratio (lower)."""
    points = [t for t in trials if t.state == TrialState.COMPLETE and trained(t)
              and t.user_attrs.get("f1") is not None
              and t.user_attrs.get("latency_ratio") is not None]

    def dominated(a: FrozenTrial) -> bool:
        fa, la = a.user_attrs["f1"], a.user_attrs["latency_ratio"]
        return any(b.user_attrs["f1"] >= fa and b.user_attrs["latency_ratio"] <= la
                   and (b.user_attrs["f1"] > fa or b.user_attrs["latency_ratio"] < la)
                   for b in points)

    return sorted((t for t in points if not dominated(t)),
                  key=lambda t: t.user_attrs["latency_ratio"])


def _row(t: FrozenTrial) -> dict:
    a = t.user_attrs
    row = {"number": t.number, "state": t.state.name, "score": trial_score(t)}
    row |= {k: a.get(k) for k in COLUMNS if k not in row}
    return row | {f"param/{k}": v for k, v in t.params.items()}


def write_outputs(study: optuna.Study, output: Path) -> dict:
    trials = study.get_trials(deepcopy=False)
    rows = [_row(t) for t in trials]
    header = COLUMNS + sorted({k for r in rows for k in r if k.startswith("param/")})
    output.mkdir(parents=True, exist_ok=True)
    with (output / "trials.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)
    summary = {"trials": len(trials), "states": dict(Counter(t.state.name for t in trials))}
    try:
        best = best_complete(study)
    except NoCompleteTrial as err:
        summary["best"] = None
        summary["error"] = str(err)
        return summary
    (output / "best").mkdir(exist_ok=True)
    spec = ModelSpec.from_yaml(best.user_attrs["spec"])
    spec.to_yaml(output / "best" / "spec.yaml")
    summary["best"] = _row(best)
    return summary


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int) and v > 9999:
        return f"{v:,}"
    return str(v)


def compute_ledger(study: optuna.Study) -> dict:
    """Trial-epochs the search trained against what training every trial to the full
    budget would have cost (early stopping's saving), and the trials' wall time."""
    trials = study.get_trials(deepcopy=False)
    trainings = [t for t in trials if trained(t)]
    budget = (study.user_attrs.get("config") or {}).get("scheduler", {}).get("max_epochs")
    spent = sum(int(t.user_attrs.get("epochs_done") or 0) for t in trainings)
    full = budget * len(trainings) if budget else None
    return {"trial_epochs": spent, "full_budget_epochs": full,
            "share_of_full": spent / full if full else None,
            "duplicates": len(trials) - len(trainings),
            "trial_seconds": sum(float(t.user_attrs.get("wall_seconds") or 0) for t in trials)}


def ledger_line(ledger: dict) -> str:
    dups = ledger.get("duplicates") or 0
    reused = f"; {dups} duplicate proposal(s) reused a finished trial's result" if dups else ""
    if not ledger["full_budget_epochs"]:
        return f"compute: {ledger['trial_epochs']} trial-epochs{reused}"
    return (f"compute: {ledger['trial_epochs']:,} trial-epochs of the "
            f"{ledger['full_budget_epochs']:,} that training every trial to the full budget "
            f"would cost ({100 * ledger['share_of_full']:.0f} %); "
            f"{ledger['trial_seconds'] / 60:.1f} trial-minutes{reused}")


def console_summary(study: optuna.Study, summary: dict, top: int = 5) -> str:
    trials = study.get_trials(deepcopy=False)
    lines = [f"study {study.study_name!r}: {summary['trials']} trials, "
             + ", ".join(f"{n} {s}" for s, n in sorted(summary["states"].items())),
             ledger_line(compute_ledger(study))]
    cols = ["number", "state", "score", "f1", "latency_ratio", "params", "epochs_done",
            "outcome"]
    key, name = rank_key(study), objective_name(study)
    ranked = sorted((t for t in trials if key(t) is not None and t.state != TrialState.FAIL
                     and trained(t)),
                    key=lambda t: (t.state != TrialState.COMPLETE, key(t)))[:top]
    order = "higher" if name == "F1" else "lower"
    lines.append(f"top {len(ranked)} (COMPLETE first, by {name}; {order} is better):")
    lines.append("  " + " | ".join(cols))
    lines += ["  " + " | ".join(_fmt(_row(t).get(c)) for c in cols) for t in ranked]
    front = pareto_front(trials)
    lines.append("Pareto front, F1 vs latency ratio (COMPLETE trials):")
    lines += [f"  #{t.number}: f1 {t.user_attrs['f1']:.4f} at latency ratio "
              f"{t.user_attrs['latency_ratio']:.3f}" for t in front] or ["  (none)"]
    if summary.get("best"):
        best = summary["best"]
        lines.append(f"best COMPLETE trial: #{best['number']} (score {_fmt(best['score'])}, "
                     f"F1 {_fmt(best['f1'])})")
    else:
        lines.append(summary.get("error", "no best trial"))
    return "\n".join(lines)


__all__ = ["NoCompleteTrial", "best_complete", "compute_ledger", "console_summary",
           "ledger_line", "objective_name", "pareto_front", "rank_key", "write_outputs"]
