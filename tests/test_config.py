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


NUMBERS = [("4e-5", 4e-5), ("6e-4", 6e-4), ("1E-3", 1e-3), (".5", 0.5), ("5.", 5.0), ("1.0e3", 1000.0),
           ("1_000", 1000.0), ("1_000.5", 1000.5), ("3", 3.0), ("0.05", 0.05)]


@pytest.mark.parametrize("written, value", NUMBERS)
def test_numbers_as_people_write_them(tmp_path, written, value):
    """PyYAML (YAML 1.1) reads 4e-5 and 1.0e3 as strings; every float field takes them as numbers,
    in --set and in a YAML file alike, plug-in sections (strategy.*) included."""
    import yaml

    from archgraph.config import config_from_dict

    f = tmp_path / "c.yaml"
    f.write_text(f"train:\n  weight_decay: {written}\nstrategy:\n  tau_max: {written}\n")
    for cfg in (load_config(None, [f"train.weight_decay={written}", f"strategy.tau_max={written}"]), load_config(f)):
        assert cfg.train.weight_decay == value and type(cfg.train.weight_decay) is float
        assert cfg.strategy["tau_max"] == value
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
