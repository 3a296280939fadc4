"""No secret at rest: the study database's password lives only where the user put it (the
`--storage` URL or $LITESEARCH_STORAGE). The study's config, Tune's experiment state (tuner and
searcher pickles, on S3 or a shared folder on a cluster) and the final job's files keep the URL
with the password masked, and a resumed search is given the password again at run time."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

from conftest import REPO
from tune_jobs.study import storage as storage_mod
from tune_jobs.study.storage import StudyStorage, mask_url, open_storage, with_password


def test_a_stored_url_gets_its_password_from_this_process_or_the_environment(
        monkeypatch) -> None:
    monkeypatch.delenv("LITESEARCH_STORAGE", raising=False)
    monkeypatch.setattr(storage_mod, "_OPENED", {})
    masked = "postgresql+psycopg2://bob:***@db:5432/x"
    assert with_password("sqlite:///x.db") == "sqlite:///x.db"  # nothing masked
    with pytest.raises(ConnectionError, match=r"needs its password.*--storage.*LITESEARCH_STORAGE"):
        with_password(masked)
    monkeypatch.setenv("LITESEARCH_STORAGE", "postgresql://bob:pw2@db:5432/x")
    assert with_password(masked) == "postgresql+psycopg2://bob:pw2@db:5432/x"
    monkeypatch.setenv("LITESEARCH_STORAGE", "postgresql://bob:pw2@otherdb:5432/x")
    with pytest.raises(ConnectionError):  # another database's password is not this one's
        with_password(masked)
    storage_mod._OPENED[masked] = "postgresql+psycopg2://bob:pw1@db:5432/x"
    assert with_password(masked) == "postgresql+psycopg2://bob:pw1@db:5432/x"


@pytest.mark.postgres
def test_a_pickled_storage_holds_no_password_and_reconnects(postgres_url, monkeypatch) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    storage = open_storage(postgres_url)
    assert isinstance(storage, StudyStorage)
    blob = pickle.dumps(storage)
    assert password.encode() not in blob and mask_url(storage.url).encode() in blob
    again = pickle.loads(blob)  # this process opened the URL: it knows the password
    name = f"pickled-{uuid.uuid4().hex[:6]}"
    optuna.create_study(study_name=name, storage=again)
    monkeypatch.setattr(storage_mod, "_OPENED", {})
    monkeypatch.delenv("LITESEARCH_STORAGE", raising=False)
    with pytest.raises(ConnectionError, match="needs its password"):
        pickle.loads(blob)
    monkeypatch.setenv("LITESEARCH_STORAGE", postgres_url)
    assert optuna.load_study(study_name=name, storage=pickle.loads(blob)).study_name == name


def _cli(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tune_jobs" / script), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


def _files_holding(root: Path, secret: bytes) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and secret in p.read_bytes()]


@pytest.mark.postgres
@pytest.mark.slow
def test_no_file_or_study_attribute_holds_the_database_password(postgres_url, tmp_path,
                                                                 cache_dir) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    assert len(password) >= 8
    out, study = tmp_path / "run", f"secret-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if k != "LITESEARCH_STORAGE"}
    env["LITESEARCH_CACHE"] = str(cache_dir)
    # two trials: what is checked is where the URL goes, not the search
    common = ["--config", "configs/ci.yaml", "--study", study, "--output", str(out),
              "--num-samples", "2"]
    # the password on the command line
    first = _cli("search.py", *common, "--storage", postgres_url, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    # a resume, which unpickles Tune's searcher state, with the password in the environment
    with_env = {**env, "LITESEARCH_STORAGE": postgres_url}
    resumed = _cli("search.py", *common, "--resume", env=with_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr
    # ... and without it anywhere: a clear error, not a crash or a silent new study
    blind = _cli("search.py", *common, "--resume", env=env)
    assert blind.returncode == 2 and "needs its password" in blind.stderr
    # ... said before anything was written: no SQLite study made in the run folder instead
    assert not (out / "study.db").exists()
    # ... and a resume pointed at another database is refused too, before it writes there
    other = tmp_path / "other.db"
    elsewhere = _cli("search.py", *common, "--resume", "--storage", f"sqlite:///{other}",
                     env=with_env)
    assert elsewhere.returncode == 2 and "this run's study is in" in elsewhere.stderr
    assert not other.exists()
    final = _cli("final.py", "--study", study, "--output", str(out), "--epochs", "1",
                 "--no-int8", env=with_env)
    assert final.returncode == 0, final.stderr[-3000:]
    assert (out / "final" / "metrics.json").is_file()
    for proc in (first, resumed, blind, elsewhere, final):
        assert password not in proc.stdout + proc.stderr
    assert (out / "ray" / study / "tuner.pkl").is_file()  # Tune's state was written...
    assert _files_holding(out, password.encode()) == []  # ...and holds no password
    loaded = optuna.load_study(study_name=study, storage=open_storage(postgres_url))
    stored = json.dumps([loaded.user_attrs, *[t.user_attrs for t in loaded.get_trials()],
                         *[t.system_attrs for t in loaded.get_trials()]])
    assert password not in stored
    # the resume (storage from the environment) recorded the config it ran with
    assert loaded.user_attrs["config"]["search"]["storage"] in (None, mask_url(postgres_url))
