import math

import numpy as np
import pytest

from rgd.consensus import (
    ConsensusConfig,
    ModelStats,
    consensus_scores,
    robust_stats,
    run_consensus,
    stable_sigmoid,
    vote_posterior,
)
from rgd.io import InputError

N_M = 6


def fixed_stats(median: float, sigma: float = 1.0, n_m: int = N_M) -> ModelStats:
    return ModelStats(np.full(n_m, median), np.full(n_m, sigma))


# --- docs/METHOD.md §6: the reference values ----------------------------------------------------------------


@pytest.mark.parametrize(
    "w, expected",
    [(0.5, 0.5139), (0.99, 0.9524), (0.01, 0.0529)],
)
def test_reference_unanimous(w, expected):
    post = vote_posterior(np.zeros((1, N_M), dtype=int), np.full((1, N_M), w), 20)
    assert post[0, 0] == pytest.approx(expected, abs=5e-5)
    assert post.sum() == pytest.approx(1.0)


def test_reference_four_two_split():
    choices = np.array([[0, 0, 0, 0, 1, 1]])
    post = vote_posterior(choices, np.full((1, N_M), 0.5), 20)
    assert post[0, 0] == pytest.approx(0.2629, abs=5e-5)
    assert post[0, 1] == pytest.approx(0.0967, abs=5e-5)


def test_reference_all_different():
    post = vote_posterior(np.arange(N_M)[None, :], np.full((1, N_M), 0.5), 20)
    np.testing.assert_allclose(post[0, :N_M], 0.069, atol=5e-4)


def test_reference_values_through_consensus_scores():
    # Constant logprobs -> MAD 0 -> std 0 -> sigma 1, z 0, w 0.5.
    choices = np.array([[0] * 6, [0, 0, 0, 0, 1, 1], [0, 1, 2, 3, 4, 5]])
    res = consensus_scores(choices, np.full(choices.shape, -0.3))
    np.testing.assert_allclose(res.weights, 0.5)
    np.testing.assert_allclose(res.scores[0], 0.5139, atol=5e-5)
    np.testing.assert_allclose(res.scores[1], [0.2629] * 4 + [0.0967] * 2, atol=5e-5)
    np.testing.assert_allclose(res.scores[2], 0.069, atol=5e-4)
    # Clipping bounds: z = +-100 give w = 0.99 / 0.01.
    unanimous = np.zeros((1, 6), dtype=int)
    hi = consensus_scores(unanimous, np.zeros((1, 6)), stats=fixed_stats(-100.0))
    lo = consensus_scores(unanimous, np.zeros((1, 6)), stats=fixed_stats(100.0))
    np.testing.assert_allclose(hi.weights, 0.99)
    np.testing.assert_allclose(hi.scores, 0.9524, atol=5e-5)
    np.testing.assert_allclose(lo.scores, 0.0529, atol=5e-5)


def test_formula_matches_hand_computation():
    lp = np.array([[-0.1, -0.5], [-0.2, -0.4], [-0.3, -0.9]])
    choices = np.array([[0, 0], [0, 1], [2, 1]])
    res = consensus_scores(choices, lp, ConsensusConfig(n_classes=4, scale=2.0, tau=0.5))
    # model 0: median -0.2, MAD 0.1; model 1: median -0.5, MAD 0.1
    sig = 1.4826 * 0.1
    z = np.array([[0.1, 0.0], [0.0, 0.1], [-0.1, -0.4]]) / sig
    np.testing.assert_allclose(res.z, z, atol=1e-12)
    w = np.clip(1 / (1 + np.exp(-2.0 * z)), 0.01, 0.99)
    for q in range(3):
        raw = np.zeros(4)
        for m in range(2):
            raw[choices[q, m]] += w[q, m]
        p = np.exp(raw / 0.5) / np.exp(raw / 0.5).sum()
        np.testing.assert_allclose(res.scores[q], p[choices[q]], atol=1e-12)


# --- statistics ----------------------------------------------------------------------------------


def test_mad_fallbacks():
    lp = np.array(
        [
            [-1.0, -2.0, -3.0, np.nan],
            [-1.0, -2.0, -3.0, np.nan],
            [-1.0, -2.0, -3.0, np.nan],
            [-1.0, -2.0, -3.0, np.nan],
            [-1.0, -6.0, -1.0, np.nan],
        ]
    )
    st = robust_stats(lp)
    # col 0: constant -> MAD 0 -> std 0 -> 1.0
    assert st.median[0] == -1.0 and st.sigma[0] == 1.0
    # col 1: 4 equal values + outlier -> MAD 0 -> std of the column
    assert st.median[1] == -2.0 and st.sigma[1] == pytest.approx(np.std(lp[:, 1]))
    # col 2: median -3, MAD 0 -> std
    assert st.sigma[2] == pytest.approx(np.std(lp[:, 2]))
    # col 3: no data at all -> 0 / 1
    assert st.median[3] == 0.0 and st.sigma[3] == 1.0


def test_mad_regular_and_nan_ignored():
    lp = np.array([[-1.0], [-2.0], [np.nan], [-4.0], [-8.0]])
    st = robust_stats(lp)
    # finite values -1 -2 -4 -8 -> median -3; |dev| 2 1 1 5 -> median 1.5
    assert st.median[0] == -3.0
    assert st.sigma[0] == pytest.approx(1.4826 * 1.5)


def test_robust_stats_match_numpy_nan_helpers():
    rng = np.random.default_rng(9)
    lp = rng.normal(-0.5, 0.2, size=(1001, 5))
    lp[rng.random(lp.shape) < 0.1] = np.nan
    lp[:, 4] = np.round(lp[:, 4], 1)  # many ties
    st = robust_stats(lp)
    med = np.nanmedian(lp, axis=0)
    np.testing.assert_array_equal(st.median, med)
    np.testing.assert_allclose(st.sigma, 1.4826 * np.nanmedian(np.abs(lp - med), axis=0), rtol=1e-15)
    lp2 = lp.copy()
    robust_stats(lp2)
    np.testing.assert_array_equal(lp2, lp)  # input untouched


def test_vote_posterior_large_weights_do_not_overflow():
    p = vote_posterior(np.array([[0, 0, 1, -1]]), np.array([[500.0, 500.0, 1.0, 7.0]]), 4)
    assert np.isfinite(p).all() and p[0, 0] == pytest.approx(1.0) and p.sum() == pytest.approx(1.0)


def test_stable_sigmoid_no_overflow():
    x = np.array([-1e6, -800.0, -5.0, 0.0, 5.0, 800.0, 1e6])
    with np.errstate(over="raise", invalid="raise"):
        y = stable_sigmoid(x)
    np.testing.assert_allclose(y[2:5], 1 / (1 + np.exp(-x[2:5])), rtol=1e-12)
    assert y[0] == 0.0 and y[-1] == 1.0
    res = consensus_scores(
        np.zeros((2, 2), dtype=int),
        np.array([[-1e300, 0.0], [0.0, 0.0]]),
        stats=ModelStats(np.zeros(2), np.full(2, 1e-300)),
    )
    assert np.isfinite(res.scores).all() and np.isfinite(res.z).all()
    assert res.z[0, 0] < -1e9 and res.weights[0, 0] == 0.01


# --- abstentions and missing confidences -------------------------------------------------------------


def test_abstention_casts_no_vote_and_scores_zero():
    choices = np.array([[0, 0, -1], [1, -1, -1], [-1, -1, -1]])
    res = consensus_scores(choices, np.zeros(choices.shape), ConsensusConfig(n_classes=4))
    assert (res.scores[choices < 0] == 0).all()
    assert (res.weights[choices < 0] == 0).all()
    # question 0: A gets 0.5 + 0.5, others 0, over 4 classes
    e = math.exp(1.0)
    np.testing.assert_allclose(res.scores[0, :2], e / (e + 3))
    e = math.exp(0.5)
    assert res.scores[1, 0] == pytest.approx(e / (e + 3))


def test_nan_confidence_is_neutral():
    lp = np.array([[np.nan, -1.0], [-2.0, -3.0], [-4.0, np.nan]])
    choices = np.array([[0, 0], [1, 0], [0, 1]])
    res = consensus_scores(choices, lp, ConsensusConfig(n_classes=3))
    assert np.isfinite(res.scores).all() and np.isfinite(res.z).all()
    assert res.z[0, 0] == 0.0 and res.weights[0, 0] == 0.5
    assert res.z[2, 1] == 0.0 and res.weights[2, 1] == 0.5
    # The NaN row does not move the statistics: model 0 median is of (-2, -4).
    assert res.stats.median[0] == -3.0


def test_out_of_range_choice_is_an_error_in_rgd_mode():
    with pytest.raises(ValueError, match="raise n_classes"):
        consensus_scores(np.array([[0, 5]]), np.zeros((1, 2)), ConsensusConfig(n_classes=4))
    with pytest.raises(ValueError, match="below"):
        consensus_scores(np.array([[0, -2]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="shape"):
        consensus_scores(np.array([[0, 1]]), np.zeros((2, 2)))


def test_original_compat_random_letters_are_seeded():
    rng = np.random.default_rng(3)
    choices = rng.integers(-1, 4, size=(200, 6))
    lp = rng.normal(size=(200, 6))
    a = consensus_scores(choices, lp, ConsensusConfig(compat="original", seed=7))
    b = consensus_scores(choices, lp, ConsensusConfig(compat="original", seed=7))
    c = consensus_scores(choices, lp, ConsensusConfig(compat="original", seed=8))
    assert a.scores.tobytes() == b.scores.tobytes()
    assert not np.array_equal(a.scores, c.scores)
    # Invalid answers vote: they get a positive score and full weight, unlike rgd mode.
    assert (a.scores[choices < 0] > 0).all() and (a.weights[choices < 0] > 0).all()
    r = consensus_scores(choices, lp)
    valid_rows = (choices >= 0).all(axis=1)
    np.testing.assert_array_equal(a.scores[valid_rows], r.scores[valid_rows])
    assert (r.scores[choices < 0] == 0).all()


def test_original_compat_draw_matches_stated_rule():
    choices = np.array([[-1, 0], [3, -1]])
    lp = np.zeros((2, 2))
    cfg = ConsensusConfig(n_classes=20, compat="original", seed=11)
    drawn = np.random.default_rng(11).integers(0, 20, size=2)
    filled = np.array([[drawn[0], 0], [3, drawn[1]]])
    expect = consensus_scores(filled, lp)
    np.testing.assert_array_equal(consensus_scores(choices, lp, cfg).scores, expect.scores)


def test_given_stats_are_used():
    lp = np.array([[-1.0, -1.0], [-2.0, -2.0]])
    res = consensus_scores(
        np.zeros((2, 2), dtype=int), lp, stats=ModelStats(np.array([-1.0, 0.0]), np.array([0.5, 0.0]))
    )
    np.testing.assert_allclose(res.z, [[0.0, -1.0], [-2.0, -2.0]])  # sigma 0 -> 1
    with pytest.raises(ValueError, match="stats"):
        consensus_scores(np.zeros((2, 2), dtype=int), lp, stats=fixed_stats(0.0, n_m=3))
    with pytest.raises(ValueError, match="finite"):
        consensus_scores(np.zeros((2, 2), dtype=int), lp, stats=fixed_stats(np.nan, n_m=2))


def test_inputs_not_modified_and_empty_ok():
    choices = np.array([[-1, 0], [1, 1]])
    lp = np.array([[np.nan, -1.0], [-2.0, -3.0]])
    c0, l0 = choices.copy(), lp.copy()
    consensus_scores(choices, lp, ConsensusConfig(n_classes=2))
    consensus_scores(choices, lp, ConsensusConfig(n_classes=2, compat="original"))
    np.testing.assert_array_equal(choices, c0)
    np.testing.assert_array_equal(lp, l0)
    res = consensus_scores(np.zeros((0, 3), dtype=int), np.zeros((0, 3)))
    assert res.scores.shape == (0, 3)


def test_config_validation():
    with pytest.raises(ValueError, match="compat"):
        ConsensusConfig(compat="orig")
    with pytest.raises(ValueError, match="tau"):
        ConsensusConfig(tau=0)
    with pytest.raises(ValueError, match="n_classes"):
        ConsensusConfig(n_classes=27)


# --- file level ------------------------------------------------------------------------------------


def _resp(qid, expert, choice, conf):
    return {"id": qid, "expert": expert, "choice": choice, "confidence": conf, "status": "ok"}


def test_run_consensus_rows_and_stats():
    qids = ["q2", "q1"]
    responses = {
        "m1": [_resp("q1", "m1", "A", -0.1), _resp("q2", "m1", "B", -0.2), _resp("extra", "m1", "C", -1.0)],
        "m0": [_resp("q2", "m0", "B", None), _resp("q1", "m0", None, -0.5)],
    }
    rows, stats = run_consensus(qids, responses, ConsensusConfig(n_classes=4))
    assert [(r["id"], r["expert"]) for r in rows] == [("q2", "m1"), ("q2", "m0"), ("q1", "m1"), ("q1", "m0")]
    assert set(rows[0]) == {"id", "expert", "choice", "consensus", "z", "weight"}
    assert rows[3]["choice"] is None and rows[3]["consensus"] == 0.0 and rows[3]["weight"] == 0.0
    assert rows[1]["z"] == 0.0 and rows[1]["weight"] == 0.5  # None confidence, valid vote
    assert rows[0]["consensus"] == rows[1]["consensus"]  # same letter, same score
    assert list(stats["experts"]) == ["m1", "m0"]
    assert stats["n_questions"] == 2 and stats["config"]["n_classes"] == 4
    # m1's stats use only the listed questions: median of (-0.1, -0.2)
    assert stats["experts"]["m1"]["median"] == pytest.approx(-0.15)
    # Reusing the stats gives the same rows.
    rows2, _ = run_consensus(qids, responses, ConsensusConfig(n_classes=4), stats=stats)
    assert rows2 == rows


def test_run_consensus_missing_response_names_expert_and_id():
    responses = {"m0": [_resp("q1", "m0", "A", -0.1)], "m1": [_resp("q2", "m1", "A", -0.1)]}
    with pytest.raises(InputError, match=r"'m1'.*'q1'") as e:
        run_consensus(["q1"], responses, sources={"m1": "responses/m1.jsonl"})
    assert e.value.path == "responses/m1.jsonl" and e.value.field == "id"


def test_run_consensus_rejects_bad_records():
    with pytest.raises(InputError, match="choice"):
        run_consensus(["q"], {"m": [_resp("q", "m", "a", 0.0)]})
    with pytest.raises(InputError, match="confidence"):
        run_consensus(["q"], {"m": [_resp("q", "m", "A", "high")]})
    with pytest.raises(InputError, match="duplicate"):
        run_consensus(["q"], {"m": [_resp("q", "m", "A", 0.0), _resp("q", "m", "B", 0.0)]})
    with pytest.raises(InputError, match="filed under"):
        run_consensus(["q"], {"m": [_resp("q", "other", "A", 0.0)]})
