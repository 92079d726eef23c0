"""DCNAS mechanics: path sampling statistics, undrawn paths never run, fixed partial-channel masks."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy import stats

from archgraph.core.choices import ArchParams, ChoicePoints, InputChoice
from archgraph.config import SearchConfig
from archgraph.strategies.dcnas import DCNAS, DCNASParams, DCNASRelaxation, PathSamplingMix, PartialChannelMix, temperature


def inclusion_probabilities(p: list[float], n: int) -> list[float]:
    """P(i is among n draws without replacement), by enumerating ordered draws (successive sampling)."""
    incl = [0.0] * len(p)
    for seq in itertools.permutations(range(len(p)), n):
        prob, left = 1.0, 1.0
        for i in seq:
            prob *= p[i] / left
            left -= p[i]
        for i in seq:
            incl[i] += prob
    return incl


def test_path_sampler_matches_sampling_without_replacement():
    beta = torch.tensor([1.0, 0.0, -0.5, 0.3, -1.0])
    tau, n, draws = 0.7, 2, 6000
    choice = InputChoice("v", "v", tuple("abcde"), 2)
    arch = ArchParams(ChoicePoints((), (choice,)))
    with torch.no_grad():
        arch.beta["v"].copy_(beta)
    relax = DCNASRelaxation(DCNASParams(paths=n), seed=0)
    relax.tau, relax.recording = tau, True
    mixer = PathSamplingMix("v", arch, relax, n).train()
    branches = [torch.nn.Identity()] * 5
    inputs = [torch.zeros(1, 1, 1, 1)] * 5
    pair_counts: dict[tuple[int, ...], int] = {}
    counts = [0] * 5
    for _ in range(draws):
        mixer(inputs, branches)
        picked = relax.last_picks["v"]
        assert len(set(picked)) == n  # without replacement
        for i in picked:
            counts[i] += 1
        key = tuple(sorted(picked))
        pair_counts[key] = pair_counts.get(key, 0) + 1
    p = torch.softmax(beta / tau, -1).tolist()
    expected = inclusion_probabilities(p, n)
    for i in range(5):
        se = (expected[i] * (1 - expected[i]) / draws) ** 0.5
        assert abs(counts[i] / draws - expected[i]) < 4 * se, (i, counts[i] / draws, expected[i])
    # unordered pairs: a chi-square goodness-of-fit test against the exact pair distribution
    pairs = list(itertools.combinations(range(5), 2))
    exact = {pair: sum(p[a] * p[b] / (1 - p[a]) for a, b in itertools.permutations(pair)) for pair in pairs}
    observed = [pair_counts.get(pair, 0) for pair in pairs]
    total = sum(exact.values())
    expected_counts = [exact[pair] / total * draws for pair in pairs]  # renormalise float round-off
    assert total == pytest.approx(1.0)
    assert stats.chisquare(observed, expected_counts).pvalue > 1e-3


def dcnas_supernet(space, **params):
    strategy = DCNAS(space, DCNASParams(**params), SearchConfig(), seed=0)
    return strategy, strategy.build_supernet()


def test_undrawn_paths_never_run_and_get_no_gradient(tiny_space):
    strategy, net = dcnas_supernet(tiny_space, paths=2)
    calls: dict[tuple[str, str], int] = {}
    for node, module in net.nodes.items():
        for src, branch in module.branches.items():
            branch.register_forward_hook(lambda m, i, o, key=(node, src): calls.__setitem__(key, calls.get(key, 0) + 1))
    strategy.relaxation.recording = True
    net.train()
    net(torch.randn(2, 3, 64, 64)).mean().backward()
    picks = strategy.relaxation.last_picks
    node = "L2_s8"  # 8 candidate inputs, 2 drawn
    choice = net.choices.input_choice(node)
    drawn = {choice.candidates[i] for i in picks[node]}
    assert len(drawn) == 2
    for src, branch in net.nodes[node].branches.items():
        ran = calls.get((node, src), 0) > 0
        assert ran == (src in drawn), src
        grads = [p.grad for p in branch.parameters()]
        if src in drawn:
            assert all(g is not None for g in grads)
        else:
            assert all(g is None for g in grads), f"undrawn branch {src} received a gradient"
    beta_grad = net.arch.beta[node].grad
    drawn_idx = set(picks[node])
    for i, g in enumerate(beta_grad.tolist()):
        assert (g != 0) == (i in drawn_idx)


def test_channel_mask_has_exactly_r_of_the_channels(tiny_space):
    _, net = dcnas_supernet(tiny_space, channel_ratio=0.25)
    for node, module in net.nodes.items():
        if isinstance(module.op_mixer, PartialChannelMix):
            idx = module.op_mixer.channel_index
            channels = tiny_space.nodes[node]["channels"]
            assert idx.numel() == max(1, round(channels * 0.25))
            assert len(set(idx.tolist())) == idx.numel()
            # the candidate ops are built for the sampled width only
            first_op = next(iter(module.ops.values()))
            assert first_op.expand[0].in_channels == idx.numel()


def test_bypassed_channels_pass_unchanged(tiny_space):
    _, net = dcnas_supernet(tiny_space, channel_ratio=0.25)
    mixer = net.nodes["L1_s32"].op_mixer
    ops = net.nodes["L1_s32"].op_list
    x = torch.randn(2, 32, 2, 2)
    y = mixer.eval()(x, [op.eval() for op in ops])
    keep = sorted(set(range(32)) - set(mixer.channel_index.tolist()))
    assert torch.equal(y[:, keep], x[:, keep])
    assert not torch.equal(y[:, mixer.channel_index], x[:, mixer.channel_index])


def test_channel_ratio_one_runs_full_width(tiny_space):
    _, net = dcnas_supernet(tiny_space, channel_ratio=1.0)
    assert next(iter(net.nodes["L1_s16"].ops.values())).expand[0].in_channels == 16


@pytest.mark.parametrize("schedule", ["exponential", "linear", "cosine"])
def test_temperature_anneals_from_max_to_min(schedule):
    taus = [temperature(schedule, 5.0, 0.5, t / 10) for t in range(11)]
    assert taus[0] == pytest.approx(5.0) and taus[-1] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(taus, taus[1:]))
    assert min(taus) > 0


def test_tau_schedule_over_epochs(tiny_space):
    strategy, _ = dcnas_supernet(tiny_space)
    strategy.search.warmup_epochs = 1
    taus = []
    for epoch in range(5):
        strategy.on_epoch_start(epoch, 5)
        taus.append(strategy.relaxation.tau)
    assert taus[0] == taus[1] == 5.0  # warm-up then first architecture epoch at tau_max
    assert taus[-1] == pytest.approx(0.5)


def test_bad_options_are_rejected(tiny_space):
    from archgraph.errors import ConfigError

    with pytest.raises(ConfigError, match=r"strategy.channel_ratio: 0 is out of range; allowed: \(0, 1\]"):
        DCNAS(tiny_space, DCNASParams(channel_ratio=0), SearchConfig())
    with pytest.raises(ConfigError, match=r"strategy.tau_schedule: 'fast' is not allowed.*\(choose one of: exponential, linear, cosine, constant\)"):
        DCNAS(tiny_space, DCNASParams(tau_schedule="fast"), SearchConfig())
    with pytest.raises(ConfigError, match=r"strategy.tau_min: 2.0 is above strategy.tau_max=1.0; allowed: 0 < tau_min <= tau_max"):
        DCNASParams(tau_max=1.0, tau_min=2.0)
    from archgraph.config import load_config

    with pytest.raises(ConfigError, match=r"strategy.tau_min: 2.0 is above strategy.tau_max=1.0"):
        load_config(None, ["strategy.tau_max=1", "strategy.tau_min=2"])  # the same rule, as the config is read


def blend_grad(tau: float, blend_temperature: bool) -> torch.Tensor:
    """d(sum of the blend)/d beta for two drawn inputs of different values, beta = 0."""
    choice = InputChoice("v", "v", ("a", "b"), 1)
    arch = ArchParams(ChoicePoints((), (choice,)))
    with torch.no_grad():
        arch.beta["v"].zero_()
    relax = DCNASRelaxation(DCNASParams(paths=2, blend_temperature=blend_temperature), seed=0)
    relax.tau = tau
    mixer = PathSamplingMix("v", arch, relax, 2).train()
    inputs = [torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 3.0)]
    mixer(inputs, [torch.nn.Identity()] * 2).sum().backward()
    return arch.beta["v"].grad


def test_blend_gradient_on_beta_is_not_divided_by_tau():
    """tau shapes the draw only: the blend softmax(beta) over the drawn paths gives beta the same
    gradient at tau = 5 as at tau = 1; the earlier reading (blend_temperature) divides it by tau."""
    at_one, at_five = blend_grad(1.0, False), blend_grad(5.0, False)
    assert at_one.abs().min() > 0.1  # softmax weights 1/2 each: d/dbeta = +-1/2 * (3 - 1) / 2
    assert torch.allclose(at_five, at_one)
    assert torch.allclose(blend_grad(5.0, True), at_one / 5)


def test_no_weight_decay_on_alpha_beta_by_default(tiny_space):
    strategy, net = dcnas_supernet(tiny_space)
    group = strategy.arch_optimizer(net).param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (1e-2, 0.0)
    old = DCNAS(tiny_space, DCNASParams(), SearchConfig(arch_lr=3e-3, arch_weight_decay=1e-3), seed=0)  # reachable by config
    group = old.arch_optimizer(old.build_supernet()).param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (3e-3, 1e-3)


def test_one_drawn_path_is_refused_with_the_fix(tiny_space):
    from archgraph.config import load_config
    from archgraph.errors import ConfigError

    with pytest.raises(ConfigError, match=r"strategy.paths: 1 is out of range; allowed: >= 2 \(with one drawn path .*beta never gets a gradient.*set strategy.paths >= 2"):
        DCNAS(tiny_space, DCNASParams(paths=1), SearchConfig())  # the options built in Python are checked as in a config
    with pytest.raises(ConfigError, match=r"strategy.paths: 1 is out of range; allowed: >= 2 \(with one drawn path .*gradient.*strategy.paths >= 2"):
        load_config(None, ["strategy.paths=1"])  # before anything runs
