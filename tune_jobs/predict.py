"""Classify a folder of images with an exported model; writes `file,class` rows.

    python tune_jobs/predict.py --model OUTPUT/final/model.onnx (or model.ts)
        --images DIR --out predictions.csv [--batch 64] [--int8]

Needs only the runtime (onnxruntime for .onnx, torch for .ts), numpy and Pillow: the classes,
input size and resize mode travel inside the model file. `--int8` runs the int8 model the
final job wrote beside the fp32 one (model.int8.onnx). Unreadable images are skipped and
listed on stderr.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from data_utils.images import is_image_file
from tune_jobs.finaljob.meta import META_KEY, ModelMeta
from tune_jobs.finaljob.preprocess import load_batch


def load_runner(path: Path):
    """(run(batch NCHW float32) -> logits, meta) for an .onnx or a TorchScript .ts file."""
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    if path.suffix == ".onnx":  # ONNX Runtime only: torch is not imported on this path
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = ModelMeta.from_json(session.get_modelmeta().custom_metadata_map[META_KEY])
        return (lambda x: session.run(None, {"images": x})[0]), meta
    if path.suffix in (".ts", ".pt"):
        import torch

        from tune_jobs.finaljob.export import load_torchscript

        module, meta = load_torchscript(path)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()

        return run, meta
    raise ValueError(f"{path}: expected a .onnx or .ts model")


def int8_beside(model: Path) -> Path:
    """model.onnx -> the model.int8.onnx the final job wrote beside it."""
    if model.name.endswith(".int8.onnx"):
        return model
    if model.suffix != ".onnx":
        raise ValueError(f"{model}: --int8 needs the .onnx model (int8 is ONNX only)")
    int8 = model.with_suffix(".int8.onnx")
    if not int8.is_file():
        raise ValueError(f"{int8}: no int8 model beside {model.name}; the final job writes "
                         "it unless run with --no-int8 or the model could not be quantized "
                         "(metrics.json's int8 says why)")
    return int8


def predict_folder(model: Path, images: Path, batch: int = 64
                   ) -> tuple[list[tuple[str, str]], list[tuple[Path, str]]]:
    return predict_with(*load_runner(model), images, batch)


def predict_with(run, meta: ModelMeta, images: Path, batch: int = 64
                 ) -> tuple[list[tuple[str, str]], list[tuple[Path, str]]]:
    files = sorted(p for p in images.rglob("*") if p.is_file() and is_image_file(p))
    rows, skipped = [], []
    for start in range(0, len(files), batch):
        x, kept, bad = load_batch(files[start:start + batch], meta)
        skipped += bad
        if kept:
            rows += [(f.relative_to(images).as_posix(), meta.classes[int(k)])
                     for f, k in zip(kept, run(x).argmax(1), strict=True)]
    return rows, skipped


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("predictions.csv"))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--int8", action="store_true",
                   help="run the int8 model written beside --model (model.int8.onnx)")
    return p


def main(args: argparse.Namespace) -> int:
    if not args.images.is_dir():
        print(f"error: {args.images}: no such folder", file=sys.stderr)
        return 2
    try:
        model = int8_beside(args.model) if args.int8 else args.model
        run, meta = load_runner(model)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"model: {model} ({meta.precision})")
    if meta.warning:
        print(f"warning: the final job did not ship this model: {meta.warning}",
              file=sys.stderr)
    rows, skipped = predict_with(run, meta, args.images, args.batch)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class"])
        writer.writerows(rows)
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"{len(rows)} images classified -> {args.out}; {len(skipped)} skipped")
    return 0


def cli() -> None:
    """The console script (see [project.scripts] in pyproject.toml)."""
    sys.exit(main(get_args_parser().parse_args()))


if __name__ == "__main__":
    cli()
