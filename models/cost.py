"""Cost metrics of a network: pure functions of (model, input size), no global state left behind.

Latency is measured the way a device benchmark is: batch 1, a fixed number of threads, warm-up,
the median of repeats. On a shared, noisy machine only ratios measured back to back mean much,
so `latency_ratio` interleaves the candidate and the reference in one process.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass (convolutions and matmuls), counted by torch."""
    with _eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(batch, 3, input_size, input_size, device=_device_of(model)))
    return counter.get_total_flops() // 2  # torch counts a multiply-add as two flops


def serialized_size(model: nn.Module) -> int:
    """Bytes of the state dict as `torch.save` writes it (what ships to the device)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    repeats: int
    threads: int
    device: str
    backend: str  # "eager", "torchscript" or "onnxruntime"


@dataclass(frozen=True)
class LatencyRatio:
    ratio: float  # candidate / reference, medians; < 1 means the candidate is faster
    candidate_ms: float
    reference_ms: float


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Pin torch's intra-op thread count, restoring the previous value afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _timer(fn: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """Returns a function that runs `fn` once and gives its wall time in milliseconds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed() -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return (time.perf_counter() - start) * 1e3

    return timed


def _summarise(times: list[float], threads: int, device: str, backend: str) -> Latency:
    return Latency(
        median_ms=statistics.median(times),
        p90_ms=float(np.percentile(times, 90)),
        repeats=len(times),
        threads=threads,
        device=device,
        backend=backend,
    )


def _torch_runner(model: nn.Module, input_size: int, batch: int) -> Callable[[], object]:
    x = torch.randn(batch, 3, input_size, input_size, device=_device_of(model))

    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def measure_latency(
    model: nn.Module,
    input_size: int,
    *,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    backend: str = "eager",
) -> Latency:
    """Median forward time of `model` (eager, or TorchScript-traced with backend="torchscript")
    on the device it lives on."""
    device = _device_of(model)
    with _eval_mode(model), fixed_threads(threads):
        runnable = model
        if backend == "torchscript":
            example = torch.randn(batch, 3, input_size, input_size, device=device)
            # TorchScript is deprecated in torch 2.14 but is still what `model.ts` exports
            # ship as; time what ships. No trace check: it reruns both modules (seconds per
            # net) and timing needs no proof of equality (the exports are checked apart).
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                runnable = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
        elif backend != "eager":
            raise ValueError(f"backend must be 'eager' or 'torchscript', got {backend!r}")
        timed = _timer(_torch_runner(runnable, input_size, batch), device)
        for _ in range(warmup):
            timed()
        times = [timed() for _ in range(repeats)]
    return _summarise(times, threads, str(device), backend)


def latency_ratio(
    candidate: nn.Module,
    reference: nn.Module,
    input_size: int,
    *,
    reference_size: int | None = None,
    threads: int = 1,
    warmup: int = 10,
    rounds: int = 15,
    per_round: int = 3,
) -> LatencyRatio:
    """Candidate latency over reference latency, timed interleaved in one process so that
    load from other processes hits both alike. The reference runs at `reference_size`
    (default: the candidate's `input_size`).

    Each round times a few calls of one model right after a few of the other (order
    alternating) and keeps the fastest call of each: interference only ever adds time, so the
    minimum is its least disturbed sample. The ratio is the median over rounds of those paired
    ratios, so a burst of load that hits one round cannot move it.
    """
    return latency_ratios([candidate], reference, input_size, reference_size=reference_size,
                          threads=threads, warmup=warmup, rounds=rounds,
                          per_round=per_round)[0]


def per_candidate(input_size: int | Sequence[int], n: int,
                  reference_size: int | None) -> tuple[list[int], int]:
    """Each of `n` candidates' input size (one for all, or one each) and the reference's
    (default: the one shared size)."""
    if isinstance(input_size, int):
        return [input_size] * n, reference_size or input_size
    sizes = list(input_size)
    if len(sizes) != n:
        raise ValueError(f"{len(sizes)} input sizes for {n} candidates")
    if reference_size is None:
        raise ValueError("candidates of different input sizes need a reference_size")
    return sizes, reference_size


def latency_ratios(
    candidates: Sequence[nn.Module],
    reference: nn.Module,
    input_size: int | Sequence[int],
    *,
    reference_size: int | None = None,
    threads: int = 1,
    warmup: int = 10,
    rounds: int = 15,
    per_round: int = 3,
) -> list[LatencyRatio]:
    """`latency_ratio` of each candidate, all timed interleaved with the reference in one
    process (a candidate and a latency budget's net measured alike); `input_size` is one
    size for all or one per candidate (a baseline at its own size beside the searched net)."""
    device = _device_of(reference)
    sizes, reference_size = per_candidate(input_size, len(candidates), reference_size)
    with contextlib.ExitStack() as stack:
        for m in (reference, *candidates):
            stack.enter_context(_eval_mode(m))
        stack.enter_context(fixed_threads(threads))
        timers = [_timer(_torch_runner(reference, reference_size, 1), device)]
        timers += [_timer(_torch_runner(m, size, 1), device)
                   for m, size in zip(candidates, sizes, strict=True)]
        best = _interleaved(timers, warmup, rounds, per_round)
    return [_paired_ratio(b, best[0]) for b in best[1:]]


def _interleaved(timers: Sequence[Callable[[], float]], warmup: int, rounds: int,
                 per_round: int) -> list[list[float]]:
    """Per timer, its fastest of `per_round` calls in each round; within a round the timers
    run one after another, the order rotating between rounds."""
    for timed in timers:
        for _ in range(warmup):
            timed()
    best: list[list[float]] = [[] for _ in timers]
    order = list(range(len(timers)))
    for r in range(rounds):
        shift = r % len(order)
        for which in order[shift:] + order[:shift]:
            best[which].append(min(timers[which]() for _ in range(per_round)))
    return best


def _paired_ratio(candidate: list[float], reference: list[float]) -> LatencyRatio:
    ratio = statistics.median(c / f for c, f in zip(candidate, reference, strict=True))
    return LatencyRatio(ratio=ratio, candidate_ms=statistics.median(candidate),
                        reference_ms=statistics.median(reference))


def export_onnx(model: nn.Module, input_size: int, path: str | Path, opset: int = 17) -> Path:
    """Export with a dynamic batch axis; input `images` (N,3,S,S) float32, output `logits`."""
    path = Path(path)
    example = torch.randn(1, 3, input_size, input_size, device=_device_of(model))
    with _eval_mode(model), warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated since torch 2.9 but exports these convnets
        # in 0.2 s against 7 s for the torch.export one, with the same graph; revisit when
        # torch > 2.14 is allowed.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=["images"], output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


def onnx_session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session with a fixed intra-op thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_onnx_latency(
    path: str | Path,
    input_size: int,
    *,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
) -> Latency:
    timed = _onnx_timer(path, input_size, batch, threads)
    for _ in range(warmup):
        timed()
    times = [timed() for _ in range(repeats)]
    return _summarise(times, threads, "cpu", "onnxruntime")


def _onnx_timer(path: str | Path, input_size: int, batch: int,
                threads: int) -> Callable[[], float]:
    session = onnx_session(path, threads)
    x = np.random.default_rng(0).standard_normal((batch, 3, input_size, input_size))
    feed = {session.get_inputs()[0].name: x.astype(np.float32)}
    return _timer(lambda: session.run(None, feed), torch.device("cpu"))


def onnx_latency_ratios(
    candidates: Sequence[str | Path],
    reference: str | Path,
    input_size: int | Sequence[int],
    *,
    reference_size: int | None = None,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    rounds: int = 15,
    per_round: int = 3,
) -> list[LatencyRatio]:
    """ONNX Runtime latency of each candidate file over the reference file's (an int8 model
    over its fp32 one), all timed interleaved in one process as `latency_ratio` does. The
    reference runs at `reference_size` (default: `input_size`, when it is one for all)."""
    sizes, reference_size = per_candidate(input_size, len(candidates), reference_size)
    timers = [_onnx_timer(reference, reference_size, batch, threads)]
    timers += [_onnx_timer(p, size, batch, threads)
               for p, size in zip(candidates, sizes, strict=True)]
    best = _interleaved(timers, warmup, rounds, per_round)
    return [_paired_ratio(b, best[0]) for b in best[1:]]


@dataclass(frozen=True)
class CostReport:
    params: int
    macs: int
    size_bytes: int
    latency_ms: float  # eager, batch 1, CPU unless the model lives on a GPU


def cost_report(model: nn.Module, input_size: int, threads: int = 1) -> CostReport:
    return CostReport(
        params=count_params(model),
        macs=count_macs(model, input_size),
        size_bytes=serialized_size(model),
        latency_ms=measure_latency(model, input_size, threads=threads).median_ms,
    )
