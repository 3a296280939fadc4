"""The cluster: both cluster configs pass Ray's own validation, and a search submitted as a Ray
job to a real two-node cluster (`ray start --head` + `ray start --address`) runs its trials on
both nodes, shows in the dashboard's REST API and lands in PostgreSQL."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from raynodes import RayNodes, submit_when_the_agent_is_up

from conftest import REPO, free_ports
from tune_jobs.internals import validate_cluster_config
from tune_jobs.study.storage import open_storage

CLUSTER_CONFIGS = [REPO / "cluster.yaml", REPO / "configs" / "cluster" / "local.yaml"]
README_INSTALL = 'pip install -q -e ".[dev]"'


def _ray_validate(config: dict) -> dict:
    """What Ray's own tests do with its example YAMLs (python/ray/tests/
    test_autoscaler_yaml.py): fill in the provider's defaults, then check the schema."""
    return validate_cluster_config(copy.deepcopy(config))


@pytest.mark.parametrize("path", CLUSTER_CONFIGS, ids=lambda p: p.name)
def test_cluster_config_passes_rays_validation(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    prepared = _ray_validate(config)
    assert prepared["max_workers"] > 0, "no worker can join"

    # what the cluster guide promises: one node script for every cluster config
    text = path.read_text()
    assert not re.search(r"postgres(ql)?://[^\s:@]+:[^\s@]+@", text), "a password in the file"
    # every node gets what `pip install` reads (pyproject.toml's packages), each its own mount:
    # a mount of the whole checkout would make `ray up` hash its virtual environment
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    project = {p.rstrip("*") for p in packages} | {"pyproject.toml", "README.md"}
    mounts = {remote: local for remote, local in prepared["file_mounts"].items()
              if remote.startswith("~/litesearch")}
    assert mounts == {f"~/litesearch/{p}": p for p in project}
    node = "bash ~/litesearch/configs/cluster/node.sh"
    assert prepared["setup_commands"] == [f"{node} setup"]
    assert prepared["head_start_ray_commands"][0].startswith(f"{node} start-head")
    assert prepared["worker_start_ray_commands"][0].startswith(f"{node} start-worker")
    setup = " ".join(prepared["head_setup_commands"])
    assert "configs/cluster/head_postgres.sh" in setup and "LITESEARCH_RESULTS=" in setup
    for script in ("head_postgres.sh", "node.sh"):  # both parse
        subprocess.run(["bash", "-n", str(REPO / "configs" / "cluster" / script)], check=True)
    script = (REPO / "configs" / "cluster" / "node.sh").read_text()
    assert README_INSTALL.replace('".[dev]"', '"$here[dev]"').replace("pip", '"$venv/bin/pip"') \
        in script


def _fake_ray(tmp_path: Path) -> Path:
    """A venv whose `ray` records its arguments, open-files limit and auth mode: what
    node.sh hands to `ray start` (the real one runs in the cluster tests below)."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    ray = bin_dir / "ray"
    ray.write_text('#!/bin/bash\necho "$* | nofile=$(ulimit -n) auth=$RAY_AUTH_MODE '
                   'storage=${LITESEARCH_STORAGE:-} v2=${RAY_enable_autoscaler_v2:-}" '
                   '>> "$HOME/ray.log"\n')
    ray.chmod(0o755)
    return tmp_path / "venv"


def test_node_script_starts_ray_under_a_low_hard_limit_with_token_auth(tmp_path) -> None:
    """`ulimit -n 65536 && ray start` aborted the node where the hard limit is lower; the
    script raises the limit as far as allowed and starts Ray anyway."""
    venv = _fake_ray(tmp_path)
    (tmp_path / ".litesearch").mkdir()
    (tmp_path / ".litesearch" / "env").write_text("LITESEARCH_STORAGE=postgresql://u@h/db\n")
    script = REPO / "configs" / "cluster" / "node.sh"
    env = {**os.environ, "HOME": str(tmp_path), "LITESEARCH_VENV": str(venv),
           "RAY_HEAD_IP": "10.0.0.5", "TMPDIR": str(tmp_path)}
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_TMPDIR", None)
    for command in ("start-head --num-cpus=0", "start-worker --object-manager-port=8076"):
        low = "ulimit -Sn 1024 && ulimit -Hn 4096"
        # as `ray up` runs it (Ray >= 2.50 asks for autoscaler v2)
        subprocess.run(["bash", "-c", f"{low} && export RAY_enable_autoscaler_v2=1 && "
                        f"bash {script} {command}"], env=env, check=True, timeout=30)
    stop_head, head, stop_worker, worker = (tmp_path / "ray.log").read_text().splitlines()
    assert stop_head.startswith("stop") and stop_worker.startswith("stop")
    assert head.startswith("start --head --port=6379 --dashboard-host=127.0.0.1")
    assert "--num-cpus=0 |" in head and "storage=postgresql://u@h/db" in head
    assert "v2=0" in head  # the autoscaler v1: v2 never sets a local worker up (test_ray_up)
    assert worker.startswith("start --address=10.0.0.5:6379")
    assert "--object-manager-port=8076 |" in worker and "storage= " not in head
    for line in (head, worker):
        assert "nofile=4096" in line and "auth=token" in line
    # the head puts litesearch's Grafana dashboard where Ray's Grafana config loads them
    installed = tmp_path / "ray/session_latest/metrics/grafana/dashboards"
    assert (installed / "litesearch_grafana_dashboard.json").read_text() == \
        (REPO / "configs" / "grafana" / "litesearch.json").read_text()
    bad = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_a_broken_cluster_edit_fails_validation() -> None:
    import jsonschema

    config = yaml.safe_load(CLUSTER_CONFIGS[0].read_text())
    config["available_node_types"]["gpu"]["min_workers"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="'two' is not of type 'integer'"):
        _ray_validate(config)
    config = yaml.safe_load(CLUSTER_CONFIGS[0].read_text())
    config["head_node_type"] = "cpu_head"
    with pytest.raises(ValueError, match="head_node_type"):
        _ray_validate(config)


# ------------------------------------------------------------------- a real two-node cluster


class LocalCluster:
    """`ray start --head` and `ray start --address` as a user would type them (`RayNodes`),
    every port chosen free, token authentication on."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.env, self.tmp = env, tmp
        (self.gcs, self.dashboard, self.head_metrics, self.worker_metrics, self.client,
         *self.agent_ports) = free_ports(11)
        self.nodes = RayNodes(tmp, env, self.gcs)

    def _node_ports(self, i: int) -> list[str]:
        listen, grpc, runtime_env = self.agent_ports[3 * i: 3 * i + 3]
        return [f"--dashboard-agent-listen-port={listen}", f"--dashboard-agent-grpc-port={grpc}",
                f"--runtime-env-agent-port={runtime_env}"]

    def start(self) -> None:
        self.nodes.start("head", ["--head", f"--port={self.gcs}",
                                  f"--ray-client-server-port={self.client}", "--num-cpus=1",
                                  "--num-gpus=0", "--include-dashboard=true",
                                  "--dashboard-host=127.0.0.1",
                                  f"--dashboard-port={self.dashboard}",
                                  f"--metrics-export-port={self.head_metrics}",
                                  *self._node_ports(0)])
        self.wait_nodes(1)
        # its own temp folder: two nodes on one machine would otherwise share (and clean up)
        # one runtime-env folder, deleting the job's working directory under the driver
        self.worker_tmp = tempfile.mkdtemp(prefix="rw")  # short: Unix socket paths are short
        self.nodes.start("worker", [f"--address=127.0.0.1:{self.gcs}", "--num-cpus=1",
                                    f"--temp-dir={self.worker_tmp}",
                                    f"--metrics-export-port={self.worker_metrics}",
                                    *self._node_ports(1)])
        self.wait_nodes(2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard}"

    def get(self, path: str, token: str | None = "env") -> dict:
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {self.env['RAY_AUTH_TOKEN']}"
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def alive_nodes(self) -> list[dict]:
        reply = self.get("/api/v0/nodes?detail=1&limit=100")
        return [n for n in reply["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def wait_nodes(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.nodes.check_running()
            try:
                if len(self.alive_nodes()) >= n:
                    return
            except (urllib.error.URLError, ConnectionError, KeyError, TimeoutError):
                pass  # the dashboard is still starting
            time.sleep(1)
        raise TimeoutError(f"{n} Ray nodes not alive after {timeout} s: {self.nodes.logs()}")

    def stop(self) -> None:
        self.nodes.stop()
        shutil.rmtree(getattr(self, "worker_tmp", ""), ignore_errors=True)


@pytest.fixture
def two_node_cluster(tmp_path, postgres_url, cache_dir):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ,
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex,
           # what the cluster's head exports to every job (configs/cluster/head_postgres.sh)
           "LITESEARCH_STORAGE": postgres_url, "LITESEARCH_CACHE": str(cache_dir),
           "LITESEARCH_RESULTS": str(tmp_path / "results")}
    env.pop("RAY_ADDRESS", None)
    cluster = LocalCluster(tmp_path, env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_search_submitted_as_a_job_to_a_two_node_cluster(two_node_cluster, tmp_path,
                                                         postgres_url) -> None:
    cluster = two_node_cluster
    study = f"job-{uuid.uuid4().hex[:8]}"
    submit = submit_when_the_agent_is_up(lambda: subprocess.run(
        ["ray", "job", "submit", "--address", cluster.url, "--working-dir", str(REPO),
         "--submission-id", study, "--no-wait", "--",
         "python", "tune_jobs/search.py", "--config", "configs/ci.yaml", "--study", study,
         "--output", str(tmp_path / "run"),
         # a fresh worker per trial: with the head's warm worker reused, the whole search
         # (ci trials take seconds) could end before the worker node's first worker is up,
         # every trial on the head (seen under load)
         "--set", "resources.reuse_actors=false"],
        env=cluster.env, capture_output=True, text=True, timeout=120, cwd=REPO))
    assert submit.returncode == 0, submit.stdout + submit.stderr

    # follow it through the Jobs REST API, as the SDK and the dashboard do (with the token)
    deadline = time.monotonic() + 300
    while (status := cluster.get(f"/api/jobs/{study}")["status"]) in {"PENDING", "RUNNING"}:
        assert time.monotonic() < deadline, "the job did not finish in 5 minutes"
        time.sleep(2)
    logs = cluster.get(f"/api/jobs/{study}/logs")["logs"]
    assert status == "SUCCEEDED", logs[-5000:]

    # the job's logs show the trials, and never the database password
    assert "Number of trials: 6/6 (6 TERMINATED)" in logs and "train_candidate_" in logs
    assert "(COMPLETE first, the most epochs first, by score; lower is better)" in logs
    password = re.search(r"://[^:]+:([^@]+)@", postgres_url).group(1)
    assert password not in logs

    # the dashboard's REST API (token required) lists the job and both nodes
    with pytest.raises(urllib.error.HTTPError, match="401"):
        cluster.get("/api/jobs/", token=None)
    jobs = {j["submission_id"]: j for j in cluster.get("/api/jobs/")}
    assert jobs[study]["status"] == "SUCCEEDED"
    nodes = cluster.alive_nodes()
    assert len(nodes) == 2 and sum(n["is_head_node"] for n in nodes) == 1

    # the study is in PostgreSQL with every trial, run on both nodes
    record = optuna.load_study(study_name=study, storage=open_storage(postgres_url))
    trials = record.get_trials(deepcopy=False)
    assert len(trials) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert {t.user_attrs["node_id"] for t in trials} == {n["node_id"] for n in nodes}, logs[-6000:]
    # the working directory the worker unpacked is the code and the demo data, without what
    # .rayignore leaves out (the history and the benchmark results: 32 of 39 MB)
    (unpacked,) = [p for p in Path(cluster.worker_tmp).glob(  # (session_latest: a link)
        "session_2*/runtime_resources/working_dir_files/_ray_pkg_*") if p.is_dir()]
    assert (unpacked / "tune_jobs" / "search.py").is_file()
    assert (unpacked / "data_utils" / "demo_data").is_dir()
    assert not (unpacked / ".git").exists() and not (unpacked / "benchmarks" / "results").exists()
    # trial results went to the results path the head exports
    assert (Path(cluster.env["LITESEARCH_RESULTS"]) / study).is_dir()
    # optuna-dashboard on the same database serves the same trials
    served = _dashboard_trials(postgres_url, study)
    assert sorted(t["number"] for t in served) == sorted(t.number for t in trials)


def _dashboard_trials(url: str, study_name: str) -> list[dict]:
    """Start tune_jobs/dashboard.py (optuna-dashboard) on `url` and read a study's trials
    through its HTTP API, as the web page does."""
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tune_jobs" / "dashboard.py"), "--storage", url,
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=REPO)
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as reply:
                    studies = json.loads(reply.read())["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "optuna-dashboard did not start"
                time.sleep(0.5)
        (summary,) = [s for s in studies if s["study_name"] == study_name]
        with urllib.request.urlopen(f"{base}/api/studies/{summary['study_id']}?after=0",
                                    timeout=10) as reply:
            return json.loads(reply.read())["trials"]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_optuna_dashboard_serves_the_study(tmp_path) -> None:
    """tune_jobs/dashboard.py (optuna-dashboard) on a search's study: its API lists the study
    and every trial with the state the study holds."""
    from tune_jobs.study.storage import open_storage as _open

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="dash", storage=_open(url))
    for x in range(5):
        trial = study.ask()
        trial.report(1.0 - 0.1 * x, step=1)
        if x % 2:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, 0.5 + x)
    served = _dashboard_trials(url, "dash")
    assert [t["state"] for t in served] == [t.state.name.capitalize() for t in study.trials]
