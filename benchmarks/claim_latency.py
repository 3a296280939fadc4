"""A study trial's net beside the baselines at each input size, timed as a claim times them in
every `objective.latency` mode (eager PyTorch, ORT fp32, ORT int8): does the claim's latency
condition hold in the runtime the exports ship in? The nets are timed together, interleaved
in one process, against the objective's reference, `--repeats` times; the MACs beside.
Weights are untrained: latency does not depend on them.

    python benchmarks/claim_latency.py --study night-fmnist-taco6-accurate \
        --storage sqlite:///benchmarks/results/night/fmnist-taco6-accurate-torch/study.db \
        --trial 51 --sizes 48 96 \
        --json benchmarks/results/claim_latency.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import optuna

import models
from common import BASELINES, emit
from models.cost import count_macs
from models.spec import ModelSpec
from tune_jobs.config import load_config
from tune_jobs.trial.objective import LATENCY


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--trial", type=int, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 96])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency", nargs="+", choices=list(LATENCY), default=list(LATENCY))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    trials = optuna.load_study(study_name=args.study, storage=args.storage).trials
    if not 0 <= args.trial < len(trials) or "spec" not in trials[args.trial].user_attrs:
        raise SystemExit(f"--trial {args.trial}: {args.study} has no such trial with a "
                         f"recorded spec (it has {len(trials)} trials)")
    trial = trials[args.trial]
    spec = ModelSpec.from_yaml(trial.user_attrs["spec"])
    objective = load_config().objective
    reference = models.build(objective.reference, input_size=objective.reference_size)
    nets = {"searched": models.build_model(spec)} | {
        name: models.build(f"tv/{name}", num_classes=spec.num_classes) for name in BASELINES}
    for net in nets.values():
        net.eval()
    rows = []
    for size in args.sizes:
        macs = {name: count_macs(net, size) for name, net in nets.items()}
        for mode in args.latency:
            runs = [LATENCY[mode](list(nets.values()), reference, [size] * len(nets), objective)
                    for _ in range(args.repeats)]
            ratios = {name: statistics.median(r[i].ratio for r in runs)
                      for i, name in enumerate(nets)}
            rows.append({"size": size, "latency": mode, "ratios": ratios, "macs": macs,
                         "searched_over_mobilenet_v3_small":
                             ratios["searched"] / ratios["mobilenet_v3_small"]})
    markdown = "\n".join([
        f"Trial #{args.trial} of `{args.study}` beside the baselines, latency ratios (median of "
        f"{args.repeats} timings together):", "",
        "| input px | objective.latency | searched | mobilenet_v3_small | shufflenet_v2_x0_5 "
        "| searched / mobilenet_v3_small | MACs (searched / mobilenet_v3_small) |",
        "|---:|---|---:|---:|---:|---:|---:|",
        *(f"| {r['size']} | {r['latency']} | {r['ratios']['searched']:.3f} | "
          f"{r['ratios']['mobilenet_v3_small']:.3f} | {r['ratios']['shufflenet_v2_x0_5']:.3f} | "
          f"{r['searched_over_mobilenet_v3_small']:.2f}x | "
          f"{r['macs']['searched'] / 1e6:.1f} M / {r['macs']['mobilenet_v3_small'] / 1e6:.1f} M |"
          for r in rows)])
    return emit("claim_latency", markdown, rows, args.json, study=args.study,
                trial=args.trial, repeats=args.repeats)


if __name__ == "__main__":
    main()
