"""Steps B and C: per-(model, subject) skill centroids and their greedy cross-model merge.

Step B picks k in k_min..k_max by the cosine silhouette of a seeded scikit-learn k-means and falls
back to one centroid when no k is valid or the best silhouette is below the floor. By default the
k-means runs on the subject's top principal coordinates (`principal_rows`, made by the caller once
per subject); the silhouette and the centroids use the full rows.

Both computations are exact and cheaper than the original's calls:
* k-means: `KMeans(k).fit` per k repeats the same preparation (input checks, the tolerance from the
  per-feature variance, centring, squared norms), and k-means++ for k = 3, 4, 5 draws the same first
  centres (the same seed and number of local trials), so one k = 5 seeding holds the ones of 3 and 4.
  `_kmeans_fits` runs scikit-learn's own steps once each and gets the labels `KMeans(k).fit` would
  (tests/test_cascal.py checks them against KMeans; it falls back to KMeans if those steps move).
* silhouette: for unit rows, sum_{j in c} (1 - <x_i, x_j>) = |c| - <x_i, S_c>, so a(i) and b(i) cost
  O(n*d*k) instead of sklearn's n x n distance matrix (O(n^2*d)). The two differ by float rounding
  (~1e-15); with silhouette="sklearn" a choice that close (two candidates, or one and the floor,
  within `SKLEARN_MARGIN`) is made on sklearn's own scores, so the chosen k is always sklearn's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .config import CascalConfig

EPS = 1e-9  # the original's l2_normalize floor on norms
# Closer than this, two silhouettes (or one and the floor) are compared on sklearn's own scores. The
# cluster-sum silhouette differs from sklearn's by float rounding, ~1e-15 at n ~ 10^4 (benchmarks
# record the largest difference seen); the margin leaves six orders of magnitude.
SKLEARN_MARGIN = 1e-9


def l2_normalize(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    norms = np.sqrt(np.einsum("...i,...i->...", X, X))
    return X / np.maximum(norms, EPS)[..., None]


def principal_rows(X: np.ndarray, dims: int, seed: int, dtype=np.float32) -> np.ndarray | None:
    """The centred rows of X in their top `dims` principal directions, (n, dims) in `dtype`; None when
    that is no smaller than X (dims 0, or dims >= min(n, d)).

    Randomized range finder (Halko, Martinsson & Tropp 2011) with 10 extra columns, seeded: X is
    read twice in float32, against ~10-40 times per k by a k-means on X.
    Coordinates come from the small SVD of Q^T A (A ~ Q Q^T A = Q U S V^T, so A V ~ Q U S): no extra
    pass over X. k-means is translation-invariant, so centring changes no clustering.
    """
    n, d = X.shape
    if dims <= 0 or dims >= min(n, d):
        return None
    A = np.asarray(X, dtype=np.float32)
    A = A - A.mean(axis=0)
    omega = np.random.default_rng(seed).standard_normal((d, min(dims + 10, n)), dtype=np.float32)
    Q = np.linalg.qr(A @ omega)[0]  # (no power iteration: it cost 0.5 s at paper scale, same picks)
    U, s, _ = np.linalg.svd(Q.T @ A, full_matrices=False)
    return np.ascontiguousarray((Q @ (U[:, :dims] * s[:dims])).astype(dtype))


def cosine_silhouettes(X: np.ndarray, labelings: list[np.ndarray]) -> list[float | None]:
    """Mean cosine silhouette of unit rows `X` under each labelling; None where scikit-learn would
    refuse (2 <= k <= n-1).

    Same definition as sklearn's silhouette_score(metric="cosine"): singletons score 0, a(i) excludes
    i itself. Differences are float rounding only (sklearn also clips each distance to [0, 2]). All
    labellings share two passes over X: one for every cluster sum, one for every <x_i, S_c>.
    """
    n = len(X)
    invs = [np.unique(lab, return_inverse=True)[1].ravel() for lab in labelings]
    ks = [int(inv.max()) + 1 if n else 0 for inv in invs]
    valid = [i for i, k in enumerate(ks) if 2 <= k <= n - 1]
    out: list[float | None] = [None] * len(labelings)
    if not valid:
        return out
    offsets = np.cumsum([0] + [ks[i] for i in valid])
    hot = np.zeros((offsets[-1], n))
    for i, lo in zip(valid, offsets):
        hot[lo + invs[i], np.arange(n)] = 1.0
    dots_all = X @ (hot @ X).T  # (n, sum of k): <x_i, S_c> for every cluster of every labelling
    self_dist = 1.0 - np.einsum("ij,ij->i", X, X)  # ~0; included in the own-cluster sum
    rows = np.arange(n)
    for i, lo, hi in zip(valid, offsets[:-1], offsets[1:]):
        inv = invs[i]
        counts = np.bincount(inv, minlength=ks[i]).astype(np.float64)
        dist_sums = counts[None, :] - dots_all[:, lo:hi]
        own = counts[inv]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (dist_sums[rows, inv] - self_dist) / (own - 1.0)
            means = dist_sums / counts[None, :]
            means[rows, inv] = np.inf
            b = means.min(axis=1)
            s_i = (b - a) / np.maximum(a, b)
        out[i] = float(np.where(own > 1, np.nan_to_num(s_i), 0.0).mean())
    return out


def sklearn_silhouette(X: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    if not 2 <= len(np.unique(labels)) <= len(X) - 1:
        return None
    return float(silhouette_score(X, labels, metric="cosine"))


def _pick(cfg: CascalConfig, X: np.ndarray, labelings: list[np.ndarray]) -> tuple[int | None, float | None]:
    """(index of the chosen labelling or None, its silhouette): the first best score (smallest k wins
    ties), as the original's strict `>` scan; scores below the floor are decided by the caller."""
    scores = cosine_silhouettes(X, labelings)
    if cfg.silhouette == "sklearn" and _too_close(scores, cfg.silhouette_floor):
        scores = [sklearn_silhouette(X, lab) for lab in labelings]
    best, best_score = None, -np.inf
    for i, score in enumerate(scores):
        if score is not None and score > best_score:
            best, best_score = i, score
    return best, (None if best is None else float(best_score))


def _too_close(scores: list[float | None], floor: float) -> bool:
    vals = sorted([s for s in scores if s is not None] + [floor])
    return any(b - a <= SKLEARN_MARGIN for a, b in zip(vals, vals[1:]))


def _kmeans_fits(
    cfg: CascalConfig, X: np.ndarray, w: np.ndarray | None, ks: range
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(labels, centres) of `KMeans(n_clusters=k, ...).fit(X, sample_weight=w)` for every k in `ks`,
    one thread. X is consumed (centred in place): pass a copy."""
    try:
        from sklearn.cluster._k_means_common import _is_same_clustering
        from sklearn.cluster._kmeans import _kmeans_plusplus, _kmeans_single_lloyd, _tolerance
        from sklearn.utils.extmath import row_norms
        from sklearn.utils.validation import _check_sample_weight
    except ImportError:  # another scikit-learn: the public estimator, same labels, more work
        return [_kmeans_estimator(cfg, X, w, k) for k in ks]
    X_mean = X.mean(axis=0)  # (KMeans computes it after the tolerance; the copy is not changed between)
    # What KMeans.fit does before its first seeding, once: a C-ordered copy (the caller's), the
    # tolerance from the uncentred copy, weights in X's dtype, centring, squared row norms.
    X = np.ascontiguousarray(X)
    tol = _tolerance(X, 1e-4)  # KMeans' default tol
    sw = _check_sample_weight(w, X, dtype=X.dtype)
    X -= X_mean
    # k-means++ on float32 rows computes distances on float64 copies of row blocks, and with float32
    # norms given (KMeans passes those) it recomputes the float64 norms of every block at every call;
    # the same norms computed once (the per-row sums are those of the blocks, tested) are used instead.
    x_sq = row_norms(X if X.dtype == np.float64 else X.astype(np.float64), squared=True)
    n_init = 1 if cfg.kmeans_n_init == "auto" else cfg.kmeans_n_init  # "auto" with k-means++ is one run

    def seeding(k: int, rs: np.random.RandomState) -> np.ndarray:
        return _kmeans_plusplus(X, k, random_state=rs, x_squared_norms=x_sq, sample_weight=sw)[0]

    # A k-means++ seeding of k centres is a prefix of one of more centres when both take the same
    # number of local trials (2 + int(log k)) from the same fresh RandomState.
    def trials(k: int) -> int:
        return 2 + int(np.log(k))

    largest = {k: max(j for j in ks if trials(j) == trials(k)) for k in ks}
    shared = {}
    if n_init == 1:
        shared = {
            top: seeding(top, np.random.RandomState(cfg.random_state))
            for top in sorted(set(largest.values()))
        }
    out = []
    for k in ks:
        if n_init == 1:
            runs = [shared[largest[k]][:k].copy()]
        else:
            rs = np.random.RandomState(cfg.random_state)
            runs = (seeding(k, rs) for _ in range(n_init))
        best, best_inertia = None, None
        for centers in runs:
            labels, inertia, centres, _ = _kmeans_single_lloyd(
                X, sw, centers, max_iter=cfg.kmeans_max_iter, tol=tol, n_threads=1
            )
            if best_inertia is None or (
                inertia < best_inertia and not _is_same_clustering(labels, best[0], k)
            ):
                best, best_inertia = (labels, centres + X_mean), inertia
        out.append(best)
    return out


def _nearest_centres(X: np.ndarray, centres: list[np.ndarray]) -> list[np.ndarray]:
    """For each set of centres, the label of every row's nearest (Euclidean) centre; one pass over X."""
    C = np.concatenate(centres).astype(np.float64)
    score = (C * C).sum(axis=1)[None, :] - 2.0 * (X @ C.T)  # ||x - c||^2 - ||x||^2
    bounds = np.cumsum([0] + [len(c) for c in centres])
    return [np.argmin(score[:, lo:hi], axis=1) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _kmeans_estimator(
    cfg: CascalConfig, X: np.ndarray, w: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    km = KMeans(
        n_clusters=k, n_init=cfg.kmeans_n_init, max_iter=cfg.kmeans_max_iter, random_state=cfg.random_state
    )
    # One OpenMP thread (a per-thread limit): sklearn's multi-threaded Lloyd step adds per-thread
    # partial sums in lock-acquisition order, so its labels would depend on timing.
    with threadpool_limits(limits=1, user_api="openmp"):
        km.fit(X, sample_weight=w)
    return km.labels_, km.cluster_centers_


@dataclass(frozen=True)
class SkillFit:
    """Centroids of one model's proficient questions in one subject."""

    centroids: np.ndarray  # (k, d) float64, unit rows
    seeds: np.ndarray  # (k,) int: member points per centroid (unweighted)
    labels: np.ndarray  # (k,) int: the k-means label each centroid came from (for its id "c{j}")
    k: int  # 1 when the single-centroid fallback was used
    silhouette: float | None
    sampled: bool = False  # k-means ran on a sample of kmeans_max_rows rows


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


def fit_skill_centroids(
    cfg: CascalConfig, X: np.ndarray, weights: np.ndarray | None, Xk: np.ndarray | None = None
) -> SkillFit:
    """Step B on unit rows `X` (float64) with per-row weights (None = unweighted variant). `Xk`: the
    k-means input if the caller has it (a fresh copy of X in k-means precision, or of its projected
    rows; it is consumed)."""
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
    ks = range(cfg.k_min, max_k + 1)
    if not len(ks):
        return _single(X, w, None)
    if Xk is None:
        Xk = X.astype(np.float32) if cfg.kmeans_float32 else X.copy()
    sampled = bool(cfg.kmeans_max_rows) and n > cfg.kmeans_max_rows
    if not sampled:
        labelings = [labels for labels, _ in _kmeans_fits(cfg, Xk, w, ks)]
    else:  # k-means on a seeded sample of rows; every row then goes to its nearest centre
        sub = np.sort(np.random.RandomState(cfg.random_state).choice(n, cfg.kmeans_max_rows, replace=False))
        fits = _kmeans_fits(cfg, Xk[sub], None if w is None else w[sub], ks)
        space = X if Xk.shape[1] == X.shape[1] else Xk  # centres live where k-means ran
        labelings = _nearest_centres(space, [centres for _, centres in fits])
    best, best_score = _pick(cfg, X, labelings)
    if best is None or best_score < cfg.silhouette_floor:
        return replace(_single(X, w, best_score), sampled=sampled)
    best_labels, best_k = labelings[best], ks[best]
    ww = np.ones(n) if w is None else w
    hot = np.zeros((best_k, n))
    hot[best_labels, np.arange(n)] = 1.0
    seeds = hot.sum(axis=1).astype(np.int64)
    # An empty k-means label would give a zero centroid in the original; it is not emitted here.
    kept = np.flatnonzero(seeds > 0)
    sums = (hot[kept] * ww[None, :]) @ X
    mass = (hot[kept] * ww[None, :]).sum(axis=1)
    return SkillFit(l2_normalize(sums / mass[:, None]), seeds[kept], kept, best_k, best_score, sampled)


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
        [
            C[g[0]] if len(g) == 1 else l2_normalize((seeds[g, None] * C[g]).sum(axis=0) / seeds[g].sum())
            for g in groups
        ]
    )
    out_seeds = np.array([int(seeds[g].sum()) for g in groups], dtype=np.int64)
    return Merge(roots, groups, merged, out_seeds)
