"""``check_strategy`` and the checks that run in-process: ``subnet``, ``gradients``, ``evaluation``
and ``planted`` (``resume``, which runs whole searches, is :mod:`archgraph.testing.resume`).

:func:`check_strategy` builds the tiny space, refuses an unknown check or an unsupported
strategy/space pair before any work, runs the checks in :data:`CHECKS` order with the caller's global
random state kept, and turns each outcome (a verdict, :class:`~archgraph.testing.report.CheckFailed`
or any exception the strategy raised) into one line of the report. The subnet, gradient and
evaluation checks share one miniature search (:func:`archgraph.testing.harness.exercise`), and its
failure is reported by each. What each check holds a strategy to: :mod:`archgraph.testing`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import networkx as nx
import torch

from archgraph.configtools import dataclass_from_dict
from archgraph.core.choices import resolve_node
from archgraph.core.compile import CompiledNetwork, compile_graph, transfer_weights
from archgraph.core.decode import decisions, decode, get_decoder, uniform_scores
from archgraph.core.graph import node_spec
from archgraph.core.registry import STRATEGIES, StrategyInfo, check_support, get_strategy, load_plugins
from archgraph.core.spaces_api import build_space
from archgraph.errors import ConfigError
from archgraph.testing.harness import EXERCISE_EPOCHS, EXERCISE_STEPS, Exercised, Snapshot, exercise, global_state_kept, max_abs_diff, node_module, tiny_space_params
from archgraph.testing.planted import FITNESS_MARGIN, MARGIN, build_planted, hits, planted_margins, planted_setup, run_planted
from archgraph.testing.report import CheckFailed, CheckReport, CheckResult
from archgraph.testing.resume import check_resume
from archgraph.testing.settings import check_settings

__all__ = ["ATOL", "CHECKS", "GRADIENT_RATIO", "GRADIENT_REFERENCE", "GRADIENT_VANISHED_SHARE", "check_strategy"]

CHECKS = ("subnet", "gradients", "evaluation", "resume", "planted")
ATOL = 1e-5  # logits of subnet mode against the derived network (as tests/test_compile.py)
GRADIENT_REFERENCE = "darts"  # the strategy whose architecture gradients a strategy's are compared with
GRADIENT_RATIO = 1e-3  # a choice's gradient this many times smaller than the reference's counts as vanished
GRADIENT_VANISHED_SHARE = 0.5  # ... and the check fails when more than this share of the compared choices vanish


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
    options = {**dict(check_settings(info.cls).options), **given}
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
        except CheckFailed as exc:
            status, reason = "FAIL", str(exc)
        except Exception as exc:  # noqa: BLE001 - the strategy under test may fail any way; that is the finding
            status, reason = "FAIL", f"{exc.__class__.__name__}: {exc}"
        result = CheckResult(check, status, reason, time.perf_counter() - t0)
        report.results.append(result)
        if echo is not None:
            echo(result.line())

    def exercised() -> "Exercised":
        if "run" not in context:  # shared by subnet, gradients and evaluation; so is its failure
            try:
                context["run"] = exercise(info, graph, options, seed)
            except Exception as exc:  # noqa: BLE001 - reported by each check that needs the run
                context["run"] = exc
        if isinstance(context["run"], Exception):
            raise CheckFailed(f"the strategy's search steps failed: {context['run'].__class__.__name__}: {context['run']}")
        return context["run"]

    jobs = {
        "subnet": lambda: _check_subnet(exercised(), seed),
        "gradients": lambda: _check_gradients(exercised(), lambda: _reference_run(info, graph, seed)),
        "evaluation": lambda: _check_evaluation(exercised()),
        "resume": lambda: check_resume(info, graph, space, space_params, options, seed),
        "planted": lambda: _check_planted(info, given, planted_seeds),
    }
    with global_state_kept():
        for check in CHECKS:
            if check in wanted:
                run(check, jobs[check])
    return report


# ------------------------------------------------------------------------------------------------
# subnet


def _node_width(graph: nx.DiGraph, node: str) -> int:
    g, local = resolve_node(graph, node)
    return node_spec(g, local).channels


def _narrow_nodes(run: Exercised) -> list[tuple[str, int, int]]:
    """(node, op width, node width) of every op choice whose candidates are built narrower than the node."""
    out = []
    for c in run.net.choices.ops:
        width = _node_width(run.net.graph, c.node)
        built = run.strategy.relaxation.op_width(c, width)
        if built != width:
            out.append((c.node, built, width))
    return out


def _architectures(run: Exercised, seed: int) -> list[tuple[str, dict[str, int], dict[str, list[int]], nx.DiGraph]]:
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
            return (
                f"the op mixer of node {c.node!r} ran {', '.join(c.candidates[i] for i in extra)} besides the chosen "
                f"{c.candidates[op_idx[c.label]]} (in subnet mode a mixer runs only Mixer.subnet_op())"
            )
    for c in net.choices.inputs:
        chosen = set(in_idx[c.label])
        extra = sorted(i for kind, node, i in ran if kind == "input" and node == c.node and i not in chosen)
        if extra:
            return (
                f"the input mixer of node {c.node!r} ran the branches of {', '.join(c.candidates[i] for i in extra)}, which are not "
                f"among the chosen {', '.join(c.candidates[i] for i in sorted(chosen))} (in subnet mode it sums only Mixer.subnet_inputs())"
            )
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


def _no_reference(run: Exercised) -> str | None:
    """Why the stand-alone derived network cannot be compared with subnet mode, or None."""
    narrow = _narrow_nodes(run)
    if narrow:
        node, built, width = narrow[0]
        return f"candidate ops are built at partial width (node {node!r}: {built} of {width} channels), so the full-width derived network is no reference"
    decoder = get_decoder(run.strategy.graph)
    if decoder is not None and decoder.rewires:
        return f"the space's decoder {decoder.name!r} rewires (its derived network connects nodes the supernet does not), so the stand-alone derived network is no reference"
    return None


def _check_subnet(run: Exercised, seed: int) -> tuple[str, str]:
    net, relax, x = run.net, run.strategy.relaxation, run.x
    narrow = _no_reference(run)
    saved = Snapshot(net)
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
                        raise CheckFailed(f"{where}: {problem}")
                    again = net(x)
                    if max_abs_diff(y, again) > ATOL:
                        raise CheckFailed(f"{where}: two passes in subnet mode differ by {max_abs_diff(y, again):.3g}; subnet mode must draw nothing")
                    if fixed is not None:
                        saved.restore()  # a training-mode pass moved the BN statistics
                        fixed.train(mode == "train")
                        d = max_abs_diff(y, fixed(x))
                        worst[mode] = max(worst[mode], d)
                        if d > ATOL:
                            raise CheckFailed(
                                f"{where}: subnet mode's logits differ from the derived network's by {d:.3g} (max |diff|, allowed {ATOL:g}); S-mIoU and the evolution would evaluate another network"
                            )
                    for part, label in (("arch", "alpha/beta"), ("others", "the weights of the candidates not chosen")):
                        saved.restore()
                        _perturb(net, op_idx, in_idx, part, gen)
                        d = max_abs_diff(y, net(x))
                        if d > ATOL:
                            raise CheckFailed(f"{where}: changing {label} changes subnet mode's logits by {d:.3g}; subnet mode must depend on the chosen candidates only")
                saved.restore()
    finally:
        saved.restore()
        net.train()
    same = "runs only the chosen candidates, ignores alpha/beta and the other candidates' weights, and draws nothing"
    if narrow:
        return "PASS", f"subnet mode {same} (eval and training mode, {len(archs)} architectures); {narrow}"
    return "PASS", (f"subnet mode computes the derived network (max |logit diff| {worst['eval']:.2g} in eval, {worst['train']:.2g} in training mode, {len(archs)} architectures) and {same}")


# ------------------------------------------------------------------------------------------------
# gradients


def _reference_run(info: StrategyInfo, graph: nx.DiGraph, seed: int) -> Exercised | None:
    """The reference strategy's steps on the same graph and batches (``None`` for the reference itself)."""
    if info.name == GRADIENT_REFERENCE or GRADIENT_REFERENCE not in STRATEGIES:
        return None
    return exercise(get_strategy(GRADIENT_REFERENCE), graph, {}, seed)


def _gradient_sizes(run: Exercised) -> dict[tuple[str, str], float]:
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


def _compare_gradient_sizes(run: Exercised, reference: Exercised) -> str:
    """Fail when the strategy's architecture gradients are orders of magnitude below the reference's."""
    own, ref = _gradient_sizes(run), _gradient_sizes(reference)
    compared = {key: own[key] / ref[key] for key in own if ref.get(key, 0.0) > 0.0}
    if not compared:
        return ""
    vanished = sorted((ratio, key) for key, ratio in compared.items() if ratio < GRADIENT_RATIO)
    if len(vanished) > GRADIENT_VANISHED_SHARE * len(compared):
        worst = ", ".join(f"{'alpha' if k == 'op' else 'beta'}[{label!r}] {ratio:.1e}x" for ratio, (k, label) in vanished[:3])
        raise CheckFailed(
            f"architecture gradients vanish: {len(vanished)}/{len(compared)} choices get gradients over {1 / GRADIENT_RATIO:.0e} times "
            f"smaller than {GRADIENT_REFERENCE}'s on the same graph ({worst}); a hard gate on the only path into a BatchNorm "
            "carries no gradient (BN cancels its scale): sum several gated paths, e.g. archgraph.core.straight_through (docs/plugins.md)"
        )
    median = sorted(compared.values())[len(compared) // 2]
    return f"; gradient size {median:.1e}x {GRADIENT_REFERENCE}'s (median of {len(compared)} choices)"


def _check_gradients(run: Exercised, reference: Callable[[], Exercised | None] | None = None) -> tuple[str, str]:
    if run.a_opt is None:
        if run.planned:
            raise CheckFailed(
                f"arch_optimizer returned None, but planned_arch_steps promises {run.planned} architecture steps; "
                "return None from planned_arch_steps for a strategy that takes no gradient steps on the architecture"
            )
        return "SKIP", "no architecture parameters are optimised (arch_optimizer returns None)"
    steps = run.arch_steps
    budget = f"{EXERCISE_EPOCHS} epochs of {EXERCISE_STEPS} steps, the first weight-only"
    if run.planned is not None and len(steps) != run.planned:
        raise CheckFailed(
            f"planned_arch_steps(0, {EXERCISE_STEPS}) promises {run.planned} architecture steps in {budget}, but the "
            f"architecture optimiser stepped {len(steps)} times (the search refuses budgets by that number)"
        )
    if not steps:
        raise CheckFailed(f"no architecture step in {budget}")
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
                raise CheckFailed(f"architecture step {n}: the gradient of {'alpha' if kind == 'op' else 'beta'}[{label!r}] is not finite")
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
            raise CheckFailed(
                f"in {len(steps)} architecture steps no gradient reached {name} on a candidate that ran (of "
                f"{len(learnable[kind])} {kind} choices); the mixers must weight what they run by {name} "
                "(or the strategy must write the gradient before the optimiser steps)"
            )
        parts.append(f"{name} of {len(reached[kind])}/{len(learnable[kind])} {kind} choices")
    ref = reference() if reference is not None else None
    sizes = _compare_gradient_sizes(run, ref) if ref is not None else ""
    return "PASS", f"{len(steps)} architecture step{'s' if len(steps) != 1 else ''} as planned; finite gradients reached {' and '.join(parts)} on candidates that ran{sizes}"


# ------------------------------------------------------------------------------------------------
# evaluation


def _check_evaluation(run: Exercised) -> tuple[str, str]:
    strategy, net, x = run.strategy, run.net, run.x
    if not check_settings(type(strategy)).eval_is_derived:
        return "SKIP", "the strategy does not claim that evaluation mode computes the derived network (eval_is_derived is False); S-mIoU uses subnet mode"
    decoder = get_decoder(strategy.graph)
    if decoder is not None and decoder.decisions is not None:
        return "SKIP", (f"the space decides by its own rule (decoder {decoder.name!r}), which a strategy's evaluation mode (argmax, top-k) does not follow; S-mIoU uses subnet mode")
    op_idx, in_idx = decisions(net.choices, *strategy.scores(net))
    net.eval()
    try:
        with torch.no_grad():
            y, again = net(x), net(x)
            with strategy.relaxation.fixed_subnet(op_idx, in_idx):
                ref = net(x)
            if max_abs_diff(y, again) > ATOL:
                raise CheckFailed(f"two passes in evaluation mode differ by {max_abs_diff(y, again):.3g}; evaluation must be deterministic")
            d = max_abs_diff(y, ref)
            if d > ATOL:
                raise CheckFailed(f"evaluation mode's logits differ from the derived network's (subnet mode) by {d:.3g} (allowed {ATOL:g}), although the strategy sets eval_is_derived")
            what = "subnet mode of the derived architecture"
            if _no_reference(run) is None:
                fixed = compile_graph(strategy.derive(net))
                transfer_weights(net, fixed)
                d = max(d, max_abs_diff(y, fixed.eval()(x)))
                if d > ATOL:
                    raise CheckFailed(f"evaluation mode's logits differ from the derived network's by {d:.3g} (allowed {ATOL:g})")
                what = "the derived network"
    finally:
        net.train()
    return "PASS", f"evaluation mode computes {what} (max |logit diff| {d:.2g}), deterministically"


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
        raise CheckFailed(
            f"found {found} (need {required}; {kind} >= {need:g}: {shown}; {setting}{setup.steps} steps per epoch). The strategy's learning signal does not find a choice whose answer is known"
        )
    return "PASS", f"found {found} ({kind}: {shown}; {setting}{setup.steps} steps per epoch)"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
