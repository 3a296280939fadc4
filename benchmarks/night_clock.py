"""The wall time of a `benchmarks/night.sh` run, one line per segment in RUN/stages.tsv
(stage, start, end, seconds, exit status), honest across stops and lost machines.

    python benchmarks/night_clock.py start RUN STAGE   # a segment begins
    python benchmarks/night_clock.py tick RUN          # it is alive (night.sh: every minute)
    python benchmarks/night_clock.py stop RUN RC       # it ended with exit status RC

A segment that never reached `stop` (the process killed, the machine shut down) would
otherwise leave no line at all, and the run's time would read hours short. So the open
segment lives in RUN/stage.open (its stage, start and last tick), which
`benchmarks/night_keep.py` keeps and restores with the rest of the run's state; the next
`start` closes it first as lost: its end is its last tick and its exit status LOST (137, a
SIGKILL's). Its time is counted up to the last sign of life, at most a minute short (a
folder lost with its machine: up to the last keep, 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

STAGES = "stages.tsv"
OPEN = "stage.open"
LOST = 137


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_open(run: Path, segment: dict) -> None:
    tmp = run / (OPEN + ".tmp")
    tmp.write_text(json.dumps(segment))
    os.replace(tmp, run / OPEN)  # a tick killed halfway leaves the previous tick


def _read_open(run: Path) -> dict | None:
    path = run / OPEN
    if not path.is_file():
        return None
    try:
        segment = json.loads(path.read_text())
        return {"stage": str(segment["stage"]), "start": float(segment["start"]),
                "alive": float(segment["alive"])}
    except (ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"{path}: not an open segment ({type(err).__name__}: {err}); "
                         f"add its line to {run / STAGES} by hand (stage, start, end, "
                         "seconds, exit status) and delete it") from err


def _close(run: Path, segment: dict, end: float, rc: int) -> str:
    line = "\t".join([segment["stage"], _utc(segment["start"]), _utc(end),
                      str(round(end - segment["start"])), str(rc)])
    with (run / STAGES).open("a") as f:
        f.write(line + "\n")
    (run / OPEN).unlink()
    return line


def close_lost(run: Path) -> str | None:
    """Close a segment left open by a run that never stopped it; its line, or None."""
    segment = _read_open(run)
    return None if segment is None else _close(run, segment, segment["alive"], LOST)


def start(run: Path, stage: str, now: float | None = None) -> str | None:
    """Open a segment of `stage`, first closing one left open; the lost segment's line."""
    lost = close_lost(run)
    now = time.time() if now is None else now
    run.mkdir(parents=True, exist_ok=True)
    _write_open(run, {"stage": stage, "start": now, "alive": now})
    return lost


def _opened(run: Path, action: str) -> dict:
    segment = _read_open(run)
    if segment is None:
        raise SystemExit(f"{run / OPEN}: no open segment to {action} (start one first)")
    return segment


def tick(run: Path, now: float | None = None) -> None:
    _write_open(run, _opened(run, "tick") | {"alive": time.time() if now is None else now})


def stop(run: Path, rc: int, now: float | None = None) -> str:
    """Close the open segment with exit status `rc`; its line."""
    return _close(run, _opened(run, "stop"), time.time() if now is None else now, rc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True)
    for action, extra in (("start", "stage"), ("tick", None), ("stop", "rc")):
        a = sub.add_parser(action)
        a.add_argument("run", type=Path, help="the run folder (night.sh's $OUT)")
        if extra == "stage":
            a.add_argument("stage", help="search, final, ...")
        elif extra == "rc":
            a.add_argument("rc", type=int, help="the segment's exit status")
    args = p.parse_args()
    if args.action == "start":
        lost = start(args.run, args.stage)
        if lost:
            print(f"night_clock: a segment left open closed as lost at its last tick: {lost}")
    elif args.action == "tick":
        tick(args.run)
    else:
        stop(args.run, args.rc)


if __name__ == "__main__":
    main()
