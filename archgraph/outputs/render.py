"""Graphviz pictures of any architecture graph, straight from its node and edge attributes.

Layout: nodes are pinned on the layer x scale grid of the DCNAS paper's Figure 1 (x = ``layer``,
y = ``log2(scale)``, finest scale on top), so every picture of a space reads the same way and the
layout costs nothing even for the 1680 connections of a 14-layer DCSS (``neato`` with pinned
positions and straight edges; ``dot``'s layered layout would reorder the grid and take minutes).

- A **supernet** (a graph with choice points) is drawn with every candidate edge; given ``scores``
  (``{"ops": ..., "inputs": ...}`` as in ``scores.json``) the edge width and opacity follow the
  edge's probability softmax(beta), the edges the BFS decoder would keep are drawn dark, and each
  node shows its most probable op with its probability.
- A **derived architecture** shows the chosen op on every node and the kept edges, their width
  following the ``score`` the decoder recorded.
- A ``cell`` node's nested body is drawn as a cluster of its own below the grid; cells whose bodies
  are alike (a repeated cell, as Auto-DeepLab's shared cell) get one cluster, not one each.
- A graph whose space names its own decoder (``graph.graph["decoder"]``, e.g. Auto-DeepLab's Viterbi
  path) has the edges *that* decoder keeps drawn dark: the chosen trellis path.
- :func:`render` also writes the cell on its own, ``<name>_cell.<fmt>`` next to the picture, when the
  graph has cells (:func:`render_cell`: the body of the first cell, scored edges and ops included).

Formats by suffix: ``.svg``, ``.png``, ``.pdf``, ``.dot``. If Graphviz's programs are missing (the
``graphviz`` Python package only writes DOT; ``dot`` and ``neato`` lay it out), the DOT source is
written next to the requested file instead and a warning saying how to install Graphviz is printed
to stderr, once per process however many pictures follow: drawing never fails a search.
:func:`graphviz_available` says whether pictures can be drawn; :func:`picture` draws one in memory.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import networkx as nx

from archgraph.core.choices import discover_choices
from archgraph.errors import ArchgraphError
from archgraph.core.graph import node_spec
from archgraph.io import atomic_write_bytes, atomic_write_text

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz) to get pictures"

KIND_COLOURS = {"input": "#e0e0e0", "stem": "#cfe2f3", "cell": "#d9ead3", "head": "#fce5cd"}
SCALE_COLOURS = {4: "#dbe9f6", 8: "#d6efd6", 16: "#fff2cc", 32: "#f4d7e3"}
X_STEP, Y_STEP = 1.9, 1.15  # inches between grid columns (layers) and rows (scales)


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
    """Whether Graphviz's layout programs are on ``PATH`` (``neato`` for the grid, ``dot`` for cells)."""
    return shutil.which("dot") is not None and shutil.which("neato") is not None


def _warn_once(text: str) -> None:
    global _graphviz_warned
    if not _graphviz_warned:
        _graphviz_warned = True
        print(f"warning: {text}", file=sys.stderr)


def short_op(name: str) -> str:
    """``mbconv_k5_r6`` -> ``mbconv k5 r6``: readable inside a small node box."""
    return name.replace("_", " ")


def _edge_probabilities(graph: nx.DiGraph, scores: Mapping[str, Any] | None) -> tuple[dict[tuple[str, str], float], set[tuple[str, str]], dict[str, tuple[str, float]]]:
    """(edge -> softmax(beta) entry, edges the decoder keeps, node -> (best op, its probability))."""
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
    kept: set[tuple[str, str]] = set()
    # Draw exactly what decoding keeps (the space's own rule if it has one; else top-k + BFS, so
    # inputs of nodes that do not reach the head stay light).
    from archgraph.core.decode import decode

    try:
        derived = decode(graph, ops, inputs)
    except (ArchgraphError, KeyError):
        return probs, kept, best  # partial scores: draw what they say, emphasise nothing
    kept.update((u, v) for u, v in derived.edges if (u, v) in probs)
    return probs, kept, best


def _positions(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Grid position per node; nodes sharing a (layer, scale) cell are spread vertically."""
    cells: dict[tuple[int, int], list[str]] = {}
    for n in graph.nodes:
        spec = node_spec(graph, n)
        cells.setdefault((spec.layer, spec.scale), []).append(n)
    pos = {}
    for (layer, scale), members in cells.items():
        row = math.log2(scale)
        # cell nodes (hierarchical spaces) sit half a column left of the node they feed
        cell_members = [n for n in members if graph.nodes[n].get("kind") == "cell"]
        others = [n for n in members if graph.nodes[n].get("kind") != "cell"]
        for group, shift in ((others, 0.0), (cell_members, -0.5)):
            for i, n in enumerate(group):
                offset = (i - (len(group) - 1) / 2) * 0.45
                pos[n] = ((layer + shift) * X_STEP, -(row + offset) * Y_STEP)
    return pos


def _node_label(graph: nx.DiGraph, n: str, best: Mapping[str, tuple[str, float]]) -> str:
    spec = node_spec(graph, n)
    where = f"{n}\\n1/{spec.scale} · {spec.channels}ch"
    if spec.kind == "input":
        return f"{n}\\n3ch"
    if spec.kind == "cell":  # many per grid point in hierarchical spaces: keep the box small (id in the tooltip)
        return f"cell\\n{spec.channels}ch"
    if n in best:
        op, p = best[n]
        return f"{where}\\n{short_op(op)} ({p:.2f})"
    if len(spec.ops) == 1:
        return f"{where}\\n{short_op(spec.ops[0])}"
    return f"{where}\\n{len(spec.ops)} candidate ops"


def _node_colour(graph: nx.DiGraph, n: str) -> str:
    spec = node_spec(graph, n)
    if spec.kind in KIND_COLOURS:
        return KIND_COLOURS[spec.kind]
    return SCALE_COLOURS.get(spec.scale, "#eeeeee")


def _alpha_hex(p: float) -> str:
    return f"{int(round(40 + 215 * min(max(p, 0.0), 1.0))):02x}"


def to_dot(graph: nx.DiGraph, scores: Mapping[str, Any] | None = None, title: str | None = None) -> str:
    """The DOT source of ``graph`` (see the module docstring for what is drawn how)."""
    import graphviz

    probs, kept, best = _edge_probabilities(graph, scores)
    supernet = any(node_spec(graph, n).has_op_choice or node_spec(graph, n).has_input_choice for n in graph.nodes)
    dot = graphviz.Digraph(name="archgraph", engine="neato")
    dot.attr("graph", splines="false", outputorder="edgesfirst", fontname="Helvetica", labelloc="t", fontsize="18",
             label=title or str(graph.graph.get("name", "")), pad="0.3")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10", margin="0.06,0.03")
    dot.attr("edge", arrowsize="0.5")
    pos = _positions(graph)
    for n in graph.nodes:
        x, y = pos[n]
        dot.node(n, _node_label(graph, n, best), fillcolor=_node_colour(graph, n), pos=f"{x:.3f},{y:.3f}!", tooltip=n)
    # Widths are relative to the strongest input of the same node: a node with 56 candidate inputs
    # spreads its probability thinner than one with 4, yet its favourites should look as strong.
    node_max: dict[str, float] = {}
    for (_, v), p in probs.items():
        node_max[v] = max(node_max.get(v, 0.0), p)
    for u, v, attrs in graph.edges(data=True):
        if (u, v) in probs:  # a candidate edge of a scored supernet
            p = probs[(u, v)]
            strong = (u, v) in kept
            rel = p / (node_max[v] or 1.0)
            width = 1.2 + 2.8 * rel if strong else 0.3 + 1.2 * rel * rel
            colour = ("#1f4e9a" + _alpha_hex(rel)) if strong else ("#7f7f7f" + _alpha_hex(0.25 * rel * rel))
            dot.edge(u, v, penwidth=f"{width:.2f}", color=colour, tooltip=f"{u} -> {v}: p={p:.3f}")
        elif attrs.get("kind") == "candidate":  # an unscored supernet: every candidate alike
            dot.edge(u, v, penwidth="0.3", color="#9e9e9e80")
        elif attrs.get("score") is not None:  # a derived edge, as strong as the decoder found it
            p = float(attrs["score"])
            width = 0.8 + 2.5 * min(max(p, 0.0), 1.0)  # scores are probabilities; a rank-like score caps
            dot.edge(u, v, penwidth=f"{width:.2f}", color="#1f4e9a", tooltip=f"{u} -> {v}: p={p:.3f}")
        else:
            dot.edge(u, v, penwidth="1.0" if not supernet else "0.8", color="#404040")
    drawn: set[str] = set()
    for n in graph.nodes:  # nested cell bodies, each distinct one as its own cluster under the grid
        body = node_spec(graph, n).body
        if body is not None:
            signature = _body_signature(body)
            if signature in drawn:
                continue
            drawn.add(signature)
            lowest = min(y for _, y in pos.values()) + 2.5 * Y_STEP - 1.0 * len(drawn)  # below the grid
            _add_body_cluster(dot, n, body, (pos[n][0], lowest))
    return dot.source


def _body_signature(body: nx.DiGraph) -> str:
    """Bodies with the same nodes, ops, labels and edges draw alike (widths may differ)."""
    nodes = [(n, tuple(body.nodes[n].get("ops", ())), body.nodes[n].get("label")) for n in body.nodes]
    return repr((nodes, sorted(body.edges)))


def first_cell(graph: nx.DiGraph) -> str | None:
    return next((n for n in graph.nodes if node_spec(graph, n).body is not None), None)


def cell_to_dot(graph: nx.DiGraph, scores: Mapping[str, Any] | None = None, title: str | None = None) -> str:
    """The body of ``graph``'s first cell as a picture of its own (left to right by block).

    With scores, each op-choice node shows its best op and probability and, for a graph that names a
    decoder, the edges and ops the decoded cell keeps are drawn dark.
    """
    import graphviz

    cell = first_cell(graph)
    if cell is None:
        raise ArchgraphError(f"graph {graph.graph.get('name')!r} has no cell with a nested body to draw")
    body = node_spec(graph, cell).body
    kept_nodes: set[str] | None = None
    ops = (scores or {}).get("ops", {})
    if scores and graph.graph.get("decoder"):
        from archgraph.core.decode import decode

        try:
            derived = decode(graph, ops, scores.get("inputs", {}))
            cells = [n for n in derived.nodes if node_spec(derived, n).body is not None]
            if cells:
                kept_nodes = set(node_spec(derived, cells[0]).body.nodes)
        except (ArchgraphError, KeyError):
            kept_nodes = None
    dot = graphviz.Digraph(name="cell", engine="dot")
    dot.attr("graph", rankdir="LR", fontname="Helvetica", labelloc="t", fontsize="16",
             label=title or f"cell of {graph.graph.get('name', '')} ({cell})")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="10")
    for n in body.nodes:
        spec = node_spec(body, n)
        label = spec.label or n
        if spec.has_op_choice and label in ops:
            values = ops[label]
            i = max(range(len(values)), key=lambda j: (values[j], -j))
            text = f"{n}\\n{short_op(spec.ops[i])} ({values[i]:.2f})"
        elif spec.has_op_choice:
            text = f"{n}\\n{len(spec.ops)} candidate ops"
        else:
            text = f"{n}\\n{short_op(spec.ops[0]) if spec.ops else spec.kind}"
        faded = kept_nodes is not None and n not in kept_nodes
        dot.node(n, text, fillcolor="#f3f3f3" if faded else KIND_COLOURS.get(spec.kind, "#dbe9f6"), color="#bbbbbb" if faded else "#404040",
                 fontcolor="#999999" if faded else "#000000")
    for u, v in body.edges:
        faded = kept_nodes is not None and (u not in kept_nodes or v not in kept_nodes)
        dot.edge(u, v, color="#cccccc" if faded else "#1f4e9a", penwidth="0.6" if faded else "1.4")
    return dot.source


def render_cell(graph: nx.DiGraph, output: str | Path, scores: Mapping[str, Any] | None = None, title: str | None = None) -> RenderResult:
    """Draw the first cell's body of ``graph`` to ``output`` (format from its suffix)."""
    return _write(cell_to_dot(graph, scores, title), Path(output), "dot")


def _add_body_cluster(dot, owner: str, body: nx.DiGraph, anchor: tuple[float, float]) -> None:
    bottom = anchor[1] - 2.5 * Y_STEP
    with dot.subgraph(name=f"cluster_{owner}") as sub:
        sub.attr(label=f"cell of {owner}", style="dashed")
        for i, n in enumerate(body.nodes):
            spec = node_spec(body, n)
            ops = spec.ops[0] if len(spec.ops) == 1 else f"{len(spec.ops)} ops"
            sub.node(f"{owner}.{n}", f"{n}\\n{short_op(ops) if spec.ops else spec.kind}", fillcolor="#f3f3f3", pos=f"{anchor[0] + i * 1.2:.3f},{bottom:.3f}!")
        for u, v in body.edges:
            sub.edge(f"{owner}.{u}", f"{owner}.{v}", color="#606060")


def render(graph: nx.DiGraph, output: str | Path, scores: Mapping[str, Any] | None = None, title: str | None = None) -> RenderResult:
    """Draw ``graph`` to ``output`` (format from its suffix); never raises for a missing Graphviz.

    A graph with cells also gets its cell drawn on its own, ``<stem>_cell<suffix>`` (``extra``).
    """
    output = Path(output)
    _check_format(output)
    source = to_dot(graph, scores, title)
    result = _write(source, output, "neato")
    if first_cell(graph) is None:
        return result
    cell_out = output.with_name(f"{output.stem}_cell{output.suffix}")
    cell = _write(cell_to_dot(graph, scores, f"cell of {title or graph.graph.get('name', '')}"), cell_out, "dot")
    return RenderResult(result.path, None, (cell.path,), result.drawn)


def picture(graph: nx.DiGraph, fmt: str = "svg", scores: Mapping[str, Any] | None = None, title: str | None = None) -> bytes | None:
    """``graph`` drawn as ``fmt`` bytes, in memory (no file); ``None`` (and the warning, once) when
    Graphviz is missing or fails."""
    return _pipe(to_dot(graph, scores, title), "neato", fmt, f"this {fmt} picture")


def _check_format(output: Path) -> str:
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchgraphError(f"{output}: unknown picture format {fmt!r}; use one of {', '.join('.' + f for f in FORMATS)}")
    return fmt


def _pipe(source: str, engine: str, fmt: str, what: str) -> bytes | None:
    import graphviz

    try:
        return graphviz.Source(source, engine=engine).pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        _warn_once(f"Graphviz is not installed (no `{engine}` program on PATH), so {what} and every further picture is "
                   f"written as DOT source (a .dot file) instead; {INSTALL_HINT}, then draw them with `archgraph render` "
                   "(`archgraph report RUN` draws a search run's pictures)")
    except graphviz.CalledProcessError as exc:  # a picture Graphviz cannot lay out: said for each one
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        first = stderr.strip().splitlines()[:1]
        print(f"warning: Graphviz's `{engine}` failed on {what} ({first[0] if first else f'exit status {exc.returncode}'}); "
              "its DOT source is written instead", file=sys.stderr)
    return None


def _write(source: str, output: Path, engine: str) -> RenderResult:
    fmt = _check_format(output)
    if fmt == "dot":
        return RenderResult(atomic_write_text(output, source))
    data = _pipe(source, engine, fmt, output.name)
    if data is None:
        return RenderResult(atomic_write_text(output.with_suffix(".dot"), source), drawn=False)
    return RenderResult(atomic_write_bytes(output, data))
