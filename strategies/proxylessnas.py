"""ProxylessNAS: path binarisation with binary gates and BinaryConnect-style architecture gradients.

Cai, Zhu, Han. "ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware",
ICLR 2019 (arXiv:1812.00332); official code: mit-han-lab/proxylessnas, ``search/modules/mix_op.py``
(``MixedEdge``) and ``search/nas_manager.py`` (``gradient_step``, ``add_regularization_loss``).

- **Weight step**: every choice is binarised by sampling from softmax(alpha): one op per op choice
  runs (the memory of one path), ``k`` inputs (drawn without replacement from softmax(beta)) per input
  choice are aligned and summed, as in the derived network.
- **Architecture step** (``two`` mode, the default here): two candidates are drawn without
  replacement, renormalised over themselves, one of them is made active by sampling from the
  renormalised pair; both run, the inactive one detached. Binary gates g (1 for active, 0 otherwise)
  multiply the outputs, so dL/dg_j = <dL/dout, out_j>, and alpha gets the BinaryConnect estimate
  dL/dalpha_i = sum_j dL/dg_j p_j (delta_ij - p_i) over the pair. After the Adam step the two touched
  logits are shifted by one common offset so that the sum of their exponentials is unchanged: the
  untouched candidates keep their probabilities. ``full`` mode runs every candidate (the gradient
  the official default ``full_v2`` computes, without its recompute-in-backward memory trick).
- **Input choices** get the same treatment, generalised to ``k``-of-``n``: a weight step samples ``k``
  active inputs; an architecture step draws ``2k`` involved inputs ("two" per kept input), picks ``k``
  active among them from the renormalised probabilities, gates them and applies the same estimate and
  rescaling to beta.
- **Schedule**: one architecture step (Adam, betas (0, 0.999), no weight decay, as the official
  script; lr 0.01 instead of its 1e-3, which was set for tens of thousands of architecture steps: see
  docs/strategies.md) after every ``arch_every`` = 5 weight steps, after the loop's weight-only
  warm-up epochs (``search.warmup_epochs``). The shared ``search.arch_*`` keys are not read (setting
  one warns). The supernet keeps affine batch norm in its candidates, as the official one does.
  Under an equalised ``search.budget`` (equal-steps, equal-time) it takes one architecture step per
  weight step instead, as every other gradient strategy (``strategy.arch_every`` is then not read).
- **Hardware-aware loss** (optional): the expected cost under the sampled probabilities (FLOPs or
  latency of every candidate measured once, :class:`archgraph.strategies.evolution.ArchCost`), as
  ``mul#log``: alpha * CE * (log(E) / log(target))^beta or ``add#linear``: CE + lambda (E - target) / target.
  With a budget (``search.cost_limit``) the same loss runs on the shared cost model
  (:mod:`archgraph.core.costbudget`) with the limit as its target and E the expected cost under
  softmax(alpha) and the inputs' use probabilities (the official ``expected_latency`` reads the full
  softmax too); ``hw_loss=none`` then means the official default ``mul#log``, or ``add#linear``
  when the limit is at most 1 in its unit (the log ratio needs costs above 1).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import networkx as nx
import torch
from torch import nn

from archgraph.core.choices import ArchParams, InputChoice, OpChoice
from archgraph.core.compile import CompiledNetwork
from archgraph.errors import ConfigError, NonFiniteLoss
from archgraph.core.registry import register_strategy
from archgraph.core.relaxation import Mixer, Relaxation, host_copies, sum_branches
from archgraph.strategies.base import CheckSettings, Strategy, StrategyParams, warn_unread_search_keys
from archgraph.strategies.evolution import COST_METRICS, ArchCost

MODES = ("two", "full")
HW_LOSSES = ("none", "mul#log", "add#linear")


@dataclass
class ProxylessParams(StrategyParams):
    """Options of ProxylessNAS (the ``strategy`` section when ``strategy.name: proxylessnas``).

    Defaults are the official search script's (imagenet_arch_search.py), except ``mode`` (the brief
    asks for ``two``; the script's default ``full_v2`` has the gradient of ``full``) and ``arch_lr``
    (0.01 instead of 1e-3: this toolkit's budgets make hundreds, not tens of thousands, of
    architecture steps; ``arch_lr=0.001`` restores it)."""

    mode: str = "two"  # two | full: candidates involved in an architecture step
    arch_every: int = 5  # one architecture step after every N weight steps (grad_update_arch_param_every)
    arch_lr: float = 1e-2  # official 1e-3 (see the class docstring)
    arch_betas: list[float] = field(default_factory=lambda: [0.0, 0.999])
    arch_eps: float = 1e-8
    arch_weight_decay: float = 0.0
    input_paths: int = 0  # active inputs per input choice (0 = the node's keep_inputs k)
    arch_inputs: int = 0  # involved inputs in an architecture step (0 = 2 x active, "two" mode)
    hw_loss: str = "none"  # none | mul#log | add#linear
    hw_metric: str = "flops"  # flops | latency (milliseconds on this machine)
    hw_target: float = 0.0  # reference cost (0 = the expected cost under uniform choices)
    hw_alpha: float = 0.2  # mul#log
    hw_beta: float = 0.3  # mul#log
    hw_lambda: float = 0.1  # add#linear


@dataclass
class Binarised:
    """One choice label's binarisation for the current forward pass."""

    active: list[int]  # candidates with gate 1 (their weights get gradients)
    involved: list[int]  # active + inactive candidates that run (arch step); == active otherwise
    gates: torch.Tensor | None = None  # arch step: leaf tensor, 1 at active, 0 elsewhere
    probs: torch.Tensor | None = None  # arch step: renormalised probabilities over ``involved``, scattered to n (differentiable)
    old_logits: torch.Tensor | None = None  # logits of ``involved`` before the Adam step (for the rescaling), on their device
    index: torch.Tensor | None = None  # arch step: ``involved`` as an index tensor on the logits' device


class ProxylessRelaxation(Relaxation):
    """Binarises every choice once per forward pass; ``mode`` says which kind of step is running.

    The draws happen on the host (the CPU generator keeps them identical on every device). A pass
    drawn up front (:meth:`draw_pass`) copies all of its alpha/beta to the host at once and uploads
    the architecture step's index lists at once, so a GPU step does not wait once per choice
    (tests/test_sync_points.py); a mixer that draws alone (``prune_dead`` off) copies its own."""

    name = "proxylessnas"

    def __init__(self, params: ProxylessParams, seed: int):
        self.params = params
        self.step_kind = "weight"  # weight | arch
        self.generator = torch.Generator().manual_seed(seed + 4)
        self.ops: dict[str, Binarised] = {}
        self.inputs: dict[str, Binarised] = {}

    def begin_pass(self) -> None:
        self.reset()  # binarise afresh per forward pass

    def reset(self) -> None:
        """Forget the current binarisation (at the start of every pass: one draw per forward)."""
        if self.subnet is None:
            self.ops, self.inputs = {}, {}

    def _plan(self, host: torch.Tensor, active: int, involved: int) -> tuple[list[int], list[int]]:
        """The host-side draws of one choice from its logits' host copy: (active, involved)."""
        probs = torch.softmax(host, -1)
        if self.step_kind == "weight":
            picked = torch.multinomial(probs, active, replacement=False, generator=self.generator).tolist()
            return picked, picked
        if self.params.mode == "full":
            idx = list(range(probs.numel()))
        else:
            idx = torch.multinomial(probs, involved, replacement=False, generator=self.generator).tolist()
        which = torch.multinomial(torch.softmax(host[idx], -1), active, replacement=False, generator=self.generator).tolist()
        return [idx[j] for j in which], idx

    @staticmethod
    def _involved(act: list[int], idx: list[int]) -> list[int]:
        return act + [i for i in idx if i not in act]

    def _binarise(self, logits: torch.Tensor, act: list[int], idx: list[int], uploaded: torch.Tensor | None = None) -> Binarised:
        """The choice's gates and differentiable probabilities; ``uploaded``: ``idx + involved``
        already on the logits' device (one upload for the whole pass), else uploaded here."""
        if self.step_kind == "weight":
            return Binarised(act, act)
        involved = self._involved(act, idx)
        if uploaded is None:
            uploaded = torch.tensor(idx + involved).to(logits.device, non_blocking=True)
        index, involved_index = uploaded[: len(idx)], uploaded[len(idx) :]
        act_index = involved_index[: len(act)]  # involved starts with the active ones
        n = logits.numel()
        slice_p = torch.softmax(logits.index_select(0, index), -1)  # differentiable: the hardware loss backpropagates through it
        gates = torch.zeros(n, dtype=logits.dtype, device=logits.device).index_fill_(0, act_index, 1.0).requires_grad_(True)
        full = torch.zeros(n, dtype=slice_p.dtype, device=slice_p.device).index_put((index,), slice_p)
        return Binarised(act, involved, gates, full, index=involved_index)

    def _draw(self, logits: torch.Tensor, active: int, involved: int) -> Binarised:
        act, idx = self._plan(logits.detach().float().cpu(), active, involved)
        return self._binarise(logits, act, idx)

    @staticmethod
    def _sizes(n: int, keep: int, params: ProxylessParams) -> tuple[int, int]:
        active = min(params.input_paths or keep, n)
        return active, max(min(params.arch_inputs or 2 * active, n), active)

    def op_sample(self, label: str, logits: torch.Tensor) -> Binarised:
        if label not in self.ops:
            self.ops[label] = self._draw(logits, 1, min(2, logits.numel()))
        return self.ops[label]

    def input_sample(self, label: str, logits: torch.Tensor, keep: int) -> Binarised:
        if label not in self.inputs:
            self.inputs[label] = self._draw(logits, *self._sizes(logits.numel(), keep, self.params))
        return self.inputs[label]

    def draw_pass(self, sequence: Sequence[InputChoice | OpChoice], arch: ArchParams, training: bool) -> dict[str, list[int]] | None:
        """Binarise every choice of the coming pass now, in the order the mixers would (a node's
        input choice before its op choice): the same draws, so the mixers find them made. Returns
        the inputs that run: the active ones (weight step), active + inactive (architecture step),
        the top-k (evaluation)."""
        if self.subnet is not None:
            return None
        if not training:
            return {c.node: torch.topk(arch.input_logits(c.label).detach(), min(c.keep, arch.input_logits(c.label).numel())).indices.tolist() for c in sequence if isinstance(c, InputChoice)}
        # each label once, in the mixers' order (shared labels are binarised by their first choice)
        todo: dict[tuple[str, str], tuple[torch.Tensor, int, int]] = {}
        for c in sequence:
            if isinstance(c, InputChoice):
                logits = arch.input_logits(c.label)
                key = ("inputs", c.label)
                if c.label not in self.inputs and key not in todo:
                    todo[key] = (logits, *self._sizes(logits.numel(), c.keep, self.params))
            else:
                logits = arch.op_logits(c.label)
                key = ("ops", c.label)
                if c.label not in self.ops and key not in todo:
                    todo[key] = (logits, 1, min(2, logits.numel()))
        hosts = host_copies([t for t, _, _ in todo.values()])  # one copy to the host for the pass
        plans = [self._plan(h, a, i) for h, (_, a, i) in zip(hosts, todo.values())]
        uploads: list[torch.Tensor | None] = [None] * len(plans)
        if self.step_kind == "arch" and plans:  # one upload of every choice's index lists
            device = next(iter(todo.values()))[0].device
            flat = torch.tensor([j for act, idx in plans for j in idx + self._involved(act, idx)]).to(device, non_blocking=True)
            uploads = list(flat.split([2 * len(idx) for _, idx in plans]))
        for (kind, label), (logits, _, _), (act, idx), up in zip(todo, todo.values(), plans, uploads):
            getattr(self, kind)[label] = self._binarise(logits, act, idx, up)
        return {c.node: list(self.inputs[c.label].involved) for c in sequence if isinstance(c, InputChoice)}

    # ------------------------------------------------------------ architecture gradient and rescaling

    def _pairs(self, arch: ArchParams):
        for label, b in self.ops.items():
            yield arch.alpha[label], b
        for label, b in self.inputs.items():
            yield arch.beta[label], b

    @torch.no_grad()
    def set_arch_grads(self, arch: ArchParams) -> None:
        """BinaryConnect: dL/dalpha_i += sum_j dL/dg_j p_j (delta_ij - p_i), p renormalised over the
        involved candidates (all of them in ``full`` mode); added to any gradient autograd left there
        (the hardware loss). Records the involved logits for :meth:`rescale`."""
        for logits, b in self._pairs(arch):
            if b.gates is None or b.gates.grad is None or b.index is None:
                continue
            idx = b.index
            p = torch.softmax(logits[idx], -1)
            g = b.gates.grad[idx].to(p.dtype)
            pg = p * g
            grad = pg - p * pg.sum()  # sum_j g_j p_j (delta_ij - p_i)
            if logits.grad is None:
                logits.grad = torch.zeros_like(logits)
            logits.grad.index_add_(0, idx, grad)
            b.old_logits = logits[idx].clone()  # stays on the device: no wait per choice

    @torch.no_grad()
    def rescale(self, arch: ArchParams) -> None:
        """``two`` mode: shift the involved logits by log(sum exp(new) / sum exp(old)) so that the
        candidates not involved keep exactly their probabilities (the paper's rescaling)."""
        if self.params.mode != "two":
            return
        for logits, b in self._pairs(arch):
            if b.old_logits is None or b.index is None:
                continue
            idx = b.index
            new = logits[idx].double()
            old = b.old_logits.double()
            offset = torch.logsumexp(new, 0) - torch.logsumexp(old, 0)
            logits[idx] = (new - offset).to(logits.dtype)

    # ------------------------------------------------------------ mixers

    def input_mixer(self, choice: InputChoice, arch: ArchParams) -> nn.Module:
        return BinaryGateInputs(choice.label, arch, self, choice.keep)

    def op_mixer(self, choice: OpChoice, arch: ArchParams, channels: int) -> nn.Module:
        return BinaryGateOp(choice.label, arch, self)


def _gated(outputs: Sequence[torch.Tensor], b: Binarised) -> torch.Tensor:
    """sum_j g_j out_j with inactive outputs detached (mix_op.py's MixedEdge.forward in two/full mode)."""
    assert b.gates is not None
    total = None
    for i, y in zip(b.involved, outputs):
        term = b.gates[i] * (y if i in b.active else y.detach())
        total = term if total is None else total + term
    assert total is not None
    return total


class BinaryGateOp(Mixer):
    """One sampled op (weight step), the gated involved ops (architecture step), argmax in eval mode."""

    def forward(self, x: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
        fixed = self.subnet_op()
        if fixed is not None:
            return ops[fixed](x)
        logits = self.arch.op_logits(self.label)
        if not self.training:
            return ops[int(torch.argmax(logits))](x)
        b = self.relaxation.op_sample(self.label, logits)
        if b.gates is None:
            return ops[b.active[0]](x)
        return _gated([ops[i](x) for i in b.involved], b)


class BinaryGateInputs(Mixer):
    """k sampled inputs summed (weight step), the gated involved inputs (architecture step), top-k in eval."""

    def __init__(self, label: str, arch: ArchParams, relaxation: ProxylessRelaxation, keep: int):
        super().__init__(label, arch, relaxation)
        self.keep = keep

    def forward(self, inputs: Sequence[torch.Tensor], branches: Sequence[nn.Module]) -> torch.Tensor:
        fixed = self.subnet_inputs()
        if fixed is not None:
            return sum_branches(inputs, branches, fixed)
        logits = self.arch.input_logits(self.label)
        if not self.training:
            top = torch.topk(logits.detach(), min(self.keep, len(inputs))).indices.sort().values.tolist()
            return sum_branches(inputs, branches, top)
        b = self.relaxation.input_sample(self.label, logits, self.keep)
        if b.gates is None:
            return sum_branches(inputs, branches, b.active)
        return _gated([branches[i](inputs[i]) for i in b.involved], b)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, keep={self.keep}"


@register_strategy("proxylessnas", ProxylessParams)
class ProxylessNAS(Strategy):
    """ProxylessNAS: binarised paths, BinaryConnect gate gradients, two-path architecture steps (Cai et al. 2019)."""

    name = "proxylessnas"
    default_affine_bn = True  # the official supernet's candidate blocks use nn.BatchNorm2d (affine)
    # evaluation mode runs the argmax op and the top-k inputs; the planted run takes an arch step every step
    checks = CheckSettings(eval_is_derived=True, planted_options={"arch_every": 1}, planted_steps=32)
    budget_rule = "hardware_loss"  # search.cost_limit is the target of its own hardware loss
    # The planted run: one architecture step per weight step (the default is one per 5), and twice
    # the steps: an architecture step trains two sampled candidates, a weight step one path (input 3/5 at 16).

    def __init__(self, graph: nx.DiGraph, params: ProxylessParams, search, seed: int = 0):
        if params.mode not in MODES:
            raise ConfigError(f"strategy.mode must be one of {MODES}, got {params.mode!r}")
        if params.arch_every < 1:
            raise ConfigError(f"strategy.arch_every must be >= 1, got {params.arch_every}")
        if params.hw_loss not in HW_LOSSES:
            raise ConfigError(f"strategy.hw_loss must be one of {HW_LOSSES}, got {params.hw_loss!r}")
        if params.hw_metric not in COST_METRICS:
            raise ConfigError(f"strategy.hw_metric must be one of {COST_METRICS}, got {params.hw_metric!r}")
        if len(params.arch_betas) != 2:
            raise ConfigError(f"strategy.arch_betas must be two numbers, e.g. [0, 0.999], got {params.arch_betas!r}")
        if params.input_paths < 0 or params.arch_inputs < 0 or params.hw_target < 0:
            raise ConfigError("strategy.input_paths, arch_inputs and hw_target must be >= 0 (0 = default)")
        self.global_step = 0
        self.cost: ArchCost | None = None
        self.target: float | None = None
        self._arch_log: dict[str, float] = {}
        super().__init__(graph, params, search, seed)
        if self.equalised() and params.arch_every != ProxylessParams.arch_every:
            warnings.warn(
                f"proxylessnas does not read strategy.arch_every (set to {params.arch_every}) under search.budget={search.budget}; "
                "it takes one architecture step per weight step, as every other strategy",
                UserWarning,
                stacklevel=2,
            )
        warn_unread_search_keys(
            self.name,
            search,
            {
                "arch_lr": f"strategy.arch_lr={params.arch_lr}",
                "arch_weight_decay": f"strategy.arch_weight_decay={params.arch_weight_decay}",
                "arch_betas": f"strategy.arch_betas={list(params.arch_betas)}",
            },
        )

    def make_relaxation(self) -> ProxylessRelaxation:
        return ProxylessRelaxation(self.params, self.seed)

    def arch_optimizer(self, net: CompiledNetwork) -> torch.optim.Optimizer | None:
        params = list(net.arch_parameters())
        if not params:
            return None
        p = self.params
        return torch.optim.Adam(params, lr=p.arch_lr, betas=(float(p.arch_betas[0]), float(p.arch_betas[1])), eps=p.arch_eps, weight_decay=p.arch_weight_decay)

    # ------------------------------------------------------------------ schedule

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        super().on_epoch_start(epoch, epochs)
        self._arch_log = {}

    def on_step_start(self, step: int, steps_per_epoch: int) -> None:
        self.global_step = step

    def arch_every(self) -> int:
        """Weight steps per architecture step: ``strategy.arch_every`` (the paper's 5) under
        ``search.budget=official``; 1 under an equalised budget, as every other gradient strategy."""
        return 1 if self.equalised() else self.params.arch_every

    def planned_arch_steps(self, stage: int, steps_per_epoch: int) -> int | None:
        """One architecture step after every ``arch_every`` steps of the active epochs."""
        first, end, every = self.warmup_epochs() * steps_per_epoch, self.stage_epochs(stage) * steps_per_epoch, self.arch_every()
        return sum((g + 1) % every == 0 for g in range(first, end))

    def arch_schedule_note(self) -> str:
        return f"; strategy.arch_every={self.arch_every()} needs at least that many steps per active epoch"

    def is_arch_step(self) -> bool:
        return self.arch_active() and (self.global_step + 1) % self.arch_every() == 0

    def search_step(self, net, batch_w, batch_a, w_opt, a_opt) -> dict[str, float]:
        out = self.weight_step(net, batch_w, w_opt)
        if a_opt is not None and self.is_arch_step():
            parts = self.arch_step(net, batch_a, a_opt)
            for k, v in parts.items():
                self._arch_log[k] = self._arch_log.get(k, 0.0) + v
            self._arch_log["steps"] = self._arch_log.get("steps", 0.0) + 1
        return out

    def weight_step(self, net: CompiledNetwork, batch, w_opt: torch.optim.Optimizer) -> dict[str, float]:
        """One sampled path per forward; SGD on the weights of that path only."""
        self.relaxation.step_kind = "weight"
        return super().weight_step(net, batch, w_opt)

    def arch_step(self, net: CompiledNetwork, batch, a_opt: torch.optim.Optimizer) -> dict[str, float]:
        """nas_manager.gradient_step: binarise (two mode), forward, loss (+ hardware term), backward,
        BinaryConnect gradients on alpha/beta, Adam, rescale. Weight gradients are discarded."""
        relax = self.relaxation
        relax.step_kind = "arch"
        try:
            a_opt.zero_grad(set_to_none=True)
            x, y = batch
            logits = net(x)
            loss, parts = self.loss(net, logits, y, with_regularisers=True)
            if self.params.hw_loss != "none" or self.budget is not None:
                loss, extra = self.hardware_loss(net, loss, tuple(x.shape[-2:]))
                parts.update(extra)
                if not torch.isfinite(loss.detach()):  # the hardware term comes after Strategy.loss's own check
                    raise NonFiniteLoss("architecture loss")
            loss.backward()
            relax.set_arch_grads(net.arch)
            a_opt.step()
            relax.rescale(net.arch)
        finally:
            relax.step_kind = "weight"
            for p in net.weight_parameters():
                p.grad = None  # the architecture step must not leak gradients into the next weight step
        return {"arch_loss": float(loss.detach()), **{f"arch_{k}": v for k, v in parts.items()}}

    # ------------------------------------------------------------------ hardware-aware loss

    def prepare_costs(self, image_hw: tuple[int, int]) -> None:
        if self.cost is None:
            self.cost = ArchCost(self.graph, image_hw, self.params.hw_metric)
            self.target = self.params.hw_target or float(self._scale(self.cost.expected({}, {})))

    def _scale(self, value: torch.Tensor) -> torch.Tensor:
        return value * 1e3 if self.params.hw_metric == "latency" else value  # latency in milliseconds

    def hardware_loss(self, net: CompiledNetwork, loss: torch.Tensor, image_hw: tuple[int, int]) -> tuple[torch.Tensor, dict[str, float]]:
        """add_regularization_loss of the official code, with E the expected cost under the
        renormalised probabilities of the candidates this step involves (with a budget: the shared
        cost model, the limit as the target; module docstring)."""
        if self.budget is not None:
            return self._budget_loss(net, loss)
        self.prepare_costs(image_hw)
        assert self.cost is not None and self.target is not None
        relax = self.relaxation
        op_p = {l: b.probs for l, b in relax.ops.items() if b.probs is not None}
        in_p = {l: b.probs for l, b in relax.inputs.items() if b.probs is not None}
        expected = self._scale(self.cost.expected(op_p, in_p)).to(loss.dtype)
        unit = "ms" if self.params.hw_metric == "latency" else "FLOPs"
        return self._hw_term(loss, expected, self.target, self.params.hw_loss, unit), {"expected_cost": float(expected.detach())}

    def budget_form(self) -> str:
        """The hardware loss under a budget: ``strategy.hw_loss``, or (none) the official ``mul#log``
        unless the limit is at most 1 in its unit, where only ``add#linear`` is defined."""
        assert self.budget is not None
        if self.params.hw_loss != "none":
            return self.params.hw_loss
        return "mul#log" if self.budget.value > 1 else "add#linear"

    def _budget_loss(self, net: CompiledNetwork, loss: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        from archgraph.core.costmodel import expected_cost

        assert self.budget is not None
        expected = expected_cost(net, self.budget.model, self.input_use_probs(net)).to(loss.dtype)
        total = self._hw_term(loss, expected, self.budget.value, self.budget_form(), self.budget.unit)
        return total, {"expected_cost": float(expected.detach())}

    def _hw_term(self, loss: torch.Tensor, expected: torch.Tensor, target: float, form: str, unit: str) -> torch.Tensor:
        """``mul#log``: alpha CE (log E / log T)^beta; ``add#linear``: CE + lambda (E - T) / T."""
        p = self.params
        if form == "mul#log":
            if target <= 1 or float(expected.detach()) <= 1:
                raise ConfigError(
                    f"strategy.hw_loss=mul#log needs costs above 1 {unit} (log ratio); got target {target:.4g}, expected {float(expected.detach()):.4g}. Use hw_loss=add#linear or another hw_metric"
                )
            return p.hw_alpha * loss * (torch.log(expected) / math.log(target)) ** p.hw_beta
        return loss + p.hw_lambda * (expected - target) / target

    def log_state(self) -> dict[str, float]:
        steps = self._arch_log.get("steps", 0.0)
        out = {"arch_steps": steps}
        for k, v in self._arch_log.items():
            if k != "steps" and steps:
                out[k] = v / steps
        return out

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {**super().state_dict(), "generator": self.relaxation.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.relaxation.generator.set_state(state["generator"])
