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
    for text in ("layer 1", "layer 2", "stem", "head", "scale 1/4", "scale 1/32", "kept by the decoder", "node colour",
                 "most probable op (its probability)"):
        assert text in source, text
    assert "candidate edge (no scores" in to_dot(graph)
    assert "width = the probability the decoder kept it with" in to_dot(decode(graph, scores["ops"], scores["inputs"]))


def _bezier(points, steps=24):
    for i in range(0, len(points) - 3, 3):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points[i:i + 4]
        for k in range(steps + 1):
            t = k / steps
            a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t ** 3
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
