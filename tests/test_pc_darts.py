"""PC-DARTS mechanics: 1/k channels through the ops, channel shuffle, edge normalisation over every
input, gradients, subnet mode, derivation scores, optimiser and warm-up, and an end-to-end CLI run."""

from __future__ import annotations

import json

import pytest
import torch

from archgraph import compile_graph, load_graph
from archgraph.core.choices import ArchParams
from archgraph.cli import main
from archgraph.config import SearchConfig
from archgraph.core.decode import decisions, decode
from archgraph.errors import ConfigError
from archgraph.strategies.darts_family import warmup_from_fraction
from archgraph.strategies.pc_darts import PCDARTS, PCDARTSParams, PartialShuffleMix
from helpers import assert_architecture_trains


def pc_supernet(space, **params):
    strategy = PCDARTS(space, PCDARTSParams(**params), SearchConfig(), seed=0)
    return strategy, strategy.build_supernet()


def randomise_arch(net, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.arch_parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


def test_exactly_c_over_k_channels_go_through_the_ops_then_shuffle(tiny_space):
    _, net = pc_supernet(tiny_space, k=4)
    randomise_arch(net)
    node = net.nodes["L1_s16"]  # 16 channels
    seen = []
    for op in node.op_list:
        op.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    x = torch.randn(2, 16, 4, 4)
    net.eval()
    with torch.no_grad():
        y = node.op_mixer(x, node.op_list)
        assert seen == [4] * 6  # every candidate op ran once, on C/k = 4 channels
        w = torch.softmax(net.arch.alpha["L1_s16"], -1)
        mixed = sum(w[i] * op(x[:, :4]) for i, op in enumerate(node.op_list))
    # shuffle with 4 groups of 4: channel 4g + j moves to 4j + g (written out, not via the function)
    for c in range(16):
        g, j = divmod(c, 4)
        expected = mixed[:, c] if c < 4 else x[:, c]  # the first C/k are the mixed ones, the rest bypass
        assert torch.allclose(y[:, 4 * j + g], expected, atol=1e-6), c
    assert not torch.allclose(y[:, 1], x[:, 1])  # channel 1 now holds bypassed input channel 4, not 1
    assert torch.equal(y[:, 1], x[:, 4])


def test_every_input_runs_once_and_is_weighted_by_the_edge_softmax(tiny_space):
    _, net = pc_supernet(tiny_space)
    randomise_arch(net)
    calls: dict[tuple[str, str], int] = {}
    for name, module in net.nodes.items():
        for src, branch in module.branches.items():
            branch.register_forward_hook(lambda m, i, o, key=(name, src): calls.__setitem__(key, calls.get(key, 0) + 1))
    net.train()
    net(torch.randn(2, 3, 32, 32))
    expected = {(n, s) for n, m in net.nodes.items() for s in m.branches}
    assert len(expected) == 48 + 4  # the 48 candidate connections of L=2 and the stem chain's 4 (the head has none)
    assert calls == {k: 1 for k in expected}  # every path computed, once: no sampling

    node = net.nodes["L2_s8"]  # 8 candidate inputs
    inputs = [torch.randn(2, c, 32 // s, 32 // s) for c, s in [(4, 4), (8, 8), (16, 16), (32, 32)] * 2]
    net.eval()
    with torch.no_grad():
        got = node.input_mixer(inputs, node.branch_list)
        beta = torch.softmax(net.arch.beta["L2_s8"], -1)
        want = sum(beta[i] * b(x) for i, (b, x) in enumerate(zip(node.branch_list, inputs)))
    assert torch.allclose(got, want, atol=1e-6)
    assert beta.max() - beta.min() > 0.05  # the weights really differ, so equal weighting would fail


def test_gradients_reach_alpha_beta_and_every_candidate_weight(tiny_space):
    _, net = pc_supernet(tiny_space)
    net.train()
    net(torch.randn(2, 3, 32, 32)).pow(2).mean().backward()
    for name, p in net.arch.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    node = net.nodes["L2_s16"]
    for op_name, op in node.ops.items():
        assert all(p.grad is not None for p in op.parameters()), op_name
        assert sum(float(p.grad.abs().sum()) for p in op.parameters()) > 0, op_name
    for src, branch in node.branches.items():
        assert all(p.grad is not None for p in branch.parameters()), src


def test_subnet_mode_runs_the_chosen_op_on_the_partial_channels_only(tiny_space):
    strategy, net = pc_supernet(tiny_space)
    randomise_arch(net, seed=1)
    op_idx, in_idx = decisions(net.choices, *strategy.scores(net))
    ran: list[tuple[str, str, int]] = []
    for name, module in net.nodes.items():
        if name == "head":
            continue
        for op_name, op in module.ops.items():
            op.register_forward_hook(lambda m, i, o, key=(name, op_name): ran.append((*key, i[0].shape[1])))
    branch_calls: set[tuple[str, str]] = set()
    for name, module in net.nodes.items():
        for src, branch in module.branches.items():
            branch.register_forward_hook(lambda m, i, o, key=(name, src): branch_calls.add(key))
    net.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), strategy.relaxation.fixed_subnet(op_idx, in_idx):
        y_sub = net(x)
    for c in net.choices.ops:
        chosen = c.candidates[op_idx[c.label]]
        width = tiny_space.nodes[c.node]["channels"] // 4
        assert [(n, o, w) for n, o, w in ran if n == c.node] == [(c.node, chosen, width)]
    for c in net.choices.inputs:
        assert {s for n, s in branch_calls if n == c.node} == {c.candidates[i] for i in in_idx[c.label]}
    with torch.no_grad():
        assert not torch.allclose(net(x), y_sub)  # the relaxed supernet computes something else


def test_edge_score_is_edge_softmax_times_the_targets_strongest_op(tiny_space):
    strategy, net = pc_supernet(tiny_space)
    randomise_arch(net, seed=2)
    ops, inputs = strategy.scores(net)
    for label, alpha in net.arch.alpha.items():
        assert ops[label] == pytest.approx(torch.softmax(alpha, -1).tolist())
    beta = torch.softmax(net.arch.beta["L2_s16"], -1)
    top_op = torch.softmax(net.arch.alpha["L2_s16"], -1).max()
    assert inputs["L2_s16"] == pytest.approx((beta * top_op).tolist())
    arch = decode(tiny_space, ops, inputs)
    kept = sorted(arch.predecessors("L2_s16"))
    best = sorted(net.choices.input_choice("L2_s16").candidates[i] for i in beta.topk(2).indices.tolist())
    assert kept == best
    assert arch.edges[kept[0], "L2_s16"]["score"] == pytest.approx(float(inputs["L2_s16"][net.choices.input_choice("L2_s16").candidates.index(kept[0])]))


def test_architecture_optimiser_and_warm_up_follow_the_paper(tiny_space):
    """Betas and warm-up as the official code; lr and decay for per-node alpha at short budgets
    (docs/strategies.md), the official 6e-4 and 1e-3 one option away."""
    strategy, net = pc_supernet(tiny_space)
    opt = strategy.arch_optimizer(net)
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.Adam)
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"]) == (1e-2, (0.5, 0.999), 0.0)
    official, net2 = pc_supernet(tiny_space, arch_lr=6e-4, arch_weight_decay=1e-3)
    group = official.arch_optimizer(net2).param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (6e-4, 1e-3)
    assert len(group["params"]) == len(list(net.arch_parameters()))
    strategy.on_epoch_start(0, 50)
    assert strategy.warmup_epochs() == 15  # 15 of 50 epochs, as the official code
    assert not strategy.arch_active()
    strategy.on_epoch_start(15, 50)
    assert strategy.arch_active()
    assert [warmup_from_fraction(0.3, e) for e in (1, 2, 4, 10)] == [0, 1, 1, 3]


def test_shared_search_keys_it_does_not_read_warn_with_the_value_used(tiny_space):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PCDARTS(tiny_space, PCDARTSParams(), SearchConfig(), seed=0)  # defaults: nothing to say
    with pytest.warns(UserWarning) as caught:
        PCDARTS(tiny_space, PCDARTSParams(), SearchConfig(epochs=10, warmup_epochs=5, arch_lr=0.05, arch_weight_decay=1e-3), seed=0)
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        "pc_darts does not read search.arch_lr (set to 0.05); it uses strategy.arch_lr=0.01",
        "pc_darts does not read search.arch_weight_decay (set to 0.001); it uses strategy.arch_weight_decay=0.0",
        "pc_darts does not read search.warmup_epochs (set to 5); it uses strategy.warmup_fraction=0.3 of the search.epochs (3 weight-only epochs of 10)",
    ]


def test_supernet_batch_norm_at_choice_points_is_not_affine(tiny_space):
    _, net = pc_supernet(tiny_space)
    node = net.nodes["L1_s16"]
    bns = [m for m in node.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.affine for bn in bns)


def test_bad_k_is_rejected(tiny_space):
    with pytest.raises(ConfigError, match="strategy.k"):
        PCDARTS(tiny_space, PCDARTSParams(k=0), SearchConfig())
    with pytest.raises(ConfigError, match=r"strategy.k=3 does not divide the 4 channels of node 'L1_s4'"):
        pc_supernet(tiny_space, k=3)
    with pytest.raises(ConfigError, match="warmup_fraction"):
        PCDARTS(tiny_space, PCDARTSParams(warmup_fraction=1.0), SearchConfig())


def test_k_one_is_plain_darts(tiny_space):
    _, net = pc_supernet(tiny_space, k=1)
    node = net.nodes["L1_s16"]
    assert isinstance(node.op_mixer, PartialShuffleMix)
    assert next(iter(node.ops.values())).expand[0].in_channels == 16


TINY = [
    "strategy.name=pc_darts",
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=2",
    "search.steps_per_epoch=3",
    "search.bn_recalib_batches=1",
    "data.val_limit=4",
]


def test_search_end_to_end_through_the_cli(tmp_path):
    out = tmp_path / "pc"
    assert main(["search", "--out", str(out), "--no-progress", "--set", *TINY]) == 0
    records = [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]
    assert [r["arch_active"] for r in records] == [False, True]  # warm-up: round(0.3 * 2) = 1 epoch
    assert "arch_loss" in records[1] and "arch_loss" not in records[0]
    assert 0.0 <= records[-1]["s_miou"] <= 1.0

    state = torch.load(out / "checkpoint.pt", weights_only=False)["net"]
    init = ArchParams(compile_graph(load_graph(out / "supernet.yaml")).choices, seed=0).state_dict()
    moved = [float((state[f"arch.{k}"] - v).abs().max()) for k, v in init.items()]
    assert len(moved) == 16 and min(moved) > 1e-4  # every alpha and beta took Adam steps (lr 6e-4)
    ops_in_state = {k.split(".ops.")[1].split(".")[0] for k in state if ".ops.mbconv" in k}
    assert len(ops_in_state) == 6
    assert state["nodes.L1_s16.ops.mbconv_k3_r3.expand.0.weight"].shape[:2] == (12, 4)  # built at C/k = 4

    arch = load_graph(out / "arch.yaml")
    net = compile_graph(arch)
    assert net.arch is None  # no choices left
    assert_architecture_trains(arch)
