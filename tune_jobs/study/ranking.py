"""Which trials are best: the one home of the rules that rank a study's trials (by its
objective), pick the most accurate within a latency limit, and draw the Pareto front. The
summary, the final job's choice and its top-k re-evaluation all rank through here.
"""

from __future__ import annotations

from collections import Counter

import optuna

from tune_jobs.outcome import StrEnum
from tune_jobs.study.trials import StudyAttr, StudyTrial, study_trials
from tune_jobs.trial.score import score


class NoCompleteTrial(RuntimeError):
    pass


class Ranking(StrEnum):
    """What "best" means in a study: the validation macro-F1 in an `objective.kind: f1` study,
    else the score (NSGA-II studies store F1 and latency and are ranked by score; their front
    is the Pareto summary). Lower ranks first either way."""

    F1 = "F1"
    SCORE = "score"

    @classmethod
    def of(cls, study: optuna.Study) -> Ranking:
        return cls.F1 if study.user_attrs.get(StudyAttr.OBJECTIVE) == ["f1"] else cls.SCORE

    @property
    def order(self) -> str:
        return "higher" if self == Ranking.F1 else "lower"

    def key(self, t: StudyTrial) -> float | None:
        """The trial's rank value (lower is better), None when it has none."""
        if self == Ranking.F1:
            return None if t.f1 is None else -t.f1
        return t.score

    def value(self, f1: float, latency_ratio: float, f1_ref: float) -> float:
        """The rank value of a validation F1 measured anew (the top-k re-evaluation)."""
        return -f1 if self == Ranking.F1 else score(f1, latency_ratio, f1_ref)


def ranked(trials: list[StudyTrial], ranking: Ranking) -> list[StudyTrial]:
    """The COMPLETE trials with a result of their own, best first: those trained the most
    epochs first (PASHA's answer is the best of its highest rung; under ASHA or FIFO every
    COMPLETE trial trained max_epochs), then by the objective."""
    done = [t for t in trials if t.complete and ranking.key(t) is not None]
    return sorted(done, key=lambda t: (-t.level, ranking.key(t)))


def best_complete(study: optuna.Study) -> StudyTrial:
    """The best COMPLETE trial by the study's objective: a PRUNED trial's short-budget value
    never wins, nor a duplicate proposal's copy of another's result."""
    trials = study_trials(study)
    done = ranked(trials, Ranking.of(study))
    if not done:
        counts = Counter(t.state.name for t in trials)
        raise NoCompleteTrial(f"study {study.study_name!r} has no COMPLETE trial "
                              f"({dict(counts) or 'no trials'}); run more samples or epochs")
    return done[0]


def most_accurate(trials: list[StudyTrial], max_latency_ratio: float | None
                  ) -> StudyTrial | None:
    """The COMPLETE trial with the highest validation macro-F1 among those with latency
    ratio <= `max_latency_ratio` (any, without a limit); None when none fits."""
    fits = [t for t in trials if t.complete and t.f1 is not None
            and (max_latency_ratio is None
                 or (t.latency_ratio is not None and t.latency_ratio <= max_latency_ratio))]
    return max(fits, key=lambda t: t.f1 or 0.0, default=None)


def pareto_front(trials: list[StudyTrial]) -> list[StudyTrial]:
    """COMPLETE trials not beaten on both F1 (higher) and latency ratio (lower), fastest
    first."""
    points = [t for t in trials if t.complete and t.f1 is not None
              and t.latency_ratio is not None]

    def dominated(a: StudyTrial) -> bool:
        return any(b.f1 >= a.f1 and b.latency_ratio <= a.latency_ratio  # type: ignore[operator]
                   and (b.f1 > a.f1 or b.latency_ratio < a.latency_ratio)  # type: ignore[operator]
                   for b in points)

    return sorted((t for t in points if not dominated(t)),
                  key=lambda t: t.latency_ratio)  # type: ignore[arg-type, return-value]


__all__ = ["NoCompleteTrial", "Ranking", "best_complete", "most_accurate", "pareto_front",
           "ranked"]
