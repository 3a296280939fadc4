"""The benchmarks' own arithmetic (the runs themselves are measured, not tested): how the ASHA
benchmark turns reports into a best-score curve and a ratio, and the result-quality verdict."""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from asha_efficiency import arm_name, best_curve, epochs_to_reach, summarize
from result_quality import verdict


def test_only_finished_trials_count_and_the_curve_keeps_improvements() -> None:
    # (time, score when the epoch finished a trial at max_epochs else None)
    events = [(1, None), (2, 0.9), (3, None), (4, 1.2), (5, 0.7), (6, None), (7, 0.8)]
    assert best_curve(events) == [(2, 0.9), (5, 0.7)]
    assert epochs_to_reach(best_curve(events), 0.75) == 5
    assert epochs_to_reach(best_curve(events), 0.5) is None


def test_the_headline_ratio_is_against_tpe_without_early_stopping() -> None:
    runs = [
        {"arm": arm_name("tpe", False), "seed": 0, "best": 0.5, "trial_epochs": 100,
         "curve": [(40, 0.8), (80, 0.5)]},
        {"arm": arm_name("tpe", True), "seed": 0, "best": 0.45, "trial_epochs": 30,
         "curve": [(10, 0.6), (20, 0.45)]},
        {"arm": arm_name("random", True), "seed": 0, "best": 0.7, "trial_epochs": 30,
         "curve": [(12, 0.7)]},
        {"arm": arm_name("random", False), "seed": 0, "best": 0.5, "trial_epochs": 100,
         "curve": [(90, 0.5)]},
    ]
    summary = summarize(runs, [0])
    assert summary["tpe_asha_ratio"] == [pytest.approx(20 / 80)]
    seed = summary["per_seed"][0]
    assert seed[arm_name("random", True)]["ratio"] is None  # never reached 0.5
    assert seed[arm_name("random", False)]["ratio"] == pytest.approx(90 / 80)


def test_equal_epochs_pairs_asha_within_the_budget_no_early_stopping_spent() -> None:
    fifo = {"arm": arm_name("tpe", False), "best": 0.5, "trial_epochs": 100,
            "curve": [(40, 0.8), (80, 0.5)]}
    asha = {"arm": arm_name("tpe", True), "trial_epochs": 150}
    runs = [{**fifo, "seed": 0}, {**asha, "seed": 0, "best": 0.3, "curve": [(60, 0.4), (120, 0.3)]},
            {**fifo, "seed": 1}, {**asha, "seed": 1, "best": 0.6, "curve": [(30, 0.6)]},
            {**fifo, "seed": 2}, {**asha, "seed": 2, "best": 0.2, "curve": [(130, 0.2)]},
            {**fifo, "seed": 3}, {**asha, "seed": 3, "best": 0.5, "curve": [(90, 0.5)]}]
    eq = summarize(runs, [0, 1, 2, 3])["equal_epochs"]
    # seed 0: 0.4 within 100 (0.3 came after); 1: 0.6 worse; 2: nothing within 100; 3: tied
    assert (eq["better"], eq["tied"], eq["worse"], eq["seeds"]) == (1, 1, 2, 4)
    assert eq["mean_difference"] == pytest.approx((-0.1 + 0.1 + 0.0) / 3)
    low, high = eq["difference_ci95"]
    assert low <= eq["mean_difference"] <= high


def _model(name: str, f1s: list[float], ratio: float, trained: bool = True):
    from tune_jobs.finaljob.assess import TrainingCheck
    from tune_jobs.finaljob.recipes import Recipe
    from tune_jobs.finaljob.results import ModelResult
    from tune_jobs.finaljob.runs import Run
    from tune_jobs.finaljob.stats import estimate

    e = estimate(f1s)
    runs = [Run(i, "trainval", f, f, {}, TrainingCheck(1.8, 0.9, trained), [])
            for i, f in enumerate(f1s)]
    return ModelResult(name, Recipe.SEARCHED, e, e, {}, trained, 0, ratio, 0.1, 1, 1, runs, [],
                       48)


def _result(*baselines):
    from types import SimpleNamespace

    from tune_jobs.finaljob.job import compare

    searched = _model("searched", [0.80, 0.81, 0.82], ratio=0.3)
    return SimpleNamespace(models=[searched, *baselines],
                           comparisons=[compare(searched, b) for b in baselines])


def test_the_quality_target_needs_a_better_interval_and_a_third_of_the_latency() -> None:
    worse = _model("worse", [0.70, 0.71, 0.72], ratio=1.2)
    assert verdict(_result(worse))["met"]
    assert verdict(_result(worse))["latency_vs_fastest_baseline"] == pytest.approx(0.25)
    noisy = _model("noisy", [0.60, 0.95, 0.80], ratio=1.2)  # mean lower, interval spans 0
    assert not verdict(_result(worse, noisy))["met"]
    assert not verdict(_result(_model("fast", [0.70, 0.71, 0.72], ratio=0.6)))["met"]
    flagged = _model("diverged", [0.02, 0.03, 0.02], ratio=1.2, trained=False)
    check = verdict(_result(worse, flagged))
    assert not check["met"] and check["baselines"]["diverged"]["verdict"] == "not judged"


def test_runs_of_one_seed_each_merge_into_one_summary(tmp_path) -> None:
    """asha_efficiency --merge: per-seed files (a resumable run) summarized together."""
    from asha_efficiency import FULL, get_args_parser, main

    files = []
    for seed, asha_best in ((0, 0.45), (1, 0.7)):
        rows = [{"arm": arm_name("tpe", False), "algorithm": "tpe", "early_stopping": False,
                 "seed": seed, "trials": 20, "best": 0.5, "trial_epochs": 100,
                 "curve": [(40, 0.8), (80, 0.5)]},
                {"arm": arm_name("tpe", True), "algorithm": "tpe", "early_stopping": True,
                 "seed": seed, "trials": 40, "best": asha_best, "trial_epochs": 90,
                 "curve": [(20, asha_best)]}]
        files.append(tmp_path / f"seed{seed}.json")
        files[-1].write_text(json.dumps({"budget": FULL.__dict__, "rows": rows}))
    out = tmp_path / "all.json"
    result = main(get_args_parser().parse_args(["--merge", *map(str, files), "--json", str(out)]))
    assert result["seeds"] == [0, 1] and result["asha_trials"] == 40
    assert result["summary"]["tpe_asha_ratio"] == [pytest.approx(20 / 80), None]
    assert json.loads(out.read_text())["merged"] == [str(f) for f in files]
    rows[1]["rung_metric"] = "tse_ema"  # one file ranked its rungs otherwise: not merged
    files[1].write_text(json.dumps({"budget": FULL.__dict__, "rows": rows}))
    with pytest.raises(SystemExit, match="different metrics"):
        main(get_args_parser().parse_args(["--merge", *map(str, files)]))
    files[1].write_text(json.dumps({"budget": {"trials": 8}, "rows": []}))
    with pytest.raises(SystemExit, match="budget"):
        main(get_args_parser().parse_args(["--merge", *map(str, files)]))


def test_the_int8_latency_benchmark_measures_every_mode_and_format(tmp_path) -> None:
    """Two random candidates through every `objective.latency` mode and every int8 format."""
    import int8_latency

    out = tmp_path / "int8_latency.json"
    int8_latency.main(int8_latency.get_args_parser().parse_args(
        ["--config", "ci.yaml", "--candidates", "2", "--json", str(out)]))
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == 2
    for row in saved["rows"]:
        assert row["shipped_ms"] == min(row["fp32_ort_ms"], row["best_int8_ms"]) > 0
        assert all(row[f"{mode}_ratio"] > 0 for mode in ("torch", "ort", "ort-int8"))
    assert set(saved["spearman"]) == {"torch", "ort", "ort-int8"}


def test_the_committed_int8_result_renders_every_model(capsys) -> None:
    import int8

    saved = REPO / "benchmarks" / "results" / "int8.json"
    int8.main(int8.get_args_parser().parse_args(["--render", str(saved)]))
    shown = capsys.readouterr().out
    for model in ("searched", "mobilenet_v3_small", "shufflenet_v2_x0_5"):
        assert f"| {model} | QOperator U8S8 |" in shown and f"- {model}: " in shown


def test_the_claim_latency_benchmark_times_a_study_trial_beside_the_baselines(tmp_path) -> None:
    """The accurate night's searched net from its committed study, in ONNX Runtime (the
    mode the benchmark is for; the modes share one loop); a trial the study does not have
    is a clear error."""
    import shutil

    import claim_latency

    night = REPO / "benchmarks/results/night/fmnist-taco6-accurate-torch"
    db = shutil.copy(night / "study.db", tmp_path)
    study = ["--storage", f"sqlite:///{db}", "--study", "night-fmnist-taco6-accurate"]
    out = tmp_path / "claim_latency.json"
    result = claim_latency.main([*study, "--trial", "51", "--sizes", "48", "--repeats", "1",
                                 "--latency", "ort", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert [r["latency"] for r in result["rows"]] == ["ort"]
    for r in result["rows"]:
        assert set(r["ratios"]) == {"searched", "mobilenet_v3_small", "shufflenet_v2_x0_5"}
        assert r["searched_over_mobilenet_v3_small"] == pytest.approx(
            r["ratios"]["searched"] / r["ratios"]["mobilenet_v3_small"])
        assert r["macs"]["searched"] == 10733952  # the net the search measured at 48 px
    with pytest.raises(SystemExit, match=r"--trial 999: .* 60 trials"):
        claim_latency.main([*study, "--trial", "999"])


def test_the_mirror_benchmark_times_every_callback(tmp_path, capsys) -> None:
    import mirror_writes

    out = tmp_path / "mirror.json"
    mirror_writes.main(mirror_writes.get_args_parser().parse_args(
        ["--trials", "2", "--epochs", "3", "--json", str(out)]))
    rows = {r["call"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["on_trial_result"]["calls"] == 6 and rows["on_trial_complete"]["calls"] == 2
    assert all(0 < r["median_ms"] <= r["p95_ms"] <= r["max_ms"] for r in rows.values())


def test_the_training_speed_benchmark_profiles_and_compares(tmp_path) -> None:
    """Two steps of each timing on the demo data: the profile's phases add up, the step's
    FLOP/s is a share of the GEMM peak, every change is timed against eager."""
    import train_speed

    from data_utils.demo import demo_root

    out = tmp_path / "train_speed.json"
    train_speed.main(train_speed.get_args_parser().parse_args(
        ["--data", str(demo_root()), "--nets", "searched", "--changes", "eager",
         "channels_last", "--steps", "2", "--repeats", "1", "--image-size", "40",
         "--json", str(out)]))
    saved = json.loads(out.read_text())
    (profile,) = saved["profiles"]
    assert profile["image_size"] == saved["image_size"] == 40
    assert sum(profile["step_share"].values()) == pytest.approx(1.0)
    assert sum(profile["epoch_share"].values()) == pytest.approx(1.0)
    assert 0 < profile["peak_share"] < 1 and profile["images_per_second"] > 0
    rows = {r["change"]: r for r in saved["rows"]}
    assert set(rows) == {"eager", "channels_last"} and rows["eager"]["ratio"] == 1.0


def test_stacked_seeds_compute_what_separate_trainings_compute() -> None:
    """The stacking benchmark compares like with like: two seeds stacked with vmap give each
    seed the loss and the gradients it gets alone (its own BatchNorm batch statistics too).
    ShuffleNetV2 has no dropout, so the two ways draw nothing random."""
    import torch
    import torchvision
    from seed_stacking import stack
    from torch import nn

    torch.manual_seed(0)
    nets = [torchvision.models.shufflenet_v2_x0_5(num_classes=6).train() for _ in range(2)]
    x, y = torch.randn(2, 4, 3, 48, 48), torch.randint(0, 6, (2, 4))
    params, buffers, losses = stack(nets)
    stacked_losses = losses(params, buffers, x, y)
    stacked_losses.sum().backward()
    for k, net in enumerate(nets):
        alone = nn.CrossEntropyLoss()(net(x[k]), y[k])
        alone.backward()
        assert stacked_losses[k].item() == pytest.approx(alone.item(), rel=1e-5)
        for name, p in net.named_parameters():
            torch.testing.assert_close(params[name].grad[k], p.grad, rtol=1e-4, atol=1e-5)
        # and the stacked BatchNorm statistics moved as each seed's own did
        torch.testing.assert_close(buffers["conv1.1.running_mean"][k],
                                   net.conv1[1].running_mean)


def test_the_compile_check_pairs_seeds_and_times_epochs_after_the_first() -> None:
    from compile_f1 import summarize

    def run(arm: str, seed: int, f1: float, seconds: list[float]) -> dict:
        return {"net": "n", "arm": arm, "seed": seed, "epochs": 3, "f1": f1,
                "accuracy": f1, "trained": True, "epoch_seconds": seconds}

    runs = [run("eager", 1, 0.70, [10, 10, 10]), run("compiled", 1, 0.71, [35, 5, 5]),
            run("eager", 2, 0.80, [10, 10, 10]), run("compiled", 2, 0.80, [35, 5, 5]),
            run("eager", 3, 0.75, [10, 10, 10])]  # seed 3 has no pair: left out
    (row,) = summarize(runs)
    assert row["seeds"] == 2
    assert row["difference"]["mean"] == pytest.approx(0.005)  # paired: (0.01 + 0.0) / 2
    assert row["eager_f1"]["mean"] == pytest.approx(0.75)
    assert row["speed_ratio"] == pytest.approx(2.0) and row["compile_seconds"] == 30
    assert row["verdict"] == "no detectable difference"


def test_the_schedule_replay_reads_finished_trainings_and_replays_both_schedules(
        tmp_path) -> None:
    """Phase 2 replayed from checkpoint files: the seconds of their epochs, the recipe trials
    in `recipes_for`'s order, unfinished and foreign files named and left out. On two workers
    this run is one where the one pool ends later (a list schedule is not optimal)."""
    import dataclasses

    import torch
    from final_schedule import on_free_cores, one_pool, phases, trainings, two_batches

    def checkpoint(name: str, seconds: float, epochs: int = 2, done: int = 2) -> None:
        history = [{"epoch": e, "loss": 1.0, "lr": 0.1, "seconds": seconds / epochs}
                   for e in range(1, done + 1)]
        torch.save({"tag": name, "epochs": epochs, "epoch": done, "history": history},
                   tmp_path / f"checkpoint-{name}-0123abcd.pt")

    for seed in (1, 2, 3):
        checkpoint(f"searched-trainval-s{seed}", 20)
    for recipe, size, seconds in [("searched", 16, 10), ("standard", 16, 10),
                                  ("searched", 32, 40), ("standard", 32, 40)]:
        checkpoint(f"a-{recipe}-{size}px-train-s1", seconds)
    for seed in (1, 2):
        checkpoint(f"a-standard-32px-trainval-s{seed}", 40)
    checkpoint("a-standard-32px-trainval-s3", 40, done=1)  # unfinished
    (tmp_path / "checkpoint-notes.pt").write_bytes(b"")
    found, left_out = trainings(tmp_path)
    assert len(found) == 9 and len(left_out) == 2
    assert any("unfinished (1 of 2)" in why for why in left_out)
    # checkpoints lost with their machine: trainings.jsonl's lines stand in (the last of
    # each, its history's seconds, else a line's total); a checkpoint wins over a line
    epoch = {"epoch": 1, "loss": 1.0, "lr": 0.1}
    lines = [{"name": "b-searched-16px", "split": "train", "seed": 1, "seconds": 1.0,
              "history": [{**epoch, "seconds": 7.0}, {**epoch, "seconds": 8.0}]},
             {"name": "b-searched-16px", "split": "train", "seed": 1, "seconds": 1.0,
              "history": [{**epoch, "seconds": 9.0}, {**epoch, "seconds": 9.0}]},
             {"name": "b-standard-16px", "split": "train", "seed": 1, "seconds": 30.0},
             {"name": "searched", "split": "trainval", "seed": 1, "seconds": 99.0}]
    (tmp_path / "trainings.jsonl").write_text(
        "\n".join(json.dumps(line) for line in lines) + '\n{"name": "cut off')
    found, left_out = trainings(tmp_path)
    recorded = {(t.name, t.seconds) for t in found if t.recorded}
    assert recorded == {("b-searched-16px", 18.0), ("b-standard-16px", 30.0)}
    assert len(found) == 11 and "trainings.jsonl line 5: not a finished training" in left_out
    found = [t for t in found if not t.recorded]
    trials, searched, baselines = phases(found, searched_size=16)
    assert [t.name for t in trials] == ["a-searched-16px", "a-standard-16px",
                                        "a-searched-32px", "a-standard-32px"]
    assert [t.seconds for t in searched] == [20, 20, 20] and len(baselines) == 2
    # two batches: 20 20 | 20 10 | 10 . | 40 40 -> 80; then 40 40 -> 120
    assert two_batches(trials, searched, baselines, 2) == pytest.approx(120)
    # one pool: 40 40 | 10 10 | 20 20 | 20 and a baseline (released at 50) | the other: 130
    assert one_pool(trials, searched, baselines, 2) == pytest.approx(130)
    # four workers: batch one ends at 60 (its 40s start at 20), then 40 more: 100; in one
    # pool the baselines start when the recipe trials end, at 40: 80
    assert two_batches(trials, searched, baselines, 4) == pytest.approx(100)
    assert one_pool(trials, searched, baselines, 4) == pytest.approx(80)
    # on free cores: a training whose epochs were slowed by other work is timed at the median
    # epoch of the fastest of its kind; a line with only its total keeps it
    slowed = [dataclasses.replace(t, epochs=(30.0, 50.0), seconds=80.0)
              if (t.name, t.seed) == ("searched", 1) else t for t in trainings(tmp_path)[0]]
    free = {(t.name, t.split, t.seed): t.seconds for t in on_free_cores(slowed)}
    assert free[("searched", "trainval", 1)] == pytest.approx(20)
    assert free[("b-searched-16px", "train", 1)] == pytest.approx(18)
    assert free[("b-standard-16px", "train", 1)] == pytest.approx(30)


def _write_idx(path, array: np.ndarray) -> None:
    """Fashion-MNIST's IDX format, gzipped: magic (0, 0, uint8, dims), sizes, bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_the_standin_crops_are_exactly_the_boxes_the_real_file_keeps(tmp_path, taco_file) -> None:
    """taco_standin: photos painted for the real TACO file, cut by the COCO converter: the
    crops are the mapped boxes of those photos (less the converter's under-8-px ones), each in
    its class's folder; missing or too little Fashion-MNIST is a clear error."""
    import csv

    from taco_standin import StandinError, make, read_idx

    from data_utils.mapping import load_mapping

    fm = tmp_path / "fm"
    fm.mkdir()
    labels = np.repeat(np.arange(10), 40)
    images = np.random.default_rng(0).integers(0, 256, (400, 28, 28))
    _write_idx(fm / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(fm / "t10k-labels-idx1-ubyte.gz", labels)
    assert (read_idx(fm / "t10k-labels-idx1-ubyte.gz") == labels).all()
    assert read_idx(fm / "t10k-images-idx3-ubyte.gz").shape == (400, 28, 28)

    crops = make(tmp_path / "out", fm, taco_file, scale=0.25, limit=4)
    coco, mapping = json.loads(taco_file.read_text()), load_mapping()
    cls = {c["id"]: mapping.resolve(c["name"], c["supercategory"])[0] for c in coco["categories"]}
    kept = [a for a in coco["annotations"] if cls[a["category_id"]]]
    photos = [i["id"] for i in coco["images"] if any(a["image_id"] == i["id"] for a in kept)][:4]
    expected = {a["id"]: cls[a["category_id"]] for a in kept
                if a["image_id"] in photos and min(a["bbox"][2:]) * 0.25 >= 8}
    with (crops / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {int(r["annotation_id"]): r["class"] for r in rows} == expected
    assert all((crops / r["crop_file"]).parent.name == r["class"] for r in rows)
    assert len(expected) >= 5

    with pytest.raises(StandinError, match="apt-get install dataset-fashion-mnist"):
        make(tmp_path / "x", tmp_path / "nowhere", taco_file)
    with pytest.raises(StandinError, match=r"class \w+: more boxes than Fashion-MNIST"):
        make(tmp_path / "y", fm, taco_file)  # 40 articles a label, hundreds of boxes a class
