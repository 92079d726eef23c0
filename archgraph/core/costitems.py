"""What a network compiled from a graph pays for, item by item, keyed the way segmentation needs.

Every cost of a compiled network sits in one of five kinds of module (:mod:`archgraph.core.compile`):

- ``op``: a node's op (one item per candidate op of an op choice), channels -> channels at the node's scale;
- ``align``: the shape-alignment branch of one input (identity, 1x1 conv, strided 3x3 convs, or the
  node's up-sampling mode), at the *source*'s size;
- ``sum``: the element-wise additions that combine ``m`` aligned inputs (sum fusion, or the pooled slot);
- ``fuse``: concat fusion's concatenation + 1x1 conv + BN;
- ``head``: the head op on the raw list of its inputs (stems are ordinary nodes: an op + strided branches).

An item's key names everything its cost depends on: kind, op, input height and width, channels in
and out, stride, up-sampling mode (a latency table adds dtype and device). Items with equal keys cost
the same, so a graph with thousands of candidate connections has a few dozen distinct items, each
measured once. Feature sizes follow the compiler: the image is padded to a multiple of the graph's
coarsest scale, and a node at scale ``s`` sees ``padded / s``.

Cell nodes (Auto-DeepLab's nested bodies) are not itemised: :func:`graph_items` refuses them with a
one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import networkx as nx
import torch
from torch import nn

from archgraph.core.graph import NodeSpec, inputs_of, input_node, node_spec, split_inputs
from archgraph.core.ops import build_alignment, build_fusion, build_op, get_op
from archgraph.errors import GraphError

InputsFn = Callable[[torch.dtype, torch.device], tuple]


@dataclass(frozen=True)
class CostItem:
    """One module a compiled network runs, with how to rebuild it and feed it for measuring.

    ``build()`` returns a fresh module; ``inputs(dtype, device)`` the positional arguments of one
    forward pass at batch 1. Two items with the same :attr:`key` are interchangeable.
    """

    kind: str  # op | align | sum | fuse | head
    op: str
    h: int
    w: int
    c_in: str  # an int as text; a head's inputs as "channels@scale+..."
    c_out: int
    stride: str = "1"
    upsample: str = "-"
    build: Callable[[], nn.Module] = field(default=lambda: nn.Identity(), compare=False, repr=False)
    inputs: InputsFn = field(default=lambda dtype, device: (), compare=False, repr=False)

    @property
    def key(self) -> str:
        """``kind|op|h|w|c_in|c_out|stride|upsample``: what the cost depends on, device aside."""
        return "|".join((self.kind, self.op, str(self.h), str(self.w), self.c_in, str(self.c_out), self.stride, self.upsample))

    @property
    def free(self) -> bool:
        """An identity branch: no module runs, every metric is zero (never measured)."""
        return self.kind == "align" and self.op == "identity"


@dataclass
class NodeItems:
    """The items of one node: per candidate op, per input (its branch), concat's fuse, and the
    additions as a function of how many inputs end up summed."""

    ops: list[CostItem]
    branches: dict[str, CostItem]
    fuse: CostItem | None
    sum_for: Callable[[int], CostItem | None]
    fixed_inputs: list[str]
    pooled_inputs: list[str]
    concat: bool
    inputs: list[str]  # every predecessor, in order (a head has inputs but no branches)


class _SumList(nn.Module):
    """``m`` aligned inputs added up, as the compiled node does (``out = out + x``)."""

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class _CatFuse(nn.Module):
    """Concat fusion as the compiled node runs it: concatenate the slots, then the 1x1 conv + BN."""

    def __init__(self, fuse: nn.Module):
        super().__init__()
        self.fuse = fuse

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return self.fuse(torch.cat(xs, dim=1))


def padded_size(resolution: Sequence[int], multiple: int) -> tuple[int, int]:
    """The image size the compiled network runs at: padded up to a multiple of its coarsest scale."""
    h, w = (int(d) for d in resolution)
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def pad_multiple(graph: nx.DiGraph) -> int:
    return max(int(graph.nodes[n]["scale"]) for n in graph.nodes)


def _tensor(c: int, h: int, w: int) -> InputsFn:
    return lambda dtype, device: (torch.zeros(1, c, h, w, dtype=dtype, device=device),)


def _tensor_list(shapes: Sequence[tuple[int, int, int]]) -> InputsFn:
    return lambda dtype, device: ([torch.zeros(1, c, h, w, dtype=dtype, device=device) for c, h, w in shapes],)


def _align_item(src: NodeSpec, dst: NodeSpec, hw: tuple[int, int]) -> CostItem:
    h, w = hw[0] // src.scale, hw[1] // src.scale
    build = lambda: build_alignment(src, dst)  # noqa: E731
    if src.scale == dst.scale:
        op, stride, up = ("identity" if src.channels == dst.channels else "conv1x1"), "1", "-"
    elif src.scale < dst.scale:
        op, stride, up = "down", str(dst.scale // src.scale), "-"
    else:
        op, stride, up = "up", "1", f"{dst.upsample}x{src.scale // dst.scale}"
    return CostItem("align", op, h, w, str(src.channels), dst.channels, stride, up, build, _tensor(src.channels, h, w))


def _sum_item(spec: NodeSpec, hw: tuple[int, int], m: int) -> CostItem | None:
    if m < 2:
        return None
    h, w = hw[0] // spec.scale, hw[1] // spec.scale
    return CostItem("sum", f"add{m}", h, w, str(spec.channels), spec.channels, "1", "-", _SumList, _tensor_list([(spec.channels, h, w)] * m))


def node_items(graph: nx.DiGraph, n: str, hw: tuple[int, int]) -> NodeItems:
    """The items of node ``n`` of ``graph`` when the (padded) image is ``hw``."""
    spec = node_spec(graph, n)
    if spec.kind == "cell" or spec.body is not None:
        raise GraphError(
            f"node {n!r} is a cell with a nested body (Auto-DeepLab-style): the cost model covers flat graphs (dcss, unet and their presets) only; use a flat space for cost budgets and latency tables"
        )
    preds = inputs_of(graph, n)
    in_specs = [node_spec(graph, p) for p in preds]
    h, w = hw[0] // spec.scale, hw[1] // spec.scale
    if get_op(spec.ops[0]).takes_list:
        desc = "+".join(f"{s.channels}@{s.scale}" for s in in_specs)
        shapes = [(s.channels, hw[0] // s.scale, hw[1] // s.scale) for s in in_specs]
        head = CostItem("head", spec.ops[0], hw[0], hw[1], desc, spec.channels, "1", "-", lambda: build_op(spec.ops[0], spec, in_specs), _tensor_list(shapes))
        return NodeItems([head], {}, None, lambda m: None, preds, [], False, preds)
    ops = [CostItem("op", name, h, w, str(spec.channels), spec.channels, "1", "-", lambda name=name: build_op(name, spec, in_specs), _tensor(spec.channels, h, w)) for name in spec.ops]
    branches = {p: _align_item(s, spec, hw) for p, s in zip(preds, in_specs)}
    fixed, pooled = split_inputs(graph, n)
    concat = spec.fusion == "concat"
    fuse = None
    if concat:
        slots = len(fixed) + (1 if pooled else 0)
        fuse = CostItem("fuse", f"concat{slots}", h, w, str(spec.channels * slots), spec.channels, "1", "-", lambda: _CatFuse(build_fusion(spec, slots)), _tensor_list([(spec.channels, h, w)] * slots))
    return NodeItems(ops, branches, fuse, lambda m: _sum_item(spec, hw, m), fixed, pooled, concat, preds)


def summed_inputs(items: NodeItems, kept_pooled: int) -> int:
    """How many aligned tensors the node adds up when ``kept_pooled`` pooled inputs are kept: every
    input under sum fusion (the pooled slot's sum plus the fixed slots), the pooled ones under concat."""
    return kept_pooled if items.concat else len(items.fixed_inputs) + kept_pooled


def graph_items(graph: nx.DiGraph, resolution: Sequence[int], multiple: int | None = None) -> dict[str, NodeItems]:
    """Every non-input node's items at ``resolution`` (padded to ``multiple``, default: the graph's
    coarsest scale)."""
    hw = padded_size(resolution, multiple or pad_multiple(graph))
    source = input_node(graph)
    return {n: node_items(graph, n, hw) for n in graph.nodes if n != source}


def distinct_items(graph: nx.DiGraph, resolution: Sequence[int]) -> dict[str, CostItem]:
    """The distinct items (by key) any architecture of ``graph`` can contain: every candidate op and
    branch, concat's fuse, and the additions for every possible count of summed inputs."""
    out: dict[str, CostItem] = {}
    for n, items in graph_items(graph, resolution).items():
        pooled = len(items.pooled_inputs)
        sums = [items.sum_for(summed_inputs(items, k)) for k in (range(1, pooled + 1) if pooled else [0])]
        for item in [*items.ops, *items.branches.values(), items.fuse, *sums]:
            if item is not None and not item.free:
                out.setdefault(item.key, item)
    return out
