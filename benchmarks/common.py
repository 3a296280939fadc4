"""What every benchmark script does at the end: print its table, write its JSON."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import threading
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The usual picks a user would train instead of searching: what the claims are judged against
# (benchmarks/night.sh names the same two)
BASELINES = ("mobilenet_v3_small", "shufflenet_v2_x0_5")


def emit(benchmark: str, markdown: str, rows: list[dict], json_path: Path | None,
         **fields: object) -> dict:
    result = {"benchmark": benchmark, "date": date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", **fields,
              "rows": rows}
    print(markdown)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
    return result


class UtilizationSampler:
    """`nvidia-smi` GPU utilization (%) every half second, in a thread, while in use."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = shutil.which("nvidia-smi") is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, check=False).stdout
            self.samples += [float(v) for v in out.split() if v.strip().isdigit()]
            self._stop.wait(0.5)

    def __enter__(self) -> UtilizationSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()
