"""PASHA (Bohdal, Balles, Wistuba, Ermis, Archambeau, Zappella, ICLR 2023), stopping type:
asynchronous successive halving whose maximum resource starts at the second rung and grows
one rung at a time, only while the two highest rungs reached rank their common trials
differently. Ranks that differ by less than epsilon count as tied ("soft ranking"), epsilon
being the 90th percentile of the gaps between pairs of trials whose order flipped and
flipped back over the epochs between those two rungs (the noise of the metric, estimated
from the curves themselves). Read from Syne Tune's `hyperband_pasha.py` (at 6410f6ac^, before
its removal), minus its promotion machinery: litesearch's ASHA stops trials, it does not
pause and resume them, so a trial that reaches the current maximum is stopped there, done at
the budget the search had then.

With `progressive=False` the maximum is the full budget from the start: plain stopping ASHA
with Ray's cutoff (a trial continues past a rung when its value is within the best 1/eta of
those recorded there before it), so the two are compared on one implementation.

A trial stopped at the maximum of its time finished the budget it was given
(`Rungs.done_at`): the study records it COMPLETE at that many epochs and ranks COMPLETE
trials by epochs first (`study.ranking`), so what a PASHA search hands back is the best of
the highest budget reached. Lower values are better (a loss, or
the score): `schedulers.ResumablePASHA` turns a maximised metric around. Not thread-safe:
Tune calls its scheduler from one thread; the plain-Optuna replay serializes its workers.
"""

from __future__ import annotations

import itertools

import numpy as np


def rung_levels(grace: int, eta: float, max_t: int) -> list[int]:
    """grace, grace*eta, grace*eta^2 ... below max_t, then max_t itself."""
    levels, level = [], float(grace)
    while round(level) < max_t:
        levels.append(round(level))
        level *= eta
    return [*levels, max_t]


class Rungs:
    """The stop rule of ASHA, or of PASHA when `progressive`."""

    def __init__(self, grace: int, eta: float, max_t: int, progressive: bool = True) -> None:
        self.levels = rung_levels(grace, eta, max_t)
        self.eta, self.progressive = eta, progressive
        # index of the current maximum: the second rung for PASHA (it needs two rungs to
        # compare), the full budget for ASHA
        self.top = min(1, len(self.levels) - 1) if progressive else len(self.levels) - 1
        self.rungs: list[dict[str, float]] = [{} for _ in self.levels]
        self.curves: dict[str, dict[int, float]] = {}
        self.epsilon = 0.0
        self.done_at: dict[str, int] = {}  # trials stopped at the maximum: the budget then
        self.raised_at: list[int] = []  # results seen when the maximum rose (for the report)
        self._results = 0

    @property
    def budget(self) -> int:
        """The current maximum resource: a trial that reaches it stops."""
        return self.levels[self.top]

    def on_result(self, trial: str, epoch: int, value: float) -> bool:
        """Record `trial`'s value after `epoch` epochs; True: stop it now."""
        self._results += 1
        self.curves.setdefault(trial, {})[epoch] = value
        stop = False
        if epoch in self.levels:
            rung = self.rungs[self.levels.index(epoch)]
            if rung and trial not in rung:
                cutoff = float(np.nanpercentile(list(rung.values()), 100 / self.eta))
                stop = value > cutoff
            rung.setdefault(trial, value)
            if self.progressive and self.top < len(self.levels) - 1 and self._disagree():
                self.top += 1
                self.raised_at.append(self._results)
        if not stop and epoch >= self.budget:
            self.done_at[trial] = epoch
            return True
        return stop

    def _disagree(self) -> bool:
        """Do the two highest rungs up to the current maximum rank the trials of the higher
        one differently, beyond epsilon? Asked when a rung records a value (Syne Tune asks
        at every result; the rungs, and so the rankings, change only then)."""
        upper, lower = self.rungs[self.top], self.rungs[self.top - 1]
        if len(upper) < 2:
            return False
        self.epsilon = self._noise(self.levels[self.top - 1], self.levels[self.top])
        by_upper = sorted(upper, key=upper.__getitem__)
        by_lower = sorted(by_upper, key=lower.__getitem__)
        # the trials within epsilon of each position's value in the lower rung: a trial of
        # the upper ranking outside the group of its position has moved beyond the noise
        groups = [{t for t in by_lower if abs(lower[t] - lower[s]) <= self.epsilon}
                  for s in by_lower]
        return any(t not in group for t, group in zip(by_upper, groups, strict=True))

    def _noise(self, low: int, high: int) -> float:
        """Epsilon: the 90th percentile of |gap| at an epoch in (low, high] between two trials
        whose order at that epoch had flipped at an earlier epoch and then flipped back (the
        latest such epoch per pair); the last epsilon when no pair did."""
        gaps, seen = [], set()
        for epoch in range(high, low, -1):
            there = sorted(t for t, c in self.curves.items() if epoch in c)
            for a, b in itertools.combinations(there, 2):
                if (a, b) in seen:
                    continue
                seen.add((a, b))
                order = self.curves[a][epoch] > self.curves[b][epoch]
                earlier = [self.curves[a][e] > self.curves[b][e] for e in range(epoch - 1, 0, -1)
                           if e in self.curves[a] and e in self.curves[b]]
                flipped = next((i for i, o in enumerate(earlier) if o != order), None)
                if flipped is not None and order in earlier[flipped:]:
                    gaps.append(abs(self.curves[a][epoch] - self.curves[b][epoch]))
        return float(np.percentile(gaps, 90)) if gaps else self.epsilon


__all__ = ["Rungs", "rung_levels"]
