"""Throughput of rgd's vLLM path against raw vLLM on the same prompts, in one engine.

  rgd:  rgd.respond.respond() with the vLLM backend: prompts built and rendered, content keys,
        every request in one engine call, records appended to a RecordCache in chunks (fsync).
  raw:  what a plain vLLM script does: LLM.generate(rendered prompt strings, SamplingParams)
        with vLLM tokenising and detokenising; the same sampling settings and per-request seeds,
        so both produce the same tokens (checked) and the comparison is time for the same work.

Modes: `cot` (sampled reasoning, decode-bound) and `letter` (one next-token step, prefill-bound;
raw asks for the top-20 logprobs, rgd for the option letters' exact logprobs). Each mode warms
both paths up, then runs raw and rgd back to back `--reps` times, alternating which goes first,
the prefix cache reset before every run. The ratio is the median over those pairs of rgd's
tokens/s over raw's: a pair shares the machine's state, which matters on shared machines.
Exits 1 if it is below --min-ratio (issue 8: >= 0.9) in any mode.

Run it in the vLLM venv (CPU: `make venv-vllm`; clusters: envs/vllm.yaml), with questions from
`rgd embedded-data` or any workflow output, e.g.:

    .venv/bin/rgd embedded-data --subjects high_school_biology marketing --per-subject 32 \\
        --out-questions /tmp/q.jsonl --out-keys /tmp/k.jsonl
    .venv-vllm/bin/python benchmarks/bench_vllm.py --model-dir resources/models/smollm2-135m \\
        --questions /tmp/q.jsonl [--n 32] [--max-new-tokens 64] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", required=True, help="a materialised model directory (rgd materialise)")
    p.add_argument("--questions", required=True, help="questions JSONL")
    p.add_argument("--n", type=int, default=32, help="questions in cot mode (letter mode: twice as many)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--style", default="chat", choices=["chat", "plain", "fewshot"])
    p.add_argument("--modes", nargs="+", default=["cot", "letter"], choices=["cot", "letter"])
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--chunk", type=int, default=16, help="rgd's cache flush chunk (the expert's batch_size)")
    p.add_argument(
        "--engine", type=json.loads, default={}, help='engine spec JSON, e.g. {"dtype": "bfloat16"}'
    )
    p.add_argument("--min-ratio", type=float, default=0.9)
    p.add_argument("--out", help="write the figures as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    from vllm import SamplingParams

    from rgd import backends
    from rgd.backends.base import Sampling, request_seed
    from rgd.cache import RecordCache, content_key
    from rgd.io import read_json, write_json
    from rgd.models import MANIFEST
    from rgd.prompts import build_prompt
    from rgd.records import read_questions
    from rgd.respond import Expert, respond

    all_q = read_questions(a.questions)
    manifest = Path(a.model_dir) / MANIFEST
    identity = read_json(manifest) if manifest.exists() else {"model": str(a.model_dir)}
    cot = Expert(
        "bench-cot",
        "bench",
        a.style,
        "cot",
        batch_size=a.chunk,
        sampling=Sampling(temperature=0.7, top_p=1.0, max_new_tokens=a.max_new_tokens, seed=0),
    )
    letter = Expert("bench-letter", "bench", a.style, "letter", batch_size=a.chunk)
    backend = backends.make("vllm", a.model_dir, replace(cot.backend_settings(), engine=a.engine))
    llm = backend.llm
    print(
        f"engine: vLLM {backend.version} on {backend.device}, load {backend.load_seconds:.1f} s", flush=True
    )
    work = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    figures: dict = {
        "vllm": backend.version,
        "device": backend.device,
        "load_seconds": round(backend.load_seconds, 2),
        "engine": backend.describe(),
        "modes": {},
    }

    def rgd_run(expert, qs, tag):
        cache = RecordCache(work / f"{tag}.jsonl")
        t0 = time.perf_counter()
        recs, _ = respond(qs, expert, backend, cache, identity, log=lambda m: None)
        return (
            time.perf_counter() - t0,
            sum(r.n_prompt_tokens for r in recs),
            sum(r.n_output_tokens for r in recs),
        )

    def raw_run(texts, params, mode):
        t0 = time.perf_counter()
        outs = llm.generate(texts, params, use_tqdm=False)
        seconds = time.perf_counter() - t0
        n_out = 0
        for o in outs if mode == "cot" else ():  # letter mode: no output text, as in rgd's records
            toks = o.outputs[0].token_ids  # a final end-of-sequence token is not output text either
            n_out += len(toks) - int(
                bool(toks) and o.outputs[0].finish_reason == "stop" and o.outputs[0].stop_reason is None
            )
        return seconds, sum(len(o.prompt_token_ids) for o in outs), n_out

    ok = True
    for mode in a.modes:
        expert = cot if mode == "cot" else letter
        qs = all_q[: a.n if mode == "cot" else 2 * a.n]
        texts = [backend.render(build_prompt(q, expert.style, mode)) for q in qs]
        if mode == "cot":  # the seeds rgd gives each request, so both paths sample the same tokens
            keys = [content_key(identity, expert.settings(), t, backend.cache_identity) for t in texts]
            params = [
                SamplingParams(
                    temperature=0.7, top_p=1.0, max_tokens=a.max_new_tokens, seed=request_seed(k), logprobs=0
                )
                for k in keys
            ]
        else:
            params = [SamplingParams(temperature=0.0, max_tokens=1, logprobs=20) for _ in texts]
        raw_run(texts[:8], params[:8], mode)  # warm-up (rgd's also imports math-verify, for answers)
        rgd_run(expert, qs[:8], f"{mode}-warm-up")
        runs = {"raw": [], "rgd": []}
        for rep in range(a.reps):  # a pair alternates which path goes first (ABBA): no order bias
            pair = [
                ("raw", lambda: raw_run(texts, params, mode)),
                ("rgd", lambda: rgd_run(expert, qs, f"{mode}-{rep}")),
            ]
            for path, fn in pair if rep % 2 == 0 else pair[::-1]:
                llm.reset_prefix_cache()
                runs[path].append(fn())
        rate = {k: [(p + o) / s for s, p, o in v] for k, v in runs.items()}
        out_rate = {k: [o / s for s, p, o in v] for k, v in runs.items()}
        ratio = float(np.median([g / r for g, r in zip(rate["rgd"], rate["raw"])]))
        same = {r[1:] for r in runs["raw"] + runs["rgd"]}  # (prompt, output) tokens of every run
        ((n_p, n_o),) = same if len(same) == 1 else [(None, None)]
        med = {k: float(np.median(v)) for k, v in rate.items()}
        figures["modes"][mode] = {
            "questions": len(qs),
            "prompt_tokens": n_p,
            "output_tokens": n_o,
            "same_tokens": len(same) == 1,
            "seconds": {k: [round(r[0], 3) for r in v] for k, v in runs.items()},
            "tokens_per_second": {k: round(v, 1) for k, v in med.items()},
            "output_tokens_per_second": {k: round(float(np.median(v)), 1) for k, v in out_rate.items()},
            "ratio": round(ratio, 3),
        }
        print(
            f"{mode:6s} {len(qs)} prompts, {n_p} prompt + {n_o} output tokens in every run: "
            f"raw {med['raw']:.1f} tok/s, rgd {med['rgd']:.1f} tok/s (medians of {a.reps}), "
            f"rgd/raw {ratio:.3f} (median of pairs)",
            flush=True,
        )
        ok &= len(same) == 1  # otherwise the two paths did not do the same work
        ok &= ratio >= a.min_ratio
    if a.out:
        write_json(a.out, figures)
    if not ok:
        print(
            f"FAIL: rgd below {a.min_ratio} x raw vLLM tokens/s, or the two paths made different tokens",
            file=sys.stderr,
        )
    return 0 if ok else 1


if __name__ == "__main__":  # required: vLLM's engine core is a spawned process
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
