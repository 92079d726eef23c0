"""Selectors by name: the built-ins and plug-ins (entry-point group ``archgraph.selectors``).

A selector turns a trained supernet into one architecture (docs/strategies.md, "Selection"). It is
named by a *spec*, ``name`` or ``name:arg:arg`` (``topk:24:uniform``, ``proxy:synflow:16``,
``perturb:tune=0``); :func:`get_selector` hands the arguments, as strings, to the factory
registered under ``name``, so a wrong spec is refused, with the fix, before a search starts.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from archgraph.core.registry import Registry
from archgraph.errors import ConfigError

ENTRY_POINT_GROUP = "archgraph.selectors"  # plug-ins: ``name = "pkg.module:SelectorClass"`` (decorated with register_selector)
Candidate = tuple[dict[str, int], dict[str, list[int]]]


@dataclass
class Selection:
    """What a selector picked and how: ``candidates`` scored (``scores`` in their order; for
    perturb the projected architecture's score), ``picked`` the index of the winner; ``detail``:
    anything else worth keeping in final.json (perturb's decisions, the proxy's name)."""

    candidate: Candidate
    candidates: int
    scores: list[float]
    picked: int
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Selector(Protocol):
    """Picks one architecture from a :class:`~archgraph.engine.selection.context.SelectionContext`."""

    name: str
    spec: str

    def select(self, ctx: Any) -> Selection: ...


SelectorFactory = Callable[..., Selector]
SELECTOR_REGISTRY: Registry[SelectorFactory] = Registry("selector", ENTRY_POINT_GROUP, hint="decorate a plug-in's class with @register_selector(name)")  # built-ins: the same group
_SELECTORS: dict[str, SelectorFactory] = SELECTOR_REGISTRY.table


def register_selector(name: str) -> Callable[[SelectorFactory], SelectorFactory]:
    """Register a selector class (or factory) under ``name``; its positional arguments come from the spec."""

    def deco(factory: SelectorFactory) -> SelectorFactory:
        if not name or ":" in name or "," in name:
            raise ConfigError(f"selector name {name!r}: use a plain identifier (no ':' or ',')")
        SELECTOR_REGISTRY.add(name, factory)
        return factory

    return deco


def _load() -> None:
    """The built-in selectors and the installed plug-ins, through the one entry-point loader."""
    SELECTOR_REGISTRY.load()


def selector_names() -> list[str]:
    _load()
    return sorted(_SELECTORS)


def get_selector(spec: str) -> Selector:
    """A fresh selector from its spec; :class:`ConfigError` naming the problem and the fix."""
    _load()
    name, *args = str(spec).strip().split(":")
    if name not in _SELECTORS:
        close = difflib.get_close_matches(name, _SELECTORS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown selector {name!r} in search.select={spec!r}; {hint}choose one of {', '.join(sorted(_SELECTORS))} "
            "(e.g. argmax, topk:24, topk:24:uniform, perturb, perturb:tune=0, proxy:synflow:16)"
        )
    factory = _SELECTORS[name]
    try:
        inspect.signature(factory).bind(*args)
    except TypeError:
        params = [p.name for p in inspect.signature(factory).parameters.values()]
        raise ConfigError(f"selector spec {spec!r}: {name} takes {'no arguments' if not params else 'at most ' + ', '.join(params)}") from None
    selector = factory(*args)
    selector.spec = str(spec).strip()
    return selector


def whole(value: str, what: str, spec: str, minimum: int = 1) -> int:
    """A spec argument that must be a whole number >= ``minimum``."""
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"selector spec {spec!r}: {what} {value!r} is not a whole number; write one there, e.g. topk:24 or perturb:tune=2") from None
    if n < minimum:
        raise ConfigError(f"selector spec {spec!r}: {what} must be at least {minimum}, got {n}")
    return n
