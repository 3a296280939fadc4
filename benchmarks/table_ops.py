"""Two learning-curve tables of one grid that differ in one drawn value (for #22: the same
candidates trained with one-cycle warming up for 30 % of the run, and for two epochs):

- `splice`: a table whose candidates with one value there are replaced by another table's
  candidates with another value, so that a replay or a rung analysis sees the grid as it would
  be with the other value (its header's space lists it in the first value's place);
- `compare_finals`: each candidate of one table against its twin of the other (same drawn
  values but that one), on the final score and F1 averaged over its trainings.

    python benchmarks/curves.py splice --table B --with B2 --replace train/schedule=onecycle
        --out SPLICED
    python benchmarks/curves.py finals --table B2 --against B --name train/schedule
"""

from __future__ import annotations

import statistics

import numpy as np

from replay_metrics import TOP_SHARE, bootstrap_ci
from tune_jobs.trial.data import SEP
from tune_jobs.trial.report import COLUMN


def _space_path(name: str) -> tuple[str, ...]:
    """Where a flat drawn name lives in a header's space: `train/lr` -> ("train", "lr"),
    `width` -> ("width",). Slot names (`s2/kernel`) are not spliced."""
    path = tuple(name.split(SEP))
    if len(path) > 2 or (len(path) == 2 and path[0] not in ("train", "stem", "head")):
        raise SystemExit(f"--replace {name}: only a whole-network, stem, head or train value "
                         f"can be spliced, not a slot's")
    return path


def _twin_key(params: dict, name: str) -> str:
    """A candidate's identity but for `name`: its twin in the other table has the same."""
    return repr(sorted((k, v) for k, v in params.items() if k != name))


def _get(space: dict, path: tuple[str, ...]) -> list:
    for part in path[:-1]:
        space = space[part]
    return space[path[-1]]


def _with(space: dict, path: tuple[str, ...], values: list) -> dict:
    """A copy of `space` with the choices at `path` replaced by `values`."""
    if len(path) == 1:
        return {**space, path[0]: values}
    return {**space, path[0]: _with(space[path[0]], path[1:], values)}


def splice(meta: dict, rows: list[dict], other_meta: dict, other_rows: list[dict], name: str,
           value: str) -> tuple[dict, list[dict]]:
    """`rows` without the trainings that drew `value` for `name`, plus every row of
    `other_rows` (a table of the same grid, data and budget, drawn with other values there);
    the header's space lists the other table's values in `value`'s place."""
    path = _space_path(name)
    ours, theirs = _get(meta["space"], path), _get(other_meta["space"], path)
    if value not in [str(v) for v in ours]:
        raise SystemExit(f"--replace {name}={value}: the table's choices there are {ours}")
    for field in ("data", "max_epochs", "metrics"):
        if meta.get(field) != other_meta.get(field):
            raise SystemExit(f"--with: its {field} {other_meta.get(field)!r} is not the "
                             f"table's {meta.get(field)!r}")
    if _with(other_meta["space"], path, ours) != meta["space"]:
        raise SystemExit(f"--with: its space differs from the table's elsewhere than {name}")
    if any(str(r["params"][name]) == value for r in other_rows):
        raise SystemExit(f"--with: it has rows with {name}={value} too")
    replaced = {(_twin_key(r["params"], name), r["seed"]) for r in rows
                if str(r["params"][name]) == value}
    missing = replaced - {(_twin_key(r["params"], name), r["seed"]) for r in other_rows}
    if missing:  # a replay over the spliced table would lack those trainings
        raise SystemExit(f"--with: {len(missing)} of the {len(replaced)} trainings with "
                         f"{name}={value} have no twin there (a build still running?)")
    choices = [v for v in ours if str(v) != value] + [v for v in theirs if v not in ours]
    spliced = {**meta, "space": _with(meta["space"], path, choices),
               "spliced": {"replaced": f"{name}={value}", "by": other_meta.get("command"),
                           "from": meta.get("command")}}
    kept = [r for r in rows if str(r["params"][name]) != value]
    return spliced, kept + other_rows


def _finals(rows: list[dict], name: str, max_epochs: int) -> dict[str, dict[str, float]]:
    """Per candidate, keyed by its drawn values other than `name`: the mean final score and
    F1 over its trainings that reached the full budget."""
    by: dict[str, list[list]] = {}
    for r in rows:
        if r.get("outcome", "trained") == "trained" and len(r["curve"]) >= max_epochs:
            by.setdefault(_twin_key(r["params"], name), []).append(r["curve"][max_epochs - 1])
    return {k: {m: statistics.mean(p[COLUMN[m]] for p in ps) for m in ("score", "f1")}
            for k, ps in by.items()}


def compare_finals(rows: list[dict], against: list[dict], name: str, max_epochs: int) -> dict:
    """Every candidate of `rows` against its twin in `against` (same drawn values except
    `name`): the mean difference of the final score (lower is better) and F1 with bootstrap
    95 % intervals over candidates, how many are better, and how many of the pooled best
    `TOP_SHARE` candidates come from each table."""
    mine, theirs = _finals(rows, name, max_epochs), _finals(against, name, max_epochs)
    twins = sorted(set(mine) & set(theirs))
    if len(twins) < 2:
        raise SystemExit(f"finals: {len(twins)} candidates of the table have a twin in the "
                         f"other (same values but {name}); nothing to compare")
    out: dict = {"candidates": len(twins), "name": name}
    for metric in ("score", "f1"):
        diff = np.array([mine[t][metric] - theirs[t][metric] for t in twins])
        better = diff < 0 if metric == "score" else diff > 0
        out[metric] = {"mean_difference": float(diff.mean()),
                       "difference_ci95": list(bootstrap_ci(np.mean, diff)),
                       "better": int(better.sum()), "worse": int((diff != 0).sum() - better.sum())}
    pooled = sorted([(mine[t]["score"], "table") for t in twins]
                    + [(theirs[t]["score"], "against") for t in twins])
    top = pooled[:max(1, round(TOP_SHARE * len(pooled)))]
    out["top"] = {"size": len(top), "table": sum(s == "table" for _, s in top),
                  "against": sum(s == "against" for _, s in top)}
    return out


def finals_markdown(result: dict, table: str, against: str) -> str:
    lines = [f"{result['candidates']} candidates of `{table}` against their twins in "
             f"`{against}` (the same drawn values but `{result['name']}`), final values "
             "averaged over each candidate's trainings:", "",
             "| final | table - against [95 % CI] | table better | table worse |",
             "|---|---:|---:|---:|"]
    for metric, label in (("score", "score (lower is better)"), ("f1", "macro-F1")):
        m = result[metric]
        low, high = m["difference_ci95"]
        lines.append(f"| {label} | {m['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}] | "
                     f"{m['better']} | {m['worse']} |")
    top = result["top"]
    lines += ["", f"Of the best {top['size']} of both pooled by final score: {top['table']} "
              f"from the table, {top['against']} from the other."]
    return "\n".join(lines)


__all__ = ["compare_finals", "finals_markdown", "splice"]
