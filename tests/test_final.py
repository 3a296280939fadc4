"""The final job end to end on configs/ci.yaml (search, then retrain, benchmark, export,
report), the choice of trial, resume of a retrain, and predict."""

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from PIL import Image

from conftest import REPO
from data_utils.demo import demo_root
from tune_jobs.config import ConfigError, load_config
from tune_jobs.finaljob.candidates import choose_trial
from tune_jobs.finaljob.export import load_state, load_torchscript
from tune_jobs.finaljob.job import run_final
from tune_jobs.finaljob.options import FinalOptions
from tune_jobs.predict import predict_folder
from tune_jobs.searchjob import run_search
from tune_jobs.study.ranking import NoCompleteTrial, best_complete
from tune_jobs.study.storage import open_storage

# Real Ray searches and trainings: the slow lane (`pytest -m slow`; all of it in CI).
pytestmark = pytest.mark.slow

BASELINES = ("mobilenet_v3_small", "shufflenet_v2_x0_5")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir, ray_local):
    out = tmp_path_factory.mktemp("final-run")
    # 2 final epochs (the search's 3): the study's config says so to every test that goes on
    # from it; the baselines' trainings are most of this fixture's minutes
    cfg = load_config("ci.yaml", [f"output={out}", f"search.study=f-{uuid.uuid4().hex[:6]}",
                                  f"data.cache_dir={cache_dir}", "search.storage=null",
                                  "final.epochs=2"])
    with pytest.MonkeyPatch.context() as mp:  # a module fixture: no function monkeypatch
        mp.delenv("LITESEARCH_STORAGE", raising=False)
        _, url = run_search(cfg)
    study = optuna.load_study(study_name=cfg.search.study, storage=open_storage(url))
    # the baselines are also tried at 24 px beside the searched 16 px (each at its own size)
    metrics = run_final(study, out, FinalOptions(baselines=BASELINES, progress=False, seeds=2,
                                                 top_k=2, baseline_sizes=(24,)))
    return out, study, metrics


def test_every_artifact_exists_and_the_exports_agree(finished_run) -> None:
    out, _, _ = finished_run
    final = out / "final"
    for name in ("spec.yaml", "model.pt", "model.ts", "model.onnx", "model.int8.onnx",
                 "baselines/mobilenet_v3_small.int8.onnx", "metrics.json",
                 "report.md", "pareto.png", "learning_curves.png", "retrain_curves.png",
                 "confusion.png"):
        assert (final / name).is_file(), name
    for png in final.glob("*.png"):
        with Image.open(png) as img:
            img.verify()
            assert img.format == "PNG"
    model, spec, meta = load_state(final / "model.pt")
    x = torch.randn(5, 3, meta.input_size, meta.input_size)
    with torch.no_grad():
        expected = model(x).numpy()
    scripted, ts_meta = load_torchscript(final / "model.ts")
    assert ts_meta == meta
    with torch.no_grad():
        np.testing.assert_allclose(scripted(x).numpy(), expected, atol=1e-4)
    from models.cost import onnx_session

    onnx_out = onnx_session(final / "model.onnx").run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(onnx_out, expected, atol=1e-4)
    assert spec.num_classes == len(meta.classes) == 6


def test_the_night_summary_quotes_the_report_and_sums_every_segment(finished_run,
                                                                   tmp_path) -> None:
    """benchmarks/night_summary.py on a night.sh results folder: the report's claim and tables
    as written, the search's trial counts, the wall time summed over a stopped-and-resumed
    run's segments; a damaged stages.tsv or a missing report is an error naming the file."""
    out, _, metrics = finished_run
    folder = tmp_path / "night"
    folder.mkdir()
    shutil.copy(out / "final" / "report.md", folder)
    (folder / "stages.tsv").write_text(
        "search\t2026-12-04T12:06:17Z\t2026-12-04T13:11:55Z\t3938\t137\n"  # killed
        "search\t2026-12-04T14:35:00Z\t2026-12-04T15:40:00Z\t3900\t0\n"
        "final\t2026-12-04T15:40:00Z\t2026-12-04T17:40:00Z\t7200\t0\n")
    (folder / "trials.csv").write_text("number,state,f1\n0,COMPLETE,0.8\n1,PRUNED,0.5\n"
                                       "2,PRUNED,0.4\n")
    script = [sys.executable, str(REPO / "benchmarks" / "night_summary.py"), str(folder)]
    done = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = (folder / "summary.md").read_text()
    assert text == done.stdout
    assert ("4.2 h in all (search 2.2 h over 2 segments, 1 of them killed with the run and "
            "counted to its last tick; final 2.0 h over 1 segment; stages.tsv)") in text
    assert "3 trials (COMPLETE 1, PRUNED 2" in text
    claim = metrics.claim
    assert f"### Claim ({claim.point} operating point): {claim.verdict}" in text
    for heading in ("### Test metrics", "#### Searched model against each baseline",
                    "#### Baseline recipes and input sizes"):
        assert heading in text
    report = (folder / "report.md").read_text()
    table = next(line for line in report.splitlines() if line.startswith("| searched |"))
    assert table in text  # quoted, not recomputed
    (folder / "stages.tsv").write_text("search\t2026-12-04T12:06:17Z\t3938\t130\n")
    bad = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "stages.tsv: a line of 4 fields, not 5" in bad.stderr
    (folder / "report.md").unlink()
    bad = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "no report.md" in bad.stderr


def test_the_night_summary_of_a_final_job_still_running(finished_run, tmp_path) -> None:
    """No report.md yet, the final job's trainings.jsonl copied: progress.md gives each
    training kind's seeds so far with mean and interval (the last line of a training that a
    re-run appended again counts once); a damaged line is an error naming file and line."""
    out, _, metrics = finished_run
    folder = tmp_path / "night"
    folder.mkdir()
    jsonl = (out / "final" / "trainings.jsonl").read_text()
    (folder / "trainings.jsonl").write_text(jsonl + jsonl)  # as if re-run to the end
    (folder / "stages.tsv").write_text(
        "search\t2026-12-04T12:06:17Z\t2026-12-04T13:11:55Z\t3938\t0\n")
    (folder / "trials.csv").write_text("number,state,f1\n0,COMPLETE,0.8\n")
    script = [sys.executable, str(REPO / "benchmarks" / "night_summary.py"), str(folder)]
    done = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = (folder / "progress.md").read_text()
    assert text == done.stdout and not (folder / "summary.md").exists()
    assert "wall time so far 66 min in all (search 66 min over 1 segment; stages.tsv)" in text
    searched = next(m for m in metrics.models if m.name == "searched")
    row = next(line for line in text.splitlines() if line.startswith("| searched | test |"))
    assert f"| {searched.f1.text()} |" in row  # the same seeds, counted once each
    assert row.split(" | ")[2] == ", ".join(str(r.seed) for r in searched.runs)
    (folder / "trainings.jsonl").write_text(jsonl + '{"name": "searched", "split": "tr')
    bad = subprocess.run(script, capture_output=True, text=True, timeout=60)
    n = len(jsonl.splitlines()) + 1
    assert bad.returncode != 0 and f"trainings.jsonl:{n}: not a line" in bad.stderr


def test_metrics_have_the_fields_in_sane_ranges(finished_run) -> None:
    out, _, metrics = finished_run
    on_disk = json.loads((out / "final" / "metrics.json").read_text())
    assert on_disk["chosen"]["number"] == metrics.chosen.number
    assert on_disk == json.loads(json.dumps(metrics.to_json()))
    for name, m in [("model", on_disk["model"]), *on_disk["baselines"].items()]:
        assert 0 <= m["test"]["f1"] <= 1 and 0 <= m["test"]["accuracy"] <= 1, name
        assert sum(map(sum, m["test"]["confusion"])) == m["test_images"] == 500
        assert m["costs"]["params"] > 0 and m["costs"]["macs"] > 0
        assert m["costs"]["size_bytes"] > 4 * m["costs"]["params"]
        cpu = m["speed"]["cpu"]
        assert all(cpu[k] > 0 for k in ("eager_ms", "torchscript_ms", "onnxruntime_ms"))
        assert cpu["onnxruntime_batch64_img_s"] > 0
        assert m["ratio"]["latency_ratio"] > 0 and m["submit"]["images"] == 500
        assert m["submit"]["seconds"] > 0 and m["scores"]["score"] > 0
        assert max(m["export_max_abs_diff"].values()) <= 1e-4
    assert set(on_disk["baselines"]) == set(BASELINES)
    assert len(on_disk["history"]) == on_disk["epochs"] == 2
    # every model over its seeds, the shipped run the median one
    assert [m["name"] for m in on_disk["models"]] == ["searched", *BASELINES]
    assert on_disk["seeds"] == 2
    assert on_disk["chosen"]["state"] == "COMPLETE"  # enums by name in metrics.json
    for m in on_disk["models"]:
        f1s = [r["f1"] for r in m["runs"]]
        f1 = m["f1"]
        assert f1["n"] == len(f1s) == 2 and len({r["seed"] for r in m["runs"]}) == 2
        assert f1["mean"] == pytest.approx(np.mean(f1s))
        assert f1["std"] == pytest.approx(np.std(f1s, ddof=1))
        low, high = f1["ci95"]
        assert low <= f1["mean"] <= high
        assert m["recipe"] in ("searched", "standard") and isinstance(m["trained"], bool)
        assert m["shipped_seed"] == min(m["runs"], key=lambda r: r["f1"])["seed"]
        assert all(r["split"] == "trainval" for r in m["runs"])
    shipped = on_disk["models"][0]
    assert on_disk["model"]["test"]["f1"] == pytest.approx(
        next(r["f1"] for r in shipped["runs"] if r["seed"] == shipped["shipped_seed"]))
    assert on_disk["models"][0]["image_size"] == on_disk["input_size"] == 16
    assert on_disk["models"][0]["recipe_trials"] == []  # fast: the searched size only
    from models.cost import onnx_session

    for m in on_disk["models"][1:]:  # each baseline tried both recipes at both sizes
        trials = m["recipe_trials"]
        assert [(t["recipe"], t["params"]["image_size"]) for t in trials] == [
            ("searched", 16), ("standard", 16), ("searched", 24), ("standard", 24)]
        pool = [t for t in trials if t["training"]["trained"]] or trials
        best = max(pool, key=lambda t: t["val_f1"])  # on validation, and then used throughout
        assert (m["recipe"], m["image_size"]) == (best["recipe"], best["params"]["image_size"])
        onnx = onnx_session(out / "final" / "baselines" / f"{m['name']}.onnx")
        assert onnx.get_inputs()[0].shape[2:] == [m["image_size"]] * 2
    assert [c["baseline"] for c in on_disk["comparisons"]] == list(BASELINES)
    # the fast point's claim (ci.yaml scores): each baseline read against -margin, the
    # latency against a third of the fastest baseline's, all timed together
    claim = on_disk["claim"]
    assert claim["point"] == "fast" and claim["margin"] == 0.02
    ratios = claim["latency_ratios"]
    assert set(ratios) == {"searched", *BASELINES} and claim["latency_ratio"] == ratios["searched"]
    assert claim["latency_limit"] == pytest.approx(min(ratios[b] for b in BASELINES) / 3)
    assert claim["fast_enough"] == (ratios["searched"] <= claim["latency_limit"])
    assert [c["baseline"] for c in claim["checks"]] == list(BASELINES)
    for check, comparison in zip(claim["checks"], on_disk["comparisons"], strict=True):
        assert check["f1_difference"] == comparison["f1_difference"] and check["bound"] == -0.02
        low, high = check["f1_difference"]["ci95"]
        assert check["verdict"] == ("not judged" if comparison["verdict"] == "not judged" else
                                    "shown" if low > -0.02 else
                                    "refuted" if high < -0.02 else "not shown")
        judged = check["verdict"] != "not judged"
        assert (check["seeds_for_target"] >= 2) if judged else check["seeds_for_target"] is None
    widths = [c["half_width"] for c in claim["checks"] if c["half_width"] is not None]
    assert claim["half_width"] == (max(widths) if widths else None)
    assert claim["verdict"] in ("shown", "not shown", "refuted", "not judged")
    # the same condition in ONNX Runtime, from the median runs' exports as the report lists
    # them, reported beside the verdict
    ort = {m["name"]: m["onnxruntime_ms"] for m in on_disk["models"]}
    o = claim["onnxruntime"]
    assert o["searched_ms"] == ort["searched"]
    assert o["limit_ms"] == pytest.approx(min(ort[b] for b in BASELINES) / 3)
    assert o["met"] == (ort["searched"] <= o["limit_ms"])
    # top-k: two candidates of distinct architectures, each with two runs judged on validation
    cands = on_disk["candidates"]
    assert len(cands) == 2 and cands[0]["number"] == on_disk["chosen"]["number"]
    assert cands[0]["rank_value"] <= cands[1]["rank_value"]
    assert all(r["split"] == "train" and len(c["runs"]) == 2 for c in cands for r in c["runs"])
    assert "top-k" in on_disk["chosen"]["why"]
    # int8 beside fp32: every model, every seed, every format; shipped only when it holds
    assert [r["name"] for r in on_disk["int8"]] == ["searched", *BASELINES]
    for r, m in zip(on_disk["int8"], on_disk["models"], strict=True):
        assert r["seeds"] == [run["seed"] for run in m["runs"]]
        assert r["shipped_seed"] == m["shipped_seed"]
        # ORT fp32 on the cached test images is the torch evaluation of the same run
        assert r["fp32_f1"] == pytest.approx([run["f1"] for run in m["runs"]], abs=2e-3)
        made = [f for f in r["formats"] if f["error"] is None]
        assert made and all(len(f["f1"]) == 2 and f["f1_difference"]["ci95"] for f in made)
        assert r["shipped"] == ("int8" if not r["flags"] else "fp32")
        assert r["chosen"] in {f["format"] for f in made}


def test_report_has_the_tables(finished_run) -> None:
    out, _, metrics = finished_run
    report = (out / "final" / "report.md").read_text()
    for heading in (f"## Claim (fast operating point): {metrics.claim.verdict}",
                    "## Chosen trial", "### Top-k re-evaluation",
                    "## Test metrics, searched model against baselines",
                    "### Searched model against each baseline",
                    "### Baseline recipes and input sizes, chosen on validation",
                    "### The median runs",
                    "## int8 beside fp32", "## Per class (test)", "## Search summary"):
        assert heading in report
    assert "trial-epochs of the" in report  # the compute ledger
    assert "| searched |" in report
    for name in BASELINES:
        assert f"| {name} |" in report
    assert f"Trial #{metrics.chosen.number}" in report
    assert "![Pareto front](pareto.png)" in report
    assert "![final trainings](retrain_curves.png)" in report
    for c in metrics.comparisons:  # two seeds: an interval and a verdict read from it
        assert c.f1_difference.ci95 is not None
        assert f"| {c.baseline} | {c.f1_difference.text()} |" in report


def test_predict_classifies_a_folder_and_skips_a_corrupt_image(finished_run, tmp_path) -> None:
    out, _, _ = finished_run
    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in sorted((demo_root() / "test" / "Paper").glob("*.jpg"))[:5]:
        shutil.copy2(f, folder / f.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    rows, skipped = predict_folder(out / "final" / "model.onnx", folder)
    assert len(rows) == 5 and [p.name for p, _ in skipped] == ["broken.jpg"]
    classes = json.loads((out / "final" / "metrics.json").read_text())["model"]["test"]
    assert all(c in classes["per_class"] for _, c in rows)
    ts_rows, _ = predict_folder(out / "final" / "model.ts", folder)
    assert ts_rows == rows  # the two exports predict the same classes
    cli = subprocess.run([sys.executable, str(REPO / "tune_jobs" / "predict.py"), "--model",
                          str(out / "final" / "model.onnx"), "--images", str(folder), "--out",
                          str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "skipped" in cli.stderr and "broken.jpg" in cli.stderr
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "file,class"
    # an ONNX deployment needs the runtime, numpy and Pillow, not torch
    probe = ("import sys; from pathlib import Path; from tune_jobs.predict import predict_folder;"
             f" rows, _ = predict_folder(Path({str(out / 'final' / 'model.onnx')!r}),"
             f" Path({str(folder)!r})); assert len(rows) == 5;"
             " assert 'torch' not in sys.modules, 'torch was imported'")
    lean = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert lean.returncode == 0, lean.stderr[-2000:]


def _study_with(trials: list[tuple[TrialState, float, float, float]],
                epochs: list[int] | None = None) -> optuna.Study:
    """(state, score, f1, latency ratio) per trial, recorded as the mirror records them;
    `epochs`: each trial's epochs done."""
    study = optuna.create_study(direction="minimize")
    for i, (state, score, f1, ratio) in enumerate(trials):
        study.add_trial(create_trial(
            state=state, value=score, params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)},
            intermediate_values={1: score},
            user_attrs={"score": score, "f1": f1, "latency_ratio": ratio, "spec": "x",
                        "epoch": epochs[i] if epochs else 9,
                        "epochs_done": epochs[i] if epochs else 9}))
    return study


def test_the_best_is_of_the_highest_budget_a_complete_trial_reached() -> None:
    """Under PASHA trials are COMPLETE at the budget they were given: the best is the best of
    those trained the most epochs (a 3-epoch score is not comparable to a 9-epoch one)."""
    study = _study_with([(TrialState.COMPLETE, 0.2, 0.9, 0.1),
                         (TrialState.COMPLETE, 0.9, 0.6, 0.5),
                         (TrialState.COMPLETE, 0.7, 0.7, 0.8)], epochs=[3, 9, 9])
    assert best_complete(study).number == 2


def test_choice_prefers_complete_over_a_lucky_pruned_trial() -> None:
    study = _study_with([(TrialState.PRUNED, 0.2, 0.9, 0.1),
                         (TrialState.COMPLETE, 0.9, 0.6, 0.5),
                         (TrialState.COMPLETE, 0.7, 0.7, 0.8)])
    assert best_complete(study).number == 2
    assert choose_trial(study, FinalOptions())[0].number == 2
    assert choose_trial(study, FinalOptions(trial=1))[0].number == 1
    pick, why = choose_trial(study, FinalOptions(pareto=True, max_latency_ratio=0.6))
    assert pick.number == 1 and "latency ratio <= 0.6" in why
    with pytest.raises(ConfigError, match=r"fastest has 0\.500"):
        choose_trial(study, FinalOptions(pareto=True, max_latency_ratio=0.3))
    with pytest.raises(ConfigError, match="no trial #9"):
        choose_trial(study, FinalOptions(trial=9))


def test_a_study_without_complete_trials_is_a_clear_error() -> None:
    study = _study_with([(TrialState.PRUNED, 0.2, 0.9, 0.1)])
    with pytest.raises(NoCompleteTrial, match=r"no COMPLETE trial \(\{'PRUNED': 1\}\)"):
        choose_trial(study, FinalOptions())


@pytest.mark.parametrize("stop", ["kill", "ctrl-c"])
def test_an_interrupted_retrain_resumes_from_its_checkpoint(finished_run, tmp_path,
                                                             stop) -> None:
    """Kill a long retrain mid-way (SIGKILL: a crash) or Ctrl+C it (SIGINT: exit 130 and how
    to go on), run it again: it continues from the last finished epoch instead of starting
    over."""
    out, study, _ = finished_run
    proc = subprocess.Popen([sys.executable, str(REPO / "tune_jobs" / "final.py"), "--study",
                             study.study_name, "--storage", f"sqlite:///{out}/study.db",
                             "--output", str(tmp_path), "--epochs", "40"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    final = tmp_path / "final"
    deadline = time.monotonic() + 120
    checkpoint = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(final.glob("checkpoint-searched-trainval-*.pt"))
        checkpoint = found[0] if found else None
        if checkpoint is not None:
            try:
                if torch.load(checkpoint, weights_only=False)["epoch"] >= 3:
                    break
            except Exception:  # caught mid-replace; try again
                pass
        time.sleep(0.2)
    assert proc.poll() is None, "the retrain ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL if stop == "kill" else signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    if stop == "ctrl-c":
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted: run the same command again to go on" in err
        assert "Traceback" not in err
    before = torch.load(checkpoint, weights_only=False)
    assert 3 <= before["epoch"] < 40
    metrics = run_final(study, tmp_path, FinalOptions(epochs=40, progress=False))
    history = metrics.history
    assert [h["epoch"] for h in history] == list(range(1, 41))
    # the first epochs are the interrupted run's own records (timings included): resumed,
    # not restarted
    assert history[: before["epoch"]] == before["history"]
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 40


def test_the_final_job_runs_as_a_ray_task_on_a_gpu_node(finished_run, tmp_path, ray_local):
    """`final.py --gpus 1` on a cluster: the retrain runs on a worker holding a (logical) GPU,
    from an in-memory copy of the study, and its artifacts come back to the driver."""
    from tune_jobs.finaljob.remote import run_final_on_cluster

    _, study, local = finished_run
    _, workers = ray_local
    metrics = run_final_on_cluster(study, tmp_path, FinalOptions(epochs=2, progress=False),
                                   gpus=1)
    assert metrics.ran_on["gpu_ids"], "the task held no GPU"
    assert metrics.ran_on["node_id"] in {w.node_id for w in workers}
    assert metrics.chosen.number == local.chosen.number
    final = tmp_path / "final"
    for name in ("model.onnx", "model.ts", "model.pt", "spec.yaml", "report.md",
                 "metrics.json", "pareto.png", "confusion.png"):
        assert (final / name).stat().st_size > 0, name
    assert not list(final.glob("checkpoint*"))
    assert json.loads((final / "metrics.json").read_text())["epochs"] == 2


def test_reuse_from_a_run_folder_lost_with_its_machine_trains_again_only_what_it_ships(
        finished_run, tmp_path) -> None:
    """`final.py --reuse-from KEPT` with the fixture's options, KEPT being what
    benchmarks/night_keep.py keeps of the fixture's run folder lost with its machine (its
    final/trainings.jsonl and metrics.json, no checkpoint): every finished training (top-k
    checks, recipe trials, seeds) is taken from its line, and only each model's median is
    trained again, for the weights the job exports and times, to the fixture's test F1 (the
    same seed); the report says so. A folder with neither file is a clear error."""
    from tune_jobs.finaljob import TRAININGS

    out, study, first = finished_run
    kept = tmp_path / "kept"
    (kept / "final").mkdir(parents=True)
    for name in (TRAININGS, "metrics.json"):
        shutil.copy(out / "final" / name, kept / "final" / name)
    cmd = [sys.executable, str(REPO / "tune_jobs" / "final.py"), "--study", study.study_name,
           "--storage", f"sqlite:///{out}/study.db", "--output", str(tmp_path / "run"),
           "--baselines", ",".join(BASELINES), "--seeds", "2", "--top-k", "2",
           "--baseline-sizes", "24", "--no-int8"]
    done = subprocess.run([*cmd, "--reuse-from", str(tmp_path / "elsewhere")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"--reuse-from {tmp_path / 'elsewhere'}: no final-job checkpoints" in done.stderr

    done = subprocess.run([*cmd, "--reuse-from", str(kept)], capture_output=True, text=True,
                          cwd=REPO, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    final = tmp_path / "run" / "final"
    metrics = json.loads((final / "metrics.json").read_text())
    # top-k checks, 2 seeds per model, 2 recipes x 2 sizes per baseline; + 3 medians again
    n = 2 * len(first.candidates) + 2 * 3 + 2 * 2 * 2
    assert (metrics["trainings"], metrics["taken_over"]) == (n + 3, n)
    assert metrics["reused_from"] == str(kept)
    trained = sorted(p.name for p in final.glob("checkpoint-*"))
    assert len(trained) == 3 and all("-trainval-" in name for name in trained), trained
    report = (final / "report.md").read_text()
    assert f"{n} of this job's {n + 3} trainings were taken over from `{kept}`" in report
    again = {m["name"]: [r["f1"] for r in m["runs"]] for m in metrics["models"]}
    assert again == {m.name: [r.f1 for r in m.runs] for m in first.models}
    assert metrics["chosen"]["number"] == first.chosen.number
    assert (final / "model.onnx").is_file()


def test_reuse_from_a_lost_run_tries_its_baseline_recipe_and_takes_over_its_records(
        finished_run, tmp_path) -> None:
    """`--reuse-from` a run folder lost with its machine (its final/trainings.jsonl and
    metrics.json kept, no checkpoint) by a final job of another trial: the recipe that run
    chose for the baseline is tried beside this job's own ("reused"), its recipe trial is
    taken over from the kept line (same validation F1), and where it wins, so are its seeds
    (their test F1s, the median trained again for its weights)."""
    from tune_jobs.finaljob import TRAININGS
    from tune_jobs.finaljob.runs import select_recipe
    from tune_jobs.study.trials import study_trials

    out, study, first = finished_run
    lost = tmp_path / "lost" / "final"
    lost.mkdir(parents=True)
    for name in (TRAININGS, "metrics.json"):
        shutil.copy(out / "final" / name, lost / name)
    other = next(t for t in study_trials(study)
                 if t.spec and t.number != first.chosen.number and t.f1 is not None)
    metrics = run_final(study, tmp_path, FinalOptions(
        baselines=("mobilenet_v3_small",), progress=False, seeds=2, int8=False,
        trial=other.number, baseline_sizes=(), reuse_from=str(tmp_path / "lost")))
    before = next(m for m in first.models if m.name == "mobilenet_v3_small")
    chosen_there = select_recipe(before.recipe_trials)
    _, baseline = metrics.models
    (reused,) = [t for t in baseline.recipe_trials if t.recipe == "reused"]
    assert reused.params == chosen_there.params and reused.val_f1 == chosen_there.val_f1
    assert str(tmp_path / "lost") in reused.source
    assert len(baseline.recipe_trials) == 3  # its 2 recipes at the searched size, and RUN's
    if baseline.recipe == "reused":
        assert [r.f1 for r in baseline.runs] == [r.f1 for r in before.runs]
        assert sum(r.taken_over for r in baseline.runs) == 1  # the median trained again
    assert metrics.taken_over >= 1


def test_the_accurate_claim_tries_the_searched_net_at_the_budget_nets_sizes(finished_run,
                                                                             tmp_path) -> None:
    """The accurate point's budget is mobilenet_v3_small's latency as it ships, at 24 px when
    it wins there: the searched net is tried at 16 and 24 px too (training split, judged on
    validation), used at the best no larger than that net's size, and exported, timed and
    judged at it. The fixture's trainings of the same chosen trial are taken over."""
    from tune_jobs.finaljob.runs import select_recipe
    from tune_jobs.study.trials import StudyAttr

    out, study, first = finished_run
    storage = f"sqlite:///{tmp_path}/accurate.db"
    optuna.copy_study(from_study_name=study.study_name, from_storage=study._storage,
                      to_storage=storage, to_study_name="accurate")
    copy = optuna.load_study(study_name="accurate", storage=storage)
    tree = dict(study.user_attrs[StudyAttr.CONFIG])
    tree["objective"] = {**tree["objective"], "kind": "f1",
                         "max_latency_of": "mobilenet_v3_small"}
    copy.set_user_attr(StudyAttr.CONFIG, tree)
    metrics = run_final(copy, tmp_path, FinalOptions(
        baselines=("mobilenet_v3_small",), progress=False, seeds=2, int8=False,
        trial=first.chosen.number, baseline_sizes=(24,), reuse_from=str(out)))
    searched, budget = metrics.models
    assert [(t.recipe, t.image_size) for t in searched.recipe_trials] == [
        ("searched", 16), ("searched", 24)]
    won = select_recipe(searched.recipe_trials, budget.image_size)
    assert searched.image_size == won.image_size == metrics.input_size
    assert searched.image_size <= max(budget.image_size, 16)
    _, _, meta = load_state(tmp_path / "final" / "model.pt")
    assert meta.input_size == searched.image_size
    from models.cost import onnx_session

    onnx = onnx_session(tmp_path / "final" / "model.onnx")
    assert onnx.get_inputs()[0].shape[2:] == [searched.image_size] * 2
    claim = metrics.claim
    assert claim.point == "accurate"
    assert claim.latency_limit == claim.latency_ratios["mobilenet_v3_small"]
    ort = {m.name: m.onnxruntime_ms for m in metrics.models}
    assert claim.onnxruntime.limit_ms == ort["mobilenet_v3_small"]
    # the baseline's recipe trials and seeds are the fixture's, taken over
    assert metrics.taken_over >= 4 + 2
    report = (tmp_path / "final" / "report.md").read_text()
    assert "### Baseline recipes and input sizes, and the searched net's sizes" in report
    assert "| searched | searched | 24 |" in report
