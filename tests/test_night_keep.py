"""benchmarks/night_keep.py: what a night run needs to go on, kept in its results folder and
put back into a new run folder (a run folder lost with its machine)."""

import sqlite3
import sys
import threading

import optuna
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import night_keep


def _study(folder, trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="night", storage=f"sqlite:///{folder}/study.db",
                                load_if_exists=True)
    for i in range(trials):
        study.enqueue_trial({"x": float(i)})
        study.optimize(lambda t: t.suggest_float("x", 0, 100), n_trials=1)
    return study


def _values(folder) -> list:
    study = optuna.load_study(study_name="night", storage=f"sqlite:///{folder}/study.db")
    return [(t.number, t.state.name, t.params) for t in study.trials]


def test_keep_then_restore_gives_a_new_run_folder_the_study_and_its_state(tmp_path) -> None:
    run, results, again = tmp_path / "run", tmp_path / "results", tmp_path / "again"
    run.mkdir()
    _study(run, 3)
    (run / "asha-night.pkl").write_bytes(b"rungs")
    (run / "search.done").touch()
    (run / "final").mkdir()
    (run / "final" / "trainings.jsonl").write_text('{"name": "searched"}\n')
    (run / "ray").mkdir()  # Tune's state: not kept
    kept = night_keep.keep(run, results)
    assert kept == ["study.db", "asha-night.pkl", "search.done", "trainings.jsonl"]
    (results / "stages.tsv").write_text("search\t...\n")  # night.sh writes it there
    assert night_keep.restore(again, results) == ["study.db", "asha-night.pkl", "search.done",
                                                  "stages.tsv", "trainings.jsonl"]
    assert _values(again) == _values(run) and len(_values(run)) == 3
    assert (again / "asha-night.pkl").read_bytes() == b"rungs"
    assert (again / "final" / "trainings.jsonl").read_text() == '{"name": "searched"}\n'
    assert not (again / "ray").exists()


def test_keep_copies_the_study_consistently_while_it_is_written(tmp_path) -> None:
    """The backup API, not a file copy: every kept copy opens, whatever the writer did."""
    run, results = tmp_path / "run", tmp_path / "results"
    run.mkdir()
    _study(run, 1)
    writer = threading.Thread(target=_study, args=(run, 40))
    writer.start()
    copies = 0
    while writer.is_alive() or copies == 0:
        night_keep.keep(run, results)
        with sqlite3.connect(results / "study.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        copies += 1
    writer.join()
    night_keep.keep(run, results)
    assert _values(results) == _values(run) and len(_values(run)) == 41


def test_restore_never_overwrites_a_run_folder_and_needs_a_kept_study(tmp_path) -> None:
    run, results = tmp_path / "run", tmp_path / "results"
    run.mkdir()
    _study(run, 1)
    with pytest.raises(SystemExit, match=r"run/study.db exists: a run folder with its own "
                                         "study is resumed as it is"):
        night_keep.restore(run, results)
    with pytest.raises(SystemExit, match=r"results: no study.db kept to restore from"):
        night_keep.restore(tmp_path / "new", results)
