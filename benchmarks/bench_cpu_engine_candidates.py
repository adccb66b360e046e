"""CPU engine candidates (issue 22, §1): OpenVINO and ONNX Runtime GenAI against the transformers
reference, in the same run, on the embedded default's models and prompts.

The engine the default uses (llamacpp) is measured by bench_cpu_engine.py. The candidates here
need packages that clash with the project's own (optimum-intel pins transformers below 5), so each
runs in a virtual environment of its own, hosted by engines/host.py and fed the token ids that the
transformers backend makes of each prompt; only the engine's own seconds are timed. Figures per
expert of the `four` pool: questions/s against transformers in the same run (interleaved), the
share of the same letter picked, each side's accuracy and the paired 95% CI of the difference;
and generation tokens/s of the strong generator, batched as rgd.generate runs it.

    python3.11 -m venv /tmp/venv-ov && /tmp/venv-ov/bin/pip install -r benchmarks/engines/openvino.txt
    .venv/bin/python benchmarks/bench_cpu_engine_candidates.py --engine openvino=/tmp/venv-ov/bin/python \
        [--full] [--threads 1] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from bench_cpu_engine import CONFIG, TARGET_GENERATION, TARGET_LETTERS, cpu, mmlu, model_dir, verdict
from benchlib import ROOT, finish, median, paired, result

from rgd.backends.base import GENERATOR_SAMPLING, Sampling, adds_special_tokens
from rgd.backends.hf import HFBackend
from rgd.generate import build_prompt as generator_prompt
from rgd.generate import load_descriptions
from rgd.metrics import paired_bootstrap
from rgd.prompts import build_prompt

HOST = Path(__file__).parent / "engines" / "host.py"
MODULES = {"openvino": "openvino_engine", "ortgenai": "ortgenai_engine"}


class Hosted:
    """A candidate engine in its own venv's process: one JSON request and reply per line."""

    def __init__(self, engine: str, python: str, folder: Path, threads: int):
        self.proc = subprocess.Popen(
            [python, str(HOST), MODULES[engine], str(folder), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{HOST.name}: the engine process ended (exit {self.proc.wait()})")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def token_ids(hf: HFBackend, prompts: list[dict]) -> list[list[int]]:
    """Each prompt's ids exactly as the transformers backend feeds them (unpadded)."""
    out = []
    for p in prompts:
        text = hf.render(p)
        enc = hf.tok(
            text,
            truncation=True,
            max_length=hf.max_prompt_tokens,
            add_special_tokens=adds_special_tokens(hf.tok, [text]),
        )
        out.append(enc["input_ids"])
    return out


def letters(engine, python, expert, cache, qs, keys, threads, repeats) -> dict:
    e = CONFIG["experts"][expert]
    folder = model_dir(cache, e["model"])
    batch = e.get("batch_size", 4)
    prompts = [build_prompt(q, e["style"], "letter") for q in qs]
    n_opt = [len(q.options) for q in qs]
    hf = HFBackend(str(folder), threads=threads, batch_size=batch, dtype="auto")
    host = Hosted(engine, python, folder, threads)
    req = {"op": "letters", "prompts": token_ids(hf, prompts), "n_options": n_opt, "batch": batch}
    req["letter_ids"] = hf._letter_ids
    picks, cand_seconds = {}, []

    def cand():
        got = host.ask(**req)
        cand_seconds.append(got["seconds"])
        picks["candidate"] = np.array([int(np.argmax(lp)) for lp in got["letters"]])

    def ref():
        picks["transformers"] = np.array([int(np.argmax(lp)) for lp, _ in hf.score_letters(prompts, n_opt)])

    hf.score_letters(prompts[:2], n_opt[:2])  # warm-up, as the candidate's first call below
    host.ask(**{**req, "prompts": req["prompts"][:2], "n_options": n_opt[:2]})
    _, t_hf = paired(cand, ref, repeats)
    right = {k: (v == np.array(keys)).astype(float) for k, v in picks.items()}
    lo, hi = paired_bootstrap(right["candidate"], right["transformers"][:, None], seed=0).ci
    host.close()
    return {
        "model": e["model"],
        "style": e["style"],
        "batch_size": batch,
        "questions": len(qs),
        "engine": host.hello["name"],
        "weights": host.hello["weights"],
        "load_seconds": host.hello["load_seconds"],
        "candidate_questions_per_s": len(qs) / median(cand_seconds),
        "transformers_questions_per_s": len(qs) / median(t_hf),
        "transformers_dtype": hf.dtype,
        "ratio": median(t_hf) / median(cand_seconds),
        "same_pick": float(np.mean(picks["candidate"] == picks["transformers"])),
        "accuracy_candidate": float(right["candidate"].mean()),
        "accuracy_transformers": float(right["transformers"].mean()),
        "accuracy_difference_ci95": [lo, hi],
    }


def generation(engine, python, cache, name, threads, n_prompts, max_new, repeats) -> dict:
    g = CONFIG["generators"][name]
    folder = model_dir(cache, g["model"])
    desc = load_descriptions(ROOT / CONFIG["benchmarks"]["mmlu"]["descriptions"])
    prompts = [generator_prompt(d, g["style"]) for d in list(desc.values()) * n_prompts][:n_prompts]
    sampling = Sampling.from_config({**g["sampling"], "max_new_tokens": max_new}, GENERATOR_SAMPLING)
    hf = HFBackend(str(folder), threads=threads, batch_size=g["batch_size"], dtype="auto")
    host = Hosted(engine, python, folder, threads)
    req = {
        "op": "generate",
        "prompts": token_ids(hf, prompts),
        "batch": g["batch_size"],
        "max_new_tokens": max_new,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": 0,
    }
    got, ref = [], []

    def cand():
        got.append(host.ask(**req))

    def base():
        ref.append(sum(r.n_output_tokens for r in hf.generate(prompts, sampling)))

    _, t_hf = paired(cand, base, repeats)
    host.close()
    c = median([r["tokens"] / r["seconds"] for r in got])
    h = median([n / t for n, t in zip(ref, t_hf)])
    return {
        "model": g["model"],
        "engine": host.hello["name"],
        "weights": host.hello["weights"],
        "prompts": n_prompts,
        "batch_size": g["batch_size"],
        "max_new_tokens": max_new,
        "candidate_tokens_per_s": c,
        "transformers_tokens_per_s": h,
        "transformers_dtype": hf.dtype,
        "ratio": c / h,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", required=True, help="NAME=PYTHON: openvino or ortgenai, and its venv python")
    ap.add_argument("--per-subject", type=int, default=3, help="MMLU questions per subject (7 subjects)")
    ap.add_argument("--full", action="store_true", help="all 315 questions of the default, one repeat")
    ap.add_argument("--experts", nargs="*", default=CONFIG["pools"]["four"])
    ap.add_argument("--threads", type=int, default=1, help="threads per engine (a workflow job uses 1)")
    ap.add_argument("--generator", default="qwen")
    ap.add_argument("--gen-prompts", type=int, default=14)
    ap.add_argument("--gen-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model-cache", type=Path, default=ROOT / "resources" / "models")
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    args = ap.parse_args(argv)
    engine, _, python = args.engine.partition("=")
    if engine not in MODULES or not python:
        ap.error(f"--engine: NAME=PYTHON with NAME one of {', '.join(MODULES)}")
    if not shutil.which(python):  # before any model loads
        ap.error(f"--engine {engine}={python}: no such python (its venv: benchmarks/engines/{engine}.txt)")
    if args.full:
        args.per_subject, args.repeats = 45, 1
    t0 = time.perf_counter()
    qs, keys = mmlu(args.per_subject)
    experts = {}
    for name in args.experts:
        s = letters(engine, python, name, args.model_cache, qs, keys, args.threads, args.repeats)
        experts[name] = s
        lo, hi = s["accuracy_difference_ci95"]
        print(
            f"{name:>16}: {engine} {s['candidate_questions_per_s']:.2f} q/s, transformers "
            f"({s['transformers_dtype']}) {s['transformers_questions_per_s']:.2f} q/s, {s['ratio']:.2f}x; "
            f"same pick {s['same_pick']:.1%}; accuracy {s['accuracy_candidate']:.3f} vs "
            f"{s['accuracy_transformers']:.3f} (95% CI of the difference [{lo:+.3f}, {hi:+.3f}])",
            flush=True,
        )
    gen = generation(
        engine,
        python,
        args.model_cache,
        args.generator,
        args.threads,
        args.gen_prompts,
        args.gen_tokens,
        args.repeats,
    )
    print(
        f"generation ({gen['model']}, batch {gen['batch_size']}): {engine} "
        f"{gen['candidate_tokens_per_s']:.1f} tok/s, transformers ({gen['transformers_dtype']}) "
        f"{gen['transformers_tokens_per_s']:.1f} tok/s, {gen['ratio']:.2f}x",
        flush=True,
    )
    n, c_s, h_s, missed = verdict(experts, gen, "candidate", args.full)
    letter_ratio = h_s / c_s
    figures = {
        "cpu": cpu(),
        "threads": args.threads,
        "experts": experts,
        "generation": gen,
        "letter_ratio": letter_ratio,
        "seconds": time.perf_counter() - t0,
    }
    res = result(
        f"cpu-engine-{engine}",
        f"{gen['engine']}: generation {gen['candidate_tokens_per_s']:.1f} tok/s ({gen['ratio']:.2f}x), "
        f"letters {n / c_s:.2f} q/s ({letter_ratio:.2f}x), {args.threads} thread(s)",
        f"transformers ({gen['transformers_dtype']}) in the same run: "
        f"{gen['transformers_tokens_per_s']:.1f} tok/s, {n / h_s:.2f} q/s",
        figures,
        gen["ratio"],
        f"{engine} / transformers generation tokens/s",
        f">= {TARGET_GENERATION:g}x generation, >= {TARGET_LETTERS:g}x letters"
        + (", equal accuracy within the 95% CI" if args.full else ""),
        missed,
    )
    return finish(res, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
