"""Live-subgraph plans: the part of a compiled network's static plan that one draw needs.

A sampling strategy (DCNAS path sampling, SPOS, ProxylessNAS) decides before a forward pass which
candidate inputs each input choice computes (:meth:`archgraph.core.relaxation.Relaxation.draw_pass`).
A node whose output reaches the head through no computed input is *dead*: computing it cannot change
the loss, its parameters would get no gradient, so the compiled network skips it.

Liveness is pure slot arithmetic on the static plan (no networkx at run time): one backward sweep
from the head's slot marks the slots each live step actually reads: its inputs that are not among
its input choice's candidates (always read, e.g. a U-Net decoder node's fixed up-path), plus the
candidates the draw computes. A node without an input choice, a ``cell`` (whose body runs in full)
and the head read all their inputs. A forward sweep then recomputes when each slot can be freed, so
a slot that only undrawn readers list is dropped right after its last real reader.

Plans are cached per draw (bounded, least recently used first out): late in a search, when beta is
sharp, draws repeat and the sweep is skipped altogether.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping, Sequence

import networkx as nx

from archgraph.core.choices import ChoicePoints, InputChoice, OpChoice, qualify
from archgraph.core.graph import execution_order, node_spec
from archgraph.errors import GraphError

CACHE_SIZE = 512  # plans kept per network; a plan is a few small tuples


@dataclass(frozen=True)
class StepReads:
    """What one step of the static plan reads, split by whether a draw can skip it."""

    fixed: tuple[int, ...]  # slots read whenever the step runs
    candidates: tuple[int, ...] | None  # slot of the j-th candidate of its input choice; None = no input choice
    choice: str | None  # the node id the draw is keyed by (None: no input choice)


@dataclass(frozen=True)
class LivePlan:
    """The steps of one draw's live subgraph, with frees recomputed for the reads that really happen."""

    steps: tuple[Any, ...]  # ``Step`` records (archgraph.core.compile), in plan order
    indices: tuple[int, ...]  # position of each live step in the static plan
    live_searchable: int  # live steps whose node has a choice point (fusion nodes in DCSS)
    total_searchable: int

    @property
    def fraction(self) -> float:
        """Live share of the nodes with a choice point (1.0 when there are none)."""
        return self.live_searchable / self.total_searchable if self.total_searchable else 1.0


def forward_choice_order(graph: nx.DiGraph, choices: ChoicePoints) -> tuple[InputChoice | OpChoice, ...]:
    """Every choice point in the order a full forward pass reaches its mixer: nodes in execution
    order (a cell's body right after the cell), a node's input choice before its op choice (the node
    module calls its input mixer first). A relaxation that draws in this order consumes its random
    stream exactly as mixers drawing when they run would."""
    inputs = {c.node: c for c in choices.inputs}
    ops = {c.node: c for c in choices.ops}
    out: list[InputChoice | OpChoice] = []
    for node in _nodes_in_order(graph, ""):
        if node in inputs:
            out.append(inputs[node])
        if node in ops:
            out.append(ops[node])
    return tuple(out)


def _nodes_in_order(g: nx.DiGraph, prefix: str) -> Iterator[str]:
    for local in execution_order(g):
        yield qualify(prefix, local)
        body = node_spec(g, local).body
        if body is not None:
            yield from _nodes_in_order(body, qualify(prefix, local))


class LivePlanner:
    """Derives and caches the live plan of a draw from a network's static plan (built once)."""

    def __init__(self, plan: Sequence[Any], slot_of: Mapping[str, int], choices: ChoicePoints, cache_size: int = CACHE_SIZE):
        self.plan = tuple(plan)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, LivePlan] = OrderedDict()
        top = {c.node: c for c in choices.inputs if c.node in slot_of}
        searchable = {c.node for c in (*choices.inputs, *choices.ops)}
        self._searchable = tuple(s.node in searchable for s in self.plan)
        self._reads = tuple(self._split(step, top.get(step.node), slot_of) for step in self.plan)
        self._keys = tuple(r.choice for r in self._reads if r.choice is not None)
        self._sizes = {c.node: len(c.candidates) for c in top.values()}  # candidates per keyed input choice, for messages

    @staticmethod
    def _split(step: Any, choice: InputChoice | None, slot_of: Mapping[str, int]) -> StepReads:
        if choice is None:
            return StepReads(tuple(step.inputs), None, None)
        missing = [c for c in choice.candidates if c not in slot_of or slot_of[c] not in step.inputs]
        if missing:
            raise GraphError(f"node {step.node!r}: input-choice candidates {missing} are not inputs of the node in the compiled plan")
        cand = tuple(slot_of[c] for c in choice.candidates)
        return StepReads(tuple(s for s in step.inputs if s not in cand), cand, choice.node)

    def plan_for(self, computed: Mapping[str, Sequence[int]]) -> LivePlan:
        """The live plan when input choice ``node`` computes candidates ``computed[node]`` (indices
        into its candidates); entries for nested (cell body) choices are ignored. A draw that is not
        such a mapping, or names something other than candidate indices, raises :class:`GraphError`
        naming the node, what was drawn and what is expected, here, before any node runs."""
        if not isinstance(computed, Mapping):
            raise GraphError(
                f"the relaxation's draw_pass() returned {type(computed).__name__} {computed!r:.80}; expected a mapping {{input-choice node: candidate indices computed}} (or None: run every node)"
            )
        key = tuple(self._key_part(node, computed) for node in self._keys)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        plan = self._derive(dict(zip(self._keys, key)))
        self._cache[key] = plan
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return plan

    def _key_part(self, node: str, computed: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
        try:
            drawn = computed[node]
        except KeyError:
            raise GraphError(f"the relaxation's draw_pass() gave no computed inputs for the input choice of node {node!r}; it must return an entry for every input choice it was handed") from None
        try:
            return tuple(sorted({operator.index(i) for i in drawn}))
        except TypeError:  # None, floats, strings, or not a sequence at all
            raise GraphError(f"node {node!r}: the relaxation's draw_pass() drew {drawn!r:.80} for its input choice; expected {self._expected(node)}") from None

    def _expected(self, node: str) -> str:
        n = self._sizes[node]
        return f"a list of 1 to {n} distinct candidate indices, integers in 0..{n - 1} (the node has {n} candidate inputs)"

    def _derive(self, computed: Mapping[str, tuple[int, ...]]) -> LivePlan:
        plan, reads = self.plan, [None] * len(self.plan)
        live = {plan[-1].output}
        for i in range(len(plan) - 1, -1, -1):  # backward sweep: a step is live if its output is read
            if plan[i].output not in live:
                continue
            info = self._reads[i]
            if info.candidates is None:
                r = info.fixed
            else:
                picked = computed[info.choice]  # type: ignore[index]
                if not picked or picked[0] < 0 or picked[-1] >= len(info.candidates):
                    what = "no input" if not picked else f"candidates {list(picked)}"
                    raise GraphError(
                        f"node {plan[i].node!r}: the relaxation's draw_pass() chose {what} for its input choice, and the node is on a path to the head; expected {self._expected(info.choice)}"
                    )  # type: ignore[arg-type]
                r = info.fixed + tuple(info.candidates[j] for j in picked)
            reads[i] = r
            live.update(r)
        last: dict[int, int] = {}
        for i, r in enumerate(reads):  # forward sweep: the last real reader of each slot frees it
            for s in r or ():
                last[s] = i
        frees: dict[int, list[int]] = {}
        for s, i in last.items():
            frees.setdefault(i, []).append(s)
        indices = tuple(i for i, r in enumerate(reads) if r is not None)
        steps = tuple(replace(plan[i], free=tuple(sorted(frees.get(i, ())))) for i in indices)
        return LivePlan(steps, indices, sum(self._searchable[i] for i in indices), sum(self._searchable))
