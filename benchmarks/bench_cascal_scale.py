"""How CASCAL training and routing grow: rgd's default settings at 10k, 30k, 100k and 300k training
questions (1,024-d, 14 subjects), with 6 and with 24 models, on the planted-niche workload of
bench_cascal.py.

Each (models, questions) point runs in a fresh process, so that its peak memory (maxrss) is its own:
it holds the workload (embeddings, choices, consensus), trains, then routes a stream of test
questions block by block (generated on the fly, only the top pick kept), so routing memory is
bounded whatever the number of questions. The growth exponent b of training time ~ n^b is fitted
on the points; n log n over this range is b ~ 1.09. The same-run baseline is linear growth from the
smallest point (the ratio is the measured time at the largest point over that extrapolation).
Training uses rgd's defaults: the exact silhouette on every question and no subsampling, with
k-means on each subject's top 64 principal directions (`kmeans_dims`; its accuracy against k-means
on the full rows is what bench_cascal.py and bench_cascal_mmlu.py measure); each point reports the
top-1 accuracy of its routed stream.

Targets: b <= 1.2 for every pool (about n log n), peak memory <= 8 GiB at the largest point,
routing >= 50,000 questions/s. Exits 1 when one is missed.

    .venv/bin/python benchmarks/bench_cascal_scale.py [--out result.json] [--quick] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from bench_cascal import Workload
from benchlib import finish as finish_result
from benchlib import fmt_rate, result

from rgd.cascal import CascalConfig

GIB = 1024**3
TARGETS = {"exponent": 1.2, "peak_gib": 8.0, "route_qps": 50_000.0}
FULL = {"sizes": [10_000, 30_000, 100_000, 300_000], "models": [6, 24], "dim": 1024, "stream": 262_144}
QUICK = {"sizes": [2_000, 4_000, 8_000], "models": [6], "dim": 128, "stream": 100_000}
BLOCK = 65_536  # test questions per routed block


def point(n_train: int, n_models: int, dim: int, stream: int, jobs: int | None, seed: int = 0) -> dict:
    """Train on n_train questions and route `stream` questions; time, memory, accuracy."""
    from rgd import metrics
    from rgd.cascal import Cascal
    from rgd.consensus import consensus_scores
    from rgd.routers import TrainingSet

    wl = Workload(n_models=n_models, dim=dim, seed=seed)
    train = wl.sample(n_train)
    consensus = consensus_scores(train.choices, train.logprobs).scores
    experts = [f"model-{j}" for j in range(n_models)]
    data = TrainingSet(train.X, experts, list(train.subjects), train.choices, consensus)
    held = sum(a.nbytes for a in (train.X, train.choices, train.logprobs, consensus))

    import sklearn.cluster._kmeans  # noqa: F401  (imported before the clock starts, as a warm process has it)
    import threadpoolctl  # noqa: F401

    t0, c0 = time.perf_counter(), time.process_time()
    router = Cascal(n_jobs=jobs).fit(data)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    del data, train
    fit_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    route_s, correct, n_routed, block_peak = 0.0, 0, 0, 0
    rng_blocks = max(1, -(-stream // BLOCK))
    for b in range(rng_blocks):
        test = wl.sample(min(BLOCK, stream - b * BLOCK))
        tracemalloc.start()
        t0 = time.perf_counter()
        scores = router.route(test.X)
        route_s += time.perf_counter() - t0
        block_peak = max(block_peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        top = metrics.rank(scores, seed)[:, 0]
        correct += int((test.choices[np.arange(len(top)), top] == test.gold).sum())
        n_routed += len(top)
    return {
        "n_train": n_train,
        "models": n_models,
        "dim": dim,
        "train_s": round(train_s, 3),
        "train_cpu_s": round(train_cpu_s, 3),  # all threads; on a shared machine the steadier figure
        "fit_maxrss_gib": round(fit_rss / GIB, 3),
        "maxrss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3),
        "workload_gib": round(held / GIB, 3),
        "clusters": len(router.cluster_ids_),
        "routed": n_routed,
        "route_s": round(route_s, 3),
        "route_qps": round(n_routed / route_s, 1),
        "route_block_peak_mib": round(block_peak / 2**20, 1),
        "route_block": BLOCK,
        "top1_accuracy": round(correct / n_routed, 4),
    }


def exponent(ns: list[int], ts: list[float]) -> float:
    """Least-squares slope of log t on log n."""
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument(
        "--jobs", type=int, default=None, help="threads over subjects during fit (default: all CPUs)"
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, to test the harness")
    ap.add_argument(
        "--point", nargs=4, type=int, metavar=("N", "MODELS", "DIM", "STREAM"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.point:
        print(json.dumps(point(*args.point, jobs=args.jobs)))
        return 0

    plan = QUICK if args.quick else FULL
    points = []
    for m in plan["models"]:
        for n in plan["sizes"]:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--point",
                str(n),
                str(m),
                str(plan["dim"]),
                str(plan["stream"]),
            ] + (["--jobs", str(args.jobs)] if args.jobs else [])
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"point n={n} models={m} failed")
            p = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(p), flush=True)
            points.append(p)
    pools = {}
    for m in plan["models"]:
        ps = [p for p in points if p["models"] == m]
        ns, ts = [p["n_train"] for p in ps], [p["train_s"] for p in ps]
        pools[str(m)] = {
            "exponent": round(exponent(ns, ts), 3),
            "exponent_cpu": round(exponent(ns, [p["train_cpu_s"] for p in ps]), 3),
            "exponent_last_two": round(exponent(ns[-2:], ts[-2:]), 3),
            "linear_from_smallest_s": round(ts[0] * ns[-1] / ns[0], 3),
            "largest_over_linear": round(ts[-1] / (ts[0] * ns[-1] / ns[0]), 3),
        }
    largest = [p for p in points if p["n_train"] == plan["sizes"][-1]]
    fig = {
        "plan": plan,
        "points": points,
        "pools": pools,
        "worst_exponent": max(v["exponent"] for v in pools.values()),
        "peak_gib_largest": max(p["maxrss_gib"] for p in largest),
        "route_qps_min": min(p["route_qps"] for p in points),
        "route_block_peak_mib_max": max(p["route_block_peak_mib"] for p in points),
        "approximation": f"k-means on each subject's top {CascalConfig().kmeans_dims} principal directions "
        "(kmeans_dims, the default); exact silhouette on every question, no subsampling",
        "targets": TARGETS,
    }
    T = TARGETS
    missed = [
        name
        for name, bad in (
            (
                f"training grows as n^{fig['worst_exponent']} > n^{T['exponent']}",
                fig["worst_exponent"] > T["exponent"],
            ),
            (
                f"peak memory {fig['peak_gib_largest']} GiB > {T['peak_gib']:g} GiB at {plan['sizes'][-1]:,}",
                fig["peak_gib_largest"] > T["peak_gib"],
            ),
            (
                f"routing {fig['route_qps_min']:,.0f} q/s < {T['route_qps']:,.0f}",
                fig["route_qps_min"] < T["route_qps"],
            ),
        )
        if bad
    ]
    big = max(largest, key=lambda p: p["models"])
    res = result(
        "cascal-scale",
        "training time ~ n^b: "
        + ", ".join(f"{m} models b = {v['exponent']:.2f}" for m, v in pools.items())
        + f"; {big['n_train']:,} x {plan['dim']}-d, {big['models']} models: train {big['train_s']:.0f} s, "
        f"peak {big['maxrss_gib']:.1f} GiB; routing {fmt_rate(fig['route_qps_min'], 'q')} (slowest point, "
        f"{plan['stream']:,} questions streamed in blocks of {BLOCK:,}, <= "
        f"{fig['route_block_peak_mib_max']:.0f} MiB "
        "per block)",
        f"linear growth from {plan['sizes'][0]:,}: {big['models']} models "
        f"{pools[str(big['models'])]['linear_from_smallest_s']:.0f} s at {big['n_train']:,}",
        fig,
        pools[str(big["models"])]["largest_over_linear"],
        "measured / linear-extrapolated training time at the largest size",
        f"b <= {T['exponent']} (about n log n), peak <= {T['peak_gib']:g} GiB, route >= "
        f"{T['route_qps']:,.0f} q/s",
        missed,
        args.quick,
    )
    return finish_result(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
