"""Graphviz pictures of any architecture graph, straight from its node and edge attributes.

Layout: nodes sit on the layer x scale grid of the DCNAS paper's Figure 1 (a column per ``layer``, a
row per ``scale``, finest on top; a ``cell`` node half a column left of the node it feeds), with the
layers and scales written along the axes and a legend below. The placement and every edge's path
are computed here (:mod:`archgraph.outputs.layout`): no edge crosses a node it does not touch, since
edges that pass columns run in lanes of the channels between the rows. Graphviz only draws them
(``neato -n2`` keeps given positions and paths), so a 14-layer DCSS with 1680 connections costs
no layout search.

- A **supernet** (a graph with choice points) is drawn with every candidate edge; given ``scores``
  (``{"ops": ..., "inputs": ...}`` as in ``scores.json``) the edge width and opacity follow the
  edge's probability softmax(beta), the edges of the architecture derived from those scores are
  drawn dark and *on top* of the faint ones, and each node shows its most probable op with its
  probability. The caller passes that architecture (``derived=``: what its strategy derived, as a
  search's arch.yaml); a caller holding only scores gets them decoded here (:func:`to_dot`).
- A **derived architecture** shows the chosen op on every node and the kept edges, their width
  following the ``score`` the decoder recorded.
- A ``cell`` node's nested body is drawn as a panel of its own below the grid (left to right, each
  node as late as its successors allow); cells whose bodies are alike (a repeated cell, as
  Auto-DeepLab's shared cell) get one panel, not one each.
- A graph whose space names its own decoder (``graph.graph["decoder"]``, e.g. Auto-DeepLab's Viterbi
  path) has the edges *that* decoder keeps drawn dark: the chosen trellis path (decoded here only
  when the caller passes no ``derived``).
- :func:`render` also writes the cell on its own, ``<name>_cell.<fmt>`` next to the picture, when the
  graph has cells (:func:`render_cell`: the body of the first cell, scored edges and ops included).

Paint order: Graphviz draws edges in the order of their *tail nodes*, not of the DOT source, so the
faint edges of a scored supernet leave from invisible stand-ins of their tails (``<node>#faint``)
declared before every real node: every faint edge is painted before any kept one. In the SVG, edges
carry the class ``faint``, ``kept`` or ``fixed``.

Formats by suffix: ``.svg``, ``.png``, ``.pdf``, ``.dot``. If Graphviz's programs are missing (the
``graphviz`` Python package only writes DOT; ``neato`` and ``dot`` draw it), the DOT source is
written next to the requested file instead and a warning saying how to install Graphviz is printed
to stderr, once per process however many pictures follow: drawing never fails a search.
:func:`graphviz_available` says whether pictures can be drawn; :func:`picture` draws one in memory.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping

import networkx as nx

from archgraph.core.choices import discover_choices
from archgraph.errors import ArchgraphError
from archgraph.core.graph import node_spec
from archgraph.io import atomic_write_bytes, atomic_write_text

from archgraph.outputs.layout import Box, GridFrame, GridLayout, Route, Spacing, grid_layout, layered_cells

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz) to get pictures"

KIND_COLOURS = {"input": "#e0e0e0", "stem": "#cfe2f3", "cell": "#d9ead3", "head": "#fce5cd"}
# Fill colours per scale; DCSS's four keep their colours, others come from scale_colour's rule.
SCALE_COLOURS = {1: "#d9f0ee", 2: "#e6ddf3", 4: "#dbe9f6", 8: "#d6efd6", 16: "#fff2cc", 32: "#f4d7e3", 64: "#e8efcf"}
STEM_SHADE = 0.90  # a stem is filled with its scale's colour, darker by this factor
KEPT_COLOUR, FAINT_COLOUR, FIXED_COLOUR = "#1f4e9a", "#7f7f7f", "#404040"
HIGHLIGHT_COLOUR = "#d62728"  # outline of nodes whose decision changed (the report's epoch frames)
FAINT = "#faint"  # suffix of the invisible stand-in a faint edge leaves from (paint order: module docstring)
FONT, NODE_FONT, AXIS_FONT = "Helvetica", 10.0, 11.0  # font sizes in points
GRID = Spacing()  # the layer x scale grid
BODY = Spacing(col_gap=34.0)  # a cell's body


@dataclass(frozen=True)
class RenderResult:
    path: Path  # the file written (the .dot file when Graphviz is missing)
    # Always None: the missing-Graphviz warning is printed by this module, once per process, to
    # stderr (callers that print this field print nothing, so a compare does not repeat it).
    warning: str | None = None
    extra: tuple[Path, ...] = ()  # further pictures written alongside (the cell of a hierarchical space)
    drawn: bool = True  # False when the DOT source was written instead of the requested picture


_graphviz_warned = False  # the missing-Graphviz warning was printed by this process


def graphviz_available() -> bool:
    """Whether Graphviz's programs are on ``PATH`` (``neato`` draws the grid, ``dot`` the cell pictures)."""
    return shutil.which("dot") is not None and shutil.which("neato") is not None


def _warn_once(text: str) -> None:
    global _graphviz_warned
    if not _graphviz_warned:
        _graphviz_warned = True
        print(f"warning: {text}", file=sys.stderr)


def short_op(name: str) -> str:
    """``mbconv_k5_r6`` -> ``mbconv k5 r6``: readable inside a small node box."""
    return name.replace("_", " ")


# Character widths of Helvetica (and of its look-alikes Arial and Liberation Sans), in em, rounded up:
# node boxes have a fixed size (the edges are routed around them), so the text must fit for sure.
_WIDTHS = {**dict.fromkeys("ijl|'", 0.23), **dict.fromkeys("ftI!.,:;·/ ", 0.29), **dict.fromkeys('()[]-r"', 0.34), **dict.fromkeys("mM", 0.85), "w": 0.74, "W": 0.95}


def text_width(text: str, size: float) -> float:
    """A generous estimate of the width of ``text`` in points, in Helvetica at ``size`` points."""
    return size * 1.10 * sum(_WIDTHS.get(ch, 0.70 if ch.isupper() else 0.57) for ch in text)


def _box_size(lines: list[str], size: float = NODE_FONT) -> tuple[float, float]:
    return (max(text_width(t, size) for t in lines) + 14.0, len(lines) * size * 1.25 + 8.0)


def architecture_for(graph: nx.DiGraph, scores: Mapping[str, Any] | None, derived: nx.DiGraph | None = None) -> nx.DiGraph | None:
    """The architecture a picture of ``graph`` with ``scores`` draws dark: ``derived`` when the caller
    passes it, else the graph's decoder (the space's own rule if it names one; else top-k + BFS) run
    on ``scores`` here; ``None`` without scores, or when partial scores do not decode (then nothing is
    emphasised).

    Why a fallback at all: the callers that hold a derived graph pass it (a search's arch.yaml, the
    render command's run folders), but some hold only scores: the report's epoch frames have the
    scores of ``history.jsonl``, and a user drawing a ``scores.json`` in a notebook has no graph.
    Resolve it once with this function when drawing one graph several times (:func:`render` does, for
    the grid and its cell picture)."""
    _check_derived(scores, derived)
    if derived is not None or not scores:
        return derived
    from archgraph.core.decode import decode

    try:
        return decode(graph, scores.get("ops", {}), scores.get("inputs", {}))
    except (ArchgraphError, KeyError):
        return None  # partial scores: draw what they say, emphasise nothing


def _check_derived(scores: Mapping[str, Any] | None, derived: nx.DiGraph | None) -> None:
    if derived is not None and not scores:
        raise ArchgraphError("derived= is the architecture derived from scores=, whose probabilities the edges are drawn by: pass both or neither")


def _edge_probabilities(graph: nx.DiGraph, scores: Mapping[str, Any] | None, derived: nx.DiGraph | None) -> tuple[dict[tuple[str, str], float], set[tuple[str, str]], dict[str, tuple[str, float]]]:
    """(edge -> softmax(beta) entry, the edges of ``derived`` among them, node -> (best op, its probability))."""
    if not scores:
        return {}, set(), {}
    choices = discover_choices(graph)
    ops, inputs = scores.get("ops", {}), scores.get("inputs", {})
    probs: dict[tuple[str, str], float] = {}
    for c in choices.inputs:
        if c.label in inputs:
            for src, p in zip(c.candidates, inputs[c.label]):
                probs[(src, c.node)] = float(p)
    best: dict[str, tuple[str, float]] = {}
    for c in choices.ops:
        if c.label in ops:
            values = ops[c.label]
            i = max(range(len(values)), key=lambda j: values[j])
            best[c.node] = (c.candidates[i], float(values[i]))
    # Dark: exactly the architecture's edges (inputs of nodes that do not reach the head stay light).
    kept = set() if derived is None else {(u, v) for u, v in derived.edges if (u, v) in probs}
    return probs, kept, best


def _node_lines(graph: nx.DiGraph, n: str, best: Mapping[str, tuple[str, float]]) -> list[str]:
    spec = node_spec(graph, n)
    if spec.kind == "input":
        return [n, "3ch"]
    if spec.kind == "cell":  # many per grid point in hierarchical spaces: keep the box small (id in the tooltip)
        return [f"cell · {spec.channels}ch"]
    where = [n, f"1/{spec.scale} · {spec.channels}ch"] + _mode_line(graph, n)
    if n in best:
        op, p = best[n]
        return where + [f"{short_op(op)} ({p:.2f})"]
    if len(spec.ops) == 1:
        return where + [short_op(spec.ops[0])]
    return where + [f"{len(spec.ops)} candidate ops"]


def scale_colour(scale: int) -> str:
    """The fill colour of nodes at ``scale`` (any power of two): :data:`SCALE_COLOURS` where listed,
    else a pale colour whose hue steps by the golden angle per halving (log2(scale) * 137.5 degrees),
    so neighbouring scales never look alike and the same scale always gets the same colour."""
    if scale in SCALE_COLOURS:
        return SCALE_COLOURS[scale]
    import colorsys

    hue = (math.log2(max(scale, 1)) * 137.508) % 360.0 / 360.0
    r, g, b = colorsys.hls_to_rgb(hue, 0.88, 0.55)
    return "#" + "".join(f"{int(round(255 * c)):02x}" for c in (r, g, b))


def _shade(colour: str, factor: float) -> str:
    """``colour`` (``#rrggbb``) with every channel multiplied by ``factor`` (< 1: darker)."""
    return "#" + "".join(f"{min(255, int(round(int(colour[i : i + 2], 16) * factor))):02x}" for i in (1, 3, 5))


def _mode_line(graph: nx.DiGraph, n: str) -> list[str]:
    """``["concat · up transposed"]`` for a node whose fusion or (used) up-sampling mode is not the default."""
    spec = node_spec(graph, n)
    modes = [spec.fusion] if spec.fusion != "sum" else []
    if spec.upsample != "bilinear" and any(graph.nodes[p]["scale"] > spec.scale for p in graph.predecessors(n)):
        modes.append(f"up {spec.upsample}")
    return [" · ".join(modes)] if modes else []


def _node_colour(graph: nx.DiGraph, n: str) -> str:
    """Fusion nodes by scale, stems by scale too (a shade darker), other kinds by kind."""
    spec = node_spec(graph, n)
    if spec.kind == "stem":
        return _shade(scale_colour(spec.scale), STEM_SHADE)
    if spec.kind in KIND_COLOURS:
        return KIND_COLOURS[spec.kind]
    return scale_colour(spec.scale)


def _alpha_hex(p: float) -> str:
    return f"{int(round(40 + 215 * min(max(p, 0.0), 1.0))):02x}"


def _kept_style(rel: float) -> dict[str, str]:
    """A kept candidate edge whose probability is ``rel`` times its target's strongest input's."""
    return {"penwidth": f"{1.2 + 2.8 * rel:.2f}", "color": KEPT_COLOUR + _alpha_hex(rel)}


def _faint_style(rel: float) -> dict[str, str]:
    return {"penwidth": f"{0.3 + 1.2 * rel * rel:.2f}", "color": FAINT_COLOUR + _alpha_hex(0.25 * rel * rel)}


def _score_style(p: float) -> dict[str, str]:
    """A derived edge, as strong as the decoder found it (scores are probabilities; a rank-like score caps)."""
    return {"penwidth": f"{0.8 + 2.5 * min(max(p, 0.0), 1.0):.2f}", "color": KEPT_COLOUR}


@dataclass
class _Scene:
    """What one picture draws: boxes and paths in points, y downwards (flipped for Graphviz)."""

    nodes: list[tuple[str, str, Box, dict[str, str]]] = field(default_factory=list)  # name, DOT label, box, attributes
    edges: list[tuple[str, str, Route, str, dict[str, str]]] = field(default_factory=list)  # tail, head, path, class, attributes

    def node(self, name: str, label: str, box: Box, **attrs: str) -> None:
        self.nodes.append((name, label, box, attrs))

    def text(self, name: str, lines: list[str], left: float, top: float, size: float, **attrs: str) -> Box:
        """Left-aligned plain text with its top-left corner at (left, top)."""
        w, h = max(text_width(t, size) for t in lines) + 6.0, len(lines) * size * 1.25 + 4.0
        box = Box(left + w / 2, top + h / 2, w, h)
        self.node(name, "".join(t + "\\l" for t in lines), box, shape="plaintext", style="solid", fontsize=f"{size:g}", **attrs)
        return box

    def edge(self, u: str, v: str, route: Route, cls: str, **attrs: str) -> None:
        self.edges.append((u, v, route, cls, attrs))

    def bottom(self) -> float:
        ys = [b.bottom for _, _, b, _ in self.nodes]
        for _, _, route, _, _ in self.edges:
            ys += [y for _, y in route.points]
        return max(ys, default=0.0)

    def source(self, title: str) -> str:
        import graphviz

        dot = graphviz.Digraph(name="archgraph", engine="neato")
        # positions and paths are in points: `neato -n2` takes them as they are (inputscale: plain `neato` too)
        dot.attr("graph", outputorder="edgesfirst", inputscale="72", fontname=FONT, labelloc="t", fontsize="18", label=title, pad="0.3")
        dot.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize=f"{NODE_FONT:g}", fixedsize="true", margin="0")
        dot.attr("edge", arrowsize="0.5")
        boxes = {name: box for name, _, box, _ in self.nodes}
        for u in dict.fromkeys(u for u, _, _, cls, _ in self.edges if cls == "faint"):  # painted first: declared first
            dot.node(u + FAINT, "", shape="point", style="invis", width="0", height="0", pos=_pos(boxes[u]))
        for name, label, box, attrs in self.nodes:
            dot.node(name, label, pos=_pos(box), width=f"{box.w / 72:.4f}", height=f"{box.h / 72:.4f}", **attrs)
        for cls in ("faint", "fixed", "kept"):  # the source in paint order too
            for u, v, route, c, attrs in self.edges:
                if c == cls:
                    dot.edge(u + FAINT if c == "faint" else u, v, _attributes={"class": c}, pos=_spline(route), **attrs)
        return dot.source


def _pos(box: Box) -> str:
    return f"{box.x:.2f},{-box.y:.2f}!"


def _spline(route: Route) -> str:
    tx, ty = route.tip
    return f"e,{tx:.2f},{-ty:.2f} " + " ".join(f"{x:.2f},{-y:.2f}" for x, y in route.points)


def _grid_cells(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """(column, row) per node: x = layer (a cell half a column left of the node it feeds), y = log2(scale);
    nodes sharing a grid point are stacked by the mean row of their inputs (fewer crossings)."""
    cell = {}
    for n in graph.nodes:
        spec = node_spec(graph, n)
        cell[n] = (spec.layer - (0.5 if spec.kind == "cell" else 0.0), math.log2(spec.scale))
    position = {n: i for i, n in enumerate(graph.nodes)}

    def mean_input_row(n: str) -> float:
        rows = [cell[p][1] for p in graph.predecessors(n)]
        return sum(rows) / len(rows) if rows else cell[n][1]

    return {n: cell[n] for n in sorted(graph.nodes, key=lambda n: (cell[n], mean_input_row(n), position[n]))}


def _column_name(graph: nx.DiGraph, key: float, members: list[str]) -> str | None:
    if key != int(key):
        return None  # the half columns of cell nodes
    if not members:
        return f"layer {int(key)}"  # a layer a shared frame keeps (every node of it pruned in this graph)
    kinds = {node_spec(graph, n).kind for n in members}
    if kinds == {"head"}:
        return "head"
    if kinds <= {"input", "stem"}:
        return "stem"
    return f"layer {int(key)}"


def _grid_layout(graph: nx.DiGraph, scores: Mapping[str, Any] | None, frame: GridFrame | None = None, derived: nx.DiGraph | None = None):
    """The grid's layout and what drawing it needs: (layout, cells, node lines, edge styles, shows);
    ``derived``: the architecture drawn dark (:func:`architecture_for`)."""
    probs, kept, best = _edge_probabilities(graph, scores, derived)
    styles, shows = _edge_styles(graph, probs, kept, derived)
    cells = _grid_cells(graph)
    lines = {n: _node_lines(graph, n, best) for n in cells}
    widths = {e: float(attrs["penwidth"]) for e, (_, attrs) in styles.items()}
    layout = grid_layout(cells, {n: _box_size(lines[n]) for n in cells}, graph.edges, GRID, widths, frame)
    return layout, cells, lines, styles, shows


def grid_frame(graphs: Collection[nx.DiGraph], supernet: nx.DiGraph | None = None) -> GridFrame:
    """One frame for pictures of ``graphs`` (say, the architectures of one comparison): room for every
    node and edge of each, and for every grid point of ``supernet`` (nodes only: the full grid, with the
    layers and scales an architecture prunes). Drawn with it (``render(..., frame=)``), a node sits at
    the same place in every picture."""
    base = None
    if supernet is not None:
        bare = nx.DiGraph()
        bare.graph.update(supernet.graph)
        bare.add_nodes_from(supernet.nodes(data=True))
        cells = _grid_cells(bare)
        lines = {n: _node_lines(bare, n, {}) for n in cells}
        base = GridFrame.of(grid_layout(cells, {n: _box_size(lines[n]) for n in cells}, (), GRID))
    # each graph measured on the full grid's keys, so their channels line up for the union
    frames = [GridFrame.of(_grid_layout(g, None, base)[0]) for g in graphs] + ([base] if base is not None else [])
    if not frames:
        raise ArchgraphError("grid_frame needs at least one graph")
    out = frames[0]
    for f in frames[1:]:
        out = out.union(f)
    return out


def _grid_scene(graph: nx.DiGraph, scores: Mapping[str, Any] | None, highlight: Collection[str] = (), frame: GridFrame | None = None, derived: nx.DiGraph | None = None) -> tuple[_Scene, str]:
    """The grid: nodes, edges, axes. Also returns what the edges show. Nodes in ``highlight`` are
    outlined red (the report's epoch frames: a decision changed there); ``frame``: a shared geometry
    (:func:`grid_frame`); ``derived``: the architecture drawn dark (:func:`architecture_for`)."""
    layout, cells, lines, styles, shows = _grid_layout(graph, scores, frame, derived)
    scene = _Scene()
    for n in cells:
        outline = {"color": HIGHLIGHT_COLOUR, "penwidth": "2.5"} if n in highlight else {}
        scene.node(n, "\\n".join(lines[n]), layout.boxes[n], fillcolor=_node_colour(graph, n), tooltip=n, **outline)
    for (u, v), (cls, attrs) in styles.items():
        scene.edge(u, v, layout.routes[(u, v)], cls, **attrs)
    _axes(scene, graph, layout)
    return scene, shows


def _edge_styles(graph: nx.DiGraph, probs: Mapping[tuple[str, str], float], kept: set[tuple[str, str]], derived: nx.DiGraph | None) -> tuple[dict[tuple[str, str], tuple[str, dict[str, str]]], str]:
    """(class, DOT attributes) per edge, and what the edges show: ``scored``, ``candidates``, ``derived`` or ``fixed``."""
    # Widths are relative to the strongest input of the same node: a node with 56 candidate inputs
    # spreads its probability thinner than one with 4, yet its favourites should look as strong.
    node_max: dict[str, float] = {}
    for (_, v), p in probs.items():
        node_max[v] = max(node_max.get(v, 0.0), p)
    styles: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
    shows = "scored" if probs else "fixed"
    mixed = mixed_nodes(graph)
    for u, v, attrs in graph.edges(data=True):
        if v in mixed:  # a node with fixed inputs besides its chosen ones: solid fixed, dashed chosen
            styles[(u, v)] = _mixed_style(u, v, attrs, probs, kept, derived, node_max)
            shows = "derived" if shows == "fixed" and attrs.get("score") is not None else shows
            shows = "candidates" if shows == "fixed" and attrs.get("kind") == "candidate" else shows
        elif (u, v) in probs:  # a candidate edge of a scored supernet
            p = probs[(u, v)]
            rel = p / (node_max[v] or 1.0)
            strong = (u, v) in kept
            styles[(u, v)] = ("kept" if strong else "faint", {"tooltip": f"{u} -> {v}: p={p:.3f}", **(_kept_style(rel) if strong else _faint_style(rel))})
        elif attrs.get("kind") == "candidate":  # an unscored supernet: every candidate alike
            styles[(u, v)] = ("faint", {"tooltip": f"{u} -> {v}", "penwidth": "0.3", "color": "#9e9e9e80"})
            shows = "candidates" if shows == "fixed" else shows
        elif attrs.get("score") is not None:  # a derived edge
            p = float(attrs["score"])
            styles[(u, v)] = ("kept", {"tooltip": f"{u} -> {v}: p={p:.3f}", **_score_style(p)})
            shows = "derived" if shows == "fixed" else shows
        elif derived is not None:  # a fixed edge of a scored supernet: dark if the architecture has it
            on = derived.has_edge(u, v)
            styles[(u, v)] = ("kept" if on else "faint", {"tooltip": f"{u} -> {v}", "penwidth": "1.0" if on else "0.5", "color": KEPT_COLOUR if on else FAINT_COLOUR + _alpha_hex(0.25)})
        else:
            styles[(u, v)] = ("fixed", {"tooltip": f"{u} -> {v}", "penwidth": "1.0", "color": FIXED_COLOUR})
    return styles, shows


def mixed_nodes(graph: nx.DiGraph) -> set[str]:
    """Nodes with fixed inputs besides candidate (supernet) or chosen (derived) ones: a U-Net decoder node."""
    out = set()
    for n in graph.nodes:
        kinds = {graph.edges[p, n].get("kind", "fixed") for p in graph.predecessors(n)}
        if "fixed" in kinds and kinds & {"candidate", "chosen"}:
            out.add(n)
    return out


def _mixed_style(
    u: str, v: str, attrs: Mapping[str, Any], probs: Mapping[tuple[str, str], float], kept: set[tuple[str, str]], derived: nx.DiGraph | None, node_max: Mapping[str, float]
) -> tuple[str, dict[str, str]]:
    """An input of a node that has fixed and chosen inputs: fixed ones solid dark grey and a little
    wider (always used), candidate and chosen ones dashed, else styled as any candidate or kept edge."""
    kind = attrs.get("kind", "fixed")
    if kind == "fixed":
        on = derived is None or derived.has_edge(u, v)
        return ("fixed" if on else "faint", {"tooltip": f"{u} -> {v}: fixed input (always used)", "penwidth": "1.8" if on else "0.5", "color": FIXED_COLOUR if on else FAINT_COLOUR + _alpha_hex(0.25)})
    if (u, v) in probs:
        p = probs[(u, v)]
        rel = p / (node_max.get(v) or 1.0)
        strong = (u, v) in kept
        style = _kept_style(rel) if strong else _faint_style(rel)
        return ("kept" if strong else "faint", {"tooltip": f"{u} -> {v}: candidate, p={p:.3f}", "style": "dashed", **style})
    if kind == "candidate":
        return ("faint", {"tooltip": f"{u} -> {v}: candidate", "style": "dashed", "penwidth": "0.8", "color": "#7f7f7fb0"})
    p = float(attrs["score"]) if attrs.get("score") is not None else 1.0  # a chosen edge of a derived graph
    return ("kept", {"tooltip": f"{u} -> {v}: chosen, p={p:.3f}", "style": "dashed", **_score_style(p)})


def _axes(scene: _Scene, graph: nx.DiGraph, layout: GridLayout) -> None:
    """A name over every column (``layer 3``) and beside every row (``scale 1/8``)."""
    for key, left, right in layout.columns:
        members = [n for n, b in layout.boxes.items() if left <= b.x <= right]
        name = _column_name(graph, key, members)
        if name is not None:
            w = text_width(name, AXIS_FONT) + 6.0
            scene.node(f"axis/{name}", name, Box((left + right) / 2, -8.0 - 9.0, w, 18.0), shape="plaintext", style="solid", fontsize=f"{AXIS_FONT:g}", fontcolor="#555555")
    for key, top, bottom in layout.rows:
        name = f"scale 1/{int(round(2**key))}"
        w = text_width(name, AXIS_FONT) + 6.0
        scene.node(f"axis/{name}", name, Box(-14.0 - w / 2, (top + bottom) / 2, w, 18.0), shape="plaintext", style="solid", fontsize=f"{AXIS_FONT:g}", fontcolor="#555555")


def _body_signature(body: nx.DiGraph) -> str:
    """Bodies with the same nodes, ops, labels and edges draw alike (widths may differ)."""
    nodes = [(n, tuple(body.nodes[n].get("ops", ())), body.nodes[n].get("label")) for n in body.nodes]
    return repr((nodes, sorted(body.edges)))


def first_cell(graph: nx.DiGraph) -> str | None:
    return next((n for n in graph.nodes if node_spec(graph, n).body is not None), None)


def _kept_body_nodes(derived: nx.DiGraph | None, owner: str) -> set[str] | None:
    """The body nodes the decoded graph keeps in ``owner``'s cell (or in its first cell), if decoded."""
    if derived is None:
        return None
    if owner in derived and node_spec(derived, owner).body is not None:
        return set(node_spec(derived, owner).body.nodes)
    cell = first_cell(derived)
    return None if cell is None else set(node_spec(derived, cell).body.nodes)


def _body_looks(body: nx.DiGraph, ops: Mapping[str, Any], kept: set[str] | None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Per body node: its label lines and colours (the best op and its probability where scored; faded
    where a decoder drops it)."""
    looks = {}
    for n in body.nodes:
        spec = node_spec(body, n)
        label = spec.label or n
        if spec.has_op_choice and label in ops:
            values = ops[label]
            i = max(range(len(values)), key=lambda j: (values[j], -j))
            text = [n, f"{short_op(spec.ops[i])} ({values[i]:.2f})"]
        elif spec.has_op_choice:
            text = [n, f"{len(spec.ops)} candidate ops"]
        else:
            text = [n, short_op(spec.ops[0]) if spec.ops else spec.kind]
        faded = kept is not None and n not in kept
        looks[n] = (text, {"fillcolor": "#f3f3f3" if faded else KIND_COLOURS.get(spec.kind, "#dbe9f6"), "color": "#bbbbbb" if faded else "#404040", "fontcolor": "#999999" if faded else "#000000"})
    return looks


def _body_panels(scene: _Scene, graph: nx.DiGraph, scores: Mapping[str, Any] | None, derived: nx.DiGraph | None, top: float) -> None:
    """Each distinct cell body as a panel of its own, one under the other from ``top`` down."""
    owners: dict[str, list[str]] = {}
    for n in graph.nodes:
        body = node_spec(graph, n).body
        if body is not None:
            owners.setdefault(_body_signature(body), []).append(n)
    ops = (scores or {}).get("ops", {})
    for group in owners.values():
        owner = group[0]
        body = node_spec(graph, owner).body
        kept = _kept_body_nodes(derived, owner)
        looks = _body_looks(body, ops, kept)
        cells = layered_cells(body)
        faded = {(u, v): kept is not None and (u not in kept or v not in kept) for u, v in body.edges}
        layout = grid_layout(cells, {n: _box_size(looks[n][0]) for n in cells}, body.edges, BODY, {e: 0.6 if f else 1.4 for e, f in faded.items()})
        who = f"the body of {owner}" if len(group) == 1 else f"the body shared by {len(group)} cell nodes ({owner}, ...)"
        what = "; op = most probable (its probability)" if any(node_spec(body, n).has_op_choice for n in body.nodes) and ops else ""
        what += "; faded = not kept by the decoder" if kept is not None else ""
        left = min(b.left for _, _, b, _ in scene.nodes)
        title = scene.text(f"panel/{owner}", [f"cell: {who}{what}"], left, top, 12.0, fontcolor="#333333")
        layout = layout.shifted(0.0, title.bottom + 6.0)
        for n in cells:
            text, attrs = looks[n]
            scene.node(f"{owner}/{n}", "\\n".join(text), layout.boxes[n], tooltip=f"{owner}/{n}", **attrs)
        for (u, v), f in faded.items():
            scene.edge(f"{owner}/{u}", f"{owner}/{v}", layout.routes[(u, v)], "faint" if f else "kept", color="#cccccc" if f else KEPT_COLOUR, penwidth="0.6" if f else "1.4", tooltip=f"{u} -> {v}")
        top = scene.bottom() + 28.0


def _colour_legend(graph: nx.DiGraph) -> list[tuple]:
    """The legend's colour row: one swatch per scale present (any scale: :func:`scale_colour`), the
    stems' darker shades, and the kinds coloured by kind."""
    colours: list[tuple] = [("text", "node colour:")]
    specs = [node_spec(graph, n) for n in graph.nodes]
    for scale in sorted({s.scale for s in specs if s.kind not in KIND_COLOURS}):
        colours += [("swatch", 16.0, 11.0, scale_colour(scale)), ("text", f"scale 1/{scale}")]
    stems = sorted({s.scale for s in specs if s.kind == "stem"})
    if stems:
        colours += [("swatch", 16.0, 11.0, _shade(scale_colour(scale), STEM_SHADE)) for scale in stems]
        colours += [("text", "stem, darker")]  # its scale's colour, a shade darker (short: the legend is laid out by estimate)
    for kind in KIND_COLOURS:
        if kind != "stem" and any(s.kind == kind for s in specs):
            colours += [("swatch", 16.0, 11.0, KIND_COLOURS[kind]), ("text", kind)]
    return colours


def _legend(scene: _Scene, graph: nx.DiGraph, shows: str, top: float) -> None:
    """How to read the picture: edge widths and colours, node colours, node labels."""

    def line(colour: str, width: float) -> tuple[str, float, float, str]:
        return ("swatch", 26.0, max(width, 0.6), colour)

    rows: list[list[tuple]] = []
    if shows == "scored":
        rows.append(
            [line(_kept_style(r)["color"], float(_kept_style(r)["penwidth"])) for r in (0.3, 0.65, 1.0)]
            + [("text", "kept by the decoder; width = the edge's probability softmax(\u03b2), relative to the strongest input of its target")]
        )
        rows.append([line(_faint_style(r)["color"], float(_faint_style(r)["penwidth"])) for r in (0.3, 0.65, 1.0)] + [("text", "not kept; width and darkness likewise")])
    elif shows == "candidates":
        rows.append([line("#9e9e9e", 0.6), ("text", "candidate edge (no scores: all alike)")])
    elif shows == "derived":
        rows.append([line(KEPT_COLOUR, float(_score_style(p)["penwidth"])) for p in (0.3, 0.65, 1.0)] + [("text", "kept edge; width = the probability the decoder kept it with")])
    mixed = mixed_nodes(graph)
    if any(a.get("score") is None and a.get("kind") != "candidate" and v not in mixed for _, v, a in graph.edges(data=True)):
        if shows == "scored":
            rows.append([line(KEPT_COLOUR, 1.0), line(FAINT_COLOUR + _alpha_hex(0.25), 0.5), ("text", "fixed edge (no choice): in the architecture, or not (the decoder drops one of its ends)")])
        else:
            rows.append([line(FIXED_COLOUR, 1.0), ("text", "fixed edge (no choice)")])
    if mixed:
        dashes = [("swatch", 6.0, 1.2, KEPT_COLOUR), ("swatch", 6.0, 1.2, KEPT_COLOUR), ("swatch", 6.0, 1.2, KEPT_COLOUR)]
        rows.append([line(FIXED_COLOUR, 1.8), ("text", "fixed input of a node that also chooses inputs: always used (e.g. a U-Net's up-path)")])
        what = (
            "a chosen input of such a node (kept by the decoder; the chosen ones are pooled into one input)"
            if shows == "derived"
            else "a candidate input of such a node (chosen among; the chosen ones are pooled into one input)"
        )
        rows.append(dashes + [("text", f"dashed: {what}")])
    rows.append(_colour_legend(graph))
    op = {"scored": "most probable op (its probability)", "derived": "op"}.get(shows, "op, or the number of candidate ops")
    modes = ", fusion and up-sampling mode where not sum / bilinear" if any(_mode_line(graph, n) for n in graph.nodes) else ""
    rows.append([("text", f"node label: id, scale \u00b7 channels{modes}, {op}")])
    y, left = top, min(b.left for _, _, b, _ in scene.nodes)
    for i, row in enumerate(rows):
        x = left
        for j, item in enumerate(row):
            if item[0] == "swatch":
                _, w, h, colour = item
                scene.node(f"legend/{i}.{j}", "", Box(x + w / 2, y + 8.5, w, h), shape="box", style="filled", fillcolor=colour, color=colour, penwidth="0")
                x += w + 8.0
            else:
                x = scene.text(f"legend/{i}.{j}", [item[1]], x, y, NODE_FONT, fontcolor="#333333").right + 12.0
        y += 24.0  # items 8 pt apart at least: plain `neato` (routing its own splines) needs 6.4


def to_dot(
    graph: nx.DiGraph, scores: Mapping[str, Any] | None = None, title: str | None = None, highlight: Collection[str] = (), frame: GridFrame | None = None, derived: nx.DiGraph | None = None
) -> str:
    """The DOT source of ``graph`` (see the module docstring for what is drawn how); ``neato -n2`` draws it.
    ``highlight``: top-level nodes to outline red; ``frame``: a geometry shared with other pictures (:func:`grid_frame`);
    ``derived``: the architecture the caller derived from ``scores`` (drawn dark; decoded from the
    scores when not given, see :func:`architecture_for` for why that fallback exists)."""
    derived = architecture_for(graph, scores, derived)
    scene, shows = _grid_scene(graph, scores, frozenset(highlight), frame, derived)
    if first_cell(graph) is not None:
        _body_panels(scene, graph, scores, derived, scene.bottom() + 30.0)
    _legend(scene, graph, shows, scene.bottom() + 24.0)
    return scene.source(title or str(graph.graph.get("name", "")))


def cell_to_dot(graph: nx.DiGraph, scores: Mapping[str, Any] | None = None, title: str | None = None, derived: nx.DiGraph | None = None) -> str:
    """The body of ``graph``'s first cell as a picture of its own (left to right by block, laid out by ``dot``).

    With scores, each op-choice node shows its best op and probability and, for a graph that names a
    decoder, the edges and ops the derived cell keeps are drawn dark (``derived`` as in :func:`to_dot`).
    """
    import graphviz

    cell = first_cell(graph)
    if cell is None:
        raise ArchgraphError(f"graph {graph.graph.get('name')!r} has no cell with a nested body to draw")
    body = node_spec(graph, cell).body
    _check_derived(scores, derived)
    kept: set[str] | None = None
    if scores and graph.graph.get("decoder"):
        kept = _kept_body_nodes(architecture_for(graph, scores, derived), cell)
    looks = _body_looks(body, (scores or {}).get("ops", {}), kept)
    dot = graphviz.Digraph(name="cell", engine="dot")
    dot.attr("graph", rankdir="LR", fontname=FONT, labelloc="t", fontsize="16", label=title or f"cell of {graph.graph.get('name', '')} ({cell})")
    dot.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize=f"{NODE_FONT:g}")
    for n in body.nodes:
        text, attrs = looks[n]
        dot.node(n, "\\n".join(text), **attrs)
    for u, v in body.edges:
        faded = kept is not None and (u not in kept or v not in kept)
        dot.edge(u, v, color="#cccccc" if faded else KEPT_COLOUR, penwidth="0.6" if faded else "1.4")
    return dot.source


def render_cell(graph: nx.DiGraph, output: str | Path, scores: Mapping[str, Any] | None = None, title: str | None = None, derived: nx.DiGraph | None = None) -> RenderResult:
    """Draw the first cell's body of ``graph`` to ``output`` (format from its suffix)."""
    return _write(cell_to_dot(graph, scores, title, derived), Path(output), "dot")


def render(graph: nx.DiGraph, output: str | Path, scores: Mapping[str, Any] | None = None, title: str | None = None, frame: GridFrame | None = None, derived: nx.DiGraph | None = None) -> RenderResult:
    """Draw ``graph`` to ``output`` (format from its suffix); never raises for a missing Graphviz.

    A graph with cells also gets its cell drawn on its own, ``<stem>_cell<suffix>`` (``extra``).
    ``frame`` (:func:`grid_frame`): the full grid shared with other pictures, every node in its place.
    ``derived``: the architecture the caller derived from ``scores``, drawn dark (decoded once here,
    for the grid and the cell, when not given: :func:`architecture_for`).
    """
    output = Path(output)
    _check_format(output)
    derived = architecture_for(graph, scores, derived)
    source = to_dot(graph, scores, title, frame=frame, derived=derived)
    result = _write(source, output, "neato")
    if first_cell(graph) is None:
        return result
    cell_out = output.with_name(f"{output.stem}_cell{output.suffix}")
    cell = _write(cell_to_dot(graph, scores, f"cell of {title or graph.graph.get('name', '')}", derived), cell_out, "dot")
    return RenderResult(result.path, None, (cell.path,), result.drawn)


def picture(graph: nx.DiGraph, fmt: str = "svg", scores: Mapping[str, Any] | None = None, title: str | None = None, highlight: Collection[str] = (), derived: nx.DiGraph | None = None) -> bytes | None:
    """``graph`` drawn as ``fmt`` bytes, in memory (no file); ``None`` (and the warning, once) when
    Graphviz is missing or fails. ``highlight``: top-level nodes to outline red; ``derived`` as in :func:`to_dot`."""
    return _pipe(to_dot(graph, scores, title, highlight, derived=derived), "neato", fmt, f"this {fmt} picture")


def _check_format(output: Path) -> str:
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchgraphError(f"{output}: unknown picture format {fmt!r}; use one of {', '.join('.' + f for f in FORMATS)}")
    return fmt


def _pipe(source: str, engine: str, fmt: str, what: str) -> bytes | None:
    """Run Graphviz; ``neato`` as ``neato -n2``: it keeps the positions and paths of the grid pictures."""
    import graphviz

    try:
        return graphviz.Source(source, engine=engine).pipe(format=fmt, quiet=True, neato_no_op=2 if engine == "neato" else None)
    except graphviz.ExecutableNotFound:
        _warn_once(
            f"Graphviz is not installed (no `{engine}` program on PATH), so {what} and every further picture is "
            f"written as DOT source (a .dot file) instead; {INSTALL_HINT}, then draw them with `archgraph render` "
            "(`archgraph report RUN` draws a search run's pictures)"
        )
    except graphviz.CalledProcessError as exc:  # a picture Graphviz cannot lay out: said for each one
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        first = stderr.strip().splitlines()[:1]
        print(f"warning: Graphviz's `{engine}` failed on {what} ({first[0] if first else f'exit status {exc.returncode}'}); its DOT source is written instead", file=sys.stderr)
    return None


def _write(source: str, output: Path, engine: str) -> RenderResult:
    fmt = _check_format(output)
    if fmt == "dot":
        return RenderResult(atomic_write_text(output, source))
    data = _pipe(source, engine, fmt, output.name)
    if data is None:
        return RenderResult(atomic_write_text(output.with_suffix(".dot"), source), drawn=False)
    return RenderResult(atomic_write_bytes(output, data))
