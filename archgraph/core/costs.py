"""Parameter and FLOP counts, from ``torch.utils.flop_counter`` (never hand-derived formulas).

Two uses: the size of a whole model (``params``, ``flops`` in metrics.json), and the per-candidate
cost table behind the expected-FLOPs regulariser of a search (cost of every candidate op and every
alignment branch of a graph at a given input size). Candidates with the same shapes cost the same,
so the table measures each distinct (op, channels, scale) once.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archgraph.core.choices import discover_choices, resolve_node
from archgraph.core.graph import NodeSpec, inputs_of, node_spec
from archgraph.core.ops import build_alignment, build_op


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass (a multiply-add counts as 2, as torch's counter does)."""
    was_training = module.training
    module.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def model_flops(net: nn.Module, image_hw: tuple[int, int], in_channels: int = 3) -> int:
    device = next(net.parameters()).device
    return count_flops(net, torch.zeros(1, in_channels, *image_hw, device=device))


@dataclass(frozen=True)
class CostTable:
    """FLOPs per candidate: ``ops[label][i]`` for op choices, ``inputs[label][j]`` for input choices."""

    ops: dict[str, list[float]]
    inputs: dict[str, list[float]]
    keep: dict[str, int]  # k of every input choice (the decoded net computes k branches)

    @property
    def total_uniform(self) -> float:
        """Expected FLOPs under uniform choices: the scale the regulariser divides by."""
        ops = sum(sum(v) / len(v) for v in self.ops.values())
        ins = sum(self.keep[k] * sum(v) / len(v) for k, v in self.inputs.items())
        return max(ops + ins, 1.0)


def _feature(spec: NodeSpec, image_hw: tuple[int, int]) -> torch.Tensor:
    h, w = (max(1, -(-d // spec.scale)) for d in image_hw)
    return torch.zeros(1, spec.channels, h, w)


def _accumulate(table: dict[str, list[float]], label: str, costs: list[float]) -> None:
    """Choices sharing a label (one alpha for every cell) decide every occurrence at once, so the
    expected cost of a label is the sum over its occurrences."""
    if label in table:
        table[label] = [a + b for a, b in zip(table[label], costs)]
    else:
        table[label] = list(costs)


def cost_table(graph: nx.DiGraph, image_hw: tuple[int, int]) -> CostTable:
    """Measure every candidate of every choice point of ``graph`` at input size ``image_hw``."""
    choices = discover_choices(graph)
    cache: dict[tuple, float] = {}

    def measure(key: tuple, build, x: torch.Tensor) -> float:
        if key not in cache:
            cache[key] = float(count_flops(build(), x))
        return cache[key]

    ops: dict[str, list[float]] = {}
    for c in choices.ops:
        holder, local = resolve_node(graph, c.node)  # choices inside a cell's body have qualified ids
        spec = node_spec(holder, local)
        preds = [node_spec(holder, p) for p in inputs_of(holder, local)]
        costs = [measure(("op", name, spec.channels, spec.scale), lambda name=name: build_op(name, spec, preds), _feature(spec, image_hw)) for name in c.candidates]
        _accumulate(ops, c.label, costs)
    inputs: dict[str, list[float]] = {}
    keep: dict[str, int] = {}
    for c in choices.inputs:
        holder, local = resolve_node(graph, c.node)
        dst = node_spec(holder, local)
        costs = []
        for p in c.candidates:
            src = node_spec(holder, p)
            key = ("align", src.channels, src.scale, dst.channels, dst.scale, dst.upsample)
            costs.append(measure(key, lambda src=src: build_alignment(src, dst), _feature(src, image_hw)))
        _accumulate(inputs, c.label, costs)
        keep[c.label] = c.keep
    return CostTable(ops, inputs, keep)
