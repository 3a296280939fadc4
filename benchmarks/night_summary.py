"""The BENCHMARKS.md section of one `benchmarks/night.sh` run, from the files it committed to
benchmarks/results/night/<data>-<point>/: the final report's claim, models, comparison and
baseline-recipe sections as they are, the search's trial counts (trials.csv), and the wall
time, summed over every segment of stages.tsv (a run stopped and resumed has several). Writes
summary.md beside them and prints it; every number in it comes from those files.

While the final job still runs (no report.md yet), it writes progress.md instead: the final
job's finished trainings so far (its trainings.jsonl, copied there), each training kind's
seeds with their mean macro-F1 and 95 % interval, and the wall time so far.

    python benchmarks/night_summary.py benchmarks/results/night/fmnist-taco6-accurate
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from night_clock import LOST

from tune_jobs.finaljob import TRAININGS
from tune_jobs.finaljob.stats import estimate

# the report's sections the summary quotes, by the start of their heading
QUOTED = ("## Claim", "## Test metrics", "### Searched model against each baseline",
          "### Baseline recipes")


def quote_section(report: str, heading: str) -> list[str]:
    """The section whose heading starts with `heading`, up to the next heading of any level,
    one level down (it sits under the run's own heading in BENCHMARKS.md)."""
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        raise SystemExit(f"report.md has no section '{heading}...': is it the report of a "
                         "final job with baselines?")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")),
               len(lines))
    return ["#" + lines[start], *lines[start + 1:end]]


@dataclass
class StageTime:
    seconds: int = 0
    segments: int = 0
    lost: int = 0  # segments killed before they ended (night_clock's LOST): up to their last tick


def wall_time(stages: Path) -> dict[str, StageTime]:
    """Seconds and segments per stage (search, final) from night.sh's stages.tsv."""
    times: dict[str, StageTime] = {}
    with stages.open() as f:
        for row in csv.reader(f, delimiter="\t"):
            if len(row) != 5:
                raise SystemExit(f"{stages}: a line of {len(row)} fields, not 5 (stage, start, "
                                 f"end, seconds, exit status): {row}")
            t = times.setdefault(row[0], StageTime())
            t.seconds += int(row[3])
            t.segments += 1
            t.lost += int(row[4]) == LOST
    return times


def time_text(times: dict[str, StageTime]) -> str:
    """'9.2 h in all (search 5.1 h over 2 segments, 1 of them killed with the run and
    counted to its last tick; final 4.1 h over 1 segment; stages.tsv)'."""
    total = sum(t.seconds for t in times.values())
    parts = []
    for stage, t in times.items():
        lost = (f", {t.lost} of them killed with the run and counted to its last tick"
                if t.lost else "")
        parts.append(f"{stage} {_minutes(t.seconds)} over {t.segments} "
                     f"segment{'s' * (t.segments > 1)}{lost}")
    return f"{_minutes(total)} in all ({'; '.join(parts)}; stages.tsv)"


def trial_counts(trials: Path) -> tuple[int, Counter[str]]:
    """The search's trials and how each ended (COMPLETE, PRUNED: stopped by ASHA, ...)."""
    with trials.open() as f:
        states = Counter(row["state"] for row in csv.DictReader(f))
    return sum(states.values()), states


def _minutes(seconds: int) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def summary(folder: Path) -> str:
    report = (folder / "report.md").read_text()
    n, states = trial_counts(folder / "trials.csv")
    ended = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
    lines = [f"Wall time on this machine: {time_text(wall_time(folder / 'stages.tsv'))}. "
             f"The search: {n} trials ({ended}; trials.csv). "
             "The sections below are the final job's report.md as written.", ""]
    for heading in QUOTED:
        lines += quote_section(report, heading)
    return "\n".join(lines).rstrip() + "\n"


def finished_trainings(path: Path) -> dict[tuple[str, str], dict[int, dict]]:
    """trainings.jsonl by (training name, split), then seed: the last line of each training
    (a re-run appends every training again as it resumes)."""
    last: dict[tuple[str, str], dict[int, dict]] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            last.setdefault((row["name"], row["split"]), {})[int(row["seed"])] = row
        except (ValueError, KeyError, TypeError) as err:
            raise SystemExit(f"{path}:{i}: not a line of the final job's trainings "
                             f"({type(err).__name__}: {err}); copy the file again from the "
                             "run folder's final/") from err
    return last


def progress(folder: Path) -> str:
    """The final job so far: each training kind's finished seeds, mean and interval."""
    lines = [f"The final job is still running: its finished trainings so far ({TRAININGS}); "
             f"wall time so far {time_text(wall_time(folder / 'stages.tsv'))}, up to the "
             "last segment that ended.", "",
             "| training | judged on | seeds | macro-F1 | minutes each (median) |",
             "|---|---|---|---|---|"]
    for (name, split), seeds in finished_trainings(folder / TRAININGS).items():
        rows = [seeds[k] for k in sorted(seeds)]
        f1 = estimate([r["f1"] for r in rows])
        minutes = statistics.median(r["seconds"] for r in rows) / 60
        judged = "validation" if split == "train" else "test"
        lines.append(f"| {name} | {judged} | {', '.join(map(str, sorted(seeds)))} | "
                     f"{f1.text()} | {minutes:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="benchmarks/results/night/<data>-<point>")
    folder = p.parse_args().folder
    running = not (folder / "report.md").is_file() and (folder / TRAININGS).is_file()
    missing = [f for f in ("stages.tsv", "trials.csv") + (() if running else ("report.md",))
               if not (folder / f).is_file()]
    if missing:
        raise SystemExit(f"{folder}: no {', '.join(missing)}; night.sh copies them there "
                         f"(report.md once its final job has finished; {TRAININGS} from "
                         "the run folder's final/ while it runs)")
    text = progress(folder) if running else summary(folder)
    (folder / ("progress.md" if running else "summary.md")).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
