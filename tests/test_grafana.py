"""The Grafana dashboard shipped in configs/grafana/: a dashboard Grafana can provision (the
schema fields it needs, the datasource and study variables), and queries that name series that
exist: litesearch's own (checked against a real search's Prometheus export in
tests/test_search.py) and Ray's GPU metrics (checked against Ray's own dashboards)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ray

from conftest import REPO

DASHBOARD = REPO / "configs" / "grafana" / "litesearch.json"
_METRIC = re.compile(r"\b(ray_\w+)\b")
_SELECTOR_LABEL = re.compile(r"(\w+)\s*=~?")
_BY = re.compile(r"\bby\s*\(([^)]*)\)")


def grafana_queries(path: Path = DASHBOARD) -> dict[str, set[str]]:
    """metric name -> the label names the dashboard's queries select or group it by."""
    wanted: dict[str, set[str]] = {}
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            labels = {label.strip() for group in _BY.findall(expr) for label in group.split(",")}
            for selector in re.findall(r"\{([^}]*)\}", expr):
                labels |= set(_SELECTOR_LABEL.findall(selector))
            for metric in _METRIC.findall(expr):
                wanted.setdefault(metric, set()).update(labels - {""})
    return wanted


def test_the_dashboard_is_one_grafana_can_provision() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "litesearch" and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "label_values(ray_litesearch_trials, study)" in json.dumps(variables["study"])
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 5
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for what in ("trials by state", "best score", "epochs per second, by node", "gpu use"):
        assert what in titles


def test_it_graphs_the_search_gauges_and_rays_gpu_metrics() -> None:
    wanted = grafana_queries()
    ours = {m for m in wanted if m.startswith("ray_litesearch_")}
    assert ours == {"ray_litesearch_trials", "ray_litesearch_best_score",
                    "ray_litesearch_epochs_per_second", "ray_litesearch_epochs_total"}
    assert "node" in wanted["ray_litesearch_epochs_per_second"]
    assert "state" in wanted["ray_litesearch_trials"]
    # Ray's series: the names Ray's own Grafana dashboards query in this Ray version
    rays = Path(ray.__file__).parent / "dashboard" / "modules" / "metrics" / "dashboards"
    known = set(_METRIC.findall(" ".join(p.read_text() for p in rays.glob("*.py"))))
    for metric in set(wanted) - ours:
        assert metric in known, f"{metric} is not a metric Ray {ray.__version__} exports"
    assert "ray_node_gpus_utilization" in wanted
