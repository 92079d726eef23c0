"""The plain continuous relaxation (DCNAS Eq. 1-4, i.e. first-order DARTS on the graph).

Every candidate op and every input path is computed and softmax-weighted. This is the baseline DCNAS
measures its sampling against: the "full relaxation" of the step-cost benchmark.

Liu, Simonyan, Yang. "DARTS: Differentiable Architecture Search", ICLR 2019 (arXiv:1806.09055).
"""

from __future__ import annotations

from dataclasses import dataclass

from archgraph.core.registry import register_strategy
from archgraph.strategies.base import Strategy, StrategyParams


@dataclass
class DARTSParams(StrategyParams):
    """DARTS has no options of its own here (first-order; the shared ones live in the search section)."""


@register_strategy("darts", DARTSParams)
class DARTS(Strategy):
    """Plain relaxation: all ops and all inputs computed, softmax(alpha) and softmax(beta) weighted."""

    name = "darts"
