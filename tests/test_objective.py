"""How a candidate's latency ratio is timed (`objective.latency`): every mode the config
admits has a timer, each ranks a large net above a small one, and `ort-int8` really times an
int8 graph."""

import typing

import onnx
import pytest

import models
from tune_jobs.config import ObjectiveConfig, load_config
from tune_jobs.trial import objective
from tune_jobs.trial.objective import LATENCY, measure_costs


def test_the_config_and_the_timers_name_the_same_modes() -> None:
    admitted = typing.get_args(ObjectiveConfig.model_fields["latency"].annotation)
    assert set(admitted) == set(LATENCY)


@pytest.mark.parametrize("mode", sorted(LATENCY))
def test_every_mode_ranks_a_large_net_above_a_small_one(mode: str) -> None:
    cfg = load_config("ci.yaml", [f"objective.latency={mode}", "objective.reference_size=64"])
    small, large = models.build("baseline"), models.build("mobilenet_v2")
    # MobileNetV2 has ~30x the baseline's MACs: slower in every runtime, quantized or not
    assert measure_costs(large, 64, cfg.objective, small).latency_ratio > 1.5
    if mode != "ort-int8":  # a net against itself (int8 against fp32 is no tie)
        same = measure_costs(small, 64, cfg.objective, small).latency_ratio
        assert same == pytest.approx(1.0, rel=0.3)


def test_ort_int8_times_the_quantized_graph(monkeypatch) -> None:
    made = []
    real = objective.quantize_static

    def recorded(fp32, out, reader, fmt):
        made.append(onnx.load(str(real(fp32, out, reader, fmt))))
        return out

    monkeypatch.setattr(objective, "quantize_static", recorded)
    cfg = load_config("ci.yaml", ["objective.latency=ort-int8"])
    costs = measure_costs(models.build("baseline"), 48, cfg.objective)
    assert costs.latency_ratio > 0 and costs.candidate_ms > 0
    (graph,) = made
    ops = {node.op_type for node in graph.graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops, ops  # QOperator U8S8: every conv int8


@pytest.mark.parametrize("mode", ["torch", "ort"])  # the default; the accurate preset's
def test_a_budget_named_after_a_net_is_its_ratio_timed_alongside_the_candidate(mode) -> None:
    cfg = load_config("ci.yaml", ["objective.max_latency_of=mobilenet_v3_small",
                                  "objective.max_latency_ratio=null",
                                  f"objective.latency={mode}"])
    fits = measure_costs(models.build("baseline"), 48, cfg.objective)
    # the budget net times as a ratio of the same reference, at the candidate's size
    assert fits.latency_limit is not None and fits.latency_limit > fits.latency_ratio
    assert fits.over_budget(cfg.objective) == ""
    # MobileNetV2 has ~4x MobileNetV3-Small's MACs and more layers: over its latency
    slow = measure_costs(models.build("mobilenet_v2"), 48, cfg.objective)
    assert slow.latency_ratio > slow.latency_limit
    assert "(mobilenet_v3_small's)" in slow.over_budget(cfg.objective)
    assert measure_costs(models.build("baseline"), 48,
                         load_config("ci.yaml").objective).latency_limit is None


def test_a_budget_net_that_does_not_exist_stops_the_search_before_ray() -> None:
    from tune_jobs.config import ConfigError
    from tune_jobs.searchjob import check_reference

    cfg = load_config("ci.yaml", ["objective.max_latency_of=resnet_9000"])
    with pytest.raises(ConfigError, match=r"objective.max_latency_of 'resnet_9000'.*"
                                          r"mobilenet_v3_small"):
        check_reference(cfg)
