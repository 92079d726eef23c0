"""The renderer draws from the graph alone, emphasises what the decoder keeps, and never crashes."""

from __future__ import annotations

import re

import pytest
import torch

from archgraph import build_space, compile_graph, decode
from archgraph.errors import ArchgraphError
from archgraph.io import atomic_write_with
from archgraph.outputs import render as render_module
from archgraph.outputs.render import graphviz_available, picture, render, to_dot


@pytest.fixture
def scored(tiny_space):
    net = compile_graph(tiny_space)
    with torch.no_grad():
        for v in net.arch.beta.values():
            v.copy_(torch.arange(len(v), dtype=v.dtype))  # the last inputs are the strongest
    return tiny_space, net.arch.scores()


def _pen(source: str, u: str, v: str) -> float:
    m = re.search(rf'"?{u}"? -> "?{v}"? \[[^\]]*penwidth=([\d.]+)', source)
    assert m, f"edge {u} -> {v} not drawn"
    return float(m.group(1))


def test_supernet_edges_follow_beta_and_kept_edges_are_dark(scored):
    graph, scores = scored
    source = to_dot(graph, scores)
    # L2_s4's inputs in order: stem (4), L1 (4); beta rises with the index: L1_s32 is the strongest.
    assert _pen(source, "L1_s32", "L2_s4") > _pen(source, "stem_s4", "L2_s4")
    derived = decode(graph, scores["ops"], scores["inputs"])
    kept = {(u, v) for u, v in derived.edges if graph.edges[u, v].get("kind") == "candidate"}
    dark = set(re.findall(r'"?(\w+)"? -> "?(\w+)"? \[[^\]]*color="#1f4e9a', source))
    assert dark == kept
    assert len(re.findall(r"^\t\S+ -> \S+ \[", source, re.M)) == graph.number_of_edges()


def test_nodes_sit_on_the_layer_by_scale_grid(tiny_space):
    source = to_dot(tiny_space)
    pos = {n: tuple(map(float, p.split(","))) for n, p in re.findall(r'(\w+) \[[^\]]*pos="([-\d.,]+)!"', source)}
    assert pos["L1_s4"][0] == pos["L1_s32"][0] < pos["L2_s4"][0]  # same layer, same column
    assert pos["L1_s4"][1] == pos["L2_s4"][1] > pos["L1_s8"][1]  # same scale, same row; finer on top


@pytest.fixture
def no_graphviz(tmp_path, monkeypatch):
    """A PATH without Graphviz's programs (as on a fresh machine), and a process that has not warned yet."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(render_module, "_graphviz_warned", False)
    assert not graphviz_available()


def test_missing_graphviz_writes_the_dot_file_and_says_how_to_install(tiny_space, tmp_path, no_graphviz, capsys):
    result = render(tiny_space, tmp_path / "space.svg")
    assert result.path == tmp_path / "space.dot" and result.path.is_file() and not result.drawn
    assert "digraph" in result.path.read_text()
    assert not (tmp_path / "space.svg").exists()
    for name in ("b.svg", "c.png", "d.pdf"):  # more pictures: the warning is not repeated
        assert render(tiny_space, tmp_path / name).path.suffix == ".dot"
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "apt-get install graphviz" in err and "Graphviz is not installed" in err
    assert picture(tiny_space) is None  # in memory too, and still no second warning
    assert capsys.readouterr().err == ""


def _check_format(path, fmt: str) -> None:
    """``path`` holds a picture in ``fmt`` where Graphviz is installed, else it is the DOT fallback."""
    if graphviz_available():
        data = path.read_bytes()
        assert path.suffix == "." + fmt
        assert {"svg": lambda: data.lstrip().startswith((b"<?xml", b"<svg", b"<!DOCTYPE")),
                "png": lambda: data[:4] == b"\x89PNG"}[fmt]()
    else:
        assert path.suffix == ".dot" and "digraph" in path.read_text()


@pytest.mark.parametrize("graphviz_on_path", [True, False], ids=["machine-path", "no-graphviz"])
def test_formats(tiny_space, tmp_path, request, graphviz_on_path):
    if not graphviz_on_path:
        request.getfixturevalue("no_graphviz")
    _check_format(render(tiny_space, tmp_path / "s.svg").path, "svg")
    _check_format(render(tiny_space, tmp_path / "s.png").path, "png")
    assert "digraph" in render(tiny_space, tmp_path / "s.dot").path.read_text()
    with pytest.raises(ArchgraphError, match="unknown picture format"):
        render(tiny_space, tmp_path / "s.gif")


def test_an_interrupted_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "arch.yaml"
    target.write_text("old")

    def half_write(path):
        path.write_text("new but incompl")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_with(target, half_write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["arch.yaml"]


def test_deep_supernet_renders(tmp_path):
    g = build_space("dcss", {"layers": 10, "base_channels": 4})
    assert render(g, tmp_path / "deep.svg").path.stat().st_size > 10_000
