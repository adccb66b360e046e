"""Steps B and C: per-(model, subject) skill centroids and their greedy cross-model merge.

Step B picks k in k_min..k_max by the cosine silhouette of a seeded scikit-learn k-means and falls
back to one centroid when no k is valid or the best silhouette is below the floor. The silhouette
is computed exactly from per-cluster sums instead of the n x n distance matrix: for unit rows,
sum_{j in c} (1 - <x_i, x_j>) = |c| - <x_i, S_c>, so a(i) and b(i) cost O(n*d*k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from .config import CascalConfig

EPS = 1e-9  # the original's l2_normalize floor on norms


def l2_normalize(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    norms = np.sqrt(np.einsum("...i,...i->...", X, X))
    return X / np.maximum(norms, EPS)[..., None]


def one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    """(k, n) float64 indicator matrix, so `one_hot(l, k) @ X` gives per-cluster sums."""
    out = np.zeros((k, len(labels)))
    out[labels, np.arange(len(labels))] = 1.0
    return out


def cosine_silhouette(X: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean cosine silhouette of unit rows `X`; None where scikit-learn would refuse (2 <= k <= n-1).

    Same definition as sklearn's silhouette_score(metric="cosine"): singletons score 0, a(i) excludes
    i itself. Differences are float rounding only (sklearn also clips each distance to [0, 2]).
    """
    n = len(X)
    _, inv = np.unique(labels, return_inverse=True)
    k = int(inv.max()) + 1 if n else 0
    if not 2 <= k <= n - 1:
        return None
    counts = np.bincount(inv, minlength=k).astype(np.float64)
    dots = X @ (one_hot(inv, k) @ X).T  # (n, k): <x_i, S_c>
    self_dist = 1.0 - np.einsum("ij,ij->i", X, X)  # ~0; included in the own-cluster sum
    dist_sums = counts[None, :] - dots
    rows = np.arange(n)
    own = counts[inv]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (dist_sums[rows, inv] - self_dist) / (own - 1.0)
        means = dist_sums / counts[None, :]
        means[rows, inv] = np.inf
        b = means.min(axis=1)
        s = (b - a) / np.maximum(a, b)
    s = np.where(own > 1, np.nan_to_num(s), 0.0)
    return float(s.mean())


def _silhouette(cfg: CascalConfig, X: np.ndarray, labels: np.ndarray) -> float | None:
    if cfg.silhouette == "linear":
        return cosine_silhouette(X, labels)
    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= len(X) - 1:
        return None
    return float(silhouette_score(X, labels, metric="cosine"))


@dataclass(frozen=True)
class SkillFit:
    """Centroids of one model's proficient questions in one subject."""

    centroids: np.ndarray  # (k, d) float64, unit rows
    seeds: np.ndarray  # (k,) int: member points per centroid (unweighted)
    labels: np.ndarray  # (k,) int: the k-means label each centroid came from (for its id "c{j}")
    k: int  # 1 when the single-centroid fallback was used
    silhouette: float | None


def _single(X: np.ndarray, w: np.ndarray | None, silhouette: float | None = None) -> SkillFit:
    mean = np.average(X, axis=0, weights=w) if w is not None else X.mean(axis=0)
    return SkillFit(l2_normalize(mean[None, :]), np.array([len(X)]), np.array([0]), 1, silhouette)


def _n_unique_rows(X: np.ndarray, cap: int) -> int:
    """Number of distinct rows after rounding to 12 decimals (as the original), capped at `cap`.

    Fast path: project every row on a fixed vector. Projections further apart than the largest
    shift rounding can cause belong to distinct rounded rows, so >= cap separated groups settle it
    in one pass; otherwise (near-duplicate data) count exactly.
    """
    w = np.random.default_rng(12345).standard_normal(X.shape[1])  # any fixed vector; the count is exact
    p = np.sort(X @ w)
    slack = 2 * 5e-13 * np.abs(w).sum() + 1e-9 * max(1.0, float(np.abs(p).max()))
    if 1 + int((np.diff(p) > slack).sum()) >= cap:
        return cap
    R = np.ascontiguousarray(np.round(X, 12) + 0.0)  # + 0.0 folds -0.0 into 0.0
    keys = R.view(np.dtype((np.void, R.dtype.itemsize * R.shape[1]))).ravel()
    return min(len(np.unique(keys)), cap)


def fit_skill_centroids(cfg: CascalConfig, X: np.ndarray, weights: np.ndarray | None) -> SkillFit:
    """Step B on unit rows `X` (float64) with per-row weights (None = unweighted variant)."""
    n = len(X)
    w = None
    if weights is not None:
        total = weights.sum()
        w = weights * (n / total) if total > 0 else np.ones(n)
    if n <= 1:
        return _single(X, None)
    n_unique = _n_unique_rows(X, cfg.k_max + 1)
    if n_unique == 1:
        return _single(X, None)
    max_k = max(min(cfg.k_max, n - 1, n_unique - 1), 1)
    Xk = X.astype(np.float32) if cfg.kmeans_float32 else X
    best_score, best_labels, best_k = -np.inf, None, 0
    for k in range(cfg.k_min, max_k + 1):
        km = KMeans(n_clusters=k, n_init=cfg.kmeans_n_init, max_iter=cfg.kmeans_max_iter, random_state=cfg.random_state)
        labels = km.fit_predict(Xk, sample_weight=w)
        score = _silhouette(cfg, X, labels)
        if score is not None and score > best_score:  # strict: the smallest k wins ties
            best_score, best_labels, best_k = score, labels, k
    if best_labels is None or best_score < cfg.silhouette_floor:
        return _single(X, w, None if best_labels is None else best_score)
    ww = np.ones(n) if w is None else w
    hot = one_hot(best_labels, best_k)
    seeds = hot.sum(axis=1).astype(np.int64)
    # An empty k-means label would give a zero centroid in the original; it is not emitted here.
    kept = np.flatnonzero(seeds > 0)
    sums = (hot[kept] * ww[None, :]) @ X
    mass = (hot[kept] * ww[None, :]).sum(axis=1)
    return SkillFit(l2_normalize(sums / mass[:, None]), seeds[kept], kept, best_k, best_score)


@dataclass(frozen=True)
class Merge:
    """Step C result: `groups[r]` lists the original centroid indices merged into root `roots[r]`."""

    roots: np.ndarray  # (r,) int, in the original's output order
    groups: list[np.ndarray]
    centroids: np.ndarray  # (r, d)
    seeds: np.ndarray  # (r,)

    @property
    def n_merged(self) -> int:
        return int(sum(len(g) - 1 for g in self.groups))


def merge_centroids(C: np.ndarray, seeds: np.ndarray, threshold: float) -> Merge:
    """Greedy merge of centroids closer than `threshold` (cosine distance), in insertion order.

    For each not-yet-merged c1, scan the later not-yet-merged c2: when close, the one with fewer seed
    points is redirected to the other (c1 -> c2 ends c1's scan; equal counts keep c1). Redirect chains
    lead to a root, whose group becomes one centroid: the seed-weighted mean of the group's original
    vectors, renormalised; the root keeps its id and the summed seed count.
    """
    k = len(C)
    if threshold <= 0 or k <= 1:
        groups = [np.array([i]) for i in range(k)]
        return Merge(np.arange(k), groups, C.copy(), seeds.copy())
    Cn = l2_normalize(C)
    close = (1.0 - Cn @ Cn.T) < threshold
    into = np.full(k, -1)
    for i in range(k):
        if into[i] >= 0:
            continue
        for j in range(i + 1, k):
            if into[j] >= 0 or not close[i, j]:
                continue
            if seeds[j] > seeds[i]:
                into[i] = j
                break
            into[j] = i
    root_of = np.arange(k)
    for i in range(k):
        r = i
        while into[r] >= 0:
            r = into[r]
        root_of[i] = r
    # Groups appear in the order their root is first reached while scanning 0..k-1 (the original's
    # defaultdict order), which decides argmax ties in step D and the pair order in step F.
    roots = np.array(list(dict.fromkeys(root_of.tolist())), dtype=np.int64)
    groups = [np.flatnonzero(root_of == r) for r in roots]
    # A group of one keeps its vector untouched, as in the original.
    merged = np.stack(
        [C[g[0]] if len(g) == 1 else l2_normalize((seeds[g, None] * C[g]).sum(axis=0) / seeds[g].sum()) for g in groups]
    )
    out_seeds = np.array([int(seeds[g].sum()) for g in groups], dtype=np.int64)
    return Merge(roots, groups, merged, out_seeds)
