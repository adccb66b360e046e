"""Throughput of the vectorised consensus step against a plain per-question Python loop.

Synthetic pool: 12 models x 100,000 questions, 10 options, ~3 % abstentions, ~1 % missing
confidences. The per-model statistics (median, MAD) are computed once with numpy by either
implementation, so the gated comparison is the per-question formula given those statistics: the
loop runs it on a subsample (default 5,000 questions) and its rate is scaled to the full size. Both
are checked to agree on the subsample. End-to-end figures (statistics included) are printed too.
Exits 1 if the per-question part is not at least --min-speedup times faster vectorised.
--out writes the JSON shape of benchmarks/benchlib.py; --quick shrinks the sizes (harness test).

    python benchmarks/bench_consensus.py [--out results.json] [--quick]

numpy on the CPU: on a GPU node it runs unchanged (see benchmarks/README.md for the GPU comparison).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from benchlib import finish as finish_result
from benchlib import fmt_rate, result

from rgd.consensus import ConsensusConfig, consensus_scores, robust_stats


def synthetic(n_q: int, n_m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 10, size=n_q)
    skill = rng.uniform(0.3, 0.8, size=n_m)
    right = rng.random((n_q, n_m)) < skill
    choices = np.where(right, gold[:, None], rng.integers(0, 10, size=(n_q, n_m)))
    choices[rng.random((n_q, n_m)) < 0.03] = -1
    logprobs = rng.normal(-0.4, 0.15, size=(n_q, n_m)) + 0.2 * right
    logprobs[rng.random((n_q, n_m)) < 0.01] = np.nan
    return choices, logprobs


def loop_scores(
    choices: list[list[int]],
    logprobs: list[list[float]],
    median: list[float],
    sigma: list[float],
    cfg: ConsensusConfig,
) -> list[list[float]]:
    """The docs/METHOD.md §6 formula written the obvious way, one question at a time."""
    out = []
    for ch, lp in zip(choices, logprobs):
        raw = [0.0] * cfg.n_classes
        for m, (c, x) in enumerate(zip(ch, lp)):
            if c < 0:
                continue
            z = (x - median[m]) / sigma[m] if math.isfinite(x) else 0.0
            w = 1.0 / (1.0 + math.exp(-cfg.scale * z))
            raw[c] += min(max(w, cfg.clip_low), cfg.clip_high)
        top = max(raw)
        e = [math.exp((r - top) / cfg.tau) for r in raw]
        total = sum(e)
        out.append([e[c] / total if c >= 0 else 0.0 for c in ch])
    return out


def best_time(fn, repeats: int):
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=100_000)
    ap.add_argument("--models", type=int, default=12)
    ap.add_argument("--loop-questions", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=5, help="each timing is the best of this many runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-speedup", type=float, default=20.0)
    ap.add_argument("--out", help="write the result as JSON here")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to test the harness")
    args = ap.parse_args(argv)
    if args.quick:
        args.questions, args.loop_questions, args.repeats = 2_000, 500, 2

    cfg = ConsensusConfig()
    choices, logprobs = synthetic(args.questions, args.models, args.seed)
    n_records = choices.size

    # Per-model statistics are computed once, with the same numpy code, by either implementation;
    # the like-for-like comparison is the per-question part, given those statistics.
    stats_s, stats = best_time(lambda: robust_stats(logprobs, cfg.mad_const), args.repeats)
    vec_s, res = best_time(lambda: consensus_scores(choices, logprobs, cfg, stats), args.repeats)
    full_s, full = best_time(lambda: consensus_scores(choices, logprobs, cfg), args.repeats)
    assert np.array_equal(full.scores, res.scores)

    n_loop = min(args.loop_questions, args.questions)
    sub_c, sub_lp = choices[:n_loop].tolist(), logprobs[:n_loop].tolist()
    med, sig = stats.median.tolist(), stats.sigma.tolist()
    loop_s, looped = best_time(lambda: loop_scores(sub_c, sub_lp, med, sig, cfg), max(1, args.repeats // 2))
    max_abs_diff = float(np.max(np.abs(np.array(looped) - res.scores[:n_loop])))

    vec_rate = n_records / vec_s
    loop_rate = n_loop * args.models / loop_s
    speedup = vec_rate / loop_rate
    loop_full_s = stats_s + n_records / loop_rate
    figures = {
        "questions": args.questions,
        "models": args.models,
        "records": n_records,
        "stats_seconds": stats_s,
        "vectorised_seconds": vec_s,
        "vectorised_records_per_s": vec_rate,
        "loop_questions": n_loop,
        "loop_seconds": loop_s,
        "loop_records_per_s": loop_rate,
        "speedup": speedup,
        "end_to_end_vectorised_seconds": full_s,
        "end_to_end_loop_seconds_scaled": loop_full_s,
        "end_to_end_speedup": loop_full_s / full_s,
        "max_abs_diff": max_abs_diff,
        "min_speedup": args.min_speedup,
    }
    print(
        f"vectorised: {vec_rate:,.0f} records/s ({vec_s:.3f} s for {n_records:,} records, statistics given)"
    )
    print(f"loop:       {loop_rate:,.0f} records/s ({loop_s:.3f} s for {n_loop * args.models:,} records)")
    print(f"speedup:    {speedup:.1f}x   max |difference| on the subsample: {max_abs_diff:.2e}")
    print(
        f"end to end with the per-model statistics ({stats_s:.3f} s): vectorised {full_s:.3f} s, "
        f"loop {loop_full_s:.3f} s (scaled), {loop_full_s / full_s:.1f}x"
    )
    missed = []
    if max_abs_diff > 1e-9:
        missed.append(f"vectorised and loop scores disagree (max |difference| {max_abs_diff:.2e})")
    if speedup < args.min_speedup:
        missed.append(f"speedup {speedup:.1f}x is below {args.min_speedup}x")
    res = result(
        "consensus",
        f"{fmt_rate(vec_rate, 'records')} ({args.models} models x {args.questions:,} questions)",
        f"per-question Python loop: {fmt_rate(loop_rate, 'records')}",
        figures,
        speedup,
        "vectorised / loop records/s",
        f">= {args.min_speedup:g}x; scores agree to 1e-9",
        missed,
        args.quick,
    )
    return finish_result(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
