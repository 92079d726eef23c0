"""Checks any strategy must pass on any space, runnable by a plug-in author in about a minute.

``archgraph check-strategy NAME --space NAME`` (or :func:`check_strategy` from Python) runs a
registered strategy on tiny sizes and prints one line per check, ``PASS``, ``FAIL`` or ``SKIP``
with the reason; the command exits 1 when a check fails. The checks, and the part of the strategy
contract (docs/plugins.md) each one holds the strategy to:

- ``subnet``: subnet mode (``relaxation.fixed_subnet``, what S-mIoU and SPOS's evolution evaluate)
  computes the derived network: the same logits to 1e-5 as the stand-alone network built from the
  decoded graph with the supernet's weights, in evaluation and in training mode (BN recalibration
  runs in training mode), for the strategy's own architecture and a random one. Only the chosen
  candidates run, alpha/beta and the other candidates' weights make no difference, and nothing is
  drawn. A strategy whose ops are narrower than the node (partial channels) cannot be compared
  with the full-width derived network; it gets every other part of the check.
- ``gradients``: architecture steps happen as :meth:`Strategy.planned_arch_steps` promises, and
  their gradients are finite and reach alpha and beta on candidates that ran in that step (a
  strategy without architecture optimiser is skipped). Their *size* is compared with the reference
  strategy's (:data:`GRADIENT_REFERENCE`, the continuous relaxation) on the same graph and batches:
  when more than half of the choices whose candidates ran get gradients over
  :data:`GRADIENT_RATIO` times smaller, the check fails (a hard straight-through gate whose path is
  the only input of the next BatchNorm: BN cancels the gate's scale; :mod:`archgraph.core.straight_through`).
- ``evaluation``: where the strategy claims it (``eval_is_derived = True``), evaluation mode outside
  subnet mode computes the derived network, deterministically.
- ``resume``: a short search (:func:`archgraph.engine.search.run_search`, a checkpoint after every
  step) killed mid-epoch and resumed ends bit-identical to an uninterrupted one: arch.yaml,
  scores.json, every tensor of the supernet and the strategy's state (its sampler's generator
  belongs in ``state_dict``).
- ``planted``: on a graph whose right answer is known (:func:`planted_graph`: the label of every
  pixel is the sign of the image's first channel; only the full-resolution input and the identity op
  keep it), the strategy finds the planted op and input decisively in most seeds, through its own
  ``search_step`` and ``on_search_end``. tests/test_planted_signal.py runs the same graph over five
  seeds with negative controls.

The checks run with the strategy's defaults, its ``check_options`` (and ``planted_options``,
``planted_steps`` for the planted run) and whatever ``options`` the caller adds; the space with
``layers=2, base_channels=4`` where it has such hyper-parameters, updated by ``space_params``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import networkx as nx
import torch

from archgraph.config import SearchConfig, load_config
from archgraph.configtools import dataclass_from_dict
from archgraph.core.choices import resolve_node
from archgraph.core.compile import CompiledNetwork, compile_graph, transfer_weights
from archgraph.core.decode import decisions, decode, get_decoder, uniform_scores
from archgraph.core.graph import NodeSpec, add_edge, add_node, new_graph, node_spec
from archgraph.core.registry import STRATEGIES, StrategyInfo, check_support, get_space, get_strategy, load_plugins
from archgraph.core.spaces_api import build_space
from archgraph.engine.driver import StrategyDriver
from archgraph.errors import ConfigError

__all__ = [
    "CHECKS", "CheckReport", "CheckResult", "PlantedSetup", "Searched", "build_planted", "check_strategy", "cut_arch_gradients", "hits",
    "margin", "outcome", "planted_batch", "planted_graph", "planted_setup", "run_planted", "subnet_accuracy",
]

CHECKS = ("subnet", "gradients", "evaluation", "resume", "planted")
TINY_SPACE = {"layers": 2, "base_channels": 4}  # applied to the space's hyper-parameters it has
ATOL = 1e-5  # logits of subnet mode against the derived network (as tests/test_compile.py)
CROP, BATCH_SIZE = 32, 2  # the in-process checks' batches
EXERCISE_EPOCHS, EXERCISE_STEPS = 2, 3  # search steps before the subnet/gradient/evaluation checks: epoch 0 weight-only
GRADIENT_REFERENCE = "darts"  # the strategy whose architecture gradients a strategy's are compared with
GRADIENT_RATIO = 1e-3  # a choice's gradient this many times smaller than the reference's counts as vanished
GRADIENT_VANISHED_SHARE = 0.5  # ... and the check fails when more than this share of the compared choices vanish
RESUME_RUN = [  # the resume check's searches, a checkpoint after every step; epochs and steps: _resume_budget
    "data.name=synthetic", "data.crop=[32,32]", "data.batch_size=2", "data.val_limit=2", "search.warmup_epochs=1",
    "search.bn_recalib_batches=1", "search.checkpoint_every=1", "search.eval_every=0",
]
# (epochs, steps per epoch) tried in turn until the strategy plans an architecture step (ProxylessNAS
# takes one after every 5 steps)
RESUME_BUDGETS = ((2, 2), (2, 3), (2, 4), (2, 5), (3, 5))


# ================================================================================================
# The planted graph (also used by tests/test_planted_signal.py)

CHANNELS = 4
PLANTED_OPS = ("avg_pool_3x3", "skip_connect", "max_pool_3x3")
SOURCES = (("coarse4", 4), ("fine", 1), ("coarse8", 8))  # (stem, scale), in the input choice's order
PLANTED_OP, PLANTED_INPUT = "skip_connect", "fine"
MARGIN = 0.01  # planted probability minus the runner-up's (ten times the 1e-3 initialisation noise)
FITNESS_MARGIN = 0.06  # fitness-driven strategies (SPOS): planted pixel accuracy minus the best other architecture's
PLANTED_EPOCHS, PLANTED_STEPS, PLANTED_HW, PLANTED_BATCH = 3, 16, 8, 8  # epoch 0 weight-only, then 2 x steps architecture steps


def planted_graph() -> nx.DiGraph:
    """Three stems see the image at 1/4, 1/1 and 1/8; node ``pick`` (1/1) chooses one of them (input
    choice, keep 1) and an op among avg pool, skip, max pool; the planted answer is ``fine`` +
    ``skip_connect`` (neither its choice's first candidate)."""
    g = new_graph("planted", num_classes=2)
    add_node(g, "image", NodeSpec("input", 0, 1, 3))
    for name, scale in SOURCES:
        add_node(g, name, NodeSpec("stem", 0, scale, CHANNELS, ("conv3x3",)))
        add_edge(g, "image", name)
    add_node(g, "pick", NodeSpec("fusion", 1, 1, CHANNELS, PLANTED_OPS, keep_inputs=1))
    for name, _ in SOURCES:
        add_edge(g, name, "pick", kind="candidate")
    add_node(g, "head", NodeSpec("head", 2, 1, 2, ("head_simple",)))
    add_edge(g, "pick", "head")
    return g


def planted_batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random images labelled, per pixel, by the sign of their first channel."""
    x = torch.randn(PLANTED_BATCH, 3, PLANTED_HW, PLANTED_HW, generator=gen)
    return x, (x[:, 0] > 0).long()


@dataclass
class PlantedSetup:
    options: dict[str, Any] = field(default_factory=dict)  # strategy options that differ from the defaults
    steps: int = PLANTED_STEPS  # steps per epoch


def planted_setup(info: StrategyInfo, options: Mapping[str, Any] | None = None) -> PlantedSetup:
    """A strategy's planted run: its ``check_options`` and ``planted_options`` (then ``options``),
    and its ``planted_steps`` per epoch."""
    cls = info.cls
    merged = {**dict(getattr(cls, "check_options", {}) or {}), **dict(getattr(cls, "planted_options", {}) or {}), **dict(options or {})}
    return PlantedSetup({k: list(v) if isinstance(v, list) else v for k, v in merged.items()}, getattr(cls, "planted_steps", None) or PLANTED_STEPS)


def build_planted(name: str, seed: int, options: Mapping[str, Any] | None = None):
    """Strategy ``name`` on the planted graph, its first stage begun: 3 epochs, the first weight-only.

    The warm-up is set with ``search.warmup_epochs=1``; a strategy that says it does not read that
    key (it warns, e.g. PC-DARTS: ``strategy.warmup_fraction``) is built again with its own rule."""
    info = get_strategy(name)
    params = info.params(**planted_setup(info, options).options)
    for search in (SearchConfig(epochs=PLANTED_EPOCHS, warmup_epochs=1), SearchConfig(epochs=PLANTED_EPOCHS)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            strategy = info.cls(planted_graph(), params, search, seed)
        if not any("does not read search." in str(w.message) for w in caught):
            break
    strategy.begin_stage(0, None)
    return strategy


def cut_arch_gradients(a_opt: torch.optim.Optimizer) -> None:
    """Zero alpha's and beta's gradients right before each step (also those ProxylessNAS writes by hand)."""

    def zero(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.zero_()

    a_opt.register_step_pre_hook(zero)


def subnet_accuracy(net, relaxation, gen: torch.Generator, record: dict) -> Callable[..., float]:
    """SPOS's fitness as the search loop's scorer computes it (BN statistics re-estimated in subnet
    mode on ``recalib_batches`` training batches, then held-out batches; the supernet's BN state
    restored), as pixel accuracy. Every score lands in ``record``."""
    recalib = [planted_batch(gen)[0] for _ in range(2)]
    held_out = [planted_batch(gen) for _ in range(4)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def score(ops: dict[str, int], inputs: dict[str, list[int]], recalib_batches: int | None = None) -> float:
        saved = [(m.momentum, {k: v.clone() for k, v in m.named_buffers()}) for m in bns]
        with relaxation.fixed_subnet(ops, inputs), torch.no_grad():
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            net.train()
            for x in recalib[: recalib_batches or len(recalib)]:
                net(x)
            net.eval()
            acc = sum(float((net(x).argmax(1) == y).float().mean()) for x, y in held_out) / len(held_out)
        for m, (momentum, buffers) in zip(bns, saved):
            m.momentum = momentum
            for k, v in buffers.items():
                getattr(m, k).copy_(v)
        net.train()
        record[(ops["pick"], tuple(inputs["pick"]))] = acc
        return acc

    return score


@dataclass
class Searched:
    strategy: Any
    net: Any
    fitness: dict = field(default_factory=dict)  # fitness-driven strategies: (op index, input indices) -> accuracy


def run_planted(strategy, seed: int, cut: bool = False, steps: int | None = None) -> Searched:
    """The search loop in miniature on the planted graph: the strategy's own steps, then its
    end-of-search hook (SPOS's evolution). ``cut``: the learning signal removed (alpha's and beta's
    gradients zeroed before every step; for a strategy without architecture optimiser, the weights'
    gradients). ``steps`` per epoch: the strategy's ``planted_steps`` when None.

    Driven by :class:`~archgraph.engine.driver.StrategyDriver`, as the search is: its first stage
    begun (again: :func:`build_planted` began it so that callers can build a supernet themselves;
    stage 0 of a fresh strategy begins the same way twice), torch seeded with ``seed`` right before
    the supernet's weights are drawn, the weight optimiser from the strategy's ``search.w_*``. The
    weights' learning rate stays at ``search.w_lr`` (no ``end_epoch``): with the search's cosine over
    these three epochs, DCNAS's and PC-DARTS's op margin falls below :data:`MARGIN` in one seed of
    five, and the numbers in tests/test_planted_signal.py were measured without it."""
    steps = steps or getattr(type(strategy), "planted_steps", None) or PLANTED_STEPS
    driver = StrategyDriver(strategy, strategy.search, steps=steps)
    stage = driver.begin_stage(0, build_seed=seed)
    net, a_opt = stage.net.train(), stage.a_opt
    if cut and a_opt is not None:
        cut_arch_gradients(a_opt)
    elif cut:  # SPOS: its only signal is the weights' training
        for p in net.weight_parameters():
            p.register_hook(torch.zeros_like)
    gen = torch.Generator().manual_seed(1000 + seed)
    for epoch in range(stage.epochs):
        driver.begin_epoch(stage, epoch)
        for step in range(epoch * steps, (epoch + 1) * steps):
            driver.step(stage, step, planted_batch(gen), planted_batch(gen))
    out = Searched(strategy, net)
    score = subnet_accuracy(net, strategy.relaxation, torch.Generator().manual_seed(2000 + seed), out.fitness)
    driver.finish(net, score, None)
    own = getattr(strategy, "default_select", None)  # a strategy whose own rule is a selector (rsws): the search loop's selection stage
    if own:
        from archgraph.engine.selection import select_with_scorer

        select_with_scorer(own, net, strategy, score, seed)
    return out


def margin(values: Sequence[float], i: int) -> float:
    return values[i] - max(v for j, v in enumerate(values) if j != i)


def planted_margins(s: Searched) -> dict[str, float | None]:
    """How decisively the planted choices lead: softmax(alpha)/softmax(beta) margins, or (fitness-
    driven strategies) the planted architecture's fitness lead; None where there is nothing to measure."""
    op_i = PLANTED_OPS.index(PLANTED_OP)
    in_i = s.net.choices.input_choice("pick").candidates.index(PLANTED_INPUT)
    if s.fitness:
        others = [v for k, v in s.fitness.items() if k != (op_i, (in_i,))]
        lead = s.fitness.get((op_i, (in_i,)), 0.0) - max(others) if others else None
        return {"op": lead, "input": lead}
    if s.net.arch is None:
        return {"op": None, "input": None}
    scores = s.net.arch.scores()
    return {"op": margin(scores["ops"]["pick"], op_i), "input": margin(scores["inputs"]["pick"], in_i)}


def outcome(s: Searched) -> dict[str, bool]:
    """Which planted choices the search found, decisively (the module docstring of tests/test_planted_signal.py)."""
    arch = s.strategy.derive(s.net)
    got = {"op": list(arch.nodes["pick"]["ops"]) == [PLANTED_OP], "input": list(arch.predecessors("pick")) == [PLANTED_INPUT]}
    margins = planted_margins(s)
    need = FITNESS_MARGIN if s.fitness else MARGIN
    return {k: got[k] and (margins[k] is None or margins[k] >= need) for k in got}


def hits(searches) -> dict[str, int]:
    found = [outcome(s) for s in searches]
    return {"op": sum(f["op"] for f in found), "input": sum(f["input"] for f in found), "both": sum(f["op"] and f["input"] for f in found)}


# ================================================================================================
# The strategy check


@dataclass
class CheckResult:
    check: str
    status: str  # PASS | FAIL | SKIP
    reason: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.status} {self.check}: {self.reason} ({self.seconds:.1f}s)"


@dataclass
class CheckReport:
    strategy: str
    space: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "FAIL" for r in self.results)

    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "FAIL"]

    def __getitem__(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)

    def summary(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("PASS", "FAIL", "SKIP")}
        return f"{self.strategy} on {self.space}: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"


class _CheckFailed(Exception):
    """A check found the strategy wrong; the message is the reason printed."""


def check_strategy(
    name: str,
    space: str = "dcss",
    space_params: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    seed: int = 0,
    planted_seeds: int = 3,
    echo: Callable[[str], None] | None = None,
) -> CheckReport:
    """Run the checks (all of :data:`CHECKS` by default) of strategy ``name`` on ``space`` at tiny sizes.

    ``space_params`` and ``options`` are ``space.*`` / ``strategy.*`` config keys on top of the tiny
    defaults; ``echo`` receives each line as its check finishes (e.g. ``print``). Raises
    :class:`ConfigError` for an unknown check or an unsupported strategy/space pair.
    """
    load_plugins()
    wanted = tuple(CHECKS if checks is None else checks)
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check {unknown[0]!r}; the checks are: {', '.join(CHECKS)}")
    info = get_strategy(name)
    space_params = tiny_space_params(space, space_params)
    given = dict(options or {})
    options = {**dict(getattr(info.cls, "check_options", {}) or {}), **given}
    graph = build_space(space, space_params)
    dataclass_from_dict(info.params, dict(options), "strategy")  # a wrong option fails here, not in every check
    check_support(info, graph)
    report = CheckReport(name, space)
    if echo is not None:
        shown = ", ".join(f"{k}={v}" for k, v in space_params.items())
        echo(f"checking strategy {name!r} on space {space!r} ({shown or 'its defaults'}): {', '.join(c for c in CHECKS if c in wanted)}")
    context: dict[str, Any] = {}

    def run(check: str, fn: Callable[[], tuple[str, str]]) -> None:
        t0 = time.perf_counter()
        try:
            status, reason = fn()
        except _CheckFailed as exc:
            status, reason = "FAIL", str(exc)
        except Exception as exc:  # noqa: BLE001 - the strategy under test may fail any way; that is the finding
            status, reason = "FAIL", f"{exc.__class__.__name__}: {exc}"
        result = CheckResult(check, status, reason, time.perf_counter() - t0)
        report.results.append(result)
        if echo is not None:
            echo(result.line())

    def exercised() -> "_Exercised":
        if "run" not in context:  # shared by subnet, gradients and evaluation; so is its failure
            try:
                context["run"] = _exercise(info, graph, options, seed)
            except Exception as exc:  # noqa: BLE001 - reported by each check that needs the run
                context["run"] = exc
        if isinstance(context["run"], Exception):
            raise _CheckFailed(f"the strategy's search steps failed: {context['run'].__class__.__name__}: {context['run']}")
        return context["run"]

    jobs = {
        "subnet": lambda: _check_subnet(exercised(), seed),
        "gradients": lambda: _check_gradients(exercised(), lambda: _reference_run(info, graph, seed)),
        "evaluation": lambda: _check_evaluation(exercised()),
        "resume": lambda: _check_resume(info, graph, space, space_params, options, seed),
        "planted": lambda: _check_planted(info, given, planted_seeds),
    }
    with _global_state_kept():
        for check in CHECKS:
            if check in wanted:
                run(check, jobs[check])
    return report


@contextlib.contextmanager
def _global_state_kept():
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


def tiny_space_params(space: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``layers=2, base_channels=4`` for the keys ``space`` has, then ``given``."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(get_space(space).params)}
    return {**{k: v for k, v in TINY_SPACE.items() if k in fields}, **dict(given or {})}


# ------------------------------------------------------------------------------------------------
# A few search steps with the strategy's own step, recording what ran and what alpha/beta received


@dataclass
class _ArchStep:
    grads: dict[tuple[str, str], torch.Tensor | None]  # (kind, label) -> gradient at the optimiser step
    ran: set[tuple[str, str, int]]  # (kind, node, candidate index) that ran in the step's last forward


@dataclass
class _Exercised:
    strategy: Any
    net: CompiledNetwork
    a_opt: torch.optim.Optimizer | None
    recorder: "_Recorder"
    arch_steps: list[_ArchStep]
    planned: int | None
    x: torch.Tensor  # a fixed batch for the comparisons


class _Recorder:
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


def _quiet_build(info: StrategyInfo, graph: nx.DiGraph, params: Any, search: SearchConfig, seed: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "does not read search.warmup_epochs": the tiny runs set it for everyone
        return info.cls(graph, params, search, seed)


def _random_batch(gen: torch.Generator, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(BATCH_SIZE, 3, CROP, CROP, generator=gen)
    return x, torch.randint(0, classes, (BATCH_SIZE, CROP, CROP), generator=gen)


def _exercise(info: StrategyInfo, graph: nx.DiGraph, options: Mapping[str, Any], seed: int) -> _Exercised:
    params = dataclass_from_dict(info.params, dict(options), "strategy")
    strategy = _quiet_build(info, graph, params, SearchConfig(epochs=EXERCISE_EPOCHS, warmup_epochs=1), seed)
    driver = StrategyDriver(strategy, strategy.search, steps=EXERCISE_STEPS)
    stage = driver.begin_stage(0, build_seed=seed)
    net, a_opt = stage.net.train(), stage.a_opt
    if not len(net.choices):
        raise _CheckFailed(f"the strategy's first-stage graph {strategy.graph.graph.get('name')!r} has no choice points")
    recorder = _Recorder(net)
    steps: list[_ArchStep] = []
    if a_opt is not None:
        labels = [("op", k, p) for k, p in net.arch.alpha.items()] + [("input", k, p) for k, p in net.arch.beta.items()]

        def capture(optimizer, args, kwargs) -> None:
            grads = {(kind, label): None if p.grad is None else p.grad.detach().clone() for kind, label, p in labels}
            steps.append(_ArchStep(grads, set(recorder.last())))

        a_opt.register_step_pre_hook(capture)
    classes = int(graph.graph.get("num_classes") or 2)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(stage.epochs):
        driver.begin_epoch(stage, epoch)
        for step in range(epoch * EXERCISE_STEPS, (epoch + 1) * EXERCISE_STEPS):
            driver.step(stage, step, _random_batch(gen, classes), _random_batch(gen, classes))
    planned = strategy.planned_arch_steps(0, EXERCISE_STEPS)
    return _Exercised(strategy, net, a_opt, recorder, steps, planned, _random_batch(gen, classes)[0])


# ------------------------------------------------------------------------------------------------
# subnet


def _node_width(graph: nx.DiGraph, node: str) -> int:
    g, local = resolve_node(graph, node)
    return node_spec(g, local).channels


def _narrow_nodes(run: _Exercised) -> list[tuple[str, int, int]]:
    """(node, op width, node width) of every op choice whose candidates are built narrower than the node."""
    out = []
    for c in run.net.choices.ops:
        width = _node_width(run.net.graph, c.node)
        built = run.strategy.relaxation.op_width(c, width)
        if built != width:
            out.append((c.node, built, width))
    return out


def _architectures(run: _Exercised, seed: int) -> list[tuple[str, dict[str, int], dict[str, list[int]], nx.DiGraph]]:
    """The strategy's own derived architecture and a uniformly random one, as (what, op indices,
    input indices, derived graph)."""
    net, strategy = run.net, run.strategy
    op_idx, in_idx = decisions(net.choices, *strategy.scores(net))
    out = [("the strategy's derived architecture", op_idx, in_idx, strategy.derive(net))]
    ops, inputs = uniform_scores(net.choices, seed + 101)
    out.append(("a random architecture", *decisions(net.choices, ops, inputs), decode(strategy.graph, ops, inputs)))
    return out


def _unchosen_ran(net: CompiledNetwork, ran: set[tuple[str, str, int]], op_idx: Mapping[str, int], in_idx: Mapping[str, Sequence[int]]) -> str | None:
    for c in net.choices.ops:
        extra = sorted(i for kind, node, i in ran if kind == "op" and node == c.node and i != op_idx[c.label])
        if extra:
            return (f"the op mixer of node {c.node!r} ran {', '.join(c.candidates[i] for i in extra)} besides the chosen "
                    f"{c.candidates[op_idx[c.label]]} (in subnet mode a mixer runs only Mixer.subnet_op())")
    for c in net.choices.inputs:
        chosen = set(in_idx[c.label])
        extra = sorted(i for kind, node, i in ran if kind == "input" and node == c.node and i not in chosen)
        if extra:
            return (f"the input mixer of node {c.node!r} ran the branches of {', '.join(c.candidates[i] for i in extra)}, which are not "
                    f"among the chosen {', '.join(c.candidates[i] for i in sorted(chosen))} (in subnet mode it sums only Mixer.subnet_inputs())")
    return None


@torch.no_grad()
def _perturb(net: CompiledNetwork, op_idx: Mapping[str, int], in_idx: Mapping[str, Sequence[int]], what: str, gen: torch.Generator) -> None:
    """Add noise to alpha/beta (``what="arch"``) or to every tensor of the candidates not chosen."""
    def shake(t: torch.Tensor) -> None:
        if t.is_floating_point():
            t.add_(torch.randn(t.shape, generator=gen).to(t) * (1 + t.abs().mean()))

    if what == "arch":
        for p in net.arch_parameters():
            shake(p)
        return
    for c in net.choices.ops:
        for i, op in enumerate(node_module(net, c.node).op_list):
            if i != op_idx[c.label]:
                for t in [*op.parameters(), *op.buffers()]:
                    shake(t)
    for c in net.choices.inputs:
        for i, branch in enumerate(node_module(net, c.node).choice_branches):
            if i not in in_idx[c.label]:
                for t in [*branch.parameters(), *branch.buffers()]:
                    shake(t)


class _Snapshot:
    """Every parameter and buffer of a module, restored in place (much faster than load_state_dict)."""

    def __init__(self, module: torch.nn.Module):
        self.pairs = [(t, t.detach().clone()) for t in [*module.parameters(), *module.buffers()]]

    @torch.no_grad()
    def restore(self) -> None:
        for t, v in self.pairs:
            t.copy_(v)


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.shape == b.shape else math.inf


def _no_reference(run: _Exercised) -> str | None:
    """Why the stand-alone derived network cannot be compared with subnet mode, or None."""
    narrow = _narrow_nodes(run)
    if narrow:
        node, built, width = narrow[0]
        return (f"candidate ops are built at partial width (node {node!r}: {built} of {width} channels), so the full-width "
                "derived network is no reference")
    decoder = get_decoder(run.strategy.graph)
    if decoder is not None and decoder.rewires:
        return (f"the space's decoder {decoder.name!r} rewires (its derived network connects nodes the supernet does not), so "
                "the stand-alone derived network is no reference")
    return None


def _check_subnet(run: _Exercised, seed: int) -> tuple[str, str]:
    net, relax, x = run.net, run.strategy.relaxation, run.x
    narrow = _no_reference(run)
    saved = _Snapshot(net)
    gen = torch.Generator().manual_seed(seed + 7)
    worst = {"eval": 0.0, "train": 0.0}
    archs = _architectures(run, seed)
    try:
        for what, op_idx, in_idx, derived in archs:
            fixed = None
            if not narrow:
                fixed = compile_graph(derived)
                transfer_weights(net, fixed)
            for mode in ("eval", "train"):
                where = f"in {mode} mode, for {what}"
                net.train(mode == "train")
                with torch.no_grad(), relax.fixed_subnet(op_idx, in_idx):
                    y = net(x)
                    problem = _unchosen_ran(net, run.recorder.last(), op_idx, in_idx)
                    if problem:
                        raise _CheckFailed(f"{where}: {problem}")
                    again = net(x)
                    if _diff(y, again) > ATOL:
                        raise _CheckFailed(f"{where}: two passes in subnet mode differ by {_diff(y, again):.3g}; subnet mode must draw nothing")
                    if fixed is not None:
                        saved.restore()  # a training-mode pass moved the BN statistics
                        fixed.train(mode == "train")
                        d = _diff(y, fixed(x))
                        worst[mode] = max(worst[mode], d)
                        if d > ATOL:
                            raise _CheckFailed(f"{where}: subnet mode's logits differ from the derived network's by {d:.3g} "
                                               f"(max |diff|, allowed {ATOL:g}); S-mIoU and the evolution would evaluate another network")
                    for part, label in (("arch", "alpha/beta"), ("others", "the weights of the candidates not chosen")):
                        saved.restore()
                        _perturb(net, op_idx, in_idx, part, gen)
                        d = _diff(y, net(x))
                        if d > ATOL:
                            raise _CheckFailed(f"{where}: changing {label} changes subnet mode's logits by {d:.3g}; subnet mode must "
                                               "depend on the chosen candidates only")
                saved.restore()
    finally:
        saved.restore()
        net.train()
    same = "runs only the chosen candidates, ignores alpha/beta and the other candidates' weights, and draws nothing"
    if narrow:
        return "PASS", f"subnet mode {same} (eval and training mode, {len(archs)} architectures); {narrow}"
    return "PASS", (f"subnet mode computes the derived network (max |logit diff| {worst['eval']:.2g} in eval, {worst['train']:.2g} "
                    f"in training mode, {len(archs)} architectures) and {same}")


# ------------------------------------------------------------------------------------------------
# gradients


def _reference_run(info: StrategyInfo, graph: nx.DiGraph, seed: int) -> _Exercised | None:
    """The reference strategy's steps on the same graph and batches (``None`` for the reference itself)."""
    if info.name == GRADIENT_REFERENCE or GRADIENT_REFERENCE not in STRATEGIES:
        return None
    return _exercise(get_strategy(GRADIENT_REFERENCE), graph, {}, seed)


def _gradient_sizes(run: _Exercised) -> dict[tuple[str, str], float]:
    """Per choice (kind, label): the largest gradient a candidate that ran received, over the steps."""
    nodes: dict[tuple[str, str], set[str]] = {}
    for kind, choices in (("op", run.net.choices.ops), ("input", run.net.choices.inputs)):
        for c in choices:
            if len(c.candidates) > 1:
                nodes.setdefault((kind, c.label), set()).add(c.node)
    sizes: dict[tuple[str, str], float] = {}
    for step in run.arch_steps:
        for key, g in step.grads.items():
            ran = sorted({i for k, node, i in step.ran if k == key[0] and node in nodes.get(key, ())})
            if g is None or not ran or key not in nodes:
                continue
            sizes[key] = max(sizes.get(key, 0.0), float(g[ran].abs().max()))
    return sizes


def _compare_gradient_sizes(run: _Exercised, reference: _Exercised) -> str:
    """Fail when the strategy's architecture gradients are orders of magnitude below the reference's."""
    own, ref = _gradient_sizes(run), _gradient_sizes(reference)
    compared = {key: own[key] / ref[key] for key in own if ref.get(key, 0.0) > 0.0}
    if not compared:
        return ""
    vanished = sorted((ratio, key) for key, ratio in compared.items() if ratio < GRADIENT_RATIO)
    if len(vanished) > GRADIENT_VANISHED_SHARE * len(compared):
        worst = ", ".join(f"{'alpha' if k == 'op' else 'beta'}[{label!r}] {ratio:.1e}x" for ratio, (k, label) in vanished[:3])
        raise _CheckFailed(
            f"architecture gradients vanish: {len(vanished)}/{len(compared)} choices get gradients over {1 / GRADIENT_RATIO:.0e} times "
            f"smaller than {GRADIENT_REFERENCE}'s on the same graph ({worst}); a hard gate on the only path into a BatchNorm "
            "carries no gradient (BN cancels its scale): sum several gated paths, e.g. archgraph.core.straight_through (docs/plugins.md)")
    median = sorted(compared.values())[len(compared) // 2]
    return f"; gradient size {median:.1e}x {GRADIENT_REFERENCE}'s (median of {len(compared)} choices)"


def _check_gradients(run: _Exercised, reference: Callable[[], _Exercised | None] | None = None) -> tuple[str, str]:
    if run.a_opt is None:
        if run.planned:
            raise _CheckFailed(f"arch_optimizer returned None, but planned_arch_steps promises {run.planned} architecture steps; "
                               "return None from planned_arch_steps for a strategy that takes no gradient steps on the architecture")
        return "SKIP", "no architecture parameters are optimised (arch_optimizer returns None)"
    steps = run.arch_steps
    budget = f"{EXERCISE_EPOCHS} epochs of {EXERCISE_STEPS} steps, the first weight-only"
    if run.planned is not None and len(steps) != run.planned:
        raise _CheckFailed(f"planned_arch_steps(0, {EXERCISE_STEPS}) promises {run.planned} architecture steps in {budget}, but the "
                           f"architecture optimiser stepped {len(steps)} times (the search refuses budgets by that number)")
    if not steps:
        raise _CheckFailed(f"no architecture step in {budget}")
    choices = run.net.choices
    nodes = {("op", c.label): set() for c in choices.ops} | {("input", c.label): set() for c in choices.inputs}
    for c in choices.ops:
        nodes[("op", c.label)].add(c.node)
    for c in choices.inputs:
        nodes[("input", c.label)].add(c.node)
    sizes = {("op", c.label): len(c.candidates) for c in choices.ops} | {("input", c.label): len(c.candidates) for c in choices.inputs}
    reached: dict[str, set[str]] = {"op": set(), "input": set()}
    for n, step in enumerate(steps, 1):
        for (kind, label), g in step.grads.items():
            if g is None:
                continue
            if not torch.isfinite(g).all():
                raise _CheckFailed(f"architecture step {n}: the gradient of {'alpha' if kind == 'op' else 'beta'}[{label!r}] is not finite")
            ran = {i for k, node, i in step.ran if k == kind and node in nodes[(kind, label)]}
            if any(float(g[i]) != 0.0 for i in ran):
                reached[kind].add(label)
    learnable = {kind: {label for (k, label), size in sizes.items() if k == kind and size > 1} for kind in ("op", "input")}
    reached = {kind: reached[kind] & learnable[kind] for kind in reached}
    parts = []
    for kind, name in (("op", "alpha"), ("input", "beta")):
        if not learnable[kind]:
            continue
        if not reached[kind]:
            raise _CheckFailed(f"in {len(steps)} architecture steps no gradient reached {name} on a candidate that ran (of "
                               f"{len(learnable[kind])} {kind} choices); the mixers must weight what they run by {name} "
                               "(or the strategy must write the gradient before the optimiser steps)")
        parts.append(f"{name} of {len(reached[kind])}/{len(learnable[kind])} {kind} choices")
    ref = reference() if reference is not None else None
    sizes = _compare_gradient_sizes(run, ref) if ref is not None else ""
    return "PASS", f"{len(steps)} architecture step{'s' if len(steps) != 1 else ''} as planned; finite gradients reached {' and '.join(parts)} on candidates that ran{sizes}"


# ------------------------------------------------------------------------------------------------
# evaluation


def _check_evaluation(run: _Exercised) -> tuple[str, str]:
    strategy, net, x = run.strategy, run.net, run.x
    if not getattr(type(strategy), "eval_is_derived", False):
        return "SKIP", "the strategy does not claim that evaluation mode computes the derived network (eval_is_derived is False); S-mIoU uses subnet mode"
    decoder = get_decoder(strategy.graph)
    if decoder is not None and decoder.decisions is not None:
        return "SKIP", (f"the space decides by its own rule (decoder {decoder.name!r}), which a strategy's evaluation mode (argmax, top-k) "
                        "does not follow; S-mIoU uses subnet mode")
    op_idx, in_idx = decisions(net.choices, *strategy.scores(net))
    net.eval()
    try:
        with torch.no_grad():
            y, again = net(x), net(x)
            with strategy.relaxation.fixed_subnet(op_idx, in_idx):
                ref = net(x)
            if _diff(y, again) > ATOL:
                raise _CheckFailed(f"two passes in evaluation mode differ by {_diff(y, again):.3g}; evaluation must be deterministic")
            d = _diff(y, ref)
            if d > ATOL:
                raise _CheckFailed(f"evaluation mode's logits differ from the derived network's (subnet mode) by {d:.3g} "
                                   f"(allowed {ATOL:g}), although the strategy sets eval_is_derived")
            what = "subnet mode of the derived architecture"
            if _no_reference(run) is None:
                fixed = compile_graph(strategy.derive(net))
                transfer_weights(net, fixed)
                d = max(d, _diff(y, fixed.eval()(x)))
                if d > ATOL:
                    raise _CheckFailed(f"evaluation mode's logits differ from the derived network's by {d:.3g} (allowed {ATOL:g})")
                what = "the derived network"
    finally:
        net.train()
    return "PASS", f"evaluation mode computes {what} (max |logit diff| {d:.2g}), deterministically"


# ------------------------------------------------------------------------------------------------
# resume


class _Killed(BaseException):
    """Raised inside a search to stop it as a kill would (no handler runs, the last checkpoint stays)."""


def _instrumented(cls: type, events: list[tuple[str, int]], kill_at: int | None) -> type:
    """A subclass of strategy ``cls`` that logs stages, epochs and steps into ``events`` and, when
    ``kill_at`` is given, dies right before its ``kill_at``-th step (1-based)."""

    class Instrumented(cls):  # type: ignore[misc, valid-type]
        def begin_stage(self, stage, previous):
            events.append(("stage", stage))
            return super().begin_stage(stage, previous)

        def on_epoch_start(self, epoch, epochs):
            events.append(("epoch", epoch))
            return super().on_epoch_start(epoch, epochs)

        def on_step_start(self, step, steps_per_epoch):
            if kill_at is not None and sum(kind == "step" for kind, _ in events) + 1 == kill_at:
                raise _Killed
            events.append(("step", step))
            return super().on_step_start(step, steps_per_epoch)

    Instrumented.__name__ = Instrumented.__qualname__ = f"Checked{cls.__name__}"
    return Instrumented


@contextlib.contextmanager
def _registered_as(name: str, cls: type):
    """Strategy ``name`` temporarily resolving to ``cls`` (the config keeps naming the real one)."""
    original = STRATEGIES[name]
    STRATEGIES[name] = replace(original, cls=cls)
    try:
        yield
    finally:
        STRATEGIES[name] = original


def _kill_point(events: list[tuple[str, int]]) -> tuple[int, str]:
    """The step to kill at (1-based): the second step of the middle epoch (a checkpoint written
    mid-epoch), and where that is."""
    stage, epoch, starts = 0, 0, []
    count = 0
    for kind, value in events:
        if kind == "stage":
            stage = value
        elif kind == "epoch":
            epoch = value
            starts.append((count, stage, epoch))
        else:
            count += 1
    if count < 2:
        raise _CheckFailed(f"the search ran {count} step(s); the resume check needs at least 2")
    first, stage, epoch = starts[len(starts) // 2]
    kill = min(first + 2, count)
    staged = f"stage {stage + 1} " if any(kind == "stage" and value > 0 for kind, value in events) else ""
    return kill, f"{staged}epoch {epoch + 1} step {kill - first}"


def _search(name: str, overrides: list[str], out: Path, resume: bool) -> None:
    from archgraph.engine.search import run_search

    buffer = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        warnings.simplefilter("ignore")
        run_search(load_config(None, overrides), out, resume=resume, progress=False)


def _same(a: Any, b: Any, where: str = "") -> str | None:
    """Where two checkpoint values differ (tensors bit for bit), or None."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape or not torch.equal(a, b):
            extra = f" by {_diff(a.double(), b.double()):.3g}" if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.is_floating_point() else ""
            return f"{where or 'value'} differs{extra}"
        return None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}{'.' if where else ''}{k} is in one run only"
            found = _same(a[k], b[k], f"{where}{'.' if where else ''}{k}")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where} has {len(a)} entries in one run, {len(b)} in the other"
        for i, (u, v) in enumerate(zip(a, b)):
            found = _same(u, v, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{where or 'value'} differs ({a!r} against {b!r})"


def _resume_budget(info: StrategyInfo, graph: nx.DiGraph, options: Mapping[str, Any], seed: int) -> tuple[int, int]:
    """The smallest (epochs, steps per epoch) of :data:`RESUME_BUDGETS` in which the strategy plans
    an architecture step (the search refuses a budget without one)."""
    params = dataclass_from_dict(info.params, dict(options), "strategy")
    for epochs, steps in RESUME_BUDGETS:
        strategy = _quiet_build(info, graph, params, SearchConfig(epochs=epochs, warmup_epochs=1), seed)
        planned = [strategy.planned_arch_steps(s, steps) for s in range(strategy.num_stages())]
        if any(p is None for p in planned) or sum(planned) > 0:
            return epochs, steps
    raise _CheckFailed(f"planned_arch_steps promises no architecture step in any of the budgets {list(RESUME_BUDGETS)} (epochs, steps per epoch; "
                       "the first epoch weight-only)")


def _check_resume(info: StrategyInfo, graph: nx.DiGraph, space: str, space_params: Mapping[str, Any], options: Mapping[str, Any], seed: int) -> tuple[str, str]:
    name = info.name
    epochs, steps = _resume_budget(info, graph, options, seed)
    budget = [f"search.epochs={epochs}", f"search.steps_per_epoch={steps}", f"data.num_samples={4 * steps}"]  # trainA: 2 x steps images
    overrides = [*RESUME_RUN, *budget, f"seed={seed}", f"space.name={space}", f"strategy.name={name}",
                 *(f"space.{k}={json.dumps(v)}" for k, v in space_params.items()),
                 *(f"strategy.{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in options.items())]
    with tempfile.TemporaryDirectory(prefix="archgraph-check-") as tmp:
        full, killed = Path(tmp) / "uninterrupted", Path(tmp) / "killed"
        events: list[tuple[str, int]] = []
        with _registered_as(name, _instrumented(info.cls, events, None)):
            _search(name, overrides, full, False)
        kill_at, where = _kill_point(events)
        with _registered_as(name, _instrumented(info.cls, [], kill_at)):
            try:
                _search(name, overrides, killed, False)
            except _Killed:
                pass
            else:
                raise _CheckFailed(f"the search did not reach its step {kill_at} a second time (it ran {kill_at - 1} steps before)")
        if (killed / "final.json").exists():
            raise _CheckFailed("the killed search wrote final.json")
        _search(name, overrides, killed, True)
        for file in ("arch.yaml", "scores.json"):
            if (full / file).read_text() != (killed / file).read_text():
                raise _CheckFailed(f"killed before {where} and resumed, the search ends with another {file} than an uninterrupted one "
                                   "(state kept outside state_dict, e.g. a sampler's generator, is lost on resume)")
        a = torch.load(full / "checkpoint.pt", weights_only=True)
        b = torch.load(killed / "checkpoint.pt", weights_only=True)
        for part in ("net", "strategy"):
            found = _same(a[part], b[part], "")
            if found:
                raise _CheckFailed(f"killed before {where} and resumed: {'supernet tensor' if part == 'net' else 'strategy state'} "
                                   f"{found} (state kept outside state_dict, e.g. a sampler's generator, is lost on resume)")
    steps = sum(kind == "step" for kind, _ in events)
    return "PASS", (f"a search of {steps} steps killed before {where} and resumed ends bit-identical to an "
                    "uninterrupted one (arch.yaml, scores.json, every supernet tensor, the strategy's state)")


# ------------------------------------------------------------------------------------------------
# planted


def _check_planted(info: StrategyInfo, options: Mapping[str, Any], seeds: int) -> tuple[str, str]:
    handles = frozenset(getattr(info.cls, "handles", {"op", "input"}))
    if not {"op", "input"} <= handles:
        return "SKIP", f"the planted graph has an op and an input choice; the strategy handles {', '.join(sorted(handles))}"
    setup = planted_setup(info, options)
    required = seeds - seeds // 3
    searches = [run_planted(build_planted(info.name, seed, options), seed) for seed in range(seeds)]
    h = hits(searches)
    margins = [planted_margins(s) for s in searches]
    kind = "fitness lead" if any(s.fitness for s in searches) else "margin of softmax(alpha)/softmax(beta)"
    need = FITNESS_MARGIN if any(s.fitness for s in searches) else MARGIN
    shown = "; ".join(f"seed {i}: op {_fmt(m['op'])}, input {_fmt(m['input'])}" for i, m in enumerate(margins))
    found = f"the planted op in {h['op']}/{seeds} seeds and the planted input in {h['input']}/{seeds}"
    setting = f"options {setup.options}, " if setup.options else ""
    if h["op"] < required or h["input"] < required:
        raise _CheckFailed(f"found {found} (need {required}; {kind} >= {need:g}: {shown}; {setting}{setup.steps} steps per epoch). "
                           "The strategy's learning signal does not find a choice whose answer is known")
    return "PASS", f"found {found} ({kind}: {shown}; {setting}{setup.steps} steps per epoch)"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
