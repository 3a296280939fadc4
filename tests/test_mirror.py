"""The searcher's restore after a killed driver, with a real SQLite study."""

import optuna
from optuna.trial import TrialState

from tune_jobs.config import load_config
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
