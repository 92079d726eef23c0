"""DCNAS: densely connected NAS with path-level and channel-level sampling.

Zhang, Xu, Mo, Tan, Yang, Wang, Ren. "DCNAS: Densely Connected Neural Architecture Search for
Semantic Segmentation", CVPR 2021 (arXiv:2003.11883).

- **Path-level sampling** (Eq. 5-6). Per node and step, ``n`` inputs are drawn without replacement
  from softmax(beta / tau); only their alignment branches run, blended with softmax(beta)
  renormalised over the drawn paths (the paper's "normalised blending weight"; tau shapes only the
  sampling, as DARTS and PC-DARTS put no temperature on a blend), so beta receives gradients through
  the weights of the drawn paths, undivided by tau. ``blend_temperature: true`` blends with
  softmax(beta_drawn / tau) instead (the earlier reading). ``tau`` anneals from ``tau_max`` to
  ``tau_min`` over the architecture epochs. ``n`` must be at least 2: the blend of one drawn path is
  the constant 1, which gives beta no gradient.
- **Channel-level sampling** (Eq. 7). Each mixture layer owns a random channel mask, drawn once from
  the search seed and stored as a buffer (so checkpoints carry it and a resumed search keeps it):
  ``channel_ratio`` of the channels go through the softmax(alpha)-weighted mix of candidate ops, the
  rest bypass unchanged. There is no edge normalisation (unlike PC-DARTS).
- Bi-level alternation (weights SGD on trainA, alpha/beta Adam on trainB) and the warm-up come from
  :class:`archgraph.strategies.base.Strategy`.

There is no public DCNAS code; the choices the paper leaves open (the ``tau`` schedule, ``n``, what
evaluation mode does) are documented and justified in docs/strategies.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from archgraph.core.choices import ArchParams, InputChoice, OpChoice
from archgraph.configtools import CheckedParams, bounded, one_of
from archgraph.errors import ConfigError
from archgraph.core.registry import register_strategy
from archgraph.core.relaxation import Mixer, Relaxation, host_copies, sum_branches
from archgraph.strategies.base import CheckSettings, Strategy, StrategyParams


PATHS_WHY = (
    "with one drawn path its blend weight is softmax over a single logit, the constant 1, so beta never gets a "
    "gradient and the input choices stay at their initial values; set strategy.paths >= 2, the default is 4"
)


@dataclass
class DCNASParams(StrategyParams, CheckedParams):
    """Options of DCNAS (the ``strategy`` config section when ``strategy.name: dcnas``); each field
    declares what it allows, checked when the options are built (:class:`CheckedParams`)."""

    section = "strategy"
    paths: int = bounded(4, 2, why=PATHS_WHY)  # n >= 2: inputs drawn per fusion node and step (all of them if a node has fewer)
    tau_max: float = bounded(5.0, 0, lo_open=True)  # temperature at the first architecture epoch (near-uniform sampling)
    tau_min: float = bounded(0.5, 0, lo_open=True)  # temperature at the last epoch (small but positive)
    tau_schedule: str = one_of("exponential", "linear", "cosine", "constant")  # exponential | linear | cosine | constant (tau_max)
    channel_ratio: float = bounded(0.25, 0, 1, lo_open=True)  # r: fraction of channels sent through the op mixture (1 = all)
    blend_temperature: bool = False  # blend the drawn paths with softmax(beta/tau) (divides beta's gradient by tau) instead of softmax(beta)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tau_min > self.tau_max:  # the one rule joining two fields: tau falls from tau_max to tau_min
            raise ConfigError(f"strategy.tau_min: {self.tau_min!r} is above strategy.tau_max={self.tau_max!r}; allowed: 0 < tau_min <= tau_max (the temperature falls from tau_max to tau_min)")


class PathSamplingMix(Mixer):
    """Input mixer of Eq. 5-6: draw n inputs from softmax(beta/tau), run only those, blend them with
    softmax(beta) renormalised over the drawn ones (softmax(beta/tau) with ``blend_temperature``)."""

    def __init__(self, label: str, arch: ArchParams, relaxation: "DCNASRelaxation", n: int, node: str | None = None):
        super().__init__(label, arch, relaxation)
        self.n = n
        self.node = label if node is None else node  # the key of this node's draw in a pass drawn up front

    def forward(self, inputs: Sequence[torch.Tensor], branches: Sequence[nn.Module]) -> torch.Tensor:
        picked_fixed = self.subnet_inputs()
        if picked_fixed is not None:
            return sum_branches(inputs, branches, picked_fixed)
        relax: DCNASRelaxation = self.relaxation
        n = min(self.n, len(inputs))
        picked = relax.drawn.get(self.node)  # drawn before the pass (live-subgraph execution) ...
        on_device = relax.drawn_on_device.get(self.node)  # ... and uploaded with the pass's others at once
        if picked is None:  # ... or here, when the network runs every node (prune_dead off)
            picked = relax.sample(self.arch.input_logits(self.label), n, self.training)
            relax.record(self.label, picked.tolist())
        idx = picked.tolist()  # a host tensor: no wait for the device
        # p[picked] / sum(p[picked]) == softmax over the drawn logits; computed that way, undrawn
        # paths get exactly zero gradient (no softmax-denominator round-off). tau is a sampling
        # temperature: dividing the blend's logits by it would divide beta's gradient by tau as well.
        drawn = self.arch.input_logits(self.label)[picked if on_device is None else on_device]
        w = torch.softmax(drawn / relax.tau if relax.params.blend_temperature else drawn, dim=-1)
        out = w[0] * branches[idx[0]](inputs[idx[0]])
        for j in range(1, len(idx)):
            out = out + w[j] * branches[idx[j]](inputs[idx[j]])
        return out

    def extra_repr(self) -> str:
        return f"label={self.label!r}, n={self.n}"


class PartialChannelMix(Mixer):
    """Op mixer of Eq. 7: a fixed random subset of channels through the alpha-weighted op mix."""

    def __init__(self, label: str, arch: ArchParams, relaxation: "DCNASRelaxation", channels: int, ratio: float, generator: torch.Generator):
        super().__init__(label, arch, relaxation)
        k = partial_width(channels, ratio)
        self.full = k == channels
        mask = torch.randperm(channels, generator=generator)[:k].sort().values
        self.register_buffer("channel_index", mask)  # saved in checkpoints: fixed for the whole search

    def forward(self, x: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
        fixed = self.subnet_op()
        if self.full:
            part = x
        else:
            part = x.index_select(1, self.channel_index)
        if fixed is not None:
            mixed = ops[fixed](part)
        else:
            w = torch.softmax(self.arch.op_logits(self.label), dim=-1)
            mixed = w[0] * ops[0](part)
            for i in range(1, len(ops)):
                mixed = mixed + w[i] * ops[i](part)
        if self.full:
            return mixed
        return x.index_copy(1, self.channel_index, mixed)  # the other channels bypass unchanged

    def extra_repr(self) -> str:
        return f"label={self.label!r}, channels={self.channel_index.numel()}"


def partial_width(channels: int, ratio: float) -> int:
    return max(1, int(round(channels * ratio)))


class DCNASRelaxation(Relaxation):
    name = "dcnas"

    def __init__(self, params: DCNASParams, seed: int):
        self.params = params
        self.tau = params.tau_max
        self.generator = torch.Generator().manual_seed(seed + 1)  # path sampling
        self.mask_generator = torch.Generator().manual_seed(seed + 2)  # channel masks, drawn at build time
        self.last_picks: dict[str, list[int]] = {}
        self.recording = False
        self.drawn: dict[str, torch.Tensor] = {}  # node -> picked indices of the pass drawn up front
        self.drawn_on_device: dict[str, torch.Tensor] = {}  # the same on alpha/beta's device (one upload per pass)

    def record(self, label: str, idx: list[int]) -> None:
        if self.recording:
            self.last_picks[label] = idx

    def sample(self, logits: torch.Tensor, n: int, training: bool) -> torch.Tensor:
        """Indices of the ``n`` paths a node with input logits ``logits`` (beta) runs: drawn without
        replacement from softmax(beta / tau) in training, the ``n`` most probable in evaluation.
        Drawn on the CPU, where the generator lives (a CUDA tensor cannot use a CPU generator);
        ``logits`` may be a host copy already (:meth:`draw_pass` copies a whole pass's at once)."""
        with torch.no_grad():
            probs = torch.softmax(logits.detach().float().cpu() / self.tau, dim=-1)
        if training:
            return torch.multinomial(probs, n, replacement=False, generator=self.generator)
        return torch.topk(probs, n).indices  # evaluation is deterministic

    def draw_pass(self, sequence: Sequence[InputChoice | OpChoice], arch: ArchParams, training: bool) -> dict[str, list[int]] | None:
        """Draw every node's paths for the coming pass, in the order the mixers would (op choices
        draw nothing: the channel masks are fixed), so the generator's stream is unchanged."""
        if self.subnet is not None:
            return None
        computed: dict[str, list[int]] = {}
        choices = [c for c in sequence if isinstance(c, InputChoice)]
        host = host_copies([arch.input_logits(c.label) for c in choices])  # one device-to-host copy per pass
        for choice, logits in zip(choices, host):
            picked = self.sample(logits, min(self.params.paths, len(choice.candidates)), training)
            self.drawn[choice.node] = picked
            computed[choice.node] = picked.tolist()
            self.record(choice.label, computed[choice.node])
        if choices:
            # Indexing a GPU tensor with CPU indices copies them with a blocking upload, node by node;
            # one non-blocking upload of the whole pass's draws instead
            device = arch.input_logits(choices[0].label).device
            picks = [self.drawn[c.node] for c in choices]
            uploaded = torch.cat(picks).to(device, non_blocking=True).split([p.numel() for p in picks])
            self.drawn_on_device = {c.node: u for c, u in zip(choices, uploaded)}
        return computed

    def end_pass(self) -> None:
        self.drawn, self.drawn_on_device = {}, {}

    def op_width(self, choice: OpChoice, channels: int) -> int:
        return partial_width(channels, self.params.channel_ratio)

    def input_mixer(self, choice: InputChoice, arch: ArchParams) -> nn.Module:
        return PathSamplingMix(choice.label, arch, self, self.params.paths, choice.node)

    def op_mixer(self, choice: OpChoice, arch: ArchParams, channels: int) -> nn.Module:
        return PartialChannelMix(choice.label, arch, self, channels, self.params.channel_ratio, self.mask_generator)


def temperature(schedule: str, tau_max: float, tau_min: float, progress: float) -> float:
    """tau at ``progress`` in [0, 1] of the architecture epochs."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "exponential":
        return tau_max * (tau_min / tau_max) ** progress
    if schedule == "linear":
        return tau_max + (tau_min - tau_max) * progress
    if schedule == "cosine":
        return tau_min + 0.5 * (tau_max - tau_min) * (1 + math.cos(math.pi * progress))
    if schedule == "constant":
        return tau_max
    raise ConfigError(f"strategy.tau_schedule must be exponential, linear, cosine or constant, got {schedule!r}")


@register_strategy("dcnas", DCNASParams)
class DCNAS(Strategy):
    """DCNAS: path sampling from softmax(beta/tau) + 1/4 partial channels (Zhang et al. 2021)."""

    name = "dcnas"
    # The planted graph has 3 inputs and 4 channels: n = 2 draws a subset (4 would draw all three);
    # r = 1/2, because at 1/4 one channel goes through the ops while three carry the label past
    # them, so no op is planted any more (measured: the right op in 2 of 5 seeds).
    checks = CheckSettings(planted_options={"paths": 2, "channel_ratio": 0.5})

    def make_relaxation(self) -> DCNASRelaxation:
        return DCNASRelaxation(self.params, self.seed)

    def search_step(self, net, batch_w, batch_a, w_opt, a_opt) -> dict[str, float]:
        """The base alternation, plus ``live_fraction``: the share of fusion nodes on a path to the
        head in the weight step's draw (the loop averages it per epoch into search.jsonl, and keeps
        the sum across a resume); it falls as beta sharpens."""
        out = super().search_step(net, batch_w, batch_a, w_opt, a_opt)
        plan = getattr(net, "live_plan", None)  # net may be a DDP / autocast wrapper forwarding attributes
        if plan is not None and getattr(net, "prune_dead", False):
            out["live_fraction"] = plan.fraction
        return out

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        super().on_epoch_start(epoch, epochs)
        self.relaxation.tau = self.current_tau()

    def current_tau(self) -> float:
        p = self.params
        arch_epochs = max(self.epochs - self.warmup_epochs(), 1)
        progress = (self.epoch - self.warmup_epochs()) / max(arch_epochs - 1, 1)
        return temperature(p.tau_schedule, p.tau_max, p.tau_min, progress)

    def log_state(self) -> dict[str, float]:
        return {"tau": float(self.relaxation.tau)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "tau": self.relaxation.tau, "generator": self.relaxation.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.relaxation.tau = float(state.get("tau", self.relaxation.tau))
        if "generator" in state:
            self.relaxation.generator.set_state(state["generator"])
