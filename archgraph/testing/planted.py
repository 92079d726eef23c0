"""The planted signal: a graph whose right answer is known, and the search loop in miniature on it.

:func:`planted_graph`: the label of every pixel is the sign of the image's first channel; three
stems see the image at 1/4, 1/1 and 1/8, and node ``pick`` chooses one of them and an op among avg
pool, skip and max pool. Only the full-resolution stem and the identity keep the per-pixel signal, so
the answer is ``fine`` + ``skip_connect``. :func:`run_planted` runs a strategy's own steps and its
end-of-search hook on fresh tiny batches through the search's driver; :func:`outcome` and
:func:`hits` say whether it found the answer decisively (:data:`MARGIN`, :data:`FITNESS_MARGIN`).

It is library code, not test code, because ``archgraph check-strategy`` runs it on a plug-in's
strategy (the ``planted`` check, :mod:`archgraph.testing.checks`); tests/test_planted_signal.py
runs it over five seeds with negative controls (the learning signal cut), tests/test_selection.py
uses its graph for the selectors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import networkx as nx
import torch

from archgraph.config import SearchConfig
from archgraph.core.graph import NodeSpec, add_edge, add_node, new_graph
from archgraph.core.registry import StrategyInfo, get_strategy
from archgraph.engine.driver import StrategyDriver
from archgraph.testing.settings import check_settings

__all__ = [
    "CHANNELS",
    "FITNESS_MARGIN",
    "MARGIN",
    "PLANTED_BATCH",
    "PLANTED_EPOCHS",
    "PLANTED_HW",
    "PLANTED_INPUT",
    "PLANTED_OP",
    "PLANTED_OPS",
    "PLANTED_STEPS",
    "SOURCES",
    "PlantedSetup",
    "Searched",
    "build_planted",
    "cut_arch_gradients",
    "hits",
    "margin",
    "outcome",
    "planted_batch",
    "planted_graph",
    "planted_margins",
    "planted_setup",
    "run_planted",
    "subnet_accuracy",
]

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
    """How a strategy's planted run differs from its defaults (tests/test_planted_signal.py pins them)."""

    options: dict[str, Any] = field(default_factory=dict)  # strategy options that differ from the defaults
    steps: int = PLANTED_STEPS  # steps per epoch


def planted_setup(info: StrategyInfo, options: Mapping[str, Any] | None = None) -> PlantedSetup:
    """A strategy's planted run: its ``check_options`` and ``planted_options`` (then ``options``),
    and its ``planted_steps`` per epoch."""
    cls = info.cls
    settings = check_settings(cls)
    merged = {**dict(settings.options), **dict(settings.planted_options), **dict(options or {})}
    return PlantedSetup({k: list(v) if isinstance(v, list) else v for k, v in merged.items()}, settings.planted_steps or PLANTED_STEPS)


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
    """A finished planted run: the strategy, its supernet and, for fitness-driven strategies, every score."""

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
    steps = steps or check_settings(type(strategy)).planted_steps or PLANTED_STEPS
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
    """How far ``values[i]`` leads the largest of the others (negative: it trails)."""
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
    """In how many of ``searches`` the planted op, input, and both were found decisively."""
    found = [outcome(s) for s in searches]
    return {"op": sum(f["op"] for f in found), "input": sum(f["input"] for f in found), "both": sum(f["op"] and f["input"] for f in found)}
