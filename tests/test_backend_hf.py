"""The transformers backend's contract, on a tiny random model (output is noise, contract is real)."""

import math

import numpy as np
import pytest

from rgd.backends.base import Sampling
from rgd.backends.hf import HFBackend
from rgd.prompts import build_prompt
from rgd.records import Question

QS = [
    Question("a", "x", "What is two plus two?", ("3", "4", "5", "6")),
    Question("b", "x", "Which colour is the sky on a clear day, usually?", ("blue", "green", "red")),
    Question("c", "y", "Pick one.", ("yes", "no")),
]


@pytest.fixture(scope="module")
def backend(tiny_model):
    return HFBackend(str(tiny_model), threads=1, batch_size=2)


def test_letter_scores_cover_exactly_the_options(backend):
    res = backend.score_letters(
        [build_prompt(q, "plain", "letter") for q in QS], [len(q.options) for q in QS]
    )
    assert [len(lp) for lp, _ in res] == [4, 3, 2]
    for lp, n_tok in res:
        assert all(x <= 0 and math.isfinite(x) for x in lp) and n_tok > 10


def test_letter_scores_do_not_depend_on_batching(tiny_model):
    prompts = [build_prompt(q, "chat", "letter") for q in QS]
    one = HFBackend(str(tiny_model), batch_size=1).score_letters(prompts, [len(q.options) for q in QS])
    three = HFBackend(str(tiny_model), batch_size=3).score_letters(prompts, [len(q.options) for q in QS])
    for (a, _), (b, _) in zip(one, three):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_chat_style_needs_a_chat_template(tiny_base_model):
    be = HFBackend(str(tiny_base_model))
    with pytest.raises(ValueError, match="no chat template"):
        be.render(build_prompt(QS[0], "chat", "letter"))


def test_generation_is_seeded_and_reports_raw_logprobs(backend):
    prompts = [build_prompt(q, "plain", "cot") for q in QS]
    s = Sampling(temperature=0.7, top_p=1.0, max_new_tokens=12, seed=5)
    g1 = backend.generate(prompts, s)
    g2 = backend.generate(prompts, s)
    assert [g.text for g in g1] == [g.text for g in g2]
    assert [g.mean_logprob for g in g1] == [g.mean_logprob for g in g2]
    for g in g1:
        assert 0 < g.n_output_tokens <= 12 and g.mean_logprob < 0
    g3 = backend.generate(prompts, Sampling(temperature=0.7, top_p=1.0, max_new_tokens=12, seed=6))
    assert [g.text for g in g3] != [g.text for g in g1]


def test_shared_leading_tokens_run_once_per_batch(tiny_model):
    """Few-shot prompts share their worked examples: a batch runs them once, then each row's own
    tokens from a copy of their cache; the scores are those of each row run whole."""
    prompts = [build_prompt(q, "fewshot", "letter") for q in QS]
    n = [len(q.options) for q in QS]
    batched = HFBackend(str(tiny_model), batch_size=3)
    seen = []
    hook = batched.model.register_forward_pre_hook(
        lambda mod, args, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    res = batched.score_letters(prompts, n)
    hook.remove()
    one = HFBackend(str(tiny_model), batch_size=1).score_letters(prompts, n)
    assert len(seen) == 1 + len(QS) and seen[0] > 100  # the shared prefix, then one call per row
    assert [seen[0] + s for s in seen[1:]] == [t for _, t in one] == [t for _, t in res]
    for (a, _), (b, _) in zip(one, res):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_padded_batches_score_like_single_rows(tiny_model):
    """The accelerator path (one forward pass over a left-padded batch, explicit positions) gives
    the scores of each row run alone; checked here on the CPU, where it is not the default."""
    prompts = [build_prompt(q, "chat", "letter") for q in QS]
    n = [len(q.options) for q in QS]
    padded = HFBackend(str(tiny_model), batch_size=3, letter_batching="padded")
    seen = []
    hook = padded.model.register_forward_pre_hook(
        lambda mod, args, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    res = padded.score_letters(prompts, n)
    hook.remove()
    one = HFBackend(str(tiny_model), batch_size=1).score_letters(prompts, n)
    assert len(seen) == 1 and seen[0][0] == 3  # one pass for the whole batch
    assert [t for _, t in res] == [t for _, t in one]  # prompt tokens count without padding
    for (a, _), (b, _) in zip(one, res):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert padded.describe()["letter_batching"] == "padded" and padded.cache_identity is None


def test_letter_batching_and_dtype_are_checked(tiny_model):
    with pytest.raises(ValueError, match="letter_batching"):
        HFBackend(str(tiny_model), letter_batching="bucketed")
    with pytest.raises(ValueError, match="dtype: 'half'"):
        HFBackend(str(tiny_model), dtype="half")


def test_bfloat16_weights_get_their_own_cache_keys(tiny_model):
    """The registry's dtype: bfloat16 weights (fast on CPUs with AVX-512 BF16 or AMX) give scores
    close to float32's but not equal, so their records are keyed apart."""
    prompts = [build_prompt(q, "plain", "letter") for q in QS]
    n = [len(q.options) for q in QS]
    bf = HFBackend(str(tiny_model), batch_size=3, dtype="bfloat16")
    fp = HFBackend(str(tiny_model), batch_size=3)
    assert bf.describe()["dtype"] == "bfloat16" and bf.cache_identity == {
        "backend": "transformers",
        "dtype": "bfloat16",
    }
    assert fp.describe()["dtype"] == "float32" and fp.cache_identity is None
    for (a, _), (b, _) in zip(bf.score_letters(prompts, n), fp.score_letters(prompts, n)):
        np.testing.assert_allclose(a, b, atol=0.1)
