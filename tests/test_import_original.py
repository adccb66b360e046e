import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rgd.consensus import run_consensus
from rgd.embed import load as load_embeddings
from rgd.import_original import (
    ORIGINAL_EMBEDDER,
    embeddings_path,
    import_original,
    import_splits,
    read_original_embeddings,
    read_original_questions,
    read_original_responses,
)
from rgd.io import InputError, read_jsonl
from rgd.records import read_keys, read_questions, read_responses

FIXTURE = Path(__file__).parent / "data" / "original"
BIN = Path(sys.executable).parent
QIDS = [70, 71, 105, 2000]  # the test split
TRAIN_QIDS = list(range(300, 316))  # the train split: 4 questions in each of the 4 categories


@pytest.fixture
def root(tmp_path) -> Path:
    """A writable copy of the fixture tree with an embeddings file made at run time."""
    r = tmp_path / "orig"
    shutil.copytree(FIXTURE, r)
    g = torch.Generator().manual_seed(0)
    emb = {q: torch.randn(6, generator=g) * 3 for q in reversed(QIDS)}
    emb[9999] = torch.randn(6, generator=g)  # ids outside the split are ignored
    emb.update({q: torch.randn(6, generator=g) for q in TRAIN_QIDS})
    path = embeddings_path(r, "MMLU_Pro")
    path.parent.mkdir(parents=True)
    torch.save(emb, path)
    return r


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_import_writes_valid_rgd_files(root, tmp_path):
    out = tmp_path / "out"
    summary = import_original(root, "MMLU_Pro", "test", out, models=["Qwen3-32", "Llama70"])
    assert summary["n_questions"] == 4 and summary["models"] == ["Qwen3-32", "Llama70"]
    assert summary["status"]["Llama70"] == {"empty": 1, "ok": 2, "unparsed": 1}
    assert summary["status"]["Qwen3-32"] == {"nan": 1, "ok": 3}
    assert summary["embedding_dim"] == 6

    qs = read_questions(out / "questions.jsonl")  # validates
    assert [q.id for q in qs] == [str(q) for q in QIDS]
    assert qs[1].question == "What is 7 \u00d7 8?" and qs[3].category == "computer science"
    raw_q = read_jsonl(out / "questions.jsonl")
    assert set(raw_q[0]) == {"id", "category", "question", "options"}  # no answer leaks in
    assert read_keys(out / "keys.jsonl", qs) == {"70": "B", "71": "B", "105": "D", "2000": "C"}

    llama = read_responses(out / "responses" / "Llama70.jsonl")
    assert [r["id"] for r in llama] == ["70", "71", "105", "2000"]  # question order, not file order
    r70, r71, r105, r2000 = llama
    assert r70 == {
        "id": "70",
        "expert": "Llama70",
        "choice": "B",
        "confidence": -0.21,
        "status": "ok",
        "reason": None,
        "text": "Oxidative phosphorylation happens in mitochondria. The answer is (B)",
        "n_prompt_tokens": 0,
        "n_output_tokens": 0,
    }
    assert (
        r71["choice"] is None
        and r71["status"] == "unparsed"
        and r71["confidence"] == -0.5
        and "N/A" in r71["reason"]
    )
    assert (
        r105["choice"] is None and r105["status"] == "empty" and r105["confidence"] is None and r105["reason"]
    )
    qwen = read_responses(out / "responses" / "Qwen3-32.jsonl")
    assert qwen[1]["status"] == "nan" and qwen[1]["choice"] is None and qwen[1]["confidence"] is None
    assert qwen[1]["extra"] == {"original_choice": "A"}

    with np.load(out / "embeddings.npz", allow_pickle=False) as z:
        ids, X = z["ids"], z["X"]
    assert ids.tolist() == [str(q) for q in QIDS] and X.dtype == np.float32 and X.shape == (4, 6)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-6)
    emb = torch.load(embeddings_path(root, "MMLU_Pro"), weights_only=True)
    v = emb[105].numpy()
    np.testing.assert_allclose(X[2], v / np.linalg.norm(v), rtol=1e-6)

    # The imported files feed the consensus step directly.
    responses = {"Qwen3-32": qwen, "Llama70": llama}
    rows, _ = run_consensus([q.id for q in qs], responses)
    assert len(rows) == 8 and rows[0]["consensus"] == rows[1]["consensus"] > 0  # both said B on q70


def test_default_models_are_sorted_file_stems(root, tmp_path):
    s = import_original(root, "MMLU_Pro", "test", tmp_path / "o", with_embeddings=False)
    assert s["models"] == ["Llama70", "Qwen3-32"] and s["embedding_dim"] is None
    assert not (tmp_path / "o" / "embeddings.npz").exists()


def test_outputs_are_byte_identical(root, tmp_path):
    import_original(root, "MMLU_Pro", "test", tmp_path / "a", with_embeddings=False)
    import_original(root, "MMLU_Pro", "test", tmp_path / "b", with_embeddings=False)
    for name in ["questions.jsonl", "keys.jsonl", "responses/Llama70.jsonl", "responses/Qwen3-32.jsonl"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_filtered_task_uses_large_embeddings(root, tmp_path):
    shutil.copytree(root / "Data" / "MMLU_Pro", root / "Data" / "MMLU_Pro_gen_Exaone_filtered")
    shutil.copytree(
        root / "Model_Responses" / "MMLU_Pro-test",
        root / "Model_Responses" / "MMLU_Pro_gen_Exaone_filtered-test",
    )
    shutil.copy(
        embeddings_path(root, "MMLU_Pro"),
        root / "artifacts" / "MMLU_Pro_gen_Exaone_large_only_question_embeddings_early.pt",
    )
    s = import_original(root, "MMLU_Pro_gen_Exaone_filtered", "test", tmp_path / "o")
    assert s["embedding_dim"] == 6


def test_missing_embedding_names_qid(root, tmp_path):
    emb = torch.load(embeddings_path(root, "MMLU_Pro"), weights_only=True)
    del emb[105]
    torch.save(emb, embeddings_path(root, "MMLU_Pro"))
    with pytest.raises(InputError, match="no embedding for question 105"):
        import_original(root, "MMLU_Pro", "test", tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing written on failure


def test_embedding_errors(tmp_path):
    p = tmp_path / "e.pt"
    torch.save({1: torch.ones(3), 2: torch.ones(4)}, p)
    with pytest.raises(InputError, match="dimension 4"):
        read_original_embeddings(p, ["1", "2"])
    torch.save({1: torch.zeros(3)}, p)
    with pytest.raises(InputError, match="zero vector"):
        read_original_embeddings(p, ["1"])
    torch.save({1: torch.ones(2, 2)}, p)
    with pytest.raises(InputError, match="1-D"):
        read_original_embeddings(p, ["1"])
    torch.save([torch.ones(3)], p)
    with pytest.raises(InputError, match="dict"):
        read_original_embeddings(p, ["1"])
    p.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="torch"):
        read_original_embeddings(p, ["1"])
    with pytest.raises(InputError, match="not found"):
        read_original_embeddings(tmp_path / "absent.pt", ["1"])
    ids, X = read_original_embeddings(
        _save(tmp_path, {7: torch.tensor([3.0, 4.0], dtype=torch.float64)}), ["7"]
    )
    assert ids.tolist() == ["7"] and X.dtype == np.float32 and np.allclose(X, [[0.6, 0.8]])


def _save(tmp_path, obj):
    p = tmp_path / "ok.pt"
    torch.save(obj, p)
    return p


QPATH = Path("Data/MMLU_Pro/test.json")
LPATH = Path("Model_Responses/MMLU_Pro-test/Llama70.json")


@pytest.mark.parametrize(
    "path, mutate, field, message",
    [
        (QPATH, lambda d: d[1].update(question_id="71"), "[1].question_id", "integer"),
        (QPATH, lambda d: d[2].update(question_id=70), "[2].question_id", "duplicate"),
        (QPATH, lambda d: d[0].pop("category"), "[0].category", "missing"),
        (QPATH, lambda d: d[0].update(options=["only one"]), "[0].options", "2..26"),
        (QPATH, lambda d: d[1].update(answer="D"), "[1].answer", "outside the 3 options"),
        (QPATH, lambda d: d[1].update(answer="b"), "[1].answer", "capital letter"),
        (LPATH, lambda d: d[0].pop("avg_logprob"), "[0].avg_logprob", "missing"),
        (LPATH, lambda d: d[0].pop("Llama70_response"), "[0].Llama70_response", "missing"),
        (LPATH, lambda d: d[0].update(selected_choice="E"), "[0].selected_choice", "'ABCD'"),
        (LPATH, lambda d: d[2].update(selected_choice="D"), "[2].selected_choice", "'ABC'"),
        (LPATH, lambda d: d[0].update(avg_logprob="-0.3"), "[0].avg_logprob", "number"),
        (LPATH, lambda d: d.pop(1), "question_id", "no response for 1 question"),
        (
            LPATH,
            lambda d: d.append(dict(d[0], question_id=5)),
            "[4].question_id",
            "not a question of this split",
        ),
        (LPATH, lambda d: d.append(dict(d[0])), "[4].question_id", "duplicate"),
    ],
)
def test_malformed_input_names_file_and_field(root, tmp_path, path, mutate, field, message):
    _edit(root / path, mutate)
    with pytest.raises(InputError, match=message) as e:
        import_original(root, "MMLU_Pro", "test", tmp_path / "o", with_embeddings=False)
    assert e.value.path == str(root / path) and e.value.field == field


def test_not_a_list(root, tmp_path):
    (root / QPATH).write_text('{"question_id": 1}')
    with pytest.raises(InputError, match="JSON list"):
        read_original_questions(root / QPATH)
    (root / QPATH).write_text("[1, 2")
    with pytest.raises(InputError, match="malformed JSON"):
        read_original_questions(root / QPATH)


def test_drop_bad_keys(root, tmp_path):
    _edit(root / QPATH, lambda d: d[1].update(answer="B)"))
    qs, keys, dropped = read_original_questions(root / QPATH, drop_bad_keys=True)
    assert dropped == ["71"] and [q["id"] for q in qs] == ["70", "105", "2000"] and len(keys) == 3
    s = import_original(root, "MMLU_Pro", "test", tmp_path / "o", drop_bad_keys=True)
    assert s["dropped_bad_keys"] == ["71"] and s["n_questions"] == 3
    assert [r["id"] for r in read_jsonl(tmp_path / "o" / "responses" / "Llama70.jsonl")] == [
        "70",
        "105",
        "2000",
    ]


def test_missing_files(root, tmp_path):
    with pytest.raises(InputError, match="not found"):
        import_original(root, "MMLU_Pro", "validation", tmp_path / "o")
    with pytest.raises(InputError, match="not found"):
        import_original(root, "MMLU_Pro", "test", tmp_path / "o", models=["Gemma"])
    with pytest.raises(InputError, match="unsafe"):
        import_original(root, "MMLU_Pro", "test", tmp_path / "o", models=["../x"])
    shutil.rmtree(root / "Model_Responses")
    with pytest.raises(InputError, match="no response files"):
        import_original(root, "MMLU_Pro", "test", tmp_path / "o")


def test_read_original_responses_skip_ids(root):
    qs, _, _ = read_original_questions(root / QPATH)
    recs = read_original_responses(root / LPATH, "Llama70", qs[:2], skip_ids={"105", "2000"})
    assert [r["id"] for r in recs] == ["70", "71"]
    with pytest.raises(InputError, match="not a question of this split"):
        read_original_responses(root / LPATH, "Llama70", qs[:2])


# --------------------------------------------------------------------------- several splits, one load
def test_embeddings_are_loaded_once_for_all_splits(root, tmp_path, monkeypatch, capsys):
    from rgd.cli import main

    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    out = tmp_path / "o"
    assert (
        main(
            [
                "import-original",
                "--root",
                str(root),
                "--task",
                "MMLU_Pro",
                "--split",
                "train",
                "test",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    assert loads == [embeddings_path(root, "MMLU_Pro")]  # once, not once per split
    summaries = json.loads(capsys.readouterr().out)
    assert [(s["split"], s["n_questions"], s["embedding_dim"]) for s in summaries] == [
        ("train", 16, 6),
        ("test", 4, 6),
    ]
    for split, qids in (("train", TRAIN_QIDS), ("test", QIDS)):
        ids, X, spec = load_embeddings(out / split / "embeddings.npz")
        assert ids == [str(q) for q in qids] and X.shape == (len(qids), 6)
        assert [q.id for q in read_questions(out / split / "questions.jsonl")] == ids
    # one split still goes straight into --out-dir, as before
    loads.clear()
    assert (
        main(
            [
                "import-original",
                "--root",
                str(root),
                "--task",
                "MMLU_Pro",
                "--split",
                "test",
                "--out-dir",
                str(tmp_path / "one"),
            ]
        )
        == 0
    )
    assert len(loads) == 1 and (tmp_path / "one" / "embeddings.npz").is_file()
    assert json.loads(capsys.readouterr().out)["split"] == "test"


def test_several_splits_write_nothing_when_one_is_bad(root, tmp_path):
    _edit(root / "Data" / "MMLU_Pro" / "test.json", lambda d: d[0].pop("category"))
    with pytest.raises(InputError, match="category"):
        import_splits(root, "MMLU_Pro", ["train", "test"], tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="distinct split names"):
        import_splits(root, "MMLU_Pro", ["train", "train"], tmp_path / "o")


def test_imported_embeddings_record_their_embedder(root, tmp_path):
    import_original(root, "MMLU_Pro", "test", tmp_path / "a")
    assert load_embeddings(tmp_path / "a" / "embeddings.npz")[2] == ORIGINAL_EMBEDDER
    assert ORIGINAL_EMBEDDER["model"] == "Qwen/Qwen3-Embedding-8B" and ORIGINAL_EMBEDDER["kind"] == "vllm"
    mine = {"kind": "sentence-transformers", "path": "/models/other"}
    import_original(root, "MMLU_Pro", "test", tmp_path / "b", embedder=mine)
    assert load_embeddings(tmp_path / "b" / "embeddings.npz")[2] == mine
    with pytest.raises(ValueError, match="embedder: expected an embedder spec"):
        import_original(root, "MMLU_Pro", "test", tmp_path / "c", embedder="vllm")


# --------------------------------------------------------------------------- an imported run, end to end
CATEGORIES = ["biology", "math", "history", "computer science"]


def test_an_imported_run_trains_routes_and_evaluates(root, tmp_path):
    """The original's files through the real `rgd` commands, as a user types them: import both
    splits, consensus on train, train CASCAL and kNN, route the test split, evaluate. The
    embeddings separate the categories, and each model is strong on two of them in the training
    responses, so the routes must send each category to its model."""
    qs = json.loads((root / "Data/MMLU_Pro/train.json").read_text()) + json.loads((root / QPATH).read_text())
    g = torch.Generator().manual_seed(1)
    emb = {}
    for q in qs:
        v = torch.zeros(6)
        v[CATEGORIES.index(q["category"])] = 3.0
        emb[q["question_id"]] = v + 0.1 * torch.randn(6, generator=g)
    torch.save(emb, embeddings_path(root, "MMLU_Pro"))

    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}

    def rgd(*args):
        r = subprocess.run(
            [str(BIN / "rgd"), *map(str, args)], env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, f"rgd {args[0]}: {r.stderr}"
        return r.stdout

    o = tmp_path / "run"
    rgd("import-original", "--root", root, "--task", "MMLU_Pro", "--split", "train", "test", "--out-dir", o)
    models = ["Llama70", "Qwen3-32"]

    def pairs(split):
        return [f"{m}={o / split / 'responses' / f'{m}.jsonl'}" for m in models]

    rgd(
        "consensus",
        "--questions",
        o / "train/questions.jsonl",
        "--responses",
        *pairs("train"),
        "--out",
        o / "consensus.jsonl",
        "--stats",
        o / "consensus.stats.json",
    )
    strong = {"biology": "Llama70", "history": "Llama70", "math": "Qwen3-32", "computer science": "Qwen3-32"}
    test_qs = read_questions(o / "test/questions.jsonl")
    # CASCAL learns from the consensus alone; kNN is a query-answer router, trained on the keys
    for kind, spec, keys in (
        ("cascal", {}, []),
        ("knn", {"params": {"k": 3}}, ["--keys", o / "train/keys.jsonl"]),
    ):
        rgd(
            "train",
            "--kind",
            kind,
            "--questions",
            o / "train/questions.jsonl",
            "--embeddings",
            o / "train/embeddings.npz",
            "--consensus",
            o / "consensus.jsonl",
            "--experts",
            *models,
            *keys,
            "--spec",
            json.dumps(spec),
            "--out-dir",
            o / "routers" / kind,
        )
        rgd(
            "route",
            "--router",
            o / "routers" / kind,
            "--questions",
            o / "test/questions.jsonl",
            "--embeddings",
            o / "test/embeddings.npz",
            "--out",
            o / f"{kind}.routes.jsonl",
        )
        out = rgd(
            "evaluate",
            "--routes",
            o / f"{kind}.routes.jsonl",
            "--questions",
            o / "test/questions.jsonl",
            "--keys",
            o / "test/keys.jsonl",
            "--responses",
            *pairs("test"),
            "--stats",
            o / "consensus.stats.json",
            "--n-boot",
            "20",
            "--out",
            o / f"{kind}.eval.json",
        )
        assert out.startswith("top1 ")
        routes = {r["id"]: r["ranking"][0] for r in read_jsonl(o / f"{kind}.routes.jsonl")}
        assert routes == {q.id: strong[q.category] for q in test_qs}, kind
        ev = json.loads((o / f"{kind}.eval.json").read_text())
        assert 0.0 <= ev["top1"] <= 1.0 and ev["n_questions"] == 4
