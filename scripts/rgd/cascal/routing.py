"""§9 inference, vectorised over questions: one float32 matmul against every subject representative
and centroid, then per-question masking to the chosen subject."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clustering import EPS
from .config import CascalConfig


@dataclass(frozen=True)
class RouteResult:
    scores: np.ndarray  # (n, m) float64: the blended P of §9 step 6 (pool order)
    predicted_subject: np.ndarray  # (n,) str; "" when the router has no subject at all
    nearest_cluster: np.ndarray  # (n,) int index into `cluster_ids`; -1 when no centroid was used
    nearest_distance: np.ndarray  # (n,) float: cosine distance to that centroid; NaN when none
    used_fallback: np.ndarray  # (n,) bool: global scores entered P (ramp, or no centroid at all)
    fallback_alpha: np.ndarray  # (n,) float: the global share (1.0 when only global scores were used)
    n_centroids_used: np.ndarray  # (n,) int: nearest centroids blended (<= k_nearest)
    cluster_ids: tuple[str, ...]

    def nearest_cluster_ids(self) -> list[str | None]:
        return [self.cluster_ids[c] if c >= 0 else None for c in self.nearest_cluster]


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
    """Everything `route` needs, derived deterministically from a fitted router's arrays."""

    bank: np.ndarray  # (S + K, d) float32: subject representatives, then centroids
    n_subjects: int
    cluster_subject: np.ndarray  # (K,) int
    scores: np.ndarray  # (K, m)
    usable: np.ndarray  # (K,) bool
    global_scores: np.ndarray  # (m,)

    @classmethod
    def build(cls, cfg, reps, centroids, cluster_subject, rankings, global_scores) -> RoutingTables:
        bank = np.ascontiguousarray(np.concatenate([reps, centroids]).astype(np.float32))
        s, usable = cluster_model_scores(cfg, rankings)
        return cls(
            bank, len(reps), np.asarray(cluster_subject, np.int64), s, usable, np.asarray(global_scores, np.float64)
        )


def route_batch(cfg: CascalConfig, t: RoutingTables, X: np.ndarray, subjects: list[str], cluster_ids) -> RouteResult:
    X = np.asarray(X, dtype=np.float32)
    n, m, K = len(X), len(t.global_scores), len(t.cluster_subject)
    # Cosine similarity against unit rows, dividing by the query norm afterwards (no copy of X).
    norms = np.maximum(np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64)), EPS)
    sims = (X @ t.bank.T).astype(np.float64) / norms[:, None]
    dist = 1.0 - sims[:, t.n_subjects :]

    if cfg.two_stage and t.n_subjects:
        subj = np.argmax(sims[:, : t.n_subjects], axis=1)  # ties: first subject
    elif K:
        subj = t.cluster_subject[np.argmin(dist, axis=1)]
    else:
        subj = np.full(n, -1)
    # k nearest centroids of the chosen subject; a stable sort keeps ties in cluster order.
    k = min(cfg.k_nearest, K)
    masked = np.where(t.cluster_subject[None, :] == subj[:, None], dist, np.inf)
    near = np.argsort(masked, axis=1, kind="stable")[:, :k]
    d_k = np.take_along_axis(masked, near, axis=1)
    valid = np.isfinite(d_k)
    n_used = valid.sum(axis=1)
    has = n_used > 0

    logits = np.where(valid, -d_k / cfg.distance_temp, -np.inf)
    logits[~has] = 0.0  # rows with no centroid are replaced by the global scores below
    a = _softmax_rows(logits) if k else np.zeros((n, 0))
    a = np.where(valid & t.usable[near], a, 0.0)  # skipped clusters drop out, weights not renormalised
    P = np.einsum("nk,nkm->nm", a, t.scores[near]) if k else np.zeros((n, m))

    d_near = np.where(has, d_k[:, 0] if k else np.nan, np.nan)
    alpha = np.zeros(n)
    if cfg.fallback:
        far = has & (d_near > cfg.distance_threshold)
        alpha = np.where(far, np.minimum((d_near - cfg.distance_threshold) / cfg.ramp_width, 1.0), 0.0)
        total = P.sum(axis=1, keepdims=True)
        Pn = np.divide(P, total, out=np.zeros_like(P), where=total > 0)
        g = t.global_scores
        gn = g / g.sum() if g.sum() > 0 else g
        P = np.where(far[:, None], (1.0 - alpha[:, None]) * Pn + alpha[:, None] * gn, P)
    else:
        far = np.zeros(n, dtype=bool)
    P[~has] = t.global_scores
    alpha[~has] = 1.0
    names = np.array(list(subjects) + [""])
    return RouteResult(
        scores=P,
        predicted_subject=names[np.where(subj >= 0, subj, len(subjects))],
        nearest_cluster=np.where(has, near[:, 0] if k else -1, -1),
        nearest_distance=d_near,
        used_fallback=far | ~has,
        fallback_alpha=alpha,
        n_centroids_used=n_used,
        cluster_ids=tuple(cluster_ids),
    )
