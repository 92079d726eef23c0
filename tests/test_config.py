"""Config: defaults, YAML, --set overrides, clear errors; docs list every key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from archgraph.config import DataConfig, SearchConfig, TrainConfig, load_config, parse_overrides
from archgraph.errors import ConfigError
from archgraph.core.registry import list_spaces, list_strategies

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_defaults_need_no_file():
    cfg = load_config()
    assert cfg.space_name == "dcss" and cfg.strategy_name == "dcnas" and cfg.data.name == "synthetic"
    assert cfg.space["layers"] == 4  # filled in from the space's parameter dataclass


def test_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("space: {layers: 3}\ndata: {crop: [32, 48], batch_size: 2}\nseed: 5\n")
    cfg = load_config(f, ["space.layers=6", "data.crop=[96,128]", "search.deterministic=false"])
    assert cfg.space["layers"] == 6 and cfg.data.crop == (96, 128) and cfg.data.batch_size == 2
    assert cfg.seed == 5 and cfg.search.deterministic is False


def test_parse_overrides_nested_yaml_values():
    assert parse_overrides(["a.b=1", "a.c=[1,2]", "d=x y"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "x y"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("space.layer=3", "did you mean 'space.layers'"),
        ("data.bach_size=3", "did you mean 'data.batch_size'"),
        ("serch.epochs=3", "did you mean 'search'"),
        ("strategy.tau_mx=2", "did you mean 'strategy.tau_max'"),
        ("data.batch_size=many", "data.batch_size: expected an integer"),
        ("data.crop=64", "data.crop: expected a list"),
        ("data.crop=[1,2,3]", "expected 2 values"),
        ("search.deterministic=maybe", "expected true or false"),
        ("strategy.name=dcnass", "did you mean 'dcnas'"),
        ("space.name=dccs", "did you mean 'dcss'"),
        ("noequals", "expected section.key=value"),
        ("space.layers=0", "space.layers: 0 is out of range; allowed: >= 1"),
        ("strategy.channel_ratio=1.5", "strategy.channel_ratio: 1.5 is out of range; allowed: (0, 1]"),
        ("space.keep_inputs=5", "space.keep_inputs: 5 is out of range; allowed: [1, 4]"),
        ("search.split_ratio=1", "allowed: (0, 1)"),
        ("data.crop=[0,64]", "data.crop: 0 is out of range"),
        ("search.on_nonfinite=skp", "did you mean 'skip'"),
        ("space.connectivity=dens", "did you mean 'dense'"),
    ],
)
def test_bad_overrides_name_the_key_and_the_fix(override, message):
    with pytest.raises(Exception) as info:
        load_config(None, [override])
    assert message in str(info.value)
    from archgraph.errors import ArchgraphError

    assert isinstance(info.value, ArchgraphError)


NUMBERS = [("4e-5", 4e-5), ("6e-4", 6e-4), ("1E-3", 1e-3), (".5", 0.5), ("5.", 5.0), ("1.0e3", 1000.0), ("1_000", 1000.0), ("1_000.5", 1000.5), ("3", 3.0), ("0.05", 0.05)]


@pytest.mark.parametrize("written, value", NUMBERS)
def test_numbers_as_people_write_them(tmp_path, written, value):
    """PyYAML (YAML 1.1) reads 4e-5 and 1.0e3 as strings; every float field takes them as numbers,
    in --set and in a YAML file alike, plug-in sections (strategy.*) included."""
    import yaml

    from archgraph.config import config_from_dict

    f = tmp_path / "c.yaml"  # tau_min = tau_max: DCNAS needs tau_min <= tau_max, checked as the section is read
    f.write_text(f"train:\n  weight_decay: {written}\nstrategy:\n  tau_max: {written}\n  tau_min: {written}\n")
    for cfg in (load_config(None, [f"train.weight_decay={written}", f"strategy.tau_max={written}", f"strategy.tau_min={written}"]), load_config(f)):
        assert cfg.train.weight_decay == value and type(cfg.train.weight_decay) is float
        assert cfg.strategy["tau_max"] == value == cfg.strategy["tau_min"]
        assert config_from_dict(yaml.safe_load(cfg.to_yaml())).to_dict() == cfg.to_dict()  # a saved config reads back


def test_signed_exponents_and_lists_of_numbers():
    from archgraph.configtools import parse_float

    assert load_config(None, ["search.arch_betas=[5e-1,9.99E-1]"]).search.arch_betas == (0.5, 0.999)
    with pytest.raises(ConfigError, match=r"train.weight_decay: -20.0 is out of range"):  # a number, refused by its range
        load_config(None, ["train.weight_decay=-2e+1"])
    assert parse_float("-2e+1") == -20.0 and parse_float("+.5e2") == 50.0 and parse_float(" 2e-3 ") == 0.002


@pytest.mark.parametrize("written", ["abc", "1e", "e5", "_1", "0x1p3", "inf", "nan", ".inf", "true", "[1]"])
def test_what_is_not_a_number_is_still_refused(written):
    with pytest.raises(ConfigError, match="train.weight_decay: expected a"):
        load_config(None, [f"train.weight_decay={written}"])


def test_cli_takes_scientific_notation(capsys, tmp_path):
    import yaml

    from archgraph.cli import main

    assert main(["config", "--set", "train.weight_decay=4e-5", "search.w_lr=6e-4"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["train"]["weight_decay"] == 4e-5 and cfg["search"]["w_lr"] == 6e-4


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
    run = tmp_path / "run"  # a run folder given where its config belongs: the message names the file inside
    run.mkdir()
    (run / "config.yaml").write_text("seed: 3\n")
    with pytest.raises(ConfigError, match=f"is a folder; pass {run / 'config.yaml'}"):
        load_config(run)


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["space.layers=5", "data.crop=[32,32]"])
    f = tmp_path / "saved.yaml"
    f.write_text(cfg.to_yaml())
    assert load_config(f).to_dict() == cfg.to_dict()


def test_docs_document_every_key():
    text = (DOCS / "configuration.md").read_text()
    for section, cls in (("data", DataConfig), ("search", SearchConfig), ("train", TrainConfig)):
        for f in dataclasses.fields(cls):
            assert f"`{section}.{f.name}`" in text, f"{section}.{f.name} is not documented"
    for info in list_spaces():
        if info.name == "dcss":
            for f in dataclasses.fields(info.params):
                assert f"`space.{f.name}`" in text
    strategies_doc = (DOCS / "strategies.md").read_text()
    for info in list_strategies():
        for f in dataclasses.fields(info.params):
            assert f"`strategy.{f.name}`" in strategies_doc or f"`{f.name}`" in strategies_doc, f"{info.name}: strategy.{f.name} undocumented"


# ------------------------------------------------------------------------------------------------
# Space and strategy parameters: declared once on the fields, checked once, however they are built


@pytest.mark.parametrize(
    "space, key, value, message",
    [
        ("dcss", "layers", 0, "space.layers: 0 is out of range; allowed: >= 1"),
        ("dcss", "base_channels", 0, "space.base_channels: 0 is out of range; allowed: >= 1"),
        ("dcss", "connectivity", "densse", "space.connectivity: 'densse' is not allowed; did you mean 'dense'? (choose one of: dense, previous)"),
        ("dcss", "head", "asp", "space.head: 'asp' is not allowed; did you mean 'aspp'? (choose one of: simple, aspp)"),
        ("dcss", "ops", [], "space.ops: [] lists no op; allowed: a list of at least one op (see `archgraph ops`)"),
        ("dcss", "ops", ["mbconv_k3_r3", "mbconv_k5r6"], "space.ops: unknown op 'mbconv_k5r6'; did you mean 'mbconv_k5_r6'? (see `archgraph ops`)"),
        ("autodeeplab", "blocks", 0, "space.blocks: 0 is out of range; allowed: >= 1"),
        ("autodeeplab", "keep_inputs", 0, "space.keep_inputs: 0 is out of range; allowed: >= 1"),
        ("autodeeplab", "connectivity", "trelis", "space.connectivity: 'trelis' is not allowed; did you mean 'trellis'? (choose one of: trellis, dense)"),
        ("autodeeplab", "head", "simple", "space.head: 'simple' is not allowed (choose one of: aspp_sum96)"),
        ("autodeeplab", "ops", ["none"], "space.ops: [none] lists no op other than 'none'; allowed: a list of at least one op other than 'none' (see `archgraph ops`)"),
        ("unet", "levels", 6, "space.levels: 6 is out of range; allowed: [2, 5]"),
        ("unet", "upsample", "bilnear", "space.upsample: unknown up-sampling mode 'bilnear'; did you mean 'bilinear'? (registered: bilinear, nearest, "),
        ("unet", "keep_skips", 3, "space.keep_skips=3 but a decoder node has only 2 candidate skips at levels=3; use at most 2"),
    ],
)
def test_space_parameters_are_checked_from_their_declarations(space, key, value, message):
    """Each bound and choice is declared on the parameter's field and checked there, with the same
    one-line message from a config, from build_space and from the dataclass built in Python."""
    from archgraph.configtools import yaml_text
    from archgraph.core.registry import get_space
    from archgraph.core.spaces_api import build_space

    with pytest.raises(ConfigError) as from_config:
        load_config(None, [f"space.name={space}", f"space.{key}={yaml_text(value)}"])
    with pytest.raises(ConfigError) as from_builder:
        build_space(space, {key: value})
    with pytest.raises(ConfigError) as in_python:
        get_space(space).params(**{key: value})
    assert message in str(from_config.value) and str(from_config.value) == str(from_builder.value) == str(in_python.value)
    assert "\n" not in str(in_python.value)


def test_a_checked_dataclass_checks_each_field_once(monkeypatch):
    """dataclass_from_dict leaves a CheckedParams's declared fields to the dataclass itself: one check
    per field, the defaults included; other dataclasses are checked key by key, as before."""
    import archgraph.configtools as configtools
    from archgraph.config import DataConfig
    from archgraph.spaces.dcss import DCSSParams

    seen: list[str] = []
    real = configtools.check_metadata
    monkeypatch.setattr(configtools, "check_metadata", lambda f, v, path: (seen.append(path), real(f, v, path))[1])
    configtools.dataclass_from_dict(DCSSParams, {"layers": 3, "ops": ["mbconv_k3_r3"]}, "space")
    declared = [f"space.{f.name}" for f in dataclasses.fields(DCSSParams) if f.metadata]
    assert sorted(seen) == sorted(declared) and "space.ops" in seen
    seen.clear()
    configtools.dataclass_from_dict(DataConfig, {"batch_size": 3}, "data")
    assert seen == ["data.batch_size"]
