"""Loading an architecture file (arch.yaml) that will be trained: schema, graph validity, and its space.

Why a loader of its own: a graph file can be well-formed YAML and a valid graph and still be wrong to
train: a supernet instead of a derived architecture, or an architecture edited by hand (or written
for other hyper-parameters) that is not part of the space it names. Each case is reported with the
reason before any data is loaded; nothing else is ever raised (the fuzz tests hold this).
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from archgraph.errors import ArchgraphError, GraphError
from archgraph.core.graph import has_choices, inputs_of, load, node_spec, split_inputs, validate


def load_architecture(path: str | Path, check_space: bool = True) -> nx.DiGraph:
    """The derived architecture in ``path``: a valid graph with no choice points, part of its space."""
    path = Path(path)
    graph = load(path)
    where = str(path)
    try:
        from archgraph.core.ops import check_known_ops

        validate(graph)
        check_known_ops(graph)  # loads the plug-ins first: a plug-in's (or Auto-DeepLab's) ops are registered when its module loads
        if has_choices(graph):
            raise GraphError(f"{where} is a supernet (it still has choice points), not an architecture; derive one with `archgraph search` (arch.yaml) or `archgraph sample`")
        if check_space:
            check_in_space(graph, where)
    except ArchgraphError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # malformed attribute values
        raise GraphError(f"{where}: malformed graph ({exc.__class__.__name__}: {exc})") from None
    return graph


def check_in_space(arch: nx.DiGraph, where: str = "architecture") -> None:
    """Every node and edge of ``arch`` must exist in the space it names (``graph.space`` + ``params``).

    Nodes must agree in kind, layer, scale, channels, fusion and up-sampling mode, their op must be one
    of the space node's candidates, every edge must be a connection the space has, and a node's fixed
    inputs in the space must be inputs of it in the file (a U-Net decoder node keeps its up-path). Graphs that name no registered
    space (hand-built ones) are not checked.
    """
    space_name = arch.graph.get("space")
    params = arch.graph.get("params")
    if not space_name or not isinstance(params, dict):
        return
    from archgraph.core.registry import SPACES, load_plugins
    from archgraph.core.spaces_api import build_space

    load_plugins()
    if space_name not in SPACES:
        raise GraphError(f"{where} names space {space_name!r}, which is not installed (see `archgraph spaces`)")
    try:
        space = build_space(space_name, params)
    except ArchgraphError as exc:
        raise GraphError(f"{where}: its space parameters are invalid: {exc}") from None
    from archgraph.core.decode import get_decoder

    decoder = get_decoder(arch)
    rewires = decoder is not None and decoder.rewires  # the space's own rule may add connections
    for n in arch.nodes:
        if n not in space:
            raise GraphError(f"{where}: node {n!r} is not part of space {space.graph.get('name')!r}; the file does not match its space")
        a, s = node_spec(arch, n), node_spec(space, n)
        for field in ("kind", "layer", "scale", "channels", "fusion", "upsample"):  # each changes the compiled node
            if getattr(a, field) != getattr(s, field):
                raise GraphError(f"{where}: node {n!r} has {field}={getattr(a, field)!r}, its space has {getattr(s, field)!r}")
        unknown = [op for op in a.ops if op not in s.ops]
        if unknown:
            raise GraphError(f"{where}: node {n!r} uses op {unknown[0]!r}, not a candidate of the space (candidates: {', '.join(s.ops)})")
        for p in inputs_of(arch, n):
            if not space.has_edge(p, n) and not rewires:
                raise GraphError(f"{where}: edge {p!r} -> {n!r} is not a connection of the space; the file does not match its space")
        if s.has_input_choice and not rewires:
            _check_slots(arch, space, n, where)


def _check_slots(arch: nx.DiGraph, space: nx.DiGraph, n: str, where: str) -> None:
    """A node with fixed inputs besides its input choice (or concat fusion) keeps its fixed inputs as
    ``fixed`` edges and its kept candidates as ``chosen`` ones: its concat conv has the space's shape."""
    fixed, _ = split_inputs(space, n)
    if not fixed and node_spec(space, n).fusion == "sum":
        return
    a_fixed, a_pooled = split_inputs(arch, n)
    if a_fixed != fixed or not a_pooled:
        raise GraphError(
            f"{where}: node {n!r} must keep its fixed inputs {fixed} as 'fixed' edges and at least one of its "
            f"candidates as a 'chosen' edge (found fixed {a_fixed}, chosen {a_pooled}); the file does not match its space"
        )
