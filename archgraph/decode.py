"""The BFS decoder: architecture scores -> a graph without choice points.

1. Every op choice keeps its argmax op.
2. Every input choice keeps its ``k`` best incoming edges (``k`` = the node's ``keep_inputs`` unless
   overridden); ties go to the earlier edge so decoding is deterministic.
3. A breadth-first search from the head backwards along kept edges collects what reaches the output;
   everything else is dropped.

The result validates, serializes and compiles on its own. Scores are plain ``{label: [p, ...]}``
dicts (what :meth:`ArchParams.scores` returns), so a strategy can hand over transformed scores (e.g.
PC-DARTS multiplies op and edge weights) without the decoder knowing any strategy.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Mapping, Sequence

import networkx as nx

from archgraph.choices import ChoicePoints, discover_choices
from archgraph.errors import GraphError
from archgraph.graph import NodeSpec, add_edge, add_node, head_node, inputs_of, new_graph, node_spec, validate

Scores = Mapping[str, Sequence[float]]


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _top_k(values: Sequence[float], k: int) -> list[int]:
    return sorted(sorted(range(len(values)), key=lambda i: (-values[i], i))[:k])


def decisions(choices: ChoicePoints, op_scores: Scores, input_scores: Scores, keep: int | None = None) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Steps 1-2 of decoding as indices per choice label: the argmax op, the top-k inputs.

    The same indices drive a supernet's subnet mode (:meth:`Relaxation.fixed_subnet`), so S-mIoU
    evaluates exactly what :func:`decode` derives.
    """
    ops = {c.label: _argmax(_scores_for(op_scores, c.label, len(c.candidates), c.node, "op")) for c in choices.ops}
    inputs = {}
    for c in choices.inputs:
        probs = _scores_for(input_scores, c.label, len(c.candidates), c.node, "input")
        inputs[c.label] = _top_k(probs, min(keep or c.keep, len(c.candidates)))
    return ops, inputs


def decode(graph: nx.DiGraph, op_scores: Scores, input_scores: Scores, keep: int | None = None) -> nx.DiGraph:
    """Derive the final architecture from ``graph`` and the scores of its choice points."""
    choices = discover_choices(graph)
    op_idx, input_idx = decisions(choices, op_scores, input_scores, keep)
    chosen_ops = {c.node: c.candidates[op_idx[c.label]] for c in choices.ops}
    kept: dict[str, list[tuple[str, float]]] = {
        c.node: [(c.candidates[i], float(input_scores[c.label][i])) for i in input_idx[c.label]] for c in choices.inputs
    }

    head = head_node(graph)
    reached = {head}
    queue = deque([head])
    while queue:
        n = queue.popleft()
        sources = [p for p, _ in kept[n]] if n in kept else inputs_of(graph, n)
        for p in sources:
            if p not in reached:
                reached.add(p)
                queue.append(p)

    derived = new_graph(f"{graph.graph.get('name', 'arch')}-derived", **{k: v for k, v in graph.graph.items() if k != "name"})
    for n in graph.nodes:  # keep the supernet's node order: stable files, stable drawings
        if n not in reached:
            continue
        s = node_spec(graph, n)
        ops = (chosen_ops[n],) if n in chosen_ops else s.ops
        add_node(derived, n, NodeSpec(s.kind, s.layer, s.scale, s.channels, ops, None, None, s.body))
    for n in derived.nodes:
        if n in kept:
            for p, score in kept[n]:
                add_edge(derived, p, n, score=score)
        else:
            for p in inputs_of(graph, n):
                add_edge(derived, p, n)
    validate(derived)
    return derived


def _scores_for(scores: Scores, label: str, size: int, node: str, what: str) -> Sequence[float]:
    if label not in scores:
        raise GraphError(f"no {what} scores for choice {label!r} (node {node!r}); the scores do not belong to this graph")
    values = scores[label]
    if len(values) != size:
        raise GraphError(f"{what} scores for {label!r} have {len(values)} entries, node {node!r} has {size} candidates")
    return values


def uniform_scores(choices: ChoicePoints, seed: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Scores that make :func:`decode` pick uniformly at random at every choice point.

    A one-hot op score picks a uniform op; a random permutation as input scores makes the top-k a
    uniform k-subset. Shared labels get one draw, as they share one decision.
    """
    rng = random.Random(seed)
    ops: dict[str, list[float]] = {}
    for c in choices.ops:
        if c.label not in ops:
            pick = rng.randrange(len(c.candidates))
            ops[c.label] = [1.0 if i == pick else 0.0 for i in range(len(c.candidates))]
    inputs: dict[str, list[float]] = {}
    for c in choices.inputs:
        if c.label not in inputs:
            order = list(range(len(c.candidates)))
            rng.shuffle(order)
            inputs[c.label] = [float(len(order) - order.index(i)) for i in range(len(order))]
    return ops, inputs


def sample_architecture(graph: nx.DiGraph, seed: int) -> nx.DiGraph:
    """A random architecture of the space: uniform at every choice point, then decoded."""
    ops, inputs = uniform_scores(discover_choices(graph), seed)
    return decode(graph, ops, inputs)
