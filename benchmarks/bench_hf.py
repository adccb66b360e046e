"""transformers backend, letter mode: questions/s batched against one question at a time.

Model: the real SmolLM2-135M-Instruct of the embedded default, materialised into the project's
model cache (resources/models/smollm2-135m) if it is not there yet. Questions: real MMLU
questions of the default's subjects, under each prompt style (chat, plain, fewshot). Both runs
use one HFBackend (same weights, same threads) and the plan of rgd.respond (longest prompts
first); only batch_size differs. Runs are interleaved; per style the ratio is the median of the
per-repeat ratios, and the headline ratio is the total time one at a time over the total time
batched (per-style medians). Batched and one-at-a-time scores must agree (1e-3).
Target: batched >= 2x one at a time.

What batching can gain is measured in the same run, so that a miss can be told apart from a
slow backend: `batch_gain` is how much cheaper a row is inside a batch of identical rows than
alone (the device's batching headroom: 1.1-1.2x measured on this project's CPU, where a forward
pass costs per token; on a GPU it should be several x, not measured yet), and `sharing_ceiling`
is the ratio the tokens shared within the backend's batches allow at a per-token cost.
`ceiling` is the better of the two strategies' bounds
(padded rows: batch_gain x padding efficiency; shared prefix: sharing_ceiling).

    .venv/bin/python benchmarks/bench_hf.py [--out result.json] [--quick] [--batch-size 8] [--threads 1]
    python benchmarks/bench_hf.py --device cuda      # on a GPU node (padded batches there)

See docs/BENCHMARKS.md for the figures on a CPU; on a GPU node the comparison that matters for
the workflow is bench_vllm.py (benchmarks/README.md, "On a GPU node").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import yaml
from benchlib import ROOT, finish, fmt_rate, median, paired, result

from rgd.backends.hf import HFBackend, prefix_to_share
from rgd.embedded import load_mmlu
from rgd.models import MANIFEST, materialise
from rgd.prompts import build_prompt
from rgd.records import Question

MODEL = "smollm2-135m"
TARGET = 2.0


def model_dir(cache: Path) -> Path:
    """The default's SmolLM2 in the model cache, built from its registry entry if absent."""
    out = cache / MODEL
    if not (out / MANIFEST).exists():
        cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        print(f"materialising {MODEL} into {out} (once)", flush=True)
        materialise(MODEL, cfg["models"][MODEL]["source"], out)
    return out


def questions(per_subject: int) -> list[Question]:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    subjects = cfg["benchmarks"]["mmlu"]["source"]["subjects"]
    qs, _ = load_mmlu(subjects, "test", per_subject, seed=0)
    return [Question(q["id"], q["category"], q["question"], tuple(q["options"])) for q in qs]


def token_rows(backend: HFBackend, prompts: list[dict]) -> list[list[int]]:
    """Each prompt's token ids, as score_letters encodes them."""
    texts = [backend.render(p) for p in prompts]
    return [r.tolist() for r in (row[m.bool()] for row, m in zip(*backend._encode(texts)))]


def sharing_ceiling(rows: list[list[int]], batch: int) -> float:
    """Prompt tokens over the tokens shared-prefix batches run (the backend's rule, rows in the
    order given): the best batched/one-at-a-time ratio when a forward pass costs per token."""
    run = 0
    for start in range(0, len(rows), batch):
        b = rows[start : start + batch]
        shared = prefix_to_share(b)
        run += shared + sum(len(r) - shared for r in b)
    return sum(map(len, rows)) / run


def padding_efficiency(rows: list[list[int]], batch: int) -> float:
    """Real tokens over padded tokens when the rows run as left-padded batches."""
    batches = [rows[s : s + batch] for s in range(0, len(rows), batch)]
    padded = sum(len(b) * max(map(len, b)) for b in batches)
    return sum(map(len, rows)) / padded


def batch_gain(backend: HFBackend, row: list[int], batch: int, repeats: int) -> float:
    """How much cheaper a row is in a batch of `batch` identical rows than alone: the device's
    headroom for batching work that is not shared (no padding, no shared prefix involved)."""
    import torch

    ids = torch.tensor([row], device=backend.device)

    def forward(x):
        def fn():
            with torch.inference_mode():
                backend.model(input_ids=x, logits_to_keep=1)
            if backend.device == "cuda":
                torch.cuda.synchronize()

        return fn

    one, many = forward(ids), forward(ids.repeat(batch, 1))
    one()
    many()  # warm-up
    t_many, t_one = paired(many, lambda: [one() for _ in range(batch)], repeats)
    return median([b / a for a, b in zip(t_many, t_one)])


def bench_style(backend: HFBackend, qs: list[Question], style: str, batch: int, repeats: int) -> dict:
    prompts = [build_prompt(q, style, "letter") for q in qs]
    rendered = [backend.render(p) for p in prompts]
    order = sorted(range(len(qs)), key=lambda i: (-len(rendered[i]), i))  # rgd.respond's plan
    prompts = [prompts[i] for i in order]
    n_opt = [len(qs[i].options) for i in order]
    runs = {}

    def at(size):
        def fn():
            backend.batch_size = size
            runs[size] = backend.score_letters(prompts, n_opt)

        return fn

    backend.score_letters(prompts[:4], n_opt[:4])  # warm-up
    t_batched, t_one = paired(at(batch), at(1), repeats)  # `runs` keeps each size's last scores
    diff = max(abs(a - b) for (x, _), (y, _) in zip(runs[batch], runs[1]) for a, b in zip(x, y))
    same = sum(int(np.argmax(x) == np.argmax(y)) for (x, _), (y, _) in zip(runs[batch], runs[1]))
    rows = token_rows(backend, prompts)
    n = len(qs)
    return {
        "questions": n,
        "sharing_ceiling": sharing_ceiling(rows, batch),
        "padding_efficiency": padding_efficiency(rows, batch),
        "mean_prompt_tokens": float(np.mean([t for _, t in runs[1]])),
        "shared_prefix_tokens": len(os.path.commonprefix(rows)),  # by every prompt of the style
        "batched_seconds": t_batched,
        "one_seconds": t_one,
        "batched_questions_per_s": n / median(t_batched),
        "one_questions_per_s": n / median(t_one),
        "ratio": median([b / a for a, b in zip(t_batched, t_one)]),
        "max_abs_diff": float(diff),
        "same_top_letter": same,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-subject", type=int, default=4, help="MMLU questions per subject (6 subjects)")
    ap.add_argument("--styles", nargs="+", default=["chat", "plain", "fewshot"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (the workflow's respond rule uses 1)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto", help="auto (a CUDA GPU if torch sees one), cpu or cuda")
    ap.add_argument(
        "--letter-batching",
        choices=["padded", "shared-prefix"],
        help="the backend's batching strategy (default: padded on a GPU, shared-prefix on a CPU)",
    )
    ap.add_argument("--model-cache", type=Path, default=ROOT / "resources" / "models")
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument("--quick", action="store_true", help="a few questions, one style, to test the harness")
    args = ap.parse_args(argv)
    if args.quick:
        args.per_subject, args.styles, args.repeats, args.batch_size = 1, ["fewshot"], 1, 6

    backend = HFBackend(
        str(model_dir(args.model_cache)),
        threads=args.threads,
        batch_size=1,
        device=args.device,
        letter_batching=args.letter_batching,
    )
    qs = questions(args.per_subject)
    rows = token_rows(backend, [build_prompt(q, args.styles[0], "letter") for q in qs])
    typical = sorted(rows, key=len)[len(rows) // 2]  # a prompt of median length
    gain = batch_gain(backend, typical, args.batch_size, args.repeats)
    print(
        f"batch gain on {backend.device}: a row costs {gain:.2f}x less in a batch of {args.batch_size} "
        f"identical {len(typical)}-token rows than alone",
        flush=True,
    )
    styles = {}
    for style in args.styles:
        s = styles[style] = bench_style(backend, qs, style, args.batch_size, args.repeats)
        print(
            f"{style:>8}: batched {s['batched_questions_per_s']:.2f} q/s, "
            f"one at a time {s['one_questions_per_s']:.2f} q/s, ratio {s['ratio']:.2f} "
            f"(mean {s['mean_prompt_tokens']:.0f} prompt tokens, {s['shared_prefix_tokens']} shared; "
            f"per-token ceiling {s['sharing_ceiling']:.2f}x), "
            f"max |difference| {s['max_abs_diff']:.1e}",
            flush=True,
        )
    n = sum(s["questions"] for s in styles.values())
    batched_s = sum(median(s["batched_seconds"]) for s in styles.values())
    one_s = sum(median(s["one_seconds"]) for s in styles.values())
    ratio = one_s / batched_s

    def bound(key):  # a per-style bound, combined as the headline ratio is (weights: one-at-a-time time)
        return one_s / sum(median(s["one_seconds"]) / s[key] for s in styles.values())

    shared_bound = bound("sharing_ceiling")
    padded_bound = gain * bound("padding_efficiency")
    ceiling = max(shared_bound, padded_bound)
    figures = {
        "model": MODEL,
        "device": backend.device,
        "letter_batching": backend.letter_batching,
        "batch_gain": gain,
        "typical_prompt_tokens": len(typical),
        "ceiling": ceiling,
        "ceiling_shared_prefix": shared_bound,
        "ceiling_padded": padded_bound,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "questions_per_style": len(qs),
        "styles": styles,
        "batched_questions_per_s": n / batched_s,
        "one_questions_per_s": n / one_s,
    }
    missed = []
    if ratio < TARGET:
        missed.append(
            f"batched/one-at-a-time {ratio:.2f}x < {TARGET:g}x (this device's ceiling for "
            f"this workload: {ceiling:.2f}x)"
        )
    for style, s in styles.items():
        if s["max_abs_diff"] > 1e-3:
            missed.append(f"{style}: batched scores differ from one-at-a-time by {s['max_abs_diff']:.1e}")
    per_style = ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in styles.items())
    res = result(
        "hf",
        f"{fmt_rate(n / batched_s, 'q')} letter mode, batch {args.batch_size} (SmolLM2-135M, {len(qs)} MMLU "
        f"questions x {'/'.join(styles)}, {backend.device}, {args.threads} "
        f"thread{'s' if args.threads > 1 else ''}, "
        f"{backend.letter_batching}; {per_style}); measured ceiling {ceiling:.2f}x (batch gain "
        f"{gain:.2f}x, shared tokens {shared_bound:.2f}x)",
        f"one question at a time: {fmt_rate(n / one_s, 'q')}",
        figures,
        ratio,
        "batched / one-at-a-time q/s",
        f">= {TARGET:g}x; same scores (1e-3)",
        missed,
        args.quick,
    )
    return finish(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
