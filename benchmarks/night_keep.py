"""What a `benchmarks/night.sh` run needs to go on, kept in its results folder (which is
committed) and put back into a new run folder: a run folder lost with its machine then
costs only the work since the last keep, not a 3-hour search.

    python benchmarks/night_keep.py keep RUN RESULTS      # night.sh, every 10 min and at the end
    python benchmarks/night_keep.py restore RUN RESULTS   # night.sh, when RUN has no study

Kept: the search's study (SQLite, copied consistently while the search writes it), the
scheduler's rung state (`*.pkl`, a few kB), the markers of finished stages (`*.done`), the
run's clock (`stages.tsv` and the open segment, `stage.open`: benchmarks/night_clock.py), and
the final job's finished trainings so far (`trainings.jsonl`; and once it ended, its
`metrics.json`, copied by night.sh, restored for another run's `--reuse-from`). Not kept:
Tune's experiment folder and the final job's checkpoints (hundreds of MB): a restored search
goes on from its study (`search.py --resume` without Tune's state: the trials left running
are trained again), and a restored final job takes each finished training from the kept
trainings.jsonl (its numbers and history: finaljob/runs.py, `Records`) and trains again only
the runs whose weights it ships (each model's median; every seed under int8), the new lines
appended after the kept ones (the last line of a training counts).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from night_clock import OPEN, STAGES  # the run's clock

from tune_jobs.finaljob import TRAININGS  # under the run folder's final/

STUDY = "study.db"
METRICS = "metrics.json"  # night.sh copies a finished final job's there


def _copy_study(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database that another process may be writing (the
    backup API, not a file copy), replacing `dst` atomically."""
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with closing(sqlite3.connect(src)) as s, closing(sqlite3.connect(tmp)) as d:
        s.backup(d)
    os.replace(tmp, dst)


def _small_files(folder: Path) -> list[Path]:
    """The rung state, the stage markers and the run's clock that `folder` holds."""
    return sorted(p for pattern in ("*.pkl", "*.done", OPEN, STAGES)
                  for p in folder.glob(pattern))


def keep(run: Path, results: Path) -> list[str]:
    """Copy what `run` needs to go on into `results`; the names copied."""
    results.mkdir(parents=True, exist_ok=True)
    kept = []
    if (run / STUDY).is_file():
        _copy_study(run / STUDY, results / STUDY)
        kept.append(STUDY)
    for f in _small_files(run):
        shutil.copy2(f, results / f.name)
        kept.append(f.name)
    if not (run / OPEN).exists():  # the segment has ended: its line is in stages.tsv now
        (results / OPEN).unlink(missing_ok=True)
    if (run / "final" / TRAININGS).is_file():
        shutil.copy2(run / "final" / TRAININGS, results / TRAININGS)
        kept.append(TRAININGS)
    return kept


def restore(run: Path, results: Path) -> list[str]:
    """Put what `keep` kept in `results` into the run folder `run`, which must hold no study
    (a run folder's own state is never overwritten); the names restored."""
    if (run / STUDY).exists():
        raise SystemExit(f"{run / STUDY} exists: a run folder with its own study is resumed "
                         "as it is, not restored over")
    if not (results / STUDY).is_file():
        raise SystemExit(f"{results}: no {STUDY} kept to restore from")
    run.mkdir(parents=True, exist_ok=True)
    _copy_study(results / STUDY, run / STUDY)
    restored = [STUDY]
    for f in _small_files(results):
        shutil.copy2(f, run / f.name)
        restored.append(f.name)
    # new lines append after the kept trainings; a finished job's metrics.json is what
    # another run's --reuse-from reads each baseline's chosen recipe from
    for name in (TRAININGS, METRICS):
        if (results / name).is_file():
            (run / "final").mkdir(exist_ok=True)
            shutil.copy2(results / name, run / "final" / name)
            restored.append(name)
    return restored


ACTIONS = {"keep": keep, "restore": restore}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=sorted(ACTIONS))
    p.add_argument("run", type=Path, help="the run folder (night.sh's $OUT)")
    p.add_argument("results", type=Path, help="benchmarks/results/night/<data>-<point>")
    args = p.parse_args()
    done = ACTIONS[args.action](args.run, args.results)
    print(f"night_keep {args.action}: {', '.join(done) or 'nothing yet'}")


if __name__ == "__main__":
    main()
