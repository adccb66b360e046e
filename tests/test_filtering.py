"""Filtering of generated data (docs/METHOD.md §11): both criteria, retention accounting, the seeded
category-balanced subsample, subsetting of responses/embeddings, and the `rgd` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rgd.cli import main
from rgd.filtering import (
    FilterConfig,
    agreement,
    balanced_subsample,
    differentiating,
    filter_set,
    fraction_correct,
    run,
    self_consistent,
    subset_embeddings,
    subset_responses,
)
from rgd.io import InputError, read_json, read_jsonl, save_npz, write_jsonl


def M(rows):
    """A (questions, models) letter matrix; '-' is an abstention."""
    out = np.empty((len(rows), len(rows[0])), dtype=object)
    for i, r in enumerate(rows):
        out[i] = [None if c == "-" else c for c in r]
    return out


# ------------------------------------------------------------------------------------------ criteria


def test_self_consistency_needs_the_own_key():
    assert self_consistent(["A", "B", None, "C"], ["A", "C", "A", "C"]).tolist() == [True, False, False, True]
    with pytest.raises(ValueError):
        self_consistent(["A"], ["A", "B"])


def test_agreement_is_the_plurality_share_over_the_whole_pool():
    a = agreement(M(["AAAA", "AABB", "AAB-", "----", "ABCD", "AAA-"]))
    assert a.tolist() == [1.0, 0.5, 0.5, 0.0, 0.25, 0.75]


def test_fraction_correct_counts_abstentions_as_wrong():
    f = fraction_correct(M(["AAAA", "AAB-", "BBBB"]), ["A", "A", "A"])
    assert f.tolist() == [1.0, 0.5, 0.0]


def test_differentiation_by_agreement():
    ch = M(["AAAA", "AAAB", "AABB", "----", "AAA-"])
    keys = ["A"] * 5
    # default: not unanimous, and at least one answer
    assert differentiating(ch, keys).tolist() == [False, True, True, False, True]
    # a threshold is inclusive
    assert differentiating(ch, keys, max_agreement=0.5).tolist() == [False, False, True, False, False]
    assert differentiating(ch, keys, max_agreement=0.75).tolist() == [False, True, True, False, True]


def test_differentiation_by_key():
    ch = M(["AAAA", "AAAB", "BBBB", "BBBB", "AA--"])
    keys = ["A", "A", "A", "B", "A"]
    # strictly between 0 and 1 of the pool picks the generator's key
    assert differentiating(ch, keys, by="key").tolist() == [False, True, False, False, True]
    with pytest.raises(ValueError):
        differentiating(ch, keys, by="nonsense")


# ------------------------------------------------------------------------------------------ subsample


def _cats(n_per):
    ids, cats = [], []
    for c, n in n_per.items():
        for j in range(n):
            ids.append(f"{c}{j}")
            cats.append(c)
    return ids, cats


def test_balanced_subsample_is_balanced_deterministic_and_ordered():
    ids, cats = _cats({"a": 50, "b": 10, "c": 40})
    pick = balanced_subsample(ids, cats, 45, seed=3)
    assert len(pick) == 45 and len(set(pick)) == 45
    per = {c: sum(p.startswith(c) for p in pick) for c in "abc"}
    assert per == {"a": 18, "b": 10, "c": 17} or per == {"a": 17, "b": 10, "c": 18}
    assert pick == [i for i in ids if i in set(pick)]  # input order kept
    assert balanced_subsample(ids, cats, 45, seed=3) == pick
    assert balanced_subsample(ids, cats, 45, seed=4) != pick
    assert balanced_subsample(ids, cats, 1000, seed=3) == ids


# ------------------------------------------------------------------------------------------ filter_set


def _set(n=12):
    qs = [
        {"id": f"q{i}", "category": "xy"[i % 2], "question": f"Q{i}?", "options": ["o1", "o2", "o3", "o4"]}
        for i in range(n)
    ]
    keys = {q["id"]: "A" for q in qs}
    return qs, keys


def _resp(ids, letters, expert="e"):
    return [{"id": i, "expert": expert, "choice": c, "confidence": -1.0} for i, c in zip(ids, letters)]


def test_filter_set_retention_accounting():
    qs, keys = _set(12)
    ids = [q["id"] for q in qs]
    own = _resp(ids, ["A"] * 8 + ["B", None, "C", "D"])  # 8 self-consistent
    e1 = _resp(ids, ["A"] * 12)
    e2 = _resp(ids, ["A"] * 4 + ["B"] * 8)  # q4.. differ from e1
    cfg = FilterConfig.from_spec({"self_consistency": {"expert": "g"}, "differentiation": {"pool": "p"}})
    kept, rep = filter_set(qs, keys, own, {"e1": e1, "e2": e2}, cfg)
    assert kept == [f"q{i}" for i in range(4, 8)]
    assert rep["n_parent"] == 12 and rep["n_kept"] == 4 and rep["retention"] == round(4 / 12, 6)
    assert rep["criteria"]["self_consistency"] == {"kept": 8, "rate": round(8 / 12, 6)}
    d = rep["criteria"]["differentiation"]
    assert d["kept"] == 8 and d["rate"] == round(8 / 12, 6) and d["pool"] == ["e1", "e2"]
    assert rep["passed_all"] == {"kept": 4, "rate": round(4 / 12, 6)}
    assert sum(r["parent"] for r in rep["by_category"].values()) == 12
    assert sum(r["kept"] for r in rep["by_category"].values()) == 4
    assert set(kept) <= set(ids)


def test_filter_set_each_criterion_alone_and_subsample():
    qs, keys = _set(12)
    ids = [q["id"] for q in qs]
    own = _resp(ids, ["A"] * 6 + ["B"] * 6)
    kept, rep = filter_set(qs, keys, own, None, FilterConfig.from_spec({"self_consistency": {"expert": "g"}}))
    assert kept == ids[:6] and "differentiation" not in rep["criteria"]
    kept, rep = filter_set(
        qs,
        keys,
        own,
        None,
        FilterConfig.from_spec({"self_consistency": {"expert": "g"}, "target_size": 4, "seed": 1}),
    )
    assert len(kept) == 4 and set(kept) <= set(ids[:6]) and rep["passed_all"]["kept"] == 6
    assert {q["category"] for q in qs if q["id"] in kept} == {"x", "y"}
    kept2, _ = filter_set(
        qs,
        keys,
        own,
        None,
        FilterConfig.from_spec({"self_consistency": {"expert": "g"}, "target_size": 4, "seed": 1}),
    )
    assert kept2 == kept


def test_filter_set_missing_response_is_located():
    qs, keys = _set(4)
    own = _resp([q["id"] for q in qs][:3], ["A"] * 3)
    with pytest.raises(InputError, match="own.jsonl: id: no response for 1 questions"):
        filter_set(qs, keys, own, None, FilterConfig(self_consistency=True), {"own": "own.jsonl"})


@pytest.mark.parametrize(
    "spec, text",
    [
        ({}, "nothing to do"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"differentiation": {"pool": "p", "by": "vote"}}, "differentiation.by"),
        ({"differentiation": {"pool": "p", "by": "key", "max_agreement": 0.5}}, "by='agreement' only"),
        (
            {"differentiation": {"pool": "p", "max_agreement": 0}},
            "differentiation.max_agreement: must be > 0",
        ),
        ({"target_size": 0}, "target_size: must be >= 1"),
    ],
)
def test_bad_specs(spec, text):
    with pytest.raises(ValueError, match=text):
        FilterConfig.from_spec(spec)


def test_differentiation_needs_a_pool():
    qs, keys = _set(2)
    with pytest.raises(ValueError, match="at least 2"):
        filter_set(
            qs, keys, None, {"e1": _resp(["q0", "q1"], "AA")}, FilterConfig(differentiation="agreement")
        )


# ------------------------------------------------------------------------------------------ files and CLI


@pytest.fixture
def parent(tmp_path):
    qs, keys = _set(12)
    for q in qs:
        q["meta"] = {"seed_category": q["category"]}
    ids = [q["id"] for q in qs]
    write_jsonl(tmp_path / "gen.questions.jsonl", qs)
    write_jsonl(tmp_path / "gen.keys.jsonl", [{"id": i, "answer": keys[i]} for i in ids])
    write_jsonl(tmp_path / "own.jsonl", _resp(ids, ["A"] * 9 + ["B"] * 3, "own"))
    write_jsonl(tmp_path / "e1.jsonl", _resp(ids, ["A"] * 12, "e1"))
    write_jsonl(tmp_path / "e2.jsonl", _resp(ids, ["A", "B"] * 6, "e2"))
    (tmp_path / "e1.meta.json").write_text(json.dumps({"expert": "e1"}))
    rng = np.random.default_rng(0)
    save_npz(
        tmp_path / "gen.npz",
        ids=np.array(ids, dtype=str),
        X=rng.normal(size=(12, 5)).astype(np.float32),
        embedder=np.array('{"kind": "x"}'),
    )
    return tmp_path


def test_run_writes_a_subset_with_identical_records(parent):
    d = parent
    spec = {"self_consistency": {"expert": "own"}, "differentiation": {"pool": "p", "by": "key"}}
    rep = run(
        d / "gen.questions.jsonl",
        d / "gen.keys.jsonl",
        spec,
        d / "f.questions.jsonl",
        d / "f.keys.jsonl",
        d / "f.filter.json",
        d / "own.jsonl",
        {"e1": d / "e1.jsonl", "e2": d / "e2.jsonl"},
        labels={"generator": "g"},
    )
    parent_q = {r["id"]: r for r in read_jsonl(d / "gen.questions.jsonl")}
    fq = read_jsonl(d / "f.questions.jsonl")
    fk = read_jsonl(d / "f.keys.jsonl")
    # self-consistent: q0..q8; differentiating (e2 picks B on odd ids): q1, q3, q5, q7 (and q9, q11)
    assert [r["id"] for r in fq] == ["q1", "q3", "q5", "q7"]
    assert all(r == parent_q[r["id"]] for r in fq)  # same ids, same records (meta included)
    assert [k["id"] for k in fk] == [r["id"] for r in fq] and {k["answer"] for k in fk} == {"A"}
    on_disk = read_json(d / "f.filter.json")
    assert on_disk == json.loads(json.dumps(rep)) and on_disk["generator"] == "g" and on_disk["n_kept"] == 4
    assert on_disk["criteria"]["self_consistency"]["responses"].endswith("own.jsonl")


def test_subset_responses_and_embeddings(parent):
    d = parent
    write_jsonl(
        d / "f.questions.jsonl", [r for r in read_jsonl(d / "gen.questions.jsonl") if r["id"] in {"q2", "q7"}]
    )
    assert (
        subset_responses(
            d / "f.questions.jsonl",
            d / "e1.jsonl",
            d / "f-e1.jsonl",
            d / "e1.meta.json",
            d / "f-e1.meta.json",
        )
        == 2
    )
    assert [r["id"] for r in read_jsonl(d / "f-e1.jsonl")] == ["q2", "q7"]
    meta = read_json(d / "f-e1.meta.json")
    assert meta["n_questions"] == 2 and meta["parent_meta"] == {"expert": "e1"}
    assert subset_embeddings(d / "f.questions.jsonl", d / "gen.npz", d / "f.npz") == 2
    with np.load(d / "gen.npz") as p, np.load(d / "f.npz") as f:
        assert f["ids"].tolist() == ["q2", "q7"]
        np.testing.assert_array_equal(f["X"], p["X"][[2, 7]])
        assert str(f["embedder"]) == str(p["embedder"])
    write_jsonl(d / "bad.questions.jsonl", [{**read_jsonl(d / "gen.questions.jsonl")[0], "id": "zz"}])
    with pytest.raises(InputError, match="no response"):
        subset_responses(d / "bad.questions.jsonl", d / "e1.jsonl", d / "x.jsonl")
    with pytest.raises(InputError, match="no embedding"):
        subset_embeddings(d / "bad.questions.jsonl", d / "gen.npz", d / "x.npz")


def test_cli_filter_and_errors(parent, capsys):
    d = parent
    args = [
        "filter",
        "--questions",
        str(d / "gen.questions.jsonl"),
        "--keys",
        str(d / "gen.keys.jsonl"),
        "--spec",
        json.dumps({"differentiation": {"pool": "p"}}),
        "--pool-responses",
        f"e1={d / 'e1.jsonl'}",
        f"e2={d / 'e2.jsonl'}",
        "--out-questions",
        str(d / "c.questions.jsonl"),
        "--out-keys",
        str(d / "c.keys.jsonl"),
        "--out-report",
        str(d / "c.filter.json"),
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "n_parent": 12,
        "n_kept": 6,
        "retention": 0.5,
    }
    # a keys file that names a question the set does not have: one located line, status 2
    write_jsonl(d / "bad.keys.jsonl", [{"id": "nope", "answer": "A"}])
    swap = {str(d / "gen.keys.jsonl"): str(d / "bad.keys.jsonl")}
    bad = [swap.get(a, a.replace("/c.", "/c2.")) for a in args]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "rgd filter: error:" in err and "bad.keys.jsonl:1: id:" in err
    assert not list(d.glob("c2.*"))  # nothing written


def test_cli_subset_commands(parent):
    d = parent
    write_jsonl(d / "f.questions.jsonl", read_jsonl(d / "gen.questions.jsonl")[:3])
    assert (
        main(
            [
                "subset-responses",
                "--questions",
                str(d / "f.questions.jsonl"),
                "--responses",
                str(d / "e2.jsonl"),
                "--out",
                str(d / "s.jsonl"),
            ]
        )
        == 0
    )
    assert len(read_jsonl(d / "s.jsonl")) == 3
    assert (
        main(
            [
                "subset-embeddings",
                "--questions",
                str(d / "f.questions.jsonl"),
                "--embeddings",
                str(d / "gen.npz"),
                "--out",
                str(d / "s.npz"),
            ]
        )
        == 0
    )
    with np.load(d / "s.npz") as z:
        assert z["X"].shape == (3, 5)


def test_download_is_the_step_that_may_use_the_network(monkeypatch, tmp_path):
    """`rgd download` must not inherit the offline switch every other step sets."""
    seen = {}

    class FakeBench:
        def download(self, out_dir, revision=None):
            import os

            seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
            seen["revision"] = revision

    import rgd.datasets as ds

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(ds.BENCHMARKS, "fake", FakeBench())
    assert main(["download", "--benchmark", "fake", "--revision", "a" * 40, "--out-dir", str(tmp_path)]) == 0
    assert seen == {"offline": None, "revision": "a" * 40}
