"""How :mod:`archgraph.testing` (``archgraph check-strategy``) runs a strategy: its settings.

Kept apart from the strategy interface (:mod:`archgraph.strategies.base` re-exports it, where
strategies take it from) and below it, so the checks read a strategy's settings without importing a
strategy module: strategies are reached through the registry only (tests/test_layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class CheckSettings:
    """What :mod:`archgraph.testing` (``archgraph check-strategy``) may rely on and how it runs a
    strategy: the checker's settings, kept apart from the search's interface.

    ``eval_is_derived``: evaluation mode outside subnet mode computes the derived network (the
    ``evaluation`` check then compares the two); ``options``: strategy options on top of the defaults
    for every tiny run of the checks (e.g. a small evolution); ``planted_options``: further options
    for the planted-signal run (a 4-channel graph, 3 epochs); ``planted_steps``: its steps per epoch
    (None: ``archgraph.testing.PLANTED_STEPS``).
    """

    eval_is_derived: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    planted_options: Mapping[str, Any] = field(default_factory=dict)
    planted_steps: int | None = None
