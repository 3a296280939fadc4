"""The claim a final job judges: what the search promised to buy over a baseline, at which
latency, read from the intervals over seeds. Two operating points, picked by the objective:

- fast (`objective.kind: score`): non-inferior to every baseline within `final.margin`
  macro-F1 (the lower end of the Welch interval of searched - baseline above -margin) at
  <= `final.latency_fraction` of the fastest baseline's latency;
- accurate (`objective.kind: f1`): better than every baseline (the interval above zero) at
  <= the latency of `objective.max_latency_of` (else `objective.max_latency_ratio`).

The verdict reads the latency as the search measured it (`objective.latency`); the same
condition is also read in ONNX Runtime, the runtime the exports ship in (`RuntimeCheck`), and
reported beside it: on small nets the two can disagree (eager PyTorch at batch 1 is mostly
per-operator overhead, which ONNX Runtime does not have, so a net with few layers and many
MACs looks faster there than it runs). And the power it was judged with: the widest
interval's half-width and the seeds per model that a +-0.01 claim would need, from the
spreads seen. Free of torch.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from scipy import stats

from tune_jobs.config import Config
from tune_jobs.finaljob.stats import CONFIDENCE, Estimate
from tune_jobs.outcome import StrEnum

TARGET_HALF_WIDTH = 0.01  # the precision a report says the seeds for
MAX_SEEDS = 10_000


class Point(StrEnum):
    FAST = "fast"
    ACCURATE = "accurate"


POINT_OF_KIND: dict[str, Point] = {"score": Point.FAST, "f1": Point.ACCURATE}


class ClaimVerdict(StrEnum):
    SHOWN = "shown"
    NOT_SHOWN = "not shown"  # the interval straddles the bound: more seeds could tell
    REFUTED = "refuted"  # the interval is past the bound the wrong way, or too slow
    UNJUDGED = "not judged"  # no baseline, one seed, or a model that did not train


@dataclass(frozen=True)
class Versus:
    """What the claim needs of one baseline's comparison."""

    baseline: str
    f1_difference: Estimate  # searched - baseline, Welch's interval
    stds: tuple[float, float]  # the searched model's and the baseline's spread over seeds
    trained: bool  # both models trained (a flagged model is never judged)


@dataclass(frozen=True)
class ClaimCheck:
    baseline: str
    f1_difference: Estimate
    bound: float  # the interval's lower end must be above it: -margin, or 0
    verdict: ClaimVerdict
    half_width: float | None
    seeds_for_target: int | None  # per model, for a +-TARGET_HALF_WIDTH interval


@dataclass(frozen=True)
class Claim:
    """metrics.json's `claim`: the statement, the latency condition, each baseline's check,
    the verdict, and the power reached."""

    point: Point
    statement: str
    margin: float
    latency_ratio: float  # the searched model's, against the reference
    latency_ratios: dict[str, float]  # every model's, timed together with it
    latency_limit: float | None  # None: no latency condition
    latency_basis: str
    fast_enough: bool
    checks: list[ClaimCheck]
    verdict: ClaimVerdict
    half_width: float | None  # the widest interval's
    target_half_width: float
    seeds_for_target: int | None  # the most any check needs
    onnxruntime: RuntimeCheck | None = None  # the latency condition in ONNX Runtime


@dataclass(frozen=True)
class RuntimeCheck:
    """The claim's latency condition read again in ONNX Runtime: the fp32 exports of the
    median runs at batch 1, in milliseconds (each timed on its own in the assessment), the
    limit derived from the baselines' as the claim's is. Reported, not judged: the verdict
    follows `objective.latency`, which the search used."""

    searched_ms: float
    limit_ms: float
    basis: str
    met: bool


def seeds_for_half_width(std_a: float, std_b: float, half_width: float) -> int:
    """Seeds per model (equal counts) for Welch's 95 % interval of a difference of means to
    be at most +-`half_width`, if the runs spread as `std_a` and `std_b` did."""
    var = std_a**2 + std_b**2
    if var == 0:
        return 2
    for n in range(2, MAX_SEEDS):
        df = var**2 / ((std_a**4 + std_b**4) / (n - 1))
        if stats.t.ppf(0.5 + CONFIDENCE / 2, df) * math.sqrt(var / n) <= half_width:
            return n
    return MAX_SEEDS


def _check(v: Versus, bound: float) -> ClaimCheck:
    ci = v.f1_difference.ci95
    if ci is None or not v.trained:
        return ClaimCheck(v.baseline, v.f1_difference, bound, ClaimVerdict.UNJUDGED, None, None)
    low, high = ci
    verdict = (ClaimVerdict.SHOWN if low > bound else
               ClaimVerdict.REFUTED if high < bound else ClaimVerdict.NOT_SHOWN)
    return ClaimCheck(v.baseline, v.f1_difference, bound, verdict, (high - low) / 2,
                      seeds_for_half_width(*v.stds, TARGET_HALF_WIDTH))


def _overall(checks: list[ClaimCheck], fast_enough: bool) -> ClaimVerdict:
    verdicts = {c.verdict for c in checks}
    if not checks or ClaimVerdict.UNJUDGED in verdicts:
        return ClaimVerdict.UNJUDGED
    if not fast_enough or ClaimVerdict.REFUTED in verdicts:
        return ClaimVerdict.REFUTED
    return ClaimVerdict.SHOWN if verdicts == {ClaimVerdict.SHOWN} else ClaimVerdict.NOT_SHOWN


@dataclass(frozen=True)
class LatencyLimit:
    """The latency condition of a claim, as a latency ratio against the reference."""

    ratio: float | None
    basis: str


def latency_limit(cfg: Config, baselines: dict[str, float],
                  measured_of: float | None = None, measure: str = "latency ratio {:.3f}"
                  ) -> LatencyLimit:
    """The claim's latency limit from the baselines' latency ratios in the final job (or
    another latency of theirs, `measure` saying what it is).
    `measured_of`: `objective.max_latency_of`'s ratio when it is not among the baselines."""
    point, o = POINT_OF_KIND[cfg.objective.kind], cfg.objective
    if point == Point.FAST:
        if not baselines:
            return LatencyLimit(None, "no baseline to be faster than")
        name = min(baselines, key=lambda b: baselines[b])
        fraction = cfg.final.latency_fraction
        return LatencyLimit(fraction * baselines[name],
                            f"{fraction:.3g} x {name}'s {measure.format(baselines[name])}")
    if o.max_latency_of is not None:
        ratio = baselines.get(o.max_latency_of, measured_of)
        if ratio is None:
            raise ValueError(f"the latency ratio of {o.max_latency_of} was not measured")
        return LatencyLimit(ratio, f"{o.max_latency_of}'s {measure.format(ratio)}")
    if o.max_latency_ratio is not None:
        return LatencyLimit(o.max_latency_ratio, "objective.max_latency_ratio")
    return LatencyLimit(None, "no latency budget (objective.max_latency_of unset)")


def onnxruntime_check(cfg: Config, searched_ms: float, baselines_ms: dict[str, float]
                      ) -> RuntimeCheck | None:
    """The latency condition in ONNX Runtime milliseconds; None where it has no limit there
    (no baseline, or a budget net or ratio that was not exported beside them)."""
    of = cfg.objective.max_latency_of
    if POINT_OF_KIND[cfg.objective.kind] == Point.ACCURATE and of not in baselines_ms:
        return None
    limit = latency_limit(cfg, baselines_ms, measure="ONNX Runtime latency {:.3f} ms")
    if limit.ratio is None:
        return None
    return RuntimeCheck(searched_ms, limit.ratio, limit.basis, searched_ms <= limit.ratio)


def size_cap(cfg: Config, baselines: Collection[str]) -> str | None:
    """The baseline whose shipped input size caps the searched net's, when the searched net is
    also tried at the baselines' input sizes; None: it keeps the searched size.

    Only the accurate point with its budget's net among the baselines is: its claim is judged
    at that net's latency as the net ships, and a baseline tried at a larger input may ship
    there (torchvision's nets reach their best above the searched sizes). The search held each
    candidate to the budget's net timed at the candidate's own size, so the searched net is
    tried at the same sizes, up to the one that net ships at, and then judged at the same
    latency. The fast point keeps its size: its limit is a fraction of the fastest baseline's
    latency, which a larger input would not meet."""
    of = cfg.objective.max_latency_of
    return of if POINT_OF_KIND[cfg.objective.kind] == Point.ACCURATE and of in baselines else None


def judge(cfg: Config, ratios: dict[str, float], limit: LatencyLimit,
          versus: Sequence[Versus], onnxruntime: RuntimeCheck | None = None) -> Claim:
    """The claim of the study's operating point against every baseline; `ratios`: the latency
    ratios of the models timed together, the searched model's under "searched";
    `onnxruntime`: the latency condition read in ONNX Runtime, reported beside."""
    latency_ratio = ratios["searched"]
    point = POINT_OF_KIND[cfg.objective.kind]
    margin = cfg.final.margin if point == Point.FAST else 0.0
    names = ", ".join(v.baseline for v in versus) or "no baseline"
    statement = (f"non-inferior to {names} within {margin:g} macro-F1 at <= {limit.basis}"
                 if point == Point.FAST else
                 f"more accurate (higher macro-F1) than {names} at <= {limit.basis}")
    # without a limit, accurate has no latency condition; fast has nothing to be faster than
    fast_enough = (latency_ratio <= limit.ratio if limit.ratio is not None
                   else point == Point.ACCURATE)
    checks = [_check(v, 0.0 - margin) for v in versus]  # 0.0 - 0.0 is 0.0, not -0.0
    widths = [c.half_width for c in checks if c.half_width is not None]
    needed = [c.seeds_for_target for c in checks if c.seeds_for_target is not None]
    return Claim(point=point, statement=statement, margin=margin, latency_ratio=latency_ratio,
                 latency_ratios=ratios,
                 latency_limit=limit.ratio, latency_basis=limit.basis,
                 fast_enough=fast_enough, checks=checks,
                 verdict=_overall(checks, fast_enough),
                 half_width=max(widths) if widths else None,
                 target_half_width=TARGET_HALF_WIDTH,
                 seeds_for_target=max(needed) if needed else None, onnxruntime=onnxruntime)


__all__ = ["POINT_OF_KIND", "TARGET_HALF_WIDTH", "Claim", "ClaimCheck", "ClaimVerdict",
           "LatencyLimit", "Point", "RuntimeCheck", "Versus", "judge", "latency_limit",
           "onnxruntime_check", "seeds_for_half_width", "size_cap"]
