"""One routing decision (embed the text, rank the pool) per embedder runtime, against PyTorch in
the same run: latency at 1 client, capacity and latency at 32 concurrent clients, and a cache hit.

Per runtime (`embedder.runtime`: torch, onnx, onnx-int8, static; MiniLM exported into a temporary
folder unless `--exports` holds it), a real CASCAL with planted niches is trained on real MMLU
questions embedded with that runtime (bench_serve.train_router), and loaded by `rgd serve`'s own
loader (rgd.serve.commands.build_service: the recorded embedder, its threads set, the warm-up).
The decision is the server's: its Ranker, micro-batching included, in this process, without HTTP.
Texts are distinct real MMLU questions (57 subjects), so every timed decision without the cache
is a miss. Arms:

  1 client    one decision at a time, cache off: p50, p99 (ms)
  32 clients  32 coroutines, each deciding its texts one after the other, cache off: decisions/s
              over the wall time, and each decision's latency (p50, p99)
  cache hit   one at a time, the text's vector cached by an earlier miss: p50, p99

Runtimes alternate within each round so that a change in load hits all alike. Ratios are against
PyTorch's figures of the same run. Targets (issue 23): onnx-int8 at 1 client and static at 32
clients at most 10 ms p50 and 30 ms p99; a cache hit at most 2 ms p50. The embedder has `rgd
serve`'s default threads (2 on a machine with 2 cores) unless `--threads` says otherwise.

    python benchmarks/bench_route_decision.py [--out result.json] [--quick] [--exports DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_serve import train_router
from benchlib import finish, mmlu_texts, result, runtime_specs, runtimes

from rgd.serve.commands import DEFAULT_EMBED_THREADS

CLIENTS = 32
# runtime -> (arm, its target p50 and p99 in ms); the cache-hit target holds for every runtime
TARGETS = {"onnx-int8": ("1 client", 10.0, 30.0), "static": (f"{CLIENTS} clients", 10.0, 30.0)}
HIT_P50_MS = 2.0


def ranker(router: Path, work: Path, cache: bool, threads: int):
    """`rgd serve`'s Ranker over `router`, loaded as the server loads it, started on this loop."""
    from rgd.routers import PROVENANCE
    from rgd.serve.commands import build_service
    from rgd.serve.limits import Limits

    endpoints = work / "endpoints.json"  # never called: the decision is all that is timed
    experts = json.loads((router / PROVENANCE).read_text())["experts"]
    endpoints.write_text(
        json.dumps({"experts": {e: {"base_url": "http://127.0.0.1:9/v1", "model": e} for e in experts}})
    )
    size = {} if cache else {"embed_cache_entries": 0}
    return build_service(router, endpoints, threads=threads, limits=Limits(**size)).ranker


async def one_client(rk, batch: list[str]) -> list[float]:
    lat = []
    for t in batch:
        t0 = time.perf_counter()
        await rk.rank(t)
        lat.append(time.perf_counter() - t0)
    return lat


async def many_clients(rk, batch: list[str]) -> tuple[list[float], float]:
    """Each decision's latency and the wall time of `CLIENTS` clients sharing `batch`."""
    per = len(batch) // CLIENTS
    t0 = time.perf_counter()
    lats = await asyncio.gather(*(one_client(rk, batch[k * per : (k + 1) * per]) for k in range(CLIENTS)))
    return [x for lat in lats for x in lat], time.perf_counter() - t0


def measure(rankers: dict, pool: list[str], n1: int, n32: int, rounds: int) -> dict:
    """Per runtime: each arm's latencies (ms) and the 32-client decisions/s, rounds interleaved."""

    async def run() -> dict:
        got = {r: {"1": [], "32": [], "hit": [], "wall": 0.0, "n32": 0} for r in rankers}
        for rk in rankers.values():
            rk["miss"].start()
            rk["hit"].start()
        cursor = 0
        for i in range(rounds):
            for r in list(rankers) if i % 2 == 0 else list(rankers)[::-1]:
                one = pool[cursor : cursor + n1]
                many = pool[cursor + n1 : cursor + n1 + n32 * CLIENTS]
                got[r]["1"] += await one_client(rankers[r]["miss"], one)
                lat, wall = await many_clients(rankers[r]["miss"], many)
                got[r]["32"] += lat
                got[r]["wall"] += wall
                got[r]["n32"] += len(lat)
                await one_client(rankers[r]["hit"], one)  # misses: their vectors are now cached
                got[r]["hit"] += await one_client(rankers[r]["hit"], one)
            cursor += n1 + n32 * CLIENTS  # every runtime decides the same texts in a round
        for rk in rankers.values():
            await rk["miss"].stop()
            await rk["hit"].stop()
        return got

    got = asyncio.run(run())
    out = {}
    for r, g in got.items():
        pct = {arm: 1000 * np.percentile(g[arm], [50, 99]) for arm in ("1", "32", "hit")}
        out[r] = {
            "1 client": {"p50_ms": round(pct["1"][0], 3), "p99_ms": round(pct["1"][1], 3)},
            f"{CLIENTS} clients": {
                "p50_ms": round(pct["32"][0], 3),
                "p99_ms": round(pct["32"][1], 3),
                "decisions_per_s": round(g["n32"] / g["wall"], 1),
            },
            "cache hit": {"p50_ms": round(pct["hit"][0], 3), "p99_ms": round(pct["hit"][1], 3)},
        }
    return out


def missed_targets(fig: dict) -> list[str]:
    missed = []
    for r, (arm, p50, p99) in TARGETS.items():
        if r in fig and fig[r][arm]["p50_ms"] > p50:
            missed.append(f"{r}, {arm}: p50 {fig[r][arm]['p50_ms']:.1f} ms > {p50:g}")
        if r in fig and fig[r][arm]["p99_ms"] > p99:
            missed.append(f"{r}, {arm}: p99 {fig[r][arm]['p99_ms']:.1f} ms > {p99:g}")
    missed += [
        f"{r}, cache hit: p50 {f['cache hit']['p50_ms']:.2f} ms > {HIT_P50_MS:g}"
        for r, f in fig.items()
        if f["cache hit"]["p50_ms"] > HIT_P50_MS
    ]
    return missed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true", help="few decisions (harness test)")
    ap.add_argument("--exports", help="the runtimes' exported files (default: a temporary folder)")
    ap.add_argument("--runtimes", nargs="+", default=list(runtimes()), choices=runtimes())
    ap.add_argument(
        "--threads", type=int, default=DEFAULT_EMBED_THREADS, help="embedder threads (rgd serve's default)"
    )
    a = ap.parse_args(argv)
    import torch

    wanted = ["torch", *(r for r in a.runtimes if r != "torch")]  # the baseline, always
    n1, n32, rounds = (8, 1, 2) if a.quick else (100, 4, 4)
    with tempfile.TemporaryDirectory(prefix="rgd-bench-route-") as d:
        work = Path(d)
        specs, export_s = runtime_specs(Path(a.exports) if a.exports else work / "exports", wanted)
        rankers = {}
        for r, spec in specs.items():
            (work / r).mkdir()
            router, _ = train_router(work / r, 10 if a.quick else 30, spec)
            rankers[r] = {c: ranker(router, work / r, c == "hit", a.threads) for c in ("miss", "hit")}
        fig = measure(rankers, mmlu_texts((n1 + n32 * CLIENTS) * rounds), n1, n32, rounds)
    base = fig["torch"]
    missed = missed_targets(fig)
    cheap = min(fig, key=lambda r: fig[r]["1 client"]["p50_ms"])
    res = result(
        "route-decision",
        "; ".join(
            f"{r} {f['1 client']['p50_ms']:.1f}/{f['1 client']['p99_ms']:.1f} ms (1 client p50/p99), "
            f"{f[f'{CLIENTS} clients']['decisions_per_s']:.0f}/s at {CLIENTS}, "
            f"hit {f['cache hit']['p50_ms']:.2f} ms"
            for r, f in fig.items()
        ),
        f"PyTorch (torch): {base['1 client']['p50_ms']:.1f} ms p50 at 1 client, "
        f"{base[f'{CLIENTS} clients']['decisions_per_s']:.0f} decisions/s at {CLIENTS} clients",
        {
            "runtimes": fig,
            "export_s": export_s,
            "threads": a.threads,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "embedder": "all-MiniLM-L6-v2",
            "router": "cascal",
        },
        base["1 client"]["p50_ms"] / fig[cheap]["1 client"]["p50_ms"],
        f"PyTorch / {cheap} decision p50 at 1 client",
        f"onnx-int8 at 1 client and static at {CLIENTS} clients: p50 <= 10 ms, p99 <= 30 ms; "
        f"a cache hit p50 <= {HIT_P50_MS:g} ms",
        missed,
        quick=a.quick,
    )
    return finish(res, a.out)


if __name__ == "__main__":
    sys.exit(main())
