"""Pool diagnostics: kappas checked by hand and against scikit-learn/scipy, and the warnings' thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rgd import diagnostics as dg


def test_cohen_kappa_by_hand():
    # 5 of 8 agree; both raters' marginals are (3, 3, 2)/8, so p_e = 22/64 and kappa = (40-22)/(64-22) = 3/7
    r1 = [0, 0, 0, 1, 1, 1, 2, 2]
    r2 = [0, 0, 1, 1, 1, 2, 2, 0]
    pw = dg.pairwise(np.array([r1, r2]).T, 3)
    assert pw["agreement"][0, 1] == pytest.approx(5 / 8)
    assert pw["kappa"][0, 1] == pytest.approx(3 / 7) and pw["kappa"][1, 0] == pytest.approx(3 / 7)
    assert pw["n"][0, 1] == 8 and pw["kappa"][0, 0] == pytest.approx(1.0)


def test_cohen_kappa_matches_sklearn_with_abstentions():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    n, m = 150, 4
    base = rng.integers(0, 4, n)
    ch = np.where(
        rng.random((n, m)) < np.array([0.7, 0.6, 0.2, 0.0]), base[:, None], rng.integers(0, 4, (n, m))
    )
    ch[rng.random((n, m)) < 0.1] = -1  # abstentions: each pair uses the questions both answered
    pw = dg.pairwise(ch, 4)
    for i in range(m):
        for j in range(m):
            both = (ch[:, i] >= 0) & (ch[:, j] >= 0)
            assert pw["n"][i, j] == both.sum()
            assert pw["agreement"][i, j] == pytest.approx(np.mean(ch[both, i] == ch[both, j]))
            assert pw["kappa"][i, j] == pytest.approx(cohen_kappa_score(ch[both, i], ch[both, j]))


def test_kappa_undefined_when_both_always_give_one_letter():
    pw = dg.pairwise(np.zeros((10, 2), dtype=np.int64), 4)
    assert np.isnan(pw["kappa"][0, 1]) and pw["agreement"][0, 1] == 1.0
    assert np.isnan(dg.pairwise(np.full((3, 2), -1), 4)["kappa"][0, 1])  # no jointly answered question


def _from_counts(counts: list[list[int]]) -> np.ndarray:
    """A (questions, raters) choice matrix with the given per-question category counts."""
    return np.array([np.repeat(np.arange(len(r)), r) for r in counts])


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories; P-bar = 0.378,
    # P_e = 0.2128 (by hand from the column totals 20, 28, 39, 21, 32 of 140), kappa = 0.210
    counts = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    ch = _from_counts(counts)
    p_bar = np.mean([(np.square(r).sum() - 14) / (14 * 13) for r in counts])
    p_e = sum((c / 140) ** 2 for c in (20, 28, 39, 21, 32))
    assert p_bar == pytest.approx(0.378, abs=5e-4) and p_e == pytest.approx(0.2128, abs=5e-5)
    assert dg.fleiss_kappa(ch, 5) == pytest.approx((p_bar - p_e) / (1 - p_e))
    assert dg.fleiss_kappa(ch, 5) == pytest.approx(0.210, abs=5e-4)
    # the raters' order within a question does not matter
    rng = np.random.default_rng(1)
    assert dg.fleiss_kappa(rng.permuted(ch, axis=1), 5) == pytest.approx(dg.fleiss_kappa(ch, 5))


def test_fleiss_kappa_with_abstentions_uses_the_answering_experts():
    # q0: 3 raters agree; q1: 2 of the 2 answering agree; q2: 1 answer only (left out); q3: all differ
    ch = np.array([[0, 0, 0], [1, 1, -1], [2, -1, -1], [0, 1, 2]])
    p_q = [1.0, 1.0, 0.0]  # shares of agreeing rater pairs in q0, q1, q3
    p_k = np.array([4, 3, 1]) / 8  # letters over the 8 answers of q0, q1, q3
    p_e = float((p_k**2).sum())
    assert dg.fleiss_kappa(ch, 3) == pytest.approx((np.mean(p_q) - p_e) / (1 - p_e))
    assert math.isnan(dg.fleiss_kappa(np.array([[0, -1], [-1, 1]]), 2))


def test_letter_counts_and_abstentions():
    counts, abst = dg.letter_counts(np.array([[0, 3], [0, -1], [1, 3]]), 4)
    assert counts.tolist() == [[2, 1, 0, 0], [0, 0, 0, 2]] and abst.tolist() == [0, 1]
    with pytest.raises(ValueError, match="option index 3"):
        dg.letter_counts(np.array([[3]]), 2)


def test_excess_over_rest_by_hand():
    k = np.array([[1.0, 0.8, 0.1, 0.0], [0.8, 1.0, 0.2, 0.1], [0.1, 0.2, 1.0, 0.3], [0.0, 0.1, 0.3, 1.0]])
    ex = dg.excess_over_rest(k)
    assert ex[0, 1] == pytest.approx(0.8 - (0.1 + 0.0 + 0.2 + 0.1) / 4)
    assert ex[2, 3] == pytest.approx(0.3 - (0.1 + 0.2 + 0.0 + 0.1) / 4)
    assert np.allclose(ex, ex.T, equal_nan=True) and np.isnan(np.diag(ex)).all()
    assert np.isnan(dg.excess_over_rest(k[:2, :2])).all()  # two experts: no "rest" to compare with


def _pool(n=200, seed=0):
    """twin-a/twin-b: one model's two prompts (same answer 90% of the time); indep: an expert
    with its own answers; biased: answers A 80% of the time."""
    rng = np.random.default_rng(seed)
    key = rng.integers(0, 4, n)
    right = lambda p: np.where(rng.random(n) < p, key, rng.integers(0, 4, n))  # noqa: E731
    a = right(0.5)
    b = np.where(rng.random(n) < 0.9, a, rng.integers(0, 4, n))
    indep = right(0.5)
    biased = np.where(rng.random(n) < 0.8, 0, right(0.3))
    return np.column_stack([a, b, indep, biased]), ["twin-a", "twin-b", "indep", "biased"]


def test_pool_diagnostics_flags_twins_chance_and_letter_bias():
    ch, names = _pool()
    d = dg.pool_diagnostics(ch, names, 4)
    kinds = {(w["kind"], tuple(w["experts"])) for w in d["warnings"]}
    assert ("twins", ("twin-a", "twin-b")) in kinds
    assert ("letter-bias", ("biased",)) in kinds and ("chance", ("biased",)) in kinds
    assert not any(k == "twins" and "indep" in e for k, e in kinds)
    assert ("letter-bias", ("twin-a",)) not in kinds
    assert d["per_expert"]["biased"]["top_letter"] == "A" and d["per_expert"]["biased"]["top_share"] > 0.75
    assert sum(d["per_expert"]["indep"]["letters"].values()) == 200
    pair = next(p for p in d["pairs"] if p["experts"] == ["twin-a", "twin-b"])
    assert pair["kappa"] > 0.8 and pair["n"] == 200 and pair["agreement_excess"] > 0.5
    k = dg.pairwise(ch, 4)
    assert pair["kappa_excess"] == pytest.approx(
        k["kappa"][0, 1] - np.mean(k["kappa"][[0, 0, 1, 1], [2, 3, 2, 3]])
    )
    assert d["thresholds"]["twin_kappa"] == dg.THRESHOLDS.twin_kappa
    assert 0 < d["fleiss_kappa"] < 1


def test_thresholds_decide_the_warnings():
    ch, names = _pool()
    kinds = lambda t: {w["kind"] for w in dg.pool_diagnostics(ch, names, 4, t)["warnings"]}  # noqa: E731
    strict = dg.Thresholds(twin_agreement=0.99, chance_kappa=-1.0, letter_share=0.95)
    assert kinds(strict) == set()
    assert "pool-chance" in kinds(dg.Thresholds(chance_kappa=0.99))
    assert "few-questions" in kinds(dg.Thresholds(min_questions=500))
    assert "twins" not in kinds(dg.Thresholds(min_questions=500))  # too few questions: no kappa warning
    assert "twins" not in kinds(dg.Thresholds(twin_kappa=0.9))  # both conditions are needed
    assert len(dg.THRESHOLDS.describe()) == 4 and "25 points" in dg.THRESHOLDS.describe()[0]


def test_a_pool_of_independent_skilled_experts_is_not_flagged():
    rng = np.random.default_rng(2)
    n = 300
    key = rng.integers(0, 4, n)
    ch = np.column_stack([np.where(rng.random(n) < p, key, rng.integers(0, 4, n)) for p in (0.7, 0.6, 0.65)])
    assert dg.pool_diagnostics(ch, ["x", "y", "z"], 4)["warnings"] == []


def test_rank_correlations_match_scipy():
    from scipy.stats import kendalltau, spearmanr

    rng = np.random.default_rng(4)
    a = np.round(rng.random((30, 5)), 1)  # ties
    b = np.round(rng.random((30, 5)), 1)
    rho, tau = dg.spearman_rows(a, b), dg.kendall_rows(a, b)
    for s in range(30):
        assert rho[s] == pytest.approx(spearmanr(a[s], b[s]).statistic, nan_ok=True)
        assert tau[s] == pytest.approx(kendalltau(a[s], b[s]).statistic, nan_ok=True)
    assert np.isnan(dg.spearman_rows(np.ones((1, 3)), b[:1, :3])[0])


def test_consensus_ranking_by_hand():
    cons = np.array([[0.5, 0.4, 0.3], [0.3, 0.4, 0.5], [0.2, 0.2, 0.2]])
    acc = np.array([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1], [0.1, 0.2, 0.3]])
    r = dg.consensus_ranking(
        ["s1", "s2", "s3"], [10, 30, 5], cons, acc, np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1])
    )
    assert r["spearman"] == [pytest.approx(1.0), pytest.approx(-1.0), None]
    assert r["kendall"][:2] == [pytest.approx(1.0), pytest.approx(-1.0)]
    assert r["mean_spearman"] == pytest.approx((10 - 30) / 40)  # weighted by questions, s3 undefined
    assert r["overall"] == {"spearman": pytest.approx(-1.0), "kendall": pytest.approx(-1.0)}


# the letters the current default pool chose on 42 real MMLU training questions (6 subjects,
# 7 each; `rgd respond`, letter mode, the models of config/config.yaml)
REAL = {
    "smol-chat": "CBCDCBCBCCCCCCCCBCCBCBCCCCCCCCCCCCCCCBCBCB",
    "smol-plain": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "gemma-plain": "DDDDBDDDADDDDDDDDDDDDDAABADDDDADADDBDDADDB",
    "gemma-fewshot": "DADADBDDAAADDDBDDDDDDDAAAADDDDDDDDDDBBAABA",
}


def test_letter_biased_prompt_twins_are_flagged_on_raw_agreement():
    """Both Gemma prompts answer D most of the time, so their kappa stays low, but they agree on
    62% of the questions while the others agree with them on 5-29%: consensus crowns them."""
    from sklearn.metrics import cohen_kappa_score

    ch = np.array([[ord(c) - 65 for c in v] for v in REAL.values()]).T
    d = dg.pool_diagnostics(ch, list(REAL), 4)
    pair = d["pairs"][-1]
    assert pair["experts"] == ["gemma-plain", "gemma-fewshot"] and pair["agreement"] == pytest.approx(26 / 42)
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(ch[:, 2], ch[:, 3])) and pair["kappa"] < 0.3
    others = [
        p["agreement"] for p in d["pairs"] if len({"gemma-plain", "gemma-fewshot"} & set(p["experts"])) == 1
    ]
    assert pair["agreement_excess"] == pytest.approx(26 / 42 - np.mean(others))
    twins = [w for w in d["warnings"] if w["kind"] == "twins"]
    assert [w["experts"] for w in twins] == [["gemma-plain", "gemma-fewshot"]]
    assert (
        d["per_expert"]["smol-plain"]["top_share"] == 1.0
        and d["per_expert"]["smol-plain"]["top_letter"] == "A"
    )
    lines = dg.warning_lines(d["warnings"])
    assert lines[0].startswith(
        "gemma-plain and gemma-fewshot agree far beyond the rest (62% of their answers"
    )
    bias = next(line for line in lines if line.startswith("one letter on more than 50%"))
    assert "smol-plain A 100%" in bias and "smol-chat C 76%" in bias and "gemma-plain D 74%" in bias
    assert any(
        line.startswith("no better than chance agreement with the others") and "smol-plain 0.00" in line
        for line in lines
    )
    assert any(w["kind"] == "pool-chance" for w in d["warnings"])
