"""rgd.spec: one parser for every spec, naming the offending field."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from rgd.spec import SpecError, bounds, parse, parse_pairs


@dataclass(frozen=True)
class Inner:
    temperature: float = field(default=0.7, metadata=bounds(min=0))
    top_p: float = field(default=1.0, metadata=bounds(exclusive_min=0, max=1))


@dataclass(frozen=True)
class Outer:
    name: str = field(metadata=bounds(pattern=r"[a-z]+"))
    n: int = field(default=3, metadata=bounds(min=1, max=26))
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    limit: int | None = None
    auto: int | Literal["auto"] = "auto"
    inner: Inner = field(default_factory=Inner)
    fractions: tuple[float, ...] = field(default=(1.0,), metadata=bounds(exclusive_min=0, max=1, min_len=1))
    extra: dict = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    anything: Any = None
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        if self.low > self.high:
            raise ValueError(f"low/high: need low <= high, got {self.low}, {self.high}")


def test_defaults_conversions_and_nesting():
    o = parse(Outer, {"name": "x", "inner": {"temperature": 1}, "fractions": [0.5, 1], "auto": 4})
    assert o.inner == Inner(1.0, 1.0) and isinstance(o.inner.temperature, float)
    assert o.fractions == (0.5, 1.0) and o.auto == 4 and o.n == 3 and o.extra == {}
    assert parse(Outer, {"name": "x", "limit": None}).limit is None
    assert parse(Outer, {"name": "x", "inner": Inner(0.2)}).inner.temperature == 0.2


@pytest.mark.parametrize(
    "data, field_, fragment",
    [
        ({"name": "x", "n": "20"}, "n", "expected an integer, got str '20'"),
        ({"name": "x", "n": 2.0}, "n", "expected an integer, got float"),
        ({"name": "x", "n": True}, "n", "expected an integer, got bool"),
        ({"name": "x", "n": 0}, "n", "must be >= 1, got 0"),
        ({"name": "x", "n": 27}, "n", "must be <= 26"),
        ({"name": "x", "mode": "c"}, "mode", "expected one of 'a', 'b', got str 'c'"),
        ({"name": "x", "flag": 1}, "flag", "expected true/false, got int 1"),
        ({"name": "x", "limit": "5"}, "limit", "expected an integer"),
        ({"name": "x", "auto": "five"}, "auto", "expected an integer or 'auto'"),
        ({"name": "x", "inner": {"top_p": 0}}, "inner.top_p", "must be > 0, got 0.0"),
        ({"name": "x", "inner": {"temp": 1}}, "inner.temp", "unknown key (did you mean 'temperature'?)"),
        ({"name": "x", "inner": [1]}, "inner", "expected an object (mapping), got list"),
        ({"name": "x", "fractions": [0.5, 2]}, "fractions[1]", "must be <= 1, got 2.0"),
        ({"name": "x", "fractions": []}, "fractions", "needs at least 1 items"),
        ({"name": "x", "fractions": "0.5"}, "fractions", "expected a list, got str"),
        ({"name": "x", "scores": {"a": "b"}}, "scores.a", "expected a number"),
        ({"name": "x", "low": math.nan}, "low", "expected a finite number"),
        ({"name": "x", "low": 2.0}, "low/high", "need low <= high"),
        ({"name": "X"}, "name", "does not match"),
        ({}, "name", "missing (required)"),
        ({"name": "x", "nn": 1}, "nn", "unknown key (did you mean 'n'?); known: anything, auto"),
    ],
)
def test_errors_name_the_field(data, field_, fragment):
    with pytest.raises(SpecError) as e:
        parse(Outer, data, where="--spec")
    assert e.value.where == "--spec" and e.value.field == field_, str(e.value)
    assert fragment in e.value.message, e.value.message
    assert str(e.value).startswith(f"--spec: {field_}: ")
    assert isinstance(e.value, ValueError)


def test_unknown_keys_and_non_mappings():
    with pytest.raises(SpecError, match=r"^f.yaml: unknown keys 'p', 'q'; known: "):
        parse(Outer, {"name": "x", "p": 1, "q": 2}, where="f.yaml")
    with pytest.raises(SpecError, match=r"^spec: expected an object \(mapping\), got list"):
        parse(Outer, [1, 2])
    with pytest.raises(SpecError, match="keys must be strings"):
        parse(Outer, {1: 2})


def test_bounds_refuses_typos():
    with pytest.raises(TypeError, match="minimum"):
        bounds(minimum=1)


def test_pairs():
    assert parse_pairs(["a=x", "b=y=z"]) == {"a": "x", "b": "y=z"}
    for bad, fragment in (
        (["a"], "expected NAME=PATH"),
        (["=x"], "expected NAME=PATH"),
        (["a="], "empty value"),
        (["a=x", "a=y"], "a: given twice"),
    ):
        with pytest.raises(SpecError, match=fragment):
            parse_pairs(bad, "--responses")


def test_validate_applies_the_same_rules_to_direct_construction():
    from rgd.spec import validate

    @dataclass(frozen=True)
    class K:
        n: int = field(default=1, metadata=bounds(min=1))
        x: float = 0.5

        def __post_init__(self):
            validate(self)

    assert K(3, 1).n == 3
    with pytest.raises(SpecError, match="^n: must be >= 1, got 0$"):
        K(0)
    with pytest.raises(SpecError, match="^x: expected a number, got str"):
        K(1, "a")
    with pytest.raises(SpecError, match="^--spec: n: must be >= 1"):
        parse(K, {"n": 0}, where="--spec")


@dataclass(frozen=True)
class _Labels:
    benchmark: str


@dataclass(frozen=True)
class _File:
    labels: _Labels
    top1: float


def test_ignore_unknown_reads_the_fields_one_step_needs():
    got = parse(
        _File,
        {"labels": {"benchmark": "b", "pool": "p"}, "top1": 1, "extra": []},
        "e.json",
        ignore_unknown=True,
    )
    assert got == _File(_Labels("b"), 1.0)
    with pytest.raises(SpecError, match="^e.json: labels.benchmark: missing"):
        parse(_File, {"labels": {}, "top1": 1}, "e.json", ignore_unknown=True)
    with pytest.raises(SpecError, match="extra: unknown key"):
        parse(_File, {"labels": {"benchmark": "b"}, "top1": 1, "extra": 1}, "e.json")


def test_unresolvable_annotations_are_a_programming_error():
    @dataclass(frozen=True)
    class Local:
        x: _Nowhere  # noqa: F821

    with pytest.raises(TypeError, match="does not resolve"):
        parse(Local, {"x": 1})
