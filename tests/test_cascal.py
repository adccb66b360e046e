"""CASCAL (docs/METHOD.md §8-§9): each training step on hand-built cases, routing arithmetic, artifacts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from rgd.cascal import Cascal, CascalConfig
from rgd.cascal.clustering import cosine_silhouettes, fit_skill_centroids, l2_normalize, merge_centroids
from rgd.cascal.niches import plurality_members, proficiency
from rgd.cascal.subject import _prune, fit_subject, ranking_order
from rgd.records import slug
from rgd.routers import TrainingSet

CFG = CascalConfig()


def data(X, subjects, choices, consensus, experts, correct=None, ids=None, embedder=None) -> TrainingSet:
    return TrainingSet(X, experts, subjects, choices, consensus, correct, ids, embedder)


def unit(*rows) -> np.ndarray:
    return l2_normalize(np.array(rows, dtype=np.float64))


# ----------------------------------------------------------------------------- step A


def test_plurality_ties_are_all_kept():
    members, top = plurality_members(np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2], [3, 3, 3, 3, 1, 2]]))
    assert members.tolist() == [[True] * 6, [True] * 6, [True, True, True, True, False, False]]
    assert top.tolist() == [3, 2, 4]


def test_abstentions_never_agree():
    members, top = plurality_members(np.array([[-1, -1, -1, -1, 0, 1], [-1] * 6, [2, -1, 2, -1, -1, 0]]))
    assert members.tolist() == [
        [False, False, False, False, True, True],
        [False] * 6,
        [True, False, True, False, False, False],
    ]
    assert top.tolist() == [1, 0, 2]


@pytest.mark.parametrize(
    "agreement, weights_3_3, kept_2_2_2",
    [("plurality", 0.5, False), ("tied_union", 1.0, True)],
)
def test_tie_agreement_modes(agreement, weights_3_3, kept_2_2_2):
    cfg = CascalConfig(agreement=agreement)
    choices = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]])
    w, skipped = proficiency(cfg, choices, None)
    assert np.all(w[0] == weights_3_3)  # both tied groups are proficient
    assert skipped[1] == (not kept_2_2_2)
    assert np.all(w[1] == (1.0 if kept_2_2_2 else 0.0))


def test_min_consensus_skip_and_weights():
    choices = np.array(
        [
            [0, 0, 0, 1, 2, 3],  # agree 3/6 = 0.5: kept (>=)
            [0, 0, 1, 2, 3, -1],  # agree 2/6: skipped
            [1, 1, 1, 1, 1, 0],  # agree 5/6
        ]
    )
    w, skipped = proficiency(CFG, choices, None)
    assert skipped.tolist() == [False, True, False]
    np.testing.assert_array_equal(w[0], [0.5, 0.5, 0.5, 0, 0, 0])
    np.testing.assert_array_equal(w[1], np.zeros(6))
    np.testing.assert_array_equal(w[2], [5 / 6] * 5 + [0])
    w, skipped = proficiency(CascalConfig(min_consensus=0.6), choices, None)
    assert skipped.tolist() == [True, True, False]


def test_unweighted_has_no_filter_and_unit_weights():
    choices = np.array([[0, 0, 1, 2, 3, -1]])
    w, skipped = proficiency(CascalConfig(weighted=False), choices, None)
    assert not skipped.any()
    np.testing.assert_array_equal(w[0], [1, 1, 0, 0, 0, 0])


def test_correctness_replaces_plurality_in_step_a():
    choices = np.array([[0, 0, 0, 0, 1, 1]])  # plurality says A ...
    correct = np.array([[0, 0, 0, 1, 1, 1]])  # ... only the last three are right (and model 3, by key)
    w, _ = proficiency(CascalConfig(signal="correctness"), choices, correct)
    np.testing.assert_array_equal(w[0], [0, 0, 0, 0.5, 0.5, 0.5])
    w, skipped = proficiency(CascalConfig(signal="correctness"), choices, np.array([[1, 0, 0, 0, 0, 0]]))
    assert skipped[0] and not w.any()


# ----------------------------------------------------------------------------- step B


def test_linear_silhouette_matches_sklearn():
    rng = np.random.default_rng(3)
    X = l2_normalize(rng.normal(size=(60, 8)) + np.repeat(np.eye(8)[:3] * 2, 20, axis=0))
    for labels in (np.repeat([0, 1, 2], 20), rng.integers(0, 4, 60), np.r_[np.zeros(58, int), 1, 2]):
        ours = cosine_silhouettes(X, [labels])[0]
        assert ours == pytest.approx(silhouette_score(X, labels, metric="cosine"), abs=1e-12)
    assert cosine_silhouettes(X, [np.zeros(60, int)]) == [None]  # one label
    assert cosine_silhouettes(X[:3], [np.array([0, 1, 2])]) == [None]  # n labels == n samples
    # several labellings at once: the same scores as one at a time
    several = [np.repeat([0, 1, 2], 20), np.zeros(60, int), rng.integers(0, 4, 60)]
    one_by_one = [cosine_silhouettes(X, [lab])[0] for lab in several]
    assert cosine_silhouettes(X, several) == [
        None if v is None else pytest.approx(v, abs=1e-14) for v in one_by_one
    ]


def test_single_point_and_identical_rows_give_one_centroid():
    fit = fit_skill_centroids(CFG, unit([1, 2, 2]), np.array([0.7]))
    assert fit.k == 1 and fit.seeds.tolist() == [1]
    np.testing.assert_allclose(fit.centroids, unit([1, 2, 2]))
    X = np.repeat(unit([0, 3, 4]), 5, axis=0)
    fit = fit_skill_centroids(CFG, X, np.linspace(0.5, 1, 5))
    assert fit.k == 1 and fit.seeds.tolist() == [5] and fit.labels.tolist() == [0]


def test_two_distinct_points_have_no_valid_k():
    # max_k = max(min(5, n-1, n_unique-1), 1) = 1: no k in 2..1, so one weighted-mean centroid.
    X = unit([1, 0, 0], [0, 1, 0])
    fit = fit_skill_centroids(CFG, X, np.array([1.0, 3.0]))
    assert fit.k == 1 and fit.silhouette is None
    np.testing.assert_allclose(fit.centroids[0], l2_normalize(np.array([0.25, 0.75, 0])))


def test_separated_blobs_are_found_with_weighted_centroids():
    rng = np.random.default_rng(0)
    centers = np.eye(16)[:2]
    X = l2_normalize(np.repeat(centers, [30, 20], axis=0) + 0.05 * rng.normal(size=(50, 16)))
    w = rng.uniform(0.5, 1.0, 50)
    fit = fit_skill_centroids(CFG, X, w)
    assert fit.k == 2 and fit.silhouette > 0.5
    assert sorted(fit.seeds.tolist()) == [20, 30]
    big = int(np.argmax(fit.seeds))
    rows = np.argmax(X @ fit.centroids.T, axis=1) == big
    ww = w[rows] * (50 / w.sum())
    np.testing.assert_allclose(
        fit.centroids[big], l2_normalize((ww[:, None] * X[rows]).sum(0) / ww.sum()), atol=1e-12
    )


def test_structureless_data_falls_back_below_silhouette_floor():
    rng = np.random.default_rng(1)
    X = l2_normalize(rng.normal(size=(80, 256)))  # isotropic: silhouettes ~0.01
    w = rng.uniform(0.5, 1.0, 80)
    fit = fit_skill_centroids(CFG, X, w)
    assert fit.k == 1 and fit.silhouette is not None and fit.silhouette < CFG.silhouette_floor
    np.testing.assert_allclose(fit.centroids[0], l2_normalize(np.average(X, axis=0, weights=w)), atol=1e-12)
    # With a floor below the best silhouette the same data is split.
    assert fit_skill_centroids(CascalConfig(silhouette_floor=-1.0), X, w).k > 1


def test_sklearn_silhouette_option_agrees():
    rng = np.random.default_rng(2)
    X = l2_normalize(np.repeat(np.eye(8)[:3], 15, axis=0) + 0.2 * rng.normal(size=(45, 8)))
    a = fit_skill_centroids(CFG, X, None)
    b = fit_skill_centroids(CascalConfig(silhouette="sklearn"), X, None)
    assert a.k == b.k == 3 and a.silhouette == pytest.approx(b.silhouette, abs=1e-12)
    np.testing.assert_array_equal(a.centroids, b.centroids)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted, n_init, seed", [(True, "auto", 0), (False, "auto", 3), (True, 3, 1)])
def test_shared_kmeans_steps_give_kmeans_labels(dtype, weighted, n_init, seed):
    # One preparation and one k-means++ seeding shared across k must give what KMeans(k).fit gives.
    from sklearn.cluster import KMeans

    from rgd.cascal.clustering import _kmeans_fits

    rng = np.random.default_rng(seed)
    X = l2_normalize(np.repeat(np.eye(24)[:4], 40, axis=0) + 0.6 * rng.normal(size=(160, 24))).astype(dtype)
    w = rng.uniform(0.5, 1.0, 160) if weighted else None
    cfg = CascalConfig(kmeans_n_init=n_init, random_state=seed, k_max=8)
    ks = range(2, 9)
    got = _kmeans_fits(cfg, X.copy(), w, ks)
    for k, (labels, centres) in zip(ks, got):
        km = KMeans(n_clusters=k, n_init=n_init, max_iter=cfg.kmeans_max_iter, random_state=seed)
        np.testing.assert_array_equal(labels, km.fit_predict(X, sample_weight=w))
        np.testing.assert_array_equal(centres, km.cluster_centers_)


def test_large_skill_sets_cluster_on_a_sample():
    rng = np.random.default_rng(6)
    X = l2_normalize(np.repeat(np.eye(16)[:3], [150, 100, 50], axis=0) + 0.1 * rng.normal(size=(300, 16)))
    w = rng.uniform(0.5, 1.0, 300)
    exact = fit_skill_centroids(CascalConfig(kmeans_max_rows=0), X, w)
    sampled = fit_skill_centroids(CascalConfig(kmeans_max_rows=40), X, w)
    assert not exact.sampled and sampled.sampled and exact.k == sampled.k == 3
    # every row went to its nearest sample centre: the same three groups, the same weighted means
    assert sorted(sampled.seeds.tolist()) == sorted(exact.seeds.tolist()) == [50, 100, 150]
    np.testing.assert_allclose(
        np.sort(sampled.centroids, axis=0), np.sort(exact.centroids, axis=0), atol=1e-12
    )
    with pytest.raises(ValueError, match="kmeans_max_rows"):
        CascalConfig(kmeans_max_rows=5)


def test_principal_rows_keep_the_distances_of_rows_in_few_directions():
    # Rows spanning 5 directions of 300: 16 principal coordinates hold every pairwise distance.
    from rgd.cascal.clustering import principal_rows

    rng = np.random.default_rng(8)
    X = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 300)) + 3.0
    Z = principal_rows(X, 16, seed=0, dtype=np.float64)
    assert Z.shape == (200, 16) and Z.flags.c_contiguous
    full = np.linalg.norm(X[:, None] - X[None], axis=2)
    np.testing.assert_allclose(np.linalg.norm(Z[:, None] - Z[None], axis=2), full, atol=1e-3 * full.max())
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-3)  # centred
    assert np.array_equal(Z, principal_rows(X, 16, seed=0, dtype=np.float64))  # seeded: the same rows
    assert principal_rows(X, 16, seed=0).dtype == np.float32
    for dims in (0, 300, 400, 200):  # nothing smaller to gain: the caller keeps the full rows
        assert principal_rows(X, dims, seed=0) is None


@pytest.mark.parametrize("max_rows", [0, 60])
def test_kmeans_on_principal_rows_finds_the_planted_clusters(max_rows):
    # Three tight groups in 512-d: k-means on 64 principal coordinates (the default) recovers them,
    # with or without sampling, and the centroids are the full-dimension means of the groups.
    rng = np.random.default_rng(9)
    centres = l2_normalize(rng.normal(size=(3, 512)))
    truth = np.repeat(np.arange(3), [90, 60, 30])
    X = l2_normalize(centres[truth] + 0.02 * rng.normal(size=(180, 512)))
    m = 2
    weights = np.ones((180, m))
    args = ("s", X, weights, np.ones((180, m)), ["a", "b"])
    fit = fit_subject(CascalConfig(prune=False, kmeans_max_rows=max_rows), *args)  # (one top set: no prune)
    exact = fit_subject(CascalConfig(prune=False, kmeans_dims=0), *args)
    assert fit.counters["kmeans_sampled_fits"] == (2 if max_rows else 0)
    groups = sorted(sorted(np.unique(truth[idx]).tolist()) for idx in fit.members)
    assert groups == [[0], [1], [2]]
    np.testing.assert_allclose(np.sort(fit.centroids, axis=0), np.sort(exact.centroids, axis=0), atol=1e-12)


def test_float64_norms_of_float32_rows_are_those_of_any_block():
    # k-means++ gets the squared norms once instead of per block: they must be the blocks' own.
    from sklearn.utils.extmath import row_norms

    rng = np.random.default_rng(7)
    for n, d in ((300, 4096), (257, 1000), (64, 4097)):
        X = (rng.normal(size=(n, d)) * 0.1).astype(np.float32)
        whole = row_norms(X.astype(np.float64), squared=True)
        for size in (1, 7, 156, 200):
            blocks = [row_norms(X[i : i + size].astype(np.float64), squared=True) for i in range(0, n, size)]
            assert np.array_equal(np.concatenate(blocks), whole)


def test_sklearn_silhouette_decides_near_ties_on_sklearn_scores(monkeypatch):
    from rgd.cascal import clustering

    X = l2_normalize(np.random.default_rng(4).normal(size=(30, 5)))
    labelings = [np.arange(30) % 2, np.arange(30) % 3]
    calls = []
    monkeypatch.setattr(
        clustering, "sklearn_silhouette", lambda X, lab: calls.append(1) or [0.2, 0.3][len(calls) - 1]
    )
    monkeypatch.setattr(
        clustering, "cosine_silhouettes", lambda X, labs: [0.25] * len(labs)
    )  # a tie: too close to call
    assert clustering._pick(CascalConfig(silhouette="sklearn"), X, labelings) == (1, 0.3)
    assert clustering._pick(CascalConfig(silhouette="linear"), X, labelings) == (0, 0.25) and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(
        clustering, "cosine_silhouettes", lambda X, labs: [0.1 + 0.2 * lab.max() for lab in labs]
    )
    assert clustering._pick(CascalConfig(silhouette="sklearn"), X, labelings) == (1, 0.5) and not calls


def test_compat_original_sets_the_original_semantics():
    cfg = CascalConfig(compat="original")
    assert (cfg.agreement, cfg.silhouette, cfg.kmeans_float32, cfg.kmeans_dims) == (
        "tied_union",
        "sklearn",
        False,
        0,
    )
    rgd = CascalConfig()
    assert (rgd.agreement, rgd.silhouette, rgd.kmeans_float32, rgd.kmeans_dims) == (
        "plurality",
        "linear",
        True,
        64,
    )
    with pytest.raises(ValueError, match="kmeans_dims: compat='original' sets 0, got 64"):
        CascalConfig(compat="original", kmeans_dims=64)
    with pytest.raises(ValueError, match="kmeans_dims: must be >= 0"):
        CascalConfig(kmeans_dims=-1)
    assert rgd.kmeans_max_rows == cfg.kmeans_max_rows == 0  # exact k-means on every row
    with pytest.raises(ValueError, match="kmeans_max_rows: compat='original' clusters every row"):
        CascalConfig(compat="original", kmeans_max_rows=4096)
    assert CascalConfig(compat="original", agreement="tied_union") == cfg  # the same value is fine
    with pytest.raises(ValueError, match="agreement: compat='original' sets 'tied_union'"):
        CascalConfig(compat="original", agreement="plurality")
    # Python's round, as the original: 0.0005 is 0.000500000000000000010408... in binary
    from rgd.cascal.subject import round_scores

    assert round_scores(np.array([0.0005]), 3, "original").tolist() == [0.001]
    assert round_scores(np.array([0.0005]), 3).tolist() == [0.0]
    # an abstention is a seeded random letter A-D, which can agree with the plurality
    choices = np.array([[0, 0, -1, 1, 2, 3]] * 50)
    w, _ = proficiency(CascalConfig(compat="original", weighted=False), choices, None)
    assert w[:, 2].any() and not proficiency(CascalConfig(weighted=False), choices, None)[0][:, 2].any()


# ----------------------------------------------------------------------------- step C


def test_merge_redirect_chain_and_weighted_mean():
    c0, c1, c2, c3 = unit([1, 0.05, 0], [1, 0, 0.05], [1, 0.1, 0.1], [0, 0, 1])
    C = np.stack([c0, c1, c2, c3])
    seeds = np.array([5, 1, 10, 4])
    # Scan c0: c1 is close with fewer seeds -> c1 -> c0; c2 is close with more -> c0 -> c2, stop.
    # c1 is merged (skipped); c2 and c3 are far apart. Chain c1 -> c0 -> c2.
    merge = merge_centroids(C, seeds, 0.15)
    assert merge.roots.tolist() == [2, 3]
    assert [g.tolist() for g in merge.groups] == [[0, 1, 2], [3]]
    assert merge.seeds.tolist() == [16, 4] and merge.n_merged == 2
    np.testing.assert_allclose(merge.centroids[0], l2_normalize((5 * c0 + 1 * c1 + 10 * c2) / 16))
    assert np.array_equal(merge.centroids[1], c3)  # a group of one is left untouched


def test_merge_equal_seeds_keep_first_and_threshold_off():
    C = unit([1, 0, 0], [1, 0.01, 0])
    merge = merge_centroids(C, np.array([3, 3]), 0.15)
    assert merge.roots.tolist() == [0] and merge.seeds.tolist() == [6]
    none = merge_centroids(C, np.array([3, 3]), 0.0)
    assert none.roots.tolist() == [0, 1] and none.n_merged == 0


def test_merge_group_order_follows_first_reached_root():
    # c0 -> c1 (c1 larger): the group rooted at c1 is reached first, while scanning c0.
    C = unit([1, 0, 0], [0, 0, 1], [1, 0.01, 0])
    merge = merge_centroids(C, np.array([1, 5, 9]), 0.15)
    # Scan c0: c1 far, c2 close with more seeds -> c0 -> c2. Groups: root 2 (reached at c0), root 1.
    assert merge.roots.tolist() == [2, 1]


# ----------------------------------------------------------------------------- steps E-G


def test_ranking_order_ties_by_name():
    order = ranking_order(np.array([[0.5, 0.5, 0.7, 0.1]]), ["b", "a", "c", "d"])
    assert order.tolist() == [[2, 1, 0, 3]]


def test_prune_keeps_larger_and_moves_members():
    experts = ["a", "b", "c", "d"]
    orders = np.array([[0, 1, 2, 3], [0, 1, 3, 2], [2, 1, 0, 3]])  # top-3: abc, abd, cba (= abc)
    members = [np.arange(3), np.arange(3, 7), np.arange(7, 12)]
    kept = _prune(CFG, orders, experts, members)
    assert kept.tolist() == [1, 2]
    assert members[2].tolist() == [7, 8, 9, 10, 11, 0, 1, 2]  # the larger one absorbs, order kept


def test_prune_equal_sizes_keep_first_and_jaccard_threshold():
    experts = ["a", "b", "c", "d"]
    orders = np.array([[0, 1, 2, 3], [0, 1, 3, 2]])  # Jaccard 2/4
    members = [np.arange(2), np.arange(2, 4)]
    assert _prune(CFG, orders, experts, [m.copy() for m in members]).tolist() == [0, 1]
    low = CascalConfig(prune_jaccard=0.5)
    moved = [m.copy() for m in members]
    assert _prune(low, orders, experts, moved).tolist() == [0]
    assert moved[0].tolist() == [0, 1, 2, 3]


def _subject_case():
    """12 questions in two tight groups; model 0 wins group 1, model 2 wins group 2."""
    rng = np.random.default_rng(5)
    X = l2_normalize(np.repeat(np.eye(6)[:2], 6, axis=0) + 0.02 * rng.normal(size=(12, 6)))
    choices = np.zeros((12, 4), dtype=np.int64)  # unanimous: every model proficient everywhere
    signal = np.tile([0.9, 0.5, 0.2, 0.1], (12, 1))
    signal[6:] = [0.1, 0.5, 0.9, 0.2]  # top-3 sets {m0, m1, m2} and {m1, m2, m3} differ
    return X, choices, signal, ["m0", "m1", "m2", "m3"]


def test_fit_subject_end_to_end_with_pruning_and_representative():
    X, choices, signal, experts = _subject_case()
    w, _ = proficiency(CFG, choices, None)
    fit = fit_subject(CFG, "s", X, w, signal, experts)
    # Each model finds both groups; centroids of the same group merge across models (4 -> 1 each).
    assert fit.counters["skill_fits"] == 4 and fit.counters["merged"] == 6
    assert len(fit.ids) == 2 and all(i.startswith("s::model=") for i in fit.ids)
    assert sorted(len(m) for m in fit.members) == [6, 6]
    np.testing.assert_allclose(sorted(fit.rankings[:, 0]), [0.1, 0.9])
    for c, idx in enumerate(fit.members):  # after pruning: spherical mean of the members
        np.testing.assert_allclose(fit.centroids[c], l2_normalize(X[idx].mean(axis=0)), atol=1e-15)
    np.testing.assert_allclose(fit.representative, l2_normalize(fit.centroids.mean(axis=0)))


def test_identical_top3_clusters_are_pruned_into_one():
    X, choices, signal, experts = _subject_case()
    signal[6:] = signal[0]  # both groups now rank the same models first
    w, _ = proficiency(CFG, choices, None)
    fit = fit_subject(CFG, "s", X, w, signal, experts)
    assert fit.counters["pruned"] == 1 and len(fit.ids) == 1 and len(fit.members[0]) == 12
    np.testing.assert_allclose(fit.centroids[0], l2_normalize(X.mean(axis=0)))
    kept = fit_subject(CascalConfig(prune=False), "s", X, w, signal, experts)
    assert len(kept.ids) == 2 and kept.counters["pruned"] == 0


def test_subject_without_proficient_questions_routes_globally():
    X, _, signal, experts = _subject_case()
    choices = np.tile([0, 1, 2, 3], (12, 1))  # four-way split: agree 1/4 < 0.5 everywhere
    r = Cascal().fit(data(X, ["s"] * 12, choices, signal, experts))
    assert r.cluster_ids_ == [] and r.counters_["subjects_without_clusters"] == 1
    assert r.counters_["questions_skipped_low_agreement"] == 12
    np.testing.assert_allclose(r.subject_reps_[0], l2_normalize(X.mean(axis=0)))
    res = r.diagnostics(X[:2])
    np.testing.assert_array_equal(r.route(X[:2]), np.tile(r.global_scores_, (2, 1)))
    assert (
        res["used_fallback"].all()
        and (res["fallback_alpha"] == 1).all()
        and res["nearest_cluster"] == [None] * 2
    )
    assert (res["n_centroids_used"] == 0).all() and np.isnan(res["nearest_distance"]).all()


# ----------------------------------------------------------------------------- routing


def _router(cfg=CFG, **kw) -> Cascal:
    """Two subjects in 3-D; subject 'a' has clusters a0 (x axis) and a1 (y axis), 'b' one (z axis)."""
    tables = dict(
        experts=["m0", "m1", "m2"],
        subjects=["a", "b"],
        centroids=unit([1, 0, 0], [0, 1, 0], [0, 0, 1]),
        cluster_ids=["a0", "a1", "b0"],
        cluster_subject=np.array([0, 0, 1]),
        rankings=np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.3], [0.1, 0.2, 0.7]]),
        subject_reps=unit([1, 1, 0], [0, 0, 1]),
        global_scores=np.array([0.4, 0.5, 0.3]),
    )
    tables.update(kw)
    return Cascal.from_tables(cfg, **tables)


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _expected(q, cfg, r, active):
    """Reference arithmetic of §9 steps 3-6 for one query, written out longhand."""
    q = q / np.linalg.norm(q)
    d = np.array([1 - q @ r.centroids_[c] for c in active])
    a = softmax(-d / cfg.distance_temp)
    P = sum(ai * softmax(r.rankings_[c] / cfg.score_temp) for ai, c in zip(a, active))
    d_near = d.min()
    if d_near > cfg.distance_threshold:
        alpha = min((d_near - cfg.distance_threshold) / cfg.ramp_width, 1.0)
        P = (1 - alpha) * P / P.sum() + alpha * r.global_scores_ / r.global_scores_.sum()
    else:
        alpha = 0.0
    return P, d_near, alpha


@pytest.mark.parametrize(
    "q, alpha",
    [
        ([1.0, 0.3, 0.0], 0.0),  # close to a0: no fallback
        ([0.2, 0.2, -0.35], None),  # far from everything in 'a': partial ramp
        ([0.05, 0.05, -1.0], 1.0),  # very far: capped at 1
    ],
)
def test_blend_and_fallback_ramp(q, alpha):
    r = _router()
    q = np.array([q])
    res = r.diagnostics(q)
    P, d_near, a = _expected(q[0], CFG, r, active=[0, 1] if res["predicted_subject"][0] == "a" else [2])
    np.testing.assert_allclose(r.route(q)[0], P, rtol=1e-6)
    assert res["nearest_distance"][0] == pytest.approx(d_near, abs=1e-6)
    assert res["fallback_alpha"][0] == pytest.approx(a, abs=1e-6)
    if alpha is None:
        assert 0 < res["fallback_alpha"][0] < 1 and res["used_fallback"][0]
    else:
        assert res["fallback_alpha"][0] == alpha and res["used_fallback"][0] == (alpha > 0)


def test_ramp_arithmetic_by_hand():
    # One subject, one centroid: a = 1, s = softmax(r / 0.1); d = 0.6 -> alpha = (0.6 - 0.5) / 0.2.
    cfg = CascalConfig()
    r = _router(
        cfg,
        subjects=["a"],
        centroids=unit([1, 0, 0]),
        cluster_ids=["a0"],
        cluster_subject=np.array([0]),
        rankings=np.array([[0.9, 0.5, 0.1]]),
        subject_reps=unit([1, 0, 0]),
    )
    q = np.array([[0.4, np.sqrt(1 - 0.16), 0.0]])  # cosine 0.4 -> distance 0.6
    res = r.diagnostics(q)
    s = softmax(np.array([0.9, 0.5, 0.1]) / 0.1)
    g = np.array([0.4, 0.5, 0.3]) / 1.2
    assert res["fallback_alpha"][0] == pytest.approx(0.5, abs=1e-6)
    np.testing.assert_allclose(r.route(q)[0], 0.5 * s + 0.5 * g, rtol=1e-5)
    off = _router(
        CascalConfig(fallback=False),
        **{
            k: getattr(r, k + "_")
            for k in ("subjects", "centroids", "cluster_ids", "cluster_subject", "rankings", "subject_reps")
        },
    )
    np.testing.assert_allclose(off.route(q)[0], s, rtol=1e-12)
    assert not off.diagnostics(q)["used_fallback"][0]


def test_raw_scores_without_sharpening_and_skipped_clusters():
    r = _router(CascalConfig(sharp_scoring=False, fallback=False))
    q = np.array([[1.0, 0.0, 0.0]])
    res = r.route(q)
    d = np.array([0.0, 1.0])
    a = softmax(-d / 0.1)
    np.testing.assert_allclose(res[0], a[0] * r.rankings_[0] + a[1] * r.rankings_[1], rtol=1e-6)
    # A cluster whose scores sum to <= 0 is skipped (its weight is not redistributed).
    z = _router(
        CascalConfig(fallback=False), rankings=np.array([[0.0, 0.0, 0.0], [0.2, 0.8, 0.3], [0.1, 0.2, 0.7]])
    )
    res = z.route(q)
    np.testing.assert_allclose(res[0], a[1] * softmax(np.array([0.2, 0.8, 0.3]) / 0.1), rtol=1e-6)


def test_two_stage_versus_nearest_centroid():
    # 'a' has a0 close to the query but its representative is pulled away by a far centroid a1;
    # 'b' has one centroid that is second closest. Two-stage picks 'b', the one-stage picks 'a'.
    kw = dict(
        centroids=unit([1, 0.3, 0], [-1, 0, 0.2], [1, 0, 0.6]),
        subject_reps=unit([0, 0.3, 0.2], [1, 0, 0.6]),
    )
    q = np.array([[1.0, 0.25, 0.0]])
    two, one = _router(**kw), _router(CascalConfig(two_stage=False), **kw)
    d2, d1 = two.diagnostics(q), one.diagnostics(q)
    assert d2["predicted_subject"][0] == "b" and d2["nearest_cluster"] == ["b0"]
    assert d1["predicted_subject"][0] == "a" and d1["nearest_cluster"] == ["a0"]
    assert d2["n_centroids_used"][0] == 1 and d1["n_centroids_used"][0] == 2
    assert not np.allclose(two.route(q), one.route(q))


def test_k_nearest_limits_blend():
    r = _router(CascalConfig(k_nearest=1, fallback=False))
    q = np.array([[1.0, 0.9, 0.0]])
    assert r.diagnostics(q)["n_centroids_used"][0] == 1
    np.testing.assert_allclose(r.route(q)[0], softmax(r.rankings_[0] / 0.1), rtol=1e-6)


def test_route_validates_and_handles_empty_batch():
    r = _router()
    with pytest.raises(ValueError, match="shape"):
        r.route(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        r.route(np.array([[np.nan, 0, 0]]))
    res = r.diagnostics(np.zeros((0, 3)))
    assert r.route(np.zeros((0, 3))).shape == (0, 3) and len(res["predicted_subject"]) == 0


def test_rank_seeded_tie_break():
    r = _router(rankings=np.full((3, 3), 0.5), global_scores=np.array([0.5, 0.5, 0.5]))
    X = np.tile([[1.0, 0.0, 0.0]], (200, 1))
    o1, s1 = r.rank(X, seed=1)
    o2, _ = r.rank(X, seed=1)
    o3, _ = r.rank(X, seed=2)
    assert np.array_equal(o1, o2) and not np.array_equal(o1, o3)
    assert len({tuple(o) for o in o1}) == 6  # all permutations occur: ties really are random
    o, s = _router().rank(np.array([[1.0, 0.0, 0.0]]))
    assert o.tolist() == [[0, 1, 2]] and np.all(np.diff(s[0][o[0]]) <= 0)


# ----------------------------------------------------------------------------- fit, artifacts


# Per-group accuracies of six models; within each subject the two groups' top-3 sets differ, so
# pruning keeps them apart.
ACC = np.array(
    [
        [0.9, 0.7, 0.6, 0.3, 0.3, 0.3],  # alpha, group 0: best m0
        [0.3, 0.3, 0.3, 0.9, 0.7, 0.6],  # alpha, group 1: best m3
        [0.6, 0.3, 0.9, 0.3, 0.7, 0.3],  # beta & gamma, group 2: best m2
        [0.3, 0.9, 0.3, 0.7, 0.3, 0.6],  # beta & gamma, group 3: best m1
    ]
)


def _dataset(n=240, seed=0):
    rng = np.random.default_rng(seed)
    subj = np.repeat(["alpha", "beta & gamma"], n // 2)
    group = np.where(subj == "alpha", 0, 2) + rng.integers(0, 2, n)
    X = np.eye(16)[group] * 3 + 0.5 * rng.normal(size=(n, 16))
    gold = rng.integers(0, 4, n)
    correct = rng.random((n, 6)) < ACC[group]
    choices = np.where(correct, gold[:, None], (gold[:, None] + rng.integers(1, 4, (n, 6))) % 4)
    consensus = np.where(correct, 0.7, 0.2) + 0.05 * rng.random((n, 6))
    ids = [f"q{i:04d}" for i in range(n)]
    return X, list(subj), choices, consensus, correct.astype(int), [f"m{j}" for j in range(6)], ids


def _fit(cfg=CFG, n_jobs=1, **kw):
    X, subj, choices, consensus, correct, experts, ids = _dataset()
    return Cascal(**cfg.to_dict(), n_jobs=n_jobs).fit(
        data(X, subj, choices, consensus, experts, correct, ids, **kw)
    )


def _artifact_bytes(router, directory: Path) -> dict[str, bytes]:
    router.save(directory)
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_fit_is_deterministic_to_the_byte(tmp_path):
    a = _artifact_bytes(_fit(), tmp_path / "a")
    b = _artifact_bytes(_fit(), tmp_path / "b")
    c = _artifact_bytes(_fit(n_jobs=2), tmp_path / "c")  # threads over subjects change nothing
    assert set(a) == {"router.json", "centroids.npz"}
    assert a == b == c
    d = _artifact_bytes(_fit(CascalConfig(random_state=7)), tmp_path / "d")
    assert d["router.json"] != a["router.json"]  # the seed is really used


def test_save_load_round_trip_is_bit_identical(tmp_path):
    router = _fit(embedder={"model": "toy-embedder", "dim": 16, "normalize": True})
    router.save(tmp_path / "r")
    loaded = Cascal.load(tmp_path / "r")
    X = _dataset(seed=1)[0]
    a, b = (
        {"scores": router.route(X), **router.diagnostics(X)},
        {"scores": loaded.route(X), **loaded.diagnostics(X)},
    )
    for field in (
        "scores",
        "nearest_distance",
        "fallback_alpha",
        "nearest_cluster",
        "used_fallback",
        "n_centroids_used",
        "predicted_subject",
    ):
        assert np.array_equal(a[field], b[field], equal_nan=field == "nearest_distance"), field
    assert np.array_equal(router.rank(X)[0], loaded.rank(X)[0])
    # Saving the loaded router reproduces the artifact.
    assert _artifact_bytes(loaded, tmp_path / "again") == _artifact_bytes(router, tmp_path / "r")

    text = (tmp_path / "r" / "router.json").read_text()
    h = json.loads(text)
    assert text == json.dumps(h, ensure_ascii=False, sort_keys=True, indent=2) + "\n"
    assert h["embedder"] == {"model": "toy-embedder", "dim": 16, "normalize": True}
    assert h["subjects"] == [{"name": s, "slug": slug(s)} for s in ["alpha", "beta & gamma"]]
    assert h["embedding_dim"] == 16 and h["config"] == CFG.to_dict()
    assert [c["id"] for c in h["clusters"]] == router.cluster_ids_
    assert sum(c["assigned"] for c in h["clusters"]) == 240
    assert sorted(i for ids in h["assigned"].values() for i in ids) == [f"q{i:04d}" for i in range(240)]
    assert set(h["counters"]) >= {
        "single_cluster_fits",
        "merged",
        "pruned",
        "questions_skipped_low_agreement",
    }
    for c in h["clusters"]:
        scores = [s for _, s in c["ranking"]]
        assert scores == sorted(scores, reverse=True)


def test_load_rejects_inconsistent_artifacts(tmp_path):
    _fit().save(tmp_path / "r")
    npz = tmp_path / "r" / "centroids.npz"
    data = bytearray(npz.read_bytes())
    data[-30] ^= 1
    npz.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        Cascal.load(tmp_path / "r")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "router.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a CASCAL"):
        Cascal.load(tmp_path / "x")


def test_cascal_gt_ranks_by_correctness():
    X, subj, choices, consensus, correct, experts, ids = _dataset()
    gt = Cascal(signal="correctness").fit(data(X, subj, None, None, experts, correct, ids))
    np.testing.assert_array_equal(gt.global_scores_, np.round(correct.mean(axis=0), 4))
    for cid, r in zip(gt.cluster_ids_, gt.rankings_):
        rows = [int(i[1:]) for i in gt.assigned_[cid]]
        np.testing.assert_array_equal(r, np.round(correct[rows].mean(axis=0), 3))
    # The consensus router ranks by consensus instead, so its tables differ.
    cons = Cascal().fit(data(X, subj, choices, consensus, experts))
    np.testing.assert_array_equal(cons.global_scores_, np.round(consensus.mean(axis=0), 4))
    with pytest.raises(ValueError, match="correct"):
        Cascal(signal="correctness").fit(data(X, subj, choices, consensus, experts))


def test_routing_in_blocks_and_from_a_memory_map(tmp_path, monkeypatch):
    from rgd.cascal import estimator

    router = _fit()
    X = _dataset(n=50, seed=3)[0]
    whole, diag = router.route(X), router.diagnostics(X)
    monkeypatch.setattr(estimator, "ROUTE_CHUNK", 7)  # 8 blocks, the last one short
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=X.dtype, shape=X.shape)
    mm[:] = X
    for Xs in (X, np.load(tmp_path / "X.npy", mmap_mode="r")):
        np.testing.assert_allclose(
            router.route(Xs), whole, rtol=1e-6
        )  # float32 products: block-size rounding
        blocked = router.diagnostics(Xs)
        assert blocked["predicted_subject"] == diag["predicted_subject"]
        assert blocked["nearest_cluster"] == diag["nearest_cluster"]
        np.testing.assert_array_equal(blocked["n_centroids_used"], diag["n_centroids_used"])
    X[23, 4] = np.nan  # a bad row in a later block is still found
    with pytest.raises(ValueError, match="NaN"):
        router.route(X)


def test_fit_recovers_niches_on_the_toy_data():
    router = _fit()
    assert len(router.cluster_ids_) == 4 and router.counters_["pruned"] == 0
    top = router.rank(np.eye(16)[:4])[0][:, 0]
    assert top.tolist() == [0, 3, 2, 1]  # each group's planted best model
    res = router.diagnostics(np.eye(16)[:4])
    assert res["predicted_subject"] == ["alpha", "alpha", "beta & gamma", "beta & gamma"]
    assert len(set(res["nearest_cluster"])) == 4


def test_fit_validates_inputs():
    X, subj, choices, consensus, correct, experts, ids = _dataset(n=20)
    with pytest.raises(ValueError, match="choices"):
        Cascal().fit(data(X, subj, choices[:, :2], consensus, experts))
    with pytest.raises(ValueError, match="choices"):
        Cascal().fit(data(X, subj, choices - 2, consensus, experts))
    with pytest.raises(ValueError, match="X"):
        Cascal().fit(data(np.full_like(X, np.nan), subj, choices, consensus, experts))
    with pytest.raises(ValueError, match="experts"):
        Cascal().fit(data(X, subj, choices[:, :3], consensus[:, :3], ["a", "a", "b"]))
    with pytest.raises(ValueError, match="ids"):
        Cascal().fit(data(X, subj, choices, consensus, experts, ids=ids[:3]))
    with pytest.raises(ValueError, match="embedder"):
        Cascal().fit(data(X, subj, choices, consensus, experts, embedder={"model": object()}))
    with pytest.raises(ValueError, match="embedder"):
        Cascal().fit(data(X, subj, choices, consensus, experts, embedder=["not", "a", "dict"]))
    with pytest.raises(RuntimeError, match="not fitted"):
        Cascal().route(X)


@pytest.mark.parametrize(
    "bad",
    [
        {"signal": "gold"},
        {"agreement": "all"},
        {"k_min": 1},
        {"k_max": 1},
        {"distance_temp": 0.0},
        {"kmeans_n_init": 0},
        {"prune": "yes"},
        {"rank_decimals": -1},
        {"merge_threshold": float("nan")},
    ],
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        CascalConfig(**bad)


def test_config_round_trip():
    cfg = CascalConfig(signal="correctness", rank_decimals=None, kmeans_n_init=3)
    assert CascalConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        CascalConfig.from_dict({"nope": 1})


def test_near_duplicates_collapsing_in_float32_are_handled_quietly():
    # Rows distinct in float64 (so k may reach 3) but equal in float32: k-means finds fewer distinct
    # clusters than k; fit must neither warn nor emit an empty centroid.
    a, b = unit([1, 0.2, 0, 0]), unit([0, 0, 1, 0.3])
    X = np.concatenate([a, a + 1e-10, a + 2e-10, b, b + 1e-10])
    choices = np.zeros((5, 2), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = Cascal().fit(data(X, ["s"] * 5, choices, np.full((5, 2), 0.5), ["m0", "m1"]))
    assert np.all(np.isfinite(r.centroids_)) and np.allclose(np.linalg.norm(r.centroids_, axis=1), 1)
    assert r.cluster_sizes_.sum() == 5
