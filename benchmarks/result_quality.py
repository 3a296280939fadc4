"""Is the searched model worth it? It against the nets a user would pick instead
(MobileNetV3-Small at width 0.5 and 1.0, ShuffleNetV2 x0.5), each trained from scratch with the
same recipe (the searched trial's) and epochs on fmnist-taco6, tested on its test/ split:
macro-F1, CPU latency at batch 1 with one thread (ONNX Runtime, and as a ratio to the
objective's reference timed interleaved in the same process), params, MACs, score.

Fairness: a baseline whose loss does not fall with the searched recipe (it diverged: the recipe
was tuned for the searched net) is trained again with a standard one (AdamW, lr 2e-3, cosine)
and that run is reported, marked. The choice is made on the training loss, never on the test.

    python benchmarks/result_quality.py [--quick] [--study NAME --storage URL] [--data DIR]
        [--epochs N] [--json FILE]

Without --study it first runs a search (the demo preset on --data; --quick: a short one).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch

import models
from common import REPO, emit
from models.spec import ModelSpec
from tune_jobs.config import Config, load_config
from tune_jobs.finaljob.export import ModelMeta
from tune_jobs.finaljob.job import FinalOptions, assess, choose_trial, load_run_config, retrain
from tune_jobs.finaljob.job import training_check as trained_ok
from tune_jobs.searchjob import run_search
from tune_jobs.study.storage import mask_url, open_storage
from tune_jobs.trial.recipe import prepare_run_data
from tune_jobs.trial.space import TrainParams, candidate_from_config

# name -> (preset, width): the nets a user would otherwise ship (torchvision-exact presets)
BASELINES = {"mobilenet_v3_small_w0.5": ("mobilenet_v3_small", 0.5),
             "mobilenet_v3_small": ("mobilenet_v3_small", 1.0),
             "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", 1.0)}
STANDARD_RECIPE = {"optimizer": "adamw", "lr": 2e-3, "schedule": "cosine"}


def search_first(data: Path, quick: bool, root: Path) -> tuple[str, str]:
    study = f"quality-{time.time_ns()}"
    overrides = [f"data.path={data}", f"output={root}", f"search.study={study}",
                 f"search.storage=sqlite:///{root / 'study.db'}"]
    if quick:
        overrides += ["search.num_samples=8", "scheduler.max_epochs=6",
                      "scheduler.grace_period=2", "space.train.image_size=[32]"]
    cfg = load_config("demo.yaml", overrides)
    _, url = run_search(cfg)
    return study, url


def train_and_assess(name: str, model: torch.nn.Module, recipe: TrainParams, cfg: Config,
                     data, epochs: int, work: Path, reference: torch.nn.Module,
                     threads: int) -> dict:
    images = np.concatenate([data.train.images, data.val.images])
    labels = np.concatenate([data.train.labels, data.val.labels])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}  # the same init for a rerun
    used, history = "searched", None
    for label, params in (("searched", recipe),
                          ("standard", dataclasses.replace(recipe, **STANDARD_RECIPE))):
        model.load_state_dict(state)
        torch.manual_seed(cfg.search.seed)
        history = retrain(model, images, labels, params, cfg, len(data.classes), epochs,
                          work / f"{name}-{label}.pt", f"{name}-{label}", device, False)
        used = label
        if trained_ok(history)["trained"] or name == "searched":
            break
    meta = ModelMeta(data.classes, recipe.image_size, cfg.data.resize)
    result = assess(model, data, meta, cfg, reference, work / name, name, threads, device)
    return {"model": name, "recipe": used, "image_size": recipe.image_size,
            "first_loss": history[0]["loss"],
            "last_loss": history[-1]["loss"], "f1": result.test.f1,
            "accuracy": result.test.accuracy, "onnxruntime_ms": result.speed.cpu.onnxruntime_ms,
            "eager_ms": result.speed.cpu.eager_ms, "latency_ratio": result.ratio.latency_ratio,
            "params": result.costs.params, "macs": result.costs.macs,
            "score": result.scores.score, "test_images": result.test_images}


def verdict(rows: list[dict]) -> dict:
    """The target: the searched model has higher macro-F1 at lower latency than each."""
    out = {}
    for searched, r in ((s, b) for s in rows if s["model"].startswith("searched")
                        for b in rows if not b["model"].startswith("searched")):
        out[f"{searched['model']} vs {r['model']}"] = {
            "f1_delta": searched["f1"] - r["f1"],
            "latency_ratio": searched["latency_ratio"] / r["latency_ratio"],
            "onnx_speedup": r["onnxruntime_ms"] / searched["onnxruntime_ms"],
            "met": searched["f1"] > r["f1"]
            and searched["latency_ratio"] < r["latency_ratio"]
            and searched["onnxruntime_ms"] < r["onnxruntime_ms"]}
    return out


def to_markdown(rows: list[dict], checks: dict, epochs: int) -> str:
    lines = [f"Trained {epochs} epochs on train + validation, tested on test/ "
             f"({rows[0]['test_images']} images); CPU, batch 1, one thread.", "",
             "| model | recipe | px | macro-F1 | ORT ms | eager ms | latency ratio | params "
             "| MACs | score |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['recipe']} | {r['image_size']} | {r['f1']:.4f} | "
                     f"{r['onnxruntime_ms']:.3f} | {r['eager_ms']:.3f} | "
                     f"{r['latency_ratio']:.3f} | {r['params']:,} | {r['macs']:,} | "
                     f"{r['score']:.4f} |")
    lines.append("")
    for name, c in checks.items():
        lines.append(f"- {name}: F1 {c['f1_delta']:+.4f}, ONNX Runtime {c['onnx_speedup']:.1f}x "
                     f"faster, target {'met' if c['met'] else 'MISSED'}")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short search, 3 epochs each")
    p.add_argument("--study", help="a finished search's study (default: search first)")
    p.add_argument("--storage", help="its database URL")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fmnist-taco6")
    p.add_argument("--epochs", type=int, help="default: 3 (quick) or the study's final.epochs")
    p.add_argument("--pareto", type=float, metavar="X", help="add a second searched row: the "
                   "most accurate COMPLETE trial with latency ratio <= X (own recipe)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    return p


def main(args: argparse.Namespace) -> dict:
    os.environ.setdefault("LITESEARCH_CACHE", str(Path.home() / ".cache" / "litesearch"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        study_name, url = args.study, args.storage
        if not study_name:
            study_name, url = search_first(args.data.resolve(), args.quick, work / "search")
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
        cfg = load_run_config(study, str(args.data.resolve()))
        chosen, _ = choose_trial(study, FinalOptions())
        spec = ModelSpec.from_yaml(chosen.user_attrs["spec"])
        recipe = candidate_from_config(chosen.params, cfg.space, spec.num_classes).train
        epochs = args.epochs or (3 if args.quick else cfg.final.epochs)
        reference = models.build(cfg.objective.reference,
                                 input_size=cfg.objective.reference_size)
        # (name, trial, recipe): the searched models first, each with its own recipe; the
        # baselines with the best-score trial's recipe
        plan = [("searched", chosen, recipe)]
        if args.pareto:
            other, _ = choose_trial(study, FinalOptions(pareto=True,
                                                        max_latency_ratio=args.pareto))
            # the same trial again is a repeat (another initialisation): the F1 noise floor
            label = ("searched_repeat" if other.number == chosen.number
                     else f"searched_pareto{args.pareto:g}")
            plan.append((label, other, candidate_from_config(other.params, cfg.space,
                                                             spec.num_classes).train))
        plan += [(name, None, recipe) for name in BASELINES]
        rows, picked, prepared = [], {}, {}
        for name, trial, params in plan:
            torch.manual_seed(cfg.search.seed + len(rows))  # each row its own initialisation
            if trial is not None:
                net = models.build_model(ModelSpec.from_yaml(trial.user_attrs["spec"]))
                picked[name] = trial.number
            else:
                preset, width = BASELINES[name]
                net = models.build(preset, num_classes=spec.num_classes,
                                   input_size=params.image_size, width=width)
            if params.image_size not in prepared:  # rows share a size: scan and load once
                prepared[params.image_size] = prepare_run_data(cfg, params.image_size, False)
            data = prepared[params.image_size]
            rows.append(train_and_assess(name, net, params, cfg, data, epochs, work,
                                         reference, args.threads))
            print(f"{name}: F1 {rows[-1]['f1']:.4f}, ORT {rows[-1]['onnxruntime_ms']:.3f} ms",
                  flush=True)
    checks = verdict(rows)
    return emit("result_quality", to_markdown(rows, checks, epochs), rows, args.json,
                study=study_name, storage=mask_url(url), trials=picked,
                recipe=dataclasses.asdict(recipe), epochs=epochs, checks=checks)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
