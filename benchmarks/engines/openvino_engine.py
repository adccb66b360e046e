"""OpenVINO as a CPU engine candidate (runs only in its own venv: numpy + openvino + openvino_genai).

The OpenVINO model of a folder is built once into RGD_ENGINE_CACHE (default resources/engines/openvino):
by default an int8 (per-channel, nncf) IR exported from the folder's HF checkpoint by optimum-intel,
which must be installed in the same venv; RGD_OV_VARIANT=int4 or gguf picks the others (`_build`).
Letter scoring runs that IR directly with openvino.Core (openvino-genai exposes no logits);
generation uses openvino-genai's continuous-batching pipeline and its C++ sampler on the same IR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_genai as og
from openvino import opset13 as ops

CACHE = Path(
    os.environ.get("RGD_ENGINE_CACHE", Path(__file__).parents[2] / "resources" / "engines" / "openvino")
)


def _build(folder: Path, threads: int) -> tuple[Path, str]:
    """The cached IR folder for `folder` and what its weights are; built once.
    RGD_OV_VARIANT picks: "int8" (default) or "int4", exported from the HF checkpoint by
    optimum-intel, or "gguf", the shipped GGUF read by openvino-genai. int8 is the default: int4
    re-quantisation of weights that were already 4-bit, and the GGUF reader's u4 form of Q4_1/Q4_K
    blocks, both moved letter picks far more (docs/MODELS.md, "Other engines")."""
    variant = os.environ.get("RGD_OV_VARIANT", "int8")
    out = CACHE / folder.name / variant
    if not (out / "openvino_model.xml").exists():
        (_from_gguf if variant == "gguf" else _export)(folder, out, variant, threads)
    what = {
        "gguf": "GGUF blocks kept as u4/u8 by openvino-genai's GGUF reader",
        "int4": "int4 asym group-64 data-free weights (nncf via optimum-intel), int8 embeddings/lm_head",
        "int8": "int8 asym per-channel weights (nncf via optimum-intel)",
    }
    return out, what.get(variant, variant)


def _from_gguf(folder: Path, out: Path, variant: str, threads: int) -> None:
    """openvino-genai converts the GGUF and saves the IR beside the path it was given, hence a
    link in the cache (never in the model folder). 2026.4 read smollm2 (Q4_1, Q8_0) and
    qwen2.5-coder-1.5b (Q4_K, Q6_K) but failed on the GGUFs holding Q5_0 tensors
    ("gguf_tensor_to_f16 failed": gemma3-270m, qwen2.5-coder-0.5b)."""
    out.mkdir(parents=True, exist_ok=True)
    link = out / "model.gguf"
    if not link.exists():
        link.symlink_to(folder / "model.gguf")
    og.LLMPipeline(str(link), "CPU", enable_save_ov_model=True, INFERENCE_NUM_THREADS=threads)


def _export(folder: Path, out: Path, variant: str, threads: int) -> None:
    """optimum-intel (same venv) exports the HF checkpoint. It needs transformers<5, which does not
    read the transformers-5 `rope_parameters` of these configs and silently falls back to
    rope_theta 10000: so it reads a copy of the folder whose config.json says rope_theta the old way."""
    stage = out.parent / "hf-v4"
    stage.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.suffix != ".gguf" and f.name != "config.json" and not (stage / f.name).exists():
            (stage / f.name).symlink_to(f)
    cfg = json.loads((folder / "config.json").read_text())
    rope = cfg.pop("rope_parameters", None) or {}
    if "full_attention" in rope:  # gemma3: global and sliding layers have their own base
        cfg["rope_theta"] = rope["full_attention"]["rope_theta"]
        cfg["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
    elif rope:
        cfg["rope_theta"] = rope["rope_theta"]
        if rope.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = rope
    (stage / "config.json").write_text(json.dumps(cfg, indent=1))
    cli = Path(sys.executable).with_name("optimum-cli")
    args = ["--weight-format", variant] + (["--group-size", "64"] if variant == "int4" else [])
    # 576-wide SmolLM2 layers do not split into nncf's default 128-groups, hence 64
    subprocess.run(
        [
            str(cli),
            "export",
            "openvino",
            "-m",
            str(stage),
            "--task",
            "text-generation-with-past",
            *args,
            str(out),
        ],
        check=True,
    )


def _last_position_logits(model: ov.Model) -> None:
    """Project only the last position onto the vocabulary: the logits of every prompt position
    (up to 262k wide) are never used, and cost most of a prefill's memory and much of its time."""
    node = model.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() != "MatMul":  # e.g. gemma's soft-capping or a Convert after lm_head
        node = node.input_value(0).get_node()
    hidden = node.input_value(0)
    last = ops.slice(hidden, np.array([-1]), np.array([np.iinfo(np.int64).max]), np.array([1]), np.array([1]))
    node.input(0).replace_source_output(last.output(0))
    model.validate_nodes_and_infer_types()


def _eos_ids(folder: Path) -> set[int]:
    """EOS ids as the HF checkpoint states them (generation_config may list several)."""
    ids: set[int] = set()
    for name in ("config.json", "generation_config.json"):
        p = folder / name
        if p.exists():
            e = json.loads(p.read_text()).get("eos_token_id")
            ids.update(e if isinstance(e, list) else [e] if e is not None else [])
    return ids


def _left_pad(prompts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Left padding puts every row's last real token in the last column."""
    n = max(map(len, prompts))
    ids = np.zeros((len(prompts), n), np.int64)
    mask = np.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, n - len(p) :], mask[i, n - len(p) :] = p, 1
    return ids, mask


class Engine:
    def __init__(self, folder: str, threads: int):
        folder_p = Path(folder)
        ir, self.weights = _build(folder_p, threads)
        self.name = f"openvino {ov.get_version().split('-')[0]}"
        # f32 compute unless asked: on a CPU with bf16/AMX OpenVINO would default to bf16, whose
        # rounding alone flips close letter picks (RGD_OV_PRECISION=bf16 to measure that trade).
        # Dynamic int8 quantisation of activations is off: with it a row's logits moved by up to
        # 0.24 with the amount of left padding in its batch.
        prec = os.environ.get("RGD_OV_PRECISION", "f32")
        cfg = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": prec,
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
        }
        self.weights += f", {prec} compute"
        core = ov.Core()
        model = core.read_model(str(ir / "openvino_model.xml"))
        _last_position_logits(model)
        self.request = core.compile_model(model, "CPU", cfg).create_infer_request()
        # ContinuousBatchingPipeline, not LLMPipeline: LLMPipeline samples a padded batch with one
        # seed for all rows, so identical prompts in a batch got identical samples
        sched = og.SchedulerConfig()
        sched.cache_size = 1  # GB of paged KV cache: ample for 14 rows of a few hundred tokens
        sched.max_num_batched_tokens, sched.dynamic_split_fuse = 8192, False  # whole prompts per step
        self.pipe = og.ContinuousBatchingPipeline(str(ir), sched, "CPU", cfg)
        self.eos = _eos_ids(folder_p)

    def next_token_logprobs(self, prompts: list[list[int]]) -> np.ndarray:
        ids, mask = _left_pad(prompts)
        pos = np.maximum(mask.cumsum(-1) - 1, 0)  # each row counts positions from its first real token
        self.request.reset_state()  # the KV cache is model state: start each batch empty
        self.request.infer(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "position_ids": pos,
                "beam_idx": np.arange(len(prompts), dtype=np.int32),
            }
        )
        logits = self.request.get_tensor("logits").data[:, -1].astype(np.float32)
        m = logits.max(-1, keepdims=True)
        return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))

    def generate(
        self, prompts: list[list[int]], max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[list[int]]:
        configs = []
        for i in range(len(prompts)):
            cfg = og.GenerationConfig()
            cfg.max_new_tokens = max_new_tokens
            cfg.stop_token_ids = self.eos
            if temperature > 0:  # one random stream per row, derived from the call's seed
                cfg.do_sample, cfg.temperature, cfg.top_p = True, temperature, top_p
                cfg.rng_seed = seed * 1_000_003 + i
            configs.append(cfg)
        # all rows are scheduled together: prefill, then one decode step for every live row
        res = self.pipe.generate([ov.Tensor(np.array([p], np.int64)) for p in prompts], configs)
        out = []
        for r in res:  # cut at the EOS that ended a row (not returned, as in the HF backend)
            toks = list(r.m_generation_ids[0])
            ends = [i for i, t in enumerate(toks) if t in self.eos]
            out.append(toks[: ends[0]] if ends else toks)
        return out

    def close(self) -> None:
        self.request = self.pipe = None
