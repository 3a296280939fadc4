"""What a deployed model needs besides its weights (classes, input size, resize mode), stored
inside model.onnx and model.ts. Free of torch so that predicting with ONNX Runtime needs
only the runtime, numpy and Pillow."""

from __future__ import annotations

import json
from dataclasses import dataclass

META_KEY = "litesearch"


@dataclass(frozen=True)
class ModelMeta:
    classes: list[str]
    input_size: int
    resize: str  # "resize" or "pad" (data_utils.images.fit)

    def to_json(self) -> str:
        return json.dumps({"classes": self.classes, "input_size": self.input_size,
                           "resize": self.resize})

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        data = json.loads(text)
        return cls(list(data["classes"]), int(data["input_size"]), str(data["resize"]))
