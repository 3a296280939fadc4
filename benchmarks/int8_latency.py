"""Does the search's latency ratio rank what the device runs (ONNX Runtime, int8 where it is
faster)? Candidates drawn at random from a config's search space (what a study proposes
before TPE learns anything). Each is measured as the search measures it, in every
`objective.latency` mode (eager PyTorch, ORT fp32, ORT int8; the seconds each takes), then,
apart, quantized in every int8 format (`tune_jobs.finaljob.quantize`, calibrated on the
built-in demo images at its size) and timed against its own fp32 ONNX file, interleaved in
one process. Weights are untrained: latency does not depend on them.

    python benchmarks/int8_latency.py [--config demo.yaml] [--candidates 50] [--seed 0]
        [--json benchmarks/results/int8_latency.json]

Reports Spearman's rank correlation of each mode's latency ratio with fp32 ORT latency, the
best int8 format's and the shipped latency (the faster of fp32 and int8, as the final job
ships), each mode's seconds per trial, and int8 / fp32 by net size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
from scipy import stats

import models
from common import emit
from data_utils.demo import demo_root
from models.cost import count_macs, export_onnx, onnx_latency_ratios
from tune_jobs.config import load_config
from tune_jobs.finaljob.meta import ModelMeta
from tune_jobs.finaljob.quantize import FORMATS, CalibrationImages, preprocess, quantize
from tune_jobs.trial.objective import LATENCY, measure_costs
from tune_jobs.trial.space import OptunaChooser, sample

CALIBRATION = 64
# fp32 ORT latency bins (ms) for "where does int8 pay"
BINS = ((0.0, 0.3), (0.3, 1.0), (1.0, float("inf")))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="demo.yaml")
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    return p


def measure(spec, size: int, cfg, reference, files: list[str], folder: Path) -> dict:
    model = models.build_model(spec).eval()
    row: dict = {"image_size": size, "macs": count_macs(model, size)}
    for mode in LATENCY:  # as the search times it, in each mode
        start = time.perf_counter()
        costs = measure_costs(model, size, cfg.objective.model_copy(update={"latency": mode}),
                              reference)
        row[f"{mode}_ratio"], row[f"{mode}_seconds"] = (costs.latency_ratio,
                                                         time.perf_counter() - start)
    row["params"], row["over_budget"] = costs.params, costs.over_budget(cfg.objective)
    meta = ModelMeta([str(i) for i in range(spec.num_classes)], size, cfg.data.resize)
    fp32 = export_onnx(model, size, folder / "fp32.onnx")
    pre = preprocess(fp32, folder / "pre.onnx")
    reader = CalibrationImages(files, meta, CALIBRATION)
    int8 = [quantize(pre, folder / f"{f.name}.onnx", reader, f, meta) for f in FORMATS.values()]
    ratios = onnx_latency_ratios(int8, fp32, size, threads=cfg.objective.latency_threads)
    row["fp32_ort_ms"] = statistics.median(r.reference_ms for r in ratios)
    for f, r in zip(FORMATS.values(), ratios, strict=True):
        row[f"{f.name}_ms"], row[f"{f.name}_ratio"] = r.candidate_ms, r.ratio
    row["best_int8_ms"] = min(row[f"{f}_ms"] for f in FORMATS)
    row["shipped_ms"] = min(row["best_int8_ms"], row["fp32_ort_ms"])
    return row


def spearman(rows: list[dict], x: str, y: str) -> float:
    return float(stats.spearmanr([r[x] for r in rows], [r[y] for r in rows]).statistic)


TARGETS = {"fp32_ort_ms": "fp32 ORT ms", "best_int8_ms": "best int8 ms",
           "shipped_ms": "shipped ms (faster of the two)"}


def markdown(rows: list[dict], corr: dict[str, dict[str, float]], bins: list[dict]) -> str:
    lines = [f"{len(rows)} candidates; Spearman of the search's latency ratio, per "
             "`objective.latency`, with what ONNX Runtime runs:", "",
             "| objective.latency | " + " | ".join(TARGETS.values())
             + " | seconds per trial (median) |", "|---" * (2 + len(TARGETS)) + "|"]
    for mode, by_target in corr.items():
        seconds = statistics.median(r[f"{mode}_seconds"] for r in rows)
        lines.append(f"| {mode} | " + " | ".join(f"{by_target[t]:.3f}" for t in TARGETS)
                     + f" | {seconds:.2f} |")
    lines += ["", "| fp32 ORT ms | nets | " + " | ".join(f"{f.label} int8/fp32 median"
                                                       for f in FORMATS.values())
              + " | nets with int8 <= 0.8x in a format |",
              "|---" * (3 + len(FORMATS)) + "|"]
    for b in bins:
        lines.append(f"| {b['range']} | {b['nets']} | "
                     + " | ".join(f"{b[f]:.2f}" if b['nets'] else "-" for f in FORMATS)
                     + f" | {b['fast']} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    cfg = load_config(args.config)
    reference = models.build(cfg.objective.reference, input_size=cfg.objective.reference_size)
    files = sorted(str(p) for p in (demo_root() / "train").rglob("*.jpg"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    rows, start = [], time.perf_counter()
    torch.set_num_threads(1)
    for i in range(args.candidates):
        cand = sample(cfg.space, OptunaChooser(study.ask()), 6)
        torch.manual_seed(args.seed + i)
        with tempfile.TemporaryDirectory() as tmp:
            rows.append({"candidate": i, **measure(cand.spec, cand.train.image_size, cfg,
                                                   reference, files, Path(tmp))})
        print(f"{i + 1}/{args.candidates}: {rows[-1]}", flush=True)
    corr = {mode: {t: spearman(rows, f"{mode}_ratio", t) for t in TARGETS} for mode in LATENCY}
    bins = []
    for low, high in BINS:
        inside = [r for r in rows if low <= r["fp32_ort_ms"] < high]
        bins.append({"range": f"{low}-{high}", "nets": len(inside),
                     **{f: statistics.median(r[f"{f}_ratio"] for r in inside) if inside else None
                        for f in FORMATS},
                     "fast": sum(min(r[f"{f}_ratio"] for f in FORMATS) <= 0.8 for r in inside)})
    emit("int8_latency", markdown(rows, corr, bins), rows, args.json, config=args.config,
         seed=args.seed, spearman=corr, bins=bins, seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
