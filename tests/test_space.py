import optuna
import pytest

from models import build_model
from models.registry import BLOCKS
from tune_jobs.config import load_config
from tune_jobs.trial.space import (
    OptunaChooser,
    candidate_from_config,
    flat_params,
    optuna_distributions,
    sample,
    tune_domains,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_500_samples_of_the_seed_space_all_build() -> None:
    """The seed projects' seven-slot space (configs/taco.yaml): every draw is a valid net."""
    cfg = load_config("taco.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_blocks = set()
    for _ in range(500):
        trial = study.ask()
        cand = sample(cfg.space, OptunaChooser(trial), num_classes=6)
        model = build_model(cand.spec)  # validates strides, channels, block arguments
        assert cand.spec.total_stride() <= 32
        assert sum(1 for s in cand.spec.stages if s.stride == 2) + 1 <= 5
        assert model.spec.input_size == cand.train.image_size
        seen_blocks |= {s.block for s in cand.spec.stages}
        study.tell(trial, 1.0)
    assert {"conv", "dwsep", "irv2", "irv3"} <= seen_blocks


def test_arguments_are_drawn_only_for_the_chosen_block() -> None:
    cfg = load_config("ci.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(40):
        trial = study.ask()
        cand = sample(cfg.space, OptunaChooser(trial), num_classes=6)
        block = trial.params["s1/type"]
        if BLOCKS[block].skips:
            assert not any(k.startswith("s1/") and k != "s1/type" for k in trial.params)
        elif block == "irv2":
            assert "s1/se" not in trial.params  # irv2 has no squeeze-excite
            assert "s1/expansion" in trial.params
        study.tell(trial, 1.0)
        assert cand.params == {**cand.params, **trial.params}


def test_trainable_rebuilds_the_same_candidate_from_a_nested_config() -> None:
    cfg = load_config("demo.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    trial = study.ask()
    cand = sample(cfg.space, OptunaChooser(trial), num_classes=6)
    nested: dict = {}
    for name, value in trial.params.items():  # what OptunaSearch hands Tune: split on "/"
        *path, leaf = name.split("/")
        node = nested
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = value
    again = candidate_from_config(nested, cfg.space, num_classes=6)
    assert again.spec == cand.spec and again.train == cand.train
    with pytest.raises(KeyError, match="has no value for"):
        candidate_from_config({}, cfg.space, num_classes=6)


def test_flat_views_cover_every_name_sample_asks() -> None:
    cfg = load_config("demo.yaml")
    names = set(flat_params(cfg.space))
    assert set(tune_domains(cfg.space)) == names == set(optuna_distributions(cfg.space))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(30):
        trial = study.ask()
        sample(cfg.space, OptunaChooser(trial), num_classes=6)
        assert set(trial.params) <= names
        study.tell(trial, 1.0)
