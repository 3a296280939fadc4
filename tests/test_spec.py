import pytest
import torch

from models import ModelSpec, SpecError, StageSpec, build_model, list_presets, load_preset
from models.cost import count_params


def _from(data_changes: dict, stage_changes: dict | None = None) -> ModelSpec:
    data = load_preset("baseline").to_dict()
    data.update(data_changes)
    if stage_changes is not None:
        data["stages"][1].update(stage_changes)
    return ModelSpec.from_dict(data, source="test.yaml")


@pytest.mark.parametrize("name", list_presets())
def test_preset_round_trips_exactly_and_runs(name: str, tmp_path) -> None:
    spec = load_preset(name)
    text = spec.to_yaml()
    assert ModelSpec.from_yaml(text) == spec
    assert ModelSpec.from_yaml(text).to_yaml() == text  # canonical text is a fixed point
    path = tmp_path / "spec.yaml"
    spec.to_yaml(path)
    assert ModelSpec.from_yaml(path) == spec
    model = build_model(spec).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, spec.input_size, spec.input_size))
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()


def test_unset_block_args_stay_unset_through_yaml() -> None:
    spec = ModelSpec(stages=[StageSpec(block="irv2", out_channels=24, stride=2)])
    assert "expansion" not in spec.to_yaml()
    assert ModelSpec.from_yaml(spec.to_yaml()) == spec


@pytest.mark.parametrize(
    "changes,stage_changes,match",
    [
        ({}, {"out_channels": -8}, r"test.yaml: stages\[1\].out_channels must be > 0, got -8"),
        ({}, {"block": "resnet"}, r"stages\[1\].block is 'resnet', not a known block.*irv2"),
        ({}, {"stride": 3}, r"stages\[1\].stride must be 1 or 2"),
        ({}, {"kernel": 4}, r"stages\[1\].kernel must be one of"),
        ({}, {"act": "swishy"}, r"stages\[1\].act is 'swishy', not a known activation"),
        ({}, {"repeats": 0}, r"stages\[1\].repeats must be >= 1"),
        ({}, {"repeats": "two"}, r"stages\[1\].repeats must be int, got 'two'"),
        ({}, {"se": 1}, r"stages\[1\].se must be bool, got 1"),
        ({}, {"colour": "red"}, r"stages\[1\].colour is not a known field"),
        ({"width": 0}, None, r"width must be in \(0, 4\]"),
        ({"input_size": 4}, None, r"input_size must be >= 8"),
        ({"num_classes": 1}, None, r"num_classes must be >= 2"),
        ({"head": {"dropout": 1.5}}, None, r"head.dropout must be in \[0, 1\)"),
        ({"stem": {"channels": 0}}, None, r"stem.channels must be > 0"),
        ({"depht": 1.0}, None, r"depht is not a known field"),
    ],
)
def test_validation_names_the_field(changes, stage_changes, match) -> None:
    with pytest.raises(SpecError, match=match):
        _from(changes, stage_changes)


def test_block_argument_the_block_does_not_take_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"stages\[0\].expansion is set, but block 'conv' takes "
                                        r"no 'expansion' \(it takes: kernel, act\)"):
        ModelSpec(stages=[StageSpec(block="conv", out_channels=16, expansion=4.0)])


def test_stride_budget_exceeded() -> None:
    stages = [StageSpec(block="conv", out_channels=16, stride=2) for _ in range(5)]
    with pytest.raises(SpecError, match=r"downsample by 64x in all, over the budget of 32x"):
        ModelSpec(stages=stages, input_size=224)


def test_feature_map_must_not_vanish() -> None:
    stages = [StageSpec(block="conv", out_channels=16, stride=2) for _ in range(3)]
    with pytest.raises(SpecError, match=r"input_size is 8, smaller than the total stride 16"):
        ModelSpec(stages=stages, input_size=8)


def test_pass_stages_do_not_count_toward_the_stride_budget() -> None:
    stages = [StageSpec(block="conv", out_channels=16, stride=2) for _ in range(4)]
    stages.append(StageSpec(block="pass", out_channels=999, stride=2))
    spec = ModelSpec(stages=stages)
    assert spec.total_stride() == 32
    with_pass = build_model(spec)
    without = build_model(spec.replace(stages=stages[:4]))
    assert count_params(with_pass) == count_params(without)


def test_missing_file_and_bad_yaml_name_the_source(tmp_path) -> None:
    with pytest.raises(SpecError, match="no such spec file"):
        ModelSpec.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed")
    with pytest.raises(SpecError, match=f"{bad}: not valid YAML"):
        ModelSpec.from_yaml(bad)
    bad.write_text("name: x\n")
    with pytest.raises(SpecError, match=f"{bad}: stages is required"):
        ModelSpec.from_yaml(bad)


def test_width_and_depth_multipliers_scale_channels_and_repeats() -> None:
    spec = load_preset("mobilenet_v3_small")
    half = spec.replace(width=0.5, depth=0.5)
    assert all(c % 8 == 0 for c in (half.channels(s.out_channels) for s in half.stages))
    assert half.repeats(3) == 2 and half.repeats(1) == 1
    small, big = build_model(half), build_model(spec)
    assert count_params(small) < count_params(big)
    assert len(small.blocks) < len(big.blocks)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown model preset 'nope'.*baseline"):
        load_preset("nope")
