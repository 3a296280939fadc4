"""The learning-curve table (benchmarks/curves.py): the grid enumeration of a define-by-run
space, the table's format and resume, a tiny grid trained for real, and a table built from a
study."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import uuid

import optuna
import pytest

from conftest import REPO
from tune_jobs.config import load_config
from tune_jobs.trial.space import DictChooser, enumerate_space, flat_params, sample

sys.path.insert(0, str(REPO / "benchmarks"))

from curves import build_from_study, build_grid, cell_key, grid_jobs, read_table

TINY = ["space.slots.0.blocks=[conv]", "space.slots.0.out=[8]", "space.slots.1.blocks=[pass]",
        "space.head.channels=[64]", "space.width=[0.5, 1.0]", "space.train.lr=[0.01, 0.05]",
        "space.train.augment_magnitude=[0.0]", "space.train.optimizer=[sgd]"]


def test_the_grid_is_every_leaf_of_the_define_by_run_tree_once() -> None:
    """Against brute force: the cartesian product of every name's choices, each sampled
    (a block's arguments only count where it is chosen), deduplicated."""
    cfg = load_config("ci.yaml", ["space.train.lr=[0.01, 0.05]"])
    found = enumerate_space(cfg.space, 6)
    keys = [cell_key(c.params) for c in found]
    assert len(keys) == len(set(keys)), "a candidate was enumerated twice"
    names = flat_params(cfg.space)
    brute = {cell_key(sample(cfg.space, DictChooser(dict(zip(names, values, strict=True))),
                             6).params)
             for values in itertools.product(*names.values())}
    assert set(keys) == brute
    assert len(enumerate_space(load_config("curves").space, 6)) == 256  # the shipped grid


def test_a_range_is_refused_by_the_grid() -> None:
    with pytest.raises(ValueError, match="train/lr: a grid needs a list of choices"):
        enumerate_space(load_config("ci.yaml").space, 6)


def test_second_seed_jobs_spread_over_the_grid() -> None:
    cands = enumerate_space(load_config("curves").space, 6)
    jobs = grid_jobs(cands, 32, 0)
    assert len(jobs) == 256 + 32 and {j["seed"] for j in jobs[256:]} == {1}
    again = [cell_key(j["params"]) for j in jobs[256:]]
    assert len(set(again)) == 32 and cell_key(cands[-8].params) in again


def test_a_cut_last_line_is_ignored(tmp_path) -> None:
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"kind": "meta", "max_epochs": 3}) + "\n"
                     + json.dumps({"key": "a", "seed": 0}) + "\n" + '{"key": "b", "se')
    meta, rows = read_table(table)
    assert meta["max_epochs"] == 3 and [r["key"] for r in rows] == ["a"]


@pytest.mark.slow
def test_a_tiny_grid_builds_resumes_and_matches_a_study(tmp_path, cache_dir, ray_local) -> None:
    """Four candidates x 3 epochs and one second seed, trained for real; a second build
    trains nothing; the same candidates searched without early stopping give a study whose
    table has the same shape."""
    overrides = [*TINY, f"output={tmp_path}", f"data.cache_dir={cache_dir}",
                 "search.storage=null"]
    cfg = load_config("ci.yaml", overrides)
    table = tmp_path / "grid.jsonl"
    args = argparse.Namespace()
    assert build_grid(cfg, table, second_seed=1, args=args) == 5
    meta, rows = read_table(table)
    assert meta["max_epochs"] == cfg.scheduler.max_epochs == 3 and len(rows) == 5
    assert len({r["key"] for r in rows}) == 4 and sorted(r["seed"] for r in rows) == [0] * 4 + [1]
    for r in rows:
        assert r["outcome"] == "trained", r["reason"]
        assert [p[0] for p in r["curve"]] == [1, 2, 3]
        assert all(0 <= p[1] <= 1 and p[2] > 0 and 0 <= p[3] <= 1 for p in r["curve"])
        assert r["latency_ratio"] > 0 and r["n_params"] > 0 and r["epoch_seconds"] > 0
    seeded = next(r for r in rows if r["seed"] == 1)
    first = next(r for r in rows if r["key"] == seeded["key"] and r["seed"] == 0)
    assert seeded["curve"] != first["curve"], "the second seed trained the same run again"
    assert build_grid(cfg, table, second_seed=1, args=args) == 0  # resumed: nothing left

    from tune_jobs.searchjob import run_search
    from tune_jobs.study.storage import open_storage

    study_cfg = load_config("ci.yaml", [*overrides, "scheduler.early_stopping=false",
                                        f"search.study=s-{uuid.uuid4().hex[:6]}",
                                        "search.algorithm=random", "search.num_samples=3"])
    _, url = run_search(study_cfg)
    study = optuna.load_study(study_name=study_cfg.search.study, storage=open_storage(url))
    n = build_from_study(study, tmp_path / "study.jsonl", args)
    meta, from_study = read_table(tmp_path / "study.jsonl")
    assert n == len(from_study) == 3 and meta["source"].startswith("study ")
    assert {r["key"] for r in from_study} <= {r["key"] for r in rows}  # the same cells
    for r in from_study:
        t = study.trials[r["trial"]]
        assert [p[4] for p in r["curve"]] == pytest.approx(
            [t.intermediate_values[e] for e in (1, 2, 3)])


def test_rung_correlations_rank_against_the_final_score() -> None:
    """Five candidates whose epoch-1 F1 orders them as their final score does, and whose
    epoch-1 loss orders them the other way round."""
    from curves import rung_correlations, seed_noise

    rows = []
    for i in range(5):
        curve = [[1, 0.1 * i, 1.0 - 0.1 * i, 0.2, 1.5 - 0.01 * i],
                 [2, 0.5 + 0.1 * i, 2.0 + 0.1 * i, 0.6, 1.2 - 0.1 * i]]
        rows.append({"key": str(i), "seed": 0, "curve": curve})
    rows.append({"key": "0", "seed": 1, "curve": rows[0]["curve"]})
    corr = {c["metric"]: c for c in rung_correlations(rows, 2, [1])}
    assert corr["f1"]["spearman_final_score"] == pytest.approx(1.0)
    assert corr["score"]["spearman_final_score"] == pytest.approx(1.0)
    assert corr["val_loss"]["n"] == 5  # the second seed's row is not counted twice
    assert corr["val_loss"]["spearman_final_f1"] == pytest.approx(1.0)  # lower loss: better
    assert seed_noise(rows, 2) == {"pairs": 1}
