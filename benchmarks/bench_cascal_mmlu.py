"""CASCAL's default k-means (on each subject's top principal directions) against exact k-means on
the full rows, on real question embeddings: is the default's accuracy unchanged?

Embeddings: real MMLU test questions of all 57 subjects (rgd.embedded, `--per-subject` each),
embedded by the real MiniLM of the embedded default (384-d). Real questions give the geometry that
matters for clustering: neighbouring subjects overlap, and a subject's questions do not form tidy
blobs. What no offline machine can produce for thousands of questions is real model answers, so
those are planted, as in bench_cascal.py: the 57 MMLU subjects are dealt into 14 routing subjects
(what CASCAL is told), and each model is strong on some MMLU subjects (the latent niches CASCAL has
to find inside its routing subjects). Each of `--workloads` seeded draws (dealing, skills, answers,
a 60/40 split) is trained with rgd's default and with `kmeans_dims: 0` (exact k-means on the full
rows, the previous default), each with k-means seeds random_state 0, 1, 2.

Figures: top-1 on the test questions per run, how often exact k-means agrees with itself across
seeds and with the default, training time, and a paired bootstrap 95% CI (over test questions, 2,000
resamples) of the default's top-1 minus exact k-means' (both averaged over the seeds).
Target (non-inferiority): the CI's lower bound >= -1 point. Exits 1 when it is missed.

    .venv/bin/python benchmarks/bench_cascal_mmlu.py [--out result.json] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from bench_cascal import SEEDS, plant_answers, plant_skills
from bench_embed import SPEC
from benchlib import finish, result

from rgd.cascal import Cascal
from rgd.consensus import consensus_scores
from rgd.embedded import load_mmlu, mmlu_root
from rgd.routers import TrainingSet

MARGIN = 0.01  # non-inferiority margin on top-1 (1 point)
ROUTING_SUBJECTS, MODELS, OPTIONS, TRAIN_FRACTION = 14, 6, 4, 0.6


def embed_mmlu(per_subject: int, subjects: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """(X (n, 384) unit rows, MMLU subject per row, embedding seconds)."""
    from rgd.embed import Embedder

    names = subjects or sorted(p.name for p in mmlu_root().iterdir() if (p / "test").is_dir())
    questions, _ = load_mmlu(names, "test", per_subject, seed=0)
    embedder = Embedder(SPEC, threads=len(os.sched_getaffinity(0)))
    t0 = time.perf_counter()
    X = embedder.encode([q["question"] for q in questions])
    return X, np.array([q["category"] for q in questions]), time.perf_counter() - t0


def one_workload(X: np.ndarray, mmlu_subject: np.ndarray, seed: int) -> dict:
    """Plant skills and answers on the real embeddings (seeded), train both ways, score the test set."""
    rng = np.random.default_rng(seed)
    names, niche = np.unique(mmlu_subject, return_inverse=True)
    routing = np.array([f"group {g:02d}" for g in rng.permutation(len(names)) % ROUTING_SUBJECTS])[niche]
    acc = plant_skills(rng, len(names), MODELS)
    gold, choices, logprobs = plant_answers(rng, acc[niche], OPTIONS)
    order = rng.permutation(len(X))
    train, test = (
        np.sort(order[: int(TRAIN_FRACTION * len(X))]),
        np.sort(order[int(TRAIN_FRACTION * len(X)) :]),
    )
    consensus = consensus_scores(choices[train], logprobs[train]).scores
    data = TrainingSet(
        X[train], [f"model-{j}" for j in range(MODELS)], list(routing[train]), choices[train], consensus
    )
    correct = choices[test] == gold[test, None]
    rows = np.arange(len(test))
    out = {"n_train": len(train), "n_test": len(test)}
    for arm, params in (("default", {}), ("exact", {"kmeans_dims": 0})):
        picks, secs = [], []
        for rs in SEEDS:
            t0 = time.perf_counter()
            router = Cascal(random_state=rs, **params).fit(data)
            secs.append(time.perf_counter() - t0)
            picks.append(router.rank(X[test])[0][:, 0])
        hits = np.stack([correct[rows, p] for p in picks])  # (seeds, n_test)
        out[arm] = {
            "top1_by_seed": [round(float(h.mean()), 4) for h in hits],
            "train_s_by_seed": [round(s, 3) for s in secs],
            "seed_agreement": [
                round(float(np.mean(picks[i] == picks[j])), 4) for i, j in ((0, 1), (0, 2), (1, 2))
            ],
            "_hits": hits.mean(axis=0),
            "_picks": picks,
        }
    out["default_exact_agreement"] = [
        round(float(np.mean(a == b)), 4) for a, b in zip(out["default"]["_picks"], out["exact"]["_picks"])
    ]
    out["best_single"] = round(float(correct.mean(axis=0).max()), 4)
    out["oracle_niche"] = round(float(correct[rows, acc[niche[test]].argmax(axis=1)].mean()), 4)
    return out


def paired_ci(diff: np.ndarray, seed: int = 0, resamples: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(axis=1)
    return [round(float(q), 4) for q in np.quantile(means, [0.025, 0.975])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-subject", type=int, default=80, help="MMLU test questions per subject (57)")
    ap.add_argument("--workloads", type=int, default=3, help="seeded draws of skills and answers")
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument("--quick", action="store_true", help="10 subjects x 20 questions, one draw")
    args = ap.parse_args(argv)
    subjects = None
    if args.quick:
        subjects = sorted(p.name for p in mmlu_root().iterdir() if (p / "test").is_dir())[:10]
        args.per_subject, args.workloads = 20, 1
    X, mmlu_subject, embed_s = embed_mmlu(args.per_subject, subjects)
    runs = [one_workload(X, mmlu_subject, seed) for seed in range(args.workloads)]
    diff = np.concatenate([r["default"]["_hits"] - r["exact"]["_hits"] for r in runs])
    ci = paired_ci(diff)

    def mean(arm: str, key: str) -> float:
        return round(float(np.mean([r[arm][key] for r in runs])), 4)

    top1, top1_exact = mean("default", "top1_by_seed"), mean("exact", "top1_by_seed")
    train_s, exact_s = mean("default", "train_s_by_seed"), mean("exact", "train_s_by_seed")
    for r in runs:
        for arm in ("default", "exact"):
            del r[arm]["_hits"], r[arm]["_picks"]
    fig = {
        "questions": len(X),
        "mmlu_subjects": len(np.unique(mmlu_subject)),
        "dim": int(X.shape[1]),
        "embed_s": round(embed_s, 1),
        "workloads": runs,
        "top1": top1,
        "top1_exact": top1_exact,
        "top1_diff_ci95": ci,
        "exact_seed_agreement": round(min(min(r["exact"]["seed_agreement"]) for r in runs), 4),
        "default_exact_agreement": round(min(min(r["default_exact_agreement"]) for r in runs), 4),
        "train_s": train_s,
        "exact_train_s": exact_s,
        "margin": MARGIN,
    }
    missed = []
    if ci[0] < -MARGIN:
        missed.append(f"default top-1 minus exact k-means': 95% CI {ci} reaches below -{MARGIN:g}")
    for k, v in fig.items():
        print(f"{k:>24}: {v}")
    res = result(
        "cascal-mmlu",
        f"default top-1 {top1:.3f} (exact k-means {top1_exact:.3f}; paired 95% CI of the difference "
        f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}] points), train {train_s:.2f} s (exact {exact_s:.2f} s); "
        f"same pick {fig['default_exact_agreement']:.0%}, exact against itself under another seed "
        f"{fig['exact_seed_agreement']:.0%} ({len(X):,} real MMLU questions, MiniLM {X.shape[1]}-d, "
        f"{args.workloads} planted draws x {len(SEEDS)} seeds)",
        "exact k-means on the full rows (kmeans_dims: 0, the previous default), same questions and seeds",
        fig,
        round(top1 / top1_exact, 4),
        "default / exact top-1, mean over draws and seeds",
        f"95% CI of the top-1 difference above -{MARGIN * 100:g} point (non-inferiority)",
        missed,
        args.quick,
    )
    return finish(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
