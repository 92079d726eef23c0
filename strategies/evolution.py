"""Architecture costs and SPOS's evolutionary search, knowing no particular space.

Two pieces shared by :mod:`archgraph.strategies.spos` and :mod:`archgraph.strategies.proxylessnas`:

- :class:`ArchCost`: the cost (FLOPs or latency on this machine) and parameter count of every
  module a derived architecture can contain, measured once per node and edge of the supernet graph.
  The cost of one architecture is then a sum over what the BFS decoder keeps (nodes the head
  reaches through the chosen inputs), so a constraint check costs microseconds instead of a compile.
  FLOPs are additive over modules, so this equals ``torch.utils.flop_counter`` on the derived network
  up to the element-wise additions of the input sums.
- :func:`evolve`: the evolution of Guo et al., *Single Path One-Shot Neural Architecture Search with
  Uniform Sampling* (ECCV 2020), as in the official ``src/Search/search.py`` of
  megvii-model/SinglePathOneShot: a random initial population of legal, not yet seen candidates;
  per generation the top ``select`` of everything scored so far are parents; ``mutation`` children
  (each gene redrawn uniformly with probability ``mutation_prob``) and ``crossover`` children (each
  gene from one of two random parents) are tried at most ten times their number each; random
  candidates fill the population up. Every candidate must pass the constraint before it is scored.

A candidate is a tuple of gene values: an ``int`` for an op gene (one of ``n`` ops), a sorted tuple of
``k`` distinct ints for an input gene (``k`` of ``n`` inputs).
"""

from __future__ import annotations

import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

import networkx as nx
import torch
from torch import nn

from archgraph.core.choices import discover_choices
from archgraph.core.costs import count_flops, count_params
from archgraph.errors import ConfigError
from archgraph.core.graph import head_node, input_node, inputs_of, node_spec
from archgraph.core.ops import build_alignment, build_op, get_op

GeneValue = Union[int, tuple[int, ...]]
Candidate = tuple[GeneValue, ...]

COST_METRICS = ("flops", "latency")


# --------------------------------------------------------------------------------------------------
# Costs of derived architectures


def _feature(channels: int, scale: int, image_hw: Sequence[int]) -> torch.Tensor:
    h, w = (max(1, -(-int(d) // scale)) for d in image_hw)
    return torch.zeros(1, channels, h, w)


@torch.no_grad()
def measure_latency(module: nn.Module, *inputs: Any, repeats: int = 5) -> float:
    """Median wall time of one forward pass in seconds, after one warm-up pass (eval mode, batch 1)."""
    module.eval()
    module(*inputs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        module(*inputs)
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


class ArchCost:
    """Per-module cost table of a supernet graph; cost and params of any architecture of it.

    ``metric``: ``flops`` (``torch.utils.flop_counter``, a multiply-add counts 2) or ``latency``
    (seconds per image on this machine, median of 5 runs). Modules with the same shapes are measured
    once. Shared choice labels resolve through the label (one decision per label).
    """

    def __init__(self, graph: nx.DiGraph, image_hw: Sequence[int], metric: str = "flops"):
        if metric not in COST_METRICS:
            raise ConfigError(f"cost metric must be one of {COST_METRICS}, got {metric!r}")
        self.graph = graph
        self.image_hw = tuple(int(d) for d in image_hw)
        self.metric = metric
        self.choices = discover_choices(graph)
        self.head = head_node(graph)
        self.input = input_node(graph)
        self._cache: dict[tuple, tuple[float, int]] = {}
        self.op_cost: dict[str, list[tuple[float, int]]] = {}  # node -> per candidate op (cost, params)
        self.branch_cost: dict[str, dict[str, tuple[float, int]]] = {}  # node -> source -> (cost, params)
        self.op_label: dict[str, str] = {c.node: c.label for c in self.choices.ops}
        self.input_label: dict[str, tuple[str, tuple[str, ...]]] = {c.node: (c.label, c.candidates) for c in self.choices.inputs}
        for n in graph.nodes:
            if n != self.input:
                self._measure_node(n)

    def _measure(self, key: tuple, build: Callable[[], nn.Module], *inputs: Any) -> tuple[float, int]:
        if key not in self._cache:
            module = build()
            value = float(count_flops(module, *inputs)) if self.metric == "flops" else measure_latency(module, *inputs)
            self._cache[key] = (value, count_params(module))
        return self._cache[key]

    def _measure_node(self, n: str) -> None:
        g, hw = self.graph, self.image_hw
        spec = node_spec(g, n)
        preds = inputs_of(g, n)
        in_specs = [node_spec(g, p) for p in preds]
        if get_op(spec.ops[0]).takes_list:
            feats = [_feature(s.channels, s.scale, hw) for s in in_specs]
            key = ("head", spec.ops[0], spec.channels, tuple((s.channels, s.scale) for s in in_specs))
            self.op_cost[n] = [self._measure(key, lambda: build_op(spec.ops[0], spec, in_specs), feats)]
            self.branch_cost[n] = {p: (0.0, 0) for p in preds}
            return
        x = _feature(spec.channels, spec.scale, hw)
        self.op_cost[n] = [
            self._measure(("op", name, spec.channels, spec.scale, tuple((s.channels, s.scale) for s in in_specs)), lambda name=name: build_op(name, spec, in_specs), x)
            for name in spec.ops
        ]
        self.branch_cost[n] = {
            p: self._measure(("align", s.channels, s.scale, spec.channels, spec.scale, spec.upsample), lambda s=s: build_alignment(s, spec), _feature(s.channels, s.scale, hw))
            for p, s in zip(preds, in_specs)
        }

    def of(self, op_idx: Mapping[str, int], input_idx: Mapping[str, Sequence[int]]) -> tuple[float, int]:
        """(cost, params) of the architecture the decoder derives from these decisions."""
        kept: dict[str, list[str]] = {}
        for n, (label, cands) in self.input_label.items():
            kept[n] = [p for p in inputs_of(self.graph, n) if p not in cands] + [cands[i] for i in input_idx[label]]  # fixed inputs stay
        reached, queue = {self.head}, deque([self.head])
        cost, params = 0.0, 0
        while queue:
            n = queue.popleft()
            op = self.op_cost[n][op_idx[self.op_label[n]]] if n in self.op_label else self.op_cost[n][0]
            cost, params = cost + op[0], params + op[1]
            for p in kept.get(n, inputs_of(self.graph, n)):
                b = self.branch_cost[n][p]
                cost, params = cost + b[0], params + b[1]
                if p not in reached and p != self.input:
                    reached.add(p)
                    queue.append(p)
        return cost, params

    def expected(self, op_probs: Mapping[str, torch.Tensor], input_probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable expected cost of the whole supernet graph (no pruning): fixed modules count
        fully, an op choice by its op probabilities, an input choice by ``k`` times its path
        probabilities (as the expected-FLOPs regulariser of archgraph.strategies.base). Labels missing from the
        mappings count at uniform probabilities."""
        total = torch.zeros((), dtype=torch.float64)
        keep = {c.node: c.keep for c in self.choices.inputs}
        for n, costs in self.op_cost.items():
            values = torch.tensor([c for c, _ in costs], dtype=torch.float64)
            label = self.op_label.get(n)
            if label is None:
                total = total + values[0]
            elif label in op_probs:
                total = total + (op_probs[label].to(torch.float64) * values).sum()
            else:
                total = total + values.mean()
            branches = self.branch_cost[n]
            if n in self.input_label:
                label, cands = self.input_label[n]
                values = torch.tensor([branches[p][0] for p in cands], dtype=torch.float64)
                total = total + sum(c for p, (c, _) in branches.items() if p not in cands)  # fixed inputs beside the choice
                if label in input_probs:
                    total = total + keep[n] * (input_probs[label].to(torch.float64) * values).sum()
                else:
                    total = total + keep[n] * values.mean()
            else:
                total = total + sum(c for c, _ in branches.values())
        return total


# --------------------------------------------------------------------------------------------------
# Evolution


@dataclass(frozen=True)
class Gene:
    """One choice point: an op gene (``keep`` is None: one of ``n``) or an input gene (``keep`` of ``n``)."""

    n: int
    keep: int | None = None

    def random(self, rng: random.Random) -> GeneValue:
        if self.keep is None:
            return rng.randrange(self.n)
        return tuple(sorted(rng.sample(range(self.n), self.keep)))


@dataclass
class EvolutionConfig:
    """The official search.py defaults (population 50, 20 generations, top-10, 25 + 25 children)."""

    population: int = 50
    generations: int = 20
    select: int = 10
    mutation: int = 25
    crossover: int = 25
    mutation_prob: float = 0.1
    random_tries: int = 100  # random draws allowed per missing population member (the official loop has no cap)

    def check(self, prefix: str = "strategy.") -> None:
        for key in ("population", "select"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}{key} must be >= 1, got {getattr(self, key)}")
        for key in ("generations", "mutation", "crossover"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{prefix}{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.mutation_prob <= 1:
            raise ConfigError(f"{prefix}mutation_prob must be in [0, 1], got {self.mutation_prob}")

    def max_scored(self) -> int:
        """At most this many candidates get scored: the initial population, then per generation the
        children (mutation + crossover) or the random fill-up to ``population``, whichever is more.
        Fewer when children repeat earlier candidates or the space runs out of legal ones."""
        return self.population + self.generations * max(self.population, self.mutation + self.crossover)


@dataclass
class EvolutionResult:
    best: Candidate
    fitness: float
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per generation
    scored: dict[Candidate, float] = field(default_factory=dict)  # every candidate scored, in order


def mutate(parent: Candidate, genes: Sequence[Gene], prob: float, rng: random.Random) -> Candidate:
    return tuple(g.random(rng) if rng.random() < prob else v for g, v in zip(genes, parent))


def crossover(a: Candidate, b: Candidate, rng: random.Random) -> Candidate:
    return tuple(rng.choice((x, y)) for x, y in zip(a, b))


class _Run:
    """The state of one evolution: its RNG, every candidate scored (in order) and every illegal one seen.

    One method per phase of the official ``EvolutionSearcher.search()``; :func:`evolve` calls them in
    the official order, so the RNG draws (and hence the result for a seed) follow from that order.
    """

    def __init__(self, genes: Sequence[Gene], fitness: Callable[[Candidate], float], legal: Callable[[Candidate], bool], cfg: EvolutionConfig, seed: int):
        self.genes, self.fitness, self.legal, self.cfg = genes, fitness, legal, cfg
        self.rng = random.Random(seed)
        self.scored: dict[Candidate, float] = {}
        self.illegal: set[Candidate] = set()

    def admit(self, cand: Candidate) -> bool:
        """The official is_legal(): not seen before, within the constraint; then scored."""
        if cand in self.scored or cand in self.illegal:
            return False
        if not self.legal(cand):
            self.illegal.add(cand)
            return False
        self.scored[cand] = float(self.fitness(cand))
        return True

    def fill(self, pool: list[Candidate]) -> list[Candidate]:
        """Random legal, unseen candidates until ``pool`` has ``population`` members (capped tries)."""
        tries = self.cfg.random_tries * self.cfg.population
        while len(pool) < self.cfg.population and tries > 0:
            tries -= 1
            cand = tuple(g.random(self.rng) for g in self.genes)
            if self.admit(cand):
                pool.append(cand)
        return pool

    def initial_population(self) -> list[Candidate]:
        candidates = self.fill([])
        if not candidates:
            raise ConfigError("the evolution found no candidate within the constraint; relax strategy.flops_limit / params_limit")
        return candidates

    def select(self, cands: list[Candidate]) -> list[Candidate]:
        """The top ``select`` by fitness; stable, so the earlier-scored candidate wins a tie."""
        return sorted(cands, key=lambda c: -self.scored[c])[: self.cfg.select]

    def _children(self, make: Callable[[], Candidate], num: int) -> list[Candidate]:
        """Up to ``num`` admitted children of ``make``, from at most ``10 * num`` tries (official)."""
        out: list[Candidate] = []
        for _ in range(num * 10):
            if len(out) >= num:
                break
            cand = make()
            if self.admit(cand):
                out.append(cand)
        return out

    def mutation(self, parents: list[Candidate]) -> list[Candidate]:
        rng, cfg = self.rng, self.cfg
        return self._children(lambda: mutate(rng.choice(parents), self.genes, cfg.mutation_prob, rng), cfg.mutation)

    def crossover(self, parents: list[Candidate]) -> list[Candidate]:
        rng = self.rng
        return self._children(lambda: crossover(rng.choice(parents), rng.choice(parents), rng), self.cfg.crossover)

    def next_population(self, top: list[Candidate]) -> list[Candidate]:
        """Mutants and crossovers of the top-k, filled up with random candidates."""
        parents = list(top)
        mutants = self.mutation(parents)
        crossed = self.crossover(parents)
        return self.fill(mutants + crossed)

    def record(self, gen: int, candidates: list[Candidate], top: list[Candidate]) -> dict[str, Any]:
        return {
            "generation": gen,
            "population": [[_plain(c), self.scored[c]] for c in candidates],
            "top": [[_plain(c), self.scored[c]] for c in top],
            "best_fitness": self.scored[top[0]],
            "scored": len(self.scored),
        }


def evolve(
    genes: Sequence[Gene],
    fitness: Callable[[Candidate], float],
    legal: Callable[[Candidate], bool],
    cfg: EvolutionConfig,
    seed: int = 0,
    on_generation: Callable[[dict[str, Any]], None] | None = None,
) -> EvolutionResult:
    """Maximise ``fitness`` over candidates that pass ``legal``; every candidate is scored once.

    Initial population, then per generation: selection of the top-k over everything ranked so far,
    a record (``on_generation``), mutation, crossover, random fill-up. Reproducible for a fixed
    ``seed`` (and a deterministic ``fitness``).
    """
    cfg.check()
    run = _Run(genes, fitness, legal, cfg, seed)
    candidates = run.initial_population()
    top: list[Candidate] = []
    history: list[dict[str, Any]] = []
    for gen in range(cfg.generations + 1):
        top = run.select(top + candidates)
        history.append(run.record(gen, candidates, top))
        if on_generation is not None:
            on_generation(history[-1])
        if gen == cfg.generations:
            break  # the last generation's children are ranked too (the official loop scores them but stops)
        candidates = run.next_population(top)
    return EvolutionResult(top[0], run.scored[top[0]], history, run.scored)


def _plain(cand: Candidate) -> list:
    return [list(v) if isinstance(v, tuple) else v for v in cand]
