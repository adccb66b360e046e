"""docs/METHOD.md §9 inference, vectorised over a block of questions: one float32 matrix product against every
subject representative and centroid, then each question's k nearest centroids among its subject's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clustering import EPS
from .config import CascalConfig

# Per-question diagnostics (Cascal.diagnostics): name -> what it holds.
DIAGNOSTICS = {
    "predicted_subject": "subject the question was routed to ('' when the router has none)",
    "nearest_cluster": "id of the nearest centroid of that subject (None when no centroid was used)",
    "nearest_distance": "cosine distance to it (NaN when none)",
    "used_fallback": "the global scores entered the blend (distance ramp, or no centroid at all)",
    "fallback_alpha": "their share: 0 none, 1 only the global scores",
    "n_centroids_used": "nearest centroids blended (<= k_nearest)",
}


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cluster_model_scores(cfg: CascalConfig, rankings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-cluster model scores s_i (K, m), usable (K,) bool) for §9 step 4.

    Sharp scoring is softmax(r / score_temp) unless r is non-finite or sums to <= 0, when the raw r is
    kept; a cluster whose scores are then non-finite or sum to <= 0 never contributes.
    """
    r = np.asarray(rankings, dtype=np.float64)
    finite = np.isfinite(r).all(axis=1)
    ok = finite & (np.where(finite[:, None], r, 0).sum(axis=1) > 0)
    s = r.copy()
    if cfg.sharp_scoring and ok.any():
        s[ok] = _softmax_rows(r[ok] / cfg.score_temp)
    usable = np.isfinite(s).all(axis=1) & (np.where(np.isfinite(s), s, 0).sum(axis=1) > 0)
    return s, usable


@dataclass(frozen=True)
class RoutingTables:
    """Everything routing needs, derived deterministically from a fitted router's arrays."""

    bank: np.ndarray  # (S + K, d) float32: subject representatives, then centroids
    reps: np.ndarray  # (S, d) view of the representatives
    cluster_subject: np.ndarray  # (K,) int
    by_subject: tuple[np.ndarray, ...]  # cluster indices of each subject, ascending
    scores: np.ndarray  # (K, m)
    usable: np.ndarray  # (K,) bool
    global_scores: np.ndarray  # (m,)

    @classmethod
    def build(cls, cfg, reps, centroids, cluster_subject, rankings, global_scores) -> RoutingTables:
        owner = np.asarray(cluster_subject, np.int64)
        s, usable = cluster_model_scores(cfg, rankings)
        bank = np.ascontiguousarray(np.concatenate([reps, centroids]).astype(np.float32))
        return cls(
            bank,
            bank[: len(reps)],
            owner,
            tuple(np.flatnonzero(owner == j) for j in range(len(reps))),
            s,
            usable,
            np.asarray(global_scores, np.float64),
        )


def route_block(
    cfg: CascalConfig, t: RoutingTables, X: np.ndarray, diagnose: bool
) -> tuple[np.ndarray, dict]:
    """(P (n, m) float64: the blended scores of §9 step 6, diagnostics or {}) for one block of questions."""
    X = np.asarray(X, dtype=np.float32)
    subj, dist = _subjects_and_distances(cfg, t, X)
    near, d_k = _nearest_centroids(t, subj, dist, cfg.k_nearest)
    valid = near >= 0
    n_used = valid.sum(axis=1)
    has = n_used > 0
    P = _cluster_blend(cfg, t, near, d_k, valid, has)
    d_near = np.where(has, d_k[:, 0], np.nan)
    P, alpha, far = _global_fallback(cfg, t, P, d_near, has)
    if not diagnose:
        return P, {}
    return P, {
        "subject": subj,
        "nearest_cluster": np.where(has, near[:, 0], -1),
        "nearest_distance": d_near,
        "used_fallback": far | ~has,
        "fallback_alpha": alpha,
        "n_centroids_used": n_used,
    }


def _subjects_and_distances(
    cfg: CascalConfig, t: RoutingTables, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(subject of each question (n,), -1 when there is none; cosine distances to every centroid (n, K))."""
    n, S, K = len(X), len(t.reps), len(t.cluster_subject)
    # One pass over X: similarities to every representative and centroid (unit rows), divided by
    # the query norm afterwards (no normalised copy of X).
    inv_norm = 1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)), EPS)
    sims = X @ t.bank.T
    dist = 1.0 - sims[:, S:].astype(np.float64) * inv_norm[:, None]
    if cfg.two_stage and S:
        subj = np.argmax(sims[:, :S], axis=1)  # ties: first subject (the norm does not change the argmax)
    elif K:
        subj = t.cluster_subject[np.argmin(dist, axis=1)]
    else:
        subj = np.full(n, -1)
    return subj, dist


def _nearest_centroids(
    t: RoutingTables, subj: np.ndarray, dist: np.ndarray, k_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n, k_max), -1 where unused; distances (n, k_max), inf where unused) of each question's k
    nearest centroids among its subject's, nearest first."""
    n, S, K = len(subj), len(t.reps), len(t.cluster_subject)
    near = np.full((n, k_max), -1, dtype=np.int64)
    d_k = np.full((n, k_max), np.inf)
    present = np.flatnonzero(np.bincount(subj[subj >= 0], minlength=S)) if K else ()
    for s in present:  # (np.unique would import numpy.ma: start-up time of `rgd route`)
        cand = t.by_subject[s]
        if not len(cand):
            continue
        rows = np.flatnonzero(subj == s)
        d_s = dist[np.ix_(rows, cand)]
        k = min(k_max, len(cand))
        best = np.argsort(d_s, axis=1, kind="stable")[:, :k]  # stable: ties keep cluster order
        near[rows, :k] = cand[best]
        d_k[rows, :k] = np.take_along_axis(d_s, best, axis=1)
    return near, d_k


def _cluster_blend(
    cfg: CascalConfig, t: RoutingTables, near: np.ndarray, d_k: np.ndarray, valid: np.ndarray, has: np.ndarray
) -> np.ndarray:
    """(n, m) sum of the nearest clusters' model scores, weighted by a softmax over -distance."""
    n, m, K, k_max = len(near), len(t.global_scores), len(t.cluster_subject), cfg.k_nearest
    logits = np.where(valid, -d_k / cfg.distance_temp, -np.inf)
    logits[~has] = 0.0  # rows with no centroid are replaced by the global scores later
    a = _softmax_rows(logits) if k_max else np.zeros((n, 0))
    usable = np.zeros(valid.shape, dtype=bool)
    usable[valid] = t.usable[near[valid]]
    a = np.where(usable, a, 0.0)  # skipped clusters drop out, weights not renormalised
    return np.einsum("nk,nkm->nm", a, t.scores[np.where(valid, near, 0)]) if k_max and K else np.zeros((n, m))


def _global_fallback(
    cfg: CascalConfig, t: RoutingTables, P: np.ndarray, d_near: np.ndarray, has: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P with the global scores ramped in past the distance threshold and in place of rows without a
    centroid; the global share alpha (n,); the rows beyond the threshold (n,) bool)."""
    n = len(P)
    alpha = np.zeros(n)
    far = np.zeros(n, dtype=bool)
    if cfg.fallback:
        far = has & (d_near > cfg.distance_threshold)
        alpha = np.where(far, np.minimum((d_near - cfg.distance_threshold) / cfg.ramp_width, 1.0), 0.0)
        total = P.sum(axis=1, keepdims=True)
        Pn = np.divide(P, total, out=np.zeros_like(P), where=total > 0)
        g = t.global_scores
        gn = g / g.sum() if g.sum() > 0 else g
        P = np.where(far[:, None], (1.0 - alpha[:, None]) * Pn + alpha[:, None] * gn, P)
    P[~has] = t.global_scores
    alpha[~has] = 1.0
    return P, alpha, far
