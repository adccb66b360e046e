"""The CASCAL router as a scikit-learn-style estimator: fit (§8), route (§9), save/load one artifact."""

from __future__ import annotations

import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from .. import metrics
from ..io import dumps
from .clustering import l2_normalize
from .config import CascalConfig
from .niches import proficiency
from .routing import RouteResult, RoutingTables, route_batch
from .subject import fit_subject, ranking_order, round_scores

ROUTE_CHUNK = 8192  # questions per matmul block: bounds the (n, S+K) float64 temporaries


class Cascal:
    """CASCAL: consensus-aware skill clustering router (Niu et al., 2026).

    Fitted attributes (trailing underscore): experts_, subjects_, centroids_ (K, d), cluster_ids_,
    cluster_subject_ (K,), cluster_seeds_ (K,), cluster_sizes_ (K,) assigned questions, rankings_ (K, m)
    mean signal in pool order, subject_reps_ (S, d), global_scores_ (m,), counters_, assigned_
    ({cluster id: [question id, ...]} or None), embedder_, n_features_in_.
    """

    def __init__(self, config: CascalConfig | None = None, n_jobs: int = 1):
        self.config = config or CascalConfig()
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
            raise ValueError(f"n_jobs: expected a positive integer, got {n_jobs!r}")
        self.n_jobs = n_jobs  # threads over subjects during fit; never changes the result

    # ------------------------------------------------------------------ training
    def fit(
        self,
        X: np.ndarray,
        subjects,
        choices: np.ndarray | None,
        consensus: np.ndarray | None,
        experts: list[str],
        correct: np.ndarray | None = None,
        ids=None,
        embedder: dict | None = None,
    ) -> Cascal:
        cfg = self.config
        X, subjects, choices, signal, correct, experts = _check_fit(
            cfg, X, subjects, choices, consensus, experts, correct, ids, embedder
        )
        n, m = len(X), len(experts)
        weights, skipped = proficiency(cfg, choices, correct)

        names = sorted(set(subjects.tolist()))
        code = np.searchsorted(np.array(names), subjects)
        counters: Counter = Counter(questions=n, questions_skipped_low_agreement=int(skipped.sum()))

        def one_subject(s: int):
            rows = np.flatnonzero(code == s)
            # One OpenMP thread per k-means: sklearn's multi-threaded Lloyd step adds per-thread
            # partial sums in lock-acquisition order, so its labels would depend on thread timing.
            # (threadpoolctl sets OpenMP limits per calling thread.)
            with threadpool_limits(limits=1, user_api="openmp"):
                Xs = l2_normalize(X[rows])  # the original normalises again before every use
                return rows, fit_subject(cfg, names[s], Xs, weights[rows], signal[rows], experts)

        # Subjects are independent: run them on n_jobs threads (the heavy parts release the GIL).
        # BLAS is single-threaded during the whole fit, whatever n_jobs, so results never depend on it.
        # Fewer distinct k-means clusters than k (near-duplicate points) is handled by the silhouette
        # check; the filter is set here, in the calling thread, because catch_warnings is not thread-safe.
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.n_jobs > 1 and len(names) > 1:
                with ThreadPoolExecutor(max_workers=min(self.n_jobs, len(names))) as pool:
                    blocks = list(pool.map(one_subject, range(len(names))))
            else:
                blocks = [one_subject(s) for s in range(len(names))]
        for _, fit in blocks:
            counters.update(fit.counters)

        self.experts_ = list(experts)
        self.subjects_ = names
        self.n_features_in_ = X.shape[1]
        self.centroids_ = np.concatenate([f.centroids for _, f in blocks]).reshape(-1, X.shape[1])
        self.cluster_ids_ = [cid for _, f in blocks for cid in f.ids]
        self.cluster_subject_ = np.concatenate([np.full(len(f.ids), s, np.int64) for s, (_, f) in enumerate(blocks)])
        self.cluster_seeds_ = np.concatenate([f.seeds for _, f in blocks]).astype(np.int64)
        self.cluster_sizes_ = np.array([len(idx) for _, f in blocks for idx in f.members], dtype=np.int64)
        self.rankings_ = np.concatenate([f.rankings for _, f in blocks]).reshape(-1, m)
        self.subject_reps_ = np.stack([f.representative for _, f in blocks])
        self.global_scores_ = round_scores(signal.mean(axis=0), cfg.global_rank_decimals)
        self.counters_ = {k: int(v) for k, v in sorted(counters.items())}
        self.assigned_ = None
        if ids is not None:
            ids = list(ids)
            self.assigned_ = {
                cid: [_plain(ids[i]) for i in rows[idx]] for rows, f in blocks for cid, idx in zip(f.ids, f.members)
            }
        self.embedder_ = embedder
        self._tables = None
        return self

    @classmethod
    def from_tables(
        cls,
        config: CascalConfig,
        *,
        experts: list[str],
        subjects: list[str],
        centroids: np.ndarray,
        cluster_ids: list[str],
        cluster_subject: np.ndarray,
        rankings: np.ndarray,
        subject_reps: np.ndarray,
        global_scores: np.ndarray,
        cluster_seeds: np.ndarray | None = None,
        cluster_sizes: np.ndarray | None = None,
        counters: dict | None = None,
        assigned: dict | None = None,
        embedder: dict | None = None,
    ) -> Cascal:
        """A fitted router from its tables (what `load` reads; also handy to route hand-made tables)."""
        r = cls(config)
        K, m, S = len(cluster_ids), len(experts), len(subjects)
        dim = np.shape(subject_reps)[1] if np.ndim(subject_reps) == 2 else -1
        shapes = {
            "centroids": (centroids, (K, dim)),
            "subject_reps": (subject_reps, (S, dim)),
            "rankings": (rankings, (K, m)),
            "cluster_subject": (cluster_subject, (K,)),
            "global_scores": (global_scores, (m,)),
        }
        for name, (a, shape) in shapes.items():
            if np.shape(a) != shape:
                raise ValueError(f"{name}: shape {np.shape(a)}, expected {shape}")
        cluster_subject = np.asarray(cluster_subject, dtype=np.int64)
        if K and (cluster_subject.min() < 0 or cluster_subject.max() >= S):
            raise ValueError("cluster_subject: index outside the subject list")
        r.experts_, r.subjects_, r.n_features_in_ = list(experts), list(subjects), int(dim)
        r.centroids_ = np.asarray(centroids, dtype=np.float64)
        r.cluster_ids_ = list(cluster_ids)
        r.cluster_subject_ = cluster_subject
        r.rankings_ = np.asarray(rankings, dtype=np.float64)
        r.subject_reps_ = np.asarray(subject_reps, dtype=np.float64)
        r.global_scores_ = np.asarray(global_scores, dtype=np.float64)
        r.cluster_seeds_ = np.zeros(K, np.int64) if cluster_seeds is None else np.asarray(cluster_seeds, np.int64)
        r.cluster_sizes_ = np.zeros(K, np.int64) if cluster_sizes is None else np.asarray(cluster_sizes, np.int64)
        r.counters_ = dict(counters or {})
        r.assigned_ = assigned
        r.embedder_ = embedder
        r._tables = None
        return r

    # ------------------------------------------------------------------ inference
    def _routing_tables(self) -> RoutingTables:
        if getattr(self, "_tables", None) is None:
            self._check_fitted()
            self._tables = RoutingTables.build(
                self.config,
                self.subject_reps_,
                self.centroids_,
                self.cluster_subject_,
                self.rankings_,
                self.global_scores_,
            )
        return self._tables

    def route(self, X: np.ndarray) -> RouteResult:
        """Blended model scores P (n, m) and per-question diagnostics; see §9 and `RouteResult`."""
        t = self._routing_tables()
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X: expected shape (n, {self.n_features_in_}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X: embeddings contain NaN or infinity")
        parts = [
            route_batch(self.config, t, X[i : i + ROUTE_CHUNK], self.subjects_, self.cluster_ids_)
            for i in range(0, max(len(X), 1), ROUTE_CHUNK)
        ]
        if len(parts) == 1:
            return parts[0]
        return RouteResult(
            **{
                f: np.concatenate([getattr(p, f) for p in parts])
                for f in (
                    "scores",
                    "predicted_subject",
                    "nearest_cluster",
                    "nearest_distance",
                    "used_fallback",
                    "fallback_alpha",
                    "n_centroids_used",
                )
            },
            cluster_ids=parts[0].cluster_ids,
        )

    def rank(self, X: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(order (n, m): model columns best first, scores (n, m)); ties in seeded random order."""
        scores = self.route(X).scores
        return metrics.rank(scores, self.config.seed if seed is None else seed), scores

    # ------------------------------------------------------------------ reporting / persistence
    def global_ranking(self) -> list[list]:
        self._check_fitted()
        order = ranking_order(self.global_scores_, self.experts_)[0]
        return [[self.experts_[j], float(self.global_scores_[j])] for j in order]

    def cluster_rankings(self) -> dict[str, list[list]]:
        self._check_fitted()
        orders = ranking_order(self.rankings_, self.experts_) if len(self.rankings_) else []
        return {
            cid: [[self.experts_[j], float(r[j])] for j in o]
            for cid, r, o in zip(self.cluster_ids_, self.rankings_, orders)
        }

    def save(self, directory: str | Path) -> None:
        from .artifact import save_router

        self._check_fitted()
        save_router(self, directory)

    @classmethod
    def load(cls, directory: str | Path) -> Cascal:
        from .artifact import load_router

        return load_router(cls, directory)

    def _check_fitted(self) -> None:
        if not hasattr(self, "centroids_"):
            raise RuntimeError("Cascal: not fitted; call fit() or Cascal.load() first")


def _plain(x):
    """JSON-safe scalar id (numpy ints/strings -> Python)."""
    return x.item() if isinstance(x, np.generic) else x


def _check_fit(cfg, X, subjects, choices, consensus, experts, correct, ids, embedder):
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X: expected a non-empty 2-D (questions, dim) array, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating) or not np.isfinite(X).all():
        raise ValueError("X: expected finite floating-point embeddings")
    n = len(X)
    experts = list(experts)
    m = len(experts)
    if m == 0 or len(set(experts)) != m or not all(isinstance(e, str) and e for e in experts):
        raise ValueError(f"experts: expected distinct non-empty names, got {experts}")
    subjects = np.asarray(subjects, dtype=object)
    if subjects.shape != (n,) or not all(isinstance(s, str) for s in subjects):
        raise ValueError(f"subjects: expected {n} strings")
    subjects = subjects.astype(str)

    def matrix(name, a, kind):
        a = np.asarray(a)
        if a.shape != (n, m):
            raise ValueError(f"{name}: expected shape ({n}, {m}), got {a.shape}")
        if kind == "int" and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name}: expected integers, got {a.dtype}")
        if kind == "float" and not (np.issubdtype(a.dtype, np.number) and np.isfinite(a).all()):
            raise ValueError(f"{name}: expected finite numbers")
        return a

    if choices is not None:
        choices = matrix("choices", choices, "int").astype(np.int64)
        if choices.min() < -1:
            raise ValueError("choices: values below -1 (abstention) are not allowed")
    if consensus is not None:
        consensus = matrix("consensus", consensus, "float").astype(np.float64)
    if cfg.signal == "correctness":
        if correct is None:
            raise ValueError("correct: required when signal='correctness' (CASCAL-GT)")
        correct = matrix("correct", correct, "flag")
        if not (correct.dtype == bool or (np.issubdtype(correct.dtype, np.number) and np.isin(correct, (0, 1)).all())):
            raise ValueError("correct: expected booleans or 0/1 values")
        signal = correct.astype(np.float64)
    else:
        if choices is None or consensus is None:
            raise ValueError("choices and consensus: required when signal='consensus'")
        signal = consensus
    if embedder is not None:
        try:
            dumps(embedder)
        except (TypeError, ValueError) as e:
            raise ValueError(f"embedder: must be a JSON-serialisable dict ({e})") from None
        if not isinstance(embedder, dict):
            raise ValueError(f"embedder: expected a dict, got {type(embedder).__name__}")
    if ids is not None and len(ids) != n:
        raise ValueError(f"ids: expected {n} ids, got {len(ids)}")
    return X, subjects, choices, signal, correct, experts
