"""Architecture costs and SPOS's evolutionary search, knowing no particular space.

Two pieces shared by :mod:`archgraph.strategies.spos` and :mod:`archgraph.strategies.proxylessnas`:

- :class:`ArchCost`: the cost (FLOPs or latency on this machine) and parameter count of an
  architecture, from the graph's cost model (:mod:`archgraph.core.costmodel`: every module a derived
  architecture can contain, measured once per distinct key). The cost of one architecture is a sum
  over what the BFS decoder keeps, so a constraint check costs microseconds instead of a compile;
  FLOPs and parameters equal ``torch.utils.flop_counter`` and the parameter count of the derived network.
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

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import networkx as nx
import torch

from archgraph.core.costmodel import CostModel
from archgraph.core.latency import measure_latency_table
from archgraph.errors import ConfigError
from archgraph.io import atomic_write_json

GeneValue = Union[int, tuple[int, ...]]
Candidate = tuple[GeneValue, ...]

COST_METRICS = ("flops", "latency")


# --------------------------------------------------------------------------------------------------
# Costs of derived architectures


class ArchCost:
    """SPOS's and ProxylessNAS's view of the graph's cost model (:class:`archgraph.core.costmodel.CostModel`):
    ``(cost, params)`` of an architecture and the expected cost, in the units these strategies use.

    ``metric``: ``flops`` (a multiply-add counts 2; raw FLOPs) or ``latency`` (seconds per image on
    this machine's CPU at ``image_hw``, from a latency table of the graph's items measured once, median
    of 5 runs each). Items with the same key are measured once; shared choice labels resolve through
    the label (one decision per label).
    """

    def __init__(self, graph: nx.DiGraph, image_hw: Sequence[int], metric: str = "flops"):
        if metric not in COST_METRICS:
            raise ConfigError(f"cost metric must be one of {COST_METRICS}, got {metric!r}")
        self.graph = graph
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.metric = metric
        table = measure_latency_table(graph, self.image_hw, "cpu", "fp32", warmup=1, reps=5) if metric == "latency" else None
        self.model = CostModel(graph, metric, self.image_hw, table)
        self.params_model = CostModel(graph, "params", self.image_hw)
        self.choices = self.model.choices
        self._seconds = 1e-3 if metric == "latency" else 1.0  # the table holds milliseconds

    def of(self, op_idx: Mapping[str, int], input_idx: Mapping[str, Sequence[int]]) -> tuple[float, int]:
        """(cost, params) of the architecture the decoder derives from these decisions."""
        cost = self.model.raw_of_decisions(op_idx, input_idx) * self._seconds
        return cost, int(self.params_model.raw_of_decisions(op_idx, input_idx))

    def expected(self, op_probs: Mapping[str, torch.Tensor], input_probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable expected cost (float64): op choices by their probabilities, input choices
        by ``k`` times their path probabilities, each node weighted by the probability that the head
        reaches it (:meth:`CostModel.raw_expected`). Labels missing from the mappings count uniformly."""
        keep = {c.label: c.keep for c in self.choices.inputs}
        use = {label: keep[label] * p for label, p in input_probs.items() if label in keep}
        return self.model.raw_expected(op_probs, use) * self._seconds


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
        self.genes, self.fitness, self.legal, self.cfg, self.seed = genes, fitness, legal, cfg, seed
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
            raise ConfigError("the evolution found no candidate within the constraint; relax strategy.flops_limit / params_limit / search.cost_limit")
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


class EvolutionState:
    """An evolution's state between generations, saved atomically to one JSON file so that an
    interrupted evolution resumes at its last finished generation instead of generation 0.

    Saved once a generation's candidates are all scored: the generation's index, its candidates, the
    top-k so far, every candidate scored (in order, with its fitness), the illegal ones, the RNG and
    the history. Resuming restores exactly that, so the remaining generations draw and score what an
    uninterrupted run would have (for a deterministic fitness): the same result. ``fingerprint``
    names what the state belongs to (the caller adds e.g. a digest of the supernet's weights); a file
    whose fingerprint, genes, seed or evolution settings differ is ignored and replaced.
    """

    def __init__(self, path: Path | str, fingerprint: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.fingerprint = dict(fingerprint or {})

    def _key(self, genes: Sequence[Gene], cfg: EvolutionConfig, seed: int) -> dict[str, Any]:
        return json.loads(json.dumps({"fingerprint": self.fingerprint, "genes": [[g.n, g.keep] for g in genes], "cfg": asdict(cfg), "seed": seed}))

    def save(self, run: "_Run", gen: int, candidates: list[Candidate], top: list[Candidate], history: list[dict[str, Any]]) -> None:
        version, internal, gauss = run.rng.getstate()
        atomic_write_json(
            self.path,
            {
                "key": self._key(run.genes, run.cfg, run.seed),
                "generation": gen,
                "candidates": [_plain(c) for c in candidates],
                "top": [_plain(c) for c in top],
                "scored": [[_plain(c), f] for c, f in run.scored.items()],
                "illegal": [_plain(c) for c in run.illegal],
                "rng": [version, list(internal), gauss],
                "history": history,
            },
        )

    def load(self, run: "_Run") -> tuple[int, list[Candidate], list[Candidate], list[dict[str, Any]]] | None:
        """Restore ``run`` from the file: (generation, its candidates, top-k, history); None when there
        is no usable state (missing, unreadable, or another evolution's)."""
        try:
            state = json.loads(self.path.read_text())
            if state.get("key") != self._key(run.genes, run.cfg, run.seed):
                return None
            version, internal, gauss = state["rng"]
            scored = {_candidate(c): float(f) for c, f in state["scored"]}
            illegal = {_candidate(c) for c in state["illegal"]}
            restored = (int(state["generation"]), [_candidate(c) for c in state["candidates"]], [_candidate(c) for c in state["top"]], list(state["history"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        run.rng.setstate((version, tuple(internal), gauss))
        run.scored, run.illegal = scored, illegal
        return restored

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def evolve(
    genes: Sequence[Gene],
    fitness: Callable[[Candidate], float],
    legal: Callable[[Candidate], bool],
    cfg: EvolutionConfig,
    seed: int = 0,
    on_generation: Callable[[dict[str, Any]], None] | None = None,
    state: EvolutionState | None = None,
) -> EvolutionResult:
    """Maximise ``fitness`` over candidates that pass ``legal``; every candidate is scored once.

    Initial population, then per generation: selection of the top-k over everything ranked so far,
    a record (``on_generation``), mutation, crossover, random fill-up. Reproducible for a fixed
    ``seed`` (and a deterministic ``fitness``). With ``state``, each generation's state is saved once
    its candidates are scored, and a saved state resumes there (``on_generation`` is then called
    only for the generations run now).
    """
    cfg.check()
    run = _Run(genes, fitness, legal, cfg, seed)
    restored = state.load(run) if state is not None else None
    if restored is not None:
        start, candidates, top, history = restored
    else:
        start, top, history = 0, [], []
        candidates = run.initial_population()
        if state is not None:
            state.save(run, 0, candidates, top, history)
    for gen in range(start, cfg.generations + 1):
        top = run.select(top + candidates)
        history.append(run.record(gen, candidates, top))
        if on_generation is not None:
            on_generation(history[-1])
        if gen == cfg.generations:
            break  # the last generation's children are ranked too (the official loop scores them but stops)
        candidates = run.next_population(top)
        if state is not None:
            state.save(run, gen + 1, candidates, top, history)
    return EvolutionResult(top[0], run.scored[top[0]], history, run.scored)


def _plain(cand: Candidate) -> list:
    return [list(v) if isinstance(v, tuple) else v for v in cand]


def _candidate(plain: Sequence[Any]) -> Candidate:
    """:func:`_plain`'s inverse: lists back to the tuples of input genes."""
    return tuple(tuple(int(i) for i in v) if isinstance(v, list) else int(v) for v in plain)
