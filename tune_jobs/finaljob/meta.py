"""What a deployed model needs besides its weights (classes, input size, resize mode), stored
inside model.onnx and model.ts. Free of torch so that predicting with ONNX Runtime needs
only the runtime, numpy and Pillow."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

META_KEY = "litesearch"


@dataclass(frozen=True)
class ModelMeta:
    classes: list[str]
    input_size: int
    resize: str  # "resize" or "pad" (data_utils.images.fit)
    precision: str = "fp32"  # "fp32", or the int8 format ("int8 QDQ S8S8", ...)
    warning: str | None = None  # why the final job did not ship this file, if it did not

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        data = json.loads(text)
        return cls(list(data["classes"]), int(data["input_size"]), str(data["resize"]),
                   str(data.get("precision", "fp32")), data.get("warning"))


def write_onnx_meta(path, meta: ModelMeta) -> None:
    """Store `meta` in the ONNX file's metadata (replacing what was there)."""
    import onnx

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    for key, value in [*kept, (META_KEY, meta.to_json())]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
