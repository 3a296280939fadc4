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
    # every candidate with two seeds, the first seed of all first (a cut build is balanced)
    jobs = grid_jobs(cands, 0, 5, seeds=2)
    assert [j["seed"] for j in jobs] == [5] * 256 + [6] * 256
    assert [j["params"] for j in jobs[:256]] == [j["params"] for j in jobs[256:]]
    assert {j["seed"] for j in grid_jobs(cands, 4, 0, seeds=2)[512:]} == {2}


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
        # the training loss and the learning rate per epoch (TSE, warm-up): present and real
        assert all(len(p) == 7 and p[5] > 0 and 0 <= p[6] <= 0.05 for p in r["curve"])
        assert r["curve"][0][6] > r["curve"][-1][6]  # cosine: down to zero at the end
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
    assert corr["f1"]["top_k_kept_in_top_third"] == 1  # the best (i = 4) leads at epoch 1
    at_2 = {c["metric"]: c for c in rung_correlations(rows, 2, [2])}
    assert at_2["val_loss"]["top_k_kept_in_top_third"] == 0  # epoch-2 loss ranks i = 0 first
    assert seed_noise(rows, 2) == {"pairs": 1}


def test_rungs_with_two_seeds_predict_the_other_seed_and_rank_by_training_speed() -> None:
    """Every candidate trained twice: a training's target is the other seed's final score,
    not its own; the training loss gives TSE (sum) and TSE-EMA (0.9 ** age weights)."""
    from curves import RUNG_METRICS, rung_correlations, rung_metrics

    from tune_jobs.trial.report import next_tse_ema

    def curve(i: int, seed: int) -> list[list]:
        # the final score orders the candidates by i (lower is better), with seed noise that
        # is smaller than the gap between them; the training loss falls faster for larger i
        loss = [2.0 / (e + i) - 0.001 * seed for e in (1, 2, 3)]  # seed 1 learns faster...
        end = 1.0 - 0.1 * i + 0.01 * seed  # ...and ends worse: its target, seed 0, is better
        return [[e, 0.5, 1.0, 0.5, end + 0.1 * (3 - e), loss[e - 1], 0.01] for e in (1, 2, 3)]

    rows = [{"key": str(i), "seed": s, "curve": curve(i, s)} for i in range(5) for s in (0, 1)]
    losses = [[1, 0, 0, 0, 0, 2.0, 0], [2, 0, 0, 0, 0, 1.0, 0], [3, 0, 0, 0, 0, 0.5, 0]]
    assert RUNG_METRICS["tse"](losses, 3) == pytest.approx(-3.5)
    assert RUNG_METRICS["tse_ema"](losses, 3) == pytest.approx(-(0.81 * 2 + 0.9 + 0.5))
    reported = 0.0  # what a trial reports as `tse_ema` after each epoch
    for loss in (2.0, 1.0, 0.5):
        reported = next_tse_ema(reported, loss)
    assert -reported == pytest.approx(RUNG_METRICS["tse_ema"](losses, 3))
    assert RUNG_METRICS["tse"](losses, 1) == pytest.approx(-2.0)
    corr = {c["metric"]: c for c in rung_correlations(rows, 3, [1])}
    assert {c["target"] for c in corr.values()} == {"held-out seed"}
    assert corr["tse"]["n"] == 10  # every training counts, each against the other seed
    assert corr["tse"]["spearman_final_score"] == pytest.approx(1.0)
    assert corr["tse_ema"]["spearman_final_score"] == pytest.approx(1.0)
    assert corr["score"]["spearman_final_score"] > 0.9  # the noise is below the gaps
    # a table without the training loss (built before it was recorded) offers no TSE
    old = [{**r, "curve": [p[:5] for p in r["curve"]]} for r in rows]
    assert rung_metrics(old) == ["score", "f1", "val_loss", "accuracy"]


def test_only_keeps_the_rows_that_drew_a_value() -> None:
    from curves import only_drawn

    rows = [{"params": {"train/schedule": s, "width": w}} for s in ("cosine", "onecycle")
            for w in (0.5, 1.0)]
    assert len(only_drawn(rows, ["train/schedule=cosine", "width=0.5"])) == 1
    with pytest.raises(SystemExit, match="train/warmup: not a drawn name"):
        only_drawn(rows, ["train/warmup=1"])
    with pytest.raises(SystemExit, match="no row of the table matches"):
        only_drawn(rows, ["width=2.0"])


def test_a_replay_seed_draws_one_training_of_each_candidate() -> None:
    """Two trainings per candidate: a replay seed always sees the same one of a candidate
    (a duplicate proposal repeats its result), replay seeds see both about equally often,
    and `--trainings first` keeps the noise-free, first-seed table."""
    from curves import replayed_trainings

    from tune_jobs.trial.replay import drawn_row

    rows = [{"key": f"c{i}", "seed": s} for i in range(50) for s in (1, 0)]
    table = replayed_trainings(rows)
    assert len(table) == 50 and all([r["seed"] for r in rs] == [0, 1] for rs in table.values())
    assert all(len(rs) == 1 and rs[0]["seed"] == 0
               for rs in replayed_trainings(rows, "first").values())
    with pytest.raises(ValueError, match="trainings: 'all'"):
        replayed_trainings(rows, "all")
    assert drawn_row("c3", table["c3"], 7) is drawn_row("c3", table["c3"], 7)
    for replay_seed in range(3):
        seen = [drawn_row(k, rs, replay_seed)["seed"] for k, rs in table.items()]
        assert 10 <= sum(seen) <= 40, "one seed's trainings drawn for nearly every candidate"
    per_cell = {drawn_row("c0", table["c0"], s)["seed"] for s in range(30)}
    assert per_cell == {0, 1}


def test_replay_summary_values_the_incumbent_at_its_quality() -> None:
    """40 candidates of quality 0.50, 0.51, ... (only c0 in the top 2.5 %), three seeds. The
    reference's budget is the median of its 30, 40 and 30 trial-epochs: 30. It reaches c0
    after 20 trial-epochs, after 40 (past its budget: counted as 30) and never (30): a
    restricted mean of 80 / 3. The arm gets there in 8 once and never twice: 68 / 3. At
    equal trial-epochs (the arm's 8, 10 and 8) the reference has no finished trial yet: the
    arm is strictly better in all three; at the full budget it is worse by 0.04 once and tied
    twice."""
    from curves import REFERENCE

    from replay_metrics import cell_quality, replay_markdown, summarize_arms, top_threshold

    quality = {f"c{i}": 0.5 + 0.01 * i for i in range(40)}
    assert top_threshold(quality) == pytest.approx(0.5)

    def traj(seed, points):
        return {"seed": seed, "points": [[c, 0.0, None if k is None else quality[k], k]
                                         for c, k in points],
                "trial_epochs": points[-1][0], "table_seconds": 1.0}

    results = {
        REFERENCE.name: [traj(0, [(10, "c5"), (20, "c0"), (30, "c0")]),
                         traj(1, [(10, None), (20, "c3"), (40, "c0")]),
                         traj(2, [(10, "c2"), (30, "c1")])],
        "arm": [traj(0, [(5, "c9"), (8, "c0")]), traj(1, [(5, "c9"), (10, "c4")]),
                traj(2, [(4, "c1"), (8, "c1")])],
    }
    rows = {r["arm"]: r for r in summarize_arms(results, quality, REFERENCE.name)}
    ref, arm = rows[REFERENCE.name], rows["arm"]
    assert ref["epochs_to_top_ratio"] == pytest.approx(1.0) and ref["reached"] == 1
    assert ref["budget"] == 30 and ref["epochs_to_top_restricted_mean"] == pytest.approx(80 / 3)
    assert ref["equal_epochs"] == {"better": 0, "tied": 3, "worse": 0}
    assert arm["reached"] == 1 and arm["epochs_to_top_ratio"] == pytest.approx(68 / 80)
    low, high = arm["epochs_to_top_ratio_ci95"]
    assert low <= 68 / 80 <= high and high < float("inf")
    assert arm["equal_epochs"] == {"better": 3, "tied": 0, "worse": 0}
    assert arm["better_share"] == 1.0
    assert arm["better_share_ci95"][0] == pytest.approx(0.292, abs=1e-3)  # exact, n = 3
    assert arm["final_difference_mean"] == pytest.approx(0.04 / 3)
    assert arm["final_quality_median"] == pytest.approx(0.51)
    assert "3 / 0 / 0" in replay_markdown(list(rows.values()), REFERENCE.name)
    # quality: a candidate's mean final score over its trainings that reached the end
    table = [{"key": "a", "curve": [[1, 0, 0, 0, 0.8], [2, 0, 0, 0, 0.6]]},
             {"key": "a", "curve": [[1, 0, 0, 0, 0.9], [2, 0, 0, 0, 0.4]]},
             {"key": "b", "curve": [[1, 0, 0, 0, 0.7]]}]
    assert cell_quality(table, 2) == {"a": pytest.approx(0.5)}


def test_a_killed_replay_continues_from_its_json(tmp_path, capsys) -> None:
    """The arms already in --json (same table, seeds and trainings) are not replayed again;
    a JSON made another way, or before trajectories kept the incumbent, is not reused."""
    from curves import _earlier_trajectories, get_args_parser, main, run_replay

    table = tmp_path / "t.jsonl"
    rows = [{"key": f"c{i}", "seed": 0, "curve": [[1, 0, 0, 0, 0.5 + 0.01 * i]]}
            for i in range(40)]
    table.write_text("\n".join(json.dumps(r) for r in
                               [{"kind": "meta", "max_epochs": 1}, *rows]) + "\n")
    traj = {"seed": 0, "points": [[3, 1.0, 0.51, "c1"]], "trial_epochs": 3,
            "table_seconds": 1.0}
    same = {"table": str(table), "seeds": [0], "num_samples": 4, "trainings": "drawn"}
    out = tmp_path / "replay.json"
    out.write_text(json.dumps({**same, "partial": True, "trajectories": {
        "tpe + fifo": [traj], "random + fifo": [traj]}}))
    args = get_args_parser().parse_args(
        ["replay", "--table", str(table), "--arms", "random:fifo", "--seeds", "1",
         "--num-samples", "4", "--json", str(out)])
    result = run_replay(args)  # would start Ray and fail on this table if it replayed
    assert [r["arm"] for r in result["rows"]] == ["tpe + fifo", "random + fifo"]
    assert json.loads(out.read_text())["rows"][1]["final_quality_median"] == 0.51
    assert _earlier_trajectories(out, {**same, "trainings": "first"}) == {}
    capsys.readouterr()
    main(get_args_parser().parse_args(  # the two arms read against each other
        ["pairs", str(out), "--pairs", "random + fifo=tpe + fifo", "--quality"]))
    printed = capsys.readouterr().out
    assert "| random + fifo vs tpe + fifo | 1 |" in printed and "| 0 / 1 / 0 |" in printed
    old = {**same, "trajectories": {"tpe + fifo": [{**traj, "points": [[3, 1.0, 0.51]]}]}}
    out.write_text(json.dumps(old))
    assert _earlier_trajectories(out, same) == {}


def test_plain_optuna_replays_a_table_with_its_pruners() -> None:
    """The peer arm: Optuna's own TPE and pruners over the tiny grid's table (no Ray). Without
    a pruner every trial trains the full 9 epochs; the median pruner stops the candidates
    whose curve runs above the median of those seen; the incumbent is the finished trial with
    the best final score."""
    from curves import replayed_trainings

    from optuna_replay import replay_optuna

    cfg = load_config("ci.yaml", TINY)
    cands = enumerate_space(cfg.space, 6)
    rows = [{"key": cell_key(c.params), "seed": 0, "params": c.params, "epoch_seconds": 0.5,
             "curve": [[e, 0.1, 1.0, 0.1, 2.0 - 0.1 * i - 0.01 * e] for e in range(1, 10)]}
            for i, c in enumerate(cands)]
    meta = {"max_epochs": 9, "space": cfg.space.model_dump(mode="json")}
    table = replayed_trainings(rows)
    full, = replay_optuna("none", "score", meta, table, [0], 30)
    assert full["trials"] == full["complete"] == 30 and full["trial_epochs"] == 30 * 9
    assert full["table_seconds"] == pytest.approx(30 * 9 * 0.5)
    assert [p[0] for p in full["points"]] == [9 * k for k in range(1, 31)]
    bests = [p[2] for p in full["points"]]
    assert bests == sorted(bests, reverse=True) and bests[-1] == full["best"]
    for _, _, seen, key in full["points"]:  # the incumbent: the cell of the best seen
        assert table[key][0]["curve"][-1][4] == seen
    # the median pruner lets its first 5 trials finish, then stops a trial whose curve runs
    # worse than the median of those before it: of 25 later trials, some draw a worse cell
    pruned, = replay_optuna("median", "score", meta, table, [0], 30)
    assert pruned["complete"] < 30 and pruned["trial_epochs"] < 30 * 9
    # the two workers are simulated, so a seed gives the same search every time
    assert replay_optuna("median", "score", meta, table, [0], 30) == [pruned]
    with pytest.raises(ValueError, match="pruner 'bohb'"):
        replay_optuna("bohb", "score", meta, table, [0], 4)
    with pytest.raises(ValueError, match="tse_ema needs the training loss"):
        replay_optuna("asha", "tse_ema", meta, table, [0], 4)  # 5 columns: no loss


@pytest.mark.slow
def test_replay_runs_the_real_search_path_over_a_table(tmp_path, ray_local) -> None:
    """A hand-made table of four candidates (the tiny grid, 3 epochs): replayed without early
    stopping every trial costs the full budget and ends COMPLETE; with ASHA ranking its rungs
    by F1, or by TSE-EMA of the training loss, some trials stop early, and the study still
    records the objective (the score). PASHA on F1, which ranks the candidates alike at every
    epoch, keeps its maximum at epoch 2: trials stopped there are COMPLETE at that budget and
    the incumbent is the best of them."""
    from curves import REFERENCE, Arm, replay_arm

    from replay_metrics import summarize_arms

    cfg = load_config("ci.yaml", TINY)
    cands = enumerate_space(cfg.space, 6)
    rows = [{"key": cell_key(c.params), "seed": 0, "params": c.params, "outcome": "trained",
             "latency_ratio": 0.5, "n_params": 1000, "macs": 10000, "epoch_seconds": 0.1,
             "curve": [[e, 0.2 * e + 0.05 * i, 1.0 / e, 0.1 * e, 0.0, 2.0 / e - 0.1 * i, 0.01]
                       for e in (1, 2, 3)]}
            for i, c in enumerate(cands)]
    meta = {"max_epochs": 3, "space": cfg.space.model_dump(mode="json"), "data": "",
            "classes": [f"c{i}" for i in range(6)]}
    arm, tse = Arm("tpe", "asha", "f1", 1, 2), Arm("tpe", "asha", "tse_ema", 1, 2)
    pasha = Arm("tpe", "pasha", "f1", 1, 2)
    results = {a.name: replay_arm(a, meta, rows, [0], "ci.yaml", 4, 2)
               for a in (REFERENCE, arm, tse, pasha)}
    from tune_jobs.trial.score import score

    finals = [score(0.6 + 0.05 * i, 0.5, cfg.objective.f1_ref) for i in range(4)]
    for t in results[REFERENCE.name]:
        assert t["trials"] == t["complete"] == 4 and t["trial_epochs"] == 12
        # the score is recomputed from the table's F1 and latency ratio
        assert any(t["best"] == pytest.approx(f) for f in finals), (t["best"], finals)
    for a in (arm, tse):
        stopped = [t for t in results[a.name] if t["trial_epochs"] < 12]
        assert stopped, f"{a.name} stopped no trial"
    at_budget = [score(0.4 + 0.05 * i, 0.5, cfg.objective.f1_ref) for i in range(4)]
    for t in results[pasha.name]:
        assert t["trial_epochs"] <= t["trials"] * 2 and t["complete"] >= 1
        assert any(t["best"] == pytest.approx(f) for f in at_budget), (t["best"], at_budget)
    quality = {r["key"]: f for r, f in zip(rows, finals, strict=True)}
    summary = {r["arm"]: r for r in summarize_arms(results, quality, REFERENCE.name)}
    assert summary[REFERENCE.name]["epochs_to_top_ratio"] == pytest.approx(1.0)
    for t in results[REFERENCE.name]:  # the incumbent: the trial with the best score seen
        assert quality[t["points"][-1][3]] == pytest.approx(t["best"])


def test_a_define_by_run_draw_finds_its_row_without_sampling_the_space() -> None:
    """The replay's worker keys a TPE or random config straight to its table row (no torch
    import): every draw of the shipped grid is in the precomputed map."""
    from tune_jobs.trial.replay import config_key, config_keys
    from tune_jobs.trial.space import candidate_from_config, define_by_run

    space = load_config("curves").space
    keys = config_keys(space, 6)
    assert len(keys) == 256
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        define_by_run(space, 6)(trial)
        nested = {}  # as Tune hands it over: names split on '/'
        for name, value in trial.params.items():
            head, _, tail = name.partition("/")
            (nested.setdefault(head, {}).__setitem__(tail, value) if tail
             else nested.__setitem__(head, value))
        assert keys[config_key(nested)] == cell_key(
            candidate_from_config(trial.params, space, 6).params)
        study.tell(trial, 1.0)


def test_pairs_count_wins_ties_and_losses_seed_by_seed() -> None:
    from replay_metrics import paired_finals

    results = {"a": [{"seed": s, "best": b} for s, b in enumerate([0.8, 0.9, 1.0, 0.7])],
               "b": [{"seed": s, "best": b} for s, b in enumerate([0.9, 0.9, 0.9, None])]}
    row = paired_finals(results, "a", "b")
    assert (row["better"], row["tied"], row["worse"], row["seeds"]) == (1, 1, 1, 3)
    assert row["mean_difference"] == pytest.approx(0.0)
    low, high = row["difference_ci95"]
    assert low < 0 < high


def _linear_table(path, slopes: list[float], max_epochs: int = 5) -> None:
    """One training per candidate whose F1 rises linearly at its own slope; the final score
    is 1 - final F1, so the end follows from any early epoch."""
    rows = [{"key": f"c{i}", "seed": 0, "params": {}, "curve": [
        [e, a * e / max_epochs, 2 - a * e / max_epochs, a * e / max_epochs,
         1 - a * e / max_epochs, 1 - a * e / max_epochs, 0.1] for e in range(1, max_epochs + 1)]}
        for i, a in enumerate(slopes)]
    path.write_text("\n".join(json.dumps(r) for r in
                              [{"kind": "meta", "max_epochs": max_epochs}, *rows]) + "\n")


def test_a_projection_fitted_on_one_table_ranks_another(tmp_path) -> None:
    """The learning-curve projection (`rungs --fit`): fitted on table A, it ranks table B's
    trainings at epoch 2 in the order of their finals (Spearman 1); a fit table of another
    budget is refused."""
    from curves import get_args_parser, main

    _linear_table(tmp_path / "a.jsonl", [0.2 + 0.03 * i for i in range(20)])
    _linear_table(tmp_path / "b.jsonl", [0.9 - 0.04 * i for i in range(15)])
    args = get_args_parser().parse_args(["rungs", "--table", str(tmp_path / "b.jsonl"), "--fit",
                                         str(tmp_path / "a.jsonl"), "--rungs", "2", "--json",
                                         str(tmp_path / "r.json")])
    assert main(args) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    projection, = (r for r in rows if r["metric"] == "projection")
    assert projection["spearman_final_score"] == pytest.approx(1.0)
    _linear_table(tmp_path / "c.jsonl", [0.5, 0.6, 0.7], max_epochs=4)
    args.fit = tmp_path / "c.jsonl"
    with pytest.raises(SystemExit, match=r"c\.jsonl: 4 epochs, the table 5"):
        main(args)


def test_a_replay_can_be_read_against_plain_optuna_without_ray(tmp_path) -> None:
    """`replay --reference optuna:none`: with plain-Optuna arms only the replay runs in
    seconds without Ray, and reads each arm against that reference."""
    from curves import get_args_parser, main

    cfg = load_config("ci.yaml", TINY)
    meta = {"kind": "meta", "max_epochs": 9, "space": cfg.space.model_dump(mode="json")}
    rows = [{"key": cell_key(c.params), "seed": 0, "params": c.params, "epoch_seconds": 0.5,
             "curve": [[e, 0.1, (1 + i) / e, 0.1, (2 + i) / e] for e in range(1, 10)]}
            for i, c in enumerate(enumerate_space(cfg.space, 6))]
    table = tmp_path / "t.jsonl"
    table.write_text("\n".join(json.dumps(r) for r in [meta, *rows]) + "\n")
    args = get_args_parser().parse_args(
        ["replay", "--table", str(table), "--reference", "optuna:none", "--arms",
         "optuna:asha:val_loss:3:3", "--seeds", "3", "--num-samples", "8", "--json",
         str(tmp_path / "r.json")])
    assert main(args) == 0
    out = json.loads((tmp_path / "r.json").read_text())
    asha = "plain optuna tpe + asha pruner (val_loss, grace 3, eta 3)"
    assert out["reference"] == "plain optuna tpe + none pruner (score)"
    assert set(out["trajectories"]) == {out["reference"], asha}
    assert {r["arm"] for r in out["rows"]} == {out["reference"], asha}


def test_a_splice_swaps_one_values_candidates_and_finals_pairs_the_twins() -> None:
    """Two tables of one grid that differ in the schedule: the splice keeps the other
    schedules' rows and takes the new one's, with the header's space to match; `finals` pairs
    each candidate with its twin (the same values but the schedule)."""
    from table_ops import compare_finals, splice

    from tune_jobs.trial.report import COLUMN

    def table(schedules: list[str], shift: float) -> tuple[dict, list[dict]]:
        meta = {"data": "d", "max_epochs": 2, "metrics": ["epoch"],
                "space": {"width": [0.5, 1.0], "train": {"lr": [0.1], "schedule": schedules}}}
        rows = []
        for s, w, seed in itertools.product(schedules, (0.5, 1.0), (0, 1)):
            point = [0.0] * len(COLUMN)
            point[COLUMN["score"]], point[COLUMN["f1"]] = w + shift + seed / 100, 1 - w - shift
            rows.append({"params": {"width": w, "train/lr": 0.1, "train/schedule": s},
                         "seed": seed, "curve": [point, point]})
        return meta, rows

    meta, rows = table(["cosine", "onecycle"], 0.0)
    short_meta, short = table(["onecycle_2ep"], -0.1)
    new_meta, new_rows = splice(meta, rows, short_meta, short, "train/schedule", "onecycle")
    assert new_meta["space"]["train"]["schedule"] == ["cosine", "onecycle_2ep"]
    assert sorted({r["params"]["train/schedule"] for r in new_rows}) == ["cosine",
                                                                       "onecycle_2ep"]
    assert len(new_rows) == 8 and meta["space"]["train"]["schedule"] == ["cosine", "onecycle"]
    with pytest.raises(SystemExit, match="choices there are"):
        splice(meta, rows, short_meta, short, "train/schedule", "constant")
    with pytest.raises(SystemExit, match="only a whole-network, stem, head or train"):
        splice(meta, rows, short_meta, short, "s2/kernel", "3")
    other_lr = {**short_meta, "space": {**short_meta["space"],
                                        "train": {"lr": [0.2], "schedule": ["onecycle_2ep"]}}}
    with pytest.raises(SystemExit, match="space differs from the table's elsewhere"):
        splice(meta, rows, other_lr, short, "train/schedule", "onecycle")

    with pytest.raises(SystemExit, match=r"1 of the 4 trainings .* have no twin there"):
        splice(meta, rows, short_meta, short[:-1], "train/schedule", "onecycle")

    onecycle = [r for r in rows if r["params"]["train/schedule"] == "onecycle"]
    result = compare_finals(short, onecycle, "train/schedule", 2)
    assert result["candidates"] == 2
    assert result["score"]["mean_difference"] == pytest.approx(-0.1)
    assert result["score"]["better"] == 2 and result["f1"]["better"] == 2
    assert result["top"] == {"size": 1, "table": 1, "against": 0}
    with pytest.raises(SystemExit, match="nothing to compare"):
        compare_finals(short, onecycle, "width", 2)
