"""Mainstream segmentation topologies as fixed architectures of DCSS (the DCNAS paper's Figure 2).

DCNAS argues that its densely connected space *contains* the hand-designed multi-scale networks:
FCN, the stacked hourglass, DeepLabv3 and HRNet are all sub-graphs of the dense layer x scale grid.
This module makes that concrete. Each preset picks, for every fusion node of a DCSS supernet, which
incoming connections it keeps and which candidate op it runs, then derives the architecture with the
decoder's own pruning step (:func:`archgraph.core.decode.derive_graph`: keep the chosen ops and edges,
BFS back from the head, drop what does not reach it). The result therefore has the supernet's node
ids, scales, channels and op candidates and only the supernet's connections, so
:func:`archgraph.core.archfile.check_in_space` accepts it and ``archgraph train`` trains it like any
searched architecture.

Shared by every preset (fixed by the space, not by the design): the stem pyramid (layer 0, scales
1/4..1/32) and the head, which aggregates the four nodes of the last layer. A preset's own *path* is
the chain of nodes that carries its main computation; the last layer's other nodes feed the head
with what the design would hand its decoder (FCN: skips from the path; DeepLabv3: the 1/16 features
only; hourglass: the up path's features; HRNet: its four streams).

Every node runs the same op (``op``, default ``mbconv_k3_r6`` when the space offers it, else the
space's first candidate), so presets differ from one another and from searched architectures only in
topology. The designs are simplified to the grid: one DCSS layer stands for one stage/block group,
a down-sampling step is a strided alignment branch, an up-sampling step a bilinear one.

- ``fcn``: one path down (1/4 -> 1/8 -> 1/16 -> 1/32, spread over the layers), then stays at 1/32;
  the head fuses it with skip features taken from the path at 1/4, 1/8 and 1/16 (FCN-8s's skips).
- ``hourglass``: down to 1/32 and back up to 1/4; every up node also takes the down path's node of
  the same scale (the hourglass's skip); with L >= 12 the hourglass is stacked (one per >= 6 layers).
- ``deeplabv3``: down to 1/16, then stays there (atrous convolution keeps output stride 16); the
  head sees only the 1/16 features (resampled to the four scales the DCSS head expects).
- ``hrnet``: all four scales kept at every layer, each node fusing all four scales of the previous
  layer (HRNet's repeated multi-resolution exchange; HRNet's progressive adding of branches stage by
  stage is not reproduced: DCSS's stem already provides all four scales).

Presets keep more than ``keep_inputs`` inputs where their design needs it (HRNet fuses 4): they lie
inside the space's connections, not necessarily among what a top-k decoder could derive.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping

import networkx as nx

from archgraph.core.graph import node_spec, validate
from archgraph.core.registry import register_preset
from archgraph.errors import ConfigError

SCALES = (4, 8, 16, 32)
PREFERRED_OP = "mbconv_k3_r6"

# A topology: layers L -> {fusion node id: [input node ids]} for every fusion node the design uses
# (each must be an existing connection of the dense space; unlisted nodes are dropped).
Topology = dict[str, list[str]]


@dataclass(frozen=True)
class Preset:
    name: str
    doc: str
    topology: Callable[[int], Topology]
    needs_dense: bool  # True when some kept connection skips layers


def _nid(layer: int, scale_index: int) -> str:
    from archgraph.spaces.dcss import node_id

    return node_id(layer, SCALES[scale_index])


def _spread(layers: int, target: int) -> list[int]:
    """Scale index of the path at layers 1..L when it descends from 1/4 to ``target`` one step per
    layer (layer 1 at 1/4), compressed (larger steps) when there are fewer layers than steps."""
    if layers > target:
        return [min(l - 1, target) for l in range(1, layers + 1)]
    return [round(target * l / layers) for l in range(1, layers + 1)]


def _last_layer_from(layers: int, path: list[int], pick: Callable[[int], str]) -> Topology:
    """Inputs of the last layer's off-path nodes (the head needs all four scales)."""
    return {_nid(layers, s): [pick(s)] for s in range(4) if s != path[-1]}


def _chain(path: list[int]) -> Topology:
    """The path as a chain: layer l's node takes layer l-1's path node (layer 0 = stem 1/4)."""
    topo: Topology = {}
    previous = _nid(0, 0)
    for layer, s in enumerate(path, start=1):
        topo[_nid(layer, s)] = [previous]
        previous = _nid(layer, s)
    return topo


def _latest_on_path(path: list[int], scale_index: int, before: int) -> str:
    """The last path node at ``scale_index`` in layers < ``before``, else the stem at that scale."""
    for layer in range(before - 1, 0, -1):
        if path[layer - 1] == scale_index:
            return _nid(layer, scale_index)
    return _nid(0, scale_index)


def fcn_topology(layers: int) -> Topology:
    path = _spread(layers, 3)
    topo = _chain(path)
    topo.update(_last_layer_from(layers, path, lambda s: _latest_on_path(path, s, layers)))
    return topo


def deeplabv3_topology(layers: int) -> Topology:
    # Reach 1/16 by layer L-1 where possible, so the last layer reads 1/16 features.
    path = _spread(layers - 1, 2) + [2] if layers > 1 else [2]
    topo = _chain(path)
    feature = _nid(layers - 1, path[-2]) if layers > 1 else _nid(0, 0)
    topo.update(_last_layer_from(layers, path, lambda s: feature))
    return topo


def _stack_sizes(layers: int) -> list[int]:
    """Layers per hourglass: one hourglass, or (L >= 12) as many as fit with >= 6 layers each."""
    stacks = max(1, layers // 6) if layers >= 12 else 1
    return [layers // stacks + (1 if i < layers % stacks else 0) for i in range(stacks)]


def _hourglass_path(layers: int) -> list[int]:
    """Scale indices of the hourglasses laid end to end over ``layers`` layers."""
    path: list[int] = []
    for size in _stack_sizes(layers):
        down = (size + 1) // 2  # layers going down (the last of them at 1/32)
        up = size - down  # layers coming back up (the last of them at 1/4)
        path += [round(3 * l / down) for l in range(1, down + 1)]
        path += [round(3 * (up - l) / up) for l in range(1, up + 1)]
    return path


def hourglass_topology(layers: int) -> Topology:
    if layers < 2:
        raise ConfigError("preset 'hourglass' needs space.layers >= 2 (one layer down, one up)")
    path = _hourglass_path(layers)
    scale_at = [0] + path  # layer 0: the hourglass's input, the stem at 1/4
    topo = _chain(path)
    # The skips: an up node also takes the node of its scale on the way down of the same hourglass
    # (that hourglass's input included: the stem, or the previous hourglass's 1/4 output).
    start = 1
    for size in _stack_sizes(layers):
        down = (size + 1) // 2
        for layer in range(start + down, start + size):
            s = scale_at[layer]
            skip = next((l for l in range(start + down - 1, start - 2, -1) if scale_at[l] == s), None)
            if skip is not None and _nid(skip, s) not in topo[_nid(layer, s)]:
                topo[_nid(layer, s)].append(_nid(skip, s))
        start += size
    topo.update(_last_layer_from(layers, path, lambda s: _latest_on_path(path, s, layers)))
    return topo


def hrnet_topology(layers: int) -> Topology:
    return {_nid(l, s): [_nid(l - 1, t) for t in range(4)] for l in range(1, layers + 1) for s in range(4)}


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("fcn", "FCN: one path down to 1/32, skips from 1/4-1/16 fused by the head", fcn_topology, True),
        Preset("hourglass", "stacked hourglass: down to 1/32 and back up, same-scale skips", hourglass_topology, True),
        Preset("deeplabv3", "DeepLabv3: down to 1/16, then stays at 1/16", deeplabv3_topology, False),
        Preset("hrnet", "HRNet: four scales at every layer, full cross-scale fusion", hrnet_topology, False),
    )
}


def derive_preset(name: str, supernet: nx.DiGraph, op: str | None = None) -> nx.DiGraph:
    """The DCSS design ``name`` (a key of :data:`PRESETS`) as a derived architecture of ``supernet``
    (a DCSS graph). Registered once per design as preset ``dcss/<name>``; callers go through the
    registry (``archgraph.core.spaces_api.build_preset``), which picks the supernet's own space.

    ``op`` is the op every fusion node runs (default: ``mbconv_k3_r6`` if the space offers it, else the
    first candidate). Raises :class:`ConfigError` when the space cannot hold the design (a
    ``previous``-connectivity space for designs with skips, an op the space does not offer).
    """
    from archgraph.core.decode import derive_graph
    from archgraph.core.ops import check_known_ops

    preset = PRESETS[name]
    if supernet.graph.get("space") != "dcss":
        raise ConfigError(f"preset {name!r} is a DCSS design; space.name is {supernet.graph.get('space')!r}. Use space.name=dcss")
    params: Mapping[str, Any] = supernet.graph.get("params") or {}
    layers = int(params.get("layers", 0))
    topology = preset.topology(layers)
    candidates = list(params.get("ops") or [])
    chosen = op or (PREFERRED_OP if PREFERRED_OP in candidates else candidates[0])
    if chosen not in candidates:
        raise ConfigError(f"preset {name!r}: op {chosen!r} is not a candidate of the space (space.ops: {', '.join(candidates)})")
    for node, sources in topology.items():
        for src in sources:
            if not supernet.has_edge(src, node):
                why = " (its skips span several layers; use space.connectivity=dense)" if preset.needs_dense else ""
                raise ConfigError(f"preset {name!r} needs the connection {src} -> {node}, which space {supernet.graph.get('name')!r} lacks{why}")
    fusion = [n for n in supernet.nodes if node_spec(supernet, n).kind == "fusion"]
    # Fusion nodes the design does not use keep one input so the pruning has a rule for them; the
    # BFS from the head drops them, as nothing kept leads from them to the head.
    kept = {n: [(src, 1.0) for src in topology.get(n, list(supernet.predecessors(n))[:1])] for n in fusion}
    arch = derive_graph(supernet, {n: chosen for n in fusion}, kept)
    missing = set(topology) - set(arch.nodes)
    if missing:  # a design node that does not reach the head: a bug in the topology, not user input
        raise ConfigError(f"preset {name!r} at L={layers}: nodes {sorted(missing)} do not reach the head")
    arch.graph["name"] = f"{supernet.graph.get('name', 'dcss')}-{name}"
    arch.graph["preset"] = name
    validate(arch)
    check_known_ops(arch)
    return arch


def _register_all() -> None:
    """Each design joins the registry as a preset of space ``dcss``, the way any space's presets do
    (``archgraph render --preset``, ``train --preset``, ``compare --baselines presets`` and
    ``archgraph spaces`` find them there)."""
    for preset in PRESETS.values():
        register_preset("dcss", preset.name, preset.doc)(partial(derive_preset, preset.name))


_register_all()
