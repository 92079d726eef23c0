"""The plug-in's selector: ``search.select=first`` keeps the strategy's own architecture unscored.

Kept in its own module so that loading the plug-in's spaces does not import archgraph's engine.
"""

from __future__ import annotations

from typing import Any

from archgraph.engine.selection.candidates import own_candidate
from archgraph.engine.selection.registry import Selection, register_selector


@register_selector("first")
class FirstSelector:
    """The decoder's own pick, without scoring anything (a selector from a third-party plug-in)."""

    name = "first"
    spec = "first"

    def select(self, ctx: Any) -> Selection:
        return Selection(own_candidate(ctx.strategy, ctx.net), 1, [], 0)
