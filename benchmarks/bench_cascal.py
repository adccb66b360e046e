"""CASCAL at paper scale on synthetic data: training and routing against the original's way of
computing them, in the same run.

Workload (planted niches): 6 models, 30,000 training questions over 14 subjects (3 latent skill
clusters each), 4,096-dim float32 embeddings, 12,000 test questions. Each model is strong on a few
clusters; wrong answers spread over 9 distractor letters; confidences are higher when correct;
consensus scores come from rgd.consensus.

Same-run baselines:
* training and routing: benchmarks/cascal_reference.py, docs/METHOD.md §8-§9 written as the original
  computes it (scikit-learn's float64 KMeans and full-matrix silhouette_score for every k, no thread
  limits, per-question loops). `Cascal(compat="original")` must pick the same models on every test
  question (and build the same clusters); its training is the "original settings" ratio.
  `Cascal()` (rgd's defaults) is the "default settings" ratio.
* the previous default, exact k-means on the full rows (`kmeans_dims=0`): rgd's default (k-means
  on each subject's top 64 principal directions) must be at least as accurate (top-1 on the test
  questions, whose answer keys the generator knows). How often the two pick the same model is
  reported beside how often exact k-means agrees with itself under another seed (random_state 1, 2).
* routing: the vectorised §9 against the per-question loop of §9 over the same tables (1,000
  questions; scores must agree to 1e-5).

Exits 1 when a target is missed: original settings >= 5x the baseline's training time with identical
picks, default settings >= 20x and top-1 >= exact k-means', routing >= 20,000 questions/s, peak
memory < 4 GiB.

    .venv/bin/python benchmarks/bench_cascal.py [--out result.json] [--quick] [--jobs N]

numpy/scikit-learn on the CPU: on a GPU node it runs unchanged (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass

import cascal_reference as reference
import numpy as np
from benchlib import finish as finish_result
from benchlib import fmt_rate, result

from rgd import metrics
from rgd.backends.base import usable_cpus
from rgd.cascal import Cascal, clustering
from rgd.consensus import consensus_scores
from rgd.routers import TrainingSet

GIB = 1024**3
SEEDS = (0, 1, 2)  # k-means random_state of the seed-agreement fits
TARGETS = {"original_speedup": 5.0, "default_speedup": 20.0, "route_qps": 20_000.0, "peak_gib": 4.0}


@dataclass
class Split:
    X: np.ndarray  # (n, d) float32
    subjects: np.ndarray  # (n,) str
    cluster: np.ndarray  # (n,) latent cluster
    gold: np.ndarray
    choices: np.ndarray
    logprobs: np.ndarray


class Workload:
    """Seeded generator: latent clusters on the unit sphere and per-(model, cluster) accuracies."""

    def __init__(self, n_subjects=14, per_subject=3, n_models=6, dim=4096, n_options=10, seed=0):
        self.rng = np.random.default_rng(seed)
        self.S, self.dim, self.m, self.n_options = n_subjects, dim, n_models, n_options
        k = n_subjects * per_subject
        subj_dir = self.rng.standard_normal((n_subjects, dim), dtype=np.float32)
        own_dir = self.rng.standard_normal((k, dim), dtype=np.float32)
        self.cluster_subject = np.repeat(np.arange(n_subjects), per_subject)
        c = subj_dir[self.cluster_subject] + 0.7 * own_dir
        self.centers = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
        self.acc = plant_skills(self.rng, k, n_models)

    def sample(self, n: int, noise: float = 0.8, chunk: int = 4096) -> Split:
        rng = self.rng
        cluster = rng.integers(0, len(self.centers), n)
        X = np.empty((n, self.dim), dtype=np.float32)
        scale = np.float32(noise / np.sqrt(self.dim))
        for i in range(0, n, chunk):  # float32 throughout: no (n, d) float64 temporaries
            block = rng.standard_normal((min(chunk, n - i), self.dim), dtype=np.float32)
            block *= scale
            block += self.centers[cluster[i : i + chunk]]
            X[i : i + chunk] = block
        gold, choices, logprobs = plant_answers(rng, self.acc[cluster], self.n_options)
        subjects = np.array([f"subject {s:02d}" for s in range(self.S)])[self.cluster_subject[cluster]]
        return Split(X, subjects, cluster, gold, choices, logprobs)


def plant_skills(rng: np.random.Generator, n_niches: int, n_models: int) -> np.ndarray:
    """(n_niches, n_models) accuracies: every model is decent everywhere (0.4-0.6) and strong (0.9)
    on the niches drawn for it, one strong model per niche (~1/m of the niches each)."""
    acc = rng.uniform(0.40, 0.60, (n_niches, n_models))
    acc[np.arange(n_niches), rng.integers(0, n_models, n_niches)] = 0.9
    return acc


def plant_answers(rng: np.random.Generator, acc: np.ndarray, n_options: int):
    """(gold (n,), choices (n, m), logprobs (n, m)): model j answers question i correctly with
    probability acc[i, j]; a wrong answer is a uniform other letter; confidence is higher when right."""
    n, m = acc.shape
    gold = rng.integers(0, n_options, n)
    correct = rng.random((n, m)) < acc
    wrong = (gold[:, None] + rng.integers(1, n_options, (n, m))) % n_options
    choices = np.where(correct, gold[:, None], wrong)
    logprobs = np.where(correct, -0.3, -0.6) + rng.normal(0.0, 0.2, (n, m))
    return gold, choices, logprobs


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def loop_route(router: Cascal, X: np.ndarray) -> np.ndarray:
    """docs/METHOD.md §9 written the obvious way: one question at a time, its own nearest
    subject, centroids, blend and fallback. The baseline of the routing ratio."""
    cfg = router.config
    reps, C, owner = router.subject_reps_, router.centroids_, router.cluster_subject_
    R, G = router.rankings_.astype(np.float64), router.global_scores_.astype(np.float64)
    out = np.empty((len(X), len(G)))
    for n, v in enumerate(X):
        v = v / max(float(np.sqrt(v.astype(np.float64) @ v)), clustering.EPS)
        if cfg.two_stage and len(reps):
            subject = int(np.argmax(reps @ v))
        elif len(C):
            subject = int(owner[np.argmin(1.0 - C @ v)])
        else:
            subject = -1
        near = sorted((1.0 - float(C[i] @ v), i) for i in range(len(C)) if owner[i] == subject)[
            : cfg.k_nearest
        ]
        if not near:
            out[n] = G
            continue
        weights = _softmax(np.array([-d / cfg.distance_temp for d, _ in near]))
        P = np.zeros(len(G))
        for w, (_, i) in zip(weights, near):
            s = R[i]
            if cfg.sharp_scoring and np.isfinite(s).all() and s.sum() > 0:
                s = _softmax(s / cfg.score_temp)
            if np.isfinite(s).all() and s.sum() > 0:  # an unusable cluster drops out
                P += w * s
        d_near = near[0][0]
        if cfg.fallback and d_near > cfg.distance_threshold:
            alpha = min((d_near - cfg.distance_threshold) / cfg.ramp_width, 1.0)
            Pn = P / P.sum() if P.sum() > 0 else np.zeros_like(P)
            P = (1.0 - alpha) * Pn + alpha * (G / G.sum() if G.sum() > 0 else G)
        out[n] = P
    return out


def timed(fn):
    """(result, wall seconds, CPU seconds of the process: all its threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


class SilhouetteAudit:
    """How far rgd's cluster-sum silhouette is from sklearn's on every labelling the baseline scored
    (the time it takes is kept apart, and taken off the baseline's training time)."""

    def __init__(self):
        self.max_diff, self.count, self.seconds = 0.0, 0, 0.0

    def __call__(self, X, labels, score):
        t0 = time.perf_counter()
        ours = clustering.cosine_silhouettes(X, [labels])[0]
        self.max_diff = max(self.max_diff, abs(ours - score))
        self.count += 1
        self.seconds += time.perf_counter() - t0


def same_clusters(router: Cascal, ref: dict, ids: list[str]) -> bool:
    """The router and the reference built the same clusters with the same members."""
    ours = {cid: sorted(members) for cid, members in router.assigned_.items()}
    theirs = {
        cid: sorted(ids[i] for i in rows)
        for t in ref["tables"].values()
        for cid, rows in t["assigned"].items()
    }
    return ours == theirs


def run(
    n_train=30_000, n_test=12_000, n_subjects=14, n_models=6, dim=4096, seed=0, n_jobs=None, n_loop=1_000
) -> dict:
    tracemalloc.start()  # counts the workload's arrays too: they are part of the real footprint
    wl = Workload(n_subjects=n_subjects, n_models=n_models, dim=dim, seed=seed)
    train, test = wl.sample(n_train), wl.sample(n_test)
    consensus = consensus_scores(train.choices, train.logprobs).scores
    experts = [f"model-{j}" for j in range(n_models)]
    ids = [f"q{i}" for i in range(n_train)]
    data = TrainingSet(train.X, experts, list(train.subjects), train.choices, consensus, None, ids)
    tracemalloc.stop()  # timing passes without tracing overhead

    # The baseline first: the reference formula as the original computes it.
    audit = SilhouetteAudit()
    ref, base_s, base_cpu = timed(
        lambda: reference.fit(train.X, list(train.subjects), train.choices, consensus, experts, audit=audit)
    )
    base_s -= audit.seconds
    base_cpu -= audit.seconds
    P_ref, ref_route_s, _ = timed(lambda: reference.route(ref, test.X))
    original, orig_s, orig_cpu = timed(lambda: Cascal(compat="original", n_jobs=n_jobs).fit(data))
    P_orig, orig_route_s, _ = timed(lambda: original.route(test.X))
    router, default_s, default_cpu = timed(lambda: Cascal(n_jobs=n_jobs).fit(data))
    (order, scores), route_s, _ = timed(lambda: router.rank(test.X))
    n_loop = min(n_loop, n_test)
    looped, loop_s, _ = timed(lambda: loop_route(router, test.X[:n_loop]))
    loop_diff = float(np.max(np.abs(looped - scores[:n_loop])))

    # Picks: the best model per test question, ties broken by one seeded permutation for both.
    picks_ref, picks_orig = metrics.rank(P_ref, seed)[:, 0], metrics.rank(P_orig, seed)[:, 0]
    # The previous default, exact k-means on the full rows (kmeans_dims=0), and how much the picks of
    # each depend on the k-means seed: the bar any agreement between two k-means routers is read on.
    exact, exact_s, _ = timed(lambda: Cascal(n_jobs=n_jobs, kmeans_dims=0).fit(data))
    exact_picks = [exact.rank(test.X)[0][:, 0]]
    default_picks = [order[:, 0]]
    for rs in SEEDS[1:]:
        for picks, dims in ((exact_picks, 0), (default_picks, None)):
            params = {} if dims is None else {"kmeans_dims": dims}
            picks.append(Cascal(n_jobs=n_jobs, random_state=rs, **params).fit(data).rank(test.X)[0][:, 0])

    # Memory pass: the same fit and routing under tracemalloc; it must also reproduce the timing pass.
    router = None  # free the timing pass's fit before the memory pass
    tracemalloc.start()
    traced = tracemalloc.get_traced_memory()[0]
    again = Cascal(n_jobs=n_jobs).fit(data)
    same = bool(np.array_equal(again.rank(test.X)[1], scores))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    data_bytes = sum(
        a.nbytes for a in (train.X, test.X, train.choices, train.logprobs, consensus, test.choices)
    )

    correct = test.choices == test.gold[:, None]
    rows = np.arange(n_test)
    top1 = lambda picks: round(float(correct[rows, picks].mean()), 4)  # noqa: E731
    jobs = n_jobs or usable_cpus()
    return {
        "workload": {
            "n_train": n_train,
            "n_test": n_test,
            "subjects": n_subjects,
            "models": n_models,
            "dim": dim,
            "seed": seed,
        },
        "n_jobs": jobs,
        "baseline_train_s": round(base_s, 3),
        "baseline_train_cpu_s": round(base_cpu, 3),
        "baseline_route_qps": round(n_test / ref_route_s, 1),
        "original_train_s": round(orig_s, 3),
        "original_train_cpu_s": round(orig_cpu, 3),
        "original_speedup": round(base_s / orig_s, 2),
        "original_route_qps": round(n_test / orig_route_s, 1),
        "original_picks_identical": int((picks_ref == picks_orig).sum()),
        "original_rankings_identical": int(
            (metrics.rank(P_ref, seed) == metrics.rank(P_orig, seed)).all(axis=1).sum()
        ),
        "original_same_clusters": same_clusters(original, ref, ids),
        "original_max_abs_score_diff": float(np.max(np.abs(P_ref - P_orig))),
        "silhouettes_compared": audit.count,
        "silhouette_max_abs_diff_vs_sklearn": audit.max_diff,
        "sklearn_margin": clustering.SKLEARN_MARGIN,
        "train_s": round(default_s, 3),
        "train_cpu_s": round(default_cpu, 3),
        "default_speedup": round(base_s / default_s, 2),
        "exact_train_s": round(exact_s, 3),
        "exact_speedup": round(base_s / exact_s, 2),
        "default_picks_as_exact": int((exact_picks[0] == order[:, 0]).sum()),
        "seeds": list(SEEDS),
        "exact_seed_agreement": _pair_agreement(exact_picks),
        "default_seed_agreement": _pair_agreement(default_picks),
        "top1_accuracy_exact_by_seed": [top1(p) for p in exact_picks],
        "top1_accuracy_by_seed": [top1(p) for p in default_picks],
        "route_s": round(route_s, 3),
        "route_qps": round(n_test / route_s, 1),
        "loop_questions": n_loop,
        "loop_s": round(loop_s, 3),
        "loop_route_qps": round(n_loop / loop_s, 1),
        "route_speedup_vs_loop": round((n_test / route_s) / (n_loop / loop_s), 2),
        "loop_max_abs_diff": loop_diff,
        "input_arrays_gib": round(data_bytes / GIB, 3),
        "tracemalloc_peak_gib": round((peak - traced + data_bytes) / GIB, 3),
        "maxrss_gib": round(maxrss / GIB, 3),
        "peak_gib": round(max(peak - traced + data_bytes, maxrss) / GIB, 3),
        "deterministic_rerun": same,
        "clusters": len(again.cluster_ids_),
        "counters": again.counters_,
        "top1_accuracy": top1(order[:, 0]),
        "top1_accuracy_exact": top1(exact_picks[0]),
        "top1_accuracy_original": top1(picks_orig),
        "top1_accuracy_baseline": top1(picks_ref),
        "best_single_accuracy": round(float(correct.mean(axis=0).max()), 4),
        "oracle_cluster_accuracy": round(float(correct[rows, wl.acc[test.cluster].argmax(axis=1)].mean()), 4),
    }


def _pair_agreement(picks: list[np.ndarray]) -> float:
    """The lowest share of questions on which two of the seeds' routers pick the same model."""
    return round(min(float(np.mean(a == b)) for i, a in enumerate(picks) for b in picks[i + 1 :]), 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--jobs", type=int, default=None, help="threads over subjects during fit (default: all CPUs)"
    )
    ap.add_argument("--quick", action="store_true", help="a small workload, to test the harness")
    args = ap.parse_args(argv)
    size = dict(n_train=2_000, n_test=1_000, n_subjects=6, dim=384, n_loop=200) if args.quick else {}
    fig = run(seed=args.seed, n_jobs=args.jobs, **size)
    fig["targets"] = TARGETS
    T, n_test = TARGETS, fig["workload"]["n_test"]
    missed = [
        name
        for name, bad in (
            (
                f"original settings {fig['original_speedup']}x < {T['original_speedup']:g}x the baseline's "
                "training",
                fig["original_speedup"] < T["original_speedup"],
            ),
            (
                f"original settings picked differently on {n_test - fig['original_picks_identical']} of "
                f"{n_test} "
                "questions",
                fig["original_picks_identical"] != n_test,
            ),
            ("original settings built other clusters than the baseline", not fig["original_same_clusters"]),
            (
                f"default settings {fig['default_speedup']}x < {T['default_speedup']:g}x the baseline's "
                "training",
                fig["default_speedup"] < T["default_speedup"],
            ),
            (
                f"default settings top-1 {fig['top1_accuracy']} < exact k-means' "
                f"{fig['top1_accuracy_exact']}",
                fig["top1_accuracy"] < fig["top1_accuracy_exact"],
            ),
            (
                f"routing {fig['route_qps']:,.0f} q/s < {T['route_qps']:,.0f}",
                fig["route_qps"] < T["route_qps"],
            ),
            (f"peak memory {fig['peak_gib']} GiB >= {T['peak_gib']:g} GiB", fig["peak_gib"] >= T["peak_gib"]),
            ("the memory pass did not reproduce the timing pass", not fig["deterministic_rerun"]),
            (
                f"loop and vectorised routing disagree ({fig['loop_max_abs_diff']:.1e})",
                fig["loop_max_abs_diff"] > 1e-5,
            ),
        )
        if bad
    ]
    for k, v in fig.items():
        print(f"{k:>30}: {v}")
    w = fig["workload"]
    res = result(
        "cascal",
        f"train: default {fig['train_s']:.1f} s (top-1 {fig['top1_accuracy']:.3f}; exact k-means "
        f"{fig['exact_train_s']:.1f} s, top-1 {fig['top1_accuracy_exact']:.3f}; same pick on "
        f"{fig['default_picks_as_exact'] / n_test:.0%}, exact against itself under another seed "
        f"{fig['exact_seed_agreement']:.0%}), original settings {fig['original_train_s']:.1f} s "
        f"({fig['original_speedup']:.1f}x, same picks on {fig['original_picks_identical']:,}/{n_test:,}); "
        f"route {fmt_rate(fig['route_qps'], 'q')} ({fig['route_speedup_vs_loop']:.1f}x the §9 loop); "
        f"peak {fig['peak_gib']:.2f} GiB ({w['n_train']:,} x {w['dim']}-d, {w['models']} models, "
        f"{fig['n_jobs']} threads)",
        "the original's way (sklearn float64 k-means and silhouette per k, loops): train "
        f"{fig['baseline_train_s']:.1f} s, "
        f"route {fmt_rate(fig['baseline_route_qps'], 'q')}",
        fig,
        fig["default_speedup"],
        "baseline / default training time",
        f"default >= {T['default_speedup']:g}x at top-1 >= exact k-means', original settings >= "
        f"{T['original_speedup']:g}x with "
        "identical picks; "
        f"route >= {T['route_qps']:,.0f} q/s, peak < {T['peak_gib']:g} GiB",
        missed,
        args.quick,
    )
    return finish_result(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
