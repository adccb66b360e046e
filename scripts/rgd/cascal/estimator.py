"""The CASCAL router as an estimator (rgd.routers.Router): fit (docs/METHOD.md §8), route (§9),
diagnostics, and its artifact (save / load)."""

from __future__ import annotations

import inspect
import warnings
from collections import Counter
from dataclasses import fields
from pathlib import Path

import numpy as np

from .. import metrics
from ..backends.base import usable_cpus
from ..io import dumps
from ..routers import Router, TrainingSet
from .clustering import l2_normalize
from .config import CascalConfig
from .inference import DIAGNOSTICS, RoutingTables, route_block
from .niches import proficiency
from .subject import fit_subject, ranking_order, round_scores

ROUTE_CHUNK = 8192  # questions per block: bounds the (block, centroids) temporaries whatever n is


class Cascal(Router):
    """CASCAL: consensus-aware skill clustering router (Niu et al., 2026).

    Hyperparameters: the keyword arguments of `CascalConfig` (defaults, bounds and `compat` there),
    validated here; plus `n_jobs`, the threads that train subjects side by side (None: every CPU this
    process may use), which never changes the result.

    Fitted attributes (trailing underscore): experts_, subjects_, centroids_ (K, d), cluster_ids_,
    cluster_subject_ (K,), cluster_seeds_ (K,), cluster_sizes_ (K,) assigned questions, rankings_ (K, m)
    mean signal in pool order, subject_reps_ (S, d), global_scores_ (m,), counters_, assigned_
    ({cluster id: [question id, ...]} or None), embedder_, n_features_in_.
    """

    diagnostic_fields = tuple(DIAGNOSTICS)

    def __init__(self, *, n_jobs: int | None = None, **params):
        self.config = CascalConfig.from_dict(params)
        if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1):
            raise ValueError(f"n_jobs: expected a positive integer or None, got {n_jobs!r}")
        self.n_jobs = n_jobs

    @property
    def signal(self) -> str:
        return self.config.signal

    def get_params(self) -> dict:
        return {**self.config.to_dict(), "n_jobs": self.n_jobs}

    # ------------------------------------------------------------------ training
    def fit(self, data: TrainingSet) -> Cascal:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        cfg = self.config
        X, subjects, choices, signal, correct, experts, ids = _check_fit(cfg, data)
        n = len(X)
        weights, skipped = proficiency(cfg, choices, correct)

        names = sorted(set(subjects.tolist()))
        code = np.searchsorted(np.array(names), subjects)
        counters: Counter = Counter(questions=n, questions_skipped_low_agreement=int(skipped.sum()))

        def one_subject(s: int):
            rows = np.flatnonzero(code == s)
            Xs = l2_normalize(X[rows])  # the original normalises again before every use
            return rows, fit_subject(cfg, names[s], Xs, weights[rows], signal[rows], experts)

        # Subjects are independent: they run on n_jobs threads (the heavy parts release the GIL).
        # Math libraries are single-threaded during the whole fit, whatever n_jobs: k-means runs with
        # one OpenMP thread (sklearn's multi-threaded Lloyd step adds per-thread partial sums in
        # lock-acquisition order, so its labels would depend on timing), BLAS with one thread, so
        # results never depend on threads. Fewer distinct k-means clusters than k (near-duplicate
        # points) is handled by the silhouette check; warnings are filtered here, in the calling
        # thread, because catch_warnings is not thread-safe.
        jobs = min(self.n_jobs or usable_cpus(), len(names))
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Number of distinct clusters")
            if jobs > 1:
                with ThreadPoolExecutor(max_workers=jobs) as pool:
                    blocks = list(pool.map(one_subject, range(len(names))))
            else:
                blocks = [one_subject(s) for s in range(len(names))]
        for _, fit in blocks:
            counters.update(fit.counters)
        self._store(blocks, experts, names, X.shape[1], ids, counters)
        self.global_scores_ = round_scores(signal.mean(axis=0), cfg.global_rank_decimals, cfg.compat)
        self.embedder_ = data.embedder
        self._tables = None
        return self

    def _store(self, blocks: list, experts: list[str], names: list[str], d: int, ids, counters) -> None:
        """The fitted tables from the subjects' (rows, SubjectFit) blocks, in subject order."""
        m = len(experts)
        self.experts_ = list(experts)
        self.subjects_ = names
        self.n_features_in_ = d
        self.centroids_ = np.concatenate([f.centroids for _, f in blocks]).reshape(-1, d)
        self.cluster_ids_ = [cid for _, f in blocks for cid in f.ids]
        self.cluster_subject_ = np.concatenate(
            [np.full(len(f.ids), s, np.int64) for s, (_, f) in enumerate(blocks)]
        )
        self.cluster_seeds_ = np.concatenate([f.seeds for _, f in blocks]).astype(np.int64)
        self.cluster_sizes_ = np.array([len(idx) for _, f in blocks for idx in f.members], dtype=np.int64)
        self.rankings_ = np.concatenate([f.rankings for _, f in blocks]).reshape(-1, m)
        self.subject_reps_ = np.stack([f.representative for _, f in blocks])
        self.counters_ = {k: int(v) for k, v in sorted(counters.items())}
        self.assigned_ = None
        if ids is not None:
            self.assigned_ = {
                cid: [_plain(ids[i]) for i in rows[idx]]
                for rows, f in blocks
                for cid, idx in zip(f.ids, f.members)
            }

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
        r = cls(**config.to_dict())
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
        r.cluster_seeds_ = (
            np.zeros(K, np.int64) if cluster_seeds is None else np.asarray(cluster_seeds, np.int64)
        )
        r.cluster_sizes_ = (
            np.zeros(K, np.int64) if cluster_sizes is None else np.asarray(cluster_sizes, np.int64)
        )
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

    def _blocks(self, X: np.ndarray, diagnose: bool):
        """(rows, P, diagnostics) per block of ROUTE_CHUNK questions: memory stays bounded for any n
        (X may be a memory-mapped array; each block is read, checked and routed on its own)."""
        t = self._routing_tables()
        if np.ndim(X) != 2 or np.shape(X)[1] != self.n_features_in_:
            raise ValueError(f"X: expected shape (n, {self.n_features_in_}), got {np.shape(X)}")
        for lo in range(0, len(X), ROUTE_CHUNK):
            block = np.asarray(X[lo : lo + ROUTE_CHUNK])
            if not np.isfinite(block).all():
                raise ValueError("X: embeddings contain NaN or infinity")
            P, diag = route_block(self.config, t, block, diagnose)
            yield slice(lo, lo + len(block)), P, diag

    def route(self, X: np.ndarray) -> np.ndarray:
        """Blended model scores P (n, m), pool order (§9)."""
        self._check_fitted()
        out = np.empty((len(X), len(self.experts_)))
        for rows, P, _ in self._blocks(X, diagnose=False):
            out[rows] = P
        return out

    def diagnostics(self, X: np.ndarray) -> dict:
        """Per-question details of `route(X)` (rgd.cascal.inference.DIAGNOSTICS): lists of subject
        names and nearest cluster ids (None: no centroid), arrays for the rest."""
        self._check_fitted()
        n = len(X)
        subj = np.full(n, -1, np.int64)
        cluster = np.full(n, -1, np.int64)
        out = {
            "nearest_distance": np.empty(n),
            "used_fallback": np.empty(n, bool),
            "fallback_alpha": np.empty(n),
            "n_centroids_used": np.empty(n, np.int64),
        }
        for rows, _, diag in self._blocks(X, diagnose=True):
            subj[rows], cluster[rows] = diag["subject"], diag["nearest_cluster"]
            for name, arr in out.items():
                arr[rows] = diag[name]
        return {
            "predicted_subject": [self.subjects_[s] if s >= 0 else "" for s in subj],
            "nearest_cluster": [self.cluster_ids_[c] if c >= 0 else None for c in cluster],
            **out,
        }

    def rank(self, X: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(order (n, m): model columns best first, scores (n, m)); ties in seeded random order."""
        scores = self.route(X)
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


def _check_fit(cfg: CascalConfig, data: TrainingSet):
    """(X, subjects, choices, signal, correct, experts, ids) checked; signal is what rankings average."""
    X = np.asarray(data.X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X: expected a non-empty 2-D (questions, dim) array, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating) or not np.isfinite(X).all():
        raise ValueError("X: expected finite floating-point embeddings")
    n = len(X)
    experts = list(data.experts)
    m = len(experts)
    if m == 0 or len(set(experts)) != m or not all(isinstance(e, str) and e for e in experts):
        raise ValueError(f"experts: expected distinct non-empty names, got {experts}")
    if data.subjects is None:
        raise ValueError("subjects: CASCAL needs each training question's subject")
    subjects = np.asarray(data.subjects, dtype=object)
    if subjects.shape != (n,) or not all(isinstance(s, str) for s in subjects):
        raise ValueError(f"subjects: expected {n} strings")
    choices, signal, correct = _check_signal(cfg, data, n, m)
    _check_embedder(data.embedder)
    ids = data.ids
    if ids is not None and len(ids) != n:
        raise ValueError(f"ids: expected {n} ids, got {len(ids)}")
    return X, subjects.astype(str), choices, signal, correct, experts, None if ids is None else list(ids)


def _matrix(name: str, a, kind: str, n: int, m: int) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != (n, m):
        raise ValueError(f"{name}: expected shape ({n}, {m}), got {a.shape}")
    if kind == "int" and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: expected integers, got {a.dtype}")
    if kind == "float" and not (np.issubdtype(a.dtype, np.number) and np.isfinite(a).all()):
        raise ValueError(f"{name}: expected finite numbers")
    return a


def _check_signal(cfg: CascalConfig, data: TrainingSet, n: int, m: int):
    """(choices, signal, correct): the (n, m) matrices, checked; signal is consensus or correctness."""
    choices, consensus, correct = data.choices, data.consensus, data.correct
    if choices is not None:
        choices = _matrix("choices", choices, "int", n, m).astype(np.int64)
        if choices.min() < -1:
            raise ValueError("choices: values below -1 (abstention) are not allowed")
    if consensus is not None:
        consensus = _matrix("consensus", consensus, "float", n, m).astype(np.float64)
    if cfg.signal != "correctness":
        if choices is None or consensus is None:
            raise ValueError("choices and consensus: required when signal='consensus'")
        return choices, consensus, correct
    if correct is None:
        raise ValueError("correct: required when signal='correctness' (CASCAL-GT)")
    correct = _matrix("correct", correct, "flag", n, m)
    if not (
        correct.dtype == bool or (np.issubdtype(correct.dtype, np.number) and np.isin(correct, (0, 1)).all())
    ):
        raise ValueError("correct: expected booleans or 0/1 values")
    return choices, correct.astype(np.float64), correct


def _check_embedder(embedder) -> None:
    if embedder is None:
        return
    try:
        dumps(embedder)
    except (TypeError, ValueError) as e:
        raise ValueError(f"embedder: must be a JSON-serialisable dict ({e})") from None
    if not isinstance(embedder, dict):
        raise ValueError(f"embedder: expected a dict, got {type(embedder).__name__}")


# help(Cascal) and inspect show every hyperparameter with its default (they live in CascalConfig).
Cascal.__signature__ = inspect.Signature(
    [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in fields(CascalConfig)
    ]
    + [inspect.Parameter("n_jobs", inspect.Parameter.KEYWORD_ONLY, default=None)]
)
