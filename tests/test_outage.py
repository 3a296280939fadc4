"""The study survives its database: PostgreSQL stopped for 40 s in the middle of a search (what a
restart, an upgrade or a failover does; longer than the end-of-search drain's 30 s and many
5 s retries) costs no trial and no record. The search goes on, the
study catches up when the database is back, and it ends as Tune saw every trial."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import REPO, free_ports
from tune_jobs.study.storage import open_storage
from tune_jobs.study.trials import StudyTrial

pytestmark = pytest.mark.slow


class PrivatePostgres:
    """A throw-away PostgreSQL server of Debian's package (as .ci/run starts one) that a test
    can stop and start; run as the `postgres` user when the test runs as root."""

    def __init__(self, root: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins:
            if os.environ.get("CI"):
                pytest.fail("no PostgreSQL binaries under /usr/lib/postgresql (.ci/run "
                            "installs Debian's package)")
            pytest.skip("needs Debian's postgresql package")
        self.bin, self.root = bins[-1], root
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        (self.port,) = free_ports(1)
        password = secrets.token_hex(8)
        self._pg("initdb", "-D", str(root / "data"), "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256")
        self.start()
        self._pg("psql", "-h", str(root), "-p", str(self.port), "-U", "postgres", "-q",
                 "-c", f"CREATE ROLE study LOGIN PASSWORD '{password}'",
                 "-c", "CREATE DATABASE study OWNER study")
        self.url = f"postgresql://study:{password}@127.0.0.1:{self.port}/study"

    def _pg(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd="/", timeout=120)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w",
                 "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


@pytest.fixture
def private_postgres():
    # under /tmp itself: pytest's folders are private to root, the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="litesearch-pg."))
    try:
        pg = PrivatePostgres(root)
        yield pg
        with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
            pg.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _finished(url: str, study: str) -> int:
    try:
        s = optuna.load_study(study_name=study, storage=open_storage(url))
    except (KeyError, ConnectionError):
        return 0
    return sum(t.state.is_finished() for t in s.get_trials(deepcopy=False))


def test_a_40_s_database_outage_mid_search_loses_nothing(private_postgres, tmp_path,
                                                         cache_dir) -> None:
    pg, study, out = private_postgres, f"outage-{uuid.uuid4().hex[:6]}", tmp_path / "run"
    samples = 8
    env = {**os.environ, "LITESEARCH_CACHE": str(cache_dir)}
    env.pop("LITESEARCH_STORAGE", None)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tune_jobs" / "search.py"), "--config", "configs/ci.yaml",
         "--storage", pg.url, "--study", study, "--output", str(out),
         "--set", f"search.num_samples={samples}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while _finished(pg.url, study) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "no trial finished in 5 minutes"
            time.sleep(1)
        assert proc.poll() is None, "the search ended before the outage"
        pg.stop()
        time.sleep(40)
        assert proc.poll() is None, "the search died while the database was down"
        pg.start()
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(output[-5000:])
    assert proc.returncode == 0, output[-3000:]
    # The outage was seen, and the trials that went on during it left writes that waited and
    # were written once the database was back. (Found by an ask alone, with no trial
    # reporting while it lasted, the outage would log "back: 0 queued write(s) done".)
    down = output.find("the study database is unreachable")
    back = [(m.start(), int(m.group(1))) for m in
            re.finditer(r"the study database is back: (\d+) queued write\(s\) done", output)]
    assert down >= 0 and back, output[-3000:]
    assert back[0][0] > down and sum(n for _, n in back) >= 1, back

    trials = optuna.load_study(study_name=study, storage=open_storage(pg.url)).get_trials()
    runs = [t for t in trials if StudyTrial.of(t).trained]
    assert len(runs) == samples, [(t.number, t.state.name) for t in trials]
    assert all(t.state.is_finished() for t in trials), "a trial left RUNNING"
    dirs = [t.user_attrs["trial_dir"] for t in runs]
    assert len(set(dirs)) == samples  # every Tune trial once: no duplicate record
    for t in runs:  # as Tune saw it: every reported score, the last one decides the state
        tune_dir = out / "ray" / study / Path(t.user_attrs["trial_dir"]).name
        results = [json.loads(line) for line in
                   (tune_dir / "result.json").read_text().splitlines()]
        reported = {r["training_iteration"]: r["score"] for r in results}
        assert t.intermediate_values == pytest.approx(reported), t.number
        last = results[-1]
        complete = last["epoch"] == 3 and last["outcome"] == "trained"
        assert (t.state == TrialState.COMPLETE) == complete, (t.number, t.state, last)
        assert t.user_attrs["epochs_done"] == max(0, last["epoch"])


def test_writes_left_when_the_search_ends_are_named_and_written_by_a_resume(
        private_postgres, tmp_path) -> None:
    """The database still down when the trials end: `drain` names what is unwritten (the
    search exits 2 with it), the queue travels in Tune's searcher state, and the searcher a
    `--resume` restores writes it once the database is back."""
    from tune_jobs.config import load_config
    from tune_jobs.study import writes
    from tune_jobs.study.mirror import MirroredOptunaSearch, RecordContext
    from tune_jobs.trial.space import define_by_run

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pg, cfg = private_postgres, load_config("ci.yaml")

    def searcher() -> MirroredOptunaSearch:
        return MirroredOptunaSearch(
            space=define_by_run(cfg.space, 6), metric="score", mode="min",
            storage=open_storage(pg.url), study_name="q", run_id="r",
            record=RecordContext(("score",), 2, cfg.space, 6))

    first = searcher()
    first.suggest("A")
    first.on_trial_result("A", {"score": 0.9, "training_iteration": 1})
    pg.stop()
    first.on_trial_result("A", {"score": 0.7, "training_iteration": 2})
    first.on_trial_complete("A", {"score": 0.7, "training_iteration": 2, "epoch": 2,
                                  "outcome": "trained"})
    assert first.suggest("B") is None  # no new trial while the database is away
    unwritten = writes.drain(timeout_s=0)
    assert unwritten == ["trial 0: score at step 2", "trial 0: COMPLETE"]
    first.save(str(tmp_path / "searcher.pkl"))  # what Tune saves at the end of fit
    del first

    pg.start()
    again = searcher()
    again.restore(str(tmp_path / "searcher.pkl"))
    assert again.unwritten() == []
    stored = optuna.load_study(study_name="q", storage=open_storage(pg.url)).trials
    assert len(stored) == 1 and stored[0].state == TrialState.COMPLETE
    assert stored[0].value == 0.7 and stored[0].intermediate_values == {1: 0.9, 2: 0.7}
    again.restore(str(tmp_path / "searcher.pkl"))  # a second replay writes nothing twice
    assert optuna.load_study(study_name="q", storage=open_storage(pg.url)).trials == stored
