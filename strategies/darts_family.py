"""What the DARTS family's official code shares: the architecture optimiser and the warm-up.

PC-DARTS and P-DARTS both inherit these options; they live in the strategy section rather than in
``search.arch_*`` so each strategy keeps its own defaults. The shared ``search.arch_lr``,
``arch_weight_decay``, ``arch_betas`` and ``warmup_epochs`` are not read by them: setting one of those
warns, naming the value used instead (:func:`warn_unread_shared_keys`). Kept in one module so neither
strategy depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from archgraph.core.compile import CompiledNetwork
from archgraph.configtools import bounded
from archgraph.errors import ConfigError
from archgraph.strategies.base import Strategy, StrategyParams, warn_unread_search_keys


@dataclass
class PaperArchParams(StrategyParams):
    """The architecture optimiser and warm-up of the DARTS family's official code.

    They live in the strategy section (not ``search.arch_*``) so that each strategy keeps its own
    defaults; the shared ``search.arch_lr`` etc. are not read by strategies built on this (setting
    them warns). Betas and warm-up are the official ones; lr and decay deviate (docs/strategies.md):
    the official 6e-4 and 1e-3 were set for ~3.5k architecture steps on alpha shared by every cell,
    here alpha/beta are per node and a default search makes ~130 steps. ``arch_lr=6e-4
    arch_weight_decay=1e-3`` restores the official values.
    """

    arch_lr: float = bounded(1e-2, 0, lo_open=True)  # Adam lr for alpha/beta (official --arch_learning_rate 6e-4)
    arch_betas: tuple[float, float] = bounded((0.5, 0.999), 0, 1, hi_open=True)
    arch_weight_decay: float = bounded(0.0, 0)  # Adam's coupled L2 on alpha/beta (official --arch_weight_decay 1e-3)
    warmup_fraction: float = bounded(0.3, 0, 1, hi_open=True)  # weight-only epochs / epochs (PC-DARTS: 15 of 50)


def check_arch_params(p: PaperArchParams) -> None:
    if p.arch_lr <= 0:
        raise ConfigError(f"strategy.arch_lr must be > 0, got {p.arch_lr}")
    if p.arch_weight_decay < 0:
        raise ConfigError(f"strategy.arch_weight_decay must be >= 0, got {p.arch_weight_decay}")
    if not all(0 <= b < 1 for b in p.arch_betas):
        raise ConfigError(f"strategy.arch_betas must both be in [0, 1), got {list(p.arch_betas)}")
    if not 0 <= p.warmup_fraction < 1:
        raise ConfigError(f"strategy.warmup_fraction must be in [0, 1), got {p.warmup_fraction}; 0.3 = 15 of 50 epochs")


def paper_adam(net: CompiledNetwork, p: PaperArchParams) -> torch.optim.Adam | None:
    params = list(net.arch_parameters())
    if not params:
        return None
    return torch.optim.Adam(params, lr=p.arch_lr, betas=tuple(p.arch_betas), weight_decay=p.arch_weight_decay)


def warmup_from_fraction(fraction: float, epochs: int) -> int:
    """round(fraction * epochs), but always leaving at least one architecture epoch when epochs > 1.

    Without the cap a tiny budget (2 epochs at 0.3 -> 1, at 0.6 -> 1; 1 epoch -> 0) could end with
    alpha and beta never updated, and the derived architecture would be the random initialisation's.
    """
    return min(int(round(fraction * epochs)), max(epochs - 1, 0))


def family_warmup(strategy: Strategy, fraction: float) -> int:
    """The warm-up of the current stage: the paper's fraction of its epochs under
    ``search.budget=official``; ``search.warmup_epochs`` under an equalised budget, as every other
    strategy (P-DARTS spreads it over its stages itself)."""
    if strategy.equalised():
        return strategy.search.warmup_epochs
    return warmup_from_fraction(fraction, strategy.epochs)


def warn_unread_shared_keys(strategy: Strategy, p: PaperArchParams, per_stage: bool = False) -> None:
    """Warn about each of ``search.arch_lr``, ``arch_weight_decay``, ``arch_betas`` and (under
    ``search.budget=official``) ``warmup_epochs`` that the config sets: this strategy uses its
    ``strategy.*`` values instead."""
    epochs = strategy.search.epochs
    of = "every stage's" if per_stage else "the"
    unread = {
        "arch_lr": f"strategy.arch_lr={p.arch_lr}",
        "arch_weight_decay": f"strategy.arch_weight_decay={p.arch_weight_decay}",
        "arch_betas": f"strategy.arch_betas={list(p.arch_betas)}",
    }
    if not strategy.equalised():
        unread["warmup_epochs"] = f"strategy.warmup_fraction={p.warmup_fraction} of {of} search.epochs ({warmup_from_fraction(p.warmup_fraction, epochs)} weight-only epochs of {epochs})"
    warn_unread_search_keys(strategy.name, strategy.search, unread)
