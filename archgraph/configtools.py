"""Typed dataclasses from plain dicts: unknown keys get a "did you mean" hint, wrong types a clear error.

Kept apart from :mod:`archgraph.config` because spaces and strategies use it for their own sections.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping, TypeVar

from archgraph.errors import ConfigError

T = TypeVar("T")


def unknown_key_error(key: str, known: list[str], section: str) -> ConfigError:
    path = f"{section}.{key}" if section else key
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {(section + '.' if section else '') + close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {path!r}{hint} (known keys: {', '.join(sorted(known))})")


def dataclass_from_dict(cls: type[T], values: Mapping[str, Any], section: str = "") -> T:
    """Build ``cls`` from ``values``; every key must be a field and every value must fit its type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise unknown_key_error(key, names, section)
        kwargs[key] = coerce(value, hints[key], f"{section}.{key}" if section else key)
    return cls(**kwargs)


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return coerce(value, option, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{path}: {value!r} is not a {_name(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list ({_name(tp)}), got {value!r}; write e.g. {path}=[1,2]")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} values ({_name(tp)}), got {list(value)!r}")
            return tuple(coerce(v, a, path) for v, a in zip(value, args))
        inner = args[0] if args else Any
        items = [coerce(v, inner, path) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_plain(obj: Any) -> Any:
    """Dataclass -> dict of YAML-friendly values (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
