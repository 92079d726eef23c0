"""Registries of search spaces and strategies, open to other packages through entry points.

A third-party package registers its own space with an entry point in the ``archgraph.spaces`` group
(``name = "pkg.module:build"``, where the target is decorated with :func:`register_space`), or a
strategy in ``archgraph.strategies``; installing the package is enough for it to show up in
``archgraph spaces`` / ``archgraph strategies`` and to be usable by name in configs.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable

import networkx as nx

from archgraph.errors import RegistryError


@dataclass(frozen=True)
class SpaceInfo:
    name: str
    build: Callable[[Any], nx.DiGraph]  # params dataclass instance -> supernet graph
    params: type  # dataclass of hyper-parameters (the `space` config section)
    doc: str


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    cls: type  # a strategies.base.Strategy subclass
    params: type  # dataclass of its options (the `strategy` config section)
    doc: str


SPACES: dict[str, SpaceInfo] = {}
STRATEGIES: dict[str, StrategyInfo] = {}
_BUILTIN_SPACES = ("spaces.dcss", "spaces.autodeeplab")
_BUILTIN_STRATEGIES = ("strategies.dcnas", "strategies.pc_darts", "strategies.p_darts", "strategies.proxylessnas", "strategies.spos", "strategies.darts")
_loaded = False


def register_space(name: str, params: type) -> Callable:
    def deco(fn: Callable) -> Callable:
        SPACES[name] = SpaceInfo(name, fn, params, (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def register_strategy(name: str, params: type) -> Callable:
    def deco(cls: type) -> type:
        STRATEGIES[name] = StrategyInfo(name, cls, params, (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return deco


def load_plugins() -> None:
    """Import the built-in modules and every installed entry point (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_SPACES + _BUILTIN_STRATEGIES:
        try:
            import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    for group in ("archgraph.spaces", "archgraph.strategies"):
        for ep in entry_points(group=group):
            ep.load()


def _lookup(table: dict, name: str, what: str, command: str):
    load_plugins()
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, table, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise RegistryError(f"unknown {what} {name!r}{hint} (available: {', '.join(sorted(table))}; see `archgraph {command}`)")


def get_space(name: str) -> SpaceInfo:
    return _lookup(SPACES, name, "space", "spaces")


def get_strategy(name: str) -> StrategyInfo:
    return _lookup(STRATEGIES, name, "strategy", "strategies")


def list_spaces() -> list[SpaceInfo]:
    load_plugins()
    return [SPACES[k] for k in sorted(SPACES)]


def list_strategies() -> list[StrategyInfo]:
    load_plugins()
    return [STRATEGIES[k] for k in sorted(STRATEGIES)]
