"""Scorers: one interface that gives a number to each of a batch of architectures.

A search ends in a trained supernet; turning it into one architecture (selection), checking whether
it ranks architectures well (``archgraph correlate``) and scoring architectures on demand
(``archgraph score``) all need the same thing: *a score per candidate architecture*. Keeping every
way of scoring behind one interface is what lets a selector and the correlation study measure the
same things, and lets a plug-in add a scorer that both pick up.

A candidate is the form the supernet's subnet mode takes (:data:`Candidate`: the chosen op per
op-choice label, the kept inputs per input-choice label). Scorers receive a *batch* of candidates,
so set-up (a data batch, a loader, a recalibration plan) happens once per batch.

Built-in scorers (``archgraph score --help`` lists them with their direction):

- ``supernet``: the candidate inside the trained supernet (subnet mode), BN statistics re-estimated
  on trainA batches, mIoU on the selection split (:func:`archgraph.engine.smiou.score_subnet`);
- ``synflow``, ``naswot``, ``grad_norm``, ``snip``, ``jacov``: zero-cost proxies of the candidate
  compiled stand-alone at initialisation (:mod:`archgraph.engine.proxies`);
- ``params``, ``flops``: the naive baselines (bigger is better, as ZiCo and NASLib count them);
- ``train``: stand-alone training with the config's ``train`` recipe (expensive: the ground truth of
  ``archgraph correlate``, not something to select with, since it is measured on data.val).

``docs/scoring.md`` describes each and where it simplifies its paper.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import networkx as nx
import torch

from archgraph.config import Config
from archgraph.core.choices import ChoicePoints, discover_choices
from archgraph.core.compile import CompiledNetwork
from archgraph.core.registry import Registry
from archgraph.engine.smiou import SearchData
from archgraph.errors import ConfigError

Candidate = tuple[dict[str, int], dict[str, list[int]]]  # (op_idx, input_idx): the form score_subnet takes

ENTRY_POINT_GROUP = "archgraph.scorers"  # plug-ins: ``name = "pkg.module:ScorerClass"`` (decorated with register_scorer)


@dataclass
class ScoringContext:
    """What a scorer may use: the trained supernet and its strategy, the search's data and config.

    ``graph`` is the supernet's graph (the last stage's for progressive strategies): a candidate's
    stand-alone network is decoded from it. Proxies ignore ``net`` and ``strategy``; they only need
    ``graph``, ``data`` and ``cfg`` (so a context for proxies can be built without a search).
    """

    net: CompiledNetwork | None
    strategy: Any
    data: SearchData
    cfg: Config
    device: torch.device
    graph: nx.DiGraph

    @property
    def choices(self) -> ChoicePoints:
        return self.net.choices if self.net is not None else discover_choices(self.graph)


@runtime_checkable
class Scorer(Protocol):
    """Scores a batch of candidates; ``higher_is_better`` says which way to rank them."""

    name: str
    higher_is_better: bool
    needs_trained_supernet: bool

    def score(self, ctx: ScoringContext, candidates: Sequence[Candidate]) -> list[float]: ...


ScorerFactory = Callable[..., Scorer]
SCORER_REGISTRY: Registry[ScorerFactory] = Registry("scorer", ENTRY_POINT_GROUP, hint="decorate a plug-in's class with @register_scorer(name)")  # built-ins: the same group
_SCORERS: dict[str, ScorerFactory] = SCORER_REGISTRY.table


def register_scorer(name: str) -> Callable[[ScorerFactory], ScorerFactory]:
    """Register a scorer class (or a factory) under ``name``; ``get_scorer(name)`` builds a fresh one.

    The factory's positional arguments, if any, come from the spec (``name:arg1:arg2``), as strings.
    """

    def deco(factory: ScorerFactory) -> ScorerFactory:
        if not name or ":" in name or "," in name:
            raise ConfigError(f"scorer name {name!r}: use a plain identifier (no ':' or ',')")
        SCORER_REGISTRY.add(name, factory)
        return factory

    return deco


def _load() -> None:
    """The built-ins (the proxies' module imports this one, so it loads on first use) and plug-ins,
    through the one entry-point loader."""
    SCORER_REGISTRY.load()


def scorer_names() -> list[str]:
    """Every registered scorer, sorted."""
    _load()
    return sorted(_SCORERS)


def scorer_doc(name: str) -> str:
    """The first line of a registered scorer's docstring (``archgraph score --list``)."""
    _load()
    if name not in _SCORERS:
        raise ConfigError(f"unknown scorer {name!r}; choose one of {', '.join(sorted(_SCORERS))}")
    return (_SCORERS[name].__doc__ or "").strip().split("\n")[0]


def get_scorer(spec: str) -> Scorer:
    """A fresh scorer from a spec: ``name`` or ``name:arg...`` (e.g. ``supernet:4``: 4 BN batches)."""
    _load()
    name, *args = str(spec).strip().split(":")
    if name not in _SCORERS:
        close = difflib.get_close_matches(name, _SCORERS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown scorer {name!r}; {hint}choose one of {', '.join(sorted(_SCORERS))}")
    factory = _SCORERS[name]
    try:
        inspect.signature(factory).bind(*args)
    except TypeError:
        raise ConfigError(f"scorer spec {spec!r}: {name} takes {_arity(factory)}; e.g. {name!r}") from None
    return factory(*args)


def _arity(factory: ScorerFactory) -> str:
    params = [p.name for p in inspect.signature(factory).parameters.values()]
    return "no arguments" if not params else "at most " + ", ".join(params)


def parse_scorers(specs: str | Sequence[str]) -> list[Scorer]:
    """Scorers from ``"a,b"`` or a list of specs; duplicates and empty lists are refused."""
    items = [s.strip() for s in (specs.split(",") if isinstance(specs, str) else specs) if s.strip()]
    if not items:
        raise ConfigError(f"no scorer named; choose from {', '.join(scorer_names())}")
    if len(set(items)) != len(items):
        raise ConfigError(f"scorer list {','.join(items)} names one twice; list each once")
    return [get_scorer(s) for s in items]


# --------------------------------------------------------------------------------------------------
# candidates as graphs


def one_hot_scores(choices: ChoicePoints, op_idx: dict[str, int], input_idx: dict[str, list[int]]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Scores under which the decoder picks exactly these indices."""
    ops = {c.label: [float(i == op_idx[c.label]) for i in range(len(c.candidates))] for c in choices.ops}
    inputs = {c.label: [float(i in input_idx[c.label]) for i in range(len(c.candidates))] for c in choices.inputs}
    return ops, inputs


def candidate_graph(graph: nx.DiGraph, candidate: Candidate, choices: ChoicePoints | None = None) -> nx.DiGraph:
    """The stand-alone architecture of a candidate: the supernet graph decoded with its decisions."""
    from archgraph.core.decode import decode

    choices = choices if choices is not None else discover_choices(graph)
    op_idx, input_idx = candidate
    missing = [c.label for c in choices.ops if c.label not in op_idx] + [c.label for c in choices.inputs if c.label not in input_idx]
    if missing:
        raise ConfigError(f"a candidate has no decision for {', '.join(sorted(set(missing))[:4])}; it was made for another supernet")
    return decode(graph, *one_hot_scores(choices, op_idx, input_idx))


# --------------------------------------------------------------------------------------------------
# the supernet scorer


@register_scorer("supernet")
class SupernetScorer:
    """mIoU on the selection split with the supernet's shared weights, BN recalibrated on trainA.

    The candidate runs in the supernet's subnet mode (:func:`archgraph.engine.smiou.score_subnet`,
    ``data.select``, never data.val). ``supernet:B`` recalibrates on B batches instead of
    ``search.bn_recalib_batches``."""

    name = "supernet"
    higher_is_better = True
    needs_trained_supernet = True

    def __init__(self, recalib_batches: str | int | None = None) -> None:
        self.recalib_batches = None if recalib_batches in (None, "") else _positive_int(recalib_batches, "supernet:B")

    def score(self, ctx: ScoringContext, candidates: Sequence[Candidate]) -> list[float]:
        """Every candidate with the selection split and the recalibration batches loaded once
        (:class:`~archgraph.engine.selection.splitcache.SplitCache`; the selection stage's own fast
        path), so a candidate costs its forward passes and nothing else."""
        from archgraph.engine.selection.splitcache import SplitCache, SubnetScorer

        if ctx.net is None or ctx.strategy is None:
            raise ConfigError("the supernet scorer needs a finished search's supernet; give a search run folder (archgraph score RUN)")
        if not candidates:
            return []
        cache = SplitCache.build(ctx.data, ctx.cfg, ctx.device, self.recalib_batches)
        with SubnetScorer(ctx.net, ctx.strategy.relaxation, cache) as scorer:
            return scorer.score_all(candidates)


def _positive_int(value: str | int, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a whole number; e.g. {what.split(':')[0]}:4") from None
    if n < 1:
        raise ConfigError(f"{what}: {n} must be at least 1")
    return n


# --------------------------------------------------------------------------------------------------
# stand-alone training: the ground truth

Trainer = Callable[[nx.DiGraph, Config], dict[str, Any]]  # (architecture, recipe) -> metrics.json's dict


@register_scorer("train")
class TrainScorer:
    """mIoU on data.val after stand-alone training with the config's train recipe (slow; ground truth).

    The ground truth of ``archgraph correlate``; far too expensive for selection, and measured on
    the split that reports results, so nothing that picks an architecture should use it.
    ``trainer`` replaces the training (the correlate study passes the run cache's, so an
    architecture trained before is not trained again); by default each candidate trains in a
    temporary folder that is removed afterwards.
    """

    name = "train"
    higher_is_better = True
    needs_trained_supernet = False

    def __init__(self, trainer: Trainer | None = None) -> None:
        if trainer is not None and not callable(trainer):
            raise ConfigError(f"scorer 'train' takes no argument in a spec (got {trainer!r}); write 'train'")
        self.trainer = trainer

    def score(self, ctx: ScoringContext, candidates: Sequence[Candidate]) -> list[float]:
        choices = ctx.choices
        return [float(self._train(candidate_graph(ctx.graph, c, choices), ctx.cfg)["miou"]) for c in candidates]

    def _train(self, graph: nx.DiGraph, cfg: Config) -> dict[str, Any]:
        if self.trainer is not None:
            return self.trainer(graph, cfg)
        import tempfile
        from pathlib import Path

        from archgraph.engine.train import run_training

        with tempfile.TemporaryDirectory(prefix="archgraph-score-train-") as tmp:
            return run_training(cfg, graph, Path(tmp) / "run", progress=False)
