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
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from torch import nn

import models
from data_utils.dataset import PreparedData
from models.spec import ModelSpec
from tune_jobs.config import Config, ConfigError
from tune_jobs.finaljob import TRAININGS
from tune_jobs.finaljob.assess import (
    Assessment,
    TrainingCheck,
    costs,
    reference_ratio,
    scores,
    speed,
    submit_time,
    test_metrics,
)
from tune_jobs.finaljob.batch import Batch, run_all
from tune_jobs.finaljob.candidates import Pick, choose_trial, top_k
from tune_jobs.finaljob.claims import (
    POINT_OF_KIND,
    Claim,
    Point,
    Versus,
    judge,
    latency_limit,
    onnxruntime_check,
    size_cap,
)
from tune_jobs.finaljob.export import (
    ModelMeta,
    check_exports,
    export_onnx_with_meta,
    export_torchscript,
    save_state,
)
from tune_jobs.finaljob.int8 import Int8Result, assess_int8
from tune_jobs.finaljob.options import FinalOptions
from tune_jobs.finaljob.recipes import Recipe, RecipeChoice, recipes_for, sizes_for
from tune_jobs.finaljob.report import write_report_with_plots
from tune_jobs.finaljob.results import (
    CandidateCheck,
    ChosenTrial,
    Comparison,
    FinalResult,
    ModelResult,
)
from tune_jobs.finaljob.runs import Bench, Job, Net, RecipeTrial, Run, select_recipe
from tune_jobs.finaljob.stats import Verdict, difference, estimate, median_index, verdict
from tune_jobs.study.ranking import Ranking
from tune_jobs.study.summary import compute_ledger
from tune_jobs.study.trials import StudyAttr, StudyTrial, study_trials
from tune_jobs.trial.objective import LATENCY, budget_net
from tune_jobs.trial.space import TrainParams, candidate_from_config

log = logging.getLogger(__name__)
SEARCHED = "searched"  # the searched model among the models, as metrics.json names it

# one model's runs, one per seed; a run taken from trainings.jsonl has no weights (None)
# until `weighed` trains it again where they are needed
Trained = list[tuple[nn.Module | None, Run]]


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
    if StudyAttr.CONFIG not in study.user_attrs:
        raise ConfigError(f"study {study.study_name!r} holds no litesearch config; was it "
                          "made by tune_jobs/search.py?")
    tree = dict(study.user_attrs[StudyAttr.CONFIG])
    if data:
        tree["data"] = {**tree["data"], "path": data}
    return Config.model_validate(tree)


def reuse_folder(run: str | None) -> Path | None:
    """`--reuse-from RUN`: the folder of RUN's final-job checkpoints (or of its
    trainings.jsonl, the checkpoints lost with their machine), or a clear error."""
    if run is None:
        return None
    folder = Path(run) / "final"
    if not any(folder.glob("checkpoint-*.pt")) and not (folder / TRAININGS).is_file():
        raise ConfigError(f"--reuse-from {run}: no final-job checkpoints or {TRAININGS} in "
                          f"{folder}; give the run folder (--output) of a final job that has "
                          "trained")
    return folder


def reused_recipes(folder: Path | None, names: list[str]) -> dict[str, RecipeChoice]:
    """The recipe (and input size) that the run of `--reuse-from` chose for each of the
    baselines `names`, by the same rule from its metrics.json's recipe trials: tried here
    too, so a baseline keeps the best recipe either run found, and its trainings there are
    taken over where it wins again. None before that run's final job has ended."""
    path = folder / "metrics.json" if folder is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        trials = {m["name"]: [RecipeTrial(Recipe(t["recipe"]), t["source"], t["params"],
                                          t["val_f1"], TrainingCheck(**t["training"]))
                              for t in m["recipe_trials"]]
                  for m in json.loads(path.read_text())["models"]}
        won = {name: select_recipe(trials[name]) for name in names if trials.get(name)}
        return {name: RecipeChoice(Recipe.REUSED, TrainParams(**t.params),
                                   f"chosen by {folder.parent} ({t.label}: {t.source})")
                for name, t in won.items()}
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--reuse-from: {path} is not a final job's metrics.json "
                          f"({type(err).__name__}: {err}); give a run whose final job ended, "
                          "or delete the file to reuse its trainings alone") from err


def train_params(t: StudyTrial, cfg: Config) -> tuple[ModelSpec, TrainParams]:
    """The trial's network and its training recipe, rebuilt from the study."""
    if t.spec is None:
        raise ConfigError(f"trial #{t.number} has no recorded spec to retrain")
    spec = ModelSpec.from_yaml(t.spec)
    return spec, candidate_from_config(t.params, cfg.space, spec.num_classes).train


def reevaluate(bench: Bench, ranking: Ranking, picks: list[Pick], seeds: list[int]
               ) -> list[CandidateCheck]:
    """Each candidate trained on the training split with `seeds` and judged on validation;
    sorted best first by the study's objective computed from the mean F1."""
    cfg = bench.cfg
    jobs = []
    for t, _ in picks:
        spec, params = train_params(t, cfg)
        jobs += [Job(f"trial{t.number}", Net(spec, spec.num_classes), params, seed, "train")
                 for seed in seeds]
    results = [run for _, run in run_all(bench, jobs)]
    checks = []
    for i, (t, why) in enumerate(picks):
        runs = results[i * len(seeds):(i + 1) * len(seeds)]
        f1 = estimate([r.f1 for r in runs])
        checks.append(CandidateCheck(
            number=t.number, why=why, search_f1=t.f1, search_score=t.score,
            latency_ratio=t.latency_ratio, val_f1=f1,
            rank_value=ranking.value(f1.mean, t.latency_ratio or 0.0, cfg.objective.f1_ref),
            runs=runs))
        log.info("candidate #%d: validation macro-F1 %s", t.number, f1.text())
    return sorted(checks, key=lambda c: c.rank_value)


def recipe_jobs(name: str, net: Net, choices: list[RecipeChoice], seed: int) -> list[Job]:
    """A baseline on the training split in each way of `recipes_for`, to be judged on
    validation (`select_recipe` picks)."""
    return [Job(f"{name}-{c.label}", net, c.params, seed, "train") for c in choices]


def recipe_trials(name: str, choices: list[RecipeChoice], runs: list[Run]
                  ) -> list[RecipeTrial]:
    trials = []
    for c, run in zip(choices, runs, strict=True):
        trials.append(RecipeTrial(c.recipe, c.source, dataclasses.asdict(c.params), run.f1,
                                  run.training))
        log.info("%s with the %s recipe at %d px: validation macro-F1 %.4f%s", name, c.recipe,
                 c.params.image_size, run.f1,
                 "" if run.training.trained else " (did not train)")
    return trials


def choose_recipes(batch: Batch, nets: dict[str, Net], choices: dict[str, list[RecipeChoice]],
                   seed: int) -> Iterator[tuple[str, list[RecipeTrial]]]:
    """Every baseline trained on the training split in each of its `choices` (`recipes_for`:
    each recipe at each input size), judged on validation: each baseline's recipe trials,
    submitted now and given back per net as soon as that net's trials are all done (the
    first done first), so that what waits for them can go to the workers at once."""
    trials = {name: batch.submit(recipe_jobs(name, net, choices[name], seed))
              for name, net in nets.items()}
    return ((name, recipe_trials(name, choices[name], [run for _, run in done]))
            for name, done in batch.as_done(trials))


def seed_jobs(name: str, net: Net, params: TrainParams, seeds: list[int]) -> list[Job]:
    return [Job(name, net, params, seed, "trainval") for seed in seeds]


def shipped(trained: Trained) -> tuple[nn.Module, Run]:
    """The median run by test macro-F1: the one exported and benchmarked in full."""
    model, run = trained[median_index([r.f1 for _, r in trained])]
    assert model is not None, "weighed() gives the median run its weights"
    return model, run


def weighed(batch: Batch, trained: dict[str, Trained], jobs: dict[str, list[Job]],
            every_seed: bool) -> dict[str, Trained]:
    """Each model's runs with the weights the assessment needs: the median run's (exported,
    benchmarked, timed for the claim), and every seed's when int8 quantizes each. A run taken
    from trainings.jsonl (its checkpoint lost with an earlier run folder) is trained again
    for them from its seed, and its new run replaces the recorded one, so what ships is what
    the statistics describe; until every median has weights, as a retrained run that lands
    off its record can move the median. All models' retrainings go to the workers at once."""
    trained = {name: list(runs) for name, runs in trained.items()}
    while True:
        lost = {name: [i for i in (range(len(runs)) if every_seed
                                   else [median_index([r.f1 for _, r in runs])])
                       if runs[i][0] is None]
                for name, runs in trained.items()}
        lost = {name: ix for name, ix in lost.items() if ix}
        if not lost:
            return trained
        again = {name: batch.submit([dataclasses.replace(jobs[name][i], from_record=False)
                                     for i in ix]) for name, ix in lost.items()}
        for name, ix in lost.items():
            for i, (model, run) in zip(ix, batch.results(again[name]), strict=True):
                log.info("%s seed %d trained again for its weights: macro-F1 %.4f (recorded "
                         "%.4f)", name, run.seed, run.f1, trained[name][i][1].f1)
                trained[name][i] = (model, run)


def int8_of(name: str, trained: Trained, data: PreparedData, meta: ModelMeta, cfg: Config,
            target: Path, threads: int) -> Int8Result:
    """Every seed of one model quantized and measured beside fp32 (`finaljob.int8`)."""
    assert data.test is not None
    return assess_int8(
        name, [m for m, _ in trained], [r.seed for _, r in trained],
        median_index([r.f1 for _, r in trained]), meta, data.test, data.train.files, target,
        images=cfg.final.int8_calibration_images, threads=threads,
        max_f1_drop=cfg.final.int8_max_f1_drop)


def summarize(name: str, recipe: Recipe, image_size: int, trained: Trained, shipped_run: Run,
              assessed: Assessment, recipe_trials: list[RecipeTrial]) -> ModelResult:
    """One model over its seeds; `shipped_run` is the one `assessed` in full."""
    runs = [r for _, r in trained]
    classes = runs[0].per_class_f1
    ok = all(r.training.trained for r in runs) and (
        not recipe_trials or any(t.training.trained for t in recipe_trials))
    return ModelResult(
        name=name, recipe=recipe, f1=estimate([r.f1 for r in runs]),
        accuracy=estimate([r.accuracy for r in runs]),
        per_class_f1={c: estimate([r.per_class_f1[c] for r in runs]) for c in classes},
        trained=ok, shipped_seed=shipped_run.seed, latency_ratio=assessed.ratio.latency_ratio,
        onnxruntime_ms=assessed.speed.cpu.onnxruntime_ms, params=assessed.costs.params,
        macs=assessed.costs.macs, runs=runs, recipe_trials=recipe_trials,
        image_size=image_size)


def compare(searched: ModelResult, baseline: ModelResult) -> Comparison:
    """A flagged model (did not train) is never judged better or worse than another."""
    diff = difference([r.f1 for r in searched.runs], [r.f1 for r in baseline.runs])
    judged = verdict(diff) if searched.trained and baseline.trained else Verdict.UNJUDGED
    return Comparison(baseline.name, diff, searched.latency_ratio / baseline.latency_ratio,
                      judged)


# ---------------------------------------------------------------------------- the phases


@dataclass
class Setting:
    """What every phase of one final job shares."""

    study: optuna.Study
    opts: FinalOptions
    cfg: Config
    bench: Bench
    seeds: list[int]
    folder: Path  # OUTPUT/final

    @classmethod
    def make(cls, study: optuna.Study, output: Path, opts: FinalOptions) -> Setting:
        cfg = load_run_config(study, opts.data)
        folder = output / "final"
        folder.mkdir(parents=True, exist_ok=True)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        bench = Bench(cfg, folder, opts.epochs or cfg.final.epochs, device, opts.progress,
                      workers=opts.workers or cfg.final.workers or os.cpu_count() or 1,
                      reuse=reuse_folder(opts.reuse_from))
        # fresh seeds: the search trained every candidate from search.seed
        n = opts.seeds or cfg.final.seeds
        return cls(study, opts, cfg, bench, [cfg.search.seed + 1 + i for i in range(n)], folder)

    @property
    def int8(self) -> bool:
        """Whether every model's seeds are quantized to int8 and measured beside fp32."""
        return self.cfg.final.int8 if self.opts.int8 is None else self.opts.int8


def choose(s: Setting) -> tuple[StudyTrial, str, list[CandidateCheck]]:
    """Phase 1: the trial to retrain, why, and the top-k re-evaluation that chose it."""
    opts = s.opts
    k = 1 if opts.trial is not None or opts.pareto else (opts.top_k or s.cfg.final.top_k)
    if k <= 1:
        return *choose_trial(s.study, opts), []
    ranking = Ranking.of(s.study)
    picks = top_k(s.study, k, s.cfg.objective)
    candidates = reevaluate(s.bench, ranking, picks, s.seeds)
    chosen = next(t for t, _ in picks if t.number == candidates[0].number)
    why = (f"the best mean validation {ranking} of {len(picks)} candidates retrained with "
           f"{len(s.seeds)} seed(s) on the training split (top-k)")
    return chosen, why, candidates


@dataclass
class Trainings:
    """Phase 2's output: every model's runs on train + validation, and each baseline's
    recipe trials on validation with the recipe they chose."""

    searched: Trained
    baselines: dict[str, Trained]
    recipe_trials: dict[str, list[RecipeTrial]]
    picked: dict[str, RecipeTrial]  # each baseline's recipe and input size

    def size_of(self, name: str, searched: int) -> int:
        """The input size model `name` trained at (`searched`: the searched model's)."""
        return self.picked[name].image_size if name in self.picked else searched


def train_models(s: Setting, spec: ModelSpec, params: TrainParams, nets: dict[str, Net]
                 ) -> Trainings:
    """Phase 2, on one pool of workers: every baseline's recipe trials, the searched model's
    seeds behind them, and each baseline's seeds as soon as its own trials have chosen its
    recipe and input size (so no worker waits while another net's last trial finishes).
    Where the claim lets the searched net ship at a baseline's input size (`size_cap`), it is
    tried at those sizes beside the baselines' trials, and its seeds wait for its own choice
    and for that baseline's. Runs taken from trainings.jsonl get back the weights the
    assessment needs (`weighed`)."""
    searched_net = Net(spec, spec.num_classes)
    sizes = (s.cfg.final.baseline_image_sizes if s.opts.baseline_sizes is None
             else s.opts.baseline_sizes)
    choices = {name: recipes_for(name, params, sizes) for name in nets}
    for name, reused in reused_recipes(s.bench.reuse, list(nets)).items():
        if all(c.params != reused.params for c in choices[name]):  # else it is tried already
            choices[name].append(reused)
    cap = size_cap(s.cfg, nets)
    resized = sizes_for(params, sizes) if cap else []
    tried = dict(nets)
    if len(resized) > 1:
        choices[SEARCHED], tried[SEARCHED] = resized, searched_net
    searched_first = [] if SEARCHED in tried else seed_jobs(SEARCHED, searched_net, params,
                                                           s.seeds)
    jobs = {SEARCHED: searched_first}  # each model's seeds, to train again for weights
    total = sum(map(len, choices.values())) + (len(nets) + 1) * len(s.seeds)
    with Batch(s.bench, total) as batch:
        each_done = choose_recipes(batch, tried, choices, s.seeds[0])
        searched = batch.submit(searched_first)  # behind the recipe trials
        trials: dict[str, list[RecipeTrial]] = {}
        picked: dict[str, RecipeTrial] = {}
        baselines: dict[str, list[Future]] = {}
        # each model's seeds are queued as soon as its own recipe is chosen, so no worker
        # waits while another model's last recipe trial finishes (the searched net's wait
        # for `cap`'s choice too: that baseline's size caps the searched net's)
        for name, its_trials in each_done:
            trials[name] = its_trials
            if name != SEARCHED:
                picked[name] = select_recipe(its_trials)
                jobs[name] = seed_jobs(f"{name}-{picked[name].label}", nets[name],
                                       TrainParams(**picked[name].params), s.seeds)
                baselines[name] = batch.submit(jobs[name])
            if SEARCHED in trials and cap in picked and SEARCHED not in picked:
                won = picked[SEARCHED] = select_recipe(trials[SEARCHED], picked[cap].image_size)
                label = (SEARCHED if won.image_size == params.image_size
                         else f"{SEARCHED}-{won.label}")
                jobs[SEARCHED] = seed_jobs(label, searched_net, TrainParams(**won.params),
                                           s.seeds)
                searched = batch.submit(jobs[SEARCHED])
        done = weighed(batch, {SEARCHED: batch.results(searched)} | {
            name: batch.results(baselines[name]) for name in nets}, jobs, s.int8)
        return Trainings(done.pop(SEARCHED), done, trials, picked)


@dataclass
class Assessed:
    """Phase 3's output: the searched model's and each baseline's median run assessed in
    full, every model over its seeds, int8 beside fp32, the shipped retrain's history."""

    model: Assessment
    baselines: dict[str, Assessment]
    models: list[ModelResult]
    int8: list[Int8Result]
    history: list[dict]


def assess_models(s: Setting, spec: ModelSpec, trainings: Trainings, data: PreparedData,
                  meta: ModelMeta) -> Assessed:
    """Phase 3: each model's median run exported and assessed in full (and every seed
    quantized when int8 is on); the searched model's spec and state saved for `predict`."""
    cfg, opts, folder = s.cfg, s.opts, s.folder
    model, run = shipped(trainings.searched)
    spec.to_yaml(folder / "spec.yaml")
    save_state(model, spec, meta, folder / "model.pt")
    reference = models.build(cfg.objective.reference, input_size=cfg.objective.reference_size)
    # (name, its seeds' runs, where its exports go, their file stem)
    outputs = [(SEARCHED, trainings.searched, folder, "model")] + [
        (name, trained, folder / "baselines", name)
        for name, trained in trainings.baselines.items()]
    assessed: dict[str, Assessment] = {}
    results, int8 = [], []
    for name, trained, target, stem in outputs:
        net, median = shipped(trained)
        size = trainings.size_of(name, meta.input_size)  # a baseline at its own size
        at, meta_at = s.bench.prepared(size), dataclasses.replace(meta, input_size=size)
        assessed[name] = dataclasses.replace(
            assess(net, at, meta_at, cfg, reference, target, stem, opts.threads,
                   s.bench.device), training=median.training)
        picked = trainings.picked.get(name)
        results.append(summarize(name, picked.recipe if picked else Recipe.SEARCHED, size,
                                 trained, median, assessed[name],
                                 trainings.recipe_trials.get(name, [])))
        if s.int8:
            int8.append(int8_of(name, trained, at, meta_at, cfg, target / f"{stem}.int8.onnx",
                                opts.threads))
    return Assessed(assessed.pop(SEARCHED), assessed, results, int8, run.history)


def claim(cfg: Config, trainings: Trainings, results: list[ModelResult],
          comparisons: list[Comparison], size: int, num_classes: int) -> Claim:
    """Phase 3b: the operating point's claim. Its latency condition compares the median runs
    of the searched model and every baseline (and objective.max_latency_of's net when it is not a
    baseline) timed together, in one process, as the search timed candidates
    (`objective.latency`), so that a limit and what it limits move alike under load."""
    nets = {SEARCHED: shipped(trainings.searched)[0]} | {
        name: shipped(trained)[0] for name, trained in trainings.baselines.items()}
    of = cfg.objective.max_latency_of
    if POINT_OF_KIND[cfg.objective.kind] == Point.ACCURATE and of and of not in nets:
        nets[of] = budget_net(cfg.objective, num_classes)
    reference = models.build(cfg.objective.reference, input_size=cfg.objective.reference_size)
    # each at the size it trained at (a baseline may have won at its own); the budget's net
    # at the searched size, as the search timed it
    sizes = [trainings.size_of(name, size) for name in nets]
    timed = LATENCY[cfg.objective.latency]([n.cpu().eval() for n in nets.values()], reference,
                                           sizes, cfg.objective)
    ratios = {name: r.ratio for name, r in zip(nets, timed, strict=True)}
    limit = latency_limit(cfg, {n: ratios[n] for n in trainings.baselines}, ratios.get(of or ""))
    searched = results[0]
    versus = [Versus(c.baseline, c.f1_difference, (searched.f1.std, b.f1.std),
                     searched.trained and b.trained)
              for c, b in zip(comparisons, results[1:], strict=True)]
    # the same condition in the runtime the exports ship in, from the assessment's timings
    onnx = onnxruntime_check(cfg, searched.onnxruntime_ms,
                             {b.name: b.onnxruntime_ms for b in results[1:]})
    return judge(cfg, ratios, limit, versus, onnx)


def write_outputs(s: Setting, metrics: FinalResult, chosen: StudyTrial,
                  classes: list[str]) -> None:
    """Phase 4: metrics.json, the plots and report.md."""
    (s.folder / "metrics.json").write_text(json.dumps(metrics.to_json(), indent=2))
    write_report_with_plots(s.folder, metrics, study_trials(s.study), chosen, classes,
                            compute_ledger(s.study))


def run_final(study: optuna.Study, output: Path, opts: FinalOptions) -> FinalResult:
    s = Setting.make(study, output, opts)
    chosen, why, candidates = choose(s)
    spec, params = train_params(chosen, s.cfg)
    data = s.bench.prepared(params.image_size)
    classes = study.user_attrs.get(StudyAttr.CLASSES)
    if classes and classes != data.classes:
        raise ConfigError(f"the data's classes {data.classes} differ from the study's {classes}")
    if data.test is None:
        raise ConfigError("no test split: add a test/ folder or set data.test_fraction > 0")
    nets = {name: Net(f"tv/{name}", len(data.classes)) for name in opts.baselines}
    trainings = train_models(s, spec, params, nets)
    size = trainings.size_of(SEARCHED, params.image_size)  # a baseline's, where it won
    meta = ModelMeta(data.classes, size, s.cfg.data.resize)
    done = assess_models(s, spec, trainings, data, meta)
    comparisons = [compare(done.models[0], b) for b in done.models[1:]]
    metrics = FinalResult(
        study=study.study_name, epochs=s.bench.epochs, input_size=size,
        test_source=data.test_source, reference=s.cfg.objective.reference,
        f1_ref=s.cfg.objective.f1_ref, seeds=len(s.seeds), history=done.history,
        chosen=ChosenTrial(number=chosen.number, state=chosen.state, why=why,
                           score=chosen.score, f1=chosen.f1,
                           latency_ratio=chosen.latency_ratio, epochs_done=chosen.epochs_done,
                           params=chosen.params),
        model=done.model, baselines=done.baselines, models=done.models,
        comparisons=comparisons, candidates=candidates, int8=done.int8,
        claim=claim(s.cfg, trainings, done.models, comparisons, params.image_size,
                    len(data.classes)),
        trainings=len(s.bench.finished), reused_from=opts.reuse_from,
        taken_over=sum(run.taken_over for run in s.bench.finished))
    write_outputs(s, metrics, chosen, data.classes)
    return metrics
