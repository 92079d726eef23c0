"""The graph commands end to end: inspect, render, sample, spaces/strategies/ops, config, --help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from archgraph.cli import build_parser, main
from archgraph.core.graph import load, validate


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_counts_the_papers_connections(capsys):
    dense = run_json(capsys, ["inspect", "--space", "dcss", "--set", "space.layers=14", "--json"])
    assert dense["connections"] == 1680 == 8 * 14 * 15
    assert dense["op_choices"] == dense["input_choices"] == 56
    assert dense["params"] > 0 and dense["nodes"] == 1 + 4 + 56 + 1
    previous = run_json(capsys, ["inspect", "--space", "dcss", "--set", "space.layers=14", "space.connectivity=previous", "--json"])
    assert previous["connections"] == 224 == 16 * 14


def test_inspect_an_architecture_file_gives_params_and_flops_at_a_crop(tmp_path, capsys):
    from archgraph import compile_graph
    from archgraph.core.costs import model_flops

    arch = tmp_path / "run" / "arch.yaml"
    arch.parent.mkdir()
    assert main(["sample", "--set", "space.layers=2", "space.base_channels=4", "--seed", "2", "-o", str(arch)]) == 0
    capsys.readouterr()
    net = compile_graph(load(arch))
    small = run_json(capsys, ["inspect", str(arch), "--crop", "32", "64", "--json"])
    assert small["params"] == sum(p.numel() for p in net.parameters()) and small["flops"] == model_flops(net, (32, 64))
    assert small["crop"] == [32, 64] and small["space"] == "dcss" and "op_choices" not in small
    default = run_json(capsys, ["inspect", str(arch.parent), "--json"])  # a run folder: its arch.yaml, at data.crop (64 x 64)
    assert default["crop"] == [64, 64] and default["flops"] == model_flops(net, (64, 64)) > small["flops"]
    assert main(["inspect", str(arch), "--crop", "128", "128"]) == 0
    table = " ".join(capsys.readouterr().out.split())
    assert "params" in table and "GFLOPs at 128x128" in table
    assert main(["inspect", str(arch), "--space", "dcss"]) == 2
    assert "either FILE or --space" in capsys.readouterr().err


def test_sample_writes_a_valid_architecture_and_is_seeded(tmp_path, capsys):
    a, b, c = (tmp_path / n for n in ("a.yaml", "b.yaml", "c.yaml"))
    for path, seed in ((a, 3), (b, 3), (c, 4)):
        assert main(["sample", "--space", "dcss", "--set", "space.layers=3", "--seed", str(seed), "-o", str(path)]) == 0
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()
    validate(load(a))


@pytest.mark.parametrize("graphviz_on_path", [True, False], ids=["machine-path", "no-graphviz"])
def test_render_supernet_and_derived_from_the_cli(tmp_path, capsys, monkeypatch, graphviz_on_path):
    """SVG where Graphviz is installed; without it (this machine's PATH, or none) the .dot fallback
    and one install hint on stderr."""
    from archgraph.outputs import render as render_module

    monkeypatch.setattr(render_module, "_graphviz_warned", False)
    if not graphviz_on_path:
        monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    arch = tmp_path / "arch.yaml"
    assert main(["sample", "--set", "space.layers=3", "--seed", "1", "-o", str(arch)]) == 0
    assert main(["render", "--space", "dcss", "--set", "space.layers=3", "-o", str(tmp_path / "super.svg")]) == 0
    assert main(["render", str(arch), "-o", str(tmp_path / "arch.svg")]) == 0
    captured = capsys.readouterr()
    if render_module.graphviz_available():
        for name in ("super.svg", "arch.svg"):
            assert "<svg" in (tmp_path / name).read_text()
        drawn = (tmp_path / "arch.svg").read_text()
        assert captured.err == ""
    else:
        for name in ("super", "arch"):
            assert not (tmp_path / f"{name}.svg").exists() and "digraph" in (tmp_path / f"{name}.dot").read_text()
            assert str(tmp_path / f"{name}.dot") in captured.out.replace("\n", "")  # says what it wrote
        drawn = (tmp_path / "arch.dot").read_text()
        assert captured.err.count("warning:") == 1 and "apt-get install graphviz" in captured.err
    assert "mbconv" in drawn or "k3" in drawn


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["inspect", "--set", "space.layer=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "space.layers" in err and "Traceback" not in err
    assert main(["render", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "x.svg")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["inspect", "--space", "nope"]) == 2
    assert "unknown space" in capsys.readouterr().err


def test_listing_commands(capsys):
    for cmd, expected in (("spaces", "dcss"), ("strategies", "dcnas"), ("ops", "mbconv_k7_r6")):
        assert main([cmd]) == 0
        assert expected in capsys.readouterr().out


def test_config_prints_resolved_yaml(capsys):
    import yaml

    assert main(["config", "--set", "space.layers=6"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["space"]["layers"] == 6 and cfg["strategy"]["name"] == "dcnas"


def test_every_command_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"spaces", "strategies", "ops", "inspect", "render", "sample", "config", "search", "report"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert "usage:" in text and len(text) > 80, name


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "archgraph.cli", "--help"], capture_output=True, text=True, check=True)
    assert "search" in out.stdout
