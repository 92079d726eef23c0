"""Live-subgraph execution: a sampling strategy's step computes only the nodes that reach the loss,
with the same losses, gradients and updates as running every node (``net.prune_dead = False``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import networkx as nx
import pytest
import torch

from archgraph.config import SearchConfig
from archgraph.configtools import dataclass_from_dict
from archgraph.core.choices import ChoicePoints, InputChoice
from archgraph.core.compile import compile_graph
from archgraph.core.liveplan import LivePlanner
from archgraph.core.registry import get_strategy
from archgraph.core.spaces_api import build_space
from archgraph.errors import GraphError

SMALL = {"layers": 3, "base_channels": 4, "num_classes": 3}


def make_search(name: str, prune: bool, space: str = "dcss", options: dict | None = None, params: dict | None = None):
    """A strategy past its warm-up, its supernet (pruning on or off) and both optimisers."""
    torch.manual_seed(0)
    info = get_strategy(name)
    strategy = info.cls(build_space(space, params or SMALL), dataclass_from_dict(info.params, options or {}, "strategy"), SearchConfig(), 0)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet().train()
    net.prune_dead = prune
    strategy.on_epoch_start(strategy.warmup_epochs(), strategy.warmup_epochs() + 2)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    return strategy, net, w_opt, strategy.arch_optimizer(net)


def capture_grads(opt, log: list) -> None:
    """Record, at every optimiser step, the gradient each parameter is updated with (None: no update)."""

    def hook(optimizer, args, kwargs):
        log.append([None if p.grad is None else p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"]])

    opt.register_step_pre_hook(hook)


def run_steps(name: str, prune: bool, steps: int = 3, **kw):
    strategy, net, w_opt, a_opt = make_search(name, prune, **kw)
    grads: list = []
    for opt in (w_opt, a_opt):
        if opt is not None:
            capture_grads(opt, grads)
    live_nodes: list[set[str]] = []
    net.register_forward_hook(lambda m, a, o: live_nodes.append({s.node for s in m.live_plan.steps} if m.prune_dead else set(m.nodes)))
    gen = torch.Generator().manual_seed(7)
    losses = []
    for i in range(steps):
        strategy.on_step_start(i, steps)
        batch = lambda: (torch.randn(2, 3, 32, 32, generator=gen), torch.randint(0, 3, (2, 32, 32), generator=gen))
        losses.append(strategy.search_step(net, batch(), batch(), w_opt, a_opt))
    return net, losses, grads, live_nodes


CASES = [
    ("dcnas", {}, "dcss"),
    ("spos", {}, "dcss"),
    ("proxylessnas", {"arch_every": 1}, "dcss"),  # every step: a weight step and an architecture step
    ("dcnas", {}, "autodeeplab"),  # cells: body choices drawn in body order, cells run in full
    ("dcnas", {}, "unet"),  # decoder nodes: a fixed up-path input beside an input choice over skips
]
SPACE_PARAMS = {"dcss": SMALL, "autodeeplab": {**SMALL, "layers": 2, "blocks": 2}, "unet": {"base_channels": 4, "num_classes": 3}}


@pytest.mark.parametrize("name, options, space", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_same_losses_gradients_and_updates(name, options, space):
    params = SPACE_PARAMS[space]
    off_net, off_losses, off_grads, _ = run_steps(name, False, options=options, space=space, params=params)
    on_net, on_losses, on_grads, live = run_steps(name, True, options=options, space=space, params=params)
    if name == "dcnas":  # DCNAS reports the live share of its fusion nodes (search.jsonl: per epoch)
        assert all(0 < d.pop("live_fraction") <= 1 for d in on_losses) and all("live_fraction" not in d for d in off_losses)
    assert [sorted(d) for d in on_losses] == [sorted(d) for d in off_losses]
    flat = lambda losses: [d[k] for d in losses for k in sorted(d)]
    assert flat(on_losses) == pytest.approx(flat(off_losses), rel=1e-6, abs=1e-7)
    assert len(on_grads) == len(off_grads) > 0
    for step_on, step_off in zip(on_grads, off_grads):
        for g_on, g_off in zip(step_on, step_off):
            if g_off is None or g_on is None:  # no gradient on one side: none (or zeros) on the other
                assert (g_on if g_off is None else g_off) is None or not (g_on if g_off is None else g_off).any()
            else:
                torch.testing.assert_close(g_on, g_off, rtol=1e-5, atol=1e-7)
    off_state, on_state = off_net.state_dict(), on_net.state_dict()
    always_live = set.intersection(*live)
    for key, value in off_state.items():
        if "running_" in key or "num_batches_tracked" in key:
            node = key.split(".")[1] if key.startswith("nodes.") else None
            if node in always_live:  # live nodes' batch-norm statistics are identical ...
                torch.testing.assert_close(on_state[key], value)
            continue  # ... dead nodes' are not updated by the steps where they are dead (documented)
        torch.testing.assert_close(on_state[key], value, rtol=1e-5, atol=1e-6)
    if space == "dcss":
        assert min(len(s) for s in live) < len(on_net.nodes)  # something was actually pruned


def test_dead_nodes_neither_run_nor_train():
    strategy, net, w_opt, _ = make_search("dcnas", True, options={"paths": 2})
    ran: set[str] = set()
    for name, module in net.nodes.items():
        module.register_forward_hook(lambda *_, name=name: ran.add(name))
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    strategy.weight_step(net, (torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))), w_opt)
    live = {s.node for s in net.live_plan.steps}
    dead = set(net.nodes) - live
    assert ran == live and dead, (sorted(ran), sorted(live))
    for node in dead:
        for p in net.nodes[node].parameters():
            assert p.grad is None
        for key, value in net.nodes[node].state_dict().items():  # no SGD update, no running-stat update
            torch.testing.assert_close(value, before[f"nodes.{node}.{key}"])
    assert 0 < net.live_plan.fraction < 1


def test_continuous_relaxation_runs_every_node():
    net = compile_graph(build_space("dcss", SMALL)).train()
    ran: set[str] = set()
    for name, module in net.nodes.items():
        module.register_forward_hook(lambda *_, name=name: ran.add(name))
    net(torch.randn(2, 3, 32, 32))
    assert ran == set(net.nodes) and net.live_plan is None


@dataclass(frozen=True)
class FakeStep:
    node: str
    inputs: tuple[int, ...]
    output: int
    free: tuple[int, ...]


def random_dag(rng: random.Random, n: int, fixed_and_choice: bool):
    """A layered DAG plan (slot 0 = input, last = head reading the last three) with input choices;
    with ``fixed_and_choice`` some nodes also have fixed inputs outside their choice's candidates."""
    g = nx.DiGraph()
    names = ["in"] + [f"n{i}" for i in range(1, n)] + ["head"]
    steps, choices = [], []
    for i in range(1, n):
        preds = sorted(rng.sample(range(i), min(i, rng.randint(1, 4))))
        g.add_edges_from((names[p], names[i]) for p in preds)
        if len(preds) >= 2:
            fixed = preds[:1] if fixed_and_choice and rng.random() < 0.5 else []
            cand = [p for p in preds if p not in fixed]
            choices.append(InputChoice(names[i], names[i], tuple(names[p] for p in cand), 1))
        steps.append(FakeStep(names[i], tuple(preds), i, ()))
    head_in = (n - 3, n - 2, n - 1)
    g.add_edges_from((names[p], "head") for p in head_in)
    steps.append(FakeStep("head", head_in, n, ()))
    return g, names, steps, ChoicePoints((), tuple(choices))


@pytest.mark.parametrize("fixed_and_choice", [False, True])
def test_liveness_matches_reachability_and_frees_after_last_real_read(fixed_and_choice):
    rng = random.Random(fixed_and_choice)
    for trial in range(40):
        g, names, steps, choices = random_dag(rng, 12, fixed_and_choice)
        planner = LivePlanner(steps, {n: i for i, n in enumerate(names)}, choices)
        computed = {c.node: sorted(rng.sample(range(len(c.candidates)), rng.randint(1, len(c.candidates)))) for c in choices.inputs}
        plan = planner.plan_for(computed)
        kept = nx.DiGraph()  # reference: the edges that are computed, then ancestors of the head
        by_node = {c.node: c for c in choices.inputs}
        for u, v in g.edges:
            c = by_node.get(v)
            if c is None or u not in c.candidates or c.candidates.index(u) in computed[v]:
                kept.add_edge(u, v)
        expected = (nx.ancestors(kept, "head") | {"head"}) - {"in"}
        assert {s.node for s in plan.steps} == expected, trial
        alive = {0}  # simulate: every real read finds its slot computed and not yet freed
        for s in plan.steps:
            c = by_node.get(s.node)
            reads = [i for i in s.inputs if c is None or names[i] not in c.candidates or c.candidates.index(names[i]) in computed[s.node]]
            assert set(reads) <= alive, (trial, s.node)
            alive -= set(s.free)
            alive.add(s.output)


def test_plans_are_cached_per_draw_and_bad_draws_are_named():
    g, names, steps, choices = random_dag(random.Random(3), 10, True)
    planner = LivePlanner(steps, {n: i for i, n in enumerate(names)}, choices, cache_size=2)
    first = {c.node: [0] for c in choices.inputs}
    assert planner.plan_for(first) is planner.plan_for(dict(first))  # same draw: the cached plan
    planner.plan_for({c.node: [len(c.candidates) - 1] for c in choices.inputs})
    planner.plan_for({c.node: list(range(len(c.candidates))) for c in choices.inputs})
    assert len(planner._cache) == 2  # bounded
    with pytest.raises(GraphError, match="no computed inputs for the input choice of node"):
        planner.plan_for({})
    with pytest.raises(GraphError, match=r"draw_pass\(\) chose candidates \[99\] for its input choice"):
        planner.plan_for({c.node: [99] for c in choices.inputs})
