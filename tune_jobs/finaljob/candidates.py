"""Which trials the final job retrains: one chosen by the user (`--trial`, `--pareto`), or the
K best COMPLETE trials with distinct architectures, re-evaluated first. The best validation
number among many noisy trials overstates its trial (the winner's curse), so the runner-ups
get fresh seeds too and the mean decides. What ranks first comes from `study/ranking.py`.
"""

from __future__ import annotations

import dataclasses

import optuna

from models.spec import ModelSpec
from tune_jobs.config import ConfigError, ObjectiveConfig
from tune_jobs.finaljob.options import FinalOptions
from tune_jobs.study.ranking import (
    NoCompleteTrial,
    Ranking,
    best_complete,
    most_accurate,
    ranked,
)
from tune_jobs.study.trials import StudyTrial, study_trials

Pick = tuple[StudyTrial, str]  # a trial and why it was picked


def architecture(t: StudyTrial) -> dict:
    """The trial's network without what only names or feeds it (name, input size): two
    trials differing only in image size or recipe are one architecture."""
    tree = dataclasses.asdict(ModelSpec.from_yaml(t.spec or ""))
    return {k: v for k, v in tree.items() if k not in ("name", "input_size")}


def top_k(study: optuna.Study, k: int, budget: ObjectiveConfig) -> list[Pick]:
    """Up to `k` picks: the best by the study's objective, the most accurate within the
    latency budget (when one is set), then the next best by the objective, skipping any
    architecture already taken."""
    ranking = Ranking.of(study)
    trials = [t for t in study_trials(study) if t.spec is not None]
    done = ranked(trials, ranking)
    if not done:
        raise NoCompleteTrial(f"study {study.study_name!r} has no COMPLETE trial to choose from")
    order = [(done[0], f"the best {ranking}")]
    limit = budget.max_latency_ratio
    accurate = most_accurate(trials, limit)
    if accurate is not None:
        within = f" with latency ratio <= {limit:g}" if limit is not None else ""
        order.append((accurate, f"the highest validation macro-F1{within}"))
    order += [(t, f"rank {i + 1} by {ranking}") for i, t in enumerate(done) if i > 0]
    picked: list[Pick] = []
    seen: list[dict] = []
    for t, why in order:
        arch = architecture(t)
        if arch not in seen and len(picked) < k:
            picked.append((t, why))
            seen.append(arch)
    return picked


def choose_trial(study: optuna.Study, opts: FinalOptions) -> Pick:
    """The one trial `--trial N`, `--pareto --max-latency-ratio X` or, by default, the
    study's objective names."""
    trials = study_trials(study)
    if opts.trial is not None:
        match = [t for t in trials if t.number == opts.trial and t.spec is not None]
        if not match:
            raise ConfigError(f"study {study.study_name!r} has no trial #{opts.trial} with a "
                              f"recorded spec (trials 0-{len(trials) - 1})")
        return match[0], f"--trial {opts.trial}"
    if opts.pareto:
        if opts.max_latency_ratio is None:
            raise ConfigError("--pareto needs --max-latency-ratio X")
        best = most_accurate([t for t in trials if t.spec is not None], opts.max_latency_ratio)
        if best is None:
            fastest = min((t.latency_ratio for t in trials
                           if t.complete and t.latency_ratio is not None), default=float("nan"))
            raise ConfigError(f"no COMPLETE trial has latency ratio <= "
                              f"{opts.max_latency_ratio}; the fastest has {fastest:.3f}")
        return best, (f"the highest validation macro-F1 among COMPLETE trials with latency "
                      f"ratio <= {opts.max_latency_ratio}")
    return best_complete(study), f"the best {Ranking.of(study)} among COMPLETE trials"


__all__ = ["Pick", "architecture", "choose_trial", "top_k"]
