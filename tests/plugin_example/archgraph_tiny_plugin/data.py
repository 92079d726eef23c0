"""The plug-in's dataset: ``data.name=tiny_stripes`` once the plug-in is installed.

A dataset plug-in is a :class:`~archgraph.data.SegmentationDataset` subclass named by an entry point
in group ``archgraph.datasets``; the entry point is the registration (no decorator needed).
"""

from __future__ import annotations

from archgraph.data import Synthetic


class TinyStripes(Synthetic):
    """Synthetic scenes without pixel noise: a dataset from a third-party plug-in."""

    name = "tiny_stripes"

    def __init__(self, split: str, **kwargs) -> None:
        kwargs.setdefault("noise", 0.0)
        super().__init__(split, **kwargs)
