"""ProxylessNAS mechanics: one path per weight step, two per architecture step, BinaryConnect
gradients that find the op a toy loss prefers, the rescaling, the schedule, the CLI end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from archgraph import compile_graph, load_graph
from archgraph.core.choices import ArchParams, ChoicePoints, OpChoice
from archgraph.cli import main
from archgraph.config import SearchConfig
from archgraph.strategies.proxylessnas import BinaryGateOp, ProxylessNAS, ProxylessParams, ProxylessRelaxation
from helpers import TINY_CLI_SEARCH, assert_architecture_trains


def strategy_and_net(space, **params):
    strategy = ProxylessNAS(space, ProxylessParams(**params), SearchConfig(warmup_epochs=0), seed=0)
    return strategy, strategy.build_supernet()


def count_calls(net) -> dict[tuple[str, str, str], int]:
    calls: dict[tuple[str, str, str], int] = {}
    for node, module in net.nodes.items():
        for kind, mods in (("op", module.ops), ("branch", module.branches)):
            for name, m in mods.items():
                key = (node, kind, name)
                m.register_forward_hook(lambda *_, key=key: calls.__setitem__(key, calls.get(key, 0) + 1))
    return calls


def per_node(calls, net, kind):
    out = {n: 0 for n in net.nodes}
    for (node, k, _), c in calls.items():
        if k == kind:
            out[node] += 1 if c else 0
    return out


@pytest.mark.parametrize("step_kind, ops_run", [("weight", 1), ("arch", 2)])
def test_ops_and_inputs_that_run(tiny_space, step_kind, ops_run):
    strategy, net = strategy_and_net(tiny_space)
    net.prune_dead = False  # every node's mixer (dead ones too: tests/test_live_subgraph.py covers pruning)
    calls = count_calls(net)
    strategy.relaxation.step_kind = step_kind
    net.train()
    net(torch.randn(2, 3, 32, 32)).mean().backward()
    ops_per_node = per_node(calls, net, "op")
    branches_per_node = per_node(calls, net, "branch")
    assert len(net.choices.ops) == 8
    for c in net.choices.ops:
        assert ops_per_node[c.node] == ops_run, c.node
    for c in net.choices.inputs:
        k = c.keep
        expected = k if step_kind == "weight" else min(2 * k, len(c.candidates))
        assert branches_per_node[c.node] == expected, c.node
    if step_kind == "arch":  # gates carry the architecture gradient; only the active op's weights train
        # (a node that only feeds inactive, detached paths is off the active path: its gate gets no gradient)
        reached = [(label, b) for label, b in strategy.relaxation.ops.items() if b.gates.grad is not None]
        assert len(reached) >= 4
        for label, b in reached:
            assert b.gates.grad[b.involved].ne(0).all() and b.gates.grad.count_nonzero() == 2
            inactive = b.involved[1]
            node_ops = net.nodes[label].ops
            name = list(node_ops)[inactive]
            assert all(p.grad is None for p in node_ops[name].parameters()), "the inactive op must be detached"
        assert all(p.grad is None for p in net.arch_parameters()), "alpha gets gradients only through the gates"


def test_subnet_and_eval_modes_are_deterministic(tiny_space):
    strategy, net = strategy_and_net(tiny_space)
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x), net(x))
    op_idx = {c.label: 1 for c in net.choices.ops}
    in_idx = {c.label: [0, 1] for c in net.choices.inputs}
    calls = count_calls(net)
    net.train()
    with strategy.relaxation.fixed_subnet(op_idx, in_idx):
        net(x)
    for c in net.choices.ops:
        assert [name for (n, k, name), v in calls.items() if n == c.node and k == "op"] == [c.candidates[1]]


class Scale(nn.Module):
    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return self.c * x


def toy_mixer(n: int = 4, lr: float = 0.05, mode: str = "two", seed: int = 0):
    choice = OpChoice("v", "v", tuple(f"op{i}" for i in range(n)))
    arch = ArchParams(ChoicePoints((choice,), ()), seed=seed)
    relax = ProxylessRelaxation(ProxylessParams(mode=mode), seed=seed)
    mixer = BinaryGateOp("v", arch, relax).train()
    opt = torch.optim.Adam(arch.parameters(), lr=lr, betas=(0.0, 0.999))
    return arch, relax, mixer, opt


def arch_step(arch, relax, mixer, opt, ops, x, target):
    relax.step_kind = "arch"
    relax.reset()
    opt.zero_grad(set_to_none=True)
    loss = (mixer(x, ops) - target).pow(2).mean()
    loss.backward()
    relax.set_arch_grads(arch)
    opt.step()
    relax.rescale(arch)


@pytest.mark.numeric  # asserts on learned margins: .ci/run runs it again on another CPU path
@pytest.mark.parametrize("mode", ["two", "full"])
def test_gate_gradients_move_alpha_to_the_preferred_op(mode):
    torch.manual_seed(0)
    arch, relax, mixer, opt = toy_mixer(mode=mode)
    ops = [Scale(c) for c in (0.0, 1.0, 2.0, 3.0)]
    x = torch.randn(16)
    target = 2.0 * x  # op 2 is exactly right
    for _ in range(300):
        arch_step(arch, relax, mixer, opt, ops, x, target)
    p = torch.softmax(arch.alpha["v"].detach(), -1)
    assert int(p.argmax()) == 2, p
    assert p[2] > 0.4, p  # well above uniform (0.25): measured 0.52 ("full", sampled paths) to 0.78 ("two"); draws differ by CPU


def test_binaryconnect_gradient_formula():
    arch, relax, mixer, opt = toy_mixer(n=3, mode="full")
    with torch.no_grad():
        arch.alpha["v"].copy_(torch.tensor([0.3, -0.2, 0.1]))
    ops = [Scale(c) for c in (0.5, 1.0, 2.0)]
    x = torch.randn(8)
    relax.step_kind = "arch"
    loss = (mixer(x, ops) - 1.5 * x).pow(2).sum()
    loss.backward()
    relax.set_arch_grads(arch)
    g = relax.ops["v"].gates.grad
    p = torch.softmax(arch.alpha["v"].detach(), -1)
    expected = torch.tensor([sum(g[j] * p[j] * (float(i == j) - p[i]) for j in range(3)) for i in range(3)])
    assert torch.allclose(arch.alpha["v"].grad, expected, atol=1e-6)
    assert abs(float(arch.alpha["v"].grad.sum())) < 1e-5  # softmax gradients sum to zero


def test_rescaling_keeps_untouched_probabilities():
    arch, relax, mixer, opt = toy_mixer(n=6, lr=0.2)
    with torch.no_grad():
        arch.alpha["v"].copy_(torch.tensor([0.5, -0.3, 0.2, 0.0, 1.0, -1.0]))
    ops = [Scale(c) for c in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)]
    x = torch.randn(8)
    before = torch.softmax(arch.alpha["v"].detach().double(), -1)
    relax.step_kind = "arch"
    opt.zero_grad()
    (mixer(x, ops) - 2.5 * x).pow(2).mean().backward()
    relax.set_arch_grads(arch)
    opt.step()
    involved = relax.ops["v"].involved
    untouched = [i for i in range(6) if i not in involved]
    unscaled = torch.softmax(arch.alpha["v"].detach().double(), -1)
    assert (unscaled[untouched] - before[untouched]).abs().max() > 1e-3  # without rescaling they would move
    relax.rescale(arch)
    after = torch.softmax(arch.alpha["v"].detach().double(), -1)
    assert len(involved) == 2 and len(untouched) == 4
    assert (after[untouched] - before[untouched]).abs().max() < 1e-7
    assert (after[involved] - before[involved]).abs().max() > 1e-3  # the pair itself did move


def test_one_arch_step_every_five_weight_steps(tiny_space):
    strategy, net = strategy_and_net(tiny_space)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.01)
    a_opt = strategy.arch_optimizer(net)
    assert a_opt.defaults["lr"] == 1e-2 and a_opt.defaults["betas"] == (0.0, 0.999)  # official lr 1e-3 (docs/strategies.md)
    batch = (torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    strategy.on_epoch_start(0, 1)
    changed = []
    for step in range(10):
        strategy.on_step_start(step, 10)
        before = [p.detach().clone() for p in net.arch_parameters()]
        strategy.search_step(net, batch, batch, w_opt, a_opt)
        changed.append(any(not torch.equal(b, p) for b, p in zip(before, net.arch_parameters())))
    assert changed == [False] * 4 + [True] + [False] * 4 + [True]
    assert strategy.log_state()["arch_steps"] == 2


def test_linear_hardware_loss_prefers_cheap_ops(tiny_space):
    strategy, net = strategy_and_net(tiny_space, hw_loss="add#linear", hw_lambda=50.0, arch_lr=0.05)
    a_opt = strategy.arch_optimizer(net)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    for _ in range(15):
        strategy.arch_step(net, (x, y), a_opt)
    cheap, dear = net.choices.ops[0].candidates.index("mbconv_k3_r3"), net.choices.ops[0].candidates.index("mbconv_k7_r6")
    alpha = {k: v.detach() for k, v in net.arch.alpha.items()}
    wins = sum(float(alpha[c.label][cheap]) > float(alpha[c.label][dear]) for c in net.choices.ops)
    assert wins >= 7, wins


def test_bad_options_are_rejected(tiny_space):
    from archgraph.errors import ConfigError

    with pytest.raises(ConfigError, match="strategy.mode"):
        ProxylessNAS(tiny_space, ProxylessParams(mode="full_v3"), SearchConfig())
    with pytest.raises(ConfigError, match="hw_loss"):
        ProxylessNAS(tiny_space, ProxylessParams(hw_loss="mul#exp"), SearchConfig())


TINY = TINY_CLI_SEARCH


def test_cli_search_end_to_end(tmp_path):
    out = tmp_path / "run"
    argv = ["search", "--out", str(out), "--no-progress", "--set", *TINY, "strategy.name=proxylessnas", "strategy.arch_every=1", "strategy.hw_loss=mul#log"]
    assert main(argv) == 0
    records = [json.loads(l) for l in (out / "search.jsonl").read_text().splitlines()]
    assert [r["arch_steps"] for r in records] == [3, 3]
    assert "arch_expected_cost" in records[-1] and 0 <= records[-1]["s_miou"] <= 1
    net = compile_graph(load_graph(out / "arch.yaml"))
    assert net.arch is None
    assert_architecture_trains(load_graph(out / "arch.yaml"))


def test_supernet_keeps_affine_batch_norm_as_the_official_code(tiny_space):
    strategy, net = strategy_and_net(tiny_space)
    assert all(m.affine for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    off = ProxylessNAS(tiny_space, ProxylessParams(), SearchConfig(warmup_epochs=0, affine_bn=False), seed=0).build_supernet()
    assert not any(m.affine for m in off.nodes["L1_s4"].modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_shared_arch_keys_it_does_not_read_warn(tiny_space):
    with pytest.warns(UserWarning, match=r"proxylessnas does not read search.arch_lr \(set to 0.003\); it uses strategy.arch_lr=0.01"):
        ProxylessNAS(tiny_space, ProxylessParams(), SearchConfig(arch_lr=3e-3), seed=0)
