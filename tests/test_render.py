"""The renderer draws from the graph alone, emphasises what the decoder keeps, and never crashes."""

from __future__ import annotations

import random
import re

import pytest
import torch

from archgraph import build_space, compile_graph, decode
from archgraph.errors import ArchgraphError
from archgraph.io import atomic_write_with
from archgraph.outputs import render as render_module
from archgraph.outputs.layout import grid_layout, layered_cells
from archgraph.outputs.render import FAINT, graphviz_available, picture, render, to_dot


@pytest.fixture
def scored(tiny_space):
    net = compile_graph(tiny_space)
    with torch.no_grad():
        for v in net.arch.beta.values():
            v.copy_(torch.arange(len(v), dtype=v.dtype))  # the last inputs are the strongest
    return tiny_space, net.arch.scores()


def _pen(source: str, u: str, v: str) -> float:
    m = re.search(rf'"?{u}(?:{FAINT})?"? -> "?{v}"? \[[^\]]*penwidth=([\d.]+)', source)
    assert m, f"edge {u} -> {v} not drawn"
    return float(m.group(1))


def test_supernet_edges_follow_beta_and_kept_edges_are_dark(scored):
    graph, scores = scored
    source = to_dot(graph, scores)
    # L2_s4's inputs in order: stem (4), L1 (4); beta rises with the index: L1_s32 is the strongest.
    assert _pen(source, "L1_s32", "L2_s4") > _pen(source, "stem_s4", "L2_s4")
    derived = decode(graph, scores["ops"], scores["inputs"])
    kept = {(u, v) for u, v in derived.edges if graph.has_edge(u, v)}  # candidate edges, and fixed ones it keeps
    dark = set(re.findall(r'"?(\w+)"? -> "?(\w+)"? \[[^\]]*color="#1f4e9a', source))
    assert dark == kept
    assert len(re.findall(r"^\t\S+ -> \S+ \[", source, re.M)) == graph.number_of_edges()


def test_faint_edges_leave_from_stand_ins_declared_first_so_kept_edges_are_painted_last(scored):
    """Graphviz paints edges in the order of their tail nodes: every faint edge's tail must come first."""
    graph, scores = scored
    source = to_dot(graph, scores)
    declared = [m.group(1) for m in re.finditer(r'^\t"?([^"\s]+)"? \[', source, re.M) if m.group(1) not in ("graph", "node", "edge")]
    stand_ins = [n for n in declared if n.endswith(FAINT)]
    assert stand_ins and declared[: len(stand_ins)] == stand_ins
    faint = re.findall(rf'^\t"?(\w+){FAINT}"? -> "?(\w+)"? \[[^\]]*class=faint', source, re.M)
    kept = re.findall(r'^\t"?(\w+)"? -> "?(\w+)"? \[[^\]]*class=kept', source, re.M)
    assert faint and kept and not set(faint) & set(kept)
    assert len(faint) + len(kept) + len(re.findall(r"class=fixed", source)) == graph.number_of_edges()


def test_axes_and_legend_say_how_to_read_the_picture(scored):
    graph, scores = scored
    source = to_dot(graph, scores)
    for text in ("layer 1", "layer 2", "stem", "head", "scale 1/4", "scale 1/32", "kept by the decoder", "node colour", "most probable op (its probability)"):
        assert text in source, text
    assert "candidate edge (no scores" in to_dot(graph)
    assert "width = the probability the decoder kept it with" in to_dot(decode(graph, scores["ops"], scores["inputs"]))


def _bezier(points, steps=24):
    for i in range(0, len(points) - 3, 3):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points[i : i + 4]
        for k in range(steps + 1):
            t = k / steps
            a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t**3
            yield a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3


@pytest.mark.parametrize("space", ["dcss", "autodeeplab"])
def test_routes_avoid_foreign_nodes_by_construction(space):
    """The layout's promise, checked on its own numbers (tests/test_render_geometry.py checks the SVG)."""
    g = build_space(space, {"layers": 4})
    cells = render_module._grid_cells(g)
    sizes = {n: render_module._box_size(render_module._node_lines(g, n, {})) for n in cells}
    layouts = [grid_layout(cells, sizes, g.edges)]
    body = g.nodes[render_module.first_cell(g)]["body"] if render_module.first_cell(g) else None
    if body is not None:
        layouts.append(grid_layout(layered_cells(body), {n: (90.0, 30.0) for n in body}, body.edges))
    for layout in layouts:
        boxes = layout.boxes
        for (u, v), route in layout.routes.items():
            for x, y in [*_bezier(route.points), route.tip]:
                for n, b in boxes.items():
                    if n not in (u, v):
                        assert not (b.left < x < b.right and b.top < y < b.bottom), f"{u} -> {v} crosses {n} at {x:.1f},{y:.1f}"
    stacked = {}
    for n, b in layouts[0].boxes.items():  # nodes never overlap, not even where several share a grid point
        for m, c in stacked.items():
            assert b.right <= c.left or c.right <= b.left or b.bottom <= c.top or c.bottom <= b.top, (n, m)
        stacked[n] = b


def test_layout_routes_any_grid_around_its_nodes():
    """Backward edges, edges within a column past other nodes, stacked cells, odd sizes: still no crossing."""
    rng = random.Random(7)
    cells = {f"n{i}": (rng.randrange(6), rng.randrange(4)) for i in range(40)}
    sizes = {n: (rng.uniform(30, 110), rng.uniform(18, 50)) for n in cells}
    edges = {(u, v) for u in cells for v in cells if u != v and rng.random() < 0.08}
    layout = grid_layout(cells, sizes, sorted(edges))
    assert set(layout.routes) == edges
    boxes = layout.boxes
    for (u, v), route in layout.routes.items():
        for x, y in [*_bezier(route.points), route.tip]:
            for n, b in boxes.items():
                if n not in (u, v):
                    assert not (b.left < x < b.right and b.top < y < b.bottom), f"{u} -> {v} crosses {n}"
        for end, n in ((route.points[0], u), (route.tip, v)):  # each path starts and ends on its own nodes' borders
            b = boxes[n]
            assert b.left - 1e-6 <= end[0] <= b.right + 1e-6 and b.top - 1e-6 <= end[1] <= b.bottom + 1e-6


def test_nodes_sit_on_the_layer_by_scale_grid(tiny_space):
    source = to_dot(tiny_space)
    pos = {n: tuple(map(float, p.split(","))) for n, p in re.findall(r'(\w+) \[[^\]]*pos="([-\d.,]+)!"', source)}
    assert pos["L1_s4"][0] == pos["L1_s32"][0] < pos["L2_s4"][0]  # same layer, same column
    assert pos["L1_s4"][1] == pos["L2_s4"][1] > pos["L1_s8"][1]  # same scale, same row; finer on top


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
        assert {"svg": lambda: data.lstrip().startswith((b"<?xml", b"<svg", b"<!DOCTYPE")), "png": lambda: data[:4] == b"\x89PNG"}[fmt]()
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


# ------------------------------------------------------------------------------------------------
# The renderer draws what the caller derived; the render command refuses what a search would refuse


def _dark_edges(source: str) -> set[tuple[str, str]]:
    return set(re.findall(r'"?(\w+)"? -> "?(\w+)"? \[[^\]]*color="#1f4e9a', source))


def test_the_architecture_the_caller_derived_is_drawn_not_decoded_again(scored, monkeypatch):
    """Given derived=, its edges are the dark ones (here a random architecture, not the scores' argmax:
    a selector's or P-DARTS's pick differs from plain decoding), and the decoder never runs."""
    from archgraph.core import decode as decode_module
    from archgraph.core.decode import sample_architecture

    graph, scores = scored
    arch = sample_architecture(graph, 3)
    assert {(u, v) for u, v in arch.edges} != {(u, v) for u, v in decode(graph, scores["ops"], scores["inputs"]).edges}

    def no_decoding(*args, **kwargs):
        raise AssertionError("the renderer decoded the scores although the caller passed the architecture")

    monkeypatch.setattr(decode_module, "decode", no_decoding)
    source = to_dot(graph, scores, derived=arch)
    assert _dark_edges(source) == {(u, v) for u, v in arch.edges if graph.has_edge(u, v)}
    with pytest.raises(ArchgraphError, match="derived= is the architecture derived from scores=.*pass both or neither"):
        to_dot(graph, derived=arch)


def test_without_derived_the_scores_are_decoded_once_per_picture(tmp_path, monkeypatch):
    """The fallback for callers holding only scores (report frames, a notebook): one decoding per
    render, shared by the grid and the cell picture of a hierarchical space."""
    from archgraph.core import decode as decode_module
    from archgraph.core.choices import discover_choices

    graph = build_space("autodeeplab", {"layers": 2, "base_channels": 4, "blocks": 2})
    choices = discover_choices(graph)
    scores = {"ops": {c.label: [1.0 / len(c.candidates)] * len(c.candidates) for c in choices.ops}, "inputs": {c.label: [1.0 / len(c.candidates)] * len(c.candidates) for c in choices.inputs}}
    calls = []
    real = decode_module.decode
    monkeypatch.setattr(decode_module, "decode", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    result = render(graph, tmp_path / "adl.dot", scores=scores)
    assert len(calls) == 1 and len(result.extra) == 1
    dark = _dark_edges(result.path.read_text())
    assert dark and dark <= set(real(graph, scores["ops"], scores["inputs"]).edges)  # the decoded path, drawn dark


def test_render_space_refuses_a_mistyped_op_as_search_does(tmp_path, capsys, monkeypatch):
    """A plug-in space whose builder names an op nobody registered is refused by `render --space`,
    naming the op and the closest registered one, not drawn as if it could be searched."""
    from dataclasses import dataclass

    from archgraph.cli import main
    from archgraph.core.graph import NodeSpec, add_edge, add_node, new_graph
    from archgraph.core.registry import SPACES, SpaceInfo, load_plugins

    @dataclass
    class TypoParams:
        width: int = 4

    def build_typo(p: TypoParams):
        g = new_graph("typo", space="typo_space", params={"width": p.width}, num_classes=2)
        add_node(g, "image", NodeSpec("input", 0, 1, 3))
        add_node(g, "a", NodeSpec("stem", 0, 4, p.width, ("conv3x3",)))
        add_node(g, "b", NodeSpec("fusion", 1, 4, p.width, ("sep_conv_3x3", "sep_conv3x3")))  # the typo
        add_node(g, "head", NodeSpec("head", 2, 1, 2, ("head_simple",)))
        add_edge(g, "image", "a"), add_edge(g, "a", "b"), add_edge(g, "b", "head")
        return g

    load_plugins()
    monkeypatch.setitem(SPACES, "typo_space", SpaceInfo("typo_space", build_typo, TypoParams, "a space with a typo", frozenset({"op"})))
    out = tmp_path / "typo.svg"
    assert main(["render", "--space", "typo_space", "-o", str(out)]) == 2
    err = capsys.readouterr().err  # also a warning that the test's space has no entry point
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "node 'b': unknown ops ['sep_conv3x3']; did you mean 'sep_conv_3x3'?" in errors[0]
    assert not out.exists() and not out.with_suffix(".dot").exists()


def test_render_supernet_of_a_run_draws_the_run_s_architecture(scored, tmp_path, capsys):
    """`render RUN --supernet` passes the run's arch.yaml (written with its scores.json) as what was
    derived; a broken arch.yaml falls back to decoding the scores, with a warning."""
    import json

    from archgraph.cli import main
    from archgraph.core.decode import sample_architecture
    from archgraph.core.graph import save

    graph, scores = scored
    run = tmp_path / "run"
    run.mkdir()
    arch = sample_architecture(graph, 3)  # not the scores' argmax: as a selector's pick
    save(graph, run / "supernet.yaml"), save(arch, run / "arch.yaml")
    (run / "scores.json").write_text(json.dumps(scores))
    assert main(["render", str(run), "--supernet", "-o", str(tmp_path / "super.dot")]) == 0
    assert _dark_edges((tmp_path / "super.dot").read_text()) == {(u, v) for u, v in arch.edges if graph.has_edge(u, v)}
    (run / "arch.yaml").write_text("format: nothing\n")
    assert main(["render", str(run), "--supernet", "-o", str(tmp_path / "again.dot")]) == 0
    assert "warning: " in capsys.readouterr().err
    decoded = decode(graph, scores["ops"], scores["inputs"])
    assert _dark_edges((tmp_path / "again.dot").read_text()) == {(u, v) for u, v in decoded.edges if graph.has_edge(u, v)}
