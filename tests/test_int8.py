"""int8 for real: a net trained on the demo JPEGs, quantized by ONNX Runtime in every format,
measured beside fp32 on the real test split; the calibration reader against the deployment's
preprocessing; a model forced to lose accuracy (calibrated on the wrong images) and one that
cannot be quantized are flagged, and nothing else is lost."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import models
from conftest import REPO
from data_utils.augment import prepare_eval
from data_utils.demo import demo_root
from tune_jobs.config import load_config
from tune_jobs.finaljob.int8 import FormatResult, assess_int8, choose, ort_predictions
from tune_jobs.finaljob.meta import META_KEY, ModelMeta
from tune_jobs.finaljob.preprocess import load_batch
from tune_jobs.finaljob.quantize import FORMATS, CalibrationImages
from tune_jobs.finaljob.runs import Bench, Job, Net
from tune_jobs.finaljob.stats import estimate
from tune_jobs.predict import predict_folder
from tune_jobs.trial.space import TrainParams

# The tests that train (about a minute in all) are in the slow lane with the final job's.
SIZE = 32
SEEDS = (1, 2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """The baseline preset (MobileNetV3 blocks: squeeze-excite, hard-swish, the known trouble
    for int8) trained on the demo data, two seeds, and the data it was trained on."""
    cfg = load_config("ci.yaml", [f"data.cache_dir={cache_dir}"])
    bench = Bench(cfg, tmp_path_factory.mktemp("int8-train"), epochs=6,
                  device=torch.device("cpu"), progress=False)
    spec = models.load_preset("baseline").replace(input_size=SIZE, width=0.5)
    params = TrainParams(image_size=SIZE, batch_size=64, optimizer="adamw", lr=0.005,
                         weight_decay=1e-4, schedule="cosine", label_smoothing=0.0,
                         augment_magnitude=0.0)
    runs = [bench.run(Job("int8", Net(spec, 6), params, seed, "trainval")) for seed in SEEDS]
    data = bench.prepared(SIZE)
    return [m.eval() for m, _ in runs], data, ModelMeta(data.classes, SIZE, cfg.data.resize)


def _black_jpegs(folder, n=24):
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (40, 30), (0, 0, 0)).save(folder / f"black{i}.jpg")
    return sorted(str(p) for p in folder.glob("*.jpg"))


@pytest.mark.slow
def test_int8_keeps_the_accuracy_of_a_trained_net(trained, tmp_path) -> None:
    nets, data, meta = trained
    target = tmp_path / "model.int8.onnx"
    result = assess_int8("searched", nets, list(SEEDS), 0, meta, data.test, data.train.files,
                         target, images=200)
    assert [f.format for f in result.formats] == list(FORMATS)
    assert all(f.error is None for f in result.formats), result.formats
    # fp32 through ONNX Runtime is the torch model's F1 on the same cached test images
    with torch.inference_mode():
        torch_pred = nets[0](prepare_eval(torch.from_numpy(data.test.images.copy()))).argmax(1)
    assert result.fp32_f1[0] > 0.3  # it learned (6 classes: chance is ~0.17)
    for f in result.formats:
        assert len(f.f1) == len(SEEDS)
        diffs = [a - b for a, b in zip(f.f1, result.fp32_f1, strict=True)]
        assert f.f1_difference == estimate(diffs)
        # int8 is nearly the fp32 net (a weak one: many test images lie near a boundary)
        assert abs(f.f1_difference.mean) < 0.05 and f.agreement > 0.8, f
        assert 0.15 < f.size_ratio < 0.6
        assert f.latency_ratio > 0 and f.batch64_ratio > 0 and f.fp32_ms > 0
    # the written file is the chosen format of the shipped seed, its metadata says so
    assert result.chosen in FORMATS and result.path == str(target) and target.is_file()
    stored = ModelMeta.from_json({p.key: p.value for p in onnx.load(str(target))
                                  .metadata_props}[META_KEY])
    assert stored.precision == f"int8 {FORMATS[result.chosen].label}"
    assert stored.classes == meta.classes and stored.input_size == SIZE
    assert (stored.warning is None) == (result.shipped == "int8") == (not result.flags)
    int8_pred = ort_predictions(target, data.test.images)
    assert np.mean(int8_pred == torch_pred.numpy()) > 0.8
    assert not (tmp_path / "model.int8.onnx-work").exists()  # per-seed files cleaned up


@pytest.mark.slow
def test_calibration_reads_exactly_what_predict_feeds_the_model(trained, tmp_path) -> None:
    _, data, meta = trained
    files = [*data.train.files[:40], str(tmp_path / "broken.jpg")]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    reader = CalibrationImages(files, meta, count=41, batch=16, seed=3)
    batches = [b["images"] for b in reader]
    assert reader.used == 40 == sum(map(len, batches)) and len(batches) == 3
    expected, kept, skipped = load_batch(reader.files, meta)  # predict's own function
    assert [f for f, _ in skipped] == [str(tmp_path / "broken.jpg")]
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    # ... which is what the training side's cache and torch normalisation give
    rows = [data.train.files.index(f) for f in kept]
    with torch.inference_mode():
        torch_side = prepare_eval(torch.from_numpy(data.train.images[rows].copy())).numpy()
    np.testing.assert_allclose(expected, torch_side, atol=1e-5)
    assert [b["images"].shape[0] for b in reader] == [len(b) for b in batches]  # re-iterable


@pytest.mark.slow
def test_a_model_calibrated_on_the_wrong_images_is_flagged_and_fp32_ships(trained,
                                                                          tmp_path) -> None:
    nets, data, meta = trained
    target = tmp_path / "model.int8.onnx"
    black = _black_jpegs(tmp_path / "black")
    result = assess_int8("searched", nets[:1], [SEEDS[0]], 0, meta, data.test, black, target)
    assert result.shipped == "fp32"
    assert result.flags and result.flags[0].startswith("int8 loses accuracy"), result.flags
    best = max(f.f1_difference.mean for f in result.formats)
    assert best < -0.01
    assert result.worst_tensors and all(np.isfinite(t.own_db) for t in result.worst_tensors)
    assert target.is_file()  # still written, with the warning a deployment sees
    out = subprocess.run([sys.executable, str(REPO / "tune_jobs" / "predict.py"), "--model",
                          str(tmp_path / "model.onnx"), "--int8", "--images",
                          str(demo_root() / "test" / "Metal"), "--out", str(tmp_path / "p.csv")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "model.int8.onnx (int8 " in out.stdout
    assert "did not ship this model: int8 loses accuracy" in out.stderr


@pytest.mark.slow
def test_a_model_that_cannot_be_quantized_is_flagged_with_the_error(trained, tmp_path) -> None:
    nets, data, meta = trained
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    for calibration, says in (([str(broken)] * 3, "could be decoded"),
                              ([], "no calibration images")):
        target = tmp_path / "model.int8.onnx"
        result = assess_int8("searched", nets[:1], [SEEDS[0]], 0, meta, data.test,
                             calibration, target)
        assert result.shipped == "fp32" and result.chosen is None and result.path is None
        assert result.flags[0].startswith("cannot quantize") and says in result.flags[0]
        assert all(f.error for f in result.formats) and not target.exists()
        assert result.fp32_f1[0] > 0.3  # the fp32 measurement is kept
        json.dumps(__import__("dataclasses").asdict(result))  # metrics.json can hold it


def _format(name, diff, ratio, error=None) -> FormatResult:
    e = None if error else estimate([diff, diff])
    return FormatResult(name, name.upper(), [], e, 1.0, ratio, 1.0, 1.0, ratio, 100, 0.3, error)


def test_the_shipped_format_is_the_fastest_that_keeps_the_accuracy() -> None:
    fast_bad, slow_ok, mid_ok = (_format("a", -0.05, 0.5), _format("b", 0.0, 0.9),
                                 _format("c", -0.005, 0.7))
    assert choose([fast_bad, slow_ok, mid_ok], 0.01) == (mid_ok, [])
    for tie in (1.2, 0.97):  # slower, or faster only within the timing noise
        chosen, flags = choose([fast_bad, _format("d", 0.0, tie)], 0.01)
        assert chosen.format == "d" and "not faster" in flags[0]
    chosen, flags = choose([fast_bad, _format("e", -0.02, 0.4)], 0.01)
    assert chosen.format == "e" and "loses accuracy" in flags[0]
    chosen, flags = choose([_format("f", 0, 0, error="boom")], 0.01)
    assert chosen is None and "boom" in flags[0]


@pytest.mark.slow
def test_predict_int8_without_an_int8_file_says_what_to_do(trained, tmp_path) -> None:
    from tune_jobs.finaljob.export import export_onnx_with_meta

    nets, _, meta = trained
    model = export_onnx_with_meta(nets[0], meta, tmp_path / "model.onnx")
    out = subprocess.run([sys.executable, str(REPO / "tune_jobs" / "predict.py"), "--model",
                          str(model), "--int8", "--images", str(demo_root() / "test")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and "no int8 model beside model.onnx" in out.stderr
    rows, _ = predict_folder(model, demo_root() / "test" / "Paper")
    assert rows  # the fp32 file itself still runs


def test_quantizing_leaves_sys_path_alone_for_spawned_workers(tmp_path) -> None:
    """ORT's quantization tools import `onnxruntime.transformers`, which appends its folder to
    `sys.path`; its `models` namespace then shadowed litesearch's `models` in the final job's
    spawned training workers. In a fresh process: quantize, then spawn a worker that builds a
    net."""
    import subprocess
    import sys

    from conftest import REPO

    script = f"""
import multiprocessing, sys
import numpy as np
import models
from models.cost import export_onnx
from models.int8 import FORMATS, FASTEST, ArrayCalibration, preprocess, quantize_static

def build(_):
    import models
    return type(models.build_model(models.load_preset("baseline"))).__name__

if __name__ == "__main__":
    before = list(sys.path)
    fp32 = export_onnx(models.build("baseline").eval(), 32, r"{tmp_path}/m.onnx")
    x = np.zeros((2, 3, 32, 32), np.float32)
    quantize_static(preprocess(fp32, r"{tmp_path}/pre.onnx"), r"{tmp_path}/q.onnx",
                    ArrayCalibration(x), FORMATS[FASTEST])
    assert sys.path == before, set(sys.path) - set(before)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(pool.map(build, [0]))
"""
    (tmp_path / "probe.py").write_text(script)  # spawn re-imports the main module: a file
    done = subprocess.run([sys.executable, "probe.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**__import__("os").environ,
                                                       "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "['LiteNet']" in done.stdout
