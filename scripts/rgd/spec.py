"""Typed specs: one way to turn JSON or YAML data into a dataclass, naming the offending field.

    from rgd.spec import SpecError, bounds, parse

    @dataclass(frozen=True)
    class Knobs:
        k: int = field(default=3, metadata=bounds(min=1))
        mode: Literal["a", "b"] = "a"

    parse(Knobs, {"k": "3"}, where="--spec")
    # SpecError: --spec: k: expected an integer, got str '3'

`parse(cls, data, where)` checks every key of `data` against the annotation of the field of that
name (bool, int, float (ints accepted), str, Literal[...], X | None, tuple/list/dict of those,
nested dataclasses, Any), checks the field's bounds (`metadata`, see `bounds`), refuses unknown
keys, fills defaults and then calls the class. Rules that involve several fields stay in the
class's `__post_init__`, which reports a violation as `ValueError("field: message")` (or raises
SpecError); `parse` locates it like any other error. `validate(self)` at the top of
`__post_init__` applies the same type and bound checks when the class is constructed directly.

This module imports nothing from rgd, so that the workflow's config check can use it as well.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["SpecError", "bounds", "parse", "parse_pairs", "validate"]

_BOUND_KEYS = (
    "min",
    "max",
    "exclusive_min",
    "exclusive_max",
    "min_len",
    "max_len",
    "pattern",
    "finite",
    "doc",
)


class SpecError(ValueError):
    """A value that breaks its type, bound or rule: str() is `where: field: message`.

    `where` is the file (`config.yaml`, `config.yaml:12`) or option (`--spec`) the data came
    from; `field` is the dotted path inside it (`sampling.temperature`, `fractions[2]`)."""

    def __init__(self, where: str | None, field: str | None, message: str):
        self.where, self.field, self.message = where, field, message
        super().__init__(": ".join(p for p in (where, field, message) if p))

    def at(self, where: str | None, prefix: str = "") -> SpecError:
        """The same error, read from `where`, nested under the field path `prefix`."""
        return SpecError(where or self.where, _join(prefix, self.field) or None, self.message)


def bounds(**kw: Any) -> dict:
    """Field metadata understood by `parse`, checked for typos:

    min, max, exclusive_min, exclusive_max  numbers (and every number in a tuple or list)
    min_len, max_len                        length of a string, tuple, list or mapping
    pattern                                 a string must match this regex as a whole
    finite                                  False to allow NaN and infinities in a float
    doc                                     one line saying what the field means
    """
    unknown = sorted(set(kw) - set(_BOUND_KEYS))
    if unknown:
        raise TypeError(f"bounds: unknown keys {unknown}; known: {list(_BOUND_KEYS)}")
    return kw


def parse(cls: type, data: Any, where: str | None = "spec", *, ignore_unknown: bool = False) -> Any:
    """An instance of the dataclass `cls` from the mapping `data`; raises SpecError.
    `ignore_unknown`: keys without a field are dropped instead of refused (for reading the fields
    one step needs from another step's output file)."""
    return _parse(cls, data, where, "", ignore_unknown)


def validate(obj: Any) -> None:
    """Check a dataclass instance's fields against their annotations and bounds. Call it from
    `__post_init__`, so that constructing the class directly obeys the rules `parse` applies."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        _convert(hints.get(f.name, Any), value, None, f.name)
        _check_bounds(f.metadata, value, None, f.name)


def parse_pairs(items: Iterable[str] | None, where: str | None = "<command line>") -> dict[str, str]:
    """`NAME=VALUE` items (command-line pairs) as a dict, in order; empty names, a missing `=`
    and a name given twice are refused."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError(where, None, f"expected NAME=PATH, got {item!r}")
        if not value:
            raise SpecError(where, name, f"empty value in {item!r}")
        if name in out:
            raise SpecError(where, name, "given twice")
        out[name] = value
    return out


# ------------------------------------------------------------------------------------------


def _join(prefix: str, name: str | None) -> str:
    if not name:
        return prefix
    if not prefix:
        return name
    return f"{prefix}{name}" if name.startswith("[") else f"{prefix}.{name}"


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return "null" if value is None else f"{type(value).__name__} {text}"


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as e:  # a spec class must be checkable: its annotations must resolve
        raise TypeError(
            f"{cls.__qualname__}: annotation does not resolve ({e}); define the classes it "
            "names at module level"
        ) from None


def _parse(cls: type, data: Any, where: str | None, prefix: str, ignore_unknown: bool = False) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise SpecError(where, prefix or None, f"expected an object (mapping), got {_describe(data)}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = {f.name: f for f in fields}
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise SpecError(where, prefix or None, f"keys must be strings, got {_describe(bad_keys[0])}")
    unknown = [k for k in data if k not in known]
    if unknown and not ignore_unknown:
        names = sorted(known)
        if len(unknown) == 1:
            close = difflib.get_close_matches(unknown[0], names, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(where, _join(prefix, unknown[0]), f"unknown key{hint}; known: {', '.join(names)}")
        raise SpecError(
            where,
            prefix or None,
            f"unknown keys {', '.join(map(repr, sorted(unknown)))}; known: {', '.join(names)}",
        )
    hints = _hints(cls)
    kwargs = {}
    for f in fields:
        path = _join(prefix, f.name)
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(where, path, "missing (required)")
            continue
        value = _convert(hints.get(f.name, Any), data[f.name], where, path, ignore_unknown)
        _check_bounds(f.metadata, value, where, path)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except SpecError as e:
        raise e.at(where, prefix) from None
    except ValueError as e:  # __post_init__: "field: message"
        field, sep, message = str(e).partition(": ")
        if not sep or " " in field:
            field, message = "", str(e)
        raise SpecError(where, _join(prefix, field) or None, message) from None


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if origin in (list, tuple) or tp in (list, tuple):
        return "a list"
    if origin in (dict, Mapping) or tp in (dict, Mapping) or dataclasses.is_dataclass(tp):
        return "an object"
    return getattr(tp, "__name__", str(tp))


_SCALARS = (bool, int, float, str)


def _convert(tp: Any, value: Any, where: str | None, path: str, lax: bool = False) -> Any:
    """`value` checked against the annotation `tp` (converted where needed: int -> float,
    list -> tuple, mapping -> dataclass)."""
    if tp is Any or tp is object:
        return value
    if tp is type(None):
        if value is not None:
            raise SpecError(where, path, f"expected null, got {_describe(value)}")
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, args, value, where, path, lax)
    if origin is typing.Literal:
        return _convert_literal(args, value, where, path)
    if tp in _SCALARS:
        return _convert_scalar(tp, value, where, path)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _parse(tp, value, where, path, lax)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        return _convert_sequence(tp, origin, args, value, where, path, lax)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return _convert_mapping(args, value, where, path, lax)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise SpecError(where, path, f"expected {_type_name(tp)}, got {_describe(value)}")
    return value


def _convert_union(tp: Any, args: tuple, value: Any, where: str | None, path: str, lax: bool) -> Any:
    """`X | Y | None`: None where allowed, else the first member type that accepts `value`."""
    if value is None and type(None) in args:
        return None
    options = [a for a in args if a is not type(None)]
    if len(options) == 1:  # `X | None`: X's own message says what is wrong
        return _convert(options[0], value, where, path, lax)
    for a in options:
        try:
            return _convert(a, value, where, path, lax)
        except SpecError:
            continue
    raise SpecError(where, path, f"expected {_type_name(tp)}, got {_describe(value)}")


def _convert_literal(args: tuple, value: Any, where: str | None, path: str) -> Any:
    """One of the literal values, of the same type (True is not 1, 3.0 is not 3)."""
    for a in args:
        if value == a and type(value) is type(a):
            return a
    raise SpecError(where, path, f"expected one of {', '.join(map(repr, args))}, got {_describe(value)}")


def _convert_scalar(tp: type, value: Any, where: str | None, path: str) -> Any:
    """bool, int, float (an int is accepted and converted) or str; a bool is never a number."""
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    else:
        ok = not isinstance(value, bool) and isinstance(value, (int, float) if tp is float else int)
    if not ok:
        raise SpecError(where, path, f"expected {_type_name(tp)}, got {_describe(value)}")
    return float(value) if tp is float else value


def _convert_sequence(
    tp: Any, origin: Any, args: tuple, value: Any, where: str | None, path: str, lax: bool
) -> Any:
    """A list (a tuple for tuple annotations): `tuple[X, Y]` item by item, else each item as the item type."""
    if not isinstance(value, (list, tuple)):
        raise SpecError(where, path, f"expected a list, got {_describe(value)}")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise SpecError(where, path, f"expected a list of {len(args)} items, got {len(value)}")
        items = [_convert(a, v, where, f"{path}[{i}]", lax) for i, (a, v) in enumerate(zip(args, value))]
    else:
        item = args[0] if args else Any
        items = [_convert(item, v, where, f"{path}[{i}]", lax) for i, v in enumerate(value)]
    return tuple(items) if (origin is tuple or tp is tuple) else items


def _convert_mapping(args: tuple, value: Any, where: str | None, path: str, lax: bool) -> dict:
    """A dict with every key and value checked (`dict[K, V]`; a bare dict takes anything)."""
    if not isinstance(value, Mapping):
        raise SpecError(where, path, f"expected an object (mapping), got {_describe(value)}")
    key_t, val_t = args if len(args) == 2 else (Any, Any)
    out = {}
    for k, v in value.items():
        k = _convert(key_t, k, where, path, lax)
        out[k] = _convert(val_t, v, where, _join(path, str(k)), lax)
    return out


def _check_bounds(md: Mapping, value: Any, where: str | None, path: str) -> None:
    if value is None:
        return
    numbers: list[tuple[str, Any]] = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        numbers = [(path, value)]
    elif isinstance(value, (list, tuple)):
        numbers = [
            (f"{path}[{i}]", v)
            for i, v in enumerate(value)
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
    for p, v in numbers:
        if isinstance(v, float) and md.get("finite", True) and not math.isfinite(v):
            raise SpecError(where, p, f"expected a finite number, got {v}")
        if "min" in md and v < md["min"]:
            raise SpecError(where, p, f"must be >= {md['min']}, got {v}")
        if "max" in md and v > md["max"]:
            raise SpecError(where, p, f"must be <= {md['max']}, got {v}")
        if "exclusive_min" in md and v <= md["exclusive_min"]:
            raise SpecError(where, p, f"must be > {md['exclusive_min']}, got {v}")
        if "exclusive_max" in md and v >= md["exclusive_max"]:
            raise SpecError(where, p, f"must be < {md['exclusive_max']}, got {v}")
    if isinstance(value, (str, list, tuple, Mapping)):
        if "min_len" in md and len(value) < md["min_len"]:
            what = "characters" if isinstance(value, str) else "items"
            raise SpecError(where, path, f"needs at least {md['min_len']} {what}, got {len(value)}")
        if "max_len" in md and len(value) > md["max_len"]:
            what = "characters" if isinstance(value, str) else "items"
            raise SpecError(where, path, f"takes at most {md['max_len']} {what}, got {len(value)}")
    if isinstance(value, str) and "pattern" in md and not re.fullmatch(md["pattern"], value):
        raise SpecError(where, path, f"{value!r} does not match {md['pattern']!r}")
