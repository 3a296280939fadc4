"""Shared fixtures. Tests run on CPU with one torch thread per process, as CI machines have two
cores; anything needing PostgreSQL reads the URL that `.ci/run` exports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("LITESEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))

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
    """The real TACO annotations and JPEG crops (../shared/data beside the repo, or
    $LITESEARCH_SHARED_DATA). Only the tests that read them need them: without it they skip
    saying so, except under CI, where a missing folder is a broken set-up."""
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
