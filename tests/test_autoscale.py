"""Autoscaling from zero, with Ray's fake multi-node provider (`RAY_FAKE_CLUSTER=1`: the real
autoscaler and monitor, "machines" that are local raylets) and the node types of
`cluster.yaml`: a head with no CPU, GPU workers with `min_workers: 0` and logical GPUs. A search
with `resources.gpus_per_trial: 0.25` submitted to it (as `ray job submit` would run it: a
driver with RAY_ADDRESS) makes the autoscaler start one GPU worker, packs its (up to four)
concurrent trials onto that worker's GPU, finishes, and the worker goes after the idle timeout.

Ray's own `AutoscalingCluster` is not used: its pip wheel lacks the example config it reads,
and its start and shutdown run `ray stop --force`, which would take down every other Ray on
the machine (the session's test cluster among them). This test starts and stops only its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from raynodes import RayNodes

from conftest import REPO, free_ports

pytestmark = pytest.mark.slow

IDLE_TIMEOUT_MIN = 0.25  # cluster.yaml says 10: the test waits 15 s, not 10 minutes


def fake_cluster_config(gcs_address: str) -> dict:
    """cluster.yaml's node types, limits and upscaling speed on the fake provider."""
    aws = yaml.safe_load((REPO / "cluster.yaml").read_text())
    types = aws["available_node_types"]
    workers = {
        name: {"resources": {**spec["resources"], "object_store_memory": 150 * 2**20},
               "node_config": {}, "min_workers": spec.get("min_workers", 0),
               "max_workers": spec["max_workers"]}
        for name, spec in types.items() if name != aws["head_node_type"]}
    head = {"resources": dict(types[aws["head_node_type"]]["resources"]), "node_config": {},
            "max_workers": 0}
    return {
        "cluster_name": "litesearch-fake", "max_workers": aws["max_workers"],
        "upscaling_speed": aws["upscaling_speed"], "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     "gcs_address": gcs_address},
        # the fake provider names its head type so
        "available_node_types": {**workers, "ray.head.default": head},
        "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": []}


def _alive_nodes(address: str) -> dict[str, bool]:
    """node id (hex) -> whether it is the head, for the nodes alive now (from the GCS; {} while
    it does not answer). A client per call: one kept (in a failed test's traceback, say) ends
    this whole process once the cluster is gone ("Failed to connect to GCS within 60 s")."""
    from ray._raylet import GcsClient

    try:
        nodes = GcsClient(address=address).get_all_node_info()
    except Exception:
        return {}
    return {node_id.hex(): info.is_head_node for node_id, info in nodes.items()
            if info.state == 0}  # GcsNodeInfo.ALIVE


@pytest.fixture
def autoscaling_cluster(tmp_path, monkeypatch):
    from ray._private.services import get_node_ip_address

    # `ray start` turns token auth on by default; this throw-away cluster on one machine
    # leaves it off (the cluster configs keep it on: tests/test_ray_up.py)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    port, client_port = free_ports(2)  # (Ray's default client port may be another Ray's)
    address = f"{get_node_ip_address()}:{port}"
    cluster = fake_cluster_config(address)
    config = tmp_path / "fake_cluster.yaml"
    config.write_text(json.dumps(cluster))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    head_cpus = int(cluster["available_node_types"]["ray.head.default"]["resources"]["CPU"])
    # its own session folder, where the autoscaler's log is read back; a short path, as Unix
    # socket paths under it must be
    temp = Path(tempfile.mkdtemp(prefix="ras"))
    nodes = RayNodes(tmp_path, env, port)
    nodes.start("head", ["--head", f"--port={port}", f"--ray-client-server-port={client_port}",
                         f"--temp-dir={temp}",
                         f"--num-cpus={head_cpus}", "--num-gpus=0", "--include-dashboard=false",
                         f"--autoscaling-config={config}"])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _alive_nodes(address):
                break
            nodes.check_running()
            time.sleep(1)
        else:
            pytest.fail(f"the head did not come up: {nodes.logs()}")
        yield address, temp / "session_latest" / "logs"
    finally:
        nodes.stop()  # the fake provider's workers name the head's GCS port too
        for log in (temp / "session_latest" / "logs").glob("monitor.*"):
            shutil.copy(log, tmp_path)  # the autoscaler's decisions, kept with the test
        shutil.rmtree(temp, ignore_errors=True)


def _launches(logs: Path) -> list[str]:
    """Each decision of the autoscaler to add nodes (its monitor log: "Queue N new nodes"),
    with the status it printed in the same update, just before: the nodes it counted as
    active and pending, the resources in use, the demands. What a surprising launch was
    decided on, e.g. a second GPU worker: none active or pending besides the head while the
    first was already launched (the update raced the launch), or the first active and full
    with one more placement group pending (Tune asked for a trial's resources before the
    actor it could reuse was free)."""
    decisions: list[str] = []
    for path in logs.glob("monitor.log*"):
        status: list[str] = []
        for line in path.read_text(errors="replace").splitlines():
            if "Autoscaler status" in line:
                status = []
            elif "Queue" in line and "new nodes" in line:
                decisions.append(" | ".join(s for s in status if s and not s.startswith("-"))
                                 + " => " + line.split(" -- ")[-1])
            elif not line.startswith("20"):  # the status block's own lines (no timestamp)
                status.append(line.strip())
    return decisions


def test_gpu_workers_scale_from_zero_pack_four_trials_and_go_when_idle(autoscaling_cluster,
                                                                       tmp_path) -> None:
    address, logs = autoscaling_cluster
    nodes = _alive_nodes(address)
    assert len(nodes) == 1 and next(iter(nodes.values()))  # the head, zero workers at start
    head_id = next(iter(nodes))

    timeline: list[tuple[float, int]] = []  # (seconds since submit, alive GPU workers)
    stop = threading.Event()
    start = time.monotonic()
    seen_workers: set[str] = set()

    def watch() -> None:
        while not stop.is_set():
            alive = _alive_nodes(address)
            workers = [n for n, head in alive.items() if not head]
            seen_workers.update(workers)
            timeline.append((time.monotonic() - start, len(workers)))
            stop.wait(1.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = tmp_path / "run"
    overrides = ["resources.gpus_per_trial=0.25", "resources.cpus_per_trial=1",
                 "search.max_concurrent=4", "search.num_samples=8"]
    search = subprocess.run(
        [sys.executable, "tune_jobs/search.py", "--config", "configs/ci.yaml",
         "--output", str(output), "--study", "autoscale",
         *[a for o in overrides for a in ("--set", o)]],
        cwd=REPO, env={**os.environ, "RAY_ADDRESS": address}, capture_output=True, text=True,
        timeout=900)
    finished = time.monotonic() - start
    assert search.returncode == 0, search.stdout[-3000:] + search.stderr[-3000:]

    # the workers go once idle: the timeout plus a few autoscaler rounds
    deadline = time.monotonic() + IDLE_TIMEOUT_MIN * 60 + 90
    while time.monotonic() < deadline and timeline[-1][1] > 0:
        time.sleep(1)
    stop.set()
    watcher.join(timeout=10)
    gone = next((t for t, n in timeline if t > finished and n == 0), None)

    counts = [n for _, n in timeline]
    first_up = next(t for t, n in timeline if n > 0)
    print(f"autoscaling: first GPU worker up {first_up:.0f} s after submit, search done at "
          f"{finished:.0f} s, workers gone at {gone} s; peak {max(counts)} worker(s)")
    assert gone is not None, f"GPU workers still up {IDLE_TIMEOUT_MIN} min after the search"
    # Four trials of 0.25 GPU fit one GPU worker, and one is what the autoscaler starts for
    # them. A second comes only from Tune's trial swap (1 run in 6 here with a loaded CPU,
    # once in CI): when a trial ends, Tune may stage the next one before the ended trial's
    # actor is free to reuse and ask for its own placement group; an autoscaler update in
    # that moment sees the first worker full and one group pending, and adds a worker that
    # the trial never uses (it takes the freed actor) and that goes when idle.
    launches = _launches(logs)
    assert launches, "the autoscaler's log names no launch"
    assert 1 <= max(counts) <= 2, (timeline, launches)

    study = optuna.load_study(study_name="autoscale",
                              storage=f"sqlite:///{output / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8
    ran_on = {t.user_attrs.get("node_id") for t in trials}
    assert head_id not in ran_on and ran_on <= seen_workers, (ran_on, head_id, seen_workers)
    # Several trial processes on that one worker, each holding a quarter of its GPU: Tune
    # reuses a trial's process for the next trial, so a second process exists only while the
    # first is busy. (Up to four; fewer when a 1-epoch trial ends before the fourth starts.)
    first_results = [json.loads(path.read_text().splitlines()[0])
                     for path in (output / "ray" / "autoscale").glob("*/result.json")]
    assert len(first_results) == 8
    processes = {(r["node_id"], r["pid"]) for r in first_results}
    print(f"autoscaling: {len(processes)} trial processes shared the worker's GPU")
    assert 2 <= len(processes) <= 4
    per_node = [sum(node == n for node, _ in processes) for n in {n for n, _ in processes}]
    assert max(per_node) >= 2  # at least two trials shared one worker's single GPU
    if max(counts) == 2:  # only as the swap makes it: decided with the first worker active
        second = launches[1]  # and one group pending, and no trial ran on the second worker
        # (its CPU use at that update is not asserted: one CI run saw the ended trial's CPU
        # already freed in the same update, the first worker active and a group pending)
        assert "1 gpu_spot" in second and "1+ pending placement groups" in second, launches
        assert len({node for node, _ in processes}) == 1, (processes, launches)
        warnings.warn(f"the autoscaler added a second GPU worker at a trial swap: {second}",
                      stacklevel=1)
