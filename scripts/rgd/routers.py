"""Every router kind through one door: the registry of kinds, the training data every router takes,
and train / save / load / route / diagnostics.

The registry (`REGISTRY`) is the one list of router kinds: the config schema's enum, the Snakefile's
key gating (`NEEDS_KEYS`) and the CLI derive from it (tests/test_routers.py checks the schema).
Importing this module is cheap (numpy only; no scikit-learn, threadpoolctl or torch), because the
Snakefile imports it at parse time: a kind's class is imported only when a router is built.

Query-only routers (CASCAL) learn from questions, embeddings and the pool's consensus; query-answer
routers (CASCAL-GT, kNN, MLP, MF, best single) learn from answer-key correctness, so only they get
the training source's key file.

Every router is an estimator (scikit-learn's shape, `Router`): hyperparameters are keyword arguments
of the constructor, validated there (so a config is checked before any job runs: `check_params`),
`fit(TrainingSet)` returns the router, `route(X)` returns (n, m) scores (higher = better, pool order),
`diagnostics(X)` per-question details (CASCAL: subject, nearest cluster, distance, fallback; others
none). `save(directory)` / `load(directory)` write and read the kind's own artifact; `save` and `load`
below add the provenance record and pick the class, for any kind.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .io import InputError, read_json, write_json

SIGNALS = ("consensus", "correctness")
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class Kind:
    """A router kind: its class ("module:Name", imported on first use) and the signal it learns from."""

    name: str
    cls: str
    signal: str  # "consensus": query-only; "correctness": needs the training source's answer keys

    @property
    def needs_keys(self) -> bool:
        return self.signal == "correctness"

    def router_class(self) -> type:
        module, _, name = self.cls.partition(":")
        return getattr(importlib.import_module(module), name)


REGISTRY: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("cascal", "rgd.cascal.estimator:Cascal", "consensus"),
        Kind("cascal-gt", "rgd.cascal.estimator:Cascal", "correctness"),
        Kind("knn", "rgd.baselines:KNNRouter", "correctness"),
        Kind("mlp", "rgd.baselines:MLPRouter", "correctness"),
        Kind("mf", "rgd.baselines:MFRouter", "correctness"),
        Kind("best-single", "rgd.baselines:BestSingleRouter", "correctness"),
    )
}
KINDS = tuple(REGISTRY)
NEEDS_KEYS = frozenset(k.name for k in REGISTRY.values() if k.needs_keys)
QUERY_ONLY = tuple(k for k in KINDS if k not in NEEDS_KEYS)
QUERY_ANSWER = tuple(k for k in KINDS if k in NEEDS_KEYS)


def kind(name: str) -> Kind:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown router kind {name!r}; known: {', '.join(KINDS)}") from None


def needs_keys(name: str) -> bool:
    return kind(name).needs_keys


def kind_of(router: Router) -> str | None:
    """The registered kind of a router object (class and signal), None if it has none."""
    path = f"{type(router).__module__}:{type(router).__qualname__}"
    return next((k.name for k in REGISTRY.values() if k.cls == path and k.signal == router.signal), None)


@dataclass(frozen=True)
class TrainingSet:
    """What every router's `fit` takes; each router uses the fields it needs.

    Rows are questions, matrix columns follow `experts` (the pool, in order). `correct` is the
    answer-key correctness (0/1, or a score in [0, 1]) and is None for query-only training: a
    query-only router never sees keys. Each router checks the fields it uses.
    """

    X: np.ndarray  # (n, d) question embeddings
    experts: list[str]  # (m,) pool model names
    subjects: list[str] | None = None  # (n,) category of each question
    choices: np.ndarray | None = None  # (n, m) int option index, -1 = abstention
    consensus: np.ndarray | None = None  # (n, m) consensus scores (rgd.consensus)
    correct: np.ndarray | None = None  # (n, m) answer-key correctness; None = query-only
    ids: list[str] | None = None  # (n,) question ids (CASCAL records each cluster's members)
    embedder: dict | None = None  # how X was made (rgd.embed), recorded in the artifact

    def target(self, signal: str, who: str) -> np.ndarray:
        """The (n, m) matrix a router learns from: consensus or answer-key correctness."""
        t = self.consensus if signal == "consensus" else self.correct
        if t is None:
            what = "consensus scores" if signal == "consensus" else "answer-key correctness (a query-answer router)"
            raise ValueError(f"{who}: needs {what}; the training set has none")
        return t


class Router:
    """The estimator interface every router implements (see the module docstring)."""

    signal: str
    diagnostic_fields: ClassVar[tuple[str, ...]] = ()

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments: `type(r)(**r.get_params())` rebuilds an unfitted copy."""
        names = [p for p in inspect.signature(type(self)).parameters if p != "self"]
        return {p: getattr(self, p) for p in names}

    @property
    def kind(self) -> str | None:
        return kind_of(self)

    def fit(self, data: TrainingSet) -> Router:
        raise NotImplementedError

    def route(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def diagnostics(self, X: np.ndarray) -> dict[str, Any]:
        """Per-question details of `route(X)`: {name: array or list of length n}; none by default."""
        return {}

    def save(self, directory: str | Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> Router:
        raise NotImplementedError


def make(name: str, params: dict | None = None, seed: int = 0) -> Router:
    """An unfitted router of kind `name`; bad or unknown params raise ValueError here, before any data."""
    k = kind(name)
    p = dict(params or {})
    if "signal" in p:
        raise ValueError(f"signal: set by the router kind ({name!r} learns from {k.signal})")
    cls = k.router_class()
    if "seed" in inspect.signature(cls).parameters:  # the router spec's seed, unless params set one
        p.setdefault("seed", seed)
    try:
        return cls(signal=k.signal, **p)
    except TypeError as e:  # an unknown keyword, or a value of the wrong type
        raise ValueError(f"{name}: {e}") from None


def check_params(name: str, params: dict | None = None, seed: int = 0) -> None:
    """Validate a router's config without data (what the workflow's config check calls)."""
    make(name, params, seed)


def train(name: str, params: dict | None, seed: int, data: TrainingSet) -> Router:
    k = kind(name)
    if k.needs_keys and data.correct is None:
        raise ValueError(f"router {name!r} is a query-answer router: it needs the training source's keys")
    if not k.needs_keys and data.correct is not None:
        raise ValueError(f"router {name!r} is query-only: it must not be given answer keys")
    return make(name, params, seed).fit(data)


def save(router: Router, name: str, directory: Path, experts: list[str], embedder: dict | None,
         source: dict) -> None:
    if router.kind != name:
        raise ValueError(f"save: the router is of kind {router.kind!r}, not {name!r}")
    directory = Path(directory)
    router.save(directory)  # the artifact first: provenance.json marks a complete directory
    write_json(directory / PROVENANCE, {"kind": name, "experts": experts, "embedder": embedder, "source": source})


def load(directory: Path) -> tuple[Router, dict]:
    """(router, provenance) for any router kind saved by `save`."""
    directory = Path(directory)
    prov = read_json(directory / PROVENANCE)
    name = prov.get("kind") if isinstance(prov, dict) else None
    if name not in REGISTRY:
        raise InputError(directory / PROVENANCE, None, "kind", f"unknown router kind {name!r}")
    router = REGISTRY[name].router_class().load(directory)
    if router.kind != name:
        raise InputError(directory / PROVENANCE, None, "kind", f"{name!r}, but the artifact holds {router.kind!r}")
    return router, prov


def scores(router: Router, X: np.ndarray) -> np.ndarray:
    return router.route(X)


def diagnostics(router: Router, X: np.ndarray) -> dict[str, Any]:
    return router.diagnostics(X)


def consensus_matrices(rows: list[dict], ids: list[str], experts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(choices int (n, m) with -1 = abstention, consensus float (n, m)) from consensus rows."""
    qi = {q: i for i, q in enumerate(ids)}
    mi = {e: j for j, e in enumerate(experts)}
    choices = np.full((len(ids), len(experts)), -1, dtype=np.int64)
    cons = np.full((len(ids), len(experts)), np.nan)
    for r in rows:
        i, j = qi.get(r["id"]), mi.get(r["expert"])
        if i is None or j is None:
            continue
        choices[i, j] = -1 if r["choice"] is None else ord(r["choice"]) - 65
        cons[i, j] = r["consensus"]
    if np.isnan(cons).any():
        i, j = map(int, np.argwhere(np.isnan(cons))[0])
        raise ValueError(f"consensus: no row for question {ids[i]!r}, expert {experts[j]!r}")
    return choices, cons


def correctness(choices: np.ndarray, ids: list[str], keys: dict[str, str]) -> np.ndarray:
    missing = [q for q in ids if q not in keys]
    if missing:
        raise ValueError(f"keys: no answer key for {len(missing)} questions, e.g. {missing[:3]}")
    gold = np.array([ord(keys[q]) - 65 for q in ids], dtype=np.int64)
    return (choices == gold[:, None]).astype(np.float64)
