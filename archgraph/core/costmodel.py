"""One cost model per graph: FLOPs, parameters or latency of any architecture of a search space.

A network compiled from a graph pays for a handful of kinds of module (ops, alignment branches,
additions, concat fusion, the head; :mod:`archgraph.core.costitems`). The cost of an architecture is
the sum of the costs of the items it runs, which the model looks up per node and edge, so checking a
budget costs microseconds instead of a compile:

- ``flops``: ``torch.utils.flop_counter`` on each item (a multiply-add counts 2), in GFLOP. FLOPs are
  additive over modules, so :meth:`CostModel.of_graph` equals :func:`archgraph.core.costs.count_flops`
  of the compiled network exactly (the counter, like ours, counts no element-wise additions; the
  input padding and the final crop are free) when the resolution is a multiple of the coarsest scale.
- ``params``: parameters per item, in millions; exact.
- ``latency``: milliseconds per item from a :class:`~archgraph.core.latency.LatencyTable` measured on a
  device at the deployment resolution. Additive: what it misses (kernel fusion across modules, launch
  overhead that overlaps, caches shared between neighbouring layers) is measured by
  benchmarks/latency_model.py and discussed in docs/costs.md.

Decisions are indexed by choice label as everywhere (``op_idx[label]``, ``input_idx[label]``: what
the decoder and the subnet mode take); the architecture is what the BFS decoder keeps, i.e. only
nodes the head reaches through kept inputs pay. Cell nodes (nested bodies) are refused.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Sequence

import networkx as nx
import torch

from archgraph.core.choices import discover_choices
from archgraph.core.costitems import CostItem, NodeItems, graph_items, pad_multiple, summed_inputs
from archgraph.core.costs import count_flops, count_params
from archgraph.core.graph import execution_order, head_node, input_node
from archgraph.core.latency import LatencyTable
from archgraph.errors import ConfigError, GraphError

METRICS = ("latency", "flops", "params")
UNITS = {"latency": "ms", "flops": "GFLOP", "params": "M params"}
PER_UNIT = {"latency": 1.0, "flops": 1e9, "params": 1e6}  # raw values (ms, FLOPs, parameters) per unit


def parse_resolution(text: str | Sequence[int]) -> tuple[int, int]:
    """``"512x1024"`` (height x width) -> ``(512, 1024)``; a pair of ints passes through."""
    if not isinstance(text, str):
        values = list(text)
        if len(values) == 2 and all(isinstance(v, int) and v >= 1 for v in values):
            return int(values[0]), int(values[1])
        raise ConfigError(f"resolution {text!r} must be two positive integers (height, width), e.g. 512x1024")
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ConfigError(f"resolution {text!r} is not HEIGHTxWIDTH with positive integers; e.g. 512x1024")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class CostLimit:
    """A budget: ``metric`` at most ``value`` (ms, GFLOP or M params) at ``resolution`` (None: the training crop)."""

    metric: str
    value: float
    resolution: tuple[int, int] | None = None

    @property
    def unit(self) -> str:
        return UNITS[self.metric]

    def __str__(self) -> str:
        unit = {"latency": "ms", "flops": "G", "params": "M"}[self.metric]
        at = f"@{self.resolution[0]}x{self.resolution[1]}" if self.resolution else ""
        return f"{self.metric}={self.value:g}{unit}{at}"


_LIMIT = re.compile(r"\s*(?P<metric>[a-z]+)\s*=\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>[A-Za-z]*)\s*(?:@\s*(?P<res>\S+))?\s*")
_SCALES = {  # metric -> {unit suffix (lower case): factor to the metric's unit}
    "latency": {"": 1.0, "ms": 1.0, "s": 1e3, "us": 1e-3},
    "flops": {"": 1.0, "g": 1.0, "gflop": 1.0, "gflops": 1.0, "m": 1e-3, "mflop": 1e-3, "mflops": 1e-3, "t": 1e3, "tflop": 1e3, "tflops": 1e3},
    "params": {"": 1.0, "m": 1.0, "k": 1e-3, "g": 1e3},
}
_EXAMPLES = "latency=33ms@512x1024, flops=1.5G or params=2M"


def parse_cost_limit(text: str) -> CostLimit:
    """``"latency=33ms@512x1024"`` | ``"flops=1.5G"`` | ``"params=2M"`` -> :class:`CostLimit`."""
    m = _LIMIT.fullmatch(str(text))
    if not m:
        raise ConfigError(f"cost limit {text!r} is not METRIC=VALUE[UNIT][@HxW]; e.g. {_EXAMPLES}")
    metric, unit = m.group("metric"), m.group("unit").lower()
    if metric not in METRICS:
        raise ConfigError(f"cost limit {text!r}: metric {metric!r} is not one of {', '.join(METRICS)}; e.g. {_EXAMPLES}")
    scales = _SCALES[metric]
    if unit not in scales:
        raise ConfigError(f"cost limit {text!r}: unit {m.group('unit')!r} does not fit {metric} (use {', '.join(u for u in scales if u)}); e.g. {_EXAMPLES}")
    value = float(m.group("value")) * scales[unit]
    if value <= 0:
        raise ConfigError(f"cost limit {text!r}: the value must be positive; e.g. {_EXAMPLES}")
    res = parse_resolution(m.group("res")) if m.group("res") else None
    return CostLimit(metric, value, res)


class CostModel:
    """The cost of any architecture of ``graph`` in one ``metric`` at one ``resolution``.

    ``table`` is required for ``latency`` (and must match the resolution); FLOPs and parameters are
    counted once per distinct item key on the meta device (no memory, no arithmetic).
    """

    def __init__(self, graph: nx.DiGraph, metric: str, resolution: Sequence[int], table: LatencyTable | None = None):
        if metric not in METRICS:
            raise ConfigError(f"cost metric {metric!r} is not one of {', '.join(METRICS)}")
        self.graph, self.metric = graph, metric
        self.resolution = (int(resolution[0]), int(resolution[1]))
        if metric == "latency":
            if table is None:
                raise ConfigError("a latency cost model needs a latency table: build one with `archgraph latency --resolution HxW --out TABLE.json` and pass it (search.cost_table)")
            table.check(resolution=self.resolution)
        self.table = table
        self.unit, self.per_unit = UNITS[metric], PER_UNIT[metric]
        self.choices = discover_choices(graph)
        self.head, self.input = head_node(graph), input_node(graph)
        self.multiple = pad_multiple(graph)
        self.op_label = {c.node: c.label for c in self.choices.ops}
        self.in_choice = {c.node: c for c in self.choices.inputs}
        self._cache: dict[str, float] = {}
        self.items = graph_items(graph, self.resolution, self.multiple)
        self._check_table(self.items)
        # A calibrated latency table's overhead (archgraph/core/latencycal.py): per node run, and once.
        self.intercept, self.per_node = table.overhead() if metric == "latency" and table is not None else (0.0, 0.0)
        self._ops = {n: [self._raw(i) for i in it.ops] for n, it in self.items.items()}
        self._branches = {n: {p: self._raw(i) for p, i in it.branches.items()} for n, it in self.items.items()}

    # ------------------------------------------------------------------ items

    def _check_table(self, items: Mapping[str, NodeItems]) -> None:
        if self.table is None:
            return
        missing = sorted({i.key for it in items.values() for i in [*it.ops, *it.branches.values(), it.fuse] if i is not None and self.table.lookup(i) is None})
        if missing:
            heads = [k for k in missing if k.startswith("head|")]
            why = (
                f"the head {heads[0]} is missing: its class count is part of the key, so build the table with the search's data.name (or space.num_classes) as well"
                if heads and len(heads) == len(missing)
                else "it was built for another space or size"
            )
            raise ConfigError(
                f"latency table ({self.table.describe()}) lacks {len(missing)} item(s) of this graph, e.g. {missing[0]}: "
                f"{why}; rebuild it with `archgraph latency` and the same --space/--set as the search"
            )

    def _raw(self, item: CostItem | None) -> float:
        """An item's cost in raw units (FLOPs, parameters, ms), once per key."""
        if item is None or item.free:
            return 0.0
        if item.key not in self._cache:
            if self.metric == "latency":
                assert self.table is not None
                value = self.table.lookup(item)
                if value is None:
                    raise ConfigError(f"latency table ({self.table.describe()}) has no entry {item.key}: rebuild it with `archgraph latency` for this space")
            elif self.metric == "params":
                value = float(count_params(item.build()))
            else:
                value = float(_flops(item))
            self._cache[item.key] = float(value)
        return self._cache[item.key]

    def _sum(self, items: NodeItems, kept_pooled: int) -> float:
        return self._raw(items.sum_for(summed_inputs(items, kept_pooled)))

    # ------------------------------------------------------------------ per node

    def op_costs(self, node: str) -> list[float]:
        """Cost of each candidate op of ``node`` (one entry for a fixed op), in :attr:`unit`."""
        return [v / self.per_unit for v in self._ops[node]]

    def input_costs(self, node: str) -> list[float]:
        """Cost of each candidate input's alignment branch (of the node's input choice; every input
        when it has none), in :attr:`unit`."""
        c = self.in_choice.get(node)
        sources = c.candidates if c is not None else list(self._branches[node])
        return [self._branches[node][p] / self.per_unit for p in sources]

    def _kept(self, n: str, input_idx: Mapping[str, Sequence[int]]) -> tuple[list[str], int]:
        """(kept inputs, how many of them are pooled) of ``n`` under the decisions."""
        items = self.items[n]
        c = self.in_choice.get(n)
        if c is None:
            return list(items.inputs), len(items.pooled_inputs)
        chosen = [c.candidates[i] for i in input_idx[c.label]]
        return [p for p in items.inputs if p not in c.candidates] + chosen, len(chosen)

    def _node_raw(self, n: str, op: int, kept: Sequence[str], pooled: int) -> float:
        items = self.items[n]
        return self._ops[n][op] + sum(self._branches[n].get(p, 0.0) for p in kept) + self._raw(items.fuse) + self._sum(items, pooled)

    def fixed(self) -> float:
        """What every architecture pays, in :attr:`unit`: the nodes the head reaches through fixed
        edges alone (head, and stems or fusion nodes on fixed paths): their fixed ops, fixed-input
        branches, fusion and additions."""
        reached, queue, total = {self.head}, deque([self.head]), 0.0
        while queue:
            n = queue.popleft()
            items = self.items[n]
            c = self.in_choice.get(n)
            total += self.per_node
            if n not in self.op_label:
                total += self._ops[n][0]
            fixed_in = [p for p in items.inputs if c is None or p not in c.candidates]
            total += sum(self._branches[n].get(p, 0.0) for p in fixed_in) + self._raw(items.fuse)
            total += self._sum(items, c.keep if c is not None else len(items.pooled_inputs))
            for p in fixed_in:
                if p != self.input and p not in reached:
                    reached.add(p)
                    queue.append(p)
        return (total + self.intercept) / self.per_unit

    # ------------------------------------------------------------------ architectures

    def raw_of_decisions(self, op_idx: Mapping[str, int], input_idx: Mapping[str, Sequence[int]]) -> float:
        """:meth:`of_decisions` in raw units (FLOPs, parameters, ms): exact integers for counts."""
        reached, queue, total = {self.head}, deque([self.head]), 0.0
        while queue:
            n = queue.popleft()
            kept, pooled = self._kept(n, input_idx)
            label = self.op_label.get(n)
            total += self._node_raw(n, op_idx[label] if label is not None else 0, kept, pooled) + self.per_node
            for p in kept:
                if p != self.input and p not in reached:
                    reached.add(p)
                    queue.append(p)
        return total + self.intercept

    def of_decisions(self, op_idx: Mapping[str, int], input_idx: Mapping[str, Sequence[int]]) -> float:
        """Cost of the architecture the BFS decoder derives from these decisions, in :attr:`unit`."""
        return self.raw_of_decisions(op_idx, input_idx) / self.per_unit

    def of_graph(self, derived: nx.DiGraph) -> float:
        """Cost of a graph without choice points (a derived architecture, a preset), in :attr:`unit`,
        at this model's resolution (padded to the supernet's coarsest scale)."""
        items = graph_items(derived, self.resolution, self.multiple)
        self._check_table(items)
        total = 0.0
        for n, it in items.items():
            if len(it.ops) != 1:
                raise GraphError(f"node {n!r} still has {len(it.ops)} candidate ops: of_graph takes a derived architecture; use of_decisions for a supernet")
            total += self._raw(it.ops[0]) + sum(self._raw(b) for b in it.branches.values()) + self._raw(it.fuse) + self._sum(it, len(it.pooled_inputs)) + self.per_node
        return (total + self.intercept) / self.per_unit

    def raw_expected(self, op_probs: Mapping[str, torch.Tensor], input_probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable expected cost in raw units (float64).

        ``op_probs[label]``: a distribution over the candidate ops (uniform where a label is missing);
        ``input_probs[label]``: the probability that each candidate input is used (``keep / n`` where
        missing; values are clamped to [0, 1]). A node pays in proportion to the probability that the
        head reaches it, computed backwards from the head assuming consumers decide independently:
        ``P(n) = 1 - prod_c (1 - P(c) q(n -> c))``. With one-hot probabilities this is exactly
        :meth:`raw_of_decisions`; with soft ones, nodes that few kept edges lead to cost less.
        """
        g = self.graph
        reach: dict[str, torch.Tensor] = {}
        total = torch.zeros((), dtype=torch.float64)
        use: dict[tuple[str, str], torch.Tensor] = {}
        for n, c in self.in_choice.items():
            probs = input_probs.get(c.label)
            q = probs.to(torch.float64).clamp(0.0, 1.0) if probs is not None else torch.full((len(c.candidates),), min(1.0, c.keep / len(c.candidates)), dtype=torch.float64)
            for i, p in enumerate(c.candidates):
                use[(p, n)] = q[i]
        one = torch.ones((), dtype=torch.float64)
        for n in reversed(execution_order(g)):
            if n == self.input:
                continue
            if n == self.head:
                p_n = one
            else:
                miss = one
                for s in g.successors(n):
                    if s in reach:
                        miss = miss * (1 - reach[s] * use.get((n, s), one))
                p_n = 1 - miss
            reach[n] = p_n
            label = self.op_label.get(n)
            ops = torch.tensor(self._ops[n], dtype=torch.float64)
            if label is None:
                op_cost = ops[0]
            elif label in op_probs:
                op_cost = (op_probs[label].to(torch.float64) * ops).sum()
            else:
                op_cost = ops.mean()
            items = self.items[n]
            branches = sum((use.get((p, n), one) * v for p, v in self._branches[n].items()), torch.zeros((), dtype=torch.float64))
            c = self.in_choice.get(n)
            rest = self._raw(items.fuse) + self._sum(items, c.keep if c is not None else len(items.pooled_inputs))
            total = total + p_n * (op_cost + branches + rest + self.per_node)
        return total + self.intercept

    def expected(self, op_probs: Mapping[str, torch.Tensor], input_probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`raw_expected` in :attr:`unit`."""
        return self.raw_expected(op_probs, input_probs) / self.per_unit


def _flops(item: CostItem) -> int:
    """FLOPs of one item, on the meta device (shapes only); on CPU where an op has no meta kernel."""
    try:
        device = torch.device("meta")
        return count_flops(item.build().to(device), *item.inputs(torch.float32, device))
    except (NotImplementedError, RuntimeError):
        return count_flops(item.build(), *item.inputs(torch.float32, torch.device("cpu")))


def expected_cost(net: "torch.nn.Module", model: CostModel, input_probs: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The expected cost of ``net``'s architecture distribution, in ``model.unit``, differentiable in
    its alphas (softmax) and in ``input_probs``: the strategy's probability that each candidate input
    is used (by default ``keep * softmax(beta)``, the expected use under DCNAS-style sampling)."""
    arch = getattr(net, "arch", None)
    if arch is None:
        return torch.tensor(model.of_graph(net.graph), dtype=torch.float64)
    op_probs = {label: torch.softmax(arch.op_logits(label), dim=-1) for label in model.choices.op_labels}
    if input_probs is None:
        keep = {c.label: c.keep for c in model.choices.inputs}
        input_probs = {label: keep[label] * torch.softmax(arch.input_logits(label), dim=-1) for label in model.choices.input_labels}
    return model.expected(op_probs, input_probs)
