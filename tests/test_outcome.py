"""One rule from a trial's outcome to its state, shared by the mirror, the recorder and the
live metrics."""

import pytest
from optuna.trial import TrialState

from tune_jobs.outcome import BUDGET, Outcome, budget_of, epochs_done, outcome_of, trial_state
from tune_jobs.study.live import final_state
from tune_jobs.study.mirror import RecordContext, record_for

CTX = RecordContext(("score",), max_epochs=9, space=None, num_classes=6)
CASES = [  # (last result, worker died, expected state)
    ({"outcome": "trained", "epoch": 9, "score": 0.9}, False, TrialState.COMPLETE),
    ({"outcome": "trained", "epoch": 3, "score": 0.9}, False, TrialState.PRUNED),
    ({"outcome": "over_budget", "epoch": 0, "score": 1.2}, False, TrialState.PRUNED),
    ({"outcome": "nan_loss", "epoch": -1, "score": 1.2}, False, TrialState.FAIL),
    ({"outcome": "oom", "epoch": -1, "score": 1.2}, False, TrialState.FAIL),
    ({"outcome": "error", "epoch": -1, "score": 1.2}, False, TrialState.FAIL),
    ({"epoch": 9, "score": 0.9}, False, TrialState.PRUNED),  # no outcome: never COMPLETE
    ({"outcome": "made-up", "epoch": 9, "score": 0.9}, False, TrialState.PRUNED),
    ({"outcome": "trained", "epoch": 4, "score": 0.9}, True, TrialState.FAIL),
    (None, True, TrialState.FAIL),
]


@pytest.mark.parametrize(("last", "error", "state"), CASES)
def test_mirror_and_live_metrics_read_an_outcome_alike(last, error, state) -> None:
    record = record_for(last, error, CTX)
    assert record.state == state
    names = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned",
             TrialState.FAIL: "failed"}
    if not error:
        assert final_state(last, CTX.max_epochs) == names[state]
    assert record.user_attrs["outcome"] in {o.value for o in Outcome}


def test_labels_and_reasons() -> None:
    stopped = record_for({"outcome": "trained", "epoch": 3, "score": 0.9}, False, CTX)
    assert stopped.user_attrs["outcome"] == Outcome.STOPPED_EARLY
    assert stopped.user_attrs["reason"] == "stopped by the scheduler after 3 epoch(s)"
    assert stopped.values == [0.9]  # a PRUNED trial keeps its last value for the recorder
    lost = record_for({"outcome": "trained", "epoch": 4}, True, CTX)
    assert lost.user_attrs["outcome"] == "worker_lost" and "4 epoch(s)" in \
        lost.user_attrs["reason"]
    unknown = record_for({"epoch": 9, "score": 0.9}, False, CTX)
    assert unknown.user_attrs["outcome"] == "unknown"
    assert "no outcome" in unknown.user_attrs["reason"]
    no_value = record_for({"outcome": "trained", "epoch": 9}, False, CTX)
    assert no_value.state == TrialState.PRUNED and "lacks score" in no_value.user_attrs["reason"]
    failed = record_for({"outcome": "error", "epoch": -1, "traceback": "Traceback..."}, False,
                        CTX)
    assert failed.values is None and failed.user_attrs["traceback"] == "Traceback..."


def test_outcome_parsing() -> None:
    assert outcome_of({"outcome": "oom"}) is Outcome.OOM
    assert outcome_of(None) is Outcome.UNKNOWN and outcome_of({}, error=True) is \
        Outcome.WORKER_LOST
    assert trial_state(Outcome.TRAINED, 9, 9) == TrialState.COMPLETE
    assert epochs_done({"epoch": -1}) == 0 and epochs_done({"epoch": float("nan")}) == 0
    assert epochs_done({"epoch": 4.0}) == 4 and epochs_done(None) == 0
    assert str(Outcome.TRAINED) == "trained" and Outcome.TRAINED == "trained"


def test_a_trial_stopped_at_the_budget_pasha_gave_it_is_complete() -> None:
    """PASHA writes the epochs it gave a trial into its last result: trained that far, the
    trial is COMPLETE at them (with its values); without that word, 3 of 9 epochs is PRUNED."""
    last = {"outcome": "trained", "epoch": 3, "score": 0.4, BUDGET: 3}
    assert budget_of(last, 9) == 3 and budget_of(None, 9) == 9
    record = record_for(last, False, CTX)
    assert record.state == TrialState.COMPLETE and record.values == [0.4]
    assert record.user_attrs[BUDGET] == 3
    assert final_state(last, 9) == "completed"
    del last[BUDGET]
    assert record_for(last, False, CTX).state == TrialState.PRUNED
