"""Run a search: data once, then Ray Tune with the chosen searcher, ASHA, the study mirror,
and the run's outputs (best spec, trials table, console summary)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from data_utils.skips import DataError
from tune_jobs.config import Config, ConfigError
from tune_jobs.schedulers import make_scheduler
from tune_jobs.study.mirror import MirroredOptunaSearch, RecordContext, StudyRecorder
from tune_jobs.study.storage import (
    is_masked,
    mask_url,
    open_storage,
    resolve_storage_url,
    with_password,
    without_password,
)
from tune_jobs.study.trials import StudyAttr
from tune_jobs.study.writes import drain
from tune_jobs.trial.data import SplitArrays, TrialData
from tune_jobs.trial.recipe import data_path, prepare_run_data
from tune_jobs.trial.space import define_by_run, tune_domains
from tune_jobs.trial.trainable import train_candidate

log = logging.getLogger(__name__)
RESULTS_ENV = "LITESEARCH_RESULTS"


@dataclass(frozen=True)
class Objective:
    """What the searcher optimises: the score (default), or F1 vs latency (NSGA-II)."""

    metrics: tuple[str, ...]
    modes: tuple[str, ...]

    @property
    def directions(self) -> list[str]:
        return ["minimize" if m == "min" else "maximize" for m in self.modes]


SCORE = Objective(("score",), ("min",))
MAX_F1 = Objective(("f1",), ("max",))  # objective.kind f1: macro-F1 under the budgets
F1_VS_LATENCY = Objective(("f1", "latency_ratio"), ("max", "min"))
OBJECTIVES = {"score": SCORE, "f1": MAX_F1}


def objective_for(cfg: Config) -> Objective:
    """NSGA-II searches the Pareto front of F1 vs latency; the others `objective.kind`."""
    return F1_VS_LATENCY if cfg.search.algorithm == "nsga2" else OBJECTIVES[cfg.objective.kind]


def _optuna_search(sampler: Callable[[Config], optuna.samplers.BaseSampler]):
    def build(cfg: Config, storage, record: RecordContext, num_classes: int, run_id: str,
              objective: Objective):
        multi = len(objective.metrics) > 1
        return MirroredOptunaSearch(
            space=define_by_run(cfg.space, num_classes),
            metric=list(objective.metrics) if multi else objective.metrics[0],
            mode=list(objective.modes) if multi else objective.modes[0],
            sampler=sampler(cfg), storage=storage, study_name=cfg.search.study,
            record=record, run_id=run_id, num_samples=cfg.search.num_samples,
            deduplicate=cfg.search.deduplicate)

    return build


def _hyperopt(cfg: Config, storage, record: RecordContext, num_classes: int, run_id: str,
              objective: Objective):
    try:
        from ray.tune.search.hyperopt import HyperOptSearch
    except ImportError as err:  # hyperopt imports pkg_resources (setuptools < 81)
        raise ConfigError(f"search.algorithm hyperopt cannot start ({err}); install "
                          "'setuptools<81' or choose search.algorithm: tpe") from None
    return HyperOptSearch(metric=objective.metrics[0], mode=objective.modes[0],
                          random_state_seed=cfg.search.seed)


def _tpe(cfg: Config) -> optuna.samplers.TPESampler:
    import warnings

    t = cfg.search.tpe
    with warnings.catch_warnings():  # multivariate, group, constant_liar are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=cfg.search.seed, multivariate=t.multivariate, group=t.group,
            constant_liar=t.constant_liar, n_startup_trials=t.n_startup_trials)


def _gp(cfg: Config) -> optuna.samplers.GPSampler:
    """Gaussian-process Bayesian optimisation (Matern 5/2 with ARD, log EI; q-batch log EI
    over the trials still running). Its GP models the intersection of the trials' spaces:
    the values every trial draws (the recipe, stem, head, width, depth, each slot's block);
    the conditional ones (a block's own arguments, the strides drawn while the downsampling
    budget lasts) fall outside it and are drawn at random, which Optuna would warn about on
    every trial (`warn_independent_sampling` off: it is by design here)."""
    return optuna.samplers.GPSampler(seed=cfg.search.seed, warn_independent_sampling=False)


# name -> build searcher. The Optuna samplers record the study themselves
# (MirroredOptunaSearch); hyperopt's trials are recorded by the StudyRecorder callback.
SEARCHERS: dict[str, Callable] = {
    "tpe": _optuna_search(_tpe),
    "gp": _optuna_search(_gp),
    "random": _optuna_search(lambda cfg: optuna.samplers.RandomSampler(seed=cfg.search.seed)),
    "nsga2": _optuna_search(lambda cfg: optuna.samplers.NSGAIISampler(seed=cfg.search.seed)),
    "hyperopt": _hyperopt,
}


def prepare_trial_data(cfg: Config) -> TrialData:
    """Decode the data once per image size of the space (the caches persist across runs)."""
    train, val, classes = {}, {}, None
    for size in sorted(set(cfg.space.train.image_size)):
        data = prepare_run_data(cfg, size)  # logs its class counts and skips
        classes = data.classes
        train[size] = SplitArrays(data.train.images, data.train.labels)
        val[size] = SplitArrays(data.val.images, data.val.labels)
    if classes is None:
        raise DataError("space.train.image_size lists no image size")
    return TrialData(cfg, classes, train, val,
                     study_attrs={StudyAttr.TEST_SOURCE: data.test_source,
                                  StudyAttr.DATA_PATH: data_path(cfg)})


def check_reference(cfg: Config) -> None:
    """The latency reference must build at its size, and a latency budget's net must be one
    that builds: config errors, found before Ray starts."""
    import models
    from models.reference import REFERENCE_NETS
    from models.spec import SpecError

    try:
        models.build(cfg.objective.reference, input_size=cfg.objective.reference_size)
    except (KeyError, ValueError, SpecError) as err:
        raise ConfigError(f"objective.reference {cfg.objective.reference!r} at "
                          f"reference_size {cfg.objective.reference_size}: {err}") from None
    of = cfg.objective.max_latency_of
    if of is not None and of not in REFERENCE_NETS:
        raise ConfigError(f"objective.max_latency_of {of!r}: not a torchvision net litesearch "
                          f"builds; use one of {', '.join(sorted(REFERENCE_NETS))}")


STORAGE_RECORD = "storage.txt"  # in the run folder: the study's URL, its password masked


def storage_for(cfg: Config, output: Path, resume: bool = False):
    """The study's URL and storage, opened before Ray starts (a dead server fails fast, its
    password masked). A resume must reach the database the run started in: when that one
    needed a password, the password must be given again (nothing kept it), checked here
    before anything is written, not minutes later when Tune unpickles its searcher."""
    url = resolve_storage_url(cfg.search.storage, output)
    record = output / STORAGE_RECORD
    started_in = record.read_text().strip() if resume and record.is_file() else None
    if started_in and is_masked(started_in) and mask_url(url) != started_in:
        with_password(started_in)  # raises, saying how to pass it, unless $LITESEARCH_STORAGE
        raise ConnectionError(f"this run's study is in {started_in}, not {mask_url(url)}: "
                              "resume it with that storage (--storage)")
    storage = open_storage(url)
    record.write_text(mask_url(url) + "\n")
    log.info("study %r in %s", cfg.search.study, mask_url(url))
    return url, storage


def study_direction_kwargs(objective: Objective) -> dict:
    if len(objective.metrics) > 1:
        return {"directions": objective.directions}
    return {"direction": objective.directions[0]}


def record_run(cfg: Config, storage, objective: Objective, data: TrialData) -> None:
    """The study keeps what the final job needs on another machine: the whole config, the
    classes, and where the test split comes from."""
    study = optuna.create_study(study_name=cfg.search.study, storage=storage,
                                load_if_exists=True, **study_direction_kwargs(objective))
    attrs = {StudyAttr.CONFIG: cfg.model_dump(mode="json"), StudyAttr.CLASSES: data.classes,
             StudyAttr.OBJECTIVE: list(objective.metrics), **data.study_attrs}
    for key, value in attrs.items():
        study.set_user_attr(str(key), value)


def results_path(cfg: Config, output: Path) -> str:
    """Where Tune keeps the experiment: the config's, else $LITESEARCH_RESULTS (a cluster's
    head exports it), else the run folder. A URI (s3://...) passes through unchanged."""
    path = cfg.search.results_path or os.environ.get(RESULTS_ENV) or str(output / "ray")
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _callbacks(cfg: Config, output: Path, storage, record: RecordContext, objective: Objective):
    from tune_jobs.study.live import LiveMetrics

    callbacks = [LiveMetrics(cfg.search.study, cfg.scheduler.max_epochs)]
    if cfg.search.algorithm == "hyperopt":
        study = optuna.create_study(study_name=cfg.search.study, storage=storage,
                                    load_if_exists=True, **study_direction_kwargs(objective))
        callbacks.append(StudyRecorder(study, record))
    if cfg.tracking.wandb != "disabled":
        from ray.air.integrations.wandb import WandbLoggerCallback

        if cfg.tracking.wandb == "offline":  # Ray asks for an API key unless this is set
            os.environ["WANDB_MODE"] = "offline"
        callbacks.append(WandbLoggerCallback(project=cfg.tracking.project,
                                             group=cfg.search.study,
                                             mode=cfg.tracking.wandb, dir=str(output)))
    return callbacks


def _progress_reporter():
    """Tune's table with our metrics (the newer console output ignores custom columns)."""
    from ray.tune import CLIReporter

    return CLIReporter(
        metric_columns={"epoch": "epoch", "score": "score", "f1": "f1",
                        "latency_ratio": "lat ratio", "params": "params",
                        "image_size": "size", "outcome": "outcome"},
        parameter_columns=["width"], max_report_frequency=15)


def init_ray(cfg: Config) -> None:
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):  # inside `ray job submit`, or RAY_ADDRESS=auto/host:port
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True)
    else:  # a private local instance, never some other Ray that happens to run on this machine
        ray.init(address="local", num_cpus=cfg.resources.num_cpus, include_dashboard=False,
                 log_to_driver=True)


def stop_ray() -> None:
    """Disconnect from Ray; a private local instance (not a cluster's) stops with it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def run_search(cfg: Config, resume: bool = False, data: TrialData | None = None,
               trial_fn: Callable | None = None):
    """Run (or resume) the search of `cfg`; returns Tune's ResultGrid and the study URL.

    `data` and `trial_fn` replace the decoded data and the training trainable (the
    learning-curve replay reports a table's epochs instead of training); the searcher, the
    scheduler, the study mirror and every callback stay the real ones.
    """
    from ray import tune

    output = Path(cfg.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the classic table, with our metric columns
    check_reference(cfg)
    url, storage = storage_for(cfg, output, resume)
    # from here on the config is stored (the study, Tune's state, trial data): no password
    cfg = cfg.model_copy(update={"search": cfg.search.model_copy(
        update={"storage": without_password(cfg.search.storage)})})
    data = data or prepare_trial_data(cfg)
    build_searcher, objective = SEARCHERS[cfg.search.algorithm], objective_for(cfg)
    record_run(cfg, storage, objective, data)
    record = RecordContext(objective.metrics, cfg.scheduler.max_epochs, cfg.space,
                           len(data.classes))
    init_ray(cfg)
    resources = {"cpu": cfg.resources.cpus_per_trial, "gpu": cfg.resources.gpus_per_trial}
    trainable = tune.with_resources(
        tune.with_parameters(trial_fn or train_candidate, data=data), resources)
    ray_dir = results_path(cfg, output)
    experiment = f"{ray_dir.rstrip('/')}/{cfg.search.study}"
    if resume and tune.Tuner.can_restore(experiment):
        log.info("resuming %s", experiment)
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        searcher = build_searcher(cfg, storage, record, len(data.classes), experiment,
                                  objective)
        # Tune's state is gone but the study is not (a run folder lost with its machine, the
        # study in PostgreSQL or copied): the run goes on from the study, up to num_samples
        continued = (searcher.continue_study() if resume and isinstance(
            searcher, MirroredOptunaSearch) else None)
        if continued is not None:
            log.warning("no Tune state to resume in %s: continuing study %r, whose %d "
                        "finished trial(s) of this run count towards the %d samples; %d left "
                        "running are trained again", experiment, cfg.search.study,
                        continued[0], cfg.search.num_samples, continued[1])
        elif resume:
            log.warning("nothing to resume in %s; starting a new run", experiment)
        hyperopt = cfg.search.algorithm == "hyperopt"
        tuner = tune.Tuner(
            trainable,
            param_space=tune_domains(cfg.space) if hyperopt else None,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=make_scheduler(cfg, output, keep_state=continued is not None),
                num_samples=cfg.search.num_samples,
                max_concurrent_trials=cfg.search.max_concurrent,
                reuse_actors=cfg.resources.reuse_actors),
            run_config=tune.RunConfig(
                name=cfg.search.study, storage_path=ray_dir,
                failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures),
                # two kept: Tune forces an experiment snapshot when a trial has saved
                # num_to_keep checkpoints since the last one (a warning per snapshot at 1)
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=_callbacks(cfg, output, storage, record, objective),
                progress_reporter=_progress_reporter(), verbose=1),
        )
    results = tuner.fit()
    unwritten = drain(timeout_s=30)
    if unwritten:
        shown = "; ".join(unwritten[:10]) + (f"; and {len(unwritten) - 10} more"
                                              if len(unwritten) > 10 else "")
        raise ConnectionError(
            f"the study database {mask_url(url)} was still unreachable when the search ended: "
            f"{len(unwritten)} write(s) not in the study ({shown}). The trials' results are "
            "kept in Tune's experiment state: run the same command with --resume when the "
            "database is back, and they are written.")
    return results, url
