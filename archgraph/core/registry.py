"""Every registry of archgraph, built on one helper, and open to other packages through entry points.

**One helper, one duplicate policy.** :class:`Registry` holds the names of one kind of extension
(spaces, strategies, presets, ops, up-sampling modes, decoders, datasets, selectors, scorers,
executors). Registering a name that is taken by *another* definition raises a one-line
:class:`~archgraph.errors.RegistryError` naming both definitions, because a silent overwrite makes
the result depend on import order; registering the *same* definition again (the same object, or
the same ``module:qualname``, as when a module is imported twice or reloaded) replaces it quietly.

**Entry points for every kind.** A package plugs in by declaring entry points in the group of the
kind (:data:`GROUPS`: ``archgraph.spaces``, ``archgraph.strategies``, ``archgraph.presets``,
``archgraph.ops``, ``archgraph.upsamplers``, ``archgraph.decoders``, ``archgraph.datasets``,
``archgraph.selectors``, ``archgraph.scorers``, ``archgraph.executors``); installing it is enough
(docs/plugins.md). The built-ins are declared in the same groups in archgraph's own pyproject.toml,
and the same list is kept here (:data:`BUILTIN_ENTRY_POINTS`, tests/test_plugins.py checks the two
agree) so that a source checkout without installed metadata finds them too; both go through one loader
(:meth:`Registry.load`), so a plug-in is registered exactly as a built-in is.

**Support matrix.** A strategy declares the kinds of choice point it can relax in a class attribute
``handles`` (default ``{"op", "input"}``, :data:`DEFAULT_HANDLES`); a space's kinds are discovered
from a small instance of it (:func:`space_kinds`) or given to :func:`register_space`. A pair where
the space has a kind the strategy does not handle is unsupported: :func:`check_support` raises a
:class:`~archgraph.errors.ConfigError` with the reason before any data is loaded, and
``archgraph strategies`` prints the whole matrix.
"""

from __future__ import annotations

import difflib
import functools
import warnings
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

import networkx as nx

from archgraph.errors import ConfigError, RegistryError

T = TypeVar("T")
DEFAULT_HANDLES: frozenset[str] = frozenset({"op", "input"})  # what a strategy handles unless it says otherwise

# The built-ins, exactly as pyproject.toml declares them under [project.entry-points."<group>"].
BUILTIN_ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "archgraph.spaces": (
        "dcss = archgraph.spaces.dcss:build_dcss",
        "autodeeplab = archgraph.spaces.autodeeplab:build_autodeeplab",
        "unet = archgraph.spaces.unet:build_unet",
    ),
    "archgraph.strategies": (
        "dcnas = archgraph.strategies.dcnas:DCNAS",
        "darts = archgraph.strategies.darts:DARTS",
        "pc_darts = archgraph.strategies.pc_darts:PCDARTS",
        "p_darts = archgraph.strategies.p_darts:PDARTS",
        "proxylessnas = archgraph.strategies.proxylessnas:ProxylessNAS",
        "spos = archgraph.strategies.spos:SPOS",
        "rsws = archgraph.strategies.rsws:RSWS",
    ),
    "archgraph.presets": (
        "dcss = archgraph.spaces.dcss_presets",
        "unet = archgraph.spaces.unet",
    ),
    "archgraph.ops": (
        "core = archgraph.core.ops",
        "autodeeplab = archgraph.spaces.autodeeplab",
    ),
    "archgraph.upsamplers": ("core = archgraph.core.ops",),
    "archgraph.decoders": ("autodeeplab = archgraph.spaces.autodeeplab",),
    "archgraph.datasets": (
        "camvid = archgraph.data.camvid:CamVid",
        "cityscapes = archgraph.data.cityscapes:Cityscapes",
        "voc = archgraph.data.voc:VOC",
        "ade20k = archgraph.data.ade20k:ADE20K",
        "pascal_context = archgraph.data.pascal_context:PascalContext",
        "synthetic = archgraph.data.synthetic:Synthetic",
    ),
    "archgraph.selectors": (
        "argmax = archgraph.engine.selection.selectors:ArgmaxSelector",
        "topk = archgraph.engine.selection.selectors:TopKSelector",
        "proxy = archgraph.engine.selection.selectors:ProxySelector",
        "perturb = archgraph.engine.selection.perturb:PerturbSelector",
    ),
    "archgraph.scorers": (
        "supernet = archgraph.engine.scoring:SupernetScorer",
        "train = archgraph.engine.scoring:TrainScorer",
        "proxies = archgraph.engine.proxies",
    ),
    "archgraph.hooks": ("early_stopping = archgraph.engine.hooks:EarlyStopping",),
    "archgraph.executors": (
        "embedded = archgraph.studies.executors:EmbeddedExecutor",
        "processes = archgraph.studies.executors:ProcessExecutor",
        "ray = archgraph.studies.executors:RayExecutor",
    ),
}
GROUPS: tuple[str, ...] = tuple(BUILTIN_ENTRY_POINTS)
CORE_GROUPS = ("archgraph.spaces", "archgraph.strategies", "archgraph.presets", "archgraph.ops", "archgraph.upsamplers", "archgraph.decoders")

PLUGIN_ERRORS: list[str] = []  # entry points that failed to load (shown by `archgraph spaces`/`strategies`)
# names registered by a plug-in's module without an entry point of that name in their group: found only
# in a process that happens to import the module (shown by `archgraph spaces`/`strategies`, and warned)
UNDECLARED: list[str] = []


def definition(obj: Any) -> str:
    """``module:qualname`` of what was registered (a class, a function, a partial's function)."""
    target = getattr(obj, "registered", obj)  # info records name what they wrap
    if isinstance(target, functools.partial):
        args = ", ".join(repr(a) for a in target.args)
        return f"{definition(target.func)}({args})"
    module = getattr(target, "__module__", None) or "?"
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__qualname__
    return f"{module}:{name}"


def _same_definition(a: Any, b: Any) -> bool:
    ta, tb = getattr(a, "registered", a), getattr(b, "registered", b)
    return ta is tb or definition(ta) == definition(tb)


class Registry(Generic[T]):
    """The names of one kind of extension, with the one duplicate policy and its entry-point group.

    ``table`` is a plain dict (name -> entry); entries may be the registered object itself or an
    info record whose ``registered`` attribute names it (for the duplicate check and messages).
    ``named``: each entry point of the group registers the name it is declared under (spaces,
    strategies, datasets, selectors, scorers); otherwise an entry point names a module whose import
    registers any number of entries (ops, up-sampling modes, decoders, presets). ``adopt``: turns
    the object an entry point loads into an entry when importing it registered nothing by that name
    (datasets: the entry point *is* the registration, no decorator needed).
    """

    def __init__(self, kind: str, group: str, *, named: bool = True, hint: str = "", adopt: Callable[[str, Any], T | None] | None = None) -> None:
        self.kind, self.group, self.named, self.hint, self.adopt = kind, group, named, hint, adopt
        self.table: dict[str, T] = {}
        self._loaded = False
        self._builtins_loaded = False
        REGISTRIES[group] = self

    # -- registering -----------------------------------------------------------------------------
    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name`` (the duplicate policy above)."""
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} name {name!r}: use a non-empty string")
        old = self.table.get(name)
        if old is not None and not _same_definition(old, entry):
            raise RegistryError(f"{self.kind} {name!r} is registered twice: by {definition(old)} and by {definition(entry)}; rename one of them (a {self.kind} name must be unique)")
        self.table[name] = entry
        return entry

    # -- reading ---------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self.table

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def names(self) -> list[str]:
        """Every registered name (built-ins and plug-ins loaded), sorted."""
        self.load()
        return sorted(self.table)

    def declared(self) -> list[str]:
        """The names the built-in and installed entry points of a ``named`` registry declare, without
        importing anything (for help texts, which every command builds): built-ins first, in order."""
        names = [_parse(line)[0] for line in BUILTIN_ENTRY_POINTS.get(self.group, ())]
        return list(dict.fromkeys([*names, *sorted(ep.name for ep in entry_points(group=self.group))]))

    def get(self, name: str, what: str | None = None) -> T:
        """The entry ``name``; the plug-ins are loaded first when it is not registered yet."""
        if name not in self.table:
            self.load()
        if name in self.table:
            return self.table[name]
        raise RegistryError(self.unknown(name, what))

    def unknown(self, name: str, what: str | None = None) -> str:
        """The one-line message for an unknown name: the closest registered one and where to look."""
        close = difflib.get_close_matches(str(name), list(self.table), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        broken = [e for e in PLUGIN_ERRORS if f"group {self.group!r}" in e]
        tail = f"; plug-ins that failed to load: {'; '.join(broken)}" if broken else ""
        return f"unknown {what or self.kind} {name!r}{hint} (available: {', '.join(sorted(self.table)) or 'none'}{'; ' + self.hint if self.hint else ''}){tail}"

    # -- loading ---------------------------------------------------------------------------------
    def load(self, reload: bool = False) -> None:
        """Load the built-in entry points, then every installed one of :attr:`group` (once; ``reload``
        rescans the installed ones). A plug-in that fails to load is reported, not fatal."""
        self.load_builtins()
        if self._loaded and not reload:
            return
        self._loaded = True
        builtin_values = {_parse(line)[1] for line in BUILTIN_ENTRY_POINTS.get(self.group, ())}
        for ep in entry_points(group=self.group):
            if ep.value in builtin_values:
                continue  # archgraph's own declaration, already loaded above
            where = f"entry point {ep.name!r} = {ep.value!r} in group {self.group!r}" + (f" (package {ep.dist.name})" if ep.dist else "")
            self._load_entry(ep, where)

    def forget_installed(self) -> None:
        """Rescan the installed entry points on next use (a plug-in installed into, or removed from, a
        running interpreter); what is registered stays registered."""
        self._loaded = False

    def load_builtins(self) -> None:
        """archgraph's own entry points of this group, through the same path as a plug-in's."""
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for line in BUILTIN_ENTRY_POINTS.get(self.group, ()):
            name, value = _parse(line)
            self._load_entry(EntryPoint(name, value, self.group), f"built-in {self.kind} {name!r} = {value!r}", builtin=True)

    def _load_entry(self, ep: EntryPoint, where: str, builtin: bool = False) -> None:
        try:
            obj = ep.load()
        except ModuleNotFoundError as exc:
            if builtin and exc.name == ep.module:
                return  # a built-in left out of this installation
            if builtin:
                raise
            _report(f"{where} failed to load: {exc.__class__.__name__}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a third-party import can fail any way; report, keep going
            if builtin:
                raise
            _report(f"{where} failed to load: {exc.__class__.__name__}: {exc}")
            return
        if not self.named or not ep.attr or ep.name in self.table:
            return
        try:
            entry = self.adopt(ep.name, obj) if self.adopt is not None else None
        except Exception as exc:  # noqa: BLE001 - a plug-in's wrong target is reported like a failed import
            _report(f"{where}: {exc}")
            return
        if entry is not None:
            self.add(ep.name, entry)
            return
        _report(f"{where} loaded but registered nothing named {ep.name!r}; {self.hint or 'register it under that name'}")


REGISTRIES: dict[str, Registry[Any]] = {}


def _parse(line: str) -> tuple[str, str]:
    name, _, value = line.partition("=")
    return name.strip(), value.strip()


def _report(message: str) -> None:
    if message not in PLUGIN_ERRORS:
        PLUGIN_ERRORS.append(message)
        warnings.warn(message, stacklevel=3)


# --------------------------------------------------------------------------------------------------
# Spaces, strategies, presets


@dataclass(frozen=True)
class SpaceInfo:
    name: str
    build: Callable[[Any], nx.DiGraph]  # params dataclass instance -> supernet graph
    params: type  # dataclass of hyper-parameters (the `space` config section)
    doc: str
    kinds: frozenset[str] | None = None  # choice kinds its graphs contain; None = discover from a default instance

    @property
    def registered(self) -> Any:
        return self.build


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    cls: type  # a archgraph.strategies.base.Strategy subclass
    params: type  # dataclass of its options (the `strategy` config section)
    doc: str

    @property
    def registered(self) -> Any:
        return self.cls


@dataclass(frozen=True)
class PresetInfo:
    """A space's own named architecture (e.g. DCSS's ``hrnet``): built from a supernet of that space."""

    space: str
    name: str
    build: Callable[..., nx.DiGraph]  # (supernet, op=None) -> a derived architecture of the supernet
    doc: str

    @property
    def registered(self) -> Any:
        return self.build


SPACE_REGISTRY: Registry[SpaceInfo] = Registry("space", "archgraph.spaces", hint="see `archgraph spaces`; decorate a plug-in's builder with @register_space(name, Params)")
STRATEGY_REGISTRY: Registry[StrategyInfo] = Registry("strategy", "archgraph.strategies", hint="see `archgraph strategies`; decorate a plug-in's class with @register_strategy(name, Params)")
PRESET_REGISTRY: Registry[PresetInfo] = Registry("preset", "archgraph.presets", named=False)  # keyed "space/name"
SPACES: dict[str, SpaceInfo] = SPACE_REGISTRY.table
STRATEGIES: dict[str, StrategyInfo] = STRATEGY_REGISTRY.table
_kinds_cache: dict[str, frozenset[str]] = {}


def register_space(name: str, params: type, kinds: Iterable[str] | None = None) -> Callable:
    """Register a space builder ``fn(params) -> graph`` under ``name`` (``kinds``: optional, the choice
    kinds its graphs contain, when building a default instance to find out is too costly)."""

    def deco(fn: Callable) -> Callable:
        SPACE_REGISTRY.add(name, SpaceInfo(name, fn, params, (fn.__doc__ or "").strip().split("\n")[0], frozenset(kinds) if kinds is not None else None))
        _kinds_cache.pop(name, None)
        return fn

    return deco


def register_strategy(name: str, params: type) -> Callable:
    """Register a strategy class under ``name`` with the dataclass of its options."""

    def deco(cls: type) -> type:
        STRATEGY_REGISTRY.add(name, StrategyInfo(name, cls, params, (cls.__doc__ or "").strip().split("\n")[0]))
        return cls

    return deco


def register_preset(space: str, name: str, doc: str | None = None) -> Callable:
    """Register ``fn(supernet, op=None) -> architecture`` as preset ``name`` of ``space``, so that
    ``archgraph render --preset``, ``train --preset`` and ``compare --baselines presets`` find it."""

    def deco(fn: Callable) -> Callable:
        text = doc if doc is not None else (fn.__doc__ or "").strip().split("\n")[0]
        PRESET_REGISTRY.add(f"{space}/{name}", PresetInfo(space, name, fn, text))
        return fn

    return deco


def _presets_of(space: str) -> dict[str, PresetInfo]:
    return {p.name: p for p in PRESET_REGISTRY.table.values() if p.space == space}


def list_presets(space: str | None = None) -> list[PresetInfo]:
    """The presets of ``space`` (every space's when ``None``) in registration order."""
    load_plugins()
    return [p for p in PRESET_REGISTRY.table.values() if space is None or p.space == space]


def get_preset(space: str, name: str) -> PresetInfo:
    """Preset ``name`` of ``space``; :class:`ConfigError` otherwise (:func:`unknown_preset`)."""
    load_plugins()
    table = _presets_of(space)
    if name in table:
        return table[name]
    raise ConfigError(unknown_preset(space, name))


def unknown_preset(space: str, name: str) -> str:
    """Why ``name`` is no preset of ``space``, in one line: the space it was looked up in, that space's
    presets and the closest of them, or the space that does have a preset of that name (then no
    "did you mean": the fix is the space, not the name)."""
    load_plugins()
    table = _presets_of(space)
    owners = sorted({p.space for p in PRESET_REGISTRY.table.values() if p.name == name and p.space != space})
    where = f"; {name!r} is a preset of space {', '.join(owners)} (set space.name={owners[0]})" if owners else ""
    if not table:
        spaces = sorted({p.space for p in PRESET_REGISTRY.table.values()})
        return f"space {space!r} registers no presets{where}; presets exist for: {', '.join(spaces) or 'no space'} (`archgraph spaces` lists them)"
    close = [] if owners else difflib.get_close_matches(name, table, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown preset {name!r} of space {space!r}{hint}{where}; {space} presets: {', '.join(table)}"


def load_plugins(reload: bool = False) -> None:
    """Load every core kind's built-in and installed entry points (once; ``reload`` rescans the
    entry points, e.g. after installing a plug-in into a running interpreter).

    A plug-in that fails to import does not break the others: its error is kept in
    :data:`PLUGIN_ERRORS`, shown by ``archgraph spaces`` / ``strategies`` and by unknown-name errors.
    The engine's kinds (selectors, scorers) load on first use by their own modules.
    """
    if reload:
        PLUGIN_ERRORS.clear()
        UNDECLARED.clear()
    if "archgraph.ops" not in REGISTRIES:  # the op and decoder registries live in core/ops.py, core/decode.py
        import_module("archgraph.core.ops")
        import_module("archgraph.core.decode")
    for group in CORE_GROUPS:
        REGISTRIES[group].load(reload)
    if reload:  # the other kinds (datasets, selectors, scorers) load on first use: rescan them then
        for group, registry in REGISTRIES.items():
            if group not in CORE_GROUPS:
                registry.forget_installed()
    _warn_undeclared()


def registered_by(info: SpaceInfo | StrategyInfo) -> str:
    """The module that registered a space or strategy (where its builder or class is defined)."""
    return str(getattr(info.registered, "__module__", "") or "")


def _warn_undeclared() -> None:
    """Warn about every space or strategy a plug-in registered without an entry point of that name in
    its group: it works in this process (its module was imported) but nowhere else (a fresh
    ``archgraph search``, a resumed run, another machine). Built-ins are declared in our own group."""
    for registry in (SPACE_REGISTRY, STRATEGY_REGISTRY):
        group, kind = registry.group, registry.kind
        declared = {ep.name for ep in entry_points(group=group)} | {_parse(line)[0] for line in BUILTIN_ENTRY_POINTS[group]}
        for name, info in registry.table.items():
            module = registered_by(info)
            if name in declared or module == "archgraph" or module.startswith("archgraph."):
                continue
            target = info.registered.__name__
            message = (
                f"{kind} {name!r} is registered by module {module!r} but has no entry point in group {group!r}, "
                f"so only a process that imports {module!r} finds it; declare `{name} = \"{module}:{target}\"` under "
                f"[project.entry-points.\"{group}\"] in the plug-in's pyproject.toml and reinstall it (pip install -e .)"
            )
            if message not in UNDECLARED:
                UNDECLARED.append(message)
                warnings.warn(message, stacklevel=3)


def get_space(name: str) -> SpaceInfo:
    load_plugins()
    return SPACE_REGISTRY.get(name)


def get_strategy(name: str) -> StrategyInfo:
    load_plugins()
    return STRATEGY_REGISTRY.get(name)


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
    return f"strategy {strategy.name!r} handles {', '.join(sorted(strategy_handles(strategy))) or 'no'} choices, but space {space!r} has {', '.join(missing)} choices"


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
