"""Typed dataclasses from plain dicts: unknown keys get a "did you mean" hint, wrong types a clear error.

Kept apart from :mod:`archgraph.config` because spaces and strategies use it for their own sections.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Callable, ClassVar, Collection, Mapping, Sequence, TypeVar

from archgraph.errors import ConfigError

T = TypeVar("T")


def unknown_key_error(key: str, known: list[str], section: str) -> ConfigError:
    path = f"{section}.{key}" if section else key
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {(section + '.' if section else '') + close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {path!r}{hint} (known keys: {', '.join(sorted(known))})")


def key_suggestion(key: str, value: Any, known: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean ...?"`` for an unknown key of a free-form mapping (``data.options``), or "".

    YAML reads ``{flipp:false}`` (no space after the colon) as one key ``"flipp:false"`` with no
    value, which no spelling suggestion can match; such a key is split at the colon first, so the
    hint names both the misspelling and the missing space."""
    name, colon, rest = key.partition(":")
    name = name.strip()
    if colon and value is None and name:
        close = [name] if name in known else difflib.get_close_matches(name, list(known), n=1)
        if close:
            return f"; did you mean '{{{close[0]}: {rest.strip()}}}'? (YAML needs a space after the colon)"
        return f"; YAML read '{key}' as one key: write '{{{name}: {rest.strip()}}}' with a space after the colon"
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def yaml_text(value: Any) -> str:
    """``value`` as a user types it in a YAML file or after ``--set``: ``[0.5, 0.999]``, ``false``,
    ``null``, ``{a: 1}``, on one line (tuples as lists; not Python's repr)."""
    import yaml

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    text = yaml.safe_dump(plain(value), default_flow_style=True, width=math.inf, sort_keys=False).strip()
    return text[: -len("\n...")].strip() if text.endswith("\n...") else text  # a scalar's document end marker


def bounded(default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False, why: str = "") -> Any:
    """A dataclass field whose value (each value, for a list or tuple) must lie in a range.

    ``bounded(0.25, 0, 1, lo_open=True)`` accepts (0, 1]; the error names the key and the range, and
    ``why`` (if given) the reason for a bound that is not obvious.
    """
    metadata: dict[str, Any] = {"range": (lo, hi, lo_open, hi_open)}
    if why:
        metadata["why"] = why
    return dataclasses.field(default=default, metadata=metadata)


def one_of(default: str, *choices: str) -> Any:
    """A dataclass string field restricted to ``choices`` (the default included)."""
    return dataclasses.field(default=default, metadata={"choices": (default, *choices)})


@dataclasses.dataclass(frozen=True)
class NameRule:
    """What :func:`registered` and :func:`name_list` declare: names drawn from a registry.

    ``among`` returns the names a value may take when the field is checked (a registry that plug-ins
    extend is read then, not when the dataclass is defined); ``what`` names one entry in messages
    (``op``), ``listing`` says where to see them all (``see `archgraph ops```; empty: the message
    lists them), ``besides`` are names that do not count towards a list's one required entry.
    """

    among: Callable[[], Collection[str]] | None
    what: str
    listing: str = ""
    besides: tuple[str, ...] = ()


def registered(default: str, among: Callable[[], Collection[str]], what: str, listing: str = "") -> Any:
    """A dataclass string field naming an entry of a registry (``among()``: the names registered when
    the field is checked), e.g. an up-sampling mode; a wrong name gets the closest registered one."""
    return dataclasses.field(default=default, metadata={"names": NameRule(among, what, listing)})


def name_list(default: Sequence[str], *, among: Callable[[], Collection[str]] | None = None, what: str = "name", listing: str = "", besides: Sequence[str] = ()) -> Any:
    """A dataclass list-of-strings field with at least one entry (one that is not in ``besides``),
    each one of ``among()`` when given (e.g. a space's candidate ops)."""
    items = list(default)
    return dataclasses.field(default_factory=lambda: list(items), metadata={"names": NameRule(among, what, listing, tuple(besides))})


def _describe_range(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi}"
    return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def check_metadata(field: dataclasses.Field, value: Any, path: str) -> None:
    """Enforce :func:`bounded` / :func:`one_of` / :func:`registered` / :func:`name_list` constraints on one coerced value."""
    choices = field.metadata.get("choices")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{path}: {value!r} is not allowed{hint} (choose one of: {', '.join(choices)})")
    names = field.metadata.get("names")
    if names is not None:
        _check_names(names, value, path)
    limits = field.metadata.get("range")
    if limits is None or value is None:
        return
    lo, hi, lo_open, hi_open = limits
    for v in value if isinstance(value, (list, tuple)) else (value,):
        if isinstance(v, bool) or not isinstance(v, (int, float)):  # a dataclass built in Python, not through coerce()
            raise ConfigError(f"{path}: expected a number, got {v!r}")
        ok = (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))
        if not ok:
            why = field.metadata.get("why")
            reason = f" ({why})" if why else ""
            raise ConfigError(f"{path}: {v!r} is out of range; allowed: {_describe_range(lo, hi, lo_open, hi_open)}{reason}")


def _check_names(rule: NameRule, value: Any, path: str) -> None:
    """A :func:`registered` name, or a :func:`name_list`: at least one entry, each a known name."""
    if isinstance(value, (list, tuple)):
        if not [v for v in value if v not in rule.besides]:
            other = f" other than {', '.join(map(repr, rule.besides))}" if rule.besides and value else ""
            where = f" ({rule.listing})" if rule.listing else ""
            raise ConfigError(f"{path}: {yaml_text(value)} lists no {rule.what}{other}; allowed: a list of at least one {rule.what}{other}{where}")
        items = list(value)
    else:
        items = [value]
    if rule.among is None:
        return
    known = rule.among()
    for v in items:
        if v not in known:
            close = difflib.get_close_matches(str(v), sorted(map(str, known)), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            allowed = rule.listing or f"registered: {', '.join(sorted(known))}"
            raise ConfigError(f"{path}: unknown {rule.what} {v!r}{hint} ({allowed})")


def check_fields(obj: Any, section: str = "") -> None:
    """Every field of the dataclass instance ``obj`` against what its declaration allows
    (:func:`bounded`, :func:`one_of`, :func:`registered`, :func:`name_list`); the first value that
    does not fit raises :class:`ConfigError` naming ``section.key``, the value and what is allowed."""
    for f in dataclasses.fields(obj):
        if f.metadata:
            check_metadata(f, getattr(obj, f.name), f"{section}.{f.name}" if section else f.name)


class CheckedParams:
    """Base of a parameters dataclass whose field declarations are its only checks, and hold however
    it is built: from a config section (:func:`dataclass_from_dict`) or in Python
    (``DCSSParams(layers=0)`` raises as ``space.layers=0`` does). ``section`` names the config section
    in messages. A rule joining several fields (``tau_min <= tau_max``) goes in the subclass's
    ``__post_init__``, after ``super().__post_init__()``.

    Why a base class and not a check in the builder: the bounds are declared once, on the fields, and
    checked once, when the value is built, wherever that happens.
    """

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_fields(self, self.section)


def dataclass_from_dict(cls: type[T], values: Mapping[str, Any], section: str = "") -> T:
    """Build ``cls`` from ``values``; every key must be a field and every value must fit its type
    and the field's declaration (see :func:`bounded`, :func:`one_of`, :func:`registered`,
    :func:`name_list`; a :class:`CheckedParams` checks its fields itself, once, as it is built)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {section!r} must be a mapping of keys to values, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    checks_itself = isinstance(cls, type) and issubclass(cls, CheckedParams)
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in fields:
            raise unknown_key_error(str(key), list(fields), section)
        path = f"{section}.{key}" if section else key
        kwargs[key] = coerce(value, hints[key], path)
        if not checks_itself:
            check_metadata(fields[key], kwargs[key], path)
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
        number = parse_float(value)
        if number is None:
            raise ConfigError(f"{path}: expected a number (e.g. 0.05, 4e-5, 1.5E+2), got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


# A decimal number as people write it: 4e-5, 6E-4, -2e+1, .5, 5., 1_000.5 (underscores between digits,
# as YAML and Python allow them). PyYAML follows YAML 1.1, which reads 4e-5 (no dot) and 1.0e5 (no
# exponent sign) as strings; float fields take those strings as the numbers they are.
_DIGITS = r"[0-9](?:_?[0-9])*"
_DECIMAL = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")


def parse_float(value: Any) -> float | None:
    """``value`` as a float when it is a number or a string holding a decimal number, else ``None``.

    Booleans are not numbers here, and strings such as ``inf``, ``nan`` or ``0x1p3`` are not
    accepted: only the decimal notation of :data:`_DECIMAL`.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value.strip().replace("_", ""))
    return None


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
