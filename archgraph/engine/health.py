"""Search health: is the search learning an architecture, or deriving the argmax of its initial noise?

Entropy alone cannot tell: near uniform it barely moves either way. Per epoch the search records

- ``changed_ops`` / ``changed_inputs``: decisions (argmax op, kept inputs) that differ from the
  previous epoch's (for the first epoch of a stage: from the initialisation's);
- ``margin_alpha`` / ``margin_beta``: the mean decision margin of the scores the decoder ranks
  (top-1 minus top-2 op probability; for inputs, the last kept minus the first dropped);
- ``arch_steps``: architecture optimiser steps actually taken this epoch;
- ``arch_grad_snr``: the architecture gradient's signal-to-noise ratio over the epoch's steps, the
  mean over parameters of ``|mean(g)| / std(g)``. For pure noise it is about ``sqrt(2 / (pi T))``
  for T steps (logged as ``arch_grad_snr_noise``); a gradient that points somewhere sits above it.

At the end :meth:`ArchHealth.verdict` says, in one line with the knob to turn, when the derived
architecture cannot be told from the initialisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from archgraph.core.archstats import changed_decisions, mean_margins
from archgraph.core.compile import CompiledNetwork
from archgraph.core.decode import decisions

# A mean decision margin must exceed its value at the start by this much (in probability) to count
# as learned. 0.01 is about a 0.06 logit gap between two of six ops: far above the 1e-3 * N(0, 1)
# initialisation (margins ~1e-4), far below what a search that decides reaches (0.1-0.5).
LEARNED_MARGIN = 0.01


class ArchHealth:
    """Tracks one stage's architecture parameters: decisions, margins and gradient statistics."""

    def __init__(self) -> None:
        self.start_margins: dict[str, float] = {}
        self.last_margins: dict[str, float] = {}
        self.previous: tuple[dict[str, int], dict[str, list[int]]] | None = None
        self.total_steps = 0
        self._reset_gradients()

    def _reset_gradients(self) -> None:
        self.steps = 0
        self._sum: torch.Tensor | None = None
        self._sumsq: torch.Tensor | None = None

    # ---------------------------------------------------------------- wiring

    def begin_stage(self, net: CompiledNetwork, strategy, optimizer: torch.optim.Optimizer | None) -> None:
        """Remember the stage's initial decisions and margins; watch the optimiser's steps."""
        self.previous, margins = self._snapshot(net, strategy)
        if not self.start_margins:
            self.start_margins = dict(margins)
        self.last_margins = dict(margins)
        self._reset_gradients()
        if optimizer is not None:
            optimizer.register_step_pre_hook(self._on_step)

    def _on_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad.detach().reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device) for group in optimizer.param_groups for p in group["params"]]
        if not grads:
            return
        g = torch.cat(grads).double().cpu()
        if self._sum is None or self._sum.shape != g.shape:
            self._sum, self._sumsq = torch.zeros_like(g), torch.zeros_like(g)
        self._sum += g
        self._sumsq += g * g
        self.steps += 1
        self.total_steps += 1

    # ---------------------------------------------------------------- per epoch

    def _snapshot(self, net: CompiledNetwork, strategy) -> tuple[tuple[dict[str, int], dict[str, list[int]]], dict[str, float]]:
        ops, inputs = strategy.scores(net)
        picked = decisions(net.choices, ops, inputs)
        return picked, mean_margins(ops, inputs, {label: len(idx) for label, idx in picked[1].items()})

    def epoch_fields(self, net: CompiledNetwork, strategy) -> dict[str, Any]:
        """The epoch's health fields (module docstring); resets the gradient statistics."""
        picked, margins = self._snapshot(net, strategy)
        fields: dict[str, Any] = {**margins, "arch_steps": self.steps}
        if self.previous is not None:
            fields.update(changed_decisions(self.previous, picked))
        snr = self.gradient_snr()
        if snr is not None:
            fields["arch_grad_snr"] = snr
            fields["arch_grad_snr_noise"] = math.sqrt(2 / (math.pi * self.steps))
        self.previous, self.last_margins = picked, dict(margins)
        self._reset_gradients()
        return fields

    def gradient_snr(self) -> float | None:
        """Mean over parameters of |mean(g)| / std(g) over this epoch's steps (parameters whose
        gradient never varied, e.g. never drawn, are left out); None under two steps."""
        if self.steps < 2 or self._sum is None:
            return None
        mean = self._sum / self.steps
        var = (self._sumsq / self.steps - mean * mean).clamp_min(0)
        live = var > 1e-30
        if not bool(live.any()):
            return None
        return float((mean[live].abs() / var[live].sqrt()).mean())

    # ---------------------------------------------------------------- the end

    def verdict(self, lr_key: str, lr: float) -> str | None:
        """A warning when the derived architecture cannot be told from the initialisation."""
        if not self.start_margins and not self.last_margins:
            return None  # nothing to decide (no architecture parameters, e.g. SPOS)
        if self.total_steps == 0:
            return (
                "warning: no architecture step was taken, so the derived architecture is the initialisation's; "
                "make search.epochs larger than search.warmup_epochs (and, for ProxylessNAS, search.steps_per_epoch "
                "at least strategy.arch_every)"
            )
        moved = [k for k, v in self.last_margins.items() if v >= self.start_margins.get(k, 0.0) + LEARNED_MARGIN]
        if moved:
            return None
        shown = ", ".join(f"{k.split('_')[1]} {self.last_margins[k]:.4f} (start {self.start_margins.get(k, 0.0):.4f})" for k in sorted(self.last_margins))
        return (
            f"warning: the derived architecture cannot be told from the initialisation: mean decision margins {shown} "
            f"after {self.total_steps} architecture steps. Raise {lr_key} (now {lr:g}), or give the search more architecture "
            "steps (search.epochs, search.steps_per_epoch; fewer search.warmup_epochs)"
        )

    # ---------------------------------------------------------------- resume

    def state_dict(self) -> dict[str, Any]:
        return {
            "start_margins": dict(self.start_margins),
            "last_margins": dict(self.last_margins),
            "previous": [dict(self.previous[0]), {k: list(v) for k, v in self.previous[1].items()}] if self.previous else None,
            "total_steps": self.total_steps,
            "steps": self.steps,
            "sum": self._sum,
            "sumsq": self._sumsq,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_margins = dict(state.get("start_margins", {}))
        self.last_margins = dict(state.get("last_margins", {}))
        prev = state.get("previous")
        self.previous = (dict(prev[0]), {k: list(v) for k, v in prev[1].items()}) if prev else None
        self.total_steps = int(state.get("total_steps", 0))
        self.steps = int(state.get("steps", 0))
        self._sum, self._sumsq = state.get("sum"), state.get("sumsq")
