"""benchmarks/night_clock.py: a night run's wall time, one line per segment, including the
segments that never ended (killed, machine lost), counted up to their last tick."""

import shutil
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import night_clock
import night_keep

T0 = 1_796_000_000.0  # 2026-11-29T...Z, any fixed instant


def _lines(run) -> list[list[str]]:
    return [line.split("\t") for line in (run / "stages.tsv").read_text().splitlines()]


def test_a_segment_that_ends_is_one_line_with_its_exit_status(tmp_path) -> None:
    assert night_clock.start(tmp_path, "search", now=T0) is None
    night_clock.tick(tmp_path, now=T0 + 60)
    night_clock.stop(tmp_path, 0, now=T0 + 125)
    night_clock.start(tmp_path, "final", now=T0 + 200)
    night_clock.stop(tmp_path, 1, now=T0 + 260)
    assert [(r[0], r[3], r[4]) for r in _lines(tmp_path)] == [("search", "125", "0"),
                                                              ("final", "60", "1")]
    assert _lines(tmp_path)[0][1:3] == [night_clock._utc(T0), night_clock._utc(T0 + 125)]
    assert not (tmp_path / night_clock.OPEN).exists()


def test_a_segment_never_stopped_is_closed_as_lost_at_its_last_tick(tmp_path) -> None:
    night_clock.start(tmp_path, "search", now=T0)
    night_clock.tick(tmp_path, now=T0 + 60)
    night_clock.tick(tmp_path, now=T0 + 3600)  # ... then the process is killed
    lost = night_clock.start(tmp_path, "search", now=T0 + 9000)  # the run is started again
    assert lost is not None and lost.endswith("\t3600\t137")
    night_clock.stop(tmp_path, 0, now=T0 + 9100)
    assert [(r[0], r[3], r[4]) for r in _lines(tmp_path)] == [("search", "3600", "137"),
                                                              ("search", "100", "0")]


def test_a_lost_run_folder_gets_its_open_segment_back_and_no_ended_one_twice(tmp_path) -> None:
    """keep + restore carry the open segment; after its stop the kept copy goes too, so a
    later restore does not count it again."""
    run, results, again = tmp_path / "run", tmp_path / "results", tmp_path / "again"
    run.mkdir()
    (run / "study.db").write_bytes(b"")  # an empty SQLite file: a study with no tables
    night_clock.start(run, "search", now=T0)
    night_clock.stop(run, 0, now=T0 + 50)
    night_clock.start(run, "final", now=T0 + 60)
    night_clock.tick(run, now=T0 + 660)
    assert "stage.open" in night_keep.keep(run, results)
    night_clock.tick(run, now=T0 + 700)  # after the last keep: lost with the folder
    night_keep.restore(again, results)
    night_clock.start(again, "final", now=T0 + 5000)
    assert [(r[0], r[3], r[4]) for r in _lines(again)] == [("search", "50", "0"),
                                                           ("final", "600", "137")]
    night_clock.stop(run, 0, now=T0 + 800)  # the original folder's segment ends after all
    night_keep.keep(run, results)
    assert not (results / "stage.open").exists()
    assert len(_lines(results)) == 2


def test_a_lost_run_folder_gets_its_finished_trainings_and_metrics_back(tmp_path) -> None:
    """What another run's `--reuse-from` reads comes back into final/: the trainings so far,
    and a finished final job's metrics.json (each baseline's chosen recipe)."""
    run, results, again = tmp_path / "run", tmp_path / "results", tmp_path / "again"
    (run / "final").mkdir(parents=True)
    (run / "study.db").write_bytes(b"")
    (run / "final" / "trainings.jsonl").write_text('{"name": "a"}\n')
    assert "trainings.jsonl" in night_keep.keep(run, results)
    assert night_keep.restore(again, results)[-1] == "trainings.jsonl"
    assert not (again / "final" / "metrics.json").exists()
    (results / "metrics.json").write_text("{}")  # night.sh copies it when the job ends
    shutil.rmtree(again)
    assert night_keep.restore(again, results)[-2:] == ["trainings.jsonl", "metrics.json"]
    assert (again / "final" / "trainings.jsonl").read_text() == '{"name": "a"}\n'
    assert (again / "final" / "metrics.json").read_text() == "{}"


def test_a_damaged_open_segment_names_its_file_and_what_to_do(tmp_path) -> None:
    (tmp_path / "stage.open").write_text('{"stage": "search", "start": ')
    with pytest.raises(SystemExit, match=r"stage.open: not an open segment.*by hand"):
        night_clock.start(tmp_path, "search")
    with pytest.raises(SystemExit, match="no open segment to stop"):
        night_clock.stop(tmp_path / "elsewhere", 0)


def test_the_command_line_reports_a_lost_segment(tmp_path) -> None:
    script = [sys.executable, str(REPO / "benchmarks" / "night_clock.py")]
    subprocess.run([*script, "start", str(tmp_path), "search"], check=True)
    subprocess.run([*script, "tick", str(tmp_path)], check=True)
    again = subprocess.run([*script, "start", str(tmp_path), "search"], check=True,
                           capture_output=True, text=True)
    assert "closed as lost" in again.stdout
    subprocess.run([*script, "stop", str(tmp_path), "3"], check=True)
    assert [(r[0], r[4]) for r in _lines(tmp_path)] == [("search", "137"), ("search", "3")]
