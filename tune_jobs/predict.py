"""Classify a folder of images with an exported model; writes `file,class` rows.

    python tune_jobs/predict.py --model OUTPUT/final/model.onnx (or model.ts)
        --images DIR --out predictions.csv [--batch 64]

Needs only the runtime (onnxruntime for .onnx, torch for .ts), numpy and Pillow: the classes,
input size and resize mode travel inside the model file. Unreadable images are skipped and
listed on stderr.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from data_utils.images import BadImage, decode_file, is_image_file
from tune_jobs.finaljob.meta import META_KEY, ModelMeta

# ImageNet statistics, as data_utils.augment.normalize (not imported: it needs torch)
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def load_runner(path: Path):
    """(run(batch NCHW float32) -> logits, meta) for an .onnx or a TorchScript .ts file."""
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


def predict_folder(model: Path, images: Path, batch: int = 64):
    run, meta = load_runner(model)
    files = sorted(p for p in images.rglob("*") if p.is_file() and is_image_file(p))
    rows, skipped, pending = [], [], []

    def flush() -> None:
        if not pending:
            return
        x = np.stack([p for _, p in pending]).transpose(0, 3, 1, 2).astype(np.float32) / 255
        logits = run(((x - MEAN) / STD).astype(np.float32))
        rows.extend((f.relative_to(images).as_posix(), meta.classes[int(k)])
                    for (f, _), k in zip(pending, logits.argmax(1), strict=True))
        pending.clear()

    for f in files:
        try:
            pending.append((f, decode_file(f, meta.input_size, meta.resize)))
        except BadImage as err:
            skipped.append((f, err.reason))
        if len(pending) == batch:
            flush()
    flush()
    return rows, skipped


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("predictions.csv"))
    p.add_argument("--batch", type=int, default=64)
    return p


def main(args: argparse.Namespace) -> int:
    if not args.images.is_dir():
        print(f"error: {args.images}: no such folder", file=sys.stderr)
        return 2
    rows, skipped = predict_folder(args.model, args.images, args.batch)
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
