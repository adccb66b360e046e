import json

import numpy as np
import pytest

from rgd.baselines import (
    BestSingleRouter,
    KNNRouter,
    MFRouter,
    MLPRouter,
    Router,
    as_unit_rows,
)
from rgd.io import InputError
from rgd.routers import TrainingSet

M = 4


def ts(X, T) -> TrainingSet:
    """A training set whose answer-key correctness (the target) is T."""
    return TrainingSet(X, [f"m{j}" for j in range(np.shape(T)[1])], correct=T)


def regions(n: int, seed: int, d: int = 8):
    """Unit vectors; model m is right exactly where coordinate m is the largest of the first M."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    region = X[:, :M].argmax(axis=1)
    return X.astype(np.float32), (region[:, None] == np.arange(M)).astype(float), region


@pytest.fixture(scope="module")
def data():
    return regions(1500, 0), regions(400, 1)


def make(kind: str) -> Router:
    return {
        "knn": lambda: KNNRouter(k=10),
        "mlp": lambda: MLPRouter(hidden=(32,), max_iter=150, seed=0),
        "mf": lambda: MFRouter(dim=8, epochs=200, seed=0),
        "best": lambda: BestSingleRouter(),
    }[kind]()


@pytest.mark.parametrize("kind", ["knn", "mlp", "mf"])
def test_learnt_routers_pick_the_right_model(data, kind):
    (Xtr, Ttr, _), (Xte, _, region) = data
    scores = make(kind).fit(ts(Xtr, Ttr)).route(Xte)
    assert scores.shape == (len(Xte), M)
    assert np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1
    acc = (scores.argmax(axis=1) == region).mean()
    assert acc > 0.75, acc  # chance is 0.25


@pytest.mark.parametrize("kind", ["knn", "mlp", "mf", "best"])
def test_save_load_round_trip(tmp_path, data, kind):
    (Xtr, Ttr, _), (Xte, _, _) = data
    r = make(kind).fit(ts(Xtr, Ttr))
    r.save(tmp_path / kind)
    header = json.loads((tmp_path / kind / "router.json").read_text())
    assert header["kind"] == r.kind and header["dim"] == 8 and header["n_models"] == M
    for loaded in (Router.load(tmp_path / kind), type(r).load(tmp_path / kind)):
        assert type(loaded) is type(r) and loaded.get_params() == r.get_params()
        assert loaded.route(Xte).tobytes() == r.route(Xte).tobytes()


@pytest.mark.parametrize("kind", ["knn", "mlp", "mf"])
def test_deterministic_given_seed(data, kind):
    (Xtr, Ttr, _), (Xte, _, _) = data
    assert (
        make(kind).fit(ts(Xtr, Ttr)).route(Xte).tobytes() == make(kind).fit(ts(Xtr, Ttr)).route(Xte).tobytes()
    )


def test_seed_changes_mf_and_mlp(data):
    (Xtr, Ttr, _), (Xte, _, _) = data
    a = MFRouter(dim=8, epochs=20, seed=0).fit(ts(Xtr, Ttr)).route(Xte)
    b = MFRouter(dim=8, epochs=20, seed=1).fit(ts(Xtr, Ttr)).route(Xte)
    assert not np.array_equal(a, b)
    a = MLPRouter(hidden=(8,), max_iter=5, seed=0).fit(ts(Xtr, Ttr)).route(Xte)
    b = MLPRouter(hidden=(8,), max_iter=5, seed=1).fit(ts(Xtr, Ttr)).route(Xte)
    assert not np.array_equal(a, b)


def test_knn_matches_brute_force():
    rng = np.random.default_rng(5)
    Xtr = as_unit_rows(rng.normal(size=(50, 6)))
    T = rng.random((50, 3))
    Xq = as_unit_rows(rng.normal(size=(7, 6)))
    got = KNNRouter(k=5, chunk=3).fit(ts(Xtr, T)).route(Xq)
    for i in range(7):
        nn = np.argsort(-(Xtr @ Xq[i]))[:5]
        np.testing.assert_allclose(got[i], T[nn].mean(axis=0))
    # k larger than the training set -> every point
    np.testing.assert_allclose(KNNRouter(k=500).fit(ts(Xtr, T)).route(Xq), np.tile(T.mean(axis=0), (7, 1)))


def test_knn_is_cosine_not_euclidean():
    Xtr = np.array([[10.0, 0.0], [0.0, 0.1]])
    T = np.array([[1.0], [0.0]])
    # Query close to the second point in Euclidean terms but along the first point's direction.
    assert KNNRouter(k=1).fit(ts(Xtr, T)).route(np.array([[0.05, 0.0]]))[0, 0] == 1.0


def test_mlp_forward_matches_sklearn(data):
    from sklearn.neural_network import MLPRegressor

    (Xtr, Ttr, _), (Xte, _, _) = data
    r = MLPRouter(hidden=(16, 8), max_iter=30, seed=3).fit(ts(Xtr, Ttr))
    ref = MLPRegressor(
        hidden_layer_sizes=(16, 8), max_iter=30, random_state=3, learning_rate_init=1e-3, alpha=1e-4
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(as_unit_rows(Xtr), Ttr)
    np.testing.assert_allclose(
        r.route(Xte), np.clip(ref.predict(as_unit_rows(Xte)), 0, 1), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["knn", "mlp", "mf", "best"])
def test_single_model_pool(kind):
    X, T, _ = regions(60, 4)
    assert make(kind).fit(ts(X, T[:, :1])).route(X[:5]).shape == (5, 1)


def test_best_single_router():
    T = np.array([[1.0, 0.0, 0.5], [0.0, 0.0, 0.5], [1.0, 1.0, 0.5]])
    s = BestSingleRouter().fit(ts(np.eye(3), T)).route(np.ones((2, 3)))
    np.testing.assert_allclose(s, [[2 / 3, 1 / 3, 0.5]] * 2)


def test_mf_starts_at_best_single():
    X, T, _ = regions(300, 2)
    r = MFRouter(dim=4, epochs=0, seed=0).fit(ts(X, T))
    np.testing.assert_allclose(r.b_, np.log(T.mean(0) / (1 - T.mean(0))))


def test_input_validation(tmp_path):
    X, T, _ = regions(20, 3)
    with pytest.raises(ValueError, match="target"):
        KNNRouter().fit(ts(X, T * 2))
    with pytest.raises(ValueError, match="target"):
        KNNRouter().fit(ts(X, T[:5]))
    with pytest.raises(ValueError, match="non-finite"):
        KNNRouter().fit(ts(np.full((2, 3), np.nan), np.zeros((2, 1))))
    with pytest.raises(ValueError, match="dimension"):
        KNNRouter().fit(ts(X, T)).route(np.ones((1, 3)))
    with pytest.raises(RuntimeError, match="before fit"):
        MFRouter().route(X)
    KNNRouter().fit(ts(X, T)).save(tmp_path / "k")
    with pytest.raises(InputError, match="kind"):
        MFRouter.load(tmp_path / "k")
    (tmp_path / "k" / "router.npz").unlink()
    with pytest.raises(InputError, match="not found"):
        Router.load(tmp_path / "k")
