"""The one driver of the strategy protocol: every caller that makes a strategy search goes through it.

A strategy (:class:`strategies.base.Strategy`) supplies a relaxation, architecture parameters and
one search step; *something* must build each stage's supernet, the weight optimiser and its
schedule from the config, tell the strategy where it is (stage, epoch, step), and run its
end-of-search hook. That something used to be written by hand in the search loop, the checks of
:mod:`archgraph.testing`, the equal-time calibration and five benchmarks, with the optimiser's
settings copied (twice hard-coded) and ``begin_stage`` forgotten by every copy. Here it is once:

- :func:`weight_optimizer` / :func:`weight_schedule`: the supernet-weight optimiser (SGD with
  ``search.w_*``) and its cosine schedule; the only construction of them in the library;
- :class:`StrategyDriver`: ``begin_stage`` (the strategy's stage, the supernet on its device with
  the cost terms the config asks for, both optimisers, the multi-process wrapper), ``begin_epoch``,
  ``step`` (the step's hooks, the batches on the device, the loss scales of a multi-process step),
  ``end_epoch`` (the schedule) and ``finish`` (the end-of-search hook).

Distributed and mixed-precision wrapping are no-ops in one fp32 process, so the same driver serves a
multi-GPU search and a check on a 4-channel graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from archgraph.config import SearchConfig
from archgraph.data.transforms import IGNORE_INDEX
from archgraph.engine import distributed as D
from archgraph.errors import NonFiniteLoss

Batch = tuple[torch.Tensor, torch.Tensor]
FP32 = D.Precision(None, False)


def _scaled_lr(search: SearchConfig, lr_scale: float) -> float:
    """``search.w_lr * lr_scale``, computed as ``w_lr / (1 / lr_scale)``: a tenth is then ``w_lr / 10``
    to the last bit, as DARTS-PT's fine-tune has always computed it (``0.05 * 0.1`` is not ``0.05 / 10``
    in floating point); ``lr_scale=1`` gives ``w_lr`` itself."""
    return search.w_lr / (1.0 / lr_scale)


def weight_optimizer(params: Iterable[torch.nn.Parameter], search: SearchConfig, lr_scale: float = 1.0) -> torch.optim.SGD:
    """SGD over the supernet's weights with ``search.w_momentum`` and ``search.w_weight_decay`` at
    ``search.w_lr * lr_scale`` (DARTS-PT's fine-tune between decisions runs at a tenth)."""
    return torch.optim.SGD(params, lr=_scaled_lr(search, lr_scale), momentum=search.w_momentum, weight_decay=search.w_weight_decay)


def weight_schedule(w_opt: torch.optim.Optimizer, search: SearchConfig, steps: int, lr_scale: float = 1.0) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """The cosine decay of the weight learning rate over ``steps`` scheduler steps (a search's epochs)
    down to ``search.w_lr_min`` (or the scaled start, when that is lower)."""
    eta_min = min(search.w_lr_min, _scaled_lr(search, lr_scale)) if lr_scale != 1.0 else search.w_lr_min
    return torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=max(steps, 1), eta_min=eta_min)


def attach_cost_terms(strategy: Any, search: SearchConfig, crop: tuple[int, int] | None, device: torch.device | str = "cpu", table_out: Path | None = None) -> None:
    """Give ``strategy`` the cost terms of its current graph that ``search`` asks for: the FLOPs table
    (``search.flops_weight``) and the budget every strategy and selector honours
    (``search.cost_limit``; docs/costs.md, "Budgets").

    A latency limit without ``search.cost_table`` needs a table measured on this device; ``table_out``
    is where the search's run folder keeps it (``make_budget``'s ``keep``), so a resumed search and
    ``archgraph select`` predict with the numbers the search started with."""
    if search.flops_weight > 0 or search.cost_limit:
        if crop is None:
            raise ValueError("attach_cost_terms: search.flops_weight / search.cost_limit need the training crop (crop=...)")
    if search.flops_weight > 0:
        from archgraph.core.costs import cost_table

        strategy.costs = cost_table(strategy.graph, tuple(crop))
    if search.cost_limit:
        from archgraph.core.costbudget import make_budget

        strategy.budget = make_budget(strategy.graph, search.cost_limit, crop, device, search.cost_table, keep=table_out if D.is_main() else None)


def _undo_point(stage: "StageParts") -> Callable[[], None]:
    """A copy of what a search step may change (the network's parameters and buffers, both
    optimisers' states) and the function that puts it back. Taken only when non-finite losses are
    skipped: it costs one copy of the supernet's state per step."""
    import copy

    net_state = {k: v.detach().clone() for k, v in stage.net.state_dict().items()}
    opts = [o for o in (stage.w_opt, stage.a_opt) if o is not None]
    opt_states = [copy.deepcopy(o.state_dict()) for o in opts]

    def undo() -> None:
        stage.net.load_state_dict(net_state)
        for o, state in zip(opts, opt_states):
            o.load_state_dict(state)
        for p in stage.net.parameters():
            p.grad = None

    return undo


@dataclass
class StageParts:
    """One stage's supernet, its multi-process/autocast wrapper and optimisers (P-DARTS has three stages)."""

    index: int
    net: Any  # CompiledNetwork
    step_net: Any  # net itself in one fp32 process, else its ParallelNetwork wrapper
    w_opt: torch.optim.Optimizer
    sched: Any
    a_opt: torch.optim.Optimizer | None
    epochs: int
    steps: int  # steps per epoch


class StrategyDriver:
    """Runs a strategy through its protocol on one device (see the module docstring).

    ``crop``: the training crop, needed only for the cost terms (``search.flops_weight``,
    ``search.cost_limit``); ``steps``: steps per epoch (the step hooks are told it).
    """

    def __init__(
        self,
        strategy: Any,
        search: SearchConfig,
        *,
        device: torch.device | str = "cpu",
        precision: D.Precision = FP32,
        crop: tuple[int, int] | None = None,
        steps: int = 1,
        table_out: Path | None = None,
    ):
        self.table_out = table_out  # where a latency table measured for the budget is kept (the run folder's)
        self.strategy = strategy
        self.search = search
        self.device = torch.device(device)
        self.precision = precision
        self.crop = crop
        self.steps = steps

    # ------------------------------------------------------------------ stages

    def begin_stage(self, index: int, previous: Any = None, *, build_seed: int | None = None) -> StageParts:
        """The strategy's stage ``index`` (its graph from the previous stage's supernet, for progressive
        strategies), the supernet built on the device with the cost terms the config asks for, and its
        optimisers. ``build_seed``: torch's seed set just before the supernet's weights are drawn (the
        checks' reproducible builds; a search seeds once at its start instead)."""
        strategy, search = self.strategy, self.search
        strategy.begin_stage(index, previous)
        if build_seed is not None:
            torch.manual_seed(build_seed)
        net = D.sync_batchnorm(strategy.build_supernet().to(self.device), self.device, search.sync_bn)
        self._attach_costs()
        epochs = strategy.stage_epochs(index)
        w_opt = weight_optimizer(net.weight_parameters(), search)
        sched = weight_schedule(w_opt, search, epochs)
        # alpha/beta stay out of DDP: their gradients are averaged right before the arch step
        # (strategies such as ProxylessNAS write them outside autograd); see docs/distributed.md.
        a_opt = D.average_gradients_before_step(strategy.arch_optimizer(net))
        arch_names = [f"arch.{name}" for name, _ in net.arch.named_parameters()] if net.arch is not None else []
        step_net = D.parallelize(net, self.device, self.precision, find_unused=True, broadcast_buffers=not search.sync_bn, ignore=arch_names)
        return StageParts(index, net, step_net, w_opt, sched, a_opt, epochs, self.steps)

    def _attach_costs(self) -> None:
        """The cost terms of this stage's graph (:func:`attach_cost_terms`)."""
        attach_cost_terms(self.strategy, self.search, self.crop, self.device, self.table_out)

    def stages(self) -> range:
        return range(self.strategy.num_stages())

    # ------------------------------------------------------------------ epochs and steps

    def begin_epoch(self, stage: StageParts, epoch: int) -> None:
        self.strategy.on_epoch_start(epoch, stage.epochs)

    def step(self, stage: StageParts, step: int, batch_w: Batch, batch_a: Batch) -> dict[str, float]:
        """One search step: the step hook (``step`` counted from the stage's start), the batches on the
        device (non-blocking: pinned batches overlap the copy with compute), and the strategy's step.

        The losses come back weighted for averaging over ranks (each rank's labelled-pixel share of the
        global batch), so their mean over the ranks is the global batch's loss; in one process they are
        the strategy's own numbers. A :class:`~archgraph.errors.NonFiniteLoss` passes through: what to
        do about it is the caller's policy. Under ``search.on_nonfinite: skip`` the step is undone
        first (weights, BN statistics, alpha/beta and both optimisers' states as they were before it):
        a step makes two updates, and the one that ran before the non-finite loss (the architecture
        step of the DARTS family, ProxylessNAS's weight step) would otherwise stay."""
        self.strategy.on_step_start(step, stage.steps)
        batch_w = tuple(t.to(self.device, non_blocking=True) for t in batch_w)
        batch_a = tuple(t.to(self.device, non_blocking=True) for t in batch_a)
        scales = None
        if stage.step_net is not stage.net:  # the mean over the global batch's labelled pixels (distributed.py)
            scales = D.global_mean_scales([batch_w[1], batch_a[1]], IGNORE_INDEX)
            stage.step_net.set_loss_scales([(batch_w[0], scales[0]), (batch_a[0], scales[1])])
        undo = _undo_point(stage) if self.search.on_nonfinite == "skip" else None
        try:
            losses = self.strategy.search_step(stage.step_net, batch_w, batch_a, stage.w_opt, stage.a_opt)
        except NonFiniteLoss:
            if undo is not None:
                undo()
            raise
        if scales is not None and D.world_size() > 1:
            losses = {k: v * scales[1 if k.startswith("arch_") else 0] for k, v in losses.items()}
        return losses

    def end_epoch(self, stage: StageParts) -> None:
        stage.sched.step()

    # ------------------------------------------------------------------ the end

    def finish(self, net: Any, score: Callable[..., float], out: Path | None, *, progress: bool | None = None) -> bool:
        """The strategy's end-of-search hook (SPOS's evolution picks its architecture here) with the
        scorer of candidate subnets; whether it may draw a progress bar. True when it changed the
        architecture the epochs derived."""
        self.strategy.progress = progress
        return bool(self.strategy.on_search_end(net, score, out))
