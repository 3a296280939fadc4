import numpy as np
import pytest
import torch

import models
from models.cost import (
    cost_report,
    count_params,
    export_onnx,
    latency_ratio,
    latency_ratios,
    measure_latency,
    measure_onnx_latency,
    onnx_session,
    serialized_size,
)


def test_cost_report_types_and_ranges() -> None:
    model = models.build("baseline")
    report = cost_report(model, 64)
    assert isinstance(report.params, int) and report.params == count_params(model)
    assert isinstance(report.macs, int) and report.macs > report.params
    # float32 weights plus buffers and pickling overhead
    assert report.size_bytes > 4 * report.params
    assert 0 < report.latency_ms < 1000
    assert model.training, "measuring must not leave the model in eval mode"


def test_latency_fixes_threads_and_restores_them() -> None:
    before = torch.get_num_threads()
    lat = measure_latency(models.build("baseline"), 32, threads=2, warmup=2, repeats=5)
    assert lat.threads == 2 and lat.repeats == 5 and lat.backend == "eager"
    assert 0 < lat.median_ms <= lat.p90_ms
    assert torch.get_num_threads() == before
    ts = measure_latency(models.build("baseline"), 32, warmup=2, repeats=5, backend="torchscript")
    assert ts.backend == "torchscript" and ts.median_ms > 0
    with pytest.raises(ValueError, match="backend must be"):
        measure_latency(models.build("baseline"), 32, backend="tensorrt")


def _timing_holds(check, attempts: int = 3) -> None:
    """Run a timing check up to `attempts` times, passing on the first that holds: a burst of
    load from another process on a shared 2-core machine can spoil one measurement (it only
    ever adds time), but not three in a row; a wrong ordering fails all of them."""
    for attempt in range(attempts):
        try:
            check()
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


def test_latency_ratio_orders_small_and_large_nets() -> None:
    small = models.build("baseline")
    large = models.build("mobilenet_v2")

    def ordered() -> None:
        result = latency_ratio(large, small, 64, rounds=8, per_round=3)
        # MobileNetV2 has ~30x the MACs of the baseline: it must come out clearly slower.
        assert result.ratio > 1.5
        # the median of paired per-round ratios agrees with the ratio of the median latencies
        assert result.ratio == pytest.approx(result.candidate_ms / result.reference_ms,
                                             rel=0.15)

    def self_ratio() -> None:
        assert latency_ratio(small, small, 64, rounds=9).ratio == pytest.approx(1.0, rel=0.2)

    _timing_holds(ordered)
    _timing_holds(self_ratio)


def test_latency_ratios_time_each_candidate_at_its_own_size() -> None:
    net, reference = models.build("mobilenet_v2"), models.build("baseline")
    # one net at 32 and at 224 px (49x the pixels; 4.5x the time here) against one reference
    # at 32: the larger input is clearly slower. One size for all needs no reference size,
    # several do
    at32, at224 = latency_ratios([net, net], reference, [32, 224], reference_size=32,
                                 rounds=4)
    assert at224.ratio > 2 * at32.ratio
    assert at32.reference_ms == at224.reference_ms  # one reference, timed once
    with pytest.raises(ValueError, match="need a reference_size"):
        latency_ratios([net, net], reference, [32, 96])
    with pytest.raises(ValueError, match="2 input sizes for 1 candidates"):
        latency_ratios([net], reference, [32, 96], reference_size=32)


@pytest.mark.parametrize("name", models.list_presets())
def test_onnx_export_matches_torch(name: str, tmp_path) -> None:
    model = models.build(name).eval()
    size = model.spec.input_size
    path = export_onnx(model, size, tmp_path / f"{name}.onnx")
    session = onnx_session(path)
    x = torch.randn(3, 3, size, size)  # batch 3: the batch axis is dynamic
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    lat = measure_onnx_latency(path, size, warmup=1, repeats=3)
    assert lat.backend == "onnxruntime" and lat.median_ms > 0


def test_serialized_size_grows_with_parameters() -> None:
    assert serialized_size(models.build("mobilenet_v2")) > serialized_size(
        models.build("baseline")
    )
