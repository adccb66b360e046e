"""The Dawid-Skene estimator (rgd.dawid_skene, docs/METHOD.md §6.1) and its use as `consensus.estimator`."""

import json

import numpy as np
import pytest

from rgd.consensus import ConsensusConfig, consensus_scores, estimated_skill, run, run_consensus
from rgd.dawid_skene import dawid_skene, option_mask, vote_scores, vote_shares
from rgd.io import InputError
from rgd.spec import SpecError, parse

DS = ConsensusConfig(estimator="dawid-skene")


def planted(seed: int, n_q: int, accs: list[float], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(truth, choices): model m is right with probability accs[m], else a uniform other letter."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_q)
    choices = np.empty((n_q, len(accs)), dtype=np.int64)
    for m, a in enumerate(accs):
        wrong = (truth + rng.integers(1, k, n_q)) % k
        choices[:, m] = np.where(rng.random(n_q) < a, truth, wrong)
    return truth, choices


def plurality(choices: np.ndarray, k: int) -> np.ndarray:
    return vote_shares(choices, option_mask(None, choices.shape[0], k)).argmax(axis=1)


# --- recovery of planted parameters -------------------------------------------------------------------


@pytest.mark.parametrize("k", [4, 10])
@pytest.mark.parametrize("variant", ["one-coin", "full"])
def test_recovers_planted_accuracies(k, variant):
    accs = [0.3, 0.45, 0.6, 0.75, 0.5]
    truth, choices = planted(0, 2000, accs, k)
    fit = dawid_skene(choices, k, variant=variant)
    observed = (choices == truth[:, None]).mean(axis=0)
    np.testing.assert_allclose(fit.accuracy, observed, atol=0.03)
    assert list(np.argsort(fit.accuracy)) == list(np.argsort(observed))
    np.testing.assert_allclose(fit.posterior.sum(axis=1), 1.0)
    assert fit.iterations <= 100 and (fit.converged or variant == "full")


def test_recovers_planted_confusion_matrices():
    """Full DS: each model's errors go mostly to one other letter (c -> c+1); EM finds the matrices."""
    k, n_q = 4, 2000
    rng = np.random.default_rng(1)
    truth = rng.integers(0, k, n_q)
    planted_pi = []
    choices = np.empty((n_q, 5), dtype=np.int64)
    for m, a in enumerate([0.4, 0.5, 0.6, 0.7, 0.8]):
        pi = np.full((k, k), (1 - a) * 0.2 / (k - 2))
        pi[np.arange(k), np.arange(k)] = a
        pi[np.arange(k), (np.arange(k) + 1) % k] = (1 - a) * 0.8
        planted_pi.append(pi)
        cum = pi.cumsum(axis=1)[truth]
        choices[:, m] = (rng.random(n_q)[:, None] > cum).sum(axis=1)
    fit = dawid_skene(choices, k, variant="full", max_iter=500)
    assert fit.confusion is not None and fit.confusion.shape == (5, k, k)
    # Against the confusion the sample really has (counted with the keys), and the planted one.
    empirical = np.array(
        [np.histogram2d(truth, choices[:, m], bins=[k, k], range=[[0, k], [0, k]])[0] for m in range(5)]
    )
    empirical /= empirical.sum(axis=2, keepdims=True)
    np.testing.assert_allclose(fit.confusion, empirical, atol=0.05)
    np.testing.assert_allclose(fit.confusion, np.array(planted_pi), atol=0.1)
    np.testing.assert_allclose(fit.prior, np.bincount(truth) / n_q, atol=0.03)


def test_weighs_a_reliable_minority_up_and_beats_plurality():
    """Two reliable models against five weak independent ones: DS finds who is reliable and
    follows them; the plurality follows the weak majority more often."""
    accs = [0.8, 0.75, 0.35, 0.35, 0.35, 0.35, 0.35]
    for seed in range(3):
        truth, choices = planted(seed, 2000, accs, 4)
        fit = dawid_skene(choices, 4)
        assert fit.accuracy[:2].min() > fit.accuracy[2:].max() + 0.3
        ds_right = (fit.posterior.argmax(axis=1) == truth).mean()
        assert ds_right > (plurality(choices, 4) == truth).mean() + 0.05


def test_correlated_errors_weakness_copies_of_a_bad_model_take_over():
    """The known weakness (METHOD.md §6.1): the models are assumed independent given the truth, so
    two copies of a bad model always 'agree' and EM reads that as perfect reliability: their
    estimated accuracy goes to 1, the posterior follows them, and the good models look bad."""
    truth, choices = planted(0, 2000, [0.7, 0.6, 0.3], 4)
    choices = np.column_stack([choices, choices[:, 2]])  # model 3 is an exact copy of model 2
    true_acc = (choices == truth[:, None]).mean(axis=0)
    for variant in ("one-coin", "full"):
        fit = dawid_skene(choices, 4, variant=variant)
        assert fit.accuracy[2] > 0.95 and fit.accuracy[3] > 0.95  # truly about 0.3
        assert fit.accuracy[0] < true_acc[0] - 0.3  # truly about 0.7
        ds_right = (fit.posterior.argmax(axis=1) == truth).mean()
        assert ds_right == pytest.approx(true_acc[2], abs=0.02)  # no better than the copied model
    # Without the copy, the same data is read correctly.
    fit = dawid_skene(choices[:, :3], 4)
    assert list(np.argsort(fit.accuracy)) == [2, 1, 0]


# --- edge cases ---------------------------------------------------------------------------------------


def test_abstentions_cast_no_vote_and_all_abstain_questions_get_the_prior():
    truth, choices = planted(2, 600, [0.8, 0.6, 0.5], 4)
    rng = np.random.default_rng(0)
    choices[rng.random(choices.shape) < 0.3] = -1
    choices[:5] = -1  # nobody answered these
    fit = dawid_skene(choices, 4)
    np.testing.assert_allclose(fit.posterior[:5], np.broadcast_to(fit.prior, (5, 4)), atol=1e-12)
    scores = vote_scores(fit.posterior, choices)
    assert (scores[choices < 0] == 0.0).all() and (scores[choices >= 0] > 0).all()
    voted = choices >= 0
    observed = [(choices[voted[:, m], m] == truth[voted[:, m]]).mean() for m in range(3)]
    np.testing.assert_allclose(fit.accuracy, observed, atol=0.05)


def test_option_counts_give_no_mass_beyond_a_questions_options():
    choices = np.array([[0, 0, 1], [3, 3, 3], [4, 1, -1], [-1, -1, -1]])
    fit = dawid_skene(choices, 6, [2, 4, 3, 2])
    post = fit.posterior
    assert (post[0, 2:] == 0).all() and (post[1, 4:] == 0).all() and (post[2, 3:] == 0).all()
    assert (post[3, 2:] == 0).all()
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    assert vote_scores(post, choices)[2, 0] == 0.0  # letter E of a 3-option question is never right
    with pytest.raises(ValueError, match="question row 1 has 7 options"):
        dawid_skene(choices, 6, [2, 7, 3, 2])


@pytest.mark.parametrize("variant", ["one-coin", "full"])
def test_single_class_one_question_and_no_question(variant):
    fit = dawid_skene(np.array([[0, 0], [0, -1]]), 2, [1, 1], variant=variant)
    np.testing.assert_array_equal(fit.posterior, [[1.0, 0.0], [1.0, 0.0]])
    one = dawid_skene(np.array([[2, 2, 0]]), 4, variant=variant)
    assert one.posterior[0].argmax() == 2 and np.isfinite(one.posterior).all()
    none = dawid_skene(np.zeros((0, 3), dtype=np.int64), 4, variant=variant)
    assert none.posterior.shape == (0, 4) and none.converged and none.iterations == 0
    assert none.accuracy.shape == (3,) and none.expected_accuracy(np.zeros((0, 3), dtype=int)).shape == (3,)


def test_identical_outputs_on_reruns():
    _, choices = planted(5, 1500, [0.3, 0.5, 0.4, 0.6, 0.35, 0.55], 10)
    for variant in ("one-coin", "full"):
        a = dawid_skene(choices, 20, [10] * 1500, variant=variant)
        b = dawid_skene(choices.copy(), 20, [10] * 1500, variant=variant)
        assert a.posterior.tobytes() == b.posterior.tobytes() and a.accuracy.tobytes() == b.accuracy.tobytes()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="choices"):
        dawid_skene(np.array([[0, 4]]), 4)
    with pytest.raises(ValueError, match="choices"):
        dawid_skene(np.array([[0, -2]]), 4)
    with pytest.raises(ValueError, match="variant"):
        dawid_skene(np.array([[0, 1]]), 4, variant="two-coin")
    with pytest.raises(ValueError, match="smoothing"):
        dawid_skene(np.array([[0, 1]]), 4, smoothing=0.0)
    with pytest.raises(ValueError, match="n_options"):
        dawid_skene(np.array([[0, 1]]), 4, [2, 2])


# --- as the consensus estimator -----------------------------------------------------------------------


def test_consensus_scores_with_dawid_skene():
    truth, choices = planted(3, 800, [0.7, 0.5, 0.3, 0.4], 4)
    choices[::7, 1] = -1
    lp = np.random.default_rng(0).normal(-1.0, 0.3, choices.shape)
    res = consensus_scores(choices, lp, ConsensusConfig(estimator="dawid-skene", n_classes=4))
    fit = dawid_skene(choices, 4)
    assert res.fit is not None and res.fit.posterior.tobytes() == fit.posterior.tobytes()
    np.testing.assert_array_equal(res.scores, vote_scores(fit.posterior, choices))
    np.testing.assert_array_equal(res.weights, np.where(choices >= 0, fit.accuracy, 0.0))
    np.testing.assert_array_equal(res.z, consensus_scores(choices, lp, ConsensusConfig(n_classes=4)).z)
    assert (res.scores[choices < 0] == 0).all() and ((res.scores >= 0) & (res.scores <= 1)).all()
    # The knobs reach the fit.
    short = consensus_scores(
        choices, lp, ConsensusConfig(estimator="dawid-skene", n_classes=4, ds_max_iter=1)
    )
    assert short.fit.iterations == 1 and not short.fit.converged
    with pytest.raises(ValueError, match="raise n_classes"):
        consensus_scores(choices, lp, ConsensusConfig(estimator="dawid-skene", n_classes=3))


def _resp(qid, expert, choice):
    return {"id": qid, "expert": expert, "choice": choice, "confidence": None, "status": "ok"}


def _pool(n_q: int = 40) -> tuple[list[str], dict[str, list[dict]]]:
    _, choices = planted(4, n_q, [0.9, 0.6, 0.3], 4)
    ids = [f"q{i}" for i in range(n_q)]
    letters = "ABCD"
    return ids, {
        f"m{m}": [_resp(q, f"m{m}", letters[choices[i, m]]) for i, q in enumerate(ids)] for m in range(3)
    }


def test_run_consensus_rows_and_stats_under_dawid_skene():
    ids, responses = _pool()
    rows, stats = run_consensus(ids, responses, DS, n_options=[4] * len(ids))
    assert len(rows) == 3 * len(ids) and set(rows[0]) == {
        "id",
        "expert",
        "choice",
        "consensus",
        "z",
        "weight",
    }
    est = stats["estimator"]
    assert est["name"] == "dawid-skene" and est["model"] == "one-coin" and est["converged"] is True
    assert 1 <= est["iterations"] <= DS.ds_max_iter and len(est["class_prior"]) == DS.n_classes
    assert est["accuracy"]["m0"] > est["accuracy"]["m1"] > est["accuracy"]["m2"]
    mean = {e: np.mean([r["consensus"] for r in rows if r["expert"] == e]) for e in responses}
    assert est["expected_accuracy"] == pytest.approx(mean)
    assert (
        stats["config"]["estimator"] == "dawid-skene" and stats["config"]["ds_smoothing"] == DS.ds_smoothing
    )
    assert set(stats["experts"]["m0"]) == {"median", "sigma"}  # what evaluation reads back
    json.dumps(stats, allow_nan=False)


def test_the_default_estimator_is_the_papers_and_records_as_before():
    ids, responses = _pool(12)
    rows, stats = run_consensus(ids, responses)
    explicit, _ = run_consensus(ids, responses, ConsensusConfig(estimator="confidence"))
    assert rows == explicit and "estimator" not in stats
    assert list(stats["config"]) == [
        "n_classes",
        "scale",
        "clip_low",
        "clip_high",
        "tau",
        "mad_const",
        "compat",
        "seed",
    ]


def test_original_compat_allows_only_the_papers_estimator():
    with pytest.raises(ValueError, match="estimator: compat='original'"):
        ConsensusConfig(compat="original", estimator="dawid-skene")
    with pytest.raises(SpecError, match="consensus: estimator: compat='original'"):
        parse(ConsensusConfig, {"compat": "original", "estimator": "dawid-skene"}, "consensus")
    assert ConsensusConfig(compat="original", estimator="confidence").estimator == "confidence"


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"ds_smoothing": 0}, "ds_smoothing"),
        ({"ds_max_iter": 0}, "ds_max_iter"),
        ({"ds_tol": -1e-3}, "ds_tol"),
        ({"ds_model": "two-coin"}, "ds_model"),
        ({"estimator": "ds"}, "estimator"),
    ],
)
def test_knob_bounds(spec, field):
    with pytest.raises(SpecError, match=f"consensus: {field}:"):
        parse(ConsensusConfig, spec, "consensus")


def test_workflow_config_accepts_the_estimator_and_refuses_it_under_original(tmp_path):
    from pathlib import Path

    import yaml

    import rgd.config

    root = Path(__file__).resolve().parents[1]
    schema = root / "workflow" / "schemas" / "config.schema.yaml"
    tiny = yaml.safe_load((root / "tests" / "config" / "tiny.yaml").read_text())
    loaded = rgd.config.load({**tiny, "consensus": {"estimator": "dawid-skene", "ds_model": "full"}}, schema)
    assert loaded["consensus"]["estimator"] == "dawid-skene" and loaded["consensus"]["ds_max_iter"] == 100
    assert "estimator" not in rgd.config.load(dict(tiny), schema)["consensus"]
    with pytest.raises(rgd.config.ConfigError) as e:
        rgd.config.load({**tiny, "consensus": {"compat": "original", "estimator": "dawid-skene"}}, schema)
    assert any(p.startswith("consensus: estimator: compat='original'") for p in e.value.problems)


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_run_reads_option_counts_from_the_questions(tmp_path):
    qs = [
        {"id": "q1", "category": "math", "question": "?", "options": ["1", "2"]},
        {"id": "q2", "category": "math", "question": "?", "options": ["1", "2", "3"]},
    ]
    questions = _write_jsonl(tmp_path / "q.jsonl", qs)
    responses = {
        "a": _write_jsonl(tmp_path / "a.jsonl", [_resp("q1", "a", "C"), _resp("q2", "a", "C")]),
        "b": _write_jsonl(tmp_path / "b.jsonl", [_resp("q1", "b", "B"), _resp("q2", "b", "C")]),
    }
    out, st = tmp_path / "c.jsonl", tmp_path / "c.stats.json"
    run(questions, responses, DS, out, st)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["consensus"] == 0.0  # C is not one of q1's two options
    assert rows[1]["consensus"] > 0.5 and json.loads(st.read_text())["estimator"]["name"] == "dawid-skene"
    with pytest.raises(InputError, match="'q2' has 3 options, more than consensus.n_classes") as e:
        run(questions, responses, ConsensusConfig(estimator="dawid-skene", n_classes=2), out, st)
    assert e.value.field == "options"


# --- the skill table the lead reports ----------------------------------------------------------------


def test_estimated_skill_is_the_mean_score_per_category():
    scores = np.array([[0.5, 0.0], [1.0, 0.2], [0.3, 0.3]])
    cats, table = estimated_skill(scores, ["b", "a", "b"])
    assert cats == ["a", "b"]
    np.testing.assert_allclose(table, [[1.0, 0.2], [0.4, 0.15]])
    assert estimated_skill(np.zeros((0, 3)), [])[1].shape == (0, 3)
    with pytest.raises(ValueError, match="categories"):
        estimated_skill(scores, ["a"])
    # Under DS the table ranks the planted skills (per category) right.
    truth, choices = planted(6, 3000, [0.25, 0.4, 0.55, 0.65], 10)
    cats = [["x", "y"][i % 2] for i in range(3000)]
    nan = np.full(choices.shape, np.nan)
    res = consensus_scores(choices, nan, DS, n_options=[10] * 3000)
    _, skill = estimated_skill(res.scores, cats)
    _, keyed = estimated_skill((choices == truth[:, None]).astype(float), cats)
    assert (np.argsort(skill, axis=1) == np.argsort(keyed, axis=1)).all()
    np.testing.assert_allclose(skill, keyed, atol=0.03)
