"""Auto-DeepLab's hierarchical search space (Liu, Chen, Schroff, Adam, Hua, Yuille, Fei-Fei,
"Auto-DeepLab: Hierarchical Neural Architecture Search for Semantic Image Segmentation", CVPR 2019,
arXiv:1901.02985). There is no official code; the details below follow the paper, checked against the
widely used reimplementations (without their known bugs, e.g. a cell decode that can keep ``none``).

**Network level** (``connectivity: trellis``, the paper): a stem takes the image to 1/4 (``stem_s2``
then ``stem_s4`` = layer 0). Layer l = 1..L has a node ``H(l, s)`` per scale s in {4, 8, 16, 32} that
is reachable from the stem (s <= 4 * 2^l). ``H(l, s)`` sums the cells ``L{l}_s{s}_from{s'}`` fed by
the previous layer's ``H(l-1, s')`` for s' in {s/2, s, 2s} (where it exists), each cell with its own
weights and taking ``H(l-2, s)`` as its second input (Eq. 5-6). The beta of those paths is
normalised over the *outgoing* directions of each source ``H(l-1, s')`` (``graph.graph["beta_groups"]``,
see :mod:`archgraph.core.choices`). Inner width at scale s is ``F * s / 4``; a cell outputs the
concatenation of its B blocks, ``B * F * s / 4`` channels.

**Cell level**: a nested graph (the cell node's ``body``) of B blocks; block i sums one edge from each
earlier state (the two cell inputs and blocks 0..i-1), every edge an op choice over the Auto-DeepLab
set (3x3/5x5 separable conv, 3x3/5x5 dilated conv, 3x3 avg/max pool, skip, none). Every cell of the
trellis shares one alpha (the edges' choice labels ``cell_b{i}_{src}`` are shared).

**Head**: ASPP on every scale of the last layer, dilation ``aspp_rate / s`` (96/s: 24, 12, 6, 3), each
projected to the classes, upsampled to the image and summed.

**Decoding** (the ``autodeeplab`` decoder this module registers): the network-level path by Viterbi
over the outgoing-normalised beta (the most probable sequence of scales from the stem to the last
layer); every cell as in DARTS: per block the two incoming edges with the strongest non-``none`` op,
each with its best non-``none`` op. In the derived network a cell's second input is the path's cell
two layers back (as Auto-DeepLab's retraining network does).

``connectivity: dense`` is the paper's transfer question asked of DCNAS's space: every node of layer l
takes cells from every node of all earlier layers (all four scales at every layer), incoming softmax
over beta and the top ``keep_inputs`` paths per node, decoded by BFS; cells are decoded as above. A
cell fed by a node of layer l' takes as its second input the node of layer l'-1 (the trellis rule
when l' = l-1).

Simplifications (docs/spaces.md): a cell's inputs are aligned by archgraph's shape-alignment branches
(1x1 conv+BN, stride-2 3x3 conv+BN+ReLU down, 1x1 conv+BN + bilinear up) instead of ReLU-conv-BN /
factorized reduce; pooling candidates carry no extra batch norm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from archgraph.core.choices import ChoicePoints, discover_choices, qualify
from archgraph.core.decode import SUPERNET_ONLY_ATTRS, Scores, default_decisions, derive_graph, register_decoder
from archgraph.configtools import CheckedParams, bounded, name_list, one_of
from archgraph.errors import GraphError
from archgraph.core.graph import NodeSpec, add_edge, add_node, head_node, inputs_of, new_graph, node_spec, validate
from archgraph.core.ops import ASPP, OPS, check_known_ops, known_ops, register_op
from archgraph.core.registry import register_space

SCALES = (4, 8, 16, 32)
NONE = "none"
CELL_OPS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect", NONE)
CELL_KEEP = 2  # inputs per block kept by the decoder (DARTS / Auto-DeepLab)
DECODER = "autodeeplab"


# --------------------------------------------------------------------------------------------------
# Ops this space needs (registered here, not in archgraph/core/ops.py)


class Zero(nn.Module):
    """The ``none`` candidate: a zero output of the input's shape (DARTS ``Zero`` with stride 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class SelectInput(nn.Module):
    """A cell input: picks the k-th aligned input from the list the cell's body receives."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        return xs[self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


class Concat(nn.Module):
    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class ASPPSumHead(nn.Module):
    """Auto-DeepLab's search head: per input scale s an ASPP with dilation rate/s and a classifier,
    each up-sampled to the node's resolution, summed."""

    def __init__(self, node: NodeSpec, inputs: Sequence[NodeSpec], rate: int):
        super().__init__()
        self.factors = [s.scale // node.scale for s in inputs]
        self.aspp = nn.ModuleList([ASPP(s.channels, s.channels, rates=(max(1, rate // s.scale),)) for s in inputs])
        self.classify = nn.ModuleList([nn.Conv2d(s.channels, node.channels, 1) for s in inputs])

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = None
        for x, aspp, cls, f in zip(xs, self.aspp, self.classify, self.factors):
            y = cls(aspp(x))
            if f > 1:
                y = F.interpolate(y, scale_factor=f, mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        return out


def _register_ops() -> None:
    if NONE in OPS:  # module re-imported (tests reloading plug-ins)
        return
    register_op(NONE, parameter_free=True, doc="zero (Auto-DeepLab/DARTS 'none'; never kept by decoding)")(lambda node, inputs: Zero())
    for k in (0, 1):
        register_op(f"cell_input_{k}", doc=f"a cell body's input {k} (the aligned {'H(l-2)' if k == 0 else 'H(l-1)'})")(lambda node, inputs, k=k: SelectInput(k))

    @register_op("cell_concat", takes_list=True, doc="a cell body's output: concatenation of its blocks")
    def _concat(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
        total = sum(s.channels for s in inputs)
        if total != node.channels:
            raise GraphError(f"cell_concat: inputs have {total} channels in all, the node declares {node.channels}")
        return Concat()

    @register_op("nested_cell", doc="marks a cell node whose op is its nested body graph")
    def _nested(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
        raise GraphError("'nested_cell' is the op of a cell node; the compiler builds the cell from its body")

    for rate in (96,):
        register_op(f"head_aspp_sum{rate}", takes_list=True, doc=f"Auto-DeepLab head: ASPP (dilation {rate}/scale) per scale, summed")(lambda node, inputs, rate=rate: ASPPSumHead(node, inputs, rate))


_register_ops()


# --------------------------------------------------------------------------------------------------
# The builder


@dataclass
class AutoDeepLabParams(CheckedParams):
    """Hyper-parameters of Auto-DeepLab's space (the ``space`` section when ``space.name: autodeeplab``);
    each field declares what it allows, checked when the parameters are built (:class:`CheckedParams`)."""

    section = "space"
    layers: int = bounded(12, 1)  # L (paper: 12)
    base_channels: int = bounded(8, 1)  # F: inner width F*s/4 at scale s (paper: 8)
    blocks: int = bounded(5, 1)  # B blocks per cell (paper: 5); a cell outputs B*F*s/4 channels
    connectivity: str = one_of("trellis", "dense")  # trellis (paper: s/2, s, 2s of the previous layer) | dense (DCSS's: every earlier node)
    keep_inputs: int = bounded(2, 1)  # dense only: paths kept per node by the BFS decoder
    # candidate ops of every cell edge; 'none' alone would leave every block without an input
    ops: list[str] = name_list(CELL_OPS, among=known_ops, what="op", listing="see `archgraph ops`", besides=(NONE,))
    head: str = one_of("aspp_sum96")  # ASPP with dilation 96/s per scale, summed (the paper's search head)
    num_classes: int = bounded(0, 0)  # 0: taken from the dataset


def inner_width(base: int, scale: int) -> int:
    return base * scale // 4


def node_id(layer: int, scale: int) -> str:
    if layer == -1:
        return "stem_s2"
    if layer == 0:
        return "stem_s4"
    return f"L{layer}_s{scale}"


def cell_id(layer: int, scale: int, source: str) -> str:
    return f"L{layer}_s{scale}_from_{source}"


def scales_at(layer: int, connectivity: str) -> tuple[int, ...]:
    """Scales present at ``layer``: the stem is 1/4 only; the trellis widens by one scale per layer."""
    if layer <= 0:
        return (4,)
    if connectivity == "dense":
        return SCALES
    return tuple(s for s in SCALES if s <= 4 * 2**layer)


def prev_prev(layer: int, scale: int, connectivity: str) -> str:
    """H(l-2, s); where layer l-2 lacks scale s, its coarsest node finer than s (the stem for l = 1)."""
    if layer - 2 < 0:
        return node_id(layer - 2, 4)
    return node_id(layer - 2, max(s for s in scales_at(layer - 2, connectivity) if s <= scale))


def cell_body(width: int, blocks: int, ops: Sequence[str]) -> nx.DiGraph:
    """The searchable cell: inputs c0 = H(l-2), c1 = H(l-1) (aligned), B blocks, concat of the blocks.

    Block i sums one edge node per earlier state; each edge node is an op choice whose label is shared
    by every cell (one alpha for the whole trellis).
    """
    g = new_graph(f"cell-B{blocks}-C{width}")
    add_node(g, "inputs", NodeSpec("input", 0, 1, width))
    for k in (0, 1):
        add_node(g, f"c{k}", NodeSpec("stem", 1, 1, width, (f"cell_input_{k}",)))
        add_edge(g, "inputs", f"c{k}")
    states = ["c0", "c1"]
    for i in range(blocks):
        block = f"b{i}"
        edges = []
        for src in states:
            e = f"{block}_{src}"
            add_node(g, e, NodeSpec("fusion", i + 2, 1, width, tuple(ops), label=f"cell_{e}"))
            add_edge(g, src, e)
            edges.append(e)
        add_node(g, block, NodeSpec("fusion", i + 2, 1, width, ("skip_connect",)))
        for e in edges:
            add_edge(g, e, block)
        states.append(block)
    add_node(g, "out", NodeSpec("head", blocks + 2, 1, blocks * width, ("cell_concat",)))
    for i in range(blocks):
        add_edge(g, f"b{i}", "out")
    return g


@register_space("autodeeplab", AutoDeepLabParams)
def build_autodeeplab(p: AutoDeepLabParams) -> nx.DiGraph:
    """Auto-DeepLab: an L-layer trellis over 1/4..1/32 of cells sharing one searched cell (Liu et al. 2019)."""
    num_classes = p.num_classes or 19
    B, Fc = p.blocks, p.base_channels
    g = new_graph(
        f"autodeeplab-L{p.layers}-F{Fc}-B{B}-{p.connectivity}",
        space="autodeeplab",
        params=asdict(p),
        num_classes=num_classes,
        decoder=DECODER,
    )
    add_node(g, "image", NodeSpec("input", 0, 1, 3))
    add_node(g, "stem_s2", NodeSpec("stem", 0, 2, max(1, B * Fc // 2), ("conv3x3",)))
    add_node(g, "stem_s4", NodeSpec("stem", 0, 4, B * Fc, ("conv3x3",)))
    add_edge(g, "image", "stem_s2")
    add_edge(g, "stem_s2", "stem_s4")
    bodies: dict[int, nx.DiGraph] = {}
    groups: dict[str, list[list[str]]] = {}
    for layer in range(1, p.layers + 1):
        for s in scales_at(layer, p.connectivity):
            if p.connectivity == "trellis":
                sources = [node_id(layer - 1, s2) for s2 in (s // 2, s, 2 * s) if s2 in scales_at(layer - 1, p.connectivity)]
            else:
                sources = [node_id(l, s2) for l in range(0, layer) for s2 in scales_at(l, p.connectivity)]
            width = inner_width(Fc, s)
            if s not in bodies:
                bodies[s] = cell_body(width, B, p.ops)
            target = node_id(layer, s)
            cells = []
            for src in sources:
                c = cell_id(layer, s, src)
                add_node(g, c, NodeSpec("cell", layer, s, B * width, ("nested_cell",), body=bodies[s].copy()))
                # the second input: one layer before the source (trellis: H(l-2, s); dense: so it never is the source)
                add_edge(g, prev_prev(g.nodes[src]["layer"] + 1, s, p.connectivity), c)
                add_edge(g, src, c)
                cells.append(c)
                groups.setdefault(src, []).append([target, c])
            keep = 1 if p.connectivity == "trellis" else min(p.keep_inputs, len(cells))
            add_node(g, target, NodeSpec("fusion", layer, s, B * width, ("skip_connect",), keep_inputs=keep))
            for c in cells:
                add_edge(g, c, target, kind="candidate")
    if p.connectivity == "trellis":
        g.graph["beta_groups"] = list(groups.values())
    add_node(g, "head", NodeSpec("head", p.layers + 1, 1, num_classes, (f"head_{p.head}",)))
    for s in scales_at(p.layers, p.connectivity):
        add_edge(g, node_id(p.layers, s), "head")
    return g


# --------------------------------------------------------------------------------------------------
# Decoding: Viterbi over the trellis, DARTS's rule in the cell


def _argmax(values: Sequence[float], allowed: Sequence[int]) -> int:
    return max(allowed, key=lambda i: (values[i], -i))


def cell_rule(graph: nx.DiGraph, op_scores: Scores, keep: int = CELL_KEEP) -> tuple[dict[str, int], dict[str, list[tuple[str, float]]]]:
    """The cell decode shared by every cell: (op index per edge label, kept edge nodes per block).

    A block keeps the ``keep`` incoming edges whose best non-``none`` op is strongest (ties: the
    earlier edge); a kept edge takes its best non-``none`` op. ``none`` is never chosen, unless it is
    an edge's only candidate (then the edge is never kept). Keyed by the body's local node ids.
    """
    body = next((node_spec(graph, n).body for n in graph.nodes if node_spec(graph, n).body is not None), None)
    if body is None:
        return {}, {}
    op_idx: dict[str, int] = {}
    kept: dict[str, list[tuple[str, float]]] = {}
    for n in body.nodes:
        preds = inputs_of(body, n)
        choice_preds = [e for e in preds if node_spec(body, e).has_op_choice]
        if not choice_preds or len(choice_preds) != len(preds):
            continue  # not a block: its inputs are not all op-choice edges
        strength = {}
        for e in choice_preds:
            spec = node_spec(body, e)
            label = spec.label or e
            if label not in op_scores:
                raise GraphError(f"no op scores for cell edge {label!r}; the scores do not belong to this graph")
            values = op_scores[label]
            allowed = [i for i, o in enumerate(spec.ops) if o != NONE]
            if not allowed:
                strength[e] = (-math.inf, None)
                continue
            best = _argmax(values, allowed)
            strength[e] = (float(values[best]), best)
            op_idx[label] = best
        usable = [e for e in choice_preds if strength[e][1] is not None]
        ranked = sorted(usable, key=lambda e: (-strength[e][0], choice_preds.index(e)))[:keep]
        if not ranked:
            raise GraphError(f"cell block {n!r}: every incoming edge offers only 'none'; add real ops to space.ops")
        kept[n] = [(e, strength[e][0]) for e in sorted(ranked, key=choice_preds.index)]
    return op_idx, kept


def viterbi(graph: nx.DiGraph, input_scores: Scores) -> list[int]:
    """The most probable scale path [4, s_1, ..., s_L] through the trellis: the product of the
    transition probabilities (the input scores of ``H(l, s)`` for the cell from ``H(l-1, s')``)."""
    layers = int(graph.graph["params"]["layers"])
    best: dict[int, tuple[float, list[int]]] = {4: (0.0, [4])}
    for layer in range(1, layers + 1):
        nxt: dict[int, tuple[float, list[int]]] = {}
        for s in scales_at(layer, "trellis"):
            target = node_id(layer, s)
            label = graph.nodes[target].get("label") or target
            preds = inputs_of(graph, target)
            values = input_scores[label]
            options = []
            for j, c in enumerate(preds):
                src_scale = graph.nodes[inputs_of(graph, c)[1]]["scale"]
                if src_scale in best:
                    p = float(values[j])
                    options.append((best[src_scale][0] + (math.log(p) if p > 0 else -math.inf), src_scale))
            if options:
                score, src = max(options, key=lambda o: (o[0], -o[1]))  # ties: the finer source
                nxt[s] = (score, best[src][1] + [s])
        best = nxt
    final = max(best, key=lambda s: (best[s][0], -s))
    return best[final][1]


def _decisions(choices: ChoicePoints, op_scores: Scores, input_scores: Scores, keep: int | None = None) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Subnet-mode indices: the decoded cell everywhere (dropped edges run ``none``); the Viterbi
    path's inputs on the path, each other node's best input (they still run in the supernet)."""
    graph = choices.graph
    op_idx, input_idx = default_decisions(choices, op_scores, input_scores, keep)
    if graph is None:
        return op_idx, input_idx
    cell_ops, kept = cell_rule(graph, op_scores)
    body = next(node_spec(graph, n).body for n in graph.nodes if node_spec(graph, n).body is not None)
    kept_edges = {e for v in kept.values() for e, _ in v}
    for n in body.nodes:
        spec = node_spec(body, n)
        if spec.has_op_choice:
            label = spec.label or n
            if n in kept_edges:
                op_idx[label] = cell_ops[label]
            elif NONE in spec.ops:
                op_idx[label] = spec.ops.index(NONE)
    if graph.graph["params"]["connectivity"] == "trellis":
        path = viterbi(graph, input_scores)
        for layer in range(1, len(path)):
            target = node_id(layer, path[layer])
            cells = inputs_of(graph, target)
            want = cell_id(layer, path[layer], node_id(layer - 1, path[layer - 1]))
            input_idx[graph.nodes[target].get("label") or target] = [cells.index(want)]
    return op_idx, input_idx


@register_decoder(DECODER, decisions=_decisions, rewires=True)
def decode_autodeeplab(graph: nx.DiGraph, op_scores: Scores, input_scores: Scores, keep: int | None = None) -> nx.DiGraph:
    """Viterbi path (trellis) or top-k BFS (dense) at the network level; DARTS's rule in every cell."""
    cell_ops, cell_kept = cell_rule(graph, op_scores, keep or CELL_KEEP)
    chosen: dict[str, str] = {}
    kept: dict[str, list[tuple[str, float]]] = {}
    cells = [n for n in graph.nodes if node_spec(graph, n).body is not None]

    def reduce_cell(c: str) -> None:
        body = node_spec(graph, c).body
        for n in body.nodes:
            spec = node_spec(body, n)
            if spec.has_op_choice:
                chosen[qualify(c, n)] = spec.ops[cell_ops[spec.label or n]] if (spec.label or n) in cell_ops else spec.ops[0]
        for block, edges in cell_kept.items():
            kept[qualify(c, block)] = [(qualify(c, e), s) for e, s in edges]

    if graph.graph["params"]["connectivity"] == "dense":
        choices = discover_choices(graph)
        _, input_idx = default_decisions(choices, {c.label: [1.0] * len(c.candidates) for c in choices.ops}, input_scores, None)
        for c in choices.inputs:
            kept[c.node] = [(c.candidates[i], float(input_scores[c.label][i])) for i in input_idx[c.label]]
        for c in cells:
            reduce_cell(c)
        derived = derive_graph(graph, chosen, kept)
        validate(derived)
        return derived
    return _derive_path(graph, viterbi(graph, input_scores), input_scores, reduce_cell, chosen, kept)


def _derive_path(graph: nx.DiGraph, path: list[int], input_scores: Scores, reduce_cell, chosen: dict, kept: dict) -> nx.DiGraph:
    """The single-path network: stem, one cell per layer fed by the path's two previous nodes, head."""
    attrs = {k: v for k, v in graph.graph.items() if k != "name" and k not in SUPERNET_ONLY_ATTRS}
    derived = new_graph(f"{graph.graph.get('name', 'autodeeplab')}-derived", path=list(path), **attrs)
    for n in ("image", "stem_s2", "stem_s4"):
        add_node(derived, n, node_spec(graph, n))
    add_edge(derived, "image", "stem_s2")
    add_edge(derived, "stem_s2", "stem_s4")
    chain = ["stem_s2", "stem_s4"]  # H on the path at layers -1, 0, 1, ...
    for layer in range(1, len(path)):
        s, target = path[layer], node_id(layer, path[layer])
        c = cell_id(layer, s, chain[-1])
        reduce_cell(c)
        body = derive_graph(node_spec(graph, c).body, chosen, kept, c)
        spec = node_spec(graph, c)
        add_node(derived, c, NodeSpec(spec.kind, spec.layer, spec.scale, spec.channels, spec.ops, None, None, body))
        add_edge(derived, chain[-2], c)
        add_edge(derived, chain[-1], c)
        t = node_spec(graph, target)
        add_node(derived, target, NodeSpec(t.kind, t.layer, t.scale, t.channels, t.ops))
        label = t.label or target
        add_edge(derived, c, target, score=float(input_scores[label][inputs_of(graph, target).index(c)]))
        chain.append(target)
    h = node_spec(graph, head_node(graph))
    add_node(derived, "head", h)
    add_edge(derived, chain[-1], "head")
    validate(derived)
    check_known_ops(derived)
    return derived


def path_of(graph: nx.DiGraph) -> list[int] | None:
    """The scale path of a derived trellis architecture (``None`` for a supernet or dense graph)."""
    path = graph.graph.get("path")
    return list(path) if path else None
