"""Would training a final job's seeds as one stacked model buy speed on a CPU?

    python benchmarks/seed_stacking.py [--nets searched ...] [--seeds 2] [--steps 5]
        [--repeats 3] [--json FILE]

The final job trains each net with several seeds, one training per core on one thread each. An
idea toward 2x its throughput: train K seeds in one process as one model, so that each
operator runs once on K times the data, with less per-operator overhead. Timed here, one
thread, one training step (forward with the loss, backward) of K seeds at 48 px, batch 64
(the searched recipe's), the nets of `train_speed.py`, on random images (the loader is not
what is compared), interleaved over `--repeats` rounds, median seconds per step of all K:

- separate: K models one after another (what one core does now, per image);
- vmap: the K models stacked with `torch.func` (`stack_module_state`, `vmap` over
  `functional_call`, buffers stacked too, so each seed keeps its own BatchNorm statistics;
  PyTorch runs a stacked convolution as one grouped convolution);
- batch Kx: one model on a K-times batch, an upper bound of what any stacking can gain from
  larger operators (the same operators, K times the work each, no grouping);
- the last two compiled (channels_last + `torch.compile`, the final job's way), against
  separate compiled.

The ratio to separate is the speed stacking could buy.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from train_speed import NETS

from common import emit

SIZE = 48  # px: the final job's searched size on fmnist-taco6
Step = Callable[[], None]


def separate(nets: list[nn.Module], x: torch.Tensor, y: torch.Tensor, compiled: bool) -> Step:
    loss = nn.CrossEntropyLoss()
    forwards = [_compiled(n) if compiled else n for n in nets]

    def step() -> None:
        for k, forward in enumerate(forwards):
            loss(forward(x[k]), y[k]).backward()
    return step


def stack(nets: list[nn.Module]) -> tuple[dict, dict, Callable]:
    """The K nets as one: their parameters and buffers stacked (each seed keeps its own
    BatchNorm statistics) and a loss over all K, each seed on its own images, its own dropout
    masks (as K separate trainings would draw), returning the K losses."""
    params, buffers = stack_module_state(nets)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    skeleton = copy.deepcopy(nets[0]).to("meta")  # the structure; the stacked tensors are its state
    loss = nn.CrossEntropyLoss()

    def one(p: dict, b: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss(functional_call(skeleton, (p, b), (xi,)), yi)

    return params, buffers, vmap(one, randomness="different")


def stacked(nets: list[nn.Module], x: torch.Tensor, y: torch.Tensor) -> Step:
    params, buffers, losses = stack(nets)

    def step() -> None:
        losses(params, buffers, x, y).sum().backward()
    return step


def batched(net: nn.Module, x: torch.Tensor, y: torch.Tensor, compiled: bool) -> Step:
    forward = _compiled(net) if compiled else net
    xb, yb = x.flatten(0, 1), y.flatten()
    loss = nn.CrossEntropyLoss()

    def step() -> None:
        loss(forward(xb), yb).backward()
    return step


def _compiled(net: nn.Module) -> nn.Module:
    net.to(memory_format=torch.channels_last)
    return torch.compile(net)


def arms(net: str, seeds: int, batch: int) -> dict[str, Step]:
    torch.manual_seed(0)
    nets = [NETS[net]()[0].train() for _ in range(seeds)]
    x = torch.randn(seeds, batch, 3, SIZE, SIZE)
    y = torch.randint(0, 6, (seeds, batch))
    return {"separate": separate(nets, x, y, compiled=False),
            "vmap": stacked(nets, x, y),
            f"batch {seeds}x": batched(NETS[net]()[0].train(), x, y, compiled=False),
            "separate, compiled": separate([NETS[net]()[0].train() for _ in range(seeds)],
                                           x, y, compiled=True),
            f"batch {seeds}x, compiled": batched(NETS[net]()[0].train(), x, y, compiled=True)}


def timed(steps: dict[str, Step], n: int, repeats: int) -> dict[str, float]:
    for step in steps.values():  # warm-up: compilation, oneDNN's kernels, the allocator
        for _ in range(3):
            step()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(n):
                step()
            seconds[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(s) for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    parser.add_argument("--seeds", type=int, default=2, help="K: seeds stacked in one step")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for net in args.nets:
        seconds = timed(arms(net, args.seeds, args.batch), args.steps, args.repeats)
        for name, s in seconds.items():
            base = seconds["separate, compiled" if "compiled" in name else "separate"]
            rows.append({"net": net, "arm": name, "ms_per_step": round(s * 1000, 1),
                         "speed_vs_separate": round(base / s, 3)})
    arm_names = list(dict.fromkeys(r["arm"] for r in rows))
    lines = [f"| arm ({args.seeds} seeds, ratio to separate, ms per step of all) | "
             + " | ".join(args.nets) + " |", "|---|" + "---|" * len(args.nets)]
    for arm in arm_names:
        cells = [f"{r['speed_vs_separate']:.2f}x ({r['ms_per_step']:.0f})"
                 for net in args.nets for r in rows if r["net"] == net and r["arm"] == arm]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    emit("seed_stacking", "\n".join(lines), rows, args.json, seeds=args.seeds,
         batch=args.batch, size=SIZE, threads=1, steps=args.steps, repeats=args.repeats)


if __name__ == "__main__":
    main()
