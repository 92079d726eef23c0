"""Spaces and their presets by name: the supernet graph from a plain dict of hyper-parameters, and a
space's named architectures derived from one of its supernets."""

from __future__ import annotations

from typing import Any, Mapping

import networkx as nx

from archgraph.configtools import dataclass_from_dict
from archgraph.core.registry import get_preset, get_space, list_presets


def build_space(name: str, params: Mapping[str, Any] | None = None) -> nx.DiGraph:
    """The supernet graph of space ``name``; unknown or mistyped keys raise ConfigError."""
    info = get_space(name)
    return info.build(dataclass_from_dict(info.params, dict(params or {}), section="space"))


def preset_names(space: str) -> list[str]:
    """The names of ``space``'s presets (empty when it has none)."""
    return [p.name for p in list_presets(space)]


def build_preset(name: str, supernet: nx.DiGraph, op: str | None = None) -> nx.DiGraph:
    """Preset ``name`` of the supernet's own space, as a derived architecture of ``supernet``.

    ``op``: the op every chosen node runs (the space's default when ``None``)."""
    space = str(supernet.graph.get("space") or "")
    return get_preset(space, name).build(supernet, op)


def preset_architecture(name: str, space: str, params: Mapping[str, Any] | None = None, op: str | None = None) -> nx.DiGraph:
    """Build ``space`` with ``params`` (``space`` config keys) and derive preset ``name`` from it."""
    return build_preset(name, build_space(space, params), op)
