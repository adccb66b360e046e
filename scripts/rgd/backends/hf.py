"""transformers backend: the CPU default; it also runs on a GPU that torch sees.

Implements rgd.backends.base.LocalBackend: letter scores under the full-vocabulary next-token
distribution, and a confidence that is minus the per-token NLL of the model's own output under
the *raw* (temperature 1) distribution (what vLLM V1 returns with logprobs_mode="raw_logprobs").
"""

from __future__ import annotations

import copy
import inspect
import os
import time
from pathlib import Path

import numpy as np

from ..io import SetupError
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
    stop_token_ids,
)

# a batch whose rows share fewer leading tokens than this runs every row whole
MIN_SHARED_PREFIX = 16


def prefix_to_share(rows: list[list[int]]) -> int:
    """How many leading tokens a shared-prefix batch runs once: those all its rows share, leaving
    each row a token of its own (for its logits); 0 below MIN_SHARED_PREFIX (not worth a cache copy)."""
    if len(rows) < 2:
        return 0
    n = min(len(os.path.commonprefix(rows)), min(map(len, rows)) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


class HFBackend(LocalBackend):
    name = "transformers"

    @classmethod
    def create(cls, model_dir: str, settings: Settings, log=None) -> HFBackend:
        return cls(
            model_dir,
            threads=settings.threads,
            batch_size=settings.batch_size,
            max_prompt_tokens=settings.max_prompt_tokens,
            template_kwargs=settings.template_kwargs,
            dtype=settings.engine.get("dtype"),
        )

    def __init__(
        self,
        model_dir: str,
        threads: int = 1,
        batch_size: int = 4,
        max_prompt_tokens: int = 2048,
        template_kwargs: dict | None = None,
        device: str = "auto",
        dtype: str | None = None,
        letter_batching: str | None = None,
    ):
        """`device`: "auto" takes a CUDA GPU when torch sees one, else the CPU. `dtype` (the model
        registry's `dtype`): float32, bfloat16, float16 or auto (resolve_dtype: bfloat16 on CPUs with
        native bf16, else float32); by default float32 on a CPU, bfloat16 on a GPU. The weights are
        loaded in it whatever dtype they were saved in. `letter_batching` (see score_letters): "padded" or
        "shared-prefix"; by default padded on an accelerator, shared-prefix on a CPU."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(max(1, threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if letter_batching not in (None, "padded", "shared-prefix"):
            raise ValueError(f"letter_batching: {letter_batching!r} is neither 'padded' nor 'shared-prefix'")
        requested = dtype
        dtype, why = resolve_dtype(dtype, device)
        if requested == "auto":
            print(
                f"[{self.name}] dtype {dtype} ({why}; torch CPU capability "
                f"{torch.backends.cpu.get_cpu_capability()})",
                flush=True,
            )
        if not any(Path(model_dir).glob("*.safetensors")) and not any(Path(model_dir).glob("*.bin")):
            raise SetupError(
                f"{model_dir}: no weights: materialised for the llamacpp backend only (--gguf-only); "
                "rematerialise it without --gguf-only to run it with transformers"
            )
        t0 = time.perf_counter()
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device)
        self.dtype = dtype
        self.dtype_choice = why if requested == "auto" else None
        self.model.eval()
        self.load_seconds = time.perf_counter() - t0
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.template_kwargs = template_kwargs or {}
        self.device = device
        self.letter_batching = letter_batching or ("shared-prefix" if device == "cpu" else "padded")
        self._letter_ids = [letter_token_ids(self.tok, L) for L in LETTERS]
        self._stop_ids: dict[tuple, list[int]] = {}
        # lower-precision weights change results: such records get their own cache keys (float32,
        # the CPU reference, keeps the keys it always had)
        self.cache_identity = None if self.dtype == "float32" else {"backend": self.name, "dtype": self.dtype}

    def describe(self) -> dict:
        """What a record's numbers depend on beyond the model: kept in each job's metadata."""
        d = {
            "backend": self.name,
            "device": self.device,
            "dtype": self.dtype,
            "letter_batching": self.letter_batching,
            "batch_size": self.batch_size,
        }
        if self.dtype_choice:  # registry dtype auto: why this machine got this dtype
            d["dtype_auto"] = self.dtype_choice
        return d

    # -- prompts ---------------------------------------------------------------------------
    def render(self, prompt: dict) -> str:
        return render_prompt(self.tok, prompt, self.template_kwargs)

    def _encode(self, texts: list[str]):
        """Token ids and attention mask, left-padded, on the model's device."""
        enc = self.tok(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_prompt_tokens,
            add_special_tokens=adds_special_tokens(self.tok, texts),
        )
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    # -- letter scoring ----------------------------------------------------------------------
    def score_letters(self, prompts: list[dict], n_options: list[int]) -> list[tuple[list[float], int]]:
        """For each prompt: (log-probabilities of letters A.. up to its option count, prompt tokens).

        How a batch runs (`letter_batching`): on an accelerator a forward pass over a padded batch
        costs about what one row does, so rows run together ("padded"). On a CPU a forward pass
        costs per token, padding included, so rows run unpadded, and what a batch saves is the
        leading tokens its rows share (few-shot examples, a chat system prompt), run once per batch
        ("shared-prefix"; benchmarks/bench_hf.py measures both effects)."""
        import torch

        out: list[tuple[list[float], int]] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [self.render(p) for p in prompts[start : start + self.batch_size]]
            ids, mask = self._encode(texts)
            rows = [r[m.bool()] for r, m in zip(ids, mask)]  # each row's own tokens (left padding dropped)
            with torch.inference_mode():
                logits = (
                    self._padded_logits(ids, mask)
                    if self.letter_batching == "padded"
                    else self._last_logits(rows)
                )
            logp = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
            for row, k, n_tok in zip(logp, n_options[start:], [len(r) for r in rows]):
                letters = [float(np.logaddexp.reduce(row[self._letter_ids[i]])) for i in range(k)]
                out.append((letters, int(n_tok)))
        return out

    def _padded_logits(self, ids, mask):
        """Next-token logits after each row of a left-padded batch, in one forward pass; explicit
        positions, so that left padding does not shift a row's positions."""
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[
            :, -1
        ]

    def _last_logits(self, rows: list):
        """Next-token logits (len(rows), vocab) after each row of token ids. The rows' common leading
        tokens are run once and a copy of their key/value cache continues each row, at the same
        positions: the logits agree with running each row whole up to float noise."""
        import torch

        shared = prefix_to_share([r.tolist() for r in rows])
        window = getattr(self.model.config, "sliding_window", None)  # a sliding cache drops old keys
        if not shared or (window and max(len(r) for r in rows) > window):
            return torch.cat([self.model(input_ids=r[None], logits_to_keep=1).logits[:, -1] for r in rows])
        from transformers import DynamicCache

        # the cache argument was renamed in transformers 5.2x (past_key_values -> cache)
        arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        prefix = DynamicCache(config=self.model.config)
        self.model(input_ids=rows[0][None, :shared], use_cache=True, logits_to_keep=1, **{arg: prefix})
        out = []
        for r in rows:
            res = self.model(
                input_ids=r[None, shared:],
                position_ids=torch.arange(shared, len(r), device=r.device)[None],
                use_cache=True,
                logits_to_keep=1,
                **{arg: copy.deepcopy(prefix)},
            )
            out.append(res.logits[:, -1])
        return torch.cat(out)

    # -- generation --------------------------------------------------------------------------
    def generate(
        self, prompts: list[dict], sampling: Sampling, logprobs: bool = True, stop: list[str] | None = None
    ) -> list[Generation]:
        """Sample a continuation per prompt; `logprobs=False` skips the confidence (and the
        memory for per-step logits, large with a 262k vocabulary). Text is cut at the first
        `stop` string."""
        import torch

        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [self.render(p) for p in prompts[start : start + self.batch_size]]
            ids, mask = self._encode(texts)
            # one seed per batch, derived from the run seed and the batch's position in the
            # plan: a resumed run regenerates a missing batch exactly as the first run would
            torch.manual_seed(sampling.seed * 1_000_003 + start)
            with torch.inference_mode():
                res = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    do_sample=sampling.temperature > 0,
                    temperature=sampling.temperature if sampling.temperature > 0 else None,
                    top_p=sampling.top_p,
                    max_new_tokens=sampling.max_new_tokens,
                    return_dict_in_generate=True,
                    output_logits=logprobs,
                    pad_token_id=self.tok.pad_token_id,
                    **self._stop_kwargs(stop),
                )
            new = res.sequences[:, ids.shape[1] :]
            if logprobs:
                raw = torch.stack(res.logits, dim=1).float()  # raw (temperature-1) logits
                lp = torch.log_softmax(raw, dim=-1).gather(-1, new[:, : raw.shape[1], None])[..., 0]
            ends = {self.tok.eos_token_id, self.tok.pad_token_id}
            stop_ids = set(self._stop_kwargs(stop).get("eos_token_id", ()))
            for b in range(new.shape[0]):
                toks = new[b].tolist()
                n = len(toks)
                for i, t in enumerate(toks):
                    if t in ends:
                        n = i
                        break
                    if t in stop_ids:  # keep the stop token's text; it is cut below
                        n = i + 1
                        break
                mean = float(lp[b, :n].mean()) if n and logprobs else None
                text = self.tok.decode(toks[:n], skip_special_tokens=True)
                for st in stop or ():
                    text = text.split(st, 1)[0]
                out.append(Generation(text, mean, int(mask[b].sum()), n))
        return out

    def _stop_kwargs(self, stop: list[str] | None) -> dict:
        """Single-character stops (the newline that ends a field) become extra end-of-sequence
        token ids: every vocabulary entry containing the character. Far cheaper than transformers'
        general stop-string matcher, which rebuilds its tables on every call."""
        if not stop:
            return {}
        if all(len(s) == 1 for s in stop):
            key = tuple(sorted(stop))
            if key not in self._stop_ids:
                self._stop_ids[key] = stop_token_ids(self.tok, stop)
            eos = self.tok.eos_token_id
            return {"eos_token_id": sorted({*self._stop_ids[key], *([eos] if eos is not None else [])})}
        return {"stop_strings": stop, "tokenizer": self.tok}
