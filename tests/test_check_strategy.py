"""The strategy check (archgraph.testing, `archgraph check-strategy`): every built-in strategy passes it,
and strategies broken the ways the contract warns about fail it, each at the check that says why.

Kept fast: one planted seed per strategy (tests/test_planted_signal.py runs five, with controls);
about 5 s per built-in strategy on one core, the resume check's three tiny searches most of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pytest
import torch

from archgraph.cli import main
from archgraph.core.registry import STRATEGIES, StrategyInfo, get_strategy, load_plugins
from archgraph.core.relaxation import ContinuousRelaxation, SoftmaxOpMix
from archgraph.strategies.base import Strategy, StrategyParams
from archgraph.strategies.dcnas import DCNAS, DCNASParams
from archgraph.testing import CHECKS, check_strategy

BUILTIN = ("darts", "dcnas", "pc_darts", "p_darts", "proxylessnas", "spos")
SKIPPED = {("spos", "gradients"), *((name, "evaluation") for name in BUILTIN if name != "proxylessnas")}


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_strategy_passes_the_check(name):
    # The planted check's own rule (found in all but a third of 3 seeds), not one seed: a single seed's
    # margin sits near zero on some CPUs' kernels (pc_darts seed 0: +0.033 with AVX-512, -0.016 with
    # ATEN_CPU_CAPABILITY=default), and a test must pass on any CPU.
    lines: list[str] = []
    report = check_strategy(name, planted_seeds=3, echo=lines.append)
    assert report.ok, "\n".join(lines)
    assert [r.check for r in report.results] == list(CHECKS)
    for r in report.results:
        assert r.status == ("SKIP" if (name, r.check) in SKIPPED else "PASS"), r.line()
    assert lines[0].startswith(f"checking strategy {name!r} on space 'dcss' (layers=2, base_channels=4)")
    assert len(lines) == 1 + len(CHECKS) and all(line.split()[0] in ("PASS", "SKIP") for line in lines[1:])
    if name in ("dcnas", "pc_darts"):  # partial channels: the full-width derived network is no reference
        assert "partial width" in report["subnet"].reason
    else:
        assert "computes the derived network" in report["subnet"].reason


# ------------------------------------------------------------------------------------------------
# Strategies broken on purpose, one contract rule each


class IgnoresSubnetMix(SoftmaxOpMix):
    """The bug the contract warns about: an op mixer that never asks for subnet mode."""

    def forward(self, x: torch.Tensor, ops: Sequence[torch.nn.Module]) -> torch.Tensor:
        w = torch.softmax(self.arch.op_logits(self.label), dim=-1)
        return sum(w[i] * op(x) for i, op in enumerate(ops))


class IgnoresSubnetRelaxation(ContinuousRelaxation):
    def op_mixer(self, choice, arch, channels):
        return IgnoresSubnetMix(choice.label, arch, self)


class IgnoresSubnet(Strategy):
    """Plain relaxation whose op mixer ignores subnet mode."""

    name = "ignores_subnet"

    def make_relaxation(self):
        return IgnoresSubnetRelaxation()


class ForgetsItsGenerator(DCNAS):
    """DCNAS without its path sampler's generator in state_dict: a resumed search draws other paths."""

    name = "forgets_generator"

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "tau": self.relaxation.tau}


class SkipsSuper(Strategy):
    """on_epoch_start without super(): the strategy never learns which epoch it is, so its
    architecture steps never start."""

    name = "skips_super"

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.seen = epoch


class BarelyLearns(Strategy):
    """An architecture learning rate of 1e-7: alpha and beta never leave their initialisation."""

    name = "barely_learns"
    default_arch_lr = 1e-7


@dataclass
class NoOptions(StrategyParams):
    """No options."""


@pytest.fixture
def registered(monkeypatch):
    """Register broken strategies for one test (the registry is restored afterwards)."""
    load_plugins()

    def add(cls, params=NoOptions):
        monkeypatch.setitem(STRATEGIES, cls.name, StrategyInfo(cls.name, cls, params, cls.__doc__.split("\n")[0]))
        return cls.name

    return add


def test_a_mixer_ignoring_subnet_mode_fails_the_subnet_check(registered, capsys):
    name = registered(IgnoresSubnet)
    report = check_strategy(name, checks=["subnet", "gradients", "evaluation"])
    assert not report.ok and [r.check for r in report.failed()] == ["subnet"]
    reason = report["subnet"].reason
    assert "in eval mode, for the strategy's derived architecture: the op mixer of node" in reason
    assert "besides the chosen" in reason and "Mixer.subnet_op()" in reason
    assert report["gradients"].status == "PASS"  # the rest of it is a working strategy
    # the command says the same and exits 1
    assert main(["check-strategy", name, "--checks", "subnet"]) == 1
    out, err = capsys.readouterr()
    assert "FAIL subnet: in eval mode" in out and "0 passed, 1 failed" in out and "failed: subnet" in err


def test_a_sampler_generator_left_out_of_state_dict_fails_the_resume_check(registered):
    name = registered(ForgetsItsGenerator, DCNASParams)
    report = check_strategy(name, checks=["resume"])
    result = report["resume"]
    assert result.status == "FAIL", result.line()
    assert "killed before epoch 2 step 2 and resumed" in result.reason and "generator" in result.reason


def test_on_epoch_start_without_super_fails_the_gradient_check(registered):
    name = registered(SkipsSuper)
    result = check_strategy(name, checks=["gradients"])["gradients"]
    assert result.status == "FAIL", result.line()
    assert "planned_arch_steps(0, 3) promises 3 architecture steps" in result.reason and "stepped 0 times" in result.reason


def test_a_strategy_that_does_not_learn_fails_the_planted_check(registered):
    name = registered(BarelyLearns)
    result = check_strategy(name, checks=["planted"], planted_seeds=1)["planted"]
    assert result.status == "FAIL", result.line()
    assert "need 1" in result.reason and "does not find a choice whose answer is known" in result.reason


def test_the_command_checks_a_strategy_and_refuses_bad_arguments(capsys):
    assert main(["check-strategy", "darts", "--checks", "subnet,evaluation", "--set", "space.layers=1"]) == 0
    out = capsys.readouterr().out
    assert "on space 'dcss' (layers=1, base_channels=4)" in out
    assert "PASS subnet: subnet mode computes the derived network" in out and "SKIP evaluation" in out
    assert "darts on dcss: 1 passed, 0 failed, 1 skipped" in out
    for argv, message in (
        (["--checks", "subnets"], "unknown check 'subnets'"),
        (["--set", "data.crop=[8,8]"], "space.KEY=VALUE and strategy.KEY=VALUE only"),
        (["--set", "strategy.paths=1"], "unknown config key 'strategy.paths'"),
    ):
        assert main(["check-strategy", "darts", *argv]) == 2
        assert message in capsys.readouterr().err
    assert get_strategy("darts").cls.__name__ == "DARTS"  # the checks' instrumented classes are gone again


# ------------------------------------------------------------------------------------------------
# The worked examples of docs/plugins.md keep the contract


def _doc_example(name: str) -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    start = text.index(f"<!-- example: {name} -->")
    block = text[text.index("```python\n", start) + len("```python\n") :]
    return block[: block.index("\n```")]


@pytest.mark.parametrize("name, skipped", [("gumbel_darts", set()), ("random_ws", {"gradients", "evaluation"})])
def test_the_worked_examples_of_the_docs_pass_the_check(name, skipped, monkeypatch):
    """The code in docs/plugins.md, run as a module (the resume check of both ran when it was written;
    left out here for time)."""
    import sys
    import types

    load_plugins()
    monkeypatch.setitem(STRATEGIES, name, None)  # restored (removed) after the test
    module = types.ModuleType(f"plugins_md_{name}")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(_doc_example(name), f"docs/plugins.md:{name}", "exec"), module.__dict__)
    assert STRATEGIES[name].cls.__module__ == module.__name__
    report = check_strategy(name, checks=["subnet", "gradients", "evaluation", "planted"], planted_seeds=1)
    assert report.ok, [r.line() for r in report.results]
    assert {r.check for r in report.results if r.status == "SKIP"} == skipped


# ------------------------------------------------------------------------------------------------
# Straight-through gates: the gradient-size comparison with darts (archgraph.core.straight_through)

from dataclasses import dataclass as _dataclass  # noqa: E402

from archgraph.core.relaxation import Mixer, Relaxation, sum_branches  # noqa: E402
from archgraph.core.straight_through import gated_sum, gumbel_hard, straight_through_topk  # noqa: E402
from archgraph.strategies.base import Strategy as _Strategy, StrategyParams as _StrategyParams  # noqa: E402

TAU = 1.0
NO_RESIDUAL_OPS = {"ops": ["conv3x3", "conv1x1"]}  # conv + BN + ReLU: nothing carries a gate's scale past the BN


class _Relax(Relaxation):
    def __init__(self, seed: int, helper: bool) -> None:
        self.gen, self.helper = torch.Generator().manual_seed(seed), helper

    def input_mixer(self, choice, arch):
        return _InputGate(choice.label, arch, self, choice.keep)

    def op_mixer(self, choice, arch, channels):
        return _OpGate(choice.label, arch, self)


class _InputGate(Mixer):
    def __init__(self, label, arch, relaxation, keep: int) -> None:
        super().__init__(label, arch, relaxation)
        self.keep = keep

    def forward(self, inputs, branches):
        picked = self.subnet_inputs()
        if picked is not None:
            return sum_branches(inputs, branches, picked)
        logits = self.arch.input_logits(self.label)
        if self.relaxation.helper:  # as many gated inputs as the decoder keeps, summed: BN sees their ratio
            gates, idx = straight_through_topk(logits, min(self.keep, logits.numel()), TAU, self.relaxation.gen)
            return gated_sum({i: branches[i](inputs[i]) for i in idx}, gates)
        gates, i = gumbel_hard(logits, TAU, self.relaxation.gen)  # one gated input, alone in front of a BatchNorm
        return branches[i](gates[i] * inputs[i])


class _OpGate(Mixer):
    def forward(self, x, ops):
        op = self.subnet_op()
        if op is not None:
            return ops[op](x)
        gates, i = gumbel_hard(self.arch.op_logits(self.label), TAU, self.relaxation.gen)
        if self.relaxation.helper:
            return gated_sum({i: ops[i](x)}, gates)
        return ops[i](gates[i] * x)  # the op's conv + BN cancels the gate's scale


@_dataclass
class STParams(_StrategyParams):
    """No options."""


class NaiveST(_Strategy):
    """One hard straight-through gate per choice, scaling the one path in front of a BatchNorm (the trap)."""

    name = "naive_st"

    def make_relaxation(self) -> Relaxation:
        return _Relax(self.seed, helper=False)


class HelperST(_Strategy):
    """GDAS through archgraph.core.straight_through: gated inputs summed, as many as the decoder keeps."""

    name = "helper_st"

    def make_relaxation(self) -> Relaxation:
        return _Relax(self.seed, helper=True)


@pytest.mark.parametrize("cls, status", [(NaiveST, "FAIL"), (HelperST, "PASS")])
def test_gradient_check_fails_a_hard_gate_before_batchnorm_and_passes_the_helper(cls, status, monkeypatch):
    import warnings

    from archgraph.core.registry import STRATEGIES, StrategyInfo, load_plugins

    load_plugins()
    monkeypatch.setitem(STRATEGIES, cls.name, StrategyInfo(cls.name, cls, STParams, ""))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # registered by hand, without an entry point: warned about, not wrong
        result = check_strategy(cls.name, space_params=NO_RESIDUAL_OPS, checks=["gradients"])["gradients"]
    assert result.status == status, result.reason
    if status == "FAIL":
        assert "gradients vanish" in result.reason and "times smaller than darts's" in result.reason
    else:
        assert "x darts's" in result.reason


def test_one_gated_path_before_batchnorm_gets_no_gradient_and_summed_gates_do():
    """The reason behind the check, on one BatchNorm: scaling its only input changes nothing."""
    torch.manual_seed(0)
    bn, x, y = torch.nn.BatchNorm2d(3), torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    target = (y - y.mean((0, 2, 3), keepdim=True)) / y.std((0, 2, 3), keepdim=True)  # the loss prefers candidate 1
    logits = torch.zeros(2, requires_grad=True)
    gates, i = gumbel_hard(logits, 1.0, torch.Generator().manual_seed(0))
    ((bn(gates[i] * (x, y)[i]) - target) ** 2).mean().backward()
    alone = float(logits.grad.abs().max())
    logits.grad = None
    gates, picked = straight_through_topk(logits, 2, 1.0, torch.Generator().manual_seed(0))
    ((bn(gated_sum({0: x, 1: y}, gates)) - target) ** 2).mean().backward()
    summed = float(logits.grad.abs().max())
    assert picked == [0, 1] and alone < 1e-3 * summed  # BN's eps leaves a trace of the scale, orders of magnitude below
