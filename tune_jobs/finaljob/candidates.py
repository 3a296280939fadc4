"""Which trials the final job re-evaluates before it retrains one: the K best COMPLETE trials
with distinct architectures. The best validation number among many noisy trials overstates
its trial (the winner's curse), so the runner-ups get fresh seeds too and the mean decides.
"""

from __future__ import annotations

import dataclasses

import optuna
from optuna.trial import FrozenTrial, TrialState

from models.spec import ModelSpec
from tune_jobs.config import ObjectiveConfig
from tune_jobs.outcome import trained
from tune_jobs.study.summary import NoCompleteTrial, objective_name, rank_key
from tune_jobs.trial.score import score


def architecture(t: FrozenTrial) -> dict:
    """The trial's network without what only names or feeds it (name, input size): two
    trials differing only in image size or recipe are one architecture."""
    tree = dataclasses.asdict(ModelSpec.from_yaml(t.user_attrs["spec"]))
    return {k: v for k, v in tree.items() if k not in ("name", "input_size")}


def top_k(study: optuna.Study, k: int,
          budget: ObjectiveConfig) -> list[tuple[FrozenTrial, str]]:
    """Up to `k` (trial, why) pairs: the best by the study's objective, the most accurate
    within the latency budget (when one is set), then the next best by the objective,
    skipping any architecture already taken."""
    key = rank_key(study)
    done = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if trained(t) and key(t) is not None and "spec" in t.user_attrs),
                  key=key)
    if not done:
        raise NoCompleteTrial(f"study {study.study_name!r} has no COMPLETE trial to choose from")
    order = [(done[0], f"the best {objective_name(study)}")]
    limit = budget.max_latency_ratio
    fits = [t for t in done if t.user_attrs.get("f1") is not None
            and (limit is None or (t.user_attrs.get("latency_ratio") or 0) <= limit)]
    if fits:
        within = f" with latency ratio <= {limit:g}" if limit is not None else ""
        order.append((max(fits, key=lambda t: t.user_attrs["f1"]),
                      f"the highest validation macro-F1{within}"))
    order += [(t, f"rank {i + 1} by {objective_name(study)}") for i, t in enumerate(done)
              if i > 0]
    picked: list[tuple[FrozenTrial, str]] = []
    seen: list[dict] = []
    for t, why in order:
        arch = architecture(t)
        if arch not in seen and len(picked) < k:
            picked.append((t, why))
            seen.append(arch)
    return picked


def rank_value(study: optuna.Study, f1: float, latency_ratio: float,
               budget: ObjectiveConfig) -> float:
    """What the study's objective makes of a validation F1 (lower is better): minus the F1
    in an F1 study, else the score with the trial's latency ratio."""
    if objective_name(study) == "F1":
        return -f1
    return score(f1, latency_ratio, budget.f1_ref)


__all__ = ["architecture", "rank_value", "top_k"]
