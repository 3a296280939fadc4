"""The final job's arithmetic and choices without training: intervals against SciPy's own
t-tests, verdicts (never from one run, never against a model that did not train), the median
run, top-k's distinct architectures, the standard recipes, the recipe choice."""

import dataclasses

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats

from models.zoo import load_preset
from tune_jobs.config import ObjectiveConfig
from tune_jobs.finaljob.assess import TrainingCheck
from tune_jobs.finaljob.candidates import top_k
from tune_jobs.finaljob.job import compare
from tune_jobs.finaljob.recipes import (
    STANDARD_RECIPES,
    Recipe,
    recipes_for,
    sizes_for,
    standard_recipe,
)
from tune_jobs.finaljob.results import ModelResult
from tune_jobs.finaljob.runs import RecipeTrial, Run, select_recipe
from tune_jobs.finaljob.stats import Verdict, difference, estimate, median_index, verdict
from tune_jobs.trial.space import TrainParams


@pytest.mark.parametrize("values", [[0.81, 0.79, 0.80], [0.5, 0.9], [0.71, 0.74, 0.70, 0.77, 0.72]])
def test_the_interval_of_a_mean_is_scipys(values) -> None:
    e = estimate(values)
    ref = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert e.mean == pytest.approx(np.mean(values))
    assert e.std == pytest.approx(np.std(values, ddof=1))
    assert e.ci95 == pytest.approx((ref.low, ref.high))


@pytest.mark.parametrize(("a", "b"), [([0.81, 0.79, 0.80], [0.76, 0.70, 0.78]),
                                      ([0.5, 0.9, 0.7], [0.6, 0.61]),
                                      ([0.80, 0.81, 0.80, 0.82], [0.80, 0.60, 0.95])])
def test_the_interval_of_a_difference_is_welchs(a, b) -> None:
    d = difference(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d.mean == pytest.approx(np.mean(a) - np.mean(b))
    assert d.ci95 == pytest.approx((ref.low, ref.high))


def test_verdicts_are_read_from_the_interval_and_never_from_one_run() -> None:
    assert verdict(difference([0.90, 0.91, 0.92], [0.80, 0.81, 0.82])) == Verdict.BETTER
    assert verdict(difference([0.80, 0.81, 0.82], [0.90, 0.91, 0.92])) == Verdict.WORSE
    # a mean 0.03 higher but inside the noise
    assert verdict(difference([0.83, 0.75, 0.90], [0.80, 0.78, 0.79])) == Verdict.SAME
    one = difference([0.95], [0.50])
    assert one.ci95 is None and verdict(one) == Verdict.UNJUDGED
    assert estimate([0.7]).ci95 is None
    same = estimate([0.7, 0.7, 0.7])
    assert same.ci95 == pytest.approx((0.7, 0.7)) and same.std == pytest.approx(0)
    assert estimate([0.5, 0.5]).ci95 == (0.5, 0.5)  # no spread: the interval is the point
    with pytest.raises(ValueError, match="no values"):
        estimate([])


def test_the_shipped_run_is_the_median() -> None:
    assert median_index([0.7, 0.9, 0.8]) == 2
    assert median_index([0.9, 0.7]) == 1  # even count: the lower middle
    assert median_index([0.5]) == 0


def _run(seed: int, f1: float, trained: bool = True) -> Run:
    check = TrainingCheck(1.8, 0.9 if trained else 1.8, trained)
    return Run(seed, "trainval", f1, f1, {"a": f1}, check, [])


def _model(name: str, f1s: list[float], trained: bool = True, ratio: float = 1.0) -> ModelResult:
    runs = [_run(i, f, trained) for i, f in enumerate(f1s)]
    e = estimate(f1s)
    return ModelResult(name, Recipe.SEARCHED, e, e, {"a": e}, trained, 0, ratio, 1.0, 10, 10,
                       runs, [], 48)


def test_a_flagged_model_is_never_better_or_worse() -> None:
    searched = _model("searched", [0.90, 0.91, 0.92], ratio=0.3)
    good = compare(searched, _model("good", [0.80, 0.81, 0.82], ratio=1.2))
    assert good.verdict == Verdict.BETTER and good.latency_ratio == pytest.approx(0.25)
    diverged = compare(searched, _model("diverged", [0.02, 0.03, 0.02], trained=False))
    assert diverged.verdict == Verdict.UNJUDGED and diverged.f1_difference.ci95[0] > 0
    broken_searched = _model("searched", [0.02, 0.03, 0.02], trained=False)
    assert compare(broken_searched, _model("b", [0.8, 0.81, 0.82])).verdict == Verdict.UNJUDGED


def _trial(recipe: Recipe, val_f1: float, trained: bool = True) -> RecipeTrial:
    return RecipeTrial(recipe, "", {}, val_f1, TrainingCheck(1.8, 0.9 if trained else 1.9,
                                                             trained))


def test_the_recipe_is_the_best_on_validation_among_those_that_trained() -> None:
    searched, standard = Recipe.SEARCHED, Recipe.STANDARD
    assert select_recipe([_trial(searched, 0.6), _trial(standard, 0.7)]).recipe == standard
    assert select_recipe([_trial(searched, 0.6),
                          _trial(standard, 0.7, trained=False)]).recipe == searched
    assert select_recipe([_trial(searched, 0.1, False),
                          _trial(standard, 0.2, False)]).recipe == standard


SEARCHED = TrainParams(image_size=48, batch_size=128, optimizer="adamw", lr=0.08,
                       weight_decay=3e-4, schedule="onecycle", label_smoothing=0.02,
                       augment_magnitude=0.2)


def test_standard_recipes_follow_the_family_and_scale_the_lr_to_the_batch() -> None:
    v3 = standard_recipe("mobilenet_v3_small").apply(SEARCHED)
    assert v3.optimizer == "rmsprop_torchvision" and v3.lr == pytest.approx(0.064 / 8)
    assert v3.schedule == "cosine" and v3.weight_decay == 1e-5
    # the data pipeline stays the searched one: only the optimisation differs
    assert (v3.image_size, v3.batch_size, v3.augment_magnitude) == (48, 128, 0.2)
    shuffle = standard_recipe("tv/shufflenet_v2_x0_5").apply(SEARCHED)
    assert shuffle.optimizer == "sgd" and shuffle.lr == pytest.approx(0.5 / 8)
    assert shuffle.label_smoothing == 0.1
    assert standard_recipe("mobilenet_v2").lr == 0.045
    assert standard_recipe("resnet18") is STANDARD_RECIPES[""]
    from tune_jobs.trial.engine import OPTIMIZERS

    assert all(r.optimizer in OPTIMIZERS for r in STANDARD_RECIPES.values())


def test_a_baseline_is_tried_with_each_recipe_at_each_size() -> None:
    choices = recipes_for("mobilenet_v3_small", SEARCHED, [96, 48, 224])
    # the searched size first, each size once, both recipes at each; only the size differs
    assert [c.label for c in choices] == ["searched-48px", "standard-48px", "searched-96px",
                                          "standard-96px", "searched-224px", "standard-224px"]
    assert choices[2].params == dataclasses.replace(SEARCHED, image_size=96)
    assert choices[3].params == dataclasses.replace(choices[1].params, image_size=96)
    assert [c.label for c in recipes_for("mobilenet_v3_small", SEARCHED)] == [
        "searched-48px", "standard-48px"]


def test_the_searched_net_is_tried_at_each_size_with_its_own_recipe() -> None:
    choices = sizes_for(SEARCHED, [96, 48])
    assert [c.label for c in choices] == ["searched-48px", "searched-96px"]
    assert choices[1].params == dataclasses.replace(SEARCHED, image_size=96)
    assert len(sizes_for(SEARCHED, [])) == 1  # its own size only: nothing to try


def _sized(size: int, val_f1: float, trained: bool = True) -> RecipeTrial:
    return RecipeTrial(Recipe.SEARCHED, "", {"image_size": size}, val_f1,
                       TrainingCheck(1.8, 0.9 if trained else 1.9, trained))


def test_a_size_cap_leaves_out_the_larger_inputs_however_good() -> None:
    at48, at96, at160 = _sized(48, 0.80), _sized(96, 0.84), _sized(160, 0.90)
    assert select_recipe([at48, at96, at160]) is at160
    assert select_recipe([at48, at96, at160], max_size=96) is at96
    assert select_recipe([at48, at96, at160], max_size=48) is at48
    # nothing fits (the budget's net ships below the searched size): the searched size
    assert select_recipe([at48, at96], max_size=32) is at48
    # a diverged trial still loses to one that trained, within the cap
    assert select_recipe([at48, _sized(96, 0.95, False), at160], max_size=96) is at48


def test_baseline_sizes_flag_parses_and_names_a_bad_value(capsys) -> None:
    import argparse

    from tune_jobs.finaljob.options import FinalOptions, add_final_flags

    p = argparse.ArgumentParser()
    add_final_flags(p)
    assert FinalOptions.from_args(p.parse_args(["--baseline-sizes", "96,224"])
                                  ).baseline_sizes == (96, 224)
    assert FinalOptions.from_args(p.parse_args([])).baseline_sizes is None  # the config's
    for bad, why in (("96,big", "comma-separated pixel sizes"), ("4", "8 to 1024 pixels")):
        with pytest.raises(SystemExit):
            p.parse_args(["--baseline-sizes", bad])
        err = capsys.readouterr().err
        assert "--baseline-sizes" in err and why in err


def _spec_yaml(width: float, size: int = 48) -> str:
    return load_preset("baseline").replace(width=width, input_size=size).to_yaml()


def test_top_k_takes_distinct_architectures_and_the_most_accurate_within_budget() -> None:
    study = optuna.create_study(direction="minimize")
    # (score, f1, latency ratio, architecture width, image size)
    rows = [(0.50, 0.80, 0.6, 0.5, 48),   # 0: best score
            (0.52, 0.79, 0.6, 0.5, 32),   # 1: the same net at another image size
            (0.60, 0.90, 1.4, 1.0, 48),   # 2: most accurate, over the latency budget
            (0.58, 0.85, 0.9, 0.75, 48),  # 3: most accurate within it
            (0.55, 0.81, 0.7, 0.25, 48)]  # 4: third by score
    for score, f1, ratio, width, size in rows:
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=score, params={"x": width},
            distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"score": score, "f1": f1, "latency_ratio": ratio,
                        "spec": _spec_yaml(width, size)}))
    budget = ObjectiveConfig(max_latency_ratio=1.0)
    picks = top_k(study, 3, budget)
    assert [t.number for t, _ in picks] == [0, 3, 4]
    assert "latency ratio <= 1" in picks[1][1]
    assert [t.number for t, _ in top_k(study, 5, budget)] == [0, 3, 4, 2]  # 1 repeats 0
    assert [t.number for t, _ in top_k(study, 1, budget)] == [0]
    unbounded = top_k(study, 2, ObjectiveConfig())
    assert [t.number for t, _ in unbounded] == [0, 2]


def test_a_model_result_keeps_the_fields_metrics_json_promises() -> None:
    tree = dataclasses.asdict(_model("searched", [0.8, 0.82, 0.81]))
    for key in ("name", "recipe", "f1", "accuracy", "per_class_f1", "trained", "runs"):
        assert key in tree
    assert set(tree["f1"]) == {"n", "mean", "std", "ci95"} and tree["f1"]["n"] == 3
    assert len(tree["f1"]["ci95"]) == 2 and tree["recipe"] == "searched"


def test_a_duplicate_proposal_is_never_picked_by_either_rule() -> None:
    """`top_k` and `--pareto` pick the most accurate within the latency limit by one rule
    (study/ranking.py), which skips a duplicate proposal's copy of another trial's result."""
    from tune_jobs.finaljob.candidates import choose_trial
    from tune_jobs.finaljob.options import FinalOptions
    from tune_jobs.study.trials import Attr

    study = optuna.create_study(direction="minimize")
    # 2: marked a copy of trial 1, with a higher F1 so that only the rule can skip it
    rows = [(0.50, 0.80, 0.6, 0.5, None), (0.60, 0.84, 0.8, 0.75, None),
            (0.59, 0.86, 0.8, 0.25, 1)]
    for score, f1, ratio, width, copy_of in rows:
        attrs = {"score": score, "f1": f1, "latency_ratio": ratio, "spec": _spec_yaml(width)}
        if copy_of is not None:
            attrs[Attr.DUPLICATE_OF] = copy_of
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=score, params={"x": width},
            distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs))
    picks = top_k(study, 5, ObjectiveConfig(max_latency_ratio=1.0))
    assert [t.number for t, _ in picks] == [0, 1]
    pick, _ = choose_trial(study, FinalOptions(pareto=True, max_latency_ratio=1.0))
    assert pick.number == 1


def test_every_finished_training_logs_one_line_with_the_time_left(caplog) -> None:
    from tune_jobs.finaljob.batch import BatchProgress
    from tune_jobs.finaljob.runs import Job, Net

    searched = [Job("searched", Net("tv/mobilenet_v3_small", 6), SEARCHED, s, "trainval")
                for s in (1, 2, 3)]
    baseline = [dataclasses.replace(job, name="baseline") for job in searched[:2]]
    progress = BatchProgress(6, epochs=10, workers=2)
    progress.submitted(searched + baseline)  # and one training not yet submitted
    progress.started -= 120  # two minutes into the batch
    epochs = [{"epoch": e, "loss": 1.0, "lr": 0.1, "seconds": 30.0} for e in range(1, 11)]
    with caplog.at_level("INFO", logger="tune_jobs.finaljob.batch"):
        # a training finished earlier (resumed): no time of this job, but 5 min of training
        progress.done(searched[0], dataclasses.replace(_run(1, 0.8123), history=epochs))
        # two searched (5 min each), two baselines (no own timing yet: the same) and one
        # not submitted (the same) for two workers: 12.5 min
        first = caplog.messages[-1]
        fast = [{**h, "seconds": 6.0} for h in epochs]  # a baseline: 1 min per training
        progress.done(baseline[0], dataclasses.replace(_run(1, 0.7), history=fast))
        # two searched (10 min), one baseline (1 min) and one not submitted (at the mean
        # epoch of all, 18 s: 3 min) over two workers: 7 min
        second = caplog.messages[-1]
    assert first.startswith("training 1 of 6 done: searched seed 1, macro-F1 0.8123 on test")
    assert "2.0 min spent, about 12.5 min left" in first
    assert second.startswith("training 2 of 6 done: baseline seed 1")
    assert "about 7.0 min left" in second
    # a line of trainings.jsonl from before epochs were recorded says no cost: not "0 min"
    unknown = BatchProgress(2, epochs=10, workers=2)
    unknown.submitted(searched[:2])
    with caplog.at_level("INFO", logger="tune_jobs.finaljob.batch"):
        unknown.done(searched[0], dataclasses.replace(_run(1, 0.8), history=[]))
        assert "an unknown time left" in caplog.messages[-1]
        unknown.done(searched[1], dataclasses.replace(_run(2, 0.8), history=epochs))
        assert "no time left" in caplog.messages[-1]


def test_final_compile_auto_compiles_only_a_training_long_enough_to_pay_back() -> None:
    from tune_jobs.finaljob.runs import COMPILE_MIN_IMAGES, compiles

    assert not compiles("auto", 30, 1_500)  # the built-in demo: eager
    assert compiles("auto", 30, 9_000)  # fmnist-taco6's training split: compiled
    assert compiles("auto", 1, COMPILE_MIN_IMAGES) and not compiles("auto", 1, 199_999)
    assert compiles(True, 1, 10) and not compiles(False, 100, 10**6)


def test_reused_recipes_read_the_other_runs_choice_or_name_its_bad_metrics(tmp_path) -> None:
    """`--reuse-from`: each baseline's recipe as that run chose it (the best validation F1
    among the recipe trials that trained), none before its job ended, and a metrics.json
    that is not a final job's a clear error naming the file."""
    import json

    from tune_jobs.config import ConfigError
    from tune_jobs.finaljob.job import reused_recipes

    assert reused_recipes(None, ["mnv3"]) == {}
    assert reused_recipes(tmp_path, ["mnv3"]) == {}  # its final job has not ended
    params = dataclasses.asdict(SEARCHED)

    def trial(recipe: str, size: int, f1: float, trained: bool = True) -> dict:
        return {"recipe": recipe, "source": f"{recipe} source", "val_f1": f1,
                "params": {**params, "image_size": size},
                "training": {"first_loss": 1.8, "last_loss": 0.9 if trained else 1.8,
                             "trained": trained}}

    (tmp_path / "metrics.json").write_text(json.dumps({"models": [
        {"name": "searched", "recipe_trials": []},
        {"name": "mnv3", "recipe_trials": [trial("searched", 48, 0.80),
                                           trial("standard", 96, 0.90, trained=False),
                                           trial("standard", 48, 0.85)]}]}))
    (choice,) = reused_recipes(tmp_path, ["mnv3", "other"]).values()
    assert (choice.recipe, choice.label) == ("reused", "reused-48px")
    assert choice.params.optimizer == params["optimizer"] and choice.params.image_size == 48
    assert str(tmp_path.parent) in choice.source and "standard-48px" in choice.source
    (tmp_path / "metrics.json").write_text('{"models": [{"name": "mnv3"}]}')
    with pytest.raises(ConfigError, match=r"metrics.json is not a final job's metrics.json"):
        reused_recipes(tmp_path, ["mnv3"])
