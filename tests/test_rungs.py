"""ASHA's and PASHA's rungs survive a driver restart (ray issue 30838: `Tuner.restore`
brings back the scheduler as it was at the run's start)."""

import pickle
from types import SimpleNamespace

from tune_jobs.outcome import BUDGET
from tune_jobs.schedulers import ResumableASHA, ResumablePASHA


def _results():
    """Eight trials, reported round-robin over six epochs; trial i scores i * 0.1 + epoch."""
    return [(f"t{i}", epoch, 0.1 * i + 0.01 * epoch) for epoch in range(1, 7)
            for i in range(8)]


def _feed(sched, results, stopped: set, added: set) -> list[str]:
    actions = []
    for trial_id, epoch, value in results:
        if trial_id in stopped:
            continue
        trial = SimpleNamespace(trial_id=trial_id)
        if trial_id not in added:
            sched.on_trial_add(None, trial)
            added.add(trial_id)
        action = sched.on_trial_result(None, trial, {"training_iteration": epoch,
                                                     "f1": value})
        actions.append(f"{trial_id}@{epoch}:{action}")
        if action == "STOP":
            stopped.add(trial_id)
    return actions


def _asha(tmp_path):
    return ResumableASHA(state_file=str(tmp_path / "asha.pkl"), time_attr="training_iteration",
                         metric="f1", mode="max", max_t=6, grace_period=1, reduction_factor=2)


def test_a_restored_scheduler_stops_what_an_uninterrupted_one_stops(tmp_path) -> None:
    whole = _feed(_asha(tmp_path / "a"), _results(), set(), set())
    assert any(a.endswith("STOP") for a in whole)

    (tmp_path / "b").mkdir()
    first = _asha(tmp_path / "b")
    at_start = pickle.dumps(first)  # what Tune keeps in tuner.pkl when the run starts
    results = _results()
    stopped, added = set(), set()
    before = _feed(first, results[:20], stopped, added)
    restored = pickle.loads(at_start)  # --resume: Tune unpickles the run's first scheduler
    after = _feed(restored, results[20:], stopped, set())  # and adds the restored trials
    assert before + after == whole
    assert "None" not in restored.debug_string().split("Bracket:")[1].split("|")[-1]


def test_a_new_run_starts_with_empty_rungs(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    _feed(_asha(tmp_path / "a"), _results()[:20], set(), set())
    fresh = _asha(tmp_path / "a")  # same run folder, a new search (not --resume)
    assert "Iter 1.000: None" in fresh.debug_string()


def test_state_is_written_when_a_rung_records_not_between_rungs(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    sched, stopped, added = _asha(tmp_path / "a"), set(), set()
    _feed(sched, _results()[:16], stopped, added)  # epochs 1 and 2: rungs 1 and 2 record
    state_file = tmp_path / "a" / "asha.pkl"
    saved, inode = state_file.read_bytes(), state_file.stat().st_ino  # each write: a new file
    alive = next(f"t{i}" for i in range(7, -1, -1) if f"t{i}" not in stopped)
    _feed(sched, [(alive, 3, 0.9)], stopped, added)  # epoch 3: no rung there, no write
    assert state_file.stat().st_ino == inode
    _feed(sched, [(alive, 4, 0.9)], stopped, added)  # epoch 4: rung 4 records it
    assert state_file.read_bytes() != saved
    assert pickle.loads(state_file.read_bytes())["_num_stopped"] == sched._num_stopped


def _pasha(tmp_path):
    return ResumablePASHA(state_file=str(tmp_path / "pasha.pkl"), metric="f1", mode="max",
                          max_t=6, grace_period=1, reduction_factor=2)


def test_a_restored_pasha_stops_what_an_uninterrupted_one_stops(tmp_path) -> None:
    """F1 (maximised) ranks the trials alike at every epoch: PASHA's maximum stays at its
    second rung, epoch 2, before and after a restore."""
    whole_sched = _pasha(tmp_path / "a")
    whole = _feed(whole_sched, _results(), set(), set())
    assert whole_sched.rungs.budget == 2 and not any(a.startswith(("t0@3", "t7@3"))
                                                     for a in whole)
    (tmp_path / "b").mkdir()
    first = _pasha(tmp_path / "b")
    at_start = pickle.dumps(first)
    results, stopped = _results(), set()
    before = _feed(first, results[:12], stopped, set())
    restored = pickle.loads(at_start)
    assert before + _feed(restored, results[12:], stopped, set()) == whole
    assert restored.rungs.budget == 2 and "maximum 2 of 6 epochs" in restored.debug_string()


def test_pasha_tells_the_study_the_budget_a_trial_was_given(tmp_path) -> None:
    """The trial it stopped at the maximum carries that budget in its last result, which Tune
    hands to the searcher right after; a trial stopped at a rung's cutoff does not."""
    sched, stopped = _pasha(tmp_path), set()
    best_first = [(f"t{i}", epoch, 0.1 * i) for epoch in (1, 2) for i in range(7, -1, -1)]
    _feed(sched, best_first, stopped, set())  # t6 is worse than t7 at rung 1: cut there
    done_at_budget, cut = "t7", "t6"
    assert {done_at_budget, cut} <= stopped
    for trial_id in (done_at_budget, cut):
        trial = SimpleNamespace(trial_id=trial_id, last_result={"epoch": 2})
        sched.on_trial_complete(None, trial, {})
        assert (BUDGET in trial.last_result) == (trial_id == done_at_budget)
    assert sched.rungs.done_at[done_at_budget] == 2
