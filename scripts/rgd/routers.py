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
import zipfile
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .io import InputError, write_json
from .records import PROVENANCE, read_provenance

SIGNALS = ("consensus", "correctness")


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
            what = (
                "consensus scores"
                if signal == "consensus"
                else "answer-key correctness (a query-answer router)"
            )
            raise ValueError(f"{who}: needs {what}; the training set has none")
        return t


class Router(ABC):
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

    @abstractmethod
    def fit(self, data: TrainingSet) -> Router:
        """Learn from `data` (each router takes the fields it needs); return self."""

    @abstractmethod
    def route(self, X: np.ndarray) -> np.ndarray:
        """(n, m) scores for the questions X (n, d): higher = better, pool order."""

    def diagnostics(self, X: np.ndarray) -> dict[str, Any]:
        """Per-question details of `route(X)`: {name: array or list of length n}; none by default."""
        return {}

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the fitted router's own artifact into `directory`."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Router:
        """A fitted router from the artifact `save` wrote."""


def make(name: str, params: dict | None = None, seed: int = 0, n_jobs: int | None = None) -> Router:
    """An unfitted router of kind `name`; bad or unknown params raise ValueError here, before any data.
    `seed` and `n_jobs` (the threads a router that fits in parallel may use; never changes the
    result) reach the routers that take them, unless `params` sets them."""
    k = kind(name)
    p = dict(params or {})
    if "signal" in p:
        raise ValueError(f"signal: set by the router kind ({name!r} learns from {k.signal})")
    cls = k.router_class()
    takes = inspect.signature(cls).parameters
    if not any(t.kind == t.VAR_KEYWORD for t in takes.values()):
        known = sorted(set(takes) - {"signal"})
        unknown = sorted(set(p) - set(known))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown parameter of {name}; known: {', '.join(known)}")
    if "seed" in takes:
        p.setdefault("seed", seed)
    if "n_jobs" in takes and n_jobs is not None:
        p.setdefault("n_jobs", n_jobs)
    try:
        return cls(signal=k.signal, **p)
    except TypeError as e:  # an unknown keyword, or a value of the wrong type
        raise ValueError(f"{name}: {e}") from None


def check_params(name: str, params: dict | None = None, seed: int = 0) -> None:
    """Validate a router's config without data (what the workflow's config check calls)."""
    make(name, params, seed)


def train(name: str, params: dict | None, seed: int, data: TrainingSet, n_jobs: int | None = None) -> Router:
    k = kind(name)
    if k.needs_keys and data.correct is None:
        raise ValueError(f"router {name!r} is a query-answer router: it needs the training source's keys")
    if not k.needs_keys and data.correct is not None:
        raise ValueError(f"router {name!r} is query-only: it must not be given answer keys")
    return make(name, params, seed, n_jobs).fit(data)


def save(
    router: Router, name: str, directory: Path, experts: list[str], embedder: dict | None, source: dict
) -> None:
    if router.kind != name:
        raise ValueError(f"save: the router is of kind {router.kind!r}, not {name!r}")
    directory = Path(directory)
    router.save(directory)  # the artifact first: provenance.json marks a complete directory
    write_json(
        directory / PROVENANCE, {"kind": name, "experts": experts, "embedder": embedder, "source": source}
    )


def load(directory: Path) -> tuple[Router, dict]:
    """(router, provenance dict) for any router kind saved by `save`; an unreadable or
    inconsistent directory is an InputError naming the file."""
    directory = Path(directory)
    prov, data = read_provenance(directory)
    path = directory / PROVENANCE
    if prov.kind not in REGISTRY:
        raise InputError(path, None, "kind", f"unknown router kind {prov.kind!r}; known: {', '.join(KINDS)}")
    try:
        router = REGISTRY[prov.kind].router_class().load(directory)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        # artifact parsing only (no routing happens here): a damaged or foreign directory
        raise InputError(
            directory, None, None, f"unreadable router artifact ({type(e).__name__}: {e})"
        ) from None
    if router.kind != prov.kind:
        raise InputError(path, None, "kind", f"{prov.kind!r}, but the artifact holds {router.kind!r}")
    n = len(router.experts_) if hasattr(router, "experts_") else router.n_models
    if n != len(prov.experts):
        raise InputError(
            path, None, "experts", f"lists {len(prov.experts)} experts, the router's arrays have {n}"
        )
    return router, data


def scores(router: Router, X: np.ndarray) -> np.ndarray:
    return router.route(X)


def diagnostics(router: Router, X: np.ndarray) -> dict[str, list]:
    """The router's per-question diagnostics as JSON-ready lists: Python values, and None for a
    missing one (a NaN distance, an empty subject name)."""

    def plain(v):
        v = v.item() if isinstance(v, np.generic) else v
        return None if v == "" or (isinstance(v, float) and v != v) else v

    return {
        name: [plain(v) for v in (values.tolist() if isinstance(values, np.ndarray) else values)]
        for name, values in router.diagnostics(X).items()
    }
