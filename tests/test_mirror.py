"""The searcher's restore after a killed driver, with a real SQLite study."""

import math

import optuna
import pytest
from optuna.trial import TrialState

from tune_jobs.config import load_config
from tune_jobs.internals import searcher_study
from tune_jobs.study.mirror import MirroredOptunaSearch, RecordContext
from tune_jobs.study.storage import open_storage
from tune_jobs.trial.space import define_by_run


def _searcher(url: str, cfg) -> MirroredOptunaSearch:
    record = RecordContext(("score",), cfg.scheduler.max_epochs, cfg.space, 6)
    return MirroredOptunaSearch(space=define_by_run(cfg.space, 6), metric="score", mode="min",
                                storage=open_storage(url), study_name="m", record=record,
                                run_id="run-1")


def test_restore_leaves_trials_finished_after_the_last_save_alone(tmp_path) -> None:
    """The driver saved its searcher, then finished trial A in the study and died while B ran
    and C was asked but never saved. After restore, Tune re-runs A (its state file said
    RUNNING): its results must not touch the finished record; C is adopted, not duplicated."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = load_config("ci.yaml")
    url = f"sqlite:///{tmp_path}/s.db"
    first = _searcher(url, cfg)
    first.suggest("A")
    first.suggest("B")
    first.save(str(tmp_path / "searcher.pkl"))
    first.on_trial_result("A", {"score": 1.0, "training_iteration": 1})
    first.on_trial_complete("A", {"score": 1.0, "training_iteration": 1, "epoch": 1,
                                  "outcome": "trained"})
    first.suggest("C")  # asked after the save: an orphan once the driver dies

    again = _searcher(url, cfg)
    again.restore(str(tmp_path / "searcher.pkl"))
    again.on_trial_result("A", {"score": 0.5, "training_iteration": 1})  # must not raise
    again.on_trial_complete("A", {"score": 0.5, "training_iteration": 3, "epoch": 3,
                                  "outcome": "trained"})
    again.suggest("D")  # takes over C instead of asking Optuna for a new trial
    study = optuna.load_study(study_name="m", storage=open_storage(url))
    assert len(study.trials) == 3
    a = study.trials[0]
    assert a.state == TrialState.PRUNED and a.intermediate_values == {1: 1.0}
    assert again._ot_trials["D"]._trial_id == study.trials[2]._trial_id


def test_a_driver_killed_right_after_an_ask_leaves_a_trial_the_resume_adopts(
        tmp_path, monkeypatch) -> None:
    """The kill lands between the new trial's insert and anything after it (here: in the
    sampler's `before_trial`, which Optuna calls right after the insert). The trial must
    already carry its run, or no resume adopts it and it stays RUNNING for ever (a CI run of
    the SIGKILL resume test ended so)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = load_config("ci.yaml")
    url = f"sqlite:///{tmp_path}/s.db"
    first = _searcher(url, cfg)
    first.suggest("A")
    first.save(str(tmp_path / "searcher.pkl"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("SIGKILL")

    monkeypatch.setattr(first._ot_study.sampler, "before_trial", killed)
    with pytest.raises(KeyboardInterrupt):
        first.suggest("B")
    study = optuna.load_study(study_name="m", storage=open_storage(url))
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 2
    assert study.trials[1].user_attrs == {"run": "run-1"}

    again = _searcher(url, cfg)
    again.restore(str(tmp_path / "searcher.pkl"))
    again.suggest("C")  # the orphan, not a new trial
    study = optuna.load_study(study_name="m", storage=open_storage(url))
    assert len(study.trials) == 2
    assert again._ot_trials["C"]._trial_id == study.trials[1]._trial_id
    assert study.trials[1].params


def test_a_trial_asked_and_finished_after_the_last_save_is_not_replaced(tmp_path) -> None:
    """The driver saved its searcher knowing A and B, then asked for C, finished it in the
    study and died. Tune restores knowing two trials and asks for a third: the study already
    holds the run's three, so the searcher says it is finished instead of adding a fourth."""
    from ray.tune.search import Searcher

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = load_config("ci.yaml")
    url = f"sqlite:///{tmp_path}/s.db"

    def searcher() -> MirroredOptunaSearch:
        record = RecordContext(("score",), 1, cfg.space, 6)
        return MirroredOptunaSearch(space=define_by_run(cfg.space, 6), metric="score",
                                    mode="min", storage=open_storage(url), study_name="m",
                                    record=record, run_id="run-1", num_samples=3)

    first = searcher()
    first.suggest("A")
    first.suggest("B")
    first.save(str(tmp_path / "searcher.pkl"))
    first.suggest("C")
    first.on_trial_complete("C", {"score": 1.0, "training_iteration": 1, "epoch": 1,
                                  "outcome": "trained"})
    again = searcher()
    again.restore(str(tmp_path / "searcher.pkl"))
    assert again.suggest("D") == Searcher.FINISHED
    study = optuna.load_study(study_name="m", storage=open_storage(url))
    assert len(study.trials) == 3
    # without the lost trial the replacement is asked for as usual
    other = searcher()
    other.restore(str(tmp_path / "searcher.pkl"))
    other._num_samples = 4
    assert isinstance(other.suggest("E"), dict)


TWO_CANDIDATES = [  # the ci space cut to two candidates: only the optimizer is drawn
    "space.slots=[{blocks: [conv], out: [8], stride: [2], repeat: [1], kernel: [3], "
    "expansion: [2.0], se: [false], act: [relu]}]", "space.head.channels=[64]",
    "space.width=[1.0]", "space.train.lr=[0.01]", "space.train.augment_magnitude=[0.0]"]


def test_a_duplicate_proposal_reuses_the_finished_result_and_trains_nothing(tmp_path) -> None:
    """On a two-candidate space every proposal after the first trial is either the other
    candidate or a duplicate: duplicates are told with the first trial's result (marked,
    no epochs), do not use up a sample, and the searcher hands Tune the other candidate."""
    from ray.tune.search import Searcher

    from tune_jobs.study.ranking import best_complete
    from tune_jobs.study.summary import compute_ledger

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = load_config("ci.yaml", TWO_CANDIDATES)
    url = f"sqlite:///{tmp_path}/s.db"
    record = RecordContext(("score",), 1, cfg.space, 6)
    searcher = MirroredOptunaSearch(
        space=define_by_run(cfg.space, 6), metric="score", mode="min",
        sampler=optuna.samplers.RandomSampler(seed=5), storage=open_storage(url),
        study_name="m", record=record, run_id="run-1", num_samples=2)
    first = searcher.suggest("A")
    searcher.on_trial_complete("A", {"score": 1.0, "training_iteration": 1, "epoch": 1,
                                     "outcome": "trained"})
    second = searcher.suggest("B")
    assert first["train"]["optimizer"] != second["train"]["optimizer"]
    study = optuna.load_study(study_name="m", storage=open_storage(url))
    copies = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert copies, "seed 5 draws the first candidate again at least once"
    a = study.trials[0]
    for t in copies:
        assert (t.state, t.value, t.params) == (TrialState.COMPLETE, 1.0, a.params)
        assert t.user_attrs["duplicate_of"] == a.number and t.user_attrs["epochs_done"] == 0
    assert searcher.suggest("C") == Searcher.FINISHED  # two trainings: the copies are free
    searcher.on_trial_complete("B", {"score": 2.0, "training_iteration": 1, "epoch": 1,
                                     "outcome": "trained"})
    study = optuna.load_study(study_name="m", storage=open_storage(url))
    assert best_complete(study).number == a.number
    ledger = compute_ledger(study)
    assert (ledger["trial_epochs"], ledger["duplicates"]) == (2, len(copies))


def test_with_one_candidate_the_duplicate_is_trained_after_the_redraws(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = load_config("ci.yaml", [*TWO_CANDIDATES, "space.train.optimizer=[sgd]"])
    url = f"sqlite:///{tmp_path}/s.db"
    searcher = MirroredOptunaSearch(
        space=define_by_run(cfg.space, 6), metric="score", mode="min",
        storage=open_storage(url), study_name="m", run_id="run-1",
        record=RecordContext(("score",), 1, cfg.space, 6))
    searcher.MAX_REDRAWS = 3
    searcher.suggest("A")
    searcher.on_trial_complete("A", {"score": 1.0, "training_iteration": 1, "epoch": 1,
                                     "outcome": "trained"})
    assert isinstance(searcher.suggest("B"), dict)  # the space has nothing else to offer
    study = optuna.load_study(study_name="m", storage=open_storage(url))
    assert [("duplicate_of" in t.user_attrs) for t in study.trials] == [False, *[True] * 3,
                                                                         False]
    no_dedupe = MirroredOptunaSearch(
        space=define_by_run(cfg.space, 6), metric="score", mode="min",
        storage=open_storage(f"sqlite:///{tmp_path}/t.db"), study_name="m", run_id="run-1",
        record=RecordContext(("score",), 1, cfg.space, 6), deduplicate=False)
    no_dedupe.suggest("A")
    no_dedupe.on_trial_complete("A", {"score": 1.0, "training_iteration": 1, "epoch": 1,
                                      "outcome": "trained"})
    no_dedupe.suggest("B")
    assert len(no_dedupe._ot_study.trials) == 2


def test_an_ask_cut_off_by_a_database_outage_is_adopted_not_made_twice(tmp_path,
                                                                        monkeypatch) -> None:
    """`study.ask()` whose insert committed but whose answer was lost (the database stopped
    in between: seen in the 60 s outage test, which then ended with 9 trials for 8 samples,
    one RUNNING for ever): the next suggestion adopts that trial instead of asking again."""
    import sqlalchemy.exc

    from tune_jobs.internals import searcher_study
    from tune_jobs.study import writes

    monkeypatch.setattr(writes, "RETRY_S", 0.0)
    cfg = load_config("ci.yaml")
    record = RecordContext(("score",), cfg.scheduler.max_epochs, cfg.space, 6)
    searcher = MirroredOptunaSearch(
        space=define_by_run(cfg.space, 6), metric="score", mode="min",
        storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"), study_name="cut",
        record=record, run_id="run-1", num_samples=2)
    storage = searcher_study(searcher)._storage
    create = storage.create_new_trial

    def committed_then_cut_off(*args, **kwargs):
        create(*args, **kwargs)
        raise sqlalchemy.exc.OperationalError("SELECT ...", {}, ConnectionError("server closed"))

    monkeypatch.setattr(storage, "create_new_trial", committed_then_cut_off)
    assert searcher.suggest("A") is None  # the database "went away" during the ask
    monkeypatch.setattr(storage, "create_new_trial", create)
    assert isinstance(searcher.suggest("A"), dict)
    assert isinstance(searcher.suggest("B"), dict)
    assert searcher.suggest("C") == "FINISHED"  # two samples, two trials
    trials = optuna.load_study(study_name="cut", storage=open_storage(
        f"sqlite:///{tmp_path / 's.db'}")).get_trials()
    assert len(trials) == 2
    assert all(t.params and t.user_attrs.get("run") == "run-1" for t in trials)


def test_the_gp_searcher_models_the_values_every_trial_draws(tmp_path) -> None:
    """`search.algorithm: gp` through the real searcher path: after its startup trials the GP
    proposes the values every trial draws (its relative space: the recipe, each slot's block)
    and leaves a chosen block's own arguments, which define-by-run asks only when that block
    is drawn, to its random fallback; every trial lands in the study in the usual shape."""
    from tune_jobs.searchjob import SCORE, SEARCHERS

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cfg = load_config("ci.yaml", ["search.algorithm=gp", "search.num_samples=14"])
    url = f"sqlite:///{tmp_path}/gp.db"
    record = RecordContext(("score",), 1, cfg.space, 6)
    searcher = SEARCHERS["gp"](cfg, open_storage(url), record, 6, "run-1", SCORE)
    sampler = searcher_study(searcher).sampler
    assert isinstance(sampler, optuna.samplers.GPSampler)
    for i in range(14):
        config = searcher.suggest(f"t{i}")
        lr = config["train"]["lr"]
        searcher.on_trial_complete(f"t{i}", {"score": abs(math.log10(lr) + 2.5),
                                             "training_iteration": 1, "epoch": 1,
                                             "outcome": "trained", "config": config})
    study = optuna.load_study(study_name=cfg.search.study, storage=open_storage(url))
    trials = study.get_trials()
    assert len(trials) == 14 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all("spec" in t.user_attrs for t in trials)
    modelled = sampler.infer_relative_search_space(study, trials[-1])
    assert "train/lr" in modelled and "s0/type" in modelled
    conditional = {name for t in trials for name in t.params} - set(modelled)
    asked_sometimes = {name for name in conditional
                       if not all(name in t.params for t in trials)}
    assert asked_sometimes, "the ci space has block arguments only some trials draw"
    assert not asked_sometimes & set(modelled)
