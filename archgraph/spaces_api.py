"""Build a space's supernet graph by name from a plain dict of hyper-parameters."""

from __future__ import annotations

from typing import Any, Mapping

import networkx as nx

from archgraph.configtools import dataclass_from_dict
from archgraph.registry import get_space


def build_space(name: str, params: Mapping[str, Any] | None = None) -> nx.DiGraph:
    """The supernet graph of space ``name``; unknown or mistyped keys raise ConfigError."""
    info = get_space(name)
    return info.build(dataclass_from_dict(info.params, dict(params or {}), section="space"))
