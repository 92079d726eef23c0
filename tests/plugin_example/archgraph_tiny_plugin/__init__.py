"""A tiny archgraph plug-in: not part of archgraph, installed like any third-party package.

- ``tiny_chain``: image -> stem -> two searchable nodes (an op choice each, the second also an input
  choice) -> head. Small enough to search in seconds. Node ``a`` may run the plug-in's own op.
- ``tiny_dil_conv3x3``: an op the plug-in registers (a dilated 3x3 conv); listed by ``archgraph ops``.
- ``tiny_width``: the same graph declaring a ``width`` choice kind (a channel-width choice needing a
  relaxation no strategy provides), so every strategy refuses it before any data is loaded.
- ``tiny_darts``: a strategy; the plain continuous relaxation under another name, declaring the kinds
  it handles.
- ``straight``: a preset of ``tiny_chain`` (node ``b`` reads ``a``), listed by ``archgraph spaces``.
- ``tiny_stripes`` (``data.py``), ``first`` (``selectors.py``) and ``tiny_timed`` (``executors.py``):
  a dataset, a selector and an executor, each through its own entry-point group.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from typing import Sequence

import networkx as nx
from torch import nn

from archgraph.core.graph import NodeSpec, add_edge, add_node, new_graph
from archgraph.core.ops import register_op
from archgraph.core.decode import derive_by_name
from archgraph.core.registry import register_preset, register_space, register_strategy
from archgraph.strategies.base import Strategy, StrategyParams


@register_op("tiny_dil_conv3x3", doc="dilated 3x3 conv (dilation 2) + BN + ReLU, from the tiny plug-in")
def build_tiny_dil_conv(node: NodeSpec, inputs: Sequence[NodeSpec]) -> nn.Module:
    c = node.channels  # any width >= 1: partial-channel strategies build candidates at a quarter of it
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(c), nn.ReLU())


@dataclass
class TinyParams:
    """Hyper-parameters of the tiny spaces."""

    channels: int = 4
    num_classes: int = 0


def _tiny(p: TinyParams, space: str) -> nx.DiGraph:
    g = new_graph(f"{space}-C{p.channels}", space=space, params=asdict(p), num_classes=p.num_classes or 5)
    add_node(g, "image", NodeSpec("input", 0, 1, 3))
    add_node(g, "stem", NodeSpec("stem", 0, 4, p.channels, ("conv3x3",)))
    add_edge(g, "image", "stem")
    add_node(g, "a", NodeSpec("fusion", 1, 4, p.channels, ("conv3x3", "skip_connect", "tiny_dil_conv3x3")))
    add_edge(g, "stem", "a")
    add_node(g, "b", NodeSpec("fusion", 2, 8, 2 * p.channels, ("conv1x1", "max_pool_3x3"), keep_inputs=1))
    add_edge(g, "stem", "b", kind="candidate")
    add_edge(g, "a", "b", kind="candidate")
    add_node(g, "head", NodeSpec("head", 3, 1, p.num_classes or 5, ("head_simple",)))
    add_edge(g, "a", "head")
    add_edge(g, "b", "head")
    return g


@register_space("tiny_chain", TinyParams)
def build_tiny_chain(p: TinyParams) -> nx.DiGraph:
    """A four-node example space from a third-party plug-in."""
    return _tiny(p, "tiny_chain")


@register_preset("tiny_chain", "straight")
def straight(supernet: nx.DiGraph, op: str | None = None) -> nx.DiGraph:
    """stem -> a -> b -> head, conv3x3 at a (or ``op``), conv1x1 at b."""
    return derive_by_name(supernet, ops={"a": op or "conv3x3", "b": "conv1x1"}, inputs={"b": ["a"]})


@register_space("tiny_width", TinyParams)
def build_tiny_width(p: TinyParams) -> nx.DiGraph:
    """The example space declaring a 'width' choice kind that no strategy handles."""
    g = _tiny(p, "tiny_width")
    g.graph["choice_kinds"] = ["width"]
    return g


@dataclass
class TinyDARTSParams(StrategyParams):
    """No options."""


@register_strategy("tiny_darts", TinyDARTSParams)
class TinyDARTS(Strategy):
    """Plain relaxation, registered by a third-party plug-in."""

    name = "tiny_darts"
    handles = frozenset({"op", "input"})
