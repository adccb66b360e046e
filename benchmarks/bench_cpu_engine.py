"""CPU engine: the llamacpp backend (the GGUF as it ships, quantised) against the transformers
reference (the same GGUF dequantised, dtype auto), in the same run, on the embedded default.

Two figures, each a ratio against transformers on the same machine in the same run:
- letter mode: questions/s of every expert of the default's `four` pool (its model, prompt style
  and batch size from config/config.yaml) on real MMLU questions of the default's subjects, with
  the share of questions where both engines pick the same letter and each engine's accuracy;
- generation: output tokens/s of the default's strong generator (Qwen2.5-Coder-1.5B, its chat
  prompts, sampling and batch size), batched as rgd.generate runs it.
Runs are interleaved (benchlib.paired). Targets (issue 22): >= 3x on generation, >= 2x on
letters, accuracy equal within the 95% CI of the paired difference.

`--full` scores all 315 questions of the default (the comparison table of docs/MODELS.md, "CPU
engines"); the default is a sample, for `make bench`.

    .venv/bin/python benchmarks/bench_cpu_engine.py [--out result.json] [--quick] [--full] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import yaml
from benchlib import ROOT, finish, fmt_rate, median, paired, result

from rgd.backends.base import GENERATOR_SAMPLING, Sampling, cpu_flags
from rgd.backends.hf import HFBackend
from rgd.backends.llamacpp import LlamaCppBackend
from rgd.embedded import load_mmlu
from rgd.generate import build_prompt as generator_prompt
from rgd.generate import load_descriptions
from rgd.metrics import paired_bootstrap
from rgd.models import GGUF_FILE, MANIFEST, materialise
from rgd.prompts import build_prompt
from rgd.records import LETTERS, Question

TARGET_GENERATION, TARGET_LETTERS = 3.0, 2.0
HF_DTYPE = ["auto"]  # --hf-dtype
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def model_dir(cache: Path, name: str) -> Path:
    """The model with both its dequantised weights (dtype auto) and its GGUF: built once into a
    folder of this benchmark's own (the workflow's cache may hold the GGUF only)."""
    out = cache / "bench-cpu-engine" / name
    if not (out / MANIFEST).exists() or not (out / GGUF_FILE).exists():
        m = CONFIG["models"][name]
        print(f"materialising {name} into {out} (once)", flush=True)
        materialise(name, m["source"], out, dtype=m.get("dtype"), keep_gguf=True)
    return out


def mmlu(per_subject: int) -> tuple[list[Question], list[int]]:
    src = CONFIG["benchmarks"]["mmlu"]["source"]
    rows, keys = load_mmlu(src["subjects"], src["split"], per_subject, seed=0)
    qs = [Question(r["id"], r["category"], r["question"], tuple(r["options"])) for r in rows]
    return qs, [LETTERS.index(k["answer"]) for k in keys]


def letters(expert: str, cache: Path, qs, keys, threads: int, repeats: int) -> dict:
    e = CONFIG["experts"][expert]
    folder = model_dir(cache, e["model"])
    batch = e.get("batch_size", 4)
    prompts = [build_prompt(q, e["style"], "letter") for q in qs]
    n_opt = [len(q.options) for q in qs]
    engines = {
        "llamacpp": LlamaCppBackend(str(folder), threads=threads, batch_size=batch),
        "transformers": HFBackend(str(folder), threads=threads, batch_size=batch, dtype=HF_DTYPE[0]),
    }
    picks = {}

    def run(name):
        def fn():
            res = engines[name].score_letters(prompts, n_opt)
            picks[name] = np.array([int(np.argmax(lp)) for lp, _ in res])

        return fn

    for b in engines.values():
        b.score_letters(prompts[:2], n_opt[:2])  # warm-up
    t_ll, t_hf = paired(run("llamacpp"), run("transformers"), repeats)
    right = {k: (v == np.array(keys)).astype(float) for k, v in picks.items()}
    lo, hi = paired_bootstrap(right["llamacpp"], right["transformers"][:, None], seed=0).ci
    engines["llamacpp"].close()
    return {
        "model": e["model"],
        "style": e["style"],
        "batch_size": batch,
        "questions": len(qs),
        "llamacpp_questions_per_s": len(qs) / median(t_ll),
        "transformers_questions_per_s": len(qs) / median(t_hf),
        "transformers_dtype": engines["transformers"].dtype,
        "ratio": median(t_hf) / median(t_ll),
        "same_pick": float(np.mean(picks["llamacpp"] == picks["transformers"])),
        "accuracy_llamacpp": float(right["llamacpp"].mean()),
        "accuracy_transformers": float(right["transformers"].mean()),
        "accuracy_difference_ci95": [lo, hi],
    }


def generation(cache: Path, name: str, threads: int, n_prompts: int, max_new: int, repeats: int) -> dict:
    g = CONFIG["generators"][name]
    folder = model_dir(cache, g["model"])
    desc = load_descriptions(ROOT / CONFIG["benchmarks"]["mmlu"]["descriptions"])
    prompts = [generator_prompt(d, g["style"]) for d in list(desc.values()) * n_prompts][:n_prompts]
    sampling = Sampling.from_config({**g["sampling"], "max_new_tokens": max_new}, GENERATOR_SAMPLING)
    engines = {
        "llamacpp": LlamaCppBackend(str(folder), threads=threads, batch_size=g["batch_size"]),
        "transformers": HFBackend(
            str(folder), threads=threads, batch_size=g["batch_size"], dtype=HF_DTYPE[0]
        ),
    }
    tokens = {}

    def run(name):
        def fn():
            tokens[name] = sum(r.n_output_tokens for r in engines[name].generate(prompts, sampling))

        return fn

    t_ll, t_hf = paired(run("llamacpp"), run("transformers"), repeats)
    engines["llamacpp"].close()
    ll, hf = tokens["llamacpp"] / median(t_ll), tokens["transformers"] / median(t_hf)
    return {
        "model": g["model"],
        "prompts": n_prompts,
        "batch_size": g["batch_size"],
        "max_new_tokens": max_new,
        "llamacpp_tokens_per_s": ll,
        "transformers_tokens_per_s": hf,
        "transformers_dtype": engines["transformers"].dtype,
        "ratio": ll / hf,
    }


def cpu() -> dict:
    import torch

    flags = cpu_flags()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    return {
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "flags": [f for f in wanted if f in flags],
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-subject", type=int, default=3, help="MMLU questions per subject (7 subjects)")
    ap.add_argument("--full", action="store_true", help="all 315 questions of the default, one repeat")
    ap.add_argument("--experts", nargs="*", default=CONFIG["pools"]["four"])
    ap.add_argument("--threads", type=int, default=1, help="threads per engine (a workflow job uses 1)")
    ap.add_argument("--generator", default="qwen", help="a generator of the default (the strong one)")
    ap.add_argument("--gen-prompts", type=int, default=14)
    ap.add_argument("--gen-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--hf-dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="the reference's dtype (float32 with ATEN_CPU_CAPABILITY=avx2: an AVX2-only CPU's reference)",
    )
    ap.add_argument("--model-cache", type=Path, default=ROOT / "resources" / "models")
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument("--quick", action="store_true", help="one small expert, a few questions and tokens")
    args = ap.parse_args(argv)
    if args.full:
        args.per_subject, args.repeats = 45, 1
    if args.quick:  # SmolLM2 only: CI installs no Qwen wheels
        args.per_subject, args.experts, args.repeats = 1, ["smol-chat"], 1
        args.generator, args.gen_prompts, args.gen_tokens = "smol", 2, 8
    HF_DTYPE[0] = args.hf_dtype
    t0 = time.perf_counter()
    qs, keys = mmlu(args.per_subject)
    experts = {}
    for name in args.experts:
        s = experts[name] = letters(name, args.model_cache, qs, keys, args.threads, args.repeats)
        print(
            f"{name:>16}: llamacpp {s['llamacpp_questions_per_s']:.2f} q/s, transformers "
            f"({s['transformers_dtype']}) {s['transformers_questions_per_s']:.2f} q/s, {s['ratio']:.2f}x; "
            f"same pick {s['same_pick']:.1%}; accuracy {s['accuracy_llamacpp']:.3f} vs "
            f"{s['accuracy_transformers']:.3f} (95% CI of the difference "
            f"[{s['accuracy_difference_ci95'][0]:+.3f}, {s['accuracy_difference_ci95'][1]:+.3f}])",
            flush=True,
        )
    gen = generation(
        args.model_cache, args.generator, args.threads, args.gen_prompts, args.gen_tokens, args.repeats
    )
    print(
        f"generation ({gen['model']}, batch {gen['batch_size']}): "
        f"llamacpp {gen['llamacpp_tokens_per_s']:.1f} tok/s, "
        f"transformers ({gen['transformers_dtype']}) {gen['transformers_tokens_per_s']:.1f} tok/s, "
        f"{gen['ratio']:.2f}x",
        flush=True,
    )
    return report(args, experts, gen, time.perf_counter() - t0)


def verdict(experts: dict, gen: dict, engine: str, full: bool) -> tuple[int, float, float, list[str]]:
    """(questions per engine, the engine's letter seconds, transformers', the targets missed) over
    the experts' runs; `engine` names its figures ("llamacpp", "candidate"). With `full`, an
    expert whose paired accuracy CI excludes 0 misses too."""
    n = sum(s["questions"] for s in experts.values())
    eng_s = sum(s["questions"] / s[f"{engine}_questions_per_s"] for s in experts.values()) or math.nan
    hf_s = sum(s["questions"] / s["transformers_questions_per_s"] for s in experts.values()) or math.nan
    missed = []
    if gen["ratio"] < TARGET_GENERATION:
        missed.append(f"generation {gen['ratio']:.2f}x < {TARGET_GENERATION:g}x")
    if experts and hf_s / eng_s < TARGET_LETTERS:
        missed.append(f"letter mode {hf_s / eng_s:.2f}x < {TARGET_LETTERS:g}x")
    if full:
        for name, s in experts.items():
            lo, hi = s["accuracy_difference_ci95"]
            if not lo <= 0 <= hi:
                missed.append(f"{name}: accuracy differs (95% CI [{lo:+.3f}, {hi:+.3f}])")
    return n, eng_s, hf_s, missed


def report(args, experts: dict, gen: dict, seconds: float) -> int:
    n, ll_s, hf_s, missed = verdict(experts, gen, "llamacpp", args.full)
    letter_ratio = hf_s / ll_s
    figures = {
        "cpu": cpu(),
        "threads": args.threads,
        "experts": experts,
        "generation": gen,
        "letter_ratio": letter_ratio,
        "seconds": seconds,
    }
    res = result(
        "cpu-engine",
        f"llamacpp: generation {gen['llamacpp_tokens_per_s']:.1f} tok/s ({gen['ratio']:.2f}x), letters "
        f"{fmt_rate(n / ll_s, 'q')} ({letter_ratio:.2f}x) over {len(experts)} experts, "
        f"{n // max(1, len(experts))} MMLU questions each, {args.threads} thread(s)",
        f"transformers (dtype auto: {gen['transformers_dtype']}) in the same run: "
        f"{gen['transformers_tokens_per_s']:.1f} tok/s, {fmt_rate(n / hf_s, 'q')}",
        figures,
        gen["ratio"],
        "llamacpp / transformers generation tokens/s",
        f">= {TARGET_GENERATION:g}x generation, >= {TARGET_LETTERS:g}x letters"
        + (", equal accuracy within the 95% CI" if args.full else ""),
        missed,
        args.quick,
    )
    return finish(res, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
