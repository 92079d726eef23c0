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


# --------------------------------------------------------------------------------------------------
# Training settings of an architecture: its class count and its widths


def retarget(arch: nx.DiGraph, **changes: Any) -> tuple[nx.DiGraph, dict[str, tuple[Any, Any]]]:
    """``arch`` with some of its space's hyper-parameters changed (``num_classes``, ``base_channels``,
    ``head``, ...): the topology and the chosen ops stay, every node takes the width, and the head the
    op and classes, that the space defines under the new hyper-parameters. Returns the new graph and
    ``{key: (old, new)}`` for what changed.

    The space is the one source of truth for widths: the new values are read from the space's own
    supernet built with the changed parameters (so "search narrow, train wide" scales every node as
    the space does, for any space whose architectures keep their supernet's node ids). The graph
    records the changes as ``graph["retargeted"] = {key: [old, new]}`` (saved with the run's arch.yaml).
    """
    from archgraph.errors import ConfigError

    space = arch.graph.get("space")
    params = dict(arch.graph.get("params") or {})
    if not space or not params:
        raise ConfigError(
            f"architecture {arch.graph.get('name')!r} names no space and parameters, so its widths and classes cannot be derived; build it from a registered space (archgraph sample / search)"
        )
    current = {**params, **({"num_classes": arch.graph["num_classes"]} if arch.graph.get("num_classes") else {})}
    changed = {k: (current.get(k), v) for k, v in changes.items() if v is not None and current.get(k) != v}
    if not changed:
        return arch, {}
    params.update({k: new for k, (_, new) in changed.items()})
    supernet = build_space(space, params)
    out = arch.copy()
    out.graph.update(params=params, retargeted={k: [old, new] for k, (old, new) in changed.items()})
    if "num_classes" in supernet.graph:
        out.graph["num_classes"] = supernet.graph["num_classes"]
    _copy_widths(out, supernet)
    return out, changed


def _copy_widths(arch: nx.DiGraph, supernet: nx.DiGraph) -> None:
    """Channels of every node (inside cell bodies too) and the head's op from ``supernet``."""
    from dataclasses import replace

    from archgraph.core.graph import node_spec

    for n in arch.nodes:
        if n not in supernet:
            continue
        a, s = node_spec(arch, n), node_spec(supernet, n)
        ops = s.ops if a.kind == "head" else a.ops
        body = a.body
        if body is not None and s.body is not None:
            body = body.copy()
            _copy_widths(body, s.body)
        arch.nodes[n].clear()
        arch.nodes[n].update(replace(a, channels=s.channels, ops=ops, body=body).to_attrs())  # every other attribute kept
