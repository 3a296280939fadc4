"""What every benchmark script does at the end: print its table, write its JSON."""

from __future__ import annotations

import json
import os
import platform
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def emit(benchmark: str, markdown: str, rows: list[dict], json_path: Path | None,
         **fields: object) -> dict:
    result = {"benchmark": benchmark, "date": date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", **fields,
              "rows": rows}
    print(markdown)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
    return result
