"""The compute ledger of a search: trial-epochs spent against every trial at the full budget."""

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tune_jobs.study.summary import compute_ledger, console_summary


def test_the_ledger_counts_what_early_stopping_saved(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="l")
    study.set_user_attr("config", {"scheduler": {"max_epochs": 9}})
    for state, epochs in ((TrialState.COMPLETE, 9), (TrialState.PRUNED, 3),
                          (TrialState.PRUNED, 1)):
        study.add_trial(create_trial(
            state=state, value=1.0 if state == TrialState.COMPLETE else None,
            params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"epochs_done": epochs, "wall_seconds": 6.0 * epochs,
                        "score": 1.0, "f1": 0.5, "latency_ratio": 0.5, "spec": None}))
    ledger = compute_ledger(study)
    assert ledger["trial_epochs"] == 13 and ledger["full_budget_epochs"] == 27
    assert ledger["trial_seconds"] == 78.0
    text = console_summary(study, {"trials": 3, "states": {"COMPLETE": 1, "PRUNED": 2}})
    assert "compute: 13 trial-epochs of the 27 that training every trial to the full " \
           "budget would cost (48 %)" in text
