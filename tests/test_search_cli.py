"""The search as a person runs it: `tune_jobs/search.py` in its own process with its own local
Ray, the console it prints, its clear errors, a kill and a Ctrl+C mid-search and the resume.
(Apart from test_search.py, whose tests share one simulated Ray cluster in-process, so that
the two halves run on two pytest-xdist workers side by side.)"""

import os
import re
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


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # a hang guard, not a speed check: the 6-trial search took 117 s, and over 120 s in a
    # landing run, beside the final job's fixture on the other xdist worker; under
    # pytest-timeout's 600 s so that the child is killed and its output shown
    return subprocess.run([sys.executable, str(REPO / "tune_jobs" / "search.py"), *args],
                          capture_output=True, text=True, timeout=420, cwd=REPO,
                          env={**os.environ, **(env or {})})


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


def test_a_ci_search_console_holds_no_traceback_and_no_repeated_warning(tmp_path) -> None:
    """What a person reads: the trial table, our log lines, the summary; Ray's warnings once
    at most, no worker traceback after the summary, no per-checkpoint lines."""
    out = _cli("--config", "configs/ci.yaml", "--output", str(tmp_path),
               env={"LITESEARCH_STORAGE": ""})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "best COMPLETE trial" in out.stdout
    # Ray ends reused trial workers with SIGTERM; its handler raises SystemExit, and when that
    # lands inside a weakref callback Python prints it as ignored: Ray's shutdown, not a trial
    text = RAY_SHUTDOWN_NOISE.sub("", text)
    assert "Traceback" not in text and "SystemExit" not in text
    assert "Checkpoint successfully created" not in text
    warnings = [re.sub(r"^[\d-]+ [\d:,]+\s+", "", line) for line in text.splitlines()
                if "WARNING" in line]
    repeated = {w for w in warnings if warnings.count(w) > 1}
    assert not repeated, repeated


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


def test_resume_after_the_driver_is_killed(tmp_path, cache_dir) -> None:
    """SIGKILL the whole driver (and its local Ray) mid-search, rerun with --resume: the study
    ends with exactly num_samples finished trials, none lost, none twice."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    args = ["--config", "configs/ci.yaml", "--output", str(tmp_path), "--study", "resume",
            "--num-samples", "8", "--set", f"data.cache_dir={cache_dir}"]
    env = {**os.environ, "LITESEARCH_STORAGE": ""}
    proc = subprocess.Popen([sys.executable, str(REPO / "tune_jobs" / "search.py"), *args],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "study.db"
    # a busy two-core machine took over 120 s for three trials: killed before any trial had
    # reached a rung, the resume had no rungs to bring back (a CI run failed so)
    deadline = time.monotonic() + 240  # + the resume's 300: inside pytest's 600 s
    while _finished(db, "resume") < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, "the search ended before it could be interrupted"
    assert _finished(db, "resume") >= 3, "no three trials finished in 240 s"
    os.killpg(proc.pid, 9)
    proc.wait()
    interrupted = optuna.load_study(study_name="resume", storage=f"sqlite:///{db}")
    assert len(interrupted.trials) < 8 or any(not t.state.is_finished()
                                              for t in interrupted.trials)
    out = subprocess.run([sys.executable, str(REPO / "tune_jobs" / "search.py"), *args,
                          "--resume"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # ASHA's rungs came back with the driver (ray issue 30838: Tune alone restores them empty)
    first = next(line for line in out.stdout.splitlines() if line.startswith("Bracket:"))
    assert "None" not in first, first
    study = optuna.load_study(study_name="resume", storage=f"sqlite:///{db}")
    unfinished = [(t.number, t.state.name, t.params, t.user_attrs) for t in study.trials
                  if not t.state.is_finished()]
    assert not unfinished, (unfinished, out.stdout[-3000:], out.stderr[-3000:])
    # num_samples counts trainings: a reused duplicate proposal is recorded but trains nothing
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 8, [(t.number, t.params, t.user_attrs) for t in study.trials]
    assert len({t.user_attrs["trial_dir"] for t in trained}) == 8


def test_a_run_folder_without_tune_state_continues_its_study(tmp_path, cache_dir) -> None:
    """The driver killed mid-search and Tune's experiment folder lost (a machine given back;
    the study and the rung state kept, restored into another folder): --resume goes on from
    the study, the trials left running trained again, and the study ends with exactly
    num_samples trainings."""
    import shutil

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    first, moved = tmp_path / "a", tmp_path / "b"
    args = ["--study", "lost", "--config", "configs/ci.yaml", "--num-samples", "8",
            "--set", f"data.cache_dir={cache_dir}"]
    env = {**os.environ, "LITESEARCH_STORAGE": ""}
    log = tmp_path / "first.txt"
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, str(REPO / "tune_jobs" / "search.py"), *args,
                                 "--output", str(first)], cwd=REPO, env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    db = first / "study.db"
    deadline = time.monotonic() + 240  # generous: a hang guard for a loaded machine
    while _finished(db, "lost") < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, ("the search ended before it could be interrupted: "
                                 + log.read_text()[-3000:])
    assert _finished(db, "lost") >= 1, "no trial finished in 240 s"
    os.killpg(proc.pid, 9)
    proc.wait()
    before = optuna.load_study(study_name="lost", storage=f"sqlite:///{db}").trials
    kept = {t.number: (t.state, t.values) for t in before if t.state.is_finished()}
    shutil.rmtree(first / "ray")
    first.rename(moved)
    db = moved / "study.db"
    out = subprocess.run([sys.executable, str(REPO / "tune_jobs" / "search.py"), *args,
                          "--output", str(moved), "--resume"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    said = re.search(r"continuing study 'lost', whose (\d+) finished trial\(s\) of this run "
                     r"count towards the 8 samples; (\d+) left running", out.stderr)
    assert said, out.stderr[-3000:]
    assert int(said.group(1)) == sum(t.state.is_finished() and "duplicate_of" not in t.user_attrs
                                     for t in before)
    assert int(said.group(2)) == sum(t.state == TrialState.RUNNING for t in before)
    # the rungs so far came back from the run folder: the first status already has a cutoff
    first = next(line for line in out.stdout.splitlines() if line.startswith("Bracket:"))
    assert "None" not in first.split("|")[-1], first
    study = optuna.load_study(study_name="lost", storage=f"sqlite:///{db}")
    assert all(t.state.is_finished() for t in study.trials)
    assert {t.number: (t.state, t.values) for t in study.trials if t.number in kept} == kept
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 8, [(t.number, t.state, t.user_attrs) for t in study.trials]


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
    proc = subprocess.Popen([sys.executable, str(REPO / "tune_jobs" / "search.py"), *args],
                            cwd=REPO, env=env, stdout=logs["out"], stderr=logs["err"],
                            start_new_session=True)
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
