"""The relaxation hook: what runs at a choice point.

The compiler owns execution; at every choice point it asks a :class:`Relaxation` for a small *mixer*
module and calls it with the node's own branches or ops. Mixers hold no weights of the network (the
branches and ops live in the node module, under the same names in a supernet and in a derived
network, so weights transfer by name); they only decide which candidates run and how their outputs
are weighted.

- an input mixer is called as ``mixer(inputs, branches)``: ``inputs[i]`` is the raw tensor of the
  i-th candidate edge of the input choice (beta's i-th entry; a node's fixed inputs, if it has any,
  are aligned and combined by the node itself, never passed here) and ``branches[i]`` its
  shape-alignment module. A mixer that does not call
  ``branches[i]`` never computes that path (DCNAS path sampling, SPOS).
- an op mixer is called as ``mixer(x, ops)`` with the node's candidate op modules in order; ops
  may be narrower than the node (:meth:`Relaxation.op_width`), the mixer then splits channels.

Every relaxation also has a *subnet mode* (:meth:`Relaxation.fixed_subnet`): inside it each mixer
runs only the chosen op and sums only the chosen inputs, exactly what the derived network computes.
That is how S-mIoU evaluates "the currently derived architecture with the supernet's weights" for
any strategy, including those whose ops are narrower than the derived network's (partial channels).

**Drawing before the pass (live-subgraph execution).** A sampling relaxation may opt in to
:meth:`Relaxation.draw_pass`: the compiled network calls it before a forward pass with every choice
point in the order a full pass would reach its mixer; it draws the whole pass's choices there (same
generator calls, same order as mixers drawing when they run) and returns, per input-choice node, the
candidate indices that will be computed. The network then runs only the nodes on some path to the
head (:mod:`archgraph.core.liveplan`); the mixers of the nodes that run read the draw instead of
sampling. :meth:`Relaxation.end_pass` is called after the pass. The default returns ``None``: every
node runs and mixers decide inside ``forward``, as continuous relaxations must.

The default, :class:`ContinuousRelaxation`, is the plain relaxation of the DCNAS paper (Eq. 1-4):
softmax(alpha) mixes all ops, softmax(beta) mixes all aligned inputs. Strategies subclass
:class:`Relaxation` and override only the kinds of choice they change (as torch.fx's ``run_node``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from archgraph.core.choices import ArchParams, ChoicePoints, InputChoice, OpChoice


class Mixer(nn.Module):
    """Base of mixers: keeps plain (unregistered) references to the arch store and the relaxation,
    so their parameters are owned once, by the compiled network, and appear once in its state dict."""

    def __init__(self, label: str, arch: ArchParams, relaxation: "Relaxation"):
        super().__init__()
        self.label = label
        self.__dict__["arch"] = arch
        self.__dict__["relaxation"] = relaxation

    def extra_repr(self) -> str:
        return f"label={self.label!r}"

    def subnet_op(self) -> int | None:
        """Index of the op to run alone in subnet mode, else ``None``."""
        fixed = self.relaxation.subnet
        return None if fixed is None else fixed[0][self.label]

    def subnet_inputs(self) -> Sequence[int] | None:
        """Indices of the inputs to sum in subnet mode, else ``None``."""
        fixed = self.relaxation.subnet
        return None if fixed is None else fixed[1][self.label]


def sum_branches(inputs: Sequence[torch.Tensor], branches: Sequence[nn.Module], picked: Sequence[int]) -> torch.Tensor:
    """Align and add the picked inputs only: the others are never computed."""
    out = branches[picked[0]](inputs[picked[0]])
    for i in picked[1:]:
        out = out + branches[i](inputs[i])
    return out


def host_copies(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Float32 CPU copies of ``tensors`` (detached, flattened) made with ONE device-to-host copy.

    Why: a strategy that samples on the host (CPU generators keep draws identical on every device)
    needs alpha/beta there; a ``.cpu()`` per choice point waits for the GPU once per node and step.
    Concatenated first, the whole pass's logits cross once (tests/test_sync_points.py). The values
    are the same as per-tensor copies, so draws do not change."""
    if not tensors:
        return []
    flat = torch.cat([t.detach().float().reshape(-1) for t in tensors]).cpu()
    return list(flat.split([t.numel() for t in tensors]))


class SumInputs(nn.Module):
    """No input choice: align every input and add them up."""

    def forward(self, inputs: Sequence[torch.Tensor], branches: Sequence[nn.Module]) -> torch.Tensor:
        out = branches[0](inputs[0])
        for x, branch in zip(inputs[1:], branches[1:]):
            out = out + branch(x)
        return out


class SingleOp(nn.Module):
    """No op choice: run the node's only op."""

    def forward(self, x: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
        return ops[0](x)


class SoftmaxInputMix(Mixer):
    """Eq. 3-4: every input aligned and weighted by softmax(beta)."""

    def forward(self, inputs: Sequence[torch.Tensor], branches: Sequence[nn.Module]) -> torch.Tensor:
        picked = self.subnet_inputs()
        if picked is not None:
            return sum_branches(inputs, branches, picked)
        w = torch.softmax(self.arch.input_logits(self.label), dim=-1)
        out = w[0] * branches[0](inputs[0])
        for i in range(1, len(inputs)):
            out = out + w[i] * branches[i](inputs[i])
        return out


class SoftmaxOpMix(Mixer):
    """Eq. 1-2: every candidate op weighted by softmax(alpha)."""

    def forward(self, x: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
        op = self.subnet_op()
        if op is not None:
            return ops[op](x)
        w = torch.softmax(self.arch.op_logits(self.label), dim=-1)
        out = w[0] * ops[0](x)
        for i in range(1, len(ops)):
            out = out + w[i] * ops[i](x)
        return out


class Relaxation:
    """What a strategy supplies at choice points. Override the factory for the kind you relax.

    The base class supports nothing: a strategy that forgets a kind of choice fails at compile time,
    naming the node, instead of training a network that silently ignores the choice.
    """

    name = "none"
    subnet: tuple[Mapping[str, int], Mapping[str, Sequence[int]]] | None = None

    def op_width(self, choice: OpChoice, channels: int) -> int:
        """Channels the candidate ops of ``choice`` are built with (partial-channel strategies: fewer)."""
        return channels

    @contextmanager
    def fixed_subnet(self, ops: Mapping[str, int], inputs: Mapping[str, Sequence[int]]) -> Iterator[None]:
        """Run one architecture of the supernet: op index per op label, input indices per input label."""
        previous = self.subnet
        self.subnet = (dict(ops), {k: tuple(v) for k, v in inputs.items()})
        try:
            yield
        finally:
            self.subnet = previous

    def begin_pass(self) -> None:
        """Called by the compiled network at the start of every forward pass, before :meth:`draw_pass`
        and the mixers: forget the previous pass's draw so this one draws afresh (SPOS's path,
        ProxylessNAS's binarisation, Gumbel noise). One pass, one lifecycle: ``begin_pass``, then
        ``draw_pass`` (opt-in, live-subgraph execution), the mixers, ``end_pass``. Leave subnet mode's
        fixed path alone (:attr:`subnet` set). Default: nothing."""

    def draw_pass(self, sequence: Sequence[InputChoice | OpChoice], arch: ArchParams, training: bool) -> Mapping[str, Sequence[int]] | None:
        """Opt-in to live-subgraph execution: draw every choice of the coming forward pass now.

        ``sequence`` lists every choice point (nested ones too) in the order a full forward pass
        reaches its mixer; ``arch`` is the network's alpha/beta store, ``training`` its mode. Draw in that order with the same
        generator calls the mixers would make, keep the draw where the mixers read it (they must not
        sample again in this pass), and return ``{node: candidate indices computed}`` for every
        :class:`InputChoice` in ``sequence`` (indices into ``choice.candidates``; for an architecture
        step that runs inactive candidates too, as ProxylessNAS's, all of those that run). Only the
        nodes on a path to the head through computed inputs then run. Return ``None`` (the default,
        and always in subnet mode unless the mixers follow :attr:`subnet` alone) to run every node.
        """
        return None

    def end_pass(self) -> None:
        """Called after every forward pass :meth:`draw_pass` was called for (also when it raised): forget
        per-pass state the mixers of the next pass must not see. State needed after the pass (e.g.
        for gradient estimates after backward) may stay. Default: nothing."""

    def input_mixer(self, choice: InputChoice, arch: ArchParams) -> nn.Module:
        raise NotImplementedError(f"relaxation {self.name!r} cannot relax the input choice of node {choice.node!r}")

    def op_mixer(self, choice: OpChoice, arch: ArchParams, channels: int) -> nn.Module:
        """``channels``: the node's width (its ops were built with :meth:`op_width` of it)."""
        raise NotImplementedError(f"relaxation {self.name!r} cannot relax the op choice of node {choice.node!r}")

    def check(self, choices: ChoicePoints) -> None:
        """Raise before any training if some choice cannot be handled (default: accept all)."""


class ContinuousRelaxation(Relaxation):
    """The paper's plain relaxation (Eq. 1-4): everything computed, softmax-weighted."""

    name = "continuous"

    def input_mixer(self, choice: InputChoice, arch: ArchParams) -> nn.Module:
        return SoftmaxInputMix(choice.label, arch, self)

    def op_mixer(self, choice: OpChoice, arch: ArchParams, channels: int) -> nn.Module:
        return SoftmaxOpMix(choice.label, arch, self)
