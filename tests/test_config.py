"""Configs round-trip losslessly and broken ones fail with an error that names the field."""

import json

import pytest

from hybridnas.models import ConfigError, build, dump_config, load_config, parse_config
from hybridnas.models.presets import PRESETS, preset


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_round_trips_losslessly(tmp_path, name, suffix):
    cfg = preset(name)
    path = tmp_path / f"cfg{suffix}"
    dump_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert set(build(again).state_dict()) == set(build(cfg).state_dict())


def test_json_file_is_plain_json(tmp_path):
    path = tmp_path / "z.json"
    dump_config(preset("zureick"), path)
    assert json.loads(path.read_text())["stages"][1]["channels"] == 256


def _minimal(**stage):
    return {"stages": [{"block": "conv", "channels": 64, **stage}]}


BROKEN = [
    (_minimal(attention={"kind": "mhsa", "heads": 5}), "stages.0.attention.heads"),
    ({"input": {"image_size": 8}, "stages": [{"block": "conv", "channels": 8, "pool": {"kind": "max", "size": 4}},
                                              {"block": "conv", "channels": 8, "pool": {"kind": "max", "size": 4}}]},
     "stages.1.pool"),
    ({"stages": [{"block": "conv", "channels": 8}, {"block": "conv", "channels": 8}], "aux": [{"after_stage": 1}]},
     "aux.0.after_stage"),
    (_minimal(channels="wide"), "stages.0.channels"),
    (_minimal(block="transformer"), "stages.0.block"),
    (_minimal(widht=3), "stages.0.widht"),
    ({"stages": []}, "stages"),
    ({}, "stages"),
    (_minimal(kernel_sizes=[4]), "stages.0.kernel_sizes"),
    ({"stages": [{"block": "multiscale", "channels": 64, "kernel_sizes": [3, 5, 7]}]}, "stages.0.channels"),
    (_minimal(se_reduction=4), "stages.0.se_reduction"),
    ({"stages": [{"block": "conv", "channels": 8}], "head": {"kind": "cls"}}, "head.kind"),
    ({"stages": [{"block": "conv", "channels": 8}, {"block": "residual", "channels": 16}]}, "stages.1.channels"),
    (_minimal(channels=10**9), "stages.0.channels"),
    ({"input": {"num_classes": 1}, "stages": [{"block": "conv", "channels": 8}]}, "input.num_classes"),
    (_minimal(dropout=1.5), "stages.0.dropout"),
]


@pytest.mark.parametrize(("data", "field"), BROKEN, ids=[f for _, f in BROKEN])
def test_broken_config_names_the_field(data, field):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_aliases_are_refused(tmp_path):
    bomb = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n'
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        load_config(path)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"stages: \xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_build_is_deterministic_in_structure():
    cfg = preset("samc")
    a, b = build(cfg), build(cfg)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
