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
