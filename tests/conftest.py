"""Shared fixtures. Tests run on CPU with one torch thread per process, as CI machines have two
cores; anything needing PostgreSQL reads the URL that `.ci/run` exports."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


# The longest test files first, by their summed test time in a CI run (--junitxml): with
# `--dist loadfile --no-loadscope-reorder` pytest-xdist hands files to its two workers in this
# order, so the files left at the end are short ones and neither worker idles long while the
# other finishes a long file (by default xdist starts the files with the fewest tests last,
# test_ray_up's 4 minutes among them: about 5 min of one worker idle in a CI run). Files not
# named here follow in collection order.
LONGEST_FIRST = ("test_final", "test_search", "test_ray_up", "test_search_cli",
                 "test_final_runs", "test_compile", "test_autoscale", "test_cluster",
                 "test_outage", "test_secrets", "test_curves", "test_install", "test_int8")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [n for n in LONGEST_FIRST if not (REPO / "tests" / f"{n}.py").is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names no file: {missing}")
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: files stay whole


def free_ports(n: int = 1) -> list[int]:
    """n distinct ports free on 127.0.0.1 now (all bound at once, so never the same twice)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextlib.contextmanager
def debian_postgres_host() -> Iterator[None]:
    """Hold the host's one Debian PostgreSQL cluster (what head_postgres.sh starts with
    `pg_ctlcluster`) for a test, and stop it after: a file lock, so that two pytest-xdist
    workers never share it or stop it under each other."""
    with open(Path(tempfile.gettempdir()) / "litesearch-debian-postgres.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            stop_debian_postgres()


def stop_debian_postgres() -> None:
    """Stop every cluster of Debian's PostgreSQL package that a test started with
    `pg_ctlcluster` (head_postgres.sh does, on a host without systemd)."""
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for version in sorted(p.name for p in Path("/etc/postgresql").glob("*")):
        subprocess.run([*prefix, "pg_ctlcluster", version, "main", "stop"], capture_output=True,
                       timeout=60)


def _origin_checkout(repo: Path) -> Path | None:
    """The local checkout this repo was cloned from (`git clone /work/main /tmp/x`), if any."""
    try:
        url = subprocess.run(["git", "-C", str(repo), "remote", "get-url", "origin"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://"))
    return path.resolve() if url and path.is_absolute() and path.is_dir() else None


def find_shared_data(repo: Path = REPO) -> Path:
    """Where the shared data lives: $LITESEARCH_SHARED_DATA, else `shared/data` beside the repo
    or one of its parents, else beside the local checkout a temp-folder clone came from (so that
    `git clone . $(mktemp -d)/p && .ci/run` tests against the same data). The first candidate
    is returned when none exists, for the error message."""
    if env := os.environ.get("LITESEARCH_SHARED_DATA"):
        return Path(env)
    roots = [repo, *repo.parents]
    if (origin := _origin_checkout(repo)) is not None:
        roots += [origin, *origin.parents]
    candidates = [root.parent / "shared" / "data" for root in roots]
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DATA = find_shared_data()

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a throw-away PostgreSQL database. Under CI its absence is a failure, not a skip:
    a test that silently skips there would hide a broken `.ci/run`."""
    url = os.environ.get("LITESEARCH_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("LITESEARCH_TEST_POSTGRES_URL is not set; .ci/run should start PostgreSQL")
        pytest.skip("set LITESEARCH_TEST_POSTGRES_URL (see .ci/run) to run PostgreSQL tests")
    return url


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real TACO annotations and JPEG crops (see `find_shared_data`). Only the tests that
    read them need them: without it they skip saying so, except under CI,
    where a missing folder is a broken set-up."""
    if not SHARED_DATA.is_dir():
        why = (f"{SHARED_DATA}: the shared data folder is missing; put it beside the repo or "
               "set LITESEARCH_SHARED_DATA")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """One Ray for the in-process search tests: a simulated cluster of a head and two worker
    nodes with one CPU and one logical GPU each (the machine has two cores and no GPU)."""
    import ray
    from ray.cluster_utils import Cluster

    # metrics flushed each second (default 10 s) so tests can read the live gauges
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        "_system_config": {"metrics_report_interval_ms": 1000}})
    workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("decoded-cache")


@pytest.fixture(scope="session")
def fmnist(shared_data) -> Path:
    """fmnist-taco6: the TACO-shaped JPEG crop set (train/ and test/ class folders)."""
    return shared_data / "fmnist-taco6"


@pytest.fixture(scope="session")
def fmnist_train(fmnist) -> Path:
    return fmnist / "train"


@pytest.fixture(scope="session")
def taco_file(shared_data) -> Path:
    """The real TACO annotation file (COCO format)."""
    return shared_data / "taco" / "annotations.json"
