"""End to end on configs/ci.yaml: real Ray Tune, real training on the demo JPEGs, the study in
real PostgreSQL (from .ci/run) or SQLite."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import REPO
from models import ModelSpec, build_model
from tune_jobs.config import load_config
from tune_jobs.runner import run_search
from tune_jobs.storage import open_storage
from tune_jobs.summary import NoCompleteTrial, best_complete, write_outputs

REQUIRED_ATTRS = {"outcome", "reason", "spec", "score", "f1", "latency_ratio", "params",
                  "macs", "epochs_done", "node", "trial_dir", "wall_seconds"}


def _search(tmp_path: Path, cache_dir: Path, *overrides: str):
    study = f"t-{uuid.uuid4().hex[:8]}"
    cfg = load_config("ci.yaml", [f"output={tmp_path}", f"search.study={study}",
                                  f"data.cache_dir={cache_dir}", *overrides])
    grid, url = run_search(cfg)
    return cfg, grid, optuna.load_study(study_name=study, storage=open_storage(url))


def _check_record_shape(cfg, grid, study) -> None:
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == cfg.search.num_samples == len(grid)
    tune_epochs = {r.metrics["trial_dir"]: r.metrics["training_iteration"] for r in grid}
    max_epochs = cfg.scheduler.max_epochs
    for t in trials:
        a = t.user_attrs
        assert set(a) >= REQUIRED_ATTRS, REQUIRED_ATTRS - set(a)
        reported = tune_epochs[a["trial_dir"]]  # what Tune actually ran
        assert a["epochs_done"] == reported
        if t.state == TrialState.COMPLETE:
            assert reported == max_epochs and a["outcome"] == "trained"
        else:
            assert t.state == TrialState.PRUNED and reported < max_epochs
            assert a["outcome"] == "stopped_early"
        # every reported score is an intermediate value, the stopping one included
        assert sorted(t.intermediate_values) == list(range(1, reported + 1))
        assert t.intermediate_values[reported] == pytest.approx(a["score"])
        build_model(ModelSpec.from_yaml(a["spec"]))


@pytest.mark.postgres
def test_ci_search_in_postgres(tmp_path, cache_dir, ray_local, postgres_url) -> None:
    cfg, grid, study = _search(tmp_path, cache_dir, f"search.storage={postgres_url}")
    _check_record_shape(cfg, grid, study)
    states = {t.state for t in study.trials}
    assert TrialState.PRUNED in states, "ASHA should have stopped some of 6 trials"
    summary = write_outputs(study, tmp_path)
    best = best_complete(study)
    assert summary["best"]["number"] == best.number
    spec = ModelSpec.from_yaml(tmp_path / "best" / "spec.yaml")
    assert spec == ModelSpec.from_yaml(best.user_attrs["spec"])
    build_model(spec)
    assert (tmp_path / "trials.csv").read_text().count("\n") == 1 + cfg.search.num_samples


@pytest.mark.parametrize("algorithm", ["hyperopt", "random"])
def test_other_searchers_record_the_same_shape_in_sqlite(tmp_path, cache_dir, ray_local,
                                                         algorithm, monkeypatch) -> None:
    monkeypatch.delenv("LITESEARCH_STORAGE", raising=False)
    cfg, grid, study = _search(tmp_path, cache_dir, f"search.algorithm={algorithm}")
    assert (tmp_path / "study.db").is_file()  # no URL: SQLite in the run folder
    _check_record_shape(cfg, grid, study)


def test_a_budget_no_candidate_meets_is_recorded_not_trained(tmp_path, cache_dir,
                                                             ray_local) -> None:
    start = time.monotonic()
    _, _, study = _search(tmp_path, cache_dir, "objective.max_params=10",
                          "search.num_samples=4")
    assert len(study.trials) == 4
    for t in study.trials:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs["outcome"] == "over_budget"
        assert t.user_attrs["reason"].startswith("params ")
        assert t.user_attrs["epochs_done"] == 0
    with pytest.raises(NoCompleteTrial, match="no COMPLETE trial"):
        best_complete(study)
    assert time.monotonic() - start < 120


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tune_jobs" / "search.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, **(env or {})})


def test_unreachable_database_fails_fast_with_masked_password(tmp_path) -> None:
    start = time.monotonic()
    out = _cli("--config", "configs/ci.yaml", "--output", str(tmp_path),
               "--storage", "postgresql://bob:hunter2@127.0.0.1:9/nodb")
    assert out.returncode == 2
    assert time.monotonic() - start < 10 + 5  # 10 s budget plus interpreter start-up
    assert "bob:***@127.0.0.1:9" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout
    assert "Started a local Ray instance" not in out.stdout + out.stderr


def test_unknown_config_key_and_empty_data_are_clear_errors(tmp_path) -> None:
    out = _cli("--config", "configs/ci.yaml", "--set", "search.numsamples=3")
    assert out.returncode == 2 and "search.numsamples: unknown key" in out.stderr
    (tmp_path / "empty").mkdir()
    out = _cli("--config", "configs/ci.yaml", "--output", str(tmp_path / "run"),
               "--data", str(tmp_path / "empty"))
    assert out.returncode == 2 and "no class folders" in out.stderr
