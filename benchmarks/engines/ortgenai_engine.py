"""ONNX Runtime GenAI as a CPU engine candidate (see host.py). Runs in its own venv: numpy and
onnxruntime-genai only; building a model (once) also needs torch, transformers and onnx there.

The ONNX model comes from onnxruntime-genai's model builder: int4 weights (RTN, symmetric, block 32)
in MatMulNBits with accuracy level 4, i.e. activations quantised to int8 on the fly (the fast CPU
path); embeddings, norms and the KV cache stay float32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime_genai as og

BLOCK, ACCURACY = 32, 4


def built_model(folder: str) -> Path:
    """The built model for a checkpoint folder: <cache>/<basename>, built on first use."""
    cache = Path(
        os.environ.get("RGD_ENGINE_CACHE", Path(__file__).parents[2] / "resources" / "engines" / "ortgenai")
    )
    out = cache / Path(folder).name
    if not (out / "genai_config.json").exists():
        # windowed_kv_cache=false: Gemma3's ring-buffer cache for its sliding-window layers rejects a
        # right-padded batch of unequal lengths (GroupQueryAttention: "seqlens_k ... too small")
        extra = [f"accuracy_level={ACCURACY}", f"block_size={BLOCK}", "windowed_kv_cache=false"]
        cmd = [
            sys.executable,
            __file__,
            "-i",
            folder,
            "-o",
            str(out),
            "-p",
            "int4",
            "-e",
            "cpu",
            "-c",
            str(cache / ".build-cache"),
            "--extra_options",
            *extra,
        ]
        subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return out


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class Engine:
    name = f"onnxruntime-genai {og.__version__}"
    weights = f"int4 block {BLOCK}, accuracy level {ACCURACY} (int8 activations), model builder"

    def __init__(self, folder: str, threads: int):
        path = built_model(folder)
        cfg = og.Config(str(path))
        # intra-op threads for the decoder session (the default would take every core)
        opts = {"intra_op_num_threads": int(threads), "inter_op_num_threads": 1}
        cfg.overlay(json.dumps({"model": {"decoder": {"session_options": opts}}}))
        self.model = og.Model(cfg)
        gc = json.loads((path / "genai_config.json").read_text())["model"]
        self.pad = int(gc["pad_token_id"])
        eos = gc["eos_token_id"]
        # a row ends at EOS (where GenAI stops it) or at the pad token, as the transformers backend cuts
        self.ends = {*(eos if isinstance(eos, list) else [eos]), self.pad}
        self.vocab = int(gc["vocab_size"])

    def _generator(self, prompts: list[list[int]], new_tokens: int, **search) -> tuple[og.Generator, int]:
        """A generator with the batch appended. Rows are right-padded with the pad id: GenAI derives
        each row's length from it (with right padding each row's logits and continuation are the
        same as run alone; left padding is not)."""
        width = max(len(p) for p in prompts)
        ids = np.full((len(prompts), width), self.pad, dtype=np.int32)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = p
        params = og.GeneratorParams(self.model)
        params.set_search_options(batch_size=len(prompts), max_length=width + new_tokens, **search)
        gen = og.Generator(self.model, params)
        gen.append_tokens(ids)  # prefill, all rows in one pass
        return gen, width

    def next_token_logprobs(self, prompts: list[list[int]]) -> np.ndarray:
        gen, _ = self._generator(prompts, 1)
        logits = gen.get_logits()  # [batch, 1, vocab]: each row's last real token
        return log_softmax(logits.reshape(len(prompts), -1))

    def generate(
        self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[list[int]]:
        sample = temperature > 0
        search = {"do_sample": sample, "random_seed": int(seed)}
        if sample:  # top_k=0 turns off the genai_config default of 50: top-p alone, as transformers
            search.update(temperature=float(temperature), top_p=float(top_p), top_k=0)
        gen, width = self._generator(prompts, max_new_tokens, **search)
        while not gen.is_done():  # rows that hit EOS are done; the batch runs until all are
            gen.generate_next_token()
        out = []
        for i in range(len(prompts)):
            # a row's sequence is its prompt, padding to the batch width, then its new tokens
            new = [int(t) for t in gen.get_sequence(i)[width:]][:max_new_tokens]
            cut = next((k for k, t in enumerate(new) if t in self.ends), len(new))
            out.append(new[:cut])
        return out

    def close(self) -> None:
        del self.model


if __name__ == "__main__":  # the model builder, with a fix for transformers-5 Gemma3 configs
    import onnxruntime_genai.models as models

    # builder.py imports its siblings as top-level modules (it puts its own folder on sys.path)
    sys.path.insert(0, os.path.dirname(models.__file__))
    import runpy

    from builders import gemma  # noqa: E402

    base_init = gemma.Gemma3Model.__init__

    def init(self, config, *args, **kw):
        # transformers 5 nests Gemma3's RoPE per layer type; the builder reads the 4.x fields
        rp = getattr(config, "rope_parameters", None)
        if isinstance(rp, dict) and "full_attention" in rp:
            config.rope_theta = rp["full_attention"]["rope_theta"]
            config.rope_local_base_freq = rp["sliding_attention"]["rope_theta"]
            config.rope_parameters = dict(rp["full_attention"])
        base_init(self, config, *args, **kw)

    gemma.Gemma3Model.__init__ = init
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")
