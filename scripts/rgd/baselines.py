"""Simple routers that predict each pool model's per-question score from the query embedding.

They share rgd's router interface (rgd.routers.Router): hyperparameters in the constructor,
``fit(TrainingSet)``, ``route(X) -> (n, m)`` scores, higher = better; ``save(dir)`` / ``load(dir)``
as a JSON header (router.json) plus arrays (router.npz). They learn from the training set's
answer-key correctness (``signal="correctness"``: the paper's "query-answer" routers) or, with
``signal="consensus"``, from consensus scores (then they are query-only routers). The original
repository ships none of these (docs/METHOD.md §11); the choice of kNN / MLP / matrix factorisation /
best single follows docs/METHOD.md §11.3, and RouteLLM / EmbedLLM for the MF form.

Embeddings are L2-normalised again on the way in (rows of zeros stay zero), so cosine similarity is
a dot product. Every random step takes the router's `seed`; fitting twice on the same data gives
identical arrays.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np

from . import routers
from .io import InputError, read_json, save_npz, warn, write_json

FORMAT = "rgd-router"
VERSION = 1


def as_unit_rows(X: np.ndarray, dim: int | None = None) -> np.ndarray:
    """float32 copy of X with unit-norm rows; checks shape and finiteness."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D (questions, dim) array, got shape {X.shape}")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"X: dimension {X.shape[1]}, router was fitted on {dim}")
    X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise ValueError("X: non-finite values")
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norm > 0, norm, 1.0)


def _check_target(target: np.ndarray, n: int) -> np.ndarray:
    t = np.asarray(target, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != n:
        raise ValueError(f"target: expected shape ({n}, n_models), got {t.shape}")
    if t.shape[1] < 1 or n < 1:
        raise ValueError("target: need at least one question and one model")
    if not np.isfinite(t).all() or t.min() < 0 or t.max() > 1:
        raise ValueError("target: values must be finite and in [0, 1]")
    return t


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _check_signal(signal: str) -> None:
    if signal not in routers.SIGNALS:
        raise ValueError(f"signal: expected one of {list(routers.SIGNALS)}, got {signal!r}")


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def _check_number(name: str, value: object, low: float, strict: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        raise ValueError(f"{name}: expected a finite number {'>' if strict else '>='} {low:g}, got {value!r}")


# Each hyperparameter's bound, once for every baseline that has it: name -> check(name, value).
_BOUNDS = {
    "k": lambda n, v: _check_int(n, v, 1),
    "chunk": lambda n, v: _check_int(n, v, 1),  # questions per similarity block; never changes the scores
    "hidden": lambda n, v: _check_int(n, v, 1),  # each layer's size
    "max_iter": lambda n, v: _check_int(n, v, 1),
    "dim": lambda n, v: _check_int(n, v, 1),
    "epochs": lambda n, v: _check_int(n, v, 0),
    "seed": lambda n, v: _check_int(n, v, 0),
    "alpha": lambda n, v: _check_number(n, v, 0.0),
    "l2": lambda n, v: _check_number(n, v, 0.0),
    "lr": lambda n, v: _check_number(n, v, 0.0, strict=True),
    "signal": lambda n, v: _check_signal(v),
}


def _check_params(**params) -> None:
    """Check each hyperparameter against its bound, in the order given: the first bad one is named."""
    for name, value in params.items():
        _BOUNDS[name](name, value)


def _class_kind(cls: type) -> str:
    """The registry's name for a baseline class (each has one; its `signal` is a saved param)."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    return next(k.name for k in routers.REGISTRY.values() if k.cls == path)


class Router(routers.Router):
    """Base class: subclasses validate their hyperparameters in `__init__`, implement `_fit` and
    `_route`, and list their fitted arrays. `Router.load` loads any of them (the header names the
    kind)."""

    _array_names: ClassVar[tuple[str, ...]]

    n_features_in_: int | None = None
    n_models: int | None = None

    def fit(self, data: routers.TrainingSet) -> Router:
        X = as_unit_rows(data.X)
        t = _check_target(data.target(self.signal, type(self).__name__), X.shape[0])
        self.n_features_in_, self.n_models = X.shape[1], t.shape[1]
        self._fit(X, t)
        return self

    def route(self, X: np.ndarray) -> np.ndarray:
        if self.n_features_in_ is None:
            raise RuntimeError(f"{type(self).__name__}: route() before fit()")
        return self._route(as_unit_rows(X, self.n_features_in_))

    def save(self, directory: str | Path) -> None:
        if self.n_features_in_ is None:
            raise RuntimeError(f"{type(self).__name__}: save() before fit()")
        d = Path(directory)
        # Arrays first: a header without its arrays would look complete to a resuming workflow.
        save_npz(d / "router.npz", **{k: getattr(self, k) for k in self._array_names})
        header = {
            "format": FORMAT,
            "version": VERSION,
            "kind": _class_kind(type(self)),
            "params": self.get_params(),
            "dim": self.n_features_in_,
            "n_models": self.n_models,
        }
        write_json(d / "router.json", header)

    @classmethod
    def load(cls, directory: str | Path) -> Router:
        d = Path(directory)
        header = read_json(d / "router.json")
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise InputError(d / "router.json", None, "format", f"not an {FORMAT} header")
        if header.get("version") != VERSION:
            raise InputError(
                d / "router.json", None, "version", f"unsupported version {header.get('version')!r}"
            )
        kind = header.get("kind")
        sub = routers.REGISTRY[kind].router_class() if kind in routers.REGISTRY else None
        if sub is None or not issubclass(sub, Router) or (cls is not Router and sub is not cls):
            raise InputError(d / "router.json", None, "kind", f"{kind!r} cannot be loaded as {cls.__name__}")
        router = sub(**header["params"])
        try:
            with np.load(d / "router.npz", allow_pickle=False) as z:
                for name in router._array_names:
                    setattr(router, name, z[name])
        except FileNotFoundError:
            raise InputError(d / "router.npz", None, None, "file not found") from None
        except KeyError as e:
            raise InputError(d / "router.npz", None, str(e), "array missing") from None
        router.n_features_in_, router.n_models = int(header["dim"]), int(header["n_models"])
        return router

    def _fit(self, X: np.ndarray, t: np.ndarray) -> None:
        """Learn from unit-norm X (n, d) and targets t (n, m) in [0, 1]."""
        raise NotImplementedError

    def _route(self, X: np.ndarray) -> np.ndarray:
        """Scores (n, m) for unit-norm X, higher = better."""
        raise NotImplementedError


class BestSingleRouter(Router):
    """Constant scores: each model's mean target over the training questions."""

    _array_names = ("mean_",)

    def __init__(self, signal: str = "correctness"):
        _check_params(signal=signal)
        self.signal = signal

    def _fit(self, X: np.ndarray, t: np.ndarray) -> None:
        self.mean_ = t.mean(axis=0)

    def _route(self, X: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.mean_, (X.shape[0], self.mean_.size)).copy()


class KNNRouter(Router):
    """Cosine k-nearest neighbours: a model's score is its mean target over the k nearest questions."""

    _array_names = ("X_", "target_")

    def __init__(self, k: int = 10, chunk: int = 2048, signal: str = "correctness"):
        _check_params(k=k, chunk=chunk, signal=signal)
        self.k, self.chunk, self.signal = k, chunk, signal

    def _fit(self, X: np.ndarray, t: np.ndarray) -> None:
        if self.k > len(X):
            # legal (routing takes all of them) but not what k asks for; the config check refuses
            # it where the training set's size is known in advance (the real train split)
            warn(
                f"k: {self.k} neighbours, but the training set has {len(X)} questions: every prompt's "
                f"scores average all {len(X)} of them"
            )
        self.X_, self.target_ = X, t

    def _route(self, X: np.ndarray) -> np.ndarray:
        n_train = self.X_.shape[0]
        k = min(self.k, n_train)
        out = np.empty((X.shape[0], self.target_.shape[1]))
        # Chunked so the (chunk, n_train) similarity block stays small.
        for lo in range(0, X.shape[0], self.chunk):
            sims = X[lo : lo + self.chunk] @ self.X_.T
            if k < n_train:
                nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                nn = np.broadcast_to(np.arange(n_train), (sims.shape[0], n_train))
            out[lo : lo + self.chunk] = self.target_[nn].mean(axis=1)
        return out


class MLPRouter(Router):
    """One multi-output scikit-learn MLPRegressor (ReLU) predicting all models' targets, clipped to [0, 1].

    Scoring runs the stored weights through a numpy forward pass, so a loaded router needs no pickle.
    """

    def __init__(
        self,
        hidden: tuple[int, ...] | list[int] = (128,),
        alpha: float = 1e-4,
        lr: float = 1e-3,
        max_iter: int = 200,
        seed: int = 0,
        signal: str = "correctness",
    ):
        if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
            raise ValueError(f"hidden: expected a list of layer sizes, got {hidden!r}")
        for h in hidden:
            _check_params(hidden=h)
        _check_params(alpha=alpha, lr=lr, max_iter=max_iter, seed=seed, signal=signal)
        self.hidden, self.alpha, self.lr, self.max_iter = tuple(hidden), alpha, lr, max_iter
        self.seed, self.signal = seed, signal

    @property
    def _array_names(self) -> tuple[str, ...]:  # type: ignore[override]
        n = len(self.hidden) + 1
        return tuple(f"coef_{i}" for i in range(n)) + tuple(f"intercept_{i}" for i in range(n))

    def get_params(self) -> dict:
        return {**super().get_params(), "hidden": list(self.hidden)}

    def _fit(self, X: np.ndarray, t: np.ndarray) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        mlp = MLPRegressor(
            hidden_layer_sizes=self.hidden,
            activation="relu",
            solver="adam",
            alpha=self.alpha,
            learning_rate_init=self.lr,
            max_iter=self.max_iter,
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            # A fixed epoch budget is the point; not converging to tol is expected.
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(X, t[:, 0] if t.shape[1] == 1 else t)  # a (n, 1) target makes sklearn warn
        for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
            setattr(self, f"coef_{i}", w)
            setattr(self, f"intercept_{i}", b)

    def _route(self, X: np.ndarray) -> np.ndarray:
        n = len(self.hidden) + 1
        h = X.astype(getattr(self, "coef_0").dtype)
        for i in range(n):
            h = h @ getattr(self, f"coef_{i}") + getattr(self, f"intercept_{i}")
            if i < n - 1:
                h = np.maximum(h, 0)
        return np.clip(h.astype(np.float64), 0.0, 1.0)


class MFRouter(Router):
    """Matrix factorisation: score_m(x) = sigmoid(<W x, v_m> + b_m).

    W (d, dim) projects the query, V (m, dim) embeds the models. Trained on the logistic loss with
    soft targets plus an L2 penalty, by full-batch Adam for a fixed number of epochs (no early
    stopping, so the result depends only on data and seed). W starts random (seeded), V small random,
    b at each model's logit mean target, i.e. at the best-single-model solution.
    """

    _array_names = ("W_", "V_", "b_")

    def __init__(
        self,
        dim: int = 32,
        epochs: int = 300,
        lr: float = 0.01,
        l2: float = 1e-4,
        seed: int = 0,
        signal: str = "correctness",
    ):
        _check_params(dim=dim, epochs=epochs, lr=lr, l2=l2, seed=seed, signal=signal)
        self.dim, self.epochs, self.lr, self.l2, self.seed, self.signal = dim, epochs, lr, l2, seed, signal

    def _fit(self, X: np.ndarray, t: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        n, d = X.shape
        m, h = t.shape[1], self.dim
        W = rng.normal(0.0, 1.0, size=(d, h)).astype(np.float32)
        V = rng.normal(0.0, 0.1, size=(m, h))
        p0 = np.clip(t.mean(axis=0), 1e-3, 1 - 1e-3)
        b = np.log(p0 / (1 - p0))
        params = [W, V, b]
        mom = [np.zeros_like(p) for p in params]
        vel = [np.zeros_like(p) for p in params]
        b1, b2, eps = 0.9, 0.999, 1e-8
        for step in range(1, self.epochs + 1):
            H = (X @ W).astype(np.float64)
            G = (_sigmoid(H @ V.T + b) - t) / (n * m)  # d(mean BCE)/d(logit)
            grads = [
                (X.T @ (G @ V).astype(np.float32)) + np.float32(self.l2) * W,
                G.T @ H + self.l2 * V,
                G.sum(axis=0),
            ]
            lr_t = self.lr * math.sqrt(1 - b2**step) / (1 - b1**step)
            for p, g, m1, m2 in zip(params, grads, mom, vel):
                m1 *= b1
                m1 += (1 - b1) * g
                m2 *= b2
                m2 += (1 - b2) * g * g
                p -= (lr_t * m1 / (np.sqrt(m2) + eps)).astype(p.dtype)
        self.W_, self.V_, self.b_ = W, V, b

    def _route(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid((X @ self.W_).astype(np.float64) @ self.V_.T + self.b_)
