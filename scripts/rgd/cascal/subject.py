"""Steps B-G for one subject: skill centroids, merge, assignment, rankings, pruning, representative."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .clustering import fit_skill_centroids, l2_normalize, merge_centroids, principal_rows
from .config import CascalConfig


def ranking_order(scores: np.ndarray, experts: list[str]) -> np.ndarray:
    """Model columns per row by score desc, ties by model name asc (the original's sort key)."""
    name_rank = np.empty(len(experts), dtype=np.int64)
    name_rank[sorted(range(len(experts)), key=experts.__getitem__)] = np.arange(len(experts))
    scores = np.atleast_2d(scores)
    return np.lexsort((np.broadcast_to(name_rank, scores.shape), -scores), axis=1)


def round_scores(x: np.ndarray, decimals: int | None, compat: str = "rgd") -> np.ndarray:
    """Ranking scores rounded as the original does with compat="original" (Python's `round`, exact on
    the decimal value), else with numpy.round (scaled: can differ at exact half-way cases)."""
    if decimals is None:
        return x
    if compat == "original":
        return np.array([round(float(v), decimals) for v in np.ravel(x)]).reshape(np.shape(x))
    return np.round(x, decimals)


def cluster_scores(cfg: CascalConfig, members: list[np.ndarray], signal: np.ndarray) -> np.ndarray:
    """(K, m) mean signal of each cluster's assigned questions (step E), rounded."""
    if not members:
        return np.zeros((0, signal.shape[1]))
    return round_scores(
        np.stack([signal[idx].mean(axis=0) for idx in members]), cfg.rank_decimals, cfg.compat
    )


@dataclass
class SubjectFit:
    """A subject's final clusters; `members` index rows of the subject's own question block."""

    centroids: np.ndarray  # (K, d) unit rows
    ids: list[str]
    seeds: np.ndarray  # (K,) int
    members: list[np.ndarray]
    rankings: np.ndarray  # (K, m) rounded mean signal, pool order
    representative: np.ndarray  # (d,)
    counters: Counter = field(default_factory=Counter)


def _prune(cfg: CascalConfig, order: np.ndarray, experts: list[str], members: list[np.ndarray]) -> np.ndarray:
    """Step F on the step-E rankings; merges member lists in place; returns the kept cluster indices.

    Pairs are scanned in cluster order; sizes are the current (already merged) member counts, while
    the top sets stay those of step E, as in the original.
    """
    top = [frozenset(experts[j] for j in row[: cfg.prune_top]) for row in order]
    keep = np.ones(len(members), dtype=bool)
    for i in range(len(members)):
        if not keep[i]:
            continue
        for j in range(i + 1, len(members)):
            if not keep[j]:
                continue
            union = top[i] | top[j]
            if not union or len(top[i] & top[j]) / len(union) < cfg.prune_jaccard:
                continue
            if len(members[j]) > len(members[i]):
                keep[i] = False
                members[j] = np.concatenate([members[j], members[i]])
                break
            keep[j] = False
            members[i] = np.concatenate([members[i], members[j]])
    return np.flatnonzero(keep)


def fit_subject(
    cfg: CascalConfig,
    subject: str,
    X: np.ndarray,
    weights: np.ndarray,
    signal: np.ndarray,
    experts: list[str],
) -> SubjectFit:
    """Train one subject. X: (n_s, d) unit rows (float64); weights: step-A (n_s, m); signal: (n_s, m)."""
    counters: Counter = Counter()
    cents, seeds, ids = [], [], []
    # k-means input, made once per subject; its rows are each model's copy.
    dtype = np.float32 if cfg.kmeans_float32 else np.float64
    Xk = principal_rows(X, cfg.kmeans_dims, cfg.random_state, dtype)
    if Xk is None and cfg.kmeans_float32:
        Xk = X.astype(np.float32)
    for j, expert in enumerate(experts):  # step B
        rows = np.flatnonzero(weights[:, j] > 0)
        if len(rows) == 0:
            continue
        own = None if Xk is None else Xk[rows]
        fit = fit_skill_centroids(cfg, X[rows], weights[rows, j] if cfg.weighted else None, own)
        counters["skill_fits"] += 1
        counters["single_cluster_fits"] += fit.k == 1
        counters["kmeans_sampled_fits"] += fit.sampled
        cents.append(fit.centroids)
        seeds.append(fit.seeds)
        ids += [f"{subject}::model={expert}::c{label}" for label in fit.labels]
    if not cents:
        counters["subjects_without_clusters"] += 1
        rep = l2_normalize(X.mean(axis=0)) if len(X) else np.zeros(X.shape[1])
        m = weights.shape[1]
        return SubjectFit(
            np.zeros((0, X.shape[1])), [], np.zeros(0, np.int64), [], np.zeros((0, m)), rep, counters
        )
    C, S = np.concatenate(cents), np.concatenate(seeds)
    counters["centroids_fitted"] += len(C)

    merge = merge_centroids(C, S, cfg.merge_threshold)  # step C
    counters["merged"] += merge.n_merged
    C, S, ids = merge.centroids, merge.seeds, [ids[r] for r in merge.roots]

    nearest = np.argmax(X @ C.T, axis=1)  # step D: first maximum wins ties, as np.argmax in the original
    members = [np.flatnonzero(nearest == c) for c in range(len(C))]
    alive = [c for c in range(len(C)) if len(members[c])]
    counters["empty_dropped"] += len(C) - len(alive)
    C, S, ids, members = C[alive], S[alive], [ids[c] for c in alive], [members[c] for c in alive]

    rankings = cluster_scores(cfg, members, signal)  # step E
    if cfg.prune:  # step F
        kept = _prune(cfg, ranking_order(rankings, experts), experts, members)
        counters["pruned"] += len(C) - len(kept)
        S, ids, members = S[kept], [ids[c] for c in kept], [members[c] for c in kept]
        rankings = cluster_scores(cfg, members, signal)
        # Every surviving centroid becomes the spherical mean of its (final) members.
        C = l2_normalize(np.stack([X[idx].mean(axis=0) for idx in members]))
    rep = l2_normalize(C.mean(axis=0))  # step G
    counters["clusters"] += len(C)
    return SubjectFit(C, ids, S, members, rankings, rep, counters)
