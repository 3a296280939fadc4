"""The final job: choose a trial from the study (re-evaluating the top K with fresh seeds),
retrain it from scratch on train + validation with N seeds, benchmark it on the test split
against baselines trained the same way (each with the better of the searched and its family's
standard recipe on validation), compare with intervals, export the median run, and report.

Everything comes from the study (the config, the classes, the chosen spec and
hyperparameters), so it runs on another machine than the one that searched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

import models
from data_utils.dataset import PreparedData
from models.spec import ModelSpec
from tune_jobs.config import Config, ConfigError
from tune_jobs.finaljob.assess import (
    Assessment,
    costs,
    reference_ratio,
    scores,
    speed,
    submit_time,
    test_metrics,
)
from tune_jobs.finaljob.candidates import rank_value, top_k
from tune_jobs.finaljob.export import (
    ModelMeta,
    check_exports,
    export_onnx_with_meta,
    export_torchscript,
    save_state,
)
from tune_jobs.finaljob.int8 import Int8Result, assess_int8
from tune_jobs.finaljob.recipes import standard_recipe
from tune_jobs.finaljob.report import (
    plot_confusion,
    plot_curves,
    plot_pareto,
    plot_retrain,
    write_report,
)
from tune_jobs.finaljob.runs import Bench, Job, Net, RecipeTrial, Run, select_recipe
from tune_jobs.finaljob.stats import (
    UNJUDGED,
    Estimate,
    difference,
    estimate,
    median_index,
    verdict,
)
from tune_jobs.study.summary import best_complete, compute_ledger, objective_name, trial_score
from tune_jobs.trial.space import TrainParams, candidate_from_config

log = logging.getLogger("litesearch.final")


@dataclass(frozen=True)
class FinalOptions:
    trial: int | None = None
    pareto: bool = False
    max_latency_ratio: float | None = None
    epochs: int | None = None
    baselines: tuple[str, ...] = ()
    data: str | None = None
    threads: int = 1
    progress: bool = True
    seeds: int | None = None  # None: final.seeds of the study's config
    top_k: int | None = None  # None: final.top_k; ignored with --trial or --pareto
    workers: int | None = None  # trainings at once on a CPU; None: final.workers, else cores
    int8: bool | None = None  # None: final.int8


@dataclass(frozen=True)
class ChosenTrial:
    """The trial the final job retrained, as the search saw it."""

    number: int
    state: str
    why: str
    score: float | None
    f1: float | None  # validation macro-F1 in the search
    latency_ratio: float | None
    epochs_done: int | None
    params: dict[str, Any]


@dataclass(frozen=True)
class CandidateCheck:
    """One of the top-K trials retrained on the training split with fresh seeds."""

    number: int
    why: str
    search_f1: float | None
    search_score: float | None
    latency_ratio: float | None
    val_f1: Estimate
    rank_value: float  # the study's objective from the mean validation F1; lower is better
    runs: list[Run]


@dataclass(frozen=True)
class ModelResult:
    """One model of the comparison over its seeds (metrics.json's `models`)."""

    name: str
    recipe: str  # "searched" or "standard"
    seeds: int
    f1_mean: float
    f1_std: float
    f1_ci95: tuple[float, float] | None
    accuracy: Estimate
    per_class_f1: dict[str, Estimate]
    trained: bool  # False: flagged, never counted as a comparison
    shipped_seed: int  # the median run: the one exported and assessed in full
    latency_ratio: float
    onnxruntime_ms: float
    params: int
    macs: int
    runs: list[Run]
    recipe_trials: list[RecipeTrial]  # a baseline's recipe choice on validation

    @property
    def f1(self) -> Estimate:
        return Estimate(self.seeds, self.f1_mean, self.f1_std, self.f1_ci95)


@dataclass(frozen=True)
class Comparison:
    """The searched model against one baseline: macro-F1 difference of the means (searched -
    baseline, Welch 95 % interval), the latency ratio (searched / baseline), the verdict."""

    baseline: str
    f1_difference: Estimate
    latency_ratio: float
    verdict: str


@dataclass(frozen=True)
class FinalResult:
    """What the final job measured (metrics.json is `to_json()` of it). `model` and
    `baselines` are the full assessments of each model's median run; `models` summarises
    every model over its seeds."""

    study: str
    epochs: int
    input_size: int
    test_source: str
    reference: str
    f1_ref: float
    seeds: int
    history: list[dict]  # per epoch of the shipped retrain: epoch, loss, lr, seconds
    chosen: ChosenTrial
    model: Assessment
    baselines: dict[str, Assessment]
    models: list[ModelResult]
    comparisons: list[Comparison]
    candidates: list[CandidateCheck]
    int8: list[Int8Result] = dataclasses.field(default_factory=list)  # one per model
    ran_on: dict[str, Any] | None = None  # node and GPUs, when run as a Ray task

    def to_json(self) -> dict:
        tree = dataclasses.asdict(self)
        if self.ran_on is None:
            del tree["ran_on"]
        return tree


# ------------------------------------------------------------------------------------ choose


def choose_trial(study: optuna.Study, opts: FinalOptions) -> tuple[FrozenTrial, str]:
    trials = study.get_trials(deepcopy=False)
    if opts.trial is not None:
        match = [t for t in trials if t.number == opts.trial]
        if not match or "spec" not in match[0].user_attrs:
            raise ConfigError(f"study {study.study_name!r} has no trial #{opts.trial} with a "
                              f"recorded spec (trials 0-{len(trials) - 1})")
        return match[0], f"--trial {opts.trial}"
    if opts.pareto:
        if opts.max_latency_ratio is None:
            raise ConfigError("--pareto needs --max-latency-ratio X")
        fits = [t for t in trials if t.state == TrialState.COMPLETE
                and t.user_attrs.get("latency_ratio") is not None
                and t.user_attrs["latency_ratio"] <= opts.max_latency_ratio]
        if not fits:
            fastest = min((t.user_attrs.get("latency_ratio") or float("inf") for t in trials
                           if t.state == TrialState.COMPLETE), default=float("nan"))
            raise ConfigError(f"no COMPLETE trial has latency ratio <= "
                              f"{opts.max_latency_ratio}; the fastest has {fastest:.3f}")
        best = max(fits, key=lambda t: t.user_attrs["f1"])
        return best, (f"the highest validation macro-F1 among COMPLETE trials with latency "
                      f"ratio <= {opts.max_latency_ratio}")
    return best_complete(study), f"the best {objective_name(study)} among COMPLETE trials"


# --------------------------------------------------------------------------------- benchmark


def assess(model: nn.Module, data: PreparedData, meta: ModelMeta, cfg: Config,
           reference: nn.Module, out: Path, name: str, threads: int,
           device: torch.device) -> Assessment:
    """Export the trained `model` next to `out/name` and measure it on the test split."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    ts, onnx = out / f"{name}.ts", out / f"{name}.onnx"
    export_torchscript(model, meta, ts)
    export_onnx_with_meta(model, meta, onnx)
    size = meta.input_size
    test = test_metrics(model, data.test.images, data.test.labels, data.classes, device)
    model_costs = costs(model.cpu(), size)
    model_speed = speed(model.cpu(), size, ts, onnx, threads)
    ratio = reference_ratio(model.cpu(), reference, size, cfg.objective.reference_size, threads)
    submit = submit_time(onnx, data.test.files, size, cfg.data.resize, threads)
    return Assessment(
        test=test, costs=model_costs, speed=model_speed, ratio=ratio, submit=submit,
        scores=scores(test.f1, ratio.latency_ratio, cfg.objective.f1_ref, submit.seconds),
        export_max_abs_diff=check_exports(model, ts, onnx, size), test_images=len(data.test))


def load_run_config(study: optuna.Study, data: str | None) -> Config:
    if "config" not in study.user_attrs:
        raise ConfigError(f"study {study.study_name!r} holds no litesearch config; was it "
                          "made by tune_jobs/search.py?")
    tree = dict(study.user_attrs["config"])
    if data:
        tree["data"] = {**tree["data"], "path": data}
    return Config.model_validate(tree)


def reevaluate(bench: Bench, study: optuna.Study, picks: list[tuple[FrozenTrial, str]],
               seeds: list[int]) -> list[CandidateCheck]:
    """Each candidate trained on the training split with `seeds` and judged on validation;
    sorted best first by the study's objective computed from the mean F1."""
    cfg = bench.cfg
    jobs = []
    for t, _ in picks:
        spec = ModelSpec.from_yaml(t.user_attrs["spec"])
        params = candidate_from_config(t.params, cfg.space, spec.num_classes).train
        jobs += [Job(f"trial{t.number}", Net(spec, spec.num_classes), params, seed, "train")
                 for seed in seeds]
    results = [run for _, run in bench.run_all(jobs)]
    checks = []
    for i, (t, why) in enumerate(picks):
        runs = results[i * len(seeds):(i + 1) * len(seeds)]
        f1 = estimate([r.f1 for r in runs])
        ratio = t.user_attrs.get("latency_ratio")
        checks.append(CandidateCheck(
            number=t.number, why=why, search_f1=t.user_attrs.get("f1"),
            search_score=trial_score(t), latency_ratio=ratio, val_f1=f1,
            rank_value=rank_value(study, f1.mean, ratio or 0.0, cfg.objective), runs=runs))
        log.info("candidate #%d: validation macro-F1 %s", t.number, f1.text())
    return sorted(checks, key=lambda c: c.rank_value)


def recipe_jobs(name: str, net: Net, searched: TrainParams, seed: int) -> list[Job]:
    """A baseline on the training split with the searched recipe and with its family's
    standard one, to be judged on validation (`select_recipe` picks)."""
    standard = standard_recipe(name).apply(searched)
    return [Job(f"{name}-{label}", net, params, seed, "train")
            for label, params in (("searched", searched), ("standard", standard))]


def recipe_trials(name: str, jobs: list[Job], runs: list[Run]) -> list[RecipeTrial]:
    sources = {"searched": "the searched trial's", "standard": standard_recipe(name).source}
    trials = []
    for job, run in zip(jobs, runs, strict=True):
        label = job.name.removeprefix(f"{name}-")
        trials.append(RecipeTrial(label, sources[label], dataclasses.asdict(job.params), run.f1,
                                  run.training))
        log.info("%s with the %s recipe: validation macro-F1 %.4f%s", name, label, run.f1,
                 "" if run.training.trained else " (did not train)")
    return trials


def choose_recipe(bench: Bench, name: str, net: Net, searched: TrainParams,
                  seed: int) -> list[RecipeTrial]:
    """`recipe_jobs` trained and judged on validation."""
    jobs = recipe_jobs(name, net, searched, seed)
    return recipe_trials(name, jobs, [run for _, run in bench.run_all(jobs)])


def seed_jobs(name: str, net: Net, params: TrainParams, seeds: list[int]) -> list[Job]:
    return [Job(name, net, params, seed, "trainval") for seed in seeds]


def shipped(trained: list[tuple[nn.Module, Run]]) -> tuple[nn.Module, Run]:
    """The median run by test macro-F1: the one exported and benchmarked in full."""
    return trained[median_index([r.f1 for _, r in trained])]


def int8_of(name: str, trained: list[tuple[nn.Module, Run]], data: PreparedData,
            meta: ModelMeta, cfg: Config, target: Path, threads: int) -> Int8Result:
    """Every seed of one model quantized and measured beside fp32 (`finaljob.int8`)."""
    assert data.test is not None
    return assess_int8(
        name, [m for m, _ in trained], [r.seed for _, r in trained],
        median_index([r.f1 for _, r in trained]), meta, data.test, data.train.files, target,
        images=cfg.final.int8_calibration_images, threads=threads,
        max_f1_drop=cfg.final.int8_max_f1_drop)


def summarize(name: str, recipe: str, runs: list[Run], shipped: Assessment,
              recipe_trials: list[RecipeTrial]) -> ModelResult:
    f1 = estimate([r.f1 for r in runs])
    classes = runs[0].per_class_f1
    ok = all(r.training.trained for r in runs) and (
        not recipe_trials or any(t.training.trained for t in recipe_trials))
    return ModelResult(
        name=name, recipe=recipe, seeds=len(runs), f1_mean=f1.mean, f1_std=f1.std,
        f1_ci95=f1.ci95, accuracy=estimate([r.accuracy for r in runs]),
        per_class_f1={c: estimate([r.per_class_f1[c] for r in runs]) for c in classes},
        trained=ok, shipped_seed=runs[median_index([r.f1 for r in runs])].seed,
        latency_ratio=shipped.ratio.latency_ratio,
        onnxruntime_ms=shipped.speed.cpu.onnxruntime_ms, params=shipped.costs.params,
        macs=shipped.costs.macs, runs=runs, recipe_trials=recipe_trials)


def compare(searched: ModelResult, baseline: ModelResult) -> Comparison:
    """A flagged model (did not train) is never judged better or worse than another."""
    diff = difference([r.f1 for r in searched.runs], [r.f1 for r in baseline.runs])
    judged = verdict(diff) if searched.trained and baseline.trained else UNJUDGED
    return Comparison(baseline.name, diff, searched.latency_ratio / baseline.latency_ratio,
                      judged)


def run_final(study: optuna.Study, output: Path, opts: FinalOptions) -> FinalResult:
    cfg = load_run_config(study, opts.data)
    n_seeds = opts.seeds or cfg.final.seeds
    k = 1 if opts.trial is not None or opts.pareto else (opts.top_k or cfg.final.top_k)
    final = output / "final"
    final.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bench = Bench(cfg, final, opts.epochs or cfg.final.epochs, device, opts.progress,
                  workers=opts.workers or cfg.final.workers or os.cpu_count() or 1)
    # fresh seeds: the search trained every candidate from search.seed
    seeds = [cfg.search.seed + 1 + i for i in range(n_seeds)]

    candidates: list[CandidateCheck] = []
    if k > 1:
        picks = top_k(study, k, cfg.objective)
        candidates = reevaluate(bench, study, picks, seeds)
        chosen = next(t for t, _ in picks if t.number == candidates[0].number)
        why = (f"the best mean validation {objective_name(study)} of {len(picks)} candidates "
               f"retrained with {n_seeds} seed(s) on the training split (top-k)")
    else:
        chosen, why = choose_trial(study, opts)
    spec = ModelSpec.from_yaml(chosen.user_attrs["spec"])
    params = candidate_from_config(chosen.params, cfg.space, spec.num_classes).train
    size = params.image_size
    data = bench.prepared(size)
    classes = study.user_attrs.get("classes")
    if classes and classes != data.classes:
        raise ConfigError(f"the data's classes {data.classes} differ from the study's {classes}")
    if data.test is None:
        raise ConfigError("no test split: add a test/ folder or set data.test_fraction > 0")
    meta = ModelMeta(data.classes, size, cfg.data.resize)
    reference = models.build(cfg.objective.reference, input_size=cfg.objective.reference_size)
    nets = {name: Net(f"tv/{name}", len(data.classes)) for name in opts.baselines}

    # one batch: the searched model's seeds and every baseline's recipe trials (independent)
    searched_jobs = seed_jobs("searched", Net(spec, spec.num_classes), params, seeds)
    choice_jobs = {name: recipe_jobs(name, net, params, seeds[0]) for name, net in nets.items()}
    first = bench.run_all(searched_jobs + [j for jobs in choice_jobs.values() for j in jobs])
    searched_runs, rest = first[:n_seeds], [run for _, run in first[n_seeds:]]
    trials = {name: recipe_trials(name, jobs, rest[2 * i:2 * i + 2])
              for i, (name, jobs) in enumerate(choice_jobs.items())}
    picked = {name: select_recipe(t) for name, t in trials.items()}
    # second batch: every baseline's seeds with the recipe validation chose
    baseline_jobs = {name: seed_jobs(f"{name}-{picked[name].recipe}", net,
                                     TrainParams(**picked[name].params), seeds)
                     for name, net in nets.items()}
    second = bench.run_all([j for jobs in baseline_jobs.values() for j in jobs])

    model, model_run = shipped(searched_runs)
    spec.to_yaml(final / "spec.yaml")
    save_state(model, spec, meta, final / "model.pt")
    searched_full = dataclasses.replace(
        assess(model, data, meta, cfg, reference, final, "model", opts.threads, device),
        training=model_run.training)
    searched = summarize("searched", "searched", [r for _, r in searched_runs], searched_full,
                         [])
    quantized = cfg.final.int8 if opts.int8 is None else opts.int8
    int8 = ([int8_of("searched", searched_runs, data, meta, cfg, final / "model.int8.onnx",
                     opts.threads)] if quantized else [])
    baselines: dict[str, Assessment] = {}
    results = [searched]
    for i, name in enumerate(nets):
        trained = second[i * n_seeds:(i + 1) * n_seeds]
        net, run = shipped(trained)
        baselines[name] = dataclasses.replace(
            assess(net, data, meta, cfg, reference, final / "baselines", name, opts.threads,
                   device), training=run.training)
        results.append(summarize(name, picked[name].recipe, [r for _, r in trained],
                                 baselines[name], trials[name]))
        if quantized:
            int8.append(int8_of(name, trained, data, meta, cfg,
                                final / "baselines" / f"{name}.int8.onnx", opts.threads))

    metrics = FinalResult(
        study=study.study_name, epochs=bench.epochs, input_size=size,
        test_source=data.test_source, reference=cfg.objective.reference,
        f1_ref=cfg.objective.f1_ref, seeds=n_seeds, history=model_run.history,
        chosen=ChosenTrial(number=chosen.number, state=chosen.state.name, why=why,
                           score=trial_score(chosen), f1=chosen.user_attrs.get("f1"),
                           latency_ratio=chosen.user_attrs.get("latency_ratio"),
                           epochs_done=chosen.user_attrs.get("epochs_done"),
                           params=chosen.params),
        model=searched_full, baselines=baselines, models=results,
        comparisons=[compare(searched, b) for b in results[1:]], candidates=candidates,
        int8=int8)
    all_trials = study.get_trials(deepcopy=False)
    plots = {"pareto": plot_pareto(all_trials, chosen, final / "pareto.png", results).name,
             "curves": plot_curves(all_trials, final / "learning_curves.png").name,
             "retrain": plot_retrain(results, final / "retrain_curves.png").name,
             "confusion": plot_confusion(metrics.model.test.confusion, data.classes,
                                         final / "confusion.png").name}
    (final / "metrics.json").write_text(json.dumps(metrics.to_json(), indent=2))
    write_report(final / "report.md", metrics, all_trials, data.classes, plots,
                 compute_ledger(study))
    return metrics
