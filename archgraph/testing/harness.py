"""The checks' miniature search: a strategy's own steps on a tiny space, recorded.

:func:`exercise` builds a strategy on the tiny space and runs it for :data:`EXERCISE_EPOCHS` epochs
of :data:`EXERCISE_STEPS` steps (the first weight-only) through the search's own driver
(:class:`~archgraph.engine.driver.StrategyDriver`: stage, seeded build, ``search.w_*`` optimiser,
step hooks); forward hooks record which candidates ran in every forward pass and the architecture
optimiser's pre-hook records alpha's and beta's gradients at every architecture step. The subnet,
gradient and evaluation checks read one such run (and the gradient check a second one of the
reference strategy on the same graph and batches), so it lives apart from them. The weights'
learning rate stays at ``search.w_lr`` (no ``end_epoch``), as when the checks' tolerances were set:
two epochs are no schedule to test.

Also here: what every check needs around a run: the tiny space parameters, the global random state
put back afterwards, snapshots of a network restored in place, and the largest logit difference.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import networkx as nx
import torch

from archgraph.config import SearchConfig
from archgraph.configtools import dataclass_from_dict
from archgraph.core.compile import CompiledNetwork
from archgraph.core.registry import StrategyInfo, get_space
from archgraph.engine.driver import StrategyDriver
from archgraph.testing.report import CheckFailed

__all__ = [
    "BATCH_SIZE",
    "CROP",
    "EXERCISE_EPOCHS",
    "EXERCISE_STEPS",
    "TINY_SPACE",
    "ArchStep",
    "Exercised",
    "Recorder",
    "Snapshot",
    "exercise",
    "global_state_kept",
    "max_abs_diff",
    "node_module",
    "quiet_build",
    "tiny_space_params",
]

TINY_SPACE = {"layers": 2, "base_channels": 4}  # applied to the space's hyper-parameters it has
CROP, BATCH_SIZE = 32, 2  # the in-process checks' batches
EXERCISE_EPOCHS, EXERCISE_STEPS = 2, 3  # search steps before the subnet/gradient/evaluation checks: epoch 0 weight-only


def tiny_space_params(space: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``layers=2, base_channels=4`` for the keys ``space`` has, then ``given``."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(get_space(space).params)}
    return {**{k: v for k, v in TINY_SPACE.items() if k in fields}, **dict(given or {})}


@contextlib.contextmanager
def global_state_kept():
    """The checks seed torch, random and numpy and switch deterministic algorithms on (as a search
    does); the caller's states come back afterwards (a test suite's next test sees no difference)."""
    import random

    import numpy as np

    states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    deterministic = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])


@dataclass
class ArchStep:
    """One architecture step as the optimiser saw it: what the gradient check reads."""

    grads: dict[tuple[str, str], torch.Tensor | None]  # (kind, label) -> gradient at the optimiser step
    ran: set[tuple[str, str, int]]  # (kind, node, candidate index) that ran in the step's last forward


@dataclass
class Exercised:
    """A finished :func:`exercise`: the strategy, its trained supernet and what was recorded."""

    strategy: Any
    net: CompiledNetwork
    a_opt: torch.optim.Optimizer | None
    recorder: "Recorder"
    arch_steps: list[ArchStep]
    planned: int | None
    x: torch.Tensor  # a fixed batch for the comparisons


class Recorder:
    """Forward hooks on every candidate op and alignment branch of every choice point: which ran in
    each forward pass of the supernet (a forward pre-hook starts a new record)."""

    def __init__(self, net: CompiledNetwork):
        self.forwards: list[set[tuple[str, str, int]]] = [set()]
        net.register_forward_pre_hook(lambda module, args: self.forwards.append(set()))
        for kind, choices in (("op", net.choices.ops), ("input", net.choices.inputs)):
            for c in choices:
                module = node_module(net, c.node)
                candidates = module.op_list if kind == "op" else module.choice_branches  # the candidates' branches only
                for i, candidate in enumerate(candidates):
                    candidate.register_forward_hook(lambda m, a, o, key=(kind, c.node, i): self.forwards[-1].add(key))

    def last(self) -> set[tuple[str, str, int]]:
        return self.forwards[-1]


def node_module(net: CompiledNetwork, qualified: str) -> torch.nn.Module:
    """The module of a (possibly qualified, ``<cell>/<node>``) node of a compiled network."""
    parts = qualified.split("/")
    module = net.nodes[parts[0]]
    for local in parts[1:]:
        module = module.body.nodes[local]
    return module


def quiet_build(info: StrategyInfo, graph: nx.DiGraph, params: Any, search: SearchConfig, seed: int):
    """The strategy, built without its warnings about shared keys the tiny runs set for every strategy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "does not read search.warmup_epochs": the tiny runs set it for everyone
        return info.cls(graph, params, search, seed)


def _random_batch(gen: torch.Generator, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(BATCH_SIZE, 3, CROP, CROP, generator=gen)
    return x, torch.randint(0, classes, (BATCH_SIZE, CROP, CROP), generator=gen)


def exercise(info: StrategyInfo, graph: nx.DiGraph, options: Mapping[str, Any], seed: int) -> Exercised:
    """Strategy ``info`` with ``options`` on ``graph``: its first stage, built with torch seeded by
    ``seed``, run for :data:`EXERCISE_EPOCHS` x :data:`EXERCISE_STEPS` steps on random batches drawn
    from ``seed`` (the same batches for every strategy: the gradient check compares two runs)."""
    params = dataclass_from_dict(info.params, dict(options), "strategy")
    strategy = quiet_build(info, graph, params, SearchConfig(epochs=EXERCISE_EPOCHS, warmup_epochs=1), seed)
    driver = StrategyDriver(strategy, strategy.search, steps=EXERCISE_STEPS)
    stage = driver.begin_stage(0, build_seed=seed)
    net, a_opt = stage.net.train(), stage.a_opt
    if not len(net.choices):
        raise CheckFailed(f"the strategy's first-stage graph {strategy.graph.graph.get('name')!r} has no choice points")
    recorder = Recorder(net)
    steps: list[ArchStep] = []
    if a_opt is not None:
        labels = [("op", k, p) for k, p in net.arch.alpha.items()] + [("input", k, p) for k, p in net.arch.beta.items()]

        def capture(optimizer, args, kwargs) -> None:
            grads = {(kind, label): None if p.grad is None else p.grad.detach().clone() for kind, label, p in labels}
            steps.append(ArchStep(grads, set(recorder.last())))

        a_opt.register_step_pre_hook(capture)
    classes = int(graph.graph.get("num_classes") or 2)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(stage.epochs):
        driver.begin_epoch(stage, epoch)
        for step in range(epoch * EXERCISE_STEPS, (epoch + 1) * EXERCISE_STEPS):
            driver.step(stage, step, _random_batch(gen, classes), _random_batch(gen, classes))
    planned = strategy.planned_arch_steps(0, EXERCISE_STEPS)
    return Exercised(strategy, net, a_opt, recorder, steps, planned, _random_batch(gen, classes)[0])


class Snapshot:
    """Every parameter and buffer of a module, restored in place (much faster than load_state_dict)."""

    def __init__(self, module: torch.nn.Module):
        self.pairs = [(t, t.detach().clone()) for t in [*module.parameters(), *module.buffers()]]

    @torch.no_grad()
    def restore(self) -> None:
        for t, v in self.pairs:
            t.copy_(v)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference of two tensors; infinite when their shapes differ."""
    return float((a - b).abs().max()) if a.shape == b.shape else math.inf
