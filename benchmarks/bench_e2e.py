"""End to end: wall time of the workflow `make run` runs, cold and warm.

cold  `snakemake --cores 2` on the embedded default (config/config.yaml) in a fresh, empty
      directory (`--directory <tmp>`): every job runs, and no response or generation cache
      exists. The model cache is the project's resources/models (`--config model_cache=...`), so
      models are not materialised again (that is a one-time install step, ~1-2 min per GGUF model);
      Python packages and model files are in the OS page cache after the first use.
warm  the same command immediately again: a no-op rerun (Snakemake builds the DAG, checks every
      output's mtime, params and code, and finds nothing to do). Target: < 10 s.
`make run` adds to these only its `venv` step (a no-op once installed) and printing the summary.

Same-run baseline: the sum of the jobs' own wall times (each rule's `benchmark:` file). The ratio
Σ job time / cold wall time is the parallel speed-up Snakemake gets from --cores 2 (at most 2).
Takes 12 minutes on a quiet 2-core machine (150 jobs, 2026-12-01), more under load;
`make bench BENCH_E2E=0` skips it.

    .venv/bin/python benchmarks/bench_e2e.py [--out result.json] [--keep]

On a cluster the end-to-end time is dominated by queueing and by the GPU jobs (the vLLM
comparison, benchmarks/README.md); this benchmark is the laptop experience of `make run`.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchlib import ROOT, finish, result

SNAKEFILE = ROOT / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
WARM_TARGET_S = 10.0


def run_workflow(workdir: Path, cores: int, log: Path, timeout: float) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(ROOT / "config" / "config.yaml"),
        "--config",
        f"model_cache={ROOT / 'resources' / 'models'}",
        "--cores",
        str(cores),
    ]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    out = res.stdout + res.stderr
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{out}\n")
    if res.returncode != 0:
        raise RuntimeError(f"snakemake failed ({res.returncode}); log: {log}\n{out[-3000:]}")
    return seconds, out


def job_times(results: Path) -> dict[str, list[float]]:
    """Wall seconds of every job, by rule (the first folder under results/timings/)."""
    by_rule: dict[str, list[float]] = defaultdict(list)
    root = results / "timings"
    for tsv in sorted(root.rglob("*.tsv")):
        rows = list(csv.DictReader(tsv.open(), delimiter="\t"))
        if rows:
            rule = tsv.relative_to(root).parts[0].removesuffix(".tsv")
            by_rule[rule].append(float(rows[-1]["s"]))
    return dict(by_rule)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed for the cold run")
    ap.add_argument(
        "--keep", action="store_true", help="keep the run's directory (printed) instead of removing it"
    )
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rgd-bench-e2e-"))
    log = work / "bench-e2e.log"
    print(f"cold run in {work} (about 12 minutes on 2 quiet cores)", flush=True)
    try:
        cold_s, _ = run_workflow(work, args.cores, log, args.timeout)
        print(f"cold: {cold_s:.1f} s", flush=True)
        warm_s, warm_out = run_workflow(work, args.cores, log, 600)
        print(f"warm: {warm_s:.1f} s", flush=True)
        noop = "Nothing to be done" in warm_out
        by_rule = job_times(work / "results")
        summary_ok = (work / "results" / "tables" / "summary.md").is_file()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    total = sum(sum(v) for v in by_rule.values())
    rules = {r: {"jobs": len(v), "seconds": round(sum(v), 2)} for r, v in sorted(by_rule.items())}
    slowest = sorted(rules.items(), key=lambda kv: -kv[1]["seconds"])[:5]
    figures = {
        "cold_s": cold_s,
        "warm_s": warm_s,
        "warm_was_noop": noop,
        "cores": args.cores,
        "jobs": sum(r["jobs"] for r in rules.values()),
        "sum_job_s": total,
        "rules": rules,
        "summary_written": summary_ok,
        "workdir": str(work) if args.keep else None,
    }
    print("slowest rules (total job seconds): " + ", ".join(f"{r} {v['seconds']:.0f} s" for r, v in slowest))
    missed = []
    if warm_s >= WARM_TARGET_S:
        missed.append(f"warm (no-op) rerun {warm_s:.1f} s >= {WARM_TARGET_S:g} s")
    if not noop:
        missed.append("the warm rerun was not a no-op")
    if not summary_ok:
        missed.append("the cold run wrote no results/tables/summary.md")
    res = result(
        "e2e",
        f"cold {cold_s / 60:.1f} min ({figures['jobs']} jobs, --cores {args.cores}), warm (no-op) "
        f"{warm_s:.1f} s",
        f"sum of the jobs' own times: {total / 60:.1f} min",
        figures,
        total / cold_s if cold_s > 0 else None,
        "Σ job time / cold wall time",
        f"warm < {WARM_TARGET_S:g} s (cold: no target)",
        missed,
    )
    return finish(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
