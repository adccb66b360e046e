"""`rgd evaluate`: a router's routes on the real test set, scored against the test keys.

The router's scores rank the pool per question (rgd.metrics.rank); the test set's choices, keys
and confidence z-scores come from rgd.matrices (z under the training source's statistics, so
the Top-3 tie-break stays label-free).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .io import InputError, read_records, write_json
from .matrices import TestMatrices, load_test_set
from .metrics import EvalReport, evaluate


def validate_route(rec: dict) -> None:
    if not isinstance(rec.get("id"), str) or not rec["id"]:
        raise ValueError("id: missing or not a string")
    scores = rec.get("scores")
    if not isinstance(scores, dict):
        raise ValueError("scores: missing or not an object of expert -> score")
    for e, v in scores.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise ValueError(f"scores.{e}: expected a number, got {v!r}")


def route_scores(path: str | Path, ids: list[str], experts: list[str]) -> np.ndarray:
    """(n, m) router scores of `experts` for `ids` from a routes file (rgd route)."""
    recs = read_records(path, validate_route)
    qi = {q: i for i, q in enumerate(ids)}
    S = np.full((len(ids), len(experts)), np.nan)
    for lineno, r in recs:
        i = qi.get(r["id"])
        if i is None:
            raise InputError(
                path, lineno, "id", f"{r['id']!r} is not in the test set: is this the right file?"
            )
        missing = [e for e in experts if e not in r["scores"]]
        if missing:
            raise InputError(path, lineno, "scores", f"no score for expert {missing[0]!r}")
        S[i] = [r["scores"][e] for e in experts]
    unrouted = [q for q, row in zip(ids, S) if np.isnan(row).all()]
    if unrouted:
        raise InputError(path, None, "id", f"no route for {len(unrouted)} questions, e.g. {unrouted[:3]}")
    return S


def evaluate_routes(S: np.ndarray, test: TestMatrices, seed: int = 0, n_boot: int = 1000) -> EvalReport:
    """The pure step: every metric of `rgd.metrics.evaluate` for router scores S (n, m)."""
    return evaluate(S, test.choices, test.gold, test.z, models=test.experts, seed=seed, n_boot=n_boot)


def run(
    routes,
    questions,
    keys,
    responses: dict[str, str],
    stats,
    out,
    labels: dict | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> EvalReport:
    test = load_test_set(questions, keys, responses, stats)
    S = route_scores(routes, test.ids, test.experts)
    rep = evaluate_routes(S, test, seed, n_boot)
    write_json(out, {"labels": labels or {}, **rep.to_dict()})
    return rep
