"""Cost of every model preset and torchvision reference at one input size, side by side.

Params, MACs, serialized size, and CPU latency at batch 1 with a fixed thread count for eager
PyTorch and ONNX Runtime, plus each net's latency as a ratio of the `baseline` preset measured
interleaved in the same process (the number the search objective uses).

    python benchmarks/model_costs.py [--size 64] [--threads 1] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import models
from common import emit
from models.cost import (
    count_macs,
    count_params,
    export_onnx,
    latency_ratio,
    measure_latency,
    measure_onnx_latency,
    serialized_size,
)

REFERENCES = ["tv/mobilenet_v3_small", "tv/shufflenet_v2_x0_5", "tv/mobilenet_v2"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="input size in pixels")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for latency")
    parser.add_argument("--num-classes", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (seconds)")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser


def measure(name: str, args: argparse.Namespace, reference: torch.nn.Module, tmp: Path) -> dict:
    model = models.build(name, num_classes=args.num_classes, input_size=args.size).eval()
    repeats = 20 if args.quick else 100
    onnx_path = export_onnx(model, args.size, tmp / f"{name.replace('/', '_')}.onnx")
    ratio = latency_ratio(model, reference, args.size, threads=args.threads,
                          rounds=4 if args.quick else 20, per_round=5)
    return {
        "model": name,
        "params": count_params(model),
        "macs": count_macs(model, args.size),
        "size_bytes": serialized_size(model),
        "eager_ms": measure_latency(model, args.size, threads=args.threads,
                                    repeats=repeats).median_ms,
        "onnxruntime_ms": measure_onnx_latency(onnx_path, args.size, threads=args.threads,
                                               repeats=repeats).median_ms,
        "latency_ratio_vs_baseline": ratio.ratio,
    }


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| model | params | MMACs | size (KB) | eager ms | ORT ms | latency / baseline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['macs'] / 1e6:.1f} | "
            f"{r['size_bytes'] / 1024:.0f} | {r['eager_ms']:.2f} | {r['onnxruntime_ms']:.2f} | "
            f"{r['latency_ratio_vs_baseline']:.2f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    reference = models.build("baseline", num_classes=args.num_classes,
                             input_size=args.size).eval()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, args, reference, Path(tmp))
                for n in [*models.list_presets(), *REFERENCES]]
    print(f"input {args.size}x{args.size}, batch 1, {args.threads} thread(s), CPU")
    return emit("model_costs", to_markdown(rows), rows, args.json, torch=torch.__version__,
                input_size=args.size, threads=args.threads, quick=args.quick)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
