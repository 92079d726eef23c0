"""DCSS: the densely connected search space of DCNAS (Zhang, Xu, Mo, Tan, Yang, Wang, Ren, "DCNAS:
Densely Connected Neural Architecture Search for Semantic Segmentation", CVPR 2021, arXiv:2003.11883).

A grid of fusion nodes M(s, l): scales s in {1/4, 1/8, 1/16, 1/32} with widths F, 2F, 4F, 8F, layers
l = 1..L. With ``connectivity: dense`` every node takes every node of all earlier layers (the stem
pyramid is layer 0), so the space has 16 * sum(l) = 8L(L+1) candidate connections; with
``connectivity: previous`` (the paper's ablation) only the previous layer: 16L connections. Every
fusion node has one op choice (six MobileNetV3 blocks: kernel 3/5/7 x expansion 3/6) and one input
choice (``keep_inputs`` edges survive decoding). A fixed stem builds the pyramid; a fixed head
aggregates the last layer's four scales and classifies at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from archgraph.configtools import CheckedParams, bounded, name_list, one_of
from archgraph.core.graph import NodeSpec, add_edge, add_node, new_graph
from archgraph.core.ops import MBCONV_OPS, known_ops
from archgraph.core.registry import register_space

SCALES = (4, 8, 16, 32)


@dataclass
class DCSSParams(CheckedParams):
    """Hyper-parameters of DCSS (the ``space`` config section when ``space.name: dcss``); each field
    declares what it allows, checked when the parameters are built (:class:`CheckedParams`)."""

    section = "space"
    layers: int = bounded(4, 1)  # L, number of fusion layers (the paper's best model: 14)
    base_channels: int = bounded(8, 1)  # F, width at 1/4; 1/8, 1/16, 1/32 get 2F, 4F, 8F (paper: 64)
    connectivity: str = one_of("dense", "previous")  # dense (every earlier layer) | previous (previous layer only)
    keep_inputs: int = bounded(2, 1, 4)  # inputs per fusion node kept by the BFS decoder (layer-1 nodes have only 4)
    ops: list[str] = name_list(MBCONV_OPS, among=known_ops, what="op", listing="see `archgraph ops`")  # candidate ops per node
    head: str = one_of("simple", "aspp")  # simple | aspp
    num_classes: int = bounded(0, 0)  # 0: taken from the dataset


def node_id(layer: int, scale: int) -> str:
    return f"stem_s{scale}" if layer == 0 else f"L{layer}_s{scale}"


def width(base: int, scale: int) -> int:
    return base * scale // 4


@register_space("dcss", DCSSParams)
def build_dcss(p: DCSSParams) -> nx.DiGraph:
    """DCNAS's densely connected space: 4 scales x L layers, every node fed by all earlier layers."""
    num_classes = p.num_classes or 19
    g = new_graph(f"dcss-L{p.layers}-F{p.base_channels}-{p.connectivity}", space="dcss", params=_params_dict(p), num_classes=num_classes)
    add_node(g, "image", NodeSpec("input", 0, 1, 3))
    previous = "image"
    for s in SCALES:  # the stem: a chain of strided convs building the pyramid
        add_node(g, node_id(0, s), NodeSpec("stem", 0, s, width(p.base_channels, s), ("conv3x3",)))
        add_edge(g, previous, node_id(0, s))
        previous = node_id(0, s)
    for layer in range(1, p.layers + 1):
        sources = range(0, layer) if p.connectivity == "dense" else (layer - 1,)
        for s in SCALES:
            n = node_id(layer, s)
            preds = [node_id(l, s2) for l in sources for s2 in SCALES]
            keep = min(p.keep_inputs, len(preds))
            add_node(g, n, NodeSpec("fusion", layer, s, width(p.base_channels, s), tuple(p.ops), keep_inputs=keep))
            for src in preds:
                add_edge(g, src, n, kind="candidate")
    add_node(g, "head", NodeSpec("head", p.layers + 1, 1, num_classes, (f"head_{p.head}",)))
    for s in SCALES:
        add_edge(g, node_id(p.layers, s), "head")
    return g


def _params_dict(p: DCSSParams) -> dict:
    from dataclasses import asdict

    return asdict(p)
