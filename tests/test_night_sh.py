"""benchmarks/night.sh's own flow, with its two long commands (search.py, final.py) replaced by
stand-ins on PATH: a run killed mid-search and started again resumes the search, and its
clock counts the killed segment up to its last tick."""

import os
import signal
import subprocess
import sys
import time

from conftest import REPO

# `python` for night.sh: the two long jobs faked (their calls logged), everything else real
SHIM = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$1" in
  tune_jobs/search.py)
    out=; for a in "$@"; do [ "$prev" = --output ] && out=$a; prev=$a; done
    : > "$out/study.db"; sleep "$FAKE_SEARCH_SECONDS" ;;  # a study from the start
  tune_jobs/final.py)
    out=; for a in "$@"; do [ "$prev" = --output ] && out=$a; prev=$a; done
    mkdir -p "$out/final"
    touch "$out"/final/{metrics.json,report.md,pareto.png,retrain_curves.png} ;;
  benchmarks/night_summary.py) ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


def _night(tmp_path, search_seconds: int) -> subprocess.Popen:
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    (shims / "python").write_text(SHIM)
    (shims / "python").chmod(0o755)
    env = os.environ | {"PATH": f"{shims}:{os.environ['PATH']}", "REAL_PYTHON": sys.executable,
                        "FAKE_LOG": str(tmp_path / "calls.log"), "TICK": "1",
                        "FAKE_SEARCH_SECONDS": str(search_seconds),
                        "OUT": str(tmp_path / "run"), "RESULTS": str(tmp_path / "results"),
                        "NAME": "demo"}
    return subprocess.Popen(["bash", "benchmarks/night.sh", "fast"], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _stages(folder) -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in (folder / "stages.tsv").read_text().splitlines()]
    return [(r[0], r[4]) for r in rows]


def test_a_run_killed_mid_search_resumes_and_counts_the_killed_segment(tmp_path) -> None:
    first = _night(tmp_path, search_seconds=600)
    clock, started = tmp_path / "run" / "stage.open", time.monotonic()
    while not clock.exists() or time.monotonic() < started + 6:  # a few ticks
        assert first.poll() is None and time.monotonic() < started + 60, first.communicate()[0]
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the machine goes: nothing runs its EXIT trap
    first.wait()
    assert not (tmp_path / "run" / "stages.tsv").exists()

    second = _night(tmp_path, search_seconds=0)
    out = second.communicate(timeout=120)[0]
    assert second.returncode == 0, out
    assert "closed as lost" in out
    calls = (tmp_path / "calls.log").read_text().splitlines()
    searches = [c for c in calls if c.startswith("tune_jobs/search.py")]
    assert len(searches) == 2 and "--resume" not in searches[0] and "--resume" in searches[1]
    assert _stages(tmp_path / "run") == [("search", "137"), ("search", "0"), ("final", "0")]
    killed = (tmp_path / "run" / "stages.tsv").read_text().splitlines()[0].split("\t")
    assert int(killed[3]) >= 4  # up to its last tick, not zero
    time.sleep(2.5)  # no tick outlives its segment
    assert not (tmp_path / "run" / "stage.open").exists()
    assert _stages(tmp_path / "results") == _stages(tmp_path / "run")
    assert not (tmp_path / "results" / "stage.open").exists()
    assert (tmp_path / "run" / "final.done").exists()
