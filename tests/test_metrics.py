import json
import math

import numpy as np
import pytest

from rgd.metrics import (
    Bootstrap,
    correct_matrix,
    evaluate,
    gap_closed,
    paired_bootstrap,
    percentile_ci,
    pool_vote_correct,
    rank,
    top1_correct,
    top3_vote_correct,
    topk_any_correct,
    vote,
)


def test_rank_orders_by_score_and_nan_last():
    scores = np.array([[0.1, 0.9, 0.5, np.nan], [np.nan, 0.2, 0.3, 0.1]])
    np.testing.assert_array_equal(rank(scores, 0), [[1, 2, 0, 3], [2, 1, 3, 0]])


def test_rank_tie_break_is_seeded_and_uniform():
    scores = np.zeros((4000, 3))
    a, b = rank(scores, 1), rank(scores, 1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, rank(scores, 2))
    # Each model is first about a third of the time.
    frac = np.bincount(a[:, 0], minlength=3) / 4000
    np.testing.assert_allclose(frac, 1 / 3, atol=0.03)
    # Ties only among equal scores: the strictly best model always comes first.
    s = np.tile([0.2, 0.7, 0.2, 0.7], (50, 1))
    r = rank(s, 0)
    assert set(r[:, 0]) == {1, 3} and (np.sort(r[:, :2], axis=1) == [1, 3]).all()


def test_top1_top3_any_oracle():
    choices = np.array([[0, 1, 2, 3], [1, 1, -1, 0], [2, 2, 2, 2]])
    gold = np.array([2, 0, 1])
    order = np.array([[0, 1, 2, 3], [2, 3, 0, 1], [3, 2, 1, 0]])
    np.testing.assert_array_equal(top1_correct(order, choices, gold), [False, False, False])
    np.testing.assert_array_equal(topk_any_correct(order, choices, gold, 3), [True, True, False])
    np.testing.assert_array_equal(correct_matrix(choices, gold).any(axis=1), [True, True, False])
    np.testing.assert_allclose(correct_matrix(choices, gold).mean(axis=0), [0, 0, 1 / 3, 1 / 3])
    assert not correct_matrix(np.array([[-1]]), np.array([0])).any()


def test_vote_rules():
    z = np.array([[0.0, 1.0, 2.0]] * 7)
    choices = np.array(
        [
            [0, 0, 1],  # plurality A despite B's higher z
            [0, 1, 2],  # all differ -> highest z -> C
            [0, 1, -1],  # one abstention, 1-1 tie -> higher z of the two -> B
            [-1, -1, 3],  # single vote -> D
            [-1, -1, -1],  # nobody -> abstain
            [1, -1, -1],
            [2, 2, -1],
        ]
    )
    np.testing.assert_array_equal(vote(choices, z), [0, 2, 1, 3, -1, 1, 2])


def test_vote_z_ties_and_nan():
    choices = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    z = np.array([[1.0, 1.0, 0.0], [np.nan, np.nan, np.nan], [np.nan, -5.0, np.nan]])
    # equal z -> earlier member; all NaN -> earlier member; NaN is least confident
    np.testing.assert_array_equal(vote(choices, z), [0, 0, 1])
    # member order decides equal-z ties
    members = np.array([[2, 1, 0]] * 3)
    np.testing.assert_array_equal(vote(choices, z, members), [1, 2, 1])


def test_top3_vote_matches_original_rule_without_abstentions():
    rng = np.random.default_rng(0)
    n, m = 500, 6
    choices = rng.integers(0, 4, size=(n, m))
    gold = rng.integers(0, 4, size=n)
    z = rng.normal(size=(n, m))
    order = rank(rng.random((n, m)), 0)
    got = top3_vote_correct(order, choices, gold, z)
    for q in range(n):
        top = order[q, :3]
        c = list(choices[q, top])
        if len(set(c)) == 3:
            ans = c[int(np.argmax(z[q, top]))]
        else:
            ans = max(set(c), key=c.count)
        assert got[q] == (ans == gold[q])


def test_pool_vote():
    choices = np.array([[0, 0, 1, 1, 2], [3, 3, 3, -1, -1]])
    z = np.array([[0, 0, 0, 5, 0], [0, 0, 0, 0, 0]], dtype=float)
    np.testing.assert_array_equal(pool_vote_correct(choices, np.array([1, 3]), z), [True, True])


def test_gap_closed():
    assert gap_closed(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert gap_closed(0.5, 0.6, 0.8) == pytest.approx(-0.5)
    assert math.isnan(gap_closed(0.6, 0.6, 0.6))
    np.testing.assert_allclose(
        gap_closed(np.array([0.7, 0.9]), np.array([0.6, 0.9]), np.array([0.8, 0.9])), [0.5, np.nan]
    )


def test_bootstrap_matches_explicit_resampling():
    x = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    boot = Bootstrap(5, n_boot=7, seed=4)
    idx = np.random.default_rng(4).integers(0, 5, size=(7, 5))
    np.testing.assert_array_equal(boot.idx, idx)
    np.testing.assert_allclose(boot.means(x), x[idx].mean(axis=1))
    two = boot.means(np.column_stack([x, 1 - x]))
    np.testing.assert_allclose(two[:, 0] + two[:, 1], 1.0)


def bootstrap_ci(values, n_boot, seed=0):
    """Percentile CI of the mean, as `evaluate` computes each metric's."""
    return percentile_ci(Bootstrap(len(values), n_boot, seed).means(values))


def test_bootstrap_ci_properties():
    rng = np.random.default_rng(1)
    x = (rng.random(2000) < 0.7).astype(float)
    lo, hi = bootstrap_ci(x, n_boot=500, seed=3)
    assert lo < x.mean() < hi
    se = math.sqrt(0.7 * 0.3 / 2000)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert bootstrap_ci(x, n_boot=500, seed=3) == (lo, hi)
    assert bootstrap_ci(np.ones(10), n_boot=50) == (1.0, 1.0)


def test_paired_bootstrap():
    rng = np.random.default_rng(2)
    models = (rng.random((1000, 3)) < [0.5, 0.6, 0.55]).astype(float)
    good = np.maximum(models[:, 1], rng.random(1000) < 0.5)  # strictly better than model 1
    res = paired_bootstrap(good, models, n_boot=400, seed=0)
    assert res.diff == pytest.approx(good.mean() - models.mean(axis=0).max())
    assert res.ci[0] > 0 and res.frac_router_le_best == 0.0
    same = paired_bootstrap(models[:, 1], models, n_boot=400, seed=0)
    assert same.frac_router_le_best == 1.0  # the best is re-chosen per resample, so never below it


def test_evaluate_hand_case():
    # 4 questions, 3 models, gold all 0.
    choices = np.array([[0, 1, 1], [1, 0, 2], [0, 0, 1], [2, 1, -1]])
    gold = np.zeros(4, dtype=int)
    scores = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
    z = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    rep = evaluate(scores, choices, gold, z, models=["a", "b", "c"], n_boot=200, seed=5)
    assert rep.model_accuracy == [0.5, 0.5, 0.0]
    assert rep.top1 == 0.5  # q0 a (right), q1 b (right), q2 c (wrong), q3 a (wrong)
    # top-3 = whole pool: q0 votes A,B,B -> B wrong; q1 all differ -> b (z=1) -> A right;
    # q2 A,A,B -> A right; q3 C,B,abstain -> tie, z equal -> higher-ranked a -> C wrong
    assert rep.top3_vote == 0.5
    assert rep.top3_any == 0.75 and rep.oracle == 0.75
    assert rep.best_single == 0.5 and rep.best_single_model == "a"
    assert rep.random == pytest.approx(1 / 3)
    # pool vote in pool order: q0 B wrong, q1 A (b's z) right, q2 A right, q3 tie C/B -> a's C wrong
    assert rep.pool_vote == 0.5
    assert rep.gap_closed_top1 == 0.0
    for name, (lo, hi) in rep.ci.items():
        if name.startswith("gap"):
            continue
        assert lo <= getattr(rep, name) <= hi, name
    d = rep.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["paired"]["top1_vs_best_single"]["diff"] == 0.0
    again = evaluate(scores, choices, gold, z, models=["a", "b", "c"], n_boot=200, seed=5).to_dict()
    assert json.dumps(again, sort_keys=True) == json.dumps(d, sort_keys=True)


def test_evaluate_undefined_gap_is_null():
    choices = np.array([[0, 0], [1, 1]])
    rep = evaluate(np.zeros((2, 2)), choices, np.array([0, 0]), None, n_boot=20)
    assert math.isnan(rep.gap_closed_top1)
    assert rep.to_dict()["gap_closed_top1"] is None


def test_input_validation():
    with pytest.raises(ValueError, match="gold"):
        evaluate(np.zeros((2, 2)), np.zeros((2, 2), dtype=int), np.zeros(3, dtype=int), None)
    with pytest.raises(ValueError, match="shapes"):
        evaluate(np.zeros((2, 3)), np.zeros((2, 2), dtype=int), np.zeros(2, dtype=int), None)
    with pytest.raises(ValueError, match="names"):
        evaluate(np.zeros((2, 2)), np.zeros((2, 2), dtype=int), np.zeros(2, dtype=int), None, models=["x"])
