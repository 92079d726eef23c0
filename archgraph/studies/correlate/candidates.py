"""The architectures of the study: the searched one, and random ones spread over the supernet's range.

:func:`derived_candidate` finds the subnet indices of the search's ``arch.yaml`` (checked by decoding
them); :func:`sample_pool` draws distinct uniformly random architectures (seeds ``sample_seed + i``,
so every strategy draws the same pool); :func:`spread_pick` picks, from their cheap scores, the ones
nearest to evenly spaced targets between the lowest and the highest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import networkx as nx

from archgraph.core.choices import ChoicePoints, resolve_node
from archgraph.core.graph import graph_hash, inputs_of, node_spec
from archgraph.errors import CheckpointError, GraphError
from archgraph.studies.correlate.supernet import InputIdx, OpIdx, SearchedSupernet


@dataclass
class Candidate:
    """One architecture of the study: the graph, its subnet indices, where it came from, its scores."""

    graph: nx.DiGraph
    op_idx: OpIdx
    input_idx: InputIdx
    source: str  # "derived", "sample" or "file" (archgraph score --archs FILES)
    sample_seed: int | None = None
    quick: float | None = None  # cheap supernet score (pool ranking only)
    supernet: float | None = None
    standalone: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # every other scorer's value (archgraph.engine.scoring)

    @property
    def hash(self) -> str:
        return graph_hash(self.graph)


def one_hot_scores(choices: ChoicePoints, op_idx: OpIdx, input_idx: InputIdx) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Scores under which the decoder picks exactly these indices (:func:`archgraph.engine.scoring.one_hot_scores`)."""
    from archgraph.engine.scoring import one_hot_scores as engine_one_hot

    return engine_one_hot(choices, op_idx, input_idx)


def indices_of(choices: ChoicePoints, arch: nx.DiGraph) -> tuple[OpIdx, InputIdx]:
    """The subnet indices of a derived architecture (a node the architecture dropped: first ones).

    Why from the graph and not from the strategy's scores: a strategy may pick its architecture
    after the last checkpoint (SPOS's evolution), so arch.yaml is the only complete record.
    """
    ops: OpIdx = {}
    inputs: InputIdx = {}
    for c in choices.ops:
        op = _node_of(arch, c.node)
        chosen = node_spec(*op).ops[0] if op else None
        ops.setdefault(c.label, c.candidates.index(chosen) if chosen in c.candidates else 0)
    for c in choices.inputs:
        found = _node_of(arch, c.node)
        kept = [c.candidates.index(p) for p in inputs_of(*found) if p in c.candidates] if found else list(range(c.keep))
        inputs.setdefault(c.label, sorted(kept))
    return ops, inputs


def _node_of(arch: nx.DiGraph, qualified: str) -> tuple[nx.DiGraph, str] | None:
    try:
        return resolve_node(arch, qualified)
    except GraphError:  # the architecture dropped the node: its choice does not matter
        return None


def derived_candidate(sup: SearchedSupernet) -> Candidate:
    """The searched architecture (``arch.yaml``) with its subnet indices, checked by decoding them."""
    from archgraph.core.decode import decisions, decode
    from archgraph.core.graph import load

    arch = load(sup.run_dir / "arch.yaml")
    target = graph_hash(arch)
    attempts = [indices_of(sup.choices, arch)]
    ops, inputs = sup.strategy.scores(sup.net)
    if ops or inputs:
        attempts.append(decisions(sup.choices, ops, inputs))
    for op_idx, input_idx in attempts:
        decoded = decode(sup.strategy.graph, *one_hot_scores(sup.choices, op_idx, input_idx))
        if graph_hash(decoded) == target:
            return Candidate(arch, op_idx, input_idx, "derived")
    raise CheckpointError(f"{sup.run_dir / 'arch.yaml'} ({target}) is not a subnet of the supernet in {sup.run_dir / 'checkpoint.pt'}; was arch.yaml replaced after the search?")


def sample_pool(sup: SearchedSupernet, size: int, sample_seed: int, exclude: set[str]) -> list[Candidate]:
    """Up to ``size`` distinct random architectures (seeds ``sample_seed``, ``sample_seed + 1``, ...).

    Duplicates (small spaces) and ``exclude`` hashes are skipped; at most ``4 * size`` draws.
    """
    from archgraph.core.decode import decisions, decode, uniform_scores

    pool: list[Candidate] = []
    seen = set(exclude)
    for i in range(4 * size):
        if len(pool) == size:
            break
        seed = sample_seed + i
        ops, inputs = uniform_scores(sup.choices, seed)
        graph = decode(sup.strategy.graph, ops, inputs)
        h = graph_hash(graph)
        if h in seen:
            continue
        seen.add(h)
        op_idx, input_idx = decisions(sup.choices, ops, inputs)
        pool.append(Candidate(graph, op_idx, input_idx, "sample", seed))
    return pool


def spread_pick(scores: Sequence[float], k: int) -> list[int]:
    """Indices of ``k`` items spread over the range of ``scores``: for ``k`` evenly spaced targets
    from min to max, the unused item nearest to each (ties: the earlier item). Sorted by score."""
    if k <= 0:
        return []
    order = list(range(len(scores)))
    if k >= len(scores):
        return sorted(order, key=lambda i: (scores[i], i))
    lo, hi = min(scores), max(scores)
    targets = [lo + (hi - lo) * j / (k - 1) for j in range(k)] if k > 1 else [(lo + hi) / 2]
    used: list[int] = []
    for t in targets:
        best = min((i for i in order if i not in used), key=lambda i: (abs(scores[i] - t), i))
        used.append(best)
    return sorted(used, key=lambda i: (scores[i], i))
