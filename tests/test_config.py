from pathlib import Path

import pytest

from tune_jobs.config import CONFIG_DIR, ConfigError, load_config


@pytest.mark.parametrize("name", ["demo", "ci", "taco"])
def test_presets_load(name: str) -> None:
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg.search.num_samples >= 1 and cfg.space.slots


def test_default_is_demo() -> None:
    assert load_config().search.study == "demo"


def test_overrides_keep_their_types() -> None:
    cfg = load_config("ci.yaml", ["search.num_samples=3", "scheduler.early_stopping=false",
                                  "space.train.image_size=[16, 24]", "search.storage=sqlite:///x"])
    assert cfg.search.num_samples == 3 and cfg.scheduler.early_stopping is False
    assert cfg.space.train.image_size == [16, 24]
    assert cfg.search.storage == "sqlite:///x"


@pytest.mark.parametrize(
    "override,match",
    [
        ("search.numsamples=3", r"ci.yaml.*search.numsamples: unknown key"),
        ("search.num_samples=many", r"search.num_samples: Input should be a valid integer"),
        ("search.num_samples=0", r"search.num_samples: Input should be greater than or equal"),
        ("scheduler.grace_period=50", r"grace_period \(50\) exceeds max_epochs"),
        ("space.train.lr={low: 0.1, high: 0.01}", r"low \(0.1\) is above high"),
        ("space.train.lr={low: 0, high: 1, log: true}", r"a log range needs low > 0"),
        ("search.algorithm=bayes", r"search.algorithm: Input should be 'tpe'"),
        ("objective.latency=tflite", r"objective.latency: Input should be 'torch'"),
    ],
)
def test_bad_values_name_the_key_and_file(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match="(?s)" + match):
        load_config("ci.yaml", [override])


def test_bad_override_syntax_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config("ci.yaml", ["search.num_samples"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    empty_slot = tmp_path / "slot.yaml"
    empty_slot.write_text("space:\n  slots:\n    - {blocks: []}\n")
    with pytest.raises(ConfigError, match=r"space.slots.0.*blocks lists no choices"):
        load_config(empty_slot)


def test_tpe_options_reach_the_sampler() -> None:
    from tune_jobs.config import ConfigError
    from tune_jobs.searchjob import _tpe

    with pytest.raises(ConfigError, match="group needs multivariate"):
        load_config("ci.yaml", ["search.tpe.multivariate=false", "search.tpe.group=true"])
    cfg = load_config("ci.yaml", ["search.tpe.group=true", "search.tpe.n_startup_trials=5"])
    sampler = _tpe(cfg)
    assert (sampler._multivariate, sampler._group, sampler._constant_liar,
            sampler._n_startup_trials) == (True, True, True, 5)
    # the old independent sampler stays selectable (the replay's comparison arm)
    sampler = _tpe(load_config("ci.yaml", ["search.tpe.multivariate=false",
                                           "search.tpe.constant_liar=false"]))
    assert (sampler._multivariate, sampler._constant_liar) == (False, False)


def test_an_operating_point_is_picked_by_name_and_the_users_overrides_win() -> None:
    from tune_jobs.search import get_args_parser, overrides_from

    def cfg(*argv: str):
        return load_config(None, overrides_from(get_args_parser().parse_args(list(argv))))

    accurate = cfg("--point", "accurate")
    assert accurate.objective.kind == "f1"
    assert accurate.objective.max_latency_of == "mobilenet_v3_small"
    assert accurate.objective.latency == "ort"  # its budget timed where the net ships
    assert cfg("--point", "fast").objective.kind == "score" == cfg().objective.kind
    mine = cfg("--point", "accurate", "--set", "objective.max_latency_of=shufflenet_v2_x0_5")
    assert mine.objective.max_latency_of == "shufflenet_v2_x0_5"
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--point", "fastest"])
