"""Registries of search spaces and strategies, open to other packages through entry points.

A third-party package registers its own space with an entry point in the ``archgraph.spaces`` group
(``name = "pkg.module:build"``, where the target is decorated with :func:`register_space`), or a
strategy in ``archgraph.strategies``; installing the package is enough for it to show up in
``archgraph spaces`` / ``archgraph strategies`` and to be usable by name in configs (docs/plugins.md).

**Support matrix.** A strategy declares the kinds of choice point it can relax in a class attribute
``handles`` (default ``{"op", "input"}``, :data:`DEFAULT_HANDLES`); a space's kinds are discovered
from a small instance of it (:func:`space_kinds`) or given to :func:`register_space`. A pair where
the space has a kind the strategy does not handle is unsupported: :func:`check_support` raises a
:class:`~archgraph.errors.ConfigError` with the reason before any data is loaded, and
``archgraph strategies`` prints the whole matrix.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable

import networkx as nx

from archgraph.errors import ConfigError, RegistryError

DEFAULT_HANDLES: frozenset[str] = frozenset({"op", "input"})  # what a strategy handles unless it says otherwise
GROUPS = ("archgraph.spaces", "archgraph.strategies")


@dataclass(frozen=True)
class SpaceInfo:
    name: str
    build: Callable[[Any], nx.DiGraph]  # params dataclass instance -> supernet graph
    params: type  # dataclass of hyper-parameters (the `space` config section)
    doc: str
    kinds: frozenset[str] | None = None  # choice kinds its graphs contain; None = discover from a default instance


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    cls: type  # a archgraph.strategies.base.Strategy subclass
    params: type  # dataclass of its options (the `strategy` config section)
    doc: str


@dataclass(frozen=True)
class PresetInfo:
    """A space's own named architecture (e.g. DCSS's ``hrnet``): built from a supernet of that space."""

    space: str
    name: str
    build: Callable[..., nx.DiGraph]  # (supernet, op=None) -> a derived architecture of the supernet
    doc: str


SPACES: dict[str, SpaceInfo] = {}
STRATEGIES: dict[str, StrategyInfo] = {}
PRESETS: dict[str, dict[str, PresetInfo]] = {}  # space name -> preset name -> info
_BUILTIN_SPACES = ("archgraph.spaces.dcss", "archgraph.spaces.dcss_presets", "archgraph.spaces.autodeeplab", "archgraph.spaces.unet")
_BUILTIN_STRATEGIES = ("archgraph.strategies.dcnas", "archgraph.strategies.pc_darts", "archgraph.strategies.p_darts", "archgraph.strategies.proxylessnas", "archgraph.strategies.spos", "archgraph.strategies.darts", "archgraph.strategies.rsws")
_loaded = False


PLUGIN_ERRORS: list[str] = []  # entry points that failed to load (shown by `archgraph spaces`/`strategies`)
# names registered by a plug-in's module without an entry point of that name in their group: found only
# in a process that happens to import the module (shown by `archgraph spaces`/`strategies`, and warned)
UNDECLARED: list[str] = []
_kinds_cache: dict[str, frozenset[str]] = {}


def register_space(name: str, params: type, kinds: Iterable[str] | None = None) -> Callable:
    """Register a space builder ``fn(params) -> graph`` under ``name`` (``kinds``: optional, the choice
    kinds its graphs contain, when building a default instance to find out is too costly)."""

    def deco(fn: Callable) -> Callable:
        SPACES[name] = SpaceInfo(name, fn, params, (fn.__doc__ or "").strip().split("\n")[0], frozenset(kinds) if kinds is not None else None)
        _kinds_cache.pop(name, None)
        return fn

    return deco


def register_preset(space: str, name: str, doc: str | None = None) -> Callable:
    """Register ``fn(supernet, op=None) -> architecture`` as preset ``name`` of ``space``, so that
    ``archgraph render --preset``, ``train --preset`` and ``compare --baselines presets`` find it."""

    def deco(fn: Callable) -> Callable:
        text = doc if doc is not None else (fn.__doc__ or "").strip().split("\n")[0]
        PRESETS.setdefault(space, {})[name] = PresetInfo(space, name, fn, text)
        return fn

    return deco


def list_presets(space: str) -> list[PresetInfo]:
    """The presets of ``space`` in registration order (empty when it registers none)."""
    load_plugins()
    return list(PRESETS.get(space, {}).values())


def get_preset(space: str, name: str) -> PresetInfo:
    """Preset ``name`` of ``space``; :class:`ConfigError` naming the space's presets otherwise."""
    load_plugins()
    table = PRESETS.get(space, {})
    if name in table:
        return table[name]
    if not table:
        others = sorted(s for s, t in PRESETS.items() if name in t)
        where = f"; {name!r} is a preset of {', '.join(others)} (set space.name)" if others else ""
        raise ConfigError(f"space {space!r} registers no presets{where}; presets exist for: {', '.join(sorted(PRESETS)) or 'no space'}")
    close = difflib.get_close_matches(name, table, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown preset {name!r}{hint}; {space} presets: {', '.join(table)}")


def register_strategy(name: str, params: type) -> Callable:
    def deco(cls: type) -> type:
        STRATEGIES[name] = StrategyInfo(name, cls, params, (cls.__doc__ or "").strip().split("\n")[0])
        return cls

    return deco


def load_plugins(reload: bool = False) -> None:
    """Import the built-in modules and every installed entry point (once; ``reload`` rescans the
    entry points, e.g. after installing a plug-in into a running interpreter).

    A plug-in that fails to import does not break the others: its error is kept in
    :data:`PLUGIN_ERRORS`, shown by ``archgraph spaces`` / ``strategies`` and by unknown-name errors.
    """
    global _loaded
    if _loaded and not reload:
        return
    _loaded = True
    for mod in _BUILTIN_SPACES + _BUILTIN_STRATEGIES:
        try:
            import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    if reload:
        PLUGIN_ERRORS.clear()
        UNDECLARED.clear()
    for group, table in zip(GROUPS, (SPACES, STRATEGIES)):
        for ep in entry_points(group=group):
            where = f"entry point {ep.name!r} = {ep.value!r} in group {group!r}" + (f" (package {ep.dist.name})" if ep.dist else "")
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - a third-party import can fail any way; report, keep going
                message = f"{where} failed to load: {exc.__class__.__name__}: {exc}"
                if message not in PLUGIN_ERRORS:
                    PLUGIN_ERRORS.append(message)
                    warnings.warn(message, stacklevel=2)
                continue
            if ep.name not in table:
                message = (f"{where} loaded but registered nothing named {ep.name!r}; decorate its target with "
                           f"@{'register_space' if table is SPACES else 'register_strategy'}({ep.name!r}, Params)")
                if message not in PLUGIN_ERRORS:
                    PLUGIN_ERRORS.append(message)
                    warnings.warn(message, stacklevel=2)
    _warn_undeclared()


def registered_by(info: SpaceInfo | StrategyInfo) -> str:
    """The module that registered a space or strategy (where its builder or class is defined)."""
    target = info.build if isinstance(info, SpaceInfo) else info.cls
    return str(getattr(target, "__module__", "") or "")


def _warn_undeclared() -> None:
    """Warn about every space or strategy a plug-in registered without an entry point of that name in
    its group: it works in this process (its module was imported) but nowhere else (a fresh
    ``archgraph search``, a resumed run, another machine). Built-ins are imported by name and exempt."""
    for group, table, kind in zip(GROUPS, (SPACES, STRATEGIES), ("space", "strategy")):
        declared = {ep.name for ep in entry_points(group=group)}
        for name, info in table.items():
            module = registered_by(info)
            if name in declared or module == "archgraph" or module.startswith("archgraph."):
                continue
            target = info.build.__name__ if isinstance(info, SpaceInfo) else info.cls.__name__
            message = (f"{kind} {name!r} is registered by module {module!r} but has no entry point in group {group!r}, "
                       f"so only a process that imports {module!r} finds it; declare `{name} = \"{module}:{target}\"` under "
                       f"[project.entry-points.\"{group}\"] in the plug-in's pyproject.toml and reinstall it (pip install -e .)")
            if message not in UNDECLARED:
                UNDECLARED.append(message)
                warnings.warn(message, stacklevel=3)


def _lookup(table: dict, name: str, what: str, command: str):
    load_plugins()
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, table, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    broken = f"; plug-ins that failed to load: {'; '.join(PLUGIN_ERRORS)}" if PLUGIN_ERRORS else ""
    raise RegistryError(f"unknown {what} {name!r}{hint} (available: {', '.join(sorted(table))}; see `archgraph {command}`){broken}")


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


# --------------------------------------------------------------------------------------------------
# Which strategy runs on which space


def strategy_handles(info: StrategyInfo) -> frozenset[str]:
    """The choice kinds a strategy relaxes: its class's ``handles`` (default op + input)."""
    handles = getattr(info.cls, "handles", DEFAULT_HANDLES)
    if isinstance(handles, str):
        handles = (handles,)
    return frozenset(handles)


def space_kinds(info: SpaceInfo) -> frozenset[str]:
    """The choice kinds a space's graphs contain: declared, or discovered from a default instance."""
    if info.kinds is not None:
        return info.kinds
    if info.name not in _kinds_cache:
        from archgraph.core.choices import choice_kinds
        from archgraph.configtools import dataclass_from_dict

        _kinds_cache[info.name] = choice_kinds(info.build(dataclass_from_dict(info.params, {}, section="space")))
    return _kinds_cache[info.name]


def unsupported_reason(strategy: StrategyInfo, kinds: Iterable[str], space: str) -> str | None:
    """Why ``strategy`` cannot search a space with choice ``kinds`` (``None``: it can)."""
    missing = sorted(set(kinds) - strategy_handles(strategy))
    if not missing:
        return None
    return (f"strategy {strategy.name!r} handles {', '.join(sorted(strategy_handles(strategy))) or 'no'} choices, "
            f"but space {space!r} has {', '.join(missing)} choices")


def check_support(strategy_info: StrategyInfo, graph: nx.DiGraph) -> None:
    """Raise :class:`ConfigError` if the strategy cannot relax every kind of choice in ``graph``.

    Cheap (no compiling, no data): the search calls it right after building the space's graph.
    """
    from archgraph.core.choices import choice_kinds

    space = str(graph.graph.get("space") or graph.graph.get("name") or "<graph>")
    reason = unsupported_reason(strategy_info, choice_kinds(graph), space)
    if reason is not None:
        able = [s.name for s in list_strategies() if unsupported_reason(s, choice_kinds(graph), space) is None]
        fix = f"set strategy.name to one that handles it ({', '.join(able)})" if able else "no registered strategy handles it; install one that does"
        raise ConfigError(f"unsupported combination: {reason}; {fix} (see `archgraph strategies`)")


def support_matrix() -> list[tuple[str, str, str | None]]:
    """(strategy, space, reason it is unsupported or None) for every registered pair."""
    rows = []
    for space in list_spaces():
        try:
            kinds: frozenset[str] | None = space_kinds(space)
            error = None
        except Exception as exc:  # noqa: BLE001 - a broken plug-in space must not hide the others
            kinds, error = None, f"space {space.name!r} could not be built with its defaults: {exc}"
        for strategy in list_strategies():
            rows.append((strategy.name, space.name, error if kinds is None else unsupported_reason(strategy, kinds, space.name)))
    return rows
