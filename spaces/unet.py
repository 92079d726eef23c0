"""A U-Net-like space (Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, arXiv:1505.04597): an encoder path down the scales, a decoder path back
up, whose nodes always take the up-path and *choose* their skip connection among the encoder nodes.

With ``levels=3`` (scales 1/4, 1/8, 1/16)::

    image -> stem_s2 -> stem_s4 -> enc_s4 -> enc_s8 -> enc_s16 -> dec_s8 -> dec_s4 -> head
                                     \\__________\\_______skips (chosen)_____/        /
                                      \\______________________________________/

- the stem (layer 0): ``stem_s2`` (F/2 channels at 1/2) and ``stem_s4`` (F at 1/4), fixed 3x3 convs
  after strided alignment;
- the encoder: ``enc_s{s}`` at 1/4, 1/8, ... (widths F, 2F, 4F, ...), each fed by the one before it
  (the down-path: the stride-2 alignment branch), with an op choice;
- the decoder: ``dec_s{s}`` from the second-coarsest scale back up to 1/4, each with a **fixed** input,
  the node one scale coarser (the up-path, up-sampled by ``space.upsample``), and an **input choice**
  keeping ``space.keep_skips`` of its **candidate** skips: every encoder node except the one it
  already gets as its up-path (skips from other scales are aligned by the usual branches). Decoder
  nodes use ``concat`` fusion (U-Net's concatenation of skip and up-path, reduced to the node's width
  by a 1x1 conv + BN) unless ``space.fusion=sum``, and have the same op choice as the encoder;
- the head (``head_simple`` or ``head_aspp``) classifies the 1/4 decoder node and up-samples to 1/1.

The preset ``unet`` is the plain U-Net: each decoder node's skip is the encoder node of its own scale
and every node runs ``conv3x3`` (or the space's first op when it has no ``conv3x3``).

Simplifications: U-Net's blocks are two 3x3 convs; here a node runs one candidate op (use
``conv3x3`` for the classic block); the encoder down-samples by a strided 3x3 conv (archgraph's
alignment branch) instead of max-pooling; widths double per scale from F at 1/4 as in DCSS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import networkx as nx

from archgraph.configtools import CheckedParams, bounded, name_list, one_of, registered
from archgraph.core.graph import NodeSpec, add_edge, add_node, new_graph, node_spec, validate
from archgraph.core.ops import check_known_ops, known_ops, known_upsample_modes
from archgraph.core.registry import register_preset, register_space
from archgraph.errors import ConfigError

DEFAULT_OPS = ("conv3x3", "sep_conv_3x3", "dil_conv_3x3", "mbconv_k3_r3")
PLAIN_OP = "conv3x3"  # the op of the plain U-Net preset


@dataclass
class UNetParams(CheckedParams):
    """Hyper-parameters of the U-Net-like space (the ``space`` config section when ``space.name: unet``);
    each field declares what it allows, checked when the parameters are built (:class:`CheckedParams`)."""

    section = "space"
    levels: int = bounded(3, 2, 5)  # scales of the encoder: 1/4, 1/8, ... (3: down to 1/16)
    base_channels: int = bounded(8, 1)  # F, width at 1/4; each coarser scale doubles it
    keep_skips: int = bounded(1, 1)  # skips each decoder node keeps (its candidates: the other encoder nodes)
    fusion: str = one_of("concat", "sum")  # how a decoder node combines up-path and skip
    upsample: str = registered("bilinear", known_upsample_modes, "up-sampling mode")  # up-path: bilinear | nearest | transposed | pixel_shuffle | a plug-in's
    ops: list[str] = name_list(DEFAULT_OPS, among=known_ops, what="op", listing="see `archgraph ops`")  # candidate ops of every encoder/decoder node
    head: str = one_of("simple", "aspp")  # simple | aspp
    num_classes: int = bounded(0, 0)  # 0: taken from the dataset

    def __post_init__(self) -> None:
        super().__post_init__()
        skips = self.levels - 1  # candidates of the coarsest decoder node: every encoder node but its up-path
        if self.keep_skips > skips:
            raise ConfigError(f"space.keep_skips={self.keep_skips} but a decoder node has only {skips} candidate skips at levels={self.levels}; use at most {skips}")


def scales(levels: int) -> list[int]:
    return [4 * 2**i for i in range(levels)]


def width(base: int, scale: int) -> int:
    return base * scale // 4


@register_space("unet", UNetParams)
def build_unet(p: UNetParams) -> nx.DiGraph:
    """A U-Net-like space: an encoder, a decoder with a fixed up-path and chosen skips, concat fusion."""
    num_classes = p.num_classes or 19
    ss = scales(p.levels)
    g = new_graph(f"unet-{p.levels}-F{p.base_channels}-{p.fusion}-{p.upsample}", space="unet", params=asdict(p), num_classes=num_classes)
    add_node(g, "image", NodeSpec("input", 0, 1, 3))
    add_node(g, "stem_s2", NodeSpec("stem", 0, 2, max(1, p.base_channels // 2), ("conv3x3",)))
    add_node(g, "stem_s4", NodeSpec("stem", 0, 4, p.base_channels, ("conv3x3",)))
    add_edge(g, "image", "stem_s2")
    add_edge(g, "stem_s2", "stem_s4")
    ops = tuple(p.ops)
    previous = "stem_s4"
    for layer, s in enumerate(ss, start=1):  # the encoder: down the scales
        add_node(g, f"enc_s{s}", NodeSpec("fusion", layer, s, width(p.base_channels, s), ops))
        add_edge(g, previous, f"enc_s{s}")
        previous = f"enc_s{s}"
    for layer, s in enumerate(reversed(ss[:-1]), start=p.levels + 1):  # the decoder: back up
        n = f"dec_s{s}"
        add_node(g, n, NodeSpec("fusion", layer, s, width(p.base_channels, s), ops, keep_inputs=p.keep_skips, fusion=p.fusion, upsample=p.upsample))
        add_edge(g, previous, n)  # the up-path: fixed, always used
        for e in ss:
            if f"enc_s{e}" != previous:
                add_edge(g, f"enc_s{e}", n, kind="candidate")
        previous = n
    add_node(g, "head", NodeSpec("head", 2 * p.levels, 1, num_classes, (f"head_{p.head}",)))
    add_edge(g, previous, "head")
    return g


@register_preset("unet", "unet", "the plain U-Net: each decoder node's skip from the encoder node of its scale, conv3x3 everywhere")
def plain_unet(supernet: nx.DiGraph, op: str | None = None) -> nx.DiGraph:
    """The plain U-Net of ``supernet`` (a ``unet`` graph): same-scale skips, one op everywhere."""
    from archgraph.core.decode import derive_graph

    if supernet.graph.get("space") != "unet":
        raise ConfigError(f"preset 'unet' is a design of space 'unet'; space.name is {supernet.graph.get('space')!r}. Use space.name=unet")
    searchable = [n for n in supernet.nodes if node_spec(supernet, n).kind == "fusion"]
    candidates = list(node_spec(supernet, searchable[0]).ops)
    chosen = op or (PLAIN_OP if PLAIN_OP in candidates else candidates[0])
    if chosen not in candidates:
        raise ConfigError(f"preset 'unet': op {chosen!r} is not a candidate of the space (space.ops: {', '.join(candidates)})")
    kept = {n: [(f"enc_s{node_spec(supernet, n).scale}", 1.0)] for n in searchable if n.startswith("dec_")}
    arch = derive_graph(supernet, {n: chosen for n in searchable}, kept)
    arch.graph["name"] = f"{supernet.graph.get('name', 'unet')}-plain"
    arch.graph["preset"] = "unet"
    validate(arch)
    check_known_ops(arch)
    return arch
