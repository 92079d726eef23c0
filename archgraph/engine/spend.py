"""What a search spent: weight steps, architecture steps, images, forward FLOPs, wall time.

Strategies differ in what one "epoch" costs (P-DARTS runs three stages, ProxylessNAS takes one
architecture step per five weight steps, SPOS scores a thousand candidates at the end), so a
comparison must show what each run really spent, counted as it ran rather than derived from the
config. :class:`SpendMeter` watches the supernet and the optimisers through hooks:

- ``weight_steps`` / ``arch_steps``: steps the weight and architecture optimisers actually took
  (a batch skipped for a non-finite loss takes none);
- ``images``: images that went through the supernet in a forward pass, both batches of a step
  (trainB's only when an architecture step used it), plus the BN-recalibration and scoring passes of
  end-of-search selection (SPOS's evolution);
- ``forward_gflop``: forward FLOPs of the convolutions and linear layers that ran, counted per call
  from their weight and output shapes exactly as ``torch.utils.flop_counter`` counts them (2 per
  multiply-add; normalisations, activations, pooling and resizing count nothing there either). Only
  modules a pass called are counted, so path sampling, binarised paths and pruned live subgraphs cost
  what they computed; backward passes are not counted (about twice the forward for the weights they reach);
- ``wall_seconds``: wall time of the search, summed over its resumed segments.

The S-mIoU report on ``data.val`` is not a cost of the search: the loop runs it inside
:meth:`SpendMeter.paused`. ``step_seconds`` (the clock of ``search.budget=equal-time``) counts the
search steps alone. Both clocks are :class:`archgraph.core.measure.Timer` without a device: a
synchronize per step would cost a GPU the overlap the budget is spent on, and the few host reads
every search step already makes (tests/test_sync_points.py) keep the clock within about a step of
the GPU's own progress.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from archgraph.core.measure import Timer
from archgraph.engine import distributed as D

SPENT_KEYS = ("weight_steps", "arch_steps", "images", "forward_gflop", "wall_seconds")
_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def module_flops(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """Forward FLOPs of one call of a convolution or linear layer, as torch's flop counter counts
    them: 2 x (output elements, or input elements for a transposed convolution) x the multiply-adds
    per element (weight elements per output channel)."""
    weight = module.weight
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * weight.shape[1]
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        x = inputs[0]
        spatial = x.shape[2:].numel()
        return 2 * x.shape[0] * spatial * weight.numel()
    batch, spatial = output.shape[0], output.shape[2:].numel()
    return 2 * batch * spatial * weight.numel()


class SpendMeter:
    """Counts what a search spends (module docstring); its state goes into the checkpoint so a
    resumed search continues the totals."""

    def __init__(self) -> None:
        self.weight_steps = 0
        self.arch_steps = 0
        self.images = 0
        self.flops = 0
        self.step_seconds = 0.0
        self.seconds_before = 0.0  # wall time of earlier segments of a resumed search
        self._clock = Timer()  # this segment's wall time
        self._paused = 0
        self._handles: list[Any] = []

    # ---------------------------------------------------------------- wiring

    def watch(self, net: nn.Module, w_opt: torch.optim.Optimizer, a_opt: torch.optim.Optimizer | None) -> None:
        """Hook a stage's supernet and optimisers (the previous stage's hooks are removed)."""
        for h in self._handles:
            h.remove()
        self._handles = [net.register_forward_pre_hook(self._on_forward), w_opt.register_step_post_hook(self._on_weight_step)]
        if a_opt is not None:
            self._handles.append(a_opt.register_step_post_hook(self._on_arch_step))
        self._handles += [m.register_forward_hook(self._on_layer) for m in net.modules() if isinstance(m, _COUNTED)]

    def _on_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not self._paused and args and isinstance(args[0], torch.Tensor):
            self.images += int(args[0].shape[0])

    def _on_layer(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if not self._paused:
            self.flops += module_flops(module, inputs, output)

    def _on_weight_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.weight_steps += 1

    def _on_arch_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.arch_steps += 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing inside counts (the S-mIoU report on val)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    @contextlib.contextmanager
    def timed_step(self) -> Iterator[None]:
        """Adds the step's wall time to ``step_seconds`` (the equal-time budget's clock)."""
        step = Timer()
        try:
            yield
        finally:
            self.step_seconds += step.read()

    # ---------------------------------------------------------------- totals

    def wall_seconds(self) -> float:
        return self.seconds_before + self._clock.read()

    def totals(self) -> dict[str, Any]:
        """The five totals over every process (images and FLOPs summed over the ranks; steps are the
        same on every rank); every rank must call it under torchrun."""
        images, flops = D.sum_over_ranks([float(self.images), float(self.flops)])
        return {"weight_steps": self.weight_steps, "arch_steps": self.arch_steps, "images": int(round(images)), "forward_gflop": flops / 1e9, "wall_seconds": self.wall_seconds()}

    # ---------------------------------------------------------------- resume

    def state_dict(self) -> dict[str, Any]:
        return {"weight_steps": self.weight_steps, "arch_steps": self.arch_steps, "images": self.images, "flops": self.flops, "step_seconds": self.step_seconds, "wall_seconds": self.wall_seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weight_steps = int(state.get("weight_steps", 0))
        self.arch_steps = int(state.get("arch_steps", 0))
        self.images = int(state.get("images", 0))
        self.flops = int(state.get("flops", 0))
        self.step_seconds = float(state.get("step_seconds", 0.0))
        self.seconds_before = float(state.get("wall_seconds", 0.0))
        self._clock = Timer()
