"""The search as a person runs it: `tune_jobs/search.py` in its own process with its own local
Ray, the console it prints, its clear errors, a kill and a Ctrl+C mid-search and the resume.
(Apart from test_search.py, whose tests share one simulated Ray cluster in-process, so that
the two halves run on two pytest-xdist workers side by side.)"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import REPO

# Real Ray searches and trainings: the slow lane (`pytest -m slow`; all of it in CI).
pytestmark = pytest.mark.slow


def _search(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "tune_jobs" / "search.py"), *args]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # a hang guard, not a speed check (these calls end before Ray starts); under
    # pytest-timeout's 600 s so that the child is killed and its output shown
    return subprocess.run(_search(*args), capture_output=True, text=True, timeout=420,
                          cwd=REPO, env={**os.environ, **(env or {})})


def test_unreachable_database_fails_fast_with_masked_password(tmp_path) -> None:
    """Refused before Ray starts (`_cli`'s timeout bounds the wait; speed lives in
    benchmarks/), with the password masked."""
    out = _cli("--config", "configs/ci.yaml", "--output", str(tmp_path),
               "--storage", "postgresql://bob:hunter2@127.0.0.1:9/nodb")
    assert out.returncode == 2
    assert "bob:***@127.0.0.1:9" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout
    assert "Started a local Ray instance" not in out.stdout + out.stderr


RAY_SHUTDOWN_NOISE = re.compile(r"Traceback \(most recent call last\):(?:(?!Traceback).)*?"
                                r"sigterm_handler(?:(?!Traceback).)*?SystemExit: 1", re.S)


def test_unknown_config_key_and_empty_data_are_clear_errors(tmp_path) -> None:
    out = _cli("--config", "configs/ci.yaml", "--set", "search.numsamples=3")
    assert out.returncode == 2 and "search.numsamples: unknown key" in out.stderr
    (tmp_path / "empty").mkdir()
    out = _cli("--config", "configs/ci.yaml", "--output", str(tmp_path / "run"),
               "--data", str(tmp_path / "empty"))
    assert out.returncode == 2 and "no class folders" in out.stderr
    # a class left with no usable image after the skips: the same kind of error, before Ray
    from test_dataset import _too_little

    root = _too_little(tmp_path / "few")
    out = _cli("--config", "configs/ci.yaml", "--output", str(tmp_path / "run2"),
               "--data", str(root))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "A: 0 usable of 3 image file(s)" in out.stderr
    assert "Started a local Ray instance" not in out.stdout + out.stderr


def _finished(db: Path, study: str) -> int:
    try:
        s = optuna.load_study(study_name=study, storage=f"sqlite:///{db}")
    except Exception:
        return 0
    return sum(t.state.is_finished() for t in s.trials)


def _assert_clean_console(text: str) -> None:
    """What a person reads: the trial table, our log lines, the summary; Ray's warnings once
    at most, no worker traceback, no per-checkpoint lines."""
    # Ray ends reused trial workers with SIGTERM; its handler raises SystemExit, and when that
    # lands inside a weakref callback Python prints it as ignored: Ray's shutdown, not a trial
    text = RAY_SHUTDOWN_NOISE.sub("", text)
    assert "Traceback" not in text and "SystemExit" not in text, text[-3000:]
    assert "Checkpoint successfully created" not in text
    warnings = [re.sub(r"^[\d-]+ [\d:,]+\s+", "", line) for line in text.splitlines()
                if "WARNING" in line]
    repeated = {w for w in warnings if warnings.count(w) > 1}
    assert not repeated, repeated


def test_a_killed_search_resumes_in_its_folder_or_from_its_study_alone(tmp_path,
                                                                       cache_dir) -> None:
    """SIGKILL the whole driver (and its local Ray) mid-search, then go on two ways from the
    same killed run (one search, the first half shared):

    - a copy of the run folder without Tune's experiment folder, with the original out of
      reach (a machine given back; the study and the rung state kept, restored into another
      folder): --resume goes on from the study, the trials left running trained again;
    - the run folder itself: --resume restores Tune's state and ASHA's rungs.

    Each ends with exactly num_samples trainings, none lost, none twice; the consoles (the
    fresh run's up to the kill, the resumed one's to its summary) are clean."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    run, copy, away = tmp_path / "run", tmp_path / "copy", tmp_path / "away"
    args = ["--config", "configs/ci.yaml", "--study", "killed", "--num-samples", "8",
            "--set", f"data.cache_dir={cache_dir}"]
    env = {**os.environ, "LITESEARCH_STORAGE": ""}
    log = tmp_path / "first.txt"
    with log.open("w") as f:
        proc = subprocess.Popen(_search(*args, "--output", str(run)), cwd=REPO, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    db = run / "study.db"
    # a busy two-core machine took over 120 s for three trials: killed before any trial had
    # reached a rung, the resume had no rungs to bring back (a CI run failed so)
    deadline = time.monotonic() + 180  # + the two resumes' 200 s each: inside pytest's 600 s
    while _finished(db, "killed") < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, ("the search ended before it could be interrupted: "
                                 + log.read_text()[-3000:])
    assert _finished(db, "killed") >= 3, "no three trials finished in 180 s"
    os.killpg(proc.pid, 9)
    proc.wait()
    _assert_clean_console(log.read_text())
    before = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}").trials
    assert len(before) < 8 or any(not t.state.is_finished() for t in before)
    kept = {t.number: (t.state, t.values) for t in before if t.state.is_finished()}

    # the folder lost: a copy without Tune's folder, the original (where the study's trial
    # folders point) out of reach while the copy resumes
    shutil.copytree(run, copy, ignore=lambda d, names: ["ray"] if Path(d) == run else [])
    run.rename(away)
    out = subprocess.run(_search(*args, "--output", str(copy), "--resume"), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=200)
    away.rename(run)
    assert out.returncode == 0, out.stderr[-3000:]
    said = re.search(r"continuing study 'killed', whose (\d+) finished trial\(s\) of this run "
                     r"count towards the 8 samples; (\d+) left running", out.stderr)
    assert said, out.stderr[-3000:]
    assert int(said.group(1)) == sum(t.state.is_finished() and "duplicate_of" not in t.user_attrs
                                     for t in before)
    assert int(said.group(2)) == sum(t.state == TrialState.RUNNING for t in before)
    # the rungs so far came back from the run folder: the first status already has a cutoff
    bracket = next(line for line in out.stdout.splitlines() if line.startswith("Bracket:"))
    assert "None" not in bracket.split("|")[-1], bracket
    _assert_trained_once(copy / "study.db", kept, out)

    # the folder kept: Tune's state and ASHA's rungs come back with the driver (ray issue
    # 30838: Tune alone restores them empty)
    out = subprocess.run(_search(*args, "--output", str(run), "--resume"), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=200)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "best COMPLETE trial" in out.stdout
    _assert_clean_console(out.stdout + out.stderr)
    bracket = next(line for line in out.stdout.splitlines() if line.startswith("Bracket:"))
    assert "None" not in bracket, bracket
    _assert_trained_once(db, kept, out)


def _assert_trained_once(db: Path, kept: dict, out: subprocess.CompletedProcess) -> None:
    """Every trial finished, those finished before the kill unchanged, and exactly 8
    trainings in distinct trial folders (a reused duplicate proposal is recorded but trains
    nothing, and does not count towards num_samples)."""
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
    unfinished = [(t.number, t.state.name, t.params, t.user_attrs) for t in study.trials
                  if not t.state.is_finished()]
    assert not unfinished, (unfinished, out.stdout[-3000:], out.stderr[-3000:])
    assert {t.number: (t.state, t.values) for t in study.trials if t.number in kept} == kept
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 8, [(t.number, t.params, t.user_attrs) for t in study.trials]
    assert len({t.user_attrs["trial_dir"] for t in trained}) == 8


def test_ctrl_c_then_final_says_the_search_is_partial(tmp_path, cache_dir) -> None:
    """Ctrl+C (SIGINT to the driver) mid-search with --final: Tune saves its state and returns
    as if it had ended; the console says how many trials finished of how many, that --resume
    finishes it, and the final job goes on with the COMPLETE trials so far."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    args = ["--config", "configs/ci.yaml", "--output", str(tmp_path), "--study", "ctrlc",
            "--num-samples", "12", "--set", f"data.cache_dir={cache_dir}",
            "--set", "final.int8=false", "--final"]
    env = {**os.environ, "LITESEARCH_STORAGE": ""}
    logs = {name: open(tmp_path / f"{name}.txt", "w+") for name in ("out", "err")}  # noqa: SIM115
    proc = subprocess.Popen(_search(*args), cwd=REPO, env=env, stdout=logs["out"],
                            stderr=logs["err"], start_new_session=True)
    db, deadline = tmp_path / "study.db", time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name="ctrlc", storage=f"sqlite:///{db}")
            if any(t.state == TrialState.COMPLETE for t in study.trials):
                break
        except Exception:  # the study is not there yet
            pass
        time.sleep(0.5)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
    for f in logs.values():
        f.close()
    out, err = ((tmp_path / f"{name}.txt").read_text() for name in ("out", "err"))
    assert proc.returncode == 0, err[-3000:]
    assert "best COMPLETE trial: #" in out
    said = re.search(r"the search stopped early: (\d+) of 12 trials finished, (\d+) COMPLETE\. "
                     r"Run the same command with --resume to finish it; the final job goes on "
                     r"with the \d+ COMPLETE trial\(s\) so far", err)
    assert said, err[-3000:]
    assert int(said.group(1)) < 12 and int(said.group(2)) >= 1
    assert (tmp_path / "final" / "report.md").is_file()
