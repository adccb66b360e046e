"""The backend contract: the types every backend takes and returns, and what each one provides.

A step (rgd.respond, rgd.generate) gets a backend from `rgd.backends.make` and talks to it only
through the interface below; what a backend can do is declared as class attributes, never probed.

- `Backend`: every backend. `generate` samples replies; `describe`, `load_seconds`, `device`,
  `cache_identity` and `identity` feed the job's metadata and its records' cache keys.
- `LocalBackend`: a registry model run on this machine (transformers, vLLM): it also renders
  prompts (`render`, the exact text that keys the cache) and scores option letters.
- Streaming backends (`streams = True`, vLLM) take every prompt of a job in one call and yield
  results as they finish (`stream_letters`, `stream_generate`), so a step can cache them in
  chunks while the engine keeps every request in flight.
- API backends (rgd.backends.api: Gemini, OpenAI-compatible) render nothing and score no letters;
  their replies carry token usage (`reports_usage`), which `report` totals and prices.

Only the standard library here: importing rgd.backends loads no model library.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from ..io import SetupError
from ..spec import bounds, validate


@dataclass(frozen=True)
class Sampling:
    """How replies are sampled. The defaults are an expert's (the reference answers at temperature
    0.7, top-p 1.0); a generator's are GENERATOR_SAMPLING. Field order is part of every cache key
    (`vars(sampling)`)."""

    temperature: float = field(default=0.7, metadata=bounds(min=0.0))
    top_p: float = field(default=1.0, metadata=bounds(exclusive_min=0.0, max=1.0))
    max_new_tokens: int = field(default=256, metadata=bounds(min=1))
    seed: int = 0

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_config(cls, cfg: dict | None, defaults: dict | None = None, **fixed) -> Sampling:
        """A config's `sampling` block over `defaults` (the dataclass's if None); `fixed` wins
        over both (a generator's seed is its own `seed`, not the block's)."""
        return cls(**{**(defaults or {}), **(cfg or {}), **fixed})


# A generator's sampling defaults: the reference's local generators write at temperature 0.8, top-p 0.95.
GENERATOR_SAMPLING = {"temperature": 0.8, "top_p": 0.95}


@dataclass
class Generation:
    """One reply. `mean_logprob`: the mean log-probability of the sampled tokens under the raw
    (temperature-1, pre-top-p) model distribution, a final end-of-sequence token excluded; None
    when not asked for or not available."""

    text: str
    mean_logprob: float | None
    n_prompt_tokens: int
    n_output_tokens: int


@dataclass
class APIGeneration(Generation):
    """A reply from a backend that `reports_usage`: token counts {input, cached_input, output, ...}."""

    usage: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """What a step asks of its backend; each backend reads the fields it uses."""

    threads: int = 1  # CPU threads (transformers)
    batch_size: int = 4  # prompts per forward pass (transformers)
    max_prompt_tokens: int = 2048  # longer prompts are cut on the right
    max_new_tokens: int = 256  # the longest reply asked for (vLLM sizes its context with it)
    template_kwargs: dict = field(default_factory=dict)  # extra chat-template arguments
    # the model registry's engine settings: dtype (both local backends), vLLM's EngineSpec
    engine: dict = field(default_factory=dict)
    seed: int = 0  # the engine's seed (vLLM)
    config: dict = field(default_factory=dict)  # an API generator's settings (model_id, base_url, retries...)


class Backend(ABC):
    """What every backend provides. Capabilities are class attributes; a step reads them and never
    asks an object what it happens to have."""

    name: ClassVar[str]  # the registry name, recorded in every job's metadata
    local: ClassVar[bool] = False  # runs a registry model here: see LocalBackend
    scores_letters: ClassVar[bool] = False  # score_letters: letter-mode experts, guided generation
    streams: ClassVar[bool] = False  # stream_letters / stream_generate: a job's prompts in one call
    reports_usage: ClassVar[bool] = False  # replies are APIGenerations; report() totals and prices them
    replays: ClassVar[bool] = False  # replay(questions, expert): recorded answers, no model (recorded)

    load_seconds: float = 0.0  # time to load the model or start the engine
    device: str | None = None  # what the numbers were computed on ("cpu", "NVIDIA H100 x2"...)
    # what about the engine changes results (version, dtype...): part of every record's cache key;
    # None when nothing beyond the model does (the float32 transformers reference)
    cache_identity: dict | None = None
    # a backend with no registry model (an API): what, besides prompt and sampling, determines a
    # reply (the cache key's and the metadata's model); a local backend's identity is its manifest
    identity: dict | None = None

    @classmethod
    @abstractmethod
    def create(cls, model_dir: str | None, settings: Settings, log=None) -> Backend:
        """The backend a step's settings ask for (rgd.backends.make calls this)."""

    @abstractmethod
    def generate(
        self, prompts: list[dict], sampling: Sampling, logprobs: bool = False, stop: list[str] | None = None
    ) -> list[Generation]:
        """One reply per prompt dict (rgd.prompts, rgd.generate), in prompt order, each cut before
        the first `stop` string. Seeded: the same prompts and sampling give the same replies.
        `logprobs=True` asks for each reply's mean_logprob (local backends; an API raises ValueError)."""

    def describe(self) -> dict:
        """What a job's numbers depend on beyond the model (device, dtype, engine version, batching):
        kept in the job's metadata as "engine"; {} when there is nothing to add."""
        return {}

    def report(self, usages: list[dict]) -> dict:
        """Backends that `reports_usage`: the metadata of a whole run from every prompt's usage."""
        raise NotImplementedError(f"{self.name}: reports no token usage")

    def stream_generate(
        self,
        prompts: list[dict],
        sampling: Sampling,
        seeds: list[int],
        logprobs: bool = True,
        stop: list[str] | None = None,
    ) -> Iterator[tuple[int, Generation]]:
        """Streaming backends: generate for every prompt at once, request i seeded with seeds[i]
        (from request_seed: independent of what else is in flight), yielding (index, reply)."""
        raise NotImplementedError(f"{self.name}: does not stream")


class LocalBackend(Backend):
    """A registry model run on this machine. Every local backend gives the same results for the
    same prompts: the same rendered text, letter scores and confidence definition (docs/VLLM.md)."""

    local = True
    scores_letters = True

    @abstractmethod
    def render(self, prompt: dict) -> str:
        """The exact text the model is fed (render_prompt); it keys the records' cache."""

    @abstractmethod
    def score_letters(self, prompts: list[dict], n_options: list[int]) -> list[tuple[list[float], int]]:
        """For each prompt: (log-probabilities of the letters A.. up to its option count, under the
        full-vocabulary next-token distribution, each summed over the letter's spellings "A" and " A";
        the prompt's token count)."""

    @abstractmethod
    def generate(
        self, prompts: list[dict], sampling: Sampling, logprobs: bool = True, stop: list[str] | None = None
    ) -> list[Generation]:
        """Backend.generate; the confidence is on by default."""

    def stream_letters(
        self, prompts: list[dict], n_options: list[int]
    ) -> Iterator[tuple[int, tuple[list[float], int]]]:
        """Streaming backends: score_letters for every prompt at once, yielding (index, result) as
        each finishes."""
        raise NotImplementedError(f"{self.name}: does not stream")


# -- the weights' dtype: one rule for materialising and for every local backend ------------------
DTYPES = ("float32", "bfloat16", "float16", "auto")
# CPU flags (/proc/cpuinfo) of native bfloat16 arithmetic: there bf16 runs ~2x faster than fp32
# with the same answers; on CPUs without them (AVX2 only) torch emulates it, ~5x slower
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags, from /proc/cpuinfo (or the given text); empty where that file
    cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:
            return set()
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return flags


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The native-bfloat16 flags this CPU has, from /proc/cpuinfo (or the given text); where
    that file does not exist, from torch's own CPU probe."""
    if cpuinfo is None and not os.path.exists("/proc/cpuinfo"):
        import torch

        probe = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
        return [f for f, fn in probe.items() if getattr(torch.cpu, fn, lambda: False)()]
    flags = cpu_flags(cpuinfo)
    return [f for f in BF16_CPU_FLAGS if f in flags]


def resolve_dtype(dtype: str | None, device: str, cpuinfo: str | None = None) -> tuple[str, str]:
    """(dtype, why) for the registry's `dtype` on `device`. Unset: float32 on a CPU (the reference
    numbers), bfloat16 on an accelerator. `auto`: on a CPU, bfloat16 where it has native bf16
    (AVX512_BF16 or AMX), else float32; on an accelerator bfloat16."""
    if dtype not in (None, *DTYPES):
        raise ValueError(f"dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    if dtype not in (None, "auto"):
        return dtype, "as configured"
    if device != "cpu":
        return "bfloat16", f"{'auto' if dtype else 'default'} on {device}"
    if dtype is None:
        return "float32", "default on a CPU"
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        return "bfloat16", f"auto: the CPU has native bfloat16 ({', '.join(flags)})"
    return "float32", "auto: the CPU has no native bfloat16 (no avx512_bf16 or amx_bf16)"


# -- helpers every local backend shares -------------------------------------------------------------
class NoChatTemplate(SetupError, ValueError):
    """A chat prompt for a model without a chat template: the expert's or generator's style is wrong."""


def render_prompt(tok, prompt: dict, template_kwargs: dict) -> str:
    """The exact text a backend feeds the model: the model's own chat template for chat prompts
    (plus any assistant prefill), or the completion text as is."""
    if "messages" in prompt:
        if not getattr(tok, "chat_template", None):
            raise NoChatTemplate(
                "this model has no chat template; use a completion prompt style (plain or fewshot)"
            )
        text = tok.apply_chat_template(
            prompt["messages"], tokenize=False, add_generation_prompt=True, **template_kwargs
        )
        return text + prompt.get("assistant_prefix", "")
    return prompt["text"]


def adds_special_tokens(tok, texts: list[str]) -> bool:
    """Whether tokenising `texts` adds the tokenizer's special tokens: not where every text already
    starts with its BOS (chat templates write it), which would otherwise be doubled."""
    bos = tok.bos_token
    return not (bos and all(t.startswith(bos) for t in texts))


def letter_token_ids(tok, letter: str) -> list[int]:
    """Token ids that spell an option letter as the next token ("A" and " A")."""
    ids = set()
    for s in (letter, " " + letter):
        enc = tok.encode(s, add_special_tokens=False)
        if enc:
            ids.add(enc[-1])
    return sorted(ids)


def stop_token_ids(tok, stop: list[str]) -> list[int]:
    """Every vocabulary entry whose text contains one of the single-character `stop`s (the
    newline that ends a field): generating any of them ends a reply, which is then cut at the
    character. Far cheaper than matching stop strings on the decoded text at every step."""
    pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
    texts = [tok.convert_tokens_to_string([p]) if p is not None else "" for p in pieces]
    return sorted(i for i, t in enumerate(texts) if any(c in t for c in stop))


def request_seed(key: str) -> int:
    """A streamed request's sampling seed from its record's content key (hex): the same request
    gets the same seed whatever else is in flight, before or after a resume."""
    return int(key[:15], 16)
