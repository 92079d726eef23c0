"""The pictures checked on the geometry Graphviz actually drew: no edge crosses a node it does not touch,
kept edges are painted over the faint ones, no two nodes overlap and no title covers a node.

The SVG is parsed as a browser would paint it: node boxes from each ``<g class="node">`` (its
polygons, ellipses and paths; the text of plain-text nodes), edge paths from each ``<g class="edge">``
(the cubic Bézier ``d`` of its path, sampled every half point, plus the arrowhead's polygon).
"""

from __future__ import annotations

import math
import random
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import pytest

from archgraph.core.choices import discover_choices
from archgraph.core.decode import sample_architecture
from archgraph.core.spaces_api import build_space
from archgraph.outputs.render import FAINT, graphviz_available, picture, render

pytestmark = pytest.mark.skipif(
    not graphviz_available(), reason="Graphviz's `dot`/`neato` are not installed: the geometry only exists in an SVG Graphviz draws (the DOT fallback is tested in test_render.py)"
)

SVG = "{http://www.w3.org/2000/svg}"
TOLERANCE = 1.5  # points a path may come inside a foreign box's border (anti-aliasing, rounding of the SVG's numbers)


@dataclass
class Drawing:
    nodes: dict[str, tuple[float, float, float, float]]  # name -> (x0, y0, x1, y1), SVG coordinates
    edges: list[tuple[str, str, str, np.ndarray]]  # (tail, head, class, sampled points) in paint order
    titles: list[tuple[float, float, float, float]]  # boxes of the texts outside any node (title, cluster labels)


def _numbers(text: str) -> list[float]:
    return [float(t) for t in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def _text_box(t: ET.Element) -> tuple[float, float, float, float]:
    """A generous box around a ``<text>``: 0.62 em per character, from the ascender to the descender."""
    size = float(t.get("font-size", "14"))
    width = 0.62 * size * len(t.text or "")
    x, y = float(t.get("x")), float(t.get("y"))
    x0 = {"start": x, "middle": x - width / 2, "end": x - width}[t.get("text-anchor", "start")]
    return (x0, y - 0.8 * size, x0 + width, y + 0.25 * size)


def _bezier_points(d: str) -> np.ndarray:
    """Graphviz writes ``M x,y C x,y x,y x,y ...``: sample every cubic piece at most half a point apart."""
    xs = _numbers(d)
    pts = np.array(xs, dtype=float).reshape(-1, 2)
    out = [pts[:1]]
    for i in range(1, len(pts) - 2, 3):
        p0, p1, p2, p3 = pts[i - 1], pts[i], pts[i + 1], pts[i + 2]
        length = np.linalg.norm(p1 - p0) + np.linalg.norm(p2 - p1) + np.linalg.norm(p3 - p2)
        t = np.linspace(0.0, 1.0, max(2, int(math.ceil(length / 0.5)) + 1))[:, None]
        out.append((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3)
    return np.concatenate(out)


def _polygon_points(points: str) -> np.ndarray:
    pts = np.array(_numbers(points), dtype=float).reshape(-1, 2)
    closed = np.vstack([pts, pts[:1]])
    segments = [np.linspace(a, b, max(2, int(np.linalg.norm(b - a) / 0.5) + 1)) for a, b in zip(closed[:-1], closed[1:])]
    return np.concatenate(segments)


def parse(svg: bytes) -> Drawing:
    root = ET.fromstring(svg)
    graph = next(g for g in root.iter(SVG + "g") if g.get("class") == "graph")
    nodes, edges = {}, []
    for g in graph.iter(SVG + "g"):
        cls = (g.get("class") or "").split()
        if not cls or cls[0] not in ("node", "edge"):
            continue
        title = g.find(SVG + "title").text
        if cls[0] == "node":
            xs, ys = [], []
            for el in g.iter():
                tag = el.tag.replace(SVG, "")
                if tag == "polygon" or tag == "polyline":
                    pts = _numbers(el.get("points"))
                elif tag == "path":
                    pts = _numbers(el.get("d"))
                elif tag == "ellipse":
                    cx, cy, rx, ry = (float(el.get(k)) for k in ("cx", "cy", "rx", "ry"))
                    pts = [cx - rx, cy - ry, cx + rx, cy + ry]
                else:
                    continue
                xs += pts[0::2]
                ys += pts[1::2]
            if not xs:  # plain text: its letters are the box
                boxes = [_text_box(t) for t in g.iter(SVG + "text")]
                xs, ys = [b[0] for b in boxes] + [b[2] for b in boxes], [b[1] for b in boxes] + [b[3] for b in boxes]
            nodes[title] = (min(xs), min(ys), max(xs), max(ys))
        else:
            tail, head = title.split("->")
            points = [_bezier_points(p.get("d")) for p in g.iter(SVG + "path")]
            points += [_polygon_points(p.get("points")) for p in g.iter(SVG + "polygon")]  # arrowheads
            edges.append((tail.removesuffix(FAINT), head, cls[1] if len(cls) > 1 else "", np.concatenate(points)))
    clusters = [g for g in graph.iter(SVG + "g") if g.get("class") == "cluster"]
    titles = [_text_box(t) for g in [graph, *clusters] for t in g.findall(SVG + "text")]  # the title, cluster labels
    return Drawing(nodes, edges, titles)


def closest_foreign_approach(drawing: Drawing) -> tuple[float, list[str]]:
    """The smallest distance (points) of any edge from the box of a node it does not touch (negative:
    inside by that much), and the edges that come more than ``TOLERANCE`` inside such a box."""
    names = list(drawing.nodes)
    boxes = np.array([drawing.nodes[n] for n in names])
    closest, crossings = math.inf, []
    for tail, head, _, pts in drawing.edges:
        (x0, y0), (x1, y1) = pts.min(axis=0) - 10.0, pts.max(axis=0) + 10.0  # boxes farther away cannot matter
        near = (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
        foreign = np.array([n not in (tail, head) for n in names]) & near
        if not foreign.any():
            continue
        b = boxes[foreign]
        x, y = pts[:, 0][:, None], pts[:, 1][:, None]
        dx = np.maximum(b[None, :, 0] - x, x - b[None, :, 2])  # > 0 outside, < 0 inside (depth)
        dy = np.maximum(b[None, :, 1] - y, y - b[None, :, 3])
        outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
        signed = np.where((dx < 0) & (dy < 0), np.maximum(dx, dy), outside)
        nearest = float(signed.min())
        closest = min(closest, nearest)
        if nearest < -TOLERANCE:
            hit = np.array(names)[foreign][signed.min(axis=0) < -TOLERANCE]
            crossings.append(f"{tail} -> {head} crosses {', '.join(hit)}")
    return closest, crossings


def overlapping_nodes(drawing: Drawing) -> list[str]:
    items = list(drawing.nodes.items())
    found = []
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(items):
        for b, (bx0, by0, bx1, by1) in items[i + 1 :]:
            if min(ax1, bx1) - max(ax0, bx0) > 0.5 and min(ay1, by1) - max(ay0, by0) > 0.5:
                found.append(f"{a} overlaps {b}")
    return found


def covered_by_titles(drawing: Drawing) -> list[str]:
    return [n for n, (x0, y0, x1, y1) in drawing.nodes.items() for tx0, ty0, tx1, ty1 in drawing.titles if min(x1, tx1) > max(x0, tx0) and min(y1, ty1) > max(y0, ty0)]


def softmax_scores(graph, seed: int = 0) -> dict:
    """Random softmax scores shaped as scores.json has them: {"ops": {label: [...]}, "inputs": {label: [...]}}."""
    rng = random.Random(seed)

    def softmax(n: int) -> list[float]:
        xs = [rng.gauss(0.0, 1.5) for _ in range(n)]
        top = max(xs)
        e = [math.exp(x - top) for x in xs]
        return [v / sum(e) for v in e]

    choices = discover_choices(graph)
    return {"ops": {c.label: softmax(len(c.candidates)) for c in choices.ops}, "inputs": {c.label: softmax(len(c.candidates)) for c in choices.inputs}}


def check_clean(drawing: Drawing) -> float:
    """No edge through a foreign node, no overlapping nodes, no title over a node; the closest approach."""
    closest, crossings = closest_foreign_approach(drawing)
    assert not crossings, crossings[:10]
    assert not overlapping_nodes(drawing)
    assert drawing.titles and not covered_by_titles(drawing)
    return closest


@pytest.fixture(scope="module")
def dcss():
    return build_space("dcss", {"layers": 6, "base_channels": 4})


@pytest.fixture(scope="module")
def autodeeplab():
    return build_space("autodeeplab", {"layers": 4})


def test_dcss_supernet_edges_avoid_every_node_they_do_not_touch(dcss):
    drawing = parse(picture(dcss, "svg", scores=softmax_scores(dcss), title="dcss supernet"))
    assert len(drawing.edges) == dcss.number_of_edges() == 344
    assert set(dcss.nodes) <= set(drawing.nodes)
    assert check_clean(drawing) > 2.0  # a lane or a port keeps every path clear of foreign boxes
    # kept edges are painted last, over every faint one
    order = [cls for *_, cls, _ in drawing.edges]
    assert "kept" in order and "faint" in order
    assert max(i for i, c in enumerate(order) if c == "faint") < min(i for i, c in enumerate(order) if c == "kept")
    same_row = [e for e in drawing.edges if e[0].split("_")[-1] == e[1].split("_")[-1] and e[0][:1] == e[1][:1] == "L"]
    assert len(same_row) > 50  # the edges that used to run straight through the row's other nodes are among those checked


def test_derived_dcss_architecture_edges_avoid_foreign_nodes(dcss):
    arch = sample_architecture(dcss, seed=3)
    drawing = parse(picture(arch, "svg", title="dcss arch"))
    assert len(drawing.edges) == arch.number_of_edges()
    assert check_clean(drawing) > 2.0


def test_unscored_supernet_is_clean_too(dcss):
    check_clean(parse(picture(dcss, "svg")))


@pytest.mark.parametrize("derived", [False, True], ids=["supernet", "derived"])
def test_autodeeplab_trellis_and_cell_panel_are_clean(autodeeplab, derived):
    graph = sample_architecture(autodeeplab, seed=1) if derived else autodeeplab
    scores = None if derived else softmax_scores(autodeeplab)
    drawing = parse(picture(graph, "svg", scores=scores, title="autodeeplab"))
    check_clean(drawing)
    cells = [n for n in graph.nodes if graph.nodes[n]["kind"] == "cell"]
    assert cells and set(cells) <= set(drawing.nodes)
    panel = [n for n in drawing.nodes if "/" in n and not n.startswith(("axis/", "legend/", "panel/"))]
    assert len(panel) == len(graph.nodes[cells[0]]["body"])  # the shared cell, once
    width = max(x1 for _, _, x1, _ in drawing.nodes.values()) - min(x0 for x0, *_ in drawing.nodes.values())
    assert width < 2000  # no more 2600 pt strip (3450 px): the cell is laid out in columns of its own
    if not derived:  # the Viterbi path is dark and over the rest
        order = [cls for *_, cls, _ in drawing.edges]
        assert max(i for i, c in enumerate(order) if c == "faint") < min(i for i, c in enumerate(order) if c == "kept")


@pytest.mark.parametrize("derived", [False, True], ids=["supernet", "derived"])
def test_autodeeplab_cell_picture_is_clean(autodeeplab, derived, tmp_path):
    graph = sample_architecture(autodeeplab, seed=1) if derived else autodeeplab
    result = render(graph, tmp_path / "adl.svg", scores=None if derived else softmax_scores(autodeeplab), title="adl")
    drawing = parse(result.extra[0].read_bytes())
    assert len(drawing.nodes) == len(graph.nodes[next(n for n in graph.nodes if graph.nodes[n]["kind"] == "cell")]["body"])
    check_clean(drawing)  # laid out by `dot`, which routes around nodes itself
