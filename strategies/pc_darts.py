"""PC-DARTS: partial channel connections and edge normalisation.

Xu, Xie, Zhang, Chen, Qi, Tian, Xiong. "PC-DARTS: Partial Channel Connections for Memory-Efficient
Architecture Search", ICLR 2020 (arXiv:1907.05737); official code: github.com/yuhuixu1993/PC-DARTS.

What the official code does, and what runs here at a graph's choice points:

- **Partial channel connections.** The first ``C // k`` channels of a node's (aggregated) input go
  through the softmax(alpha)-weighted mix of every candidate op, built at ``C // k`` channels; the
  other channels bypass unchanged. The two parts are concatenated and **channel-shuffled** with
  ``k`` groups, so the next mixture sees different channels (``k = 4``).
- **Edge normalisation.** Every incoming edge of a node is computed at every step and weighted by
  softmax(beta) over the node's inputs (no sampling: the difference from DCNAS path sampling).
- **Bi-level, first order.** Weights (SGD) on trainA, alpha and beta (Adam, lr 6e-4, betas (0.5,
  0.999), weight decay 1e-3) on trainB; the architecture step first; weight-only warm-up epochs (15
  of 50 in the paper, i.e. ``warmup_fraction`` 0.3 of the epoch budget).
- **Derivation.** Edge scores are softmax(alpha) of the op times softmax(beta) of the edge; the BFS
  decoder keeps the top-k inputs per node. On a graph whose op choice lives on the *node* (DCSS) the
  op weight is the target node's strongest op (see docs/strategies.md for why).

Subnet mode (S-mIoU) runs the chosen op alone on the same ``C // k`` channels, with the same bypass
and shuffle, and sums only the chosen inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from archgraph.core.choices import ArchParams, InputChoice, OpChoice
from archgraph.core.compile import CompiledNetwork
from archgraph.configtools import bounded
from archgraph.errors import ConfigError
from archgraph.core.registry import register_strategy
from archgraph.core.relaxation import Mixer, Relaxation, SoftmaxInputMix
from archgraph.strategies.base import CheckSettings, Scores, Strategy
from archgraph.strategies.darts_family import PaperArchParams, check_arch_params, family_warmup, paper_adam, warn_unread_shared_keys


@dataclass
class PCDARTSParams(PaperArchParams):
    """Options of PC-DARTS (the ``strategy`` config section when ``strategy.name: pc_darts``)."""

    k: int = bounded(4, 1)  # 1/k of a node's channels go through the op mixture; shuffle with k groups (1 = full DARTS)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's shuffle: channel ``g * (C/groups) + j`` moves to ``j * groups + g``."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class PartialShuffleMix(Mixer):
    """Op mixer: the first C/k channels through the alpha-weighted ops, the rest bypass; then shuffle."""

    def __init__(self, label: str, arch: ArchParams, relaxation: Relaxation, channels: int, k: int):
        super().__init__(label, arch, relaxation)
        self.k = k
        self.part = channels // k

    def forward(self, x: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
        part, rest = x[:, : self.part], x[:, self.part :]
        fixed = self.subnet_op()
        if fixed is not None:
            mixed = ops[fixed](part)
        else:
            w = torch.softmax(self.arch.op_logits(self.label), dim=-1)
            mixed = w[0] * ops[0](part)
            for i in range(1, len(ops)):
                mixed = mixed + w[i] * ops[i](part)
        if self.k == 1:
            return mixed
        return channel_shuffle(torch.cat([mixed, rest], dim=1), self.k)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, k={self.k}, channels_through_ops={self.part}"


class PCDARTSRelaxation(Relaxation):
    """Edge normalisation (softmax(beta) over every input) + partial channels with shuffle."""

    name = "pc_darts"

    def __init__(self, k: int):
        self.k = k

    def op_width(self, choice: OpChoice, channels: int) -> int:
        if channels % self.k:
            raise ConfigError(
                f"strategy.k={self.k} does not divide the {channels} channels of node {choice.node!r} (the channel shuffle needs equal groups); choose a k that divides every searchable node's width"
            )
        return channels // self.k

    def input_mixer(self, choice: InputChoice, arch: ArchParams) -> nn.Module:
        return SoftmaxInputMix(choice.label, arch, self)

    def op_mixer(self, choice: OpChoice, arch: ArchParams, channels: int) -> nn.Module:
        return PartialShuffleMix(choice.label, arch, self, channels, self.k)


@register_strategy("pc_darts", PCDARTSParams)
class PCDARTS(Strategy):
    """PC-DARTS: 1/k partial channels + channel shuffle, edge normalisation (Xu et al. 2020)."""

    name = "pc_darts"
    checks = CheckSettings(planted_options={"k": 2})  # 1/2 of the 4 channels through the ops, as dcnas (at 1/4 the label bypasses them)

    def __init__(self, graph, params: PCDARTSParams, search, seed: int = 0):
        if params.k < 1:
            raise ConfigError(f"strategy.k must be >= 1, got {params.k}; the paper uses 4")
        check_arch_params(params)
        super().__init__(graph, params, search, seed)
        warn_unread_shared_keys(self, params)

    def make_relaxation(self) -> PCDARTSRelaxation:
        return PCDARTSRelaxation(self.params.k)

    def arch_optimizer(self, net: CompiledNetwork) -> torch.optim.Optimizer | None:
        return paper_adam(net, self.params)

    def warmup_epochs(self) -> int:
        return family_warmup(self, self.params.warmup_fraction)

    def scores(self, net: CompiledNetwork) -> tuple[Scores, Scores]:
        """Op scores softmax(alpha); edge scores softmax(beta) x the strongest op weight of the target.

        The official genotype ranks an edge by max_op softmax(alpha_edge) * softmax(beta)_edge. Here the
        op choice sits on the node the edges flow into, so that factor is the target's max softmax(alpha)
        (1 when the target has no op choice): the same for all of a node's inputs, so the ranking is
        beta's, while the numbers the decoder records and the renderer draws are the paper's product.
        """
        ops, inputs = super().scores(net)
        if not inputs:
            return ops, inputs
        factor: dict[str, float] = {}
        for c in net.choices.inputs:
            op = net.choices.op_choice(c.node)
            f = max(ops[op.label]) if op is not None else 1.0
            factor[c.label] = min(factor.get(c.label, f), f)  # shared labels: one factor (they share beta)
        return ops, {label: [p * factor[label] for p in probs] for label, probs in inputs.items()}
