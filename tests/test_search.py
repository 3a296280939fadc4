"""End to end on configs/ci.yaml: real Ray Tune, real training on the demo JPEGs, the study in
real PostgreSQL (from .ci/run) or SQLite."""

import json
import re
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_grafana import grafana_queries

from models import ModelSpec, build_model
from tune_jobs.config import load_config
from tune_jobs.searchjob import run_search
from tune_jobs.study.ranking import NoCompleteTrial, best_complete
from tune_jobs.study.storage import open_storage
from tune_jobs.study.summary import write_outputs

# Real Ray searches and trainings: the slow lane (`pytest -m slow`; all of it in CI).
pytestmark = pytest.mark.slow

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
        # every reported objective value is an intermediate value, the stopping one included
        metric, column = ("f1", 1) if cfg.objective.kind == "f1" else ("score", 4)
        assert sorted(t.intermediate_values) == list(range(1, reported + 1))
        assert t.intermediate_values[reported] == pytest.approx(a[metric])
        # the learning curve: every trained epoch's metrics, the same values
        assert [p[0] for p in a["curve"]] == list(range(1, reported + 1))
        assert [p[column] for p in a["curve"]] == pytest.approx(
            [t.intermediate_values[e] for e in range(1, reported + 1)])
        assert a["curve"][-1][1] == pytest.approx(a["f1"])
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
    assert spec == ModelSpec.from_yaml(best.spec)
    build_model(spec)
    assert (tmp_path / "trials.csv").read_text().count("\n") == 1 + cfg.search.num_samples


def _live_metrics(study: str, trials: int,
                  timeout: float = 20.0) -> tuple[dict[str, float], dict[str, set[str]]]:
    """The driver's `ray_litesearch_*` gauges for `study`, scraped from the nodes' Prometheus
    endpoints (as a dashboard's Prometheus would), once the final values have been flushed:
    none running and all `trials` ended (an earlier flush can show none running between two
    trials). Also returns each metric's label names (what a dashboard can group by)."""
    import ray

    ports = [n["MetricsExportPort"] for n in ray.nodes() if n["Alive"]]
    line = re.compile(r"^ray_(litesearch_\w+)\{(.*)\} (\S+)$", re.M)
    deadline, seen, label_names = time.monotonic() + timeout, {}, {}
    while time.monotonic() < deadline:
        seen, label_names = {}, {}
        for port in ports:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            for name, labels, value in line.findall(text.decode()):
                tags = dict(re.findall(r'(\w+)="([^"]*)"', labels))
                if tags.get("study") == study:  # summed over nodes where a gauge has them
                    label_names.setdefault(f"ray_{name}", set()).update(tags)
                    key = f"{name}/{tags['state']}" if "state" in tags else name
                    seen[key] = seen.get(key, 0.0) + float(value)
        ended = sum(seen.get(f"litesearch_trials/{s}", 0)
                    for s in ("completed", "pruned", "failed"))
        if seen.get("litesearch_trials/running", 1) == 0 and ended == trials:
            return seen, label_names
        time.sleep(0.5)
    raise AssertionError(f"the live metrics of study {study} did not show {trials} ended "
                         f"trials and none running within {timeout} s; last scrape: {seen}")


@pytest.mark.parametrize("algorithm", ["hyperopt", "random"])
def test_other_searchers_record_the_same_shape_in_sqlite(tmp_path, cache_dir, ray_local,
                                                         algorithm, monkeypatch) -> None:
    monkeypatch.delenv("LITESEARCH_STORAGE", raising=False)
    cfg, grid, study = _search(tmp_path, cache_dir, f"search.algorithm={algorithm}")
    assert (tmp_path / "study.db").is_file()  # no URL: SQLite in the run folder
    _check_record_shape(cfg, grid, study)

    # the live Ray metrics a dashboard shows agree with the study
    trials = study.get_trials(deepcopy=False)
    live, labels = _live_metrics(study.study_name, len(trials))
    assert live["litesearch_trials/completed"] == sum(t.state == TrialState.COMPLETE
                                                      for t in trials)
    assert live["litesearch_trials/pruned"] == sum(t.state == TrialState.PRUNED for t in trials)
    assert live["litesearch_trials/failed"] == 0
    assert live["litesearch_best_score"] == pytest.approx(
        min(v for t in trials for v in t.intermediate_values.values()))
    assert live["litesearch_epochs_total"] == sum(t.user_attrs["epochs_done"] for t in trials)
    assert live["litesearch_epochs_per_second"] > 0
    # every litesearch series the shipped Grafana dashboard queries, with the labels it
    # selects and groups by, is what the search exports
    for metric, wanted in grafana_queries().items():
        if metric.startswith("ray_litesearch_"):
            assert wanted <= labels.get(metric, set()), (metric, wanted, labels.get(metric))


def test_a_budget_no_candidate_meets_is_recorded_not_trained(tmp_path, cache_dir,
                                                             ray_local) -> None:
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


def test_fractional_gpus_pack_two_trials_per_gpu_across_nodes(tmp_path, cache_dir,
                                                              ray_local) -> None:
    """Two worker nodes with one logical GPU each; gpu 0.5 per trial: trials land on both
    nodes and never more than two share a GPU at any moment. The trials train 6 epochs
    unstopped so that more than two run at once even when Optuna's suggestions are slow
    (a CI run under load with 3-epoch trials never had three at once, and all ran on one
    node, which is right: the third slot was never needed)."""
    _, grid, study = _search(tmp_path, cache_dir, "resources.gpus_per_trial=0.5",
                             "resources.cpus_per_trial=0.5", "search.max_concurrent=4",
                             "search.num_samples=6", "scheduler.max_epochs=6",
                             "scheduler.grace_period=6")
    assert len(study.trials) == 6
    spans = []
    for r in grid:
        m = r.metrics
        assert m["gpu_ids"], "each trial must hold a (logical) GPU"
        spans.append(((m["node_id"], m["gpu_ids"]), m["started_at"],
                      m.get("reported_at", m["timestamp"])))
    for key, start, _ in spans:  # at each trial's start, count trials holding the same GPU
        holding = [1 for k, s, e in spans if k == key and s <= start <= e]
        assert len(holding) <= 2, f"{len(holding)} trials shared GPU {key} at once"
    most = max(sum(1 for _, s, e in spans if s <= start <= e) for _, start, _ in spans)
    assert most > 2, f"at most {most} trials ran at once: the test needs longer trials"
    assert len({node for (node, _), _, _ in spans}) == 2, "trials ran on one node only"


def test_diverging_trials_fail_with_a_reason_and_the_search_goes_on(tmp_path, cache_dir,
                                                                    ray_local) -> None:
    _, _, study = _search(tmp_path, cache_dir, "space.train.lr=[1.0e+9]",
                          "space.train.optimizer=[sgd]", "search.num_samples=3")
    assert len(study.trials) == 3
    for t in study.trials:
        assert t.state == TrialState.FAIL
        assert t.user_attrs["outcome"] == "nan_loss"
        assert t.user_attrs["reason"].startswith("NonFiniteLoss: loss is")


def test_a_search_timing_int8_in_onnx_runtime_records_its_ratios(tmp_path, cache_dir,
                                                                   ray_local) -> None:
    """`objective.latency: ort-int8` inside Ray's trial workers: every trial quantizes its
    candidate, times it, and the study records the ratio like any other."""
    _, _, study = _search(tmp_path, cache_dir, "objective.latency=ort-int8",
                          "search.num_samples=2")
    assert len(study.trials) == 2
    for t in study.trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), t.user_attrs.get("reason")
        assert t.user_attrs["latency_ratio"] > 0


def test_wandb_offline_writes_one_run_per_trial_in_the_run_folder(tmp_path, cache_dir,
                                                                   ray_local,
                                                                   monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    _search(tmp_path, cache_dir, "tracking.wandb=offline", "search.num_samples=2")
    runs = list((tmp_path / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 2


@pytest.mark.parametrize("max_failures", [1, 0])
def test_a_worker_node_lost_mid_search_loses_no_trial(tmp_path, cache_dir, ray_local,
                                                      max_failures) -> None:
    """Remove a worker node while its trial trains: the search finishes, the study holds every
    trial in a final state, and the lost trial was retried elsewhere from its checkpoint
    (search.max_failures=1) or recorded as FAIL with the reason (max_failures=0)."""
    import threading

    import ray

    cluster, workers = ray_local
    doomed = workers[0]
    study_name = f"t-{uuid.uuid4().hex[:8]}"
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    removed = threading.Event()

    def trains_on_doomed() -> bool:
        """A trial reported an epoch from the doomed node and has half its epochs left (time
        for the removal to land before it ends). Tune's result.json, written and flushed by
        the driver at each report, says so exactly; two trials seen running at once (the
        test before) was a window that a loaded machine's polling could miss."""
        for results in tmp_path.glob("**/result.json"):
            try:
                last = json.loads(results.read_text().splitlines()[-1])
            except (IndexError, ValueError):  # empty, or the line is being written
                continue
            if last.get("node_id") == doomed.node_id and last.get("training_iteration", 6) <= 3:
                return True
        return False

    def remove_when_training() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if trains_on_doomed():
                cluster.remove_node(doomed)
                removed.set()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=remove_when_training, daemon=True)
    watcher.start()
    cfg = load_config("ci.yaml", [f"output={tmp_path}", f"search.study={study_name}",
                                  f"data.cache_dir={cache_dir}", "search.num_samples=6",
                                  f"search.max_failures={max_failures}", "scheduler.max_epochs=6",
                                  "scheduler.early_stopping=false",
                                  "search.checkpoint_interval_s=0",  # resume from epoch k
                                  f"search.storage=sqlite:///{tmp_path / 'study.db'}"])
    try:
        grid, _ = run_search(cfg)
        watcher.join(timeout=5)
        assert removed.is_set(), "no trial trained on the worker to remove"
        trials = optuna.load_study(study_name=study_name, storage=storage).trials
        assert len(trials) == 6 == len(grid)
        assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
        for t in trials:
            if t.state == TrialState.COMPLETE:  # every epoch's score is there, retried or not
                assert sorted(t.intermediate_values) == list(range(1, 7))
            else:
                assert t.user_attrs["outcome"] == "worker_lost", t.user_attrs
        lost = doomed.node_id
        moved = [r for r in grid if r.error is None and r.metrics["node_id"] != lost
                 and lost in set(r.metrics_dataframe["node_id"])]
        failed = [t for t in trials if t.state == TrialState.FAIL]
        if max_failures:
            assert moved and not failed, "the lost node's trial was not retried elsewhere"
        else:
            assert failed and not moved, "the lost node's trial was not recorded as FAIL"
    finally:
        if removed.is_set():  # give the session's cluster its second worker back
            workers[0] = cluster.add_node(num_cpus=1, num_gpus=1)
            cluster.wait_for_nodes()
    assert len([n for n in ray.nodes() if n["Alive"]]) == 3, "the worker did not come back"


def test_the_f1_objective_maximises_f1_and_records_the_same_shape(tmp_path, cache_dir,
                                                                   ray_local) -> None:
    """objective.kind f1: the study maximises validation macro-F1 (under the budgets), every
    trial lands in the same honest shape, and "best" means the highest F1."""
    from tune_jobs.study.summary import console_summary

    cfg, grid, study = _search(tmp_path, cache_dir, "objective.kind=f1",
                               "objective.max_latency_ratio=50")
    _check_record_shape(cfg, grid, study)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done and all(t.value == pytest.approx(t.user_attrs["f1"]) for t in done)
    best = best_complete(study)
    assert best.f1 == max(t.user_attrs["f1"] for t in done)
    text = console_summary(study, write_outputs(study, tmp_path))
    assert "by F1; higher is better" in text
