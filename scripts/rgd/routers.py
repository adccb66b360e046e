"""Train, save, load and apply every router kind through one door.

Query-only routers (CASCAL) see questions, embeddings and pool responses/consensus only.
Query-answer routers (CASCAL-GT, kNN, MLP, MF, best single) also need the training source's
answer keys. `NEEDS_KEYS` is the single source of truth the Snakefile uses to decide which
rules get a key file as input; a test checks the DAG against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import baselines
from .cascal import Cascal, CascalConfig
from .io import InputError, read_json, write_json

QUERY_ONLY = ("cascal",)
QUERY_ANSWER = ("cascal-gt", "knn", "mlp", "mf", "best-single")
KINDS = QUERY_ONLY + QUERY_ANSWER
NEEDS_KEYS = frozenset(QUERY_ANSWER)
PROVENANCE = "provenance.json"


def needs_keys(kind: str) -> bool:
    if kind not in KINDS:
        raise ValueError(f"unknown router kind {kind!r}; known: {', '.join(KINDS)}")
    return kind in NEEDS_KEYS


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


def make(kind: str, params: dict, seed: int):
    p = dict(params or {})
    if kind in ("cascal", "cascal-gt"):
        cfg = CascalConfig.from_dict({**p, "seed": seed, "signal": "correctness" if kind == "cascal-gt" else "consensus"})
        return Cascal(cfg)
    cls = {"knn": baselines.KNNRouter, "mlp": baselines.MLPRouter, "mf": baselines.MFRouter,
           "best-single": baselines.BestSingleRouter}[kind]
    import inspect

    if "seed" in inspect.signature(cls).parameters:
        p.setdefault("seed", seed)
    return cls(**p)


def train(kind: str, params: dict, seed: int, X: np.ndarray, ids: list[str], subjects: list[str],
          choices: np.ndarray, consensus: np.ndarray, experts: list[str], keys: dict[str, str] | None,
          embedder: dict | None):
    if needs_keys(kind) and keys is None:
        raise ValueError(f"router {kind!r} is a query-answer router: it needs the training source's keys")
    if not needs_keys(kind) and keys is not None:
        raise ValueError(f"router {kind!r} is query-only: it must not be given answer keys")
    router = make(kind, params, seed)
    if kind in ("cascal", "cascal-gt"):
        correct = correctness(choices, ids, keys) if keys is not None else None
        return router.fit(X, subjects, choices, consensus, experts, correct=correct, ids=ids, embedder=embedder)
    return router.fit(X, correctness(choices, ids, keys))


def save(router, kind: str, directory: Path, experts: list[str], embedder: dict | None, source: dict) -> None:
    directory = Path(directory)
    router.save(directory)
    write_json(directory / PROVENANCE, {"kind": kind, "experts": experts, "embedder": embedder, "source": source})


def load(directory: Path):
    """(router, provenance) for any router kind saved by `save`."""
    directory = Path(directory)
    prov = read_json(directory / PROVENANCE)
    kind = prov.get("kind")
    if kind in ("cascal", "cascal-gt"):
        return Cascal.load(directory), prov
    if kind in KINDS:
        return baselines.load_router(directory), prov
    raise InputError(directory / PROVENANCE, None, "kind", f"unknown router kind {kind!r}")


def scores(router, X: np.ndarray) -> np.ndarray:
    out = router.route(X)
    return out.scores if hasattr(out, "scores") else np.asarray(out)
