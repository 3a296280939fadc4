"""What a search leaves behind, read from the study (the one truth): the best COMPLETE
trial's spec, a table of all trials, and a console summary with the Pareto front."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from models.spec import ModelSpec
from tune_jobs.study.ranking import NoCompleteTrial, Ranking, best_complete, pareto_front
from tune_jobs.study.trials import REPORTED, Attr, StudyAttr, StudyTrial, study_trials

# trials.csv: the trial's number and state, these attributes the mirror writes (`params` is
# the parameter count), then one column per drawn value
TABLE_ATTRS = (Attr.OUTCOME, "score", "f1", "latency_ratio", "params", "macs", Attr.EPOCHS_DONE,
               "image_size", "node", "wall_seconds", Attr.REASON, Attr.DUPLICATE_OF)
if unknown := set(TABLE_ATTRS) - set(REPORTED) - set(Attr):
    raise ImportError(f"trials.csv names attributes the mirror does not write: {unknown}")
COLUMNS = ["number", "state", *TABLE_ATTRS]


def _row(t: StudyTrial) -> dict:
    row = {"number": t.number, "state": t.state.name}
    row |= {str(k): t.attrs.get(k) for k in TABLE_ATTRS}
    return row | {f"param/{k}": v for k, v in t.params.items()}


def write_outputs(study: optuna.Study, output: Path) -> dict:
    trials = study_trials(study)
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
    if best.spec is None:
        summary["best"] = None
        summary["error"] = (f"the best COMPLETE trial #{best.number} has no spec: "
                            f"{best.attrs.get(Attr.SPEC_ERROR, 'none recorded')}")
        return summary
    spec = ModelSpec.from_yaml(best.spec)
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
    trials = study_trials(study)
    trainings = [t for t in trials if t.trained]
    config = study.user_attrs.get(StudyAttr.CONFIG) or {}
    budget = config.get("scheduler", {}).get("max_epochs")
    spent = sum(t.epochs_done for t in trainings)
    full = budget * len(trainings) if budget else None
    return {"trial_epochs": spent, "full_budget_epochs": full,
            "share_of_full": spent / full if full else None,
            "duplicates": len(trials) - len(trainings),
            "trial_seconds": sum(t.wall_seconds for t in trials)}


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
    trials = study_trials(study)
    lines = [f"study {study.study_name!r}: {summary['trials']} trials, "
             + ", ".join(f"{n} {s}" for s, n in sorted(summary["states"].items())),
             ledger_line(compute_ledger(study))]
    cols = ["number", "state", "score", "f1", "latency_ratio", "params", "epochs_done",
            "outcome"]
    ranking = Ranking.of(study)
    ranked = sorted((t for t in trials if ranking.key(t) is not None
                     and t.state != TrialState.FAIL and t.trained),
                    key=lambda t: (t.state != TrialState.COMPLETE, -t.level, ranking.key(t))
                    )[:top]
    lines.append(f"top {len(ranked)} (COMPLETE first, the most epochs first, by {ranking}; "
                 f"{ranking.order} is better):")
    lines.append("  " + " | ".join(cols))
    lines += ["  " + " | ".join(_fmt(_row(t).get(c)) for c in cols) for t in ranked]
    front = pareto_front(trials)
    lines.append("Pareto front, F1 vs latency ratio (COMPLETE trials):")
    lines += [f"  #{t.number}: f1 {t.f1:.4f} at latency ratio {t.latency_ratio:.3f}"
              for t in front] or ["  (none)"]
    if summary.get("best"):
        best = summary["best"]
        lines.append(f"best COMPLETE trial: #{best['number']} (score {_fmt(best['score'])}, "
                     f"F1 {_fmt(best['f1'])})")
    else:
        lines.append(summary.get("error", "no best trial"))
    return "\n".join(lines)


__all__ = ["COLUMNS", "compute_ledger", "console_summary", "ledger_line", "write_outputs"]
