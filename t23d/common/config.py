"""Typed dataclass configs: conversion to plain dicts and strict overrides from YAML/dicts.

Configs are plain (frozen-free) dataclasses with a docstring-style comment under every field.
Alternatives are typed unions of dataclasses; in a dict they carry a ``type`` key naming the
class (``{"type": "Linear", "start": 1.0, ...}``). Overrides are strict: an unknown key, a value
of the wrong type or a choice outside a ``Literal`` raises :class:`ConfigError` naming the key,
the value and what would be accepted. Building a config has no side effects.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from t23d.common.errors import ConfigError

T = TypeVar("T")


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def to_dict(cfg: Any) -> Any:
    """Convert a (nested) dataclass config to plain JSON/YAML-able data.

    Dataclass values get a ``type`` key with their class name, so union-typed fields round-trip.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        out: dict[str, Any] = {"type": type(cfg).__name__}
        for f in dataclasses.fields(cfg):
            out[f.name] = to_dict(getattr(cfg, f.name))
        return out
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def _dataclass_members(tp: Any) -> list[type]:
    if dataclasses.is_dataclass(tp):
        return [tp]
    if _is_union(tp):
        return [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
    return []


def _describe(tp: Any) -> str:
    """``tp`` in words for an error message: ``a number``, ``'auto'``, ``null``, a class name."""
    if get_origin(tp) is Literal:
        return ", ".join(map(repr, get_args(tp)))
    words = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    if tp is type(None):
        return "null"
    return words.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str, current: Any) -> Any:
    """Check ``value`` against annotation ``tp``; return the (possibly converted) value."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    members = _dataclass_members(tp)
    if members and isinstance(value, dict):
        type_name = value.get("type")
        if type_name is None:
            if dataclasses.is_dataclass(current) and type(current) in members:
                return apply_overrides(current, value, prefix=key)
            if len(members) == 1:
                return apply_overrides(members[0](), value, prefix=key)
            names = ", ".join(m.__name__ for m in members)
            raise ConfigError(f"config key '{key}': a 'type' entry is required, one of: {names}")
        for m in members:
            if m.__name__ == type_name:
                base = current if type(current) is m else m()
                rest = {k: v for k, v in value.items() if k != "type"}
                return apply_overrides(base, rest, prefix=key)
        names = ", ".join(m.__name__ for m in members)
        raise ConfigError(f"config key '{key}.type': unknown type {type_name!r}; accepted: {names}")
    if dataclasses.is_dataclass(value) and members and type(value) in members:
        return value
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            value = "on" if value else "off"  # YAML 1.1 reads unquoted on/off (and yes/no) as booleans
        if value not in choices:
            raise ConfigError(
                f"config key '{key}': invalid value {value!r}; accepted: {', '.join(map(repr, choices))}"
            )
        return value
    if _is_union(tp):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, current)
            except ConfigError as e:
                errors.append(str(e))
        accepted = " or ".join(_describe(a) for a in args)
        raise ConfigError(f"config key '{key}': invalid value {value!r}; accepted: {accepted}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key '{key}': expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, key, None) for v, a in zip(value, args))
        inner = args[0] if args else Any
        seq = [_coerce(v, inner, key, None) for v in value]
        return tuple(seq) if origin is tuple else seq
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}': invalid value {value!r}; accepted: a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    return value


def apply_overrides(cfg: T, overrides: dict[str, Any], prefix: str = "") -> T:
    """Return a copy of dataclass ``cfg`` with ``overrides`` (a nested dict) applied, strictly."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': expected a mapping, got {overrides!r}")
    hints = get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for k, v in overrides.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k == "type":
            if v != type(cfg).__name__:
                raise ConfigError(f"config key '{key}': expected {type(cfg).__name__!r}, got {v!r}")
            continue
        if k not in names:
            raise ConfigError(f"unknown config key '{key}'; accepted keys here: {', '.join(names)}")
        changes[k] = _coerce(v, hints[k], key, getattr(cfg, k))
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` with a clear error when it is missing or malformed."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return data


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict written by :func:`to_dict` (strict)."""
    return apply_overrides(cls(), data)


def check_finite_numbers(cfg: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the first number anywhere in ``cfg`` (nested dataclasses, tuples,
    lists) that is NaN or infinite. YAML overrides are refused on reading; this also catches configs
    built in Python."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        for f in dataclasses.fields(cfg):
            check_finite_numbers(getattr(cfg, f.name), f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(cfg, (list, tuple)):
        for i, v in enumerate(cfg):
            check_finite_numbers(v, f"{prefix}[{i}]")
    elif isinstance(cfg, float) and not math.isfinite(cfg):
        raise ConfigError(f"config key '{prefix}': invalid value {cfg!r}; accepted: a finite number")


@dataclasses.dataclass(frozen=True)
class Rule:
    """A constraint on one config key, checked by :func:`check_rules` before any work starts."""

    key: str
    """Dotted path from the root config, e.g. ``camera.resolution``."""
    ok: Callable[[Any], bool]
    """True when the value is acceptable."""
    accepted: str
    """What is accepted, in words, for the error message (``"an integer >= 1"``)."""
    option: str | None = None
    """The command-line flag that sets the key, named in the error too (``"--seed"``)."""


def _lookup(cfg: Any, key: str) -> Any:
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def check_rules(cfg: Any, rules: Sequence[Rule]) -> None:
    """Raise :class:`ConfigError` for the first rule ``cfg`` breaks, naming the key (and flag), the value
    and what is accepted. A key that does not exist in ``cfg`` (a field of another member of a union,
    an optional part that is None) is skipped."""
    for rule in rules:
        try:
            value = _lookup(cfg, rule.key)
        except AttributeError:
            continue
        try:
            ok = bool(rule.ok(value))
        except (TypeError, ValueError, IndexError):
            ok = False
        if not ok:
            where = f"{rule.option} (config key '{rule.key}')" if rule.option else f"config key '{rule.key}'"
            raise ConfigError(f"{where}: invalid value {value!r}; accepted: {rule.accepted}")


def is_int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], bool]:
    """A predicate: an int (not a bool) within ``[lo, hi]``."""
    return lambda v: (
        isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)
    )


def is_number(
    lo: float | None = None, hi: float | None = None, *, open_lo: bool = False
) -> Callable[[Any], bool]:
    """A predicate: a finite number within ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``)."""

    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if lo is not None and (v <= lo if open_lo else v < lo):
            return False
        return hi is None or v <= hi

    return ok


def is_range(
    lo: float | None = None, hi: float | None = None, *, open_lo: bool = False
) -> Callable[[Any], bool]:
    """A predicate: a pair ``(a, b)`` with ``a <= b``, both finite and within ``[lo, hi]``."""
    num = is_number(lo, hi, open_lo=open_lo)
    return lambda v: len(v) == 2 and num(v[0]) and num(v[1]) and v[0] <= v[1]


_ = typing  # keep typing imported for get_type_hints on forward references
