"""Train, save, load and apply every router kind through one door.

Query-only routers (CASCAL) see questions, embeddings and pool responses/consensus only.
Query-answer routers (CASCAL-GT, kNN, MLP, MF, best single) also need the training source's
answer keys. `NEEDS_KEYS` is the single source of truth the Snakefile uses to decide which
rules get a key file as input; a test checks the DAG against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import zipfile
import zlib

from . import baselines
from .cascal import Cascal, CascalConfig
from .io import InputError, write_json
from .matrices import consensus_matrices, correctness  # noqa: F401 - re-exported (they lived here)
from .records import PROVENANCE, read_provenance

QUERY_ONLY = ("cascal",)
QUERY_ANSWER = ("cascal-gt", "knn", "mlp", "mf", "best-single")
KINDS = QUERY_ONLY + QUERY_ANSWER
NEEDS_KEYS = frozenset(QUERY_ANSWER)


def needs_keys(kind: str) -> bool:
    if kind not in KINDS:
        raise ValueError(f"unknown router kind {kind!r}; known: {', '.join(KINDS)}")
    return kind in NEEDS_KEYS


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
    """(router, provenance dict) for any router kind saved by `save`; an unreadable or
    inconsistent directory is an InputError naming the file."""
    directory = Path(directory)
    prov, data = read_provenance(directory)
    path = directory / PROVENANCE
    if prov.kind not in KINDS:
        raise InputError(path, None, "kind", f"unknown router kind {prov.kind!r}; known: {', '.join(KINDS)}")
    try:
        router = Cascal.load(directory) if prov.kind in ("cascal", "cascal-gt") else baselines.load_router(directory)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        # artifact parsing only (no routing happens here): a damaged or foreign directory
        raise InputError(directory, None, None, f"unreadable router artifact ({type(e).__name__}: {e})") from None
    n = len(router.experts_) if hasattr(router, "experts_") else router.n_models
    if n != len(prov.experts):
        raise InputError(path, None, "experts", f"lists {len(prov.experts)} experts, the router's arrays have {n}")
    return router, data


def diagnostics(router, X: np.ndarray) -> dict[str, list]:
    """Per-question facts behind a ranking, as JSON-ready lists (empty for routers without any):
    CASCAL's predicted subject, nearest cluster (id), its cosine distance and whether the global
    fallback entered the scores."""
    if not isinstance(router, Cascal):
        return {}
    res = router.route(X)
    dist = [None if not np.isfinite(d) else float(d) for d in res.nearest_distance]
    return {
        "predicted_subject": [s or None for s in res.predicted_subject.tolist()],
        "nearest_cluster": res.nearest_cluster_ids(),
        "nearest_distance": dist,
        "used_fallback": [bool(b) for b in res.used_fallback],
    }


def scores(router, X: np.ndarray) -> np.ndarray:
    out = router.route(X)
    return out.scores if hasattr(out, "scores") else np.asarray(out)
