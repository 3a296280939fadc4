"""The final job's options, and the command-line flags that set them: `final.py` has them
all, `search.py --final` the shared ones (`add_final_flags`); both build `FinalOptions` here.
Free of torch: the entry scripts parse their flags before importing the job."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class FinalOptions:
    trial: int | None = None
    pareto: bool = False
    max_latency_ratio: float | None = None
    epochs: int | None = None
    baselines: tuple[str, ...] = ()
    data: str | None = None
    threads: int = 1
    progress: bool = True
    seeds: int | None = None  # None: final.seeds of the study's config
    top_k: int | None = None  # None: final.top_k; ignored with --trial or --pareto
    workers: int | None = None  # trainings at once on a CPU; None: final.workers, else cores
    int8: bool | None = None  # None: final.int8
    baseline_sizes: tuple[int, ...] | None = None  # None: final.baseline_image_sizes
    reuse_from: str | None = None  # another run folder whose final trainings are taken over

    @classmethod
    def from_args(cls, args: argparse.Namespace, **own: object) -> FinalOptions:
        """From the flags of `add_final_flags`, plus what a caller sets of its own flags."""
        return cls(baselines=tuple(b for b in args.baselines.split(",") if b),
                   seeds=args.seeds, top_k=args.top_k, int8=args.int8,
                   baseline_sizes=args.baseline_sizes, reuse_from=args.reuse_from,
                   **own)  # type: ignore[arg-type]


def _sizes(text: str) -> tuple[int, ...]:
    """'96,224' -> (96, 224); anything else is an argparse error naming the flag."""
    try:
        sizes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated pixel sizes, e.g. 96,224"
                                         ) from None
    if any(s < 8 or s > 1024 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: each size must be 8 to 1024 pixels")
    return sizes


def add_final_flags(p: argparse.ArgumentParser) -> None:
    """The final job's flags that `search.py --final` shares."""
    p.add_argument("--baselines", default="", help="torchvision nets to train alongside, "
                   "comma-separated (e.g. mobilenet_v3_small,shufflenet_v2_x0_5)")
    p.add_argument("--baseline-sizes", type=_sizes, metavar="S,S", help="input sizes each "
                   "baseline is also tried at, beside the searched one; the best on "
                   "validation is used (e.g. 96,224; default: final.baseline_image_sizes)")
    p.add_argument("--seeds", type=int, help="trainings per model from different seeds "
                   "(default: final.seeds of the config); the report gives means with 95 %% "
                   "intervals")
    p.add_argument("--top-k", type=int, help="re-evaluate the K best architectures with "
                   "fresh seeds on the training split before the final training (default: "
                   "final.top_k)")
    p.add_argument("--reuse-from", metavar="RUN", help="another run folder (e.g. the other "
                   "operating point's on the same data): its final job's trainings of the "
                   "same net, recipe, seed and epochs on the same rows (checked by content) "
                   "are taken over instead of trained again, and each baseline is also tried "
                   "with the recipe RUN chose for it")
    p.add_argument("--no-int8", dest="int8", action="store_false", default=None,
                   help="skip the int8 quantization and its benchmark (default: final.int8)")


__all__ = ["FinalOptions", "add_final_flags"]
