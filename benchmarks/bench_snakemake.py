"""Snakemake overhead: building the paper grid's DAG, and a no-op rerun of the embedded default.

1. Dry run (`snakemake -n`) of config/paper.yaml (4 benchmarks x 12 models x 2 pools x 5 sources
   x 6 routers, ~1,200 jobs) in an empty directory, offline. Target: < 15 s.
   Same-run baseline: the dry run of the embedded default (config/config.yaml, ~120 jobs) in an
   empty directory, i.e. Snakemake's fixed cost (start-up, parsing, schema validation); the ratio
   is paper / default (how the DAG build grows with a 10x larger grid).
2. No-op rerun of the default in the project's results/ (`snakemake --cores 2`, what `make run`
   runs): measured only when a dry run finds nothing to do there (after `make run`); otherwise
   skipped with the reason. bench_e2e.py measures the same rerun in its own directory.
   Target: < 10 s.
Timings are the median of --repeats runs (each a fresh process, as a user would run it).

    .venv/bin/python benchmarks/bench_snakemake.py [--out result.json] [--quick]

On a cluster, run it where Snakemake is launched (the login node): shared filesystems make DAG
builds and mtime checks slower, and that is the figure users wait for there.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, finish, median, result

SNAKEFILE = ROOT / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
TARGETS = {"paper_dry_run_s": 15.0, "noop_rerun_s": 10.0}


def snakemake(*args: str, workdir: Path | None = None, timeout: float = 600) -> tuple[float, str]:
    """(wall seconds, output) of one snakemake process; raises on a non-zero exit."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    cmd = [str(BIN / "snakemake"), "-s", str(SNAKEFILE)]
    if workdir is not None:
        cmd += ["--directory", str(workdir)]
    t0 = time.perf_counter()
    res = subprocess.run([*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    out = res.stdout + res.stderr
    if res.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed ({res.returncode}):\n{out[-3000:]}")
    return seconds, out


def total_jobs(out: str) -> int:
    m = re.search(r"^total\s+(\d+)$", out, re.M)
    return int(m.group(1)) if m else 0


def dry_run(config: Path, repeats: int, extra: tuple[str, ...] = ()) -> tuple[list[float], int]:
    times, jobs = [], 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="rgd-bench-dag-") as d:
            s, out = snakemake(
                "--configfile", str(config), *extra, "-n", "--quiet", "rules", "--cores", "2", workdir=Path(d)
            )
            if list(Path(d).rglob("*.jsonl")):
                raise RuntimeError("a dry run wrote data")
        times.append(s)
        jobs = total_jobs(out)
    return times, jobs


def noop_rerun(repeats: int) -> dict:
    """The no-op rerun in the project's own results/, if it is up to date; --nolock so that a
    workflow running there is never disturbed (and then results/ is not up to date anyway)."""
    _, out = snakemake("-n", "--nolock", "--cores", "2")
    if "Nothing to be done" not in out:
        n = total_jobs(out)
        return {"skipped": f"results/ is not up to date ({n} jobs to run): run `make run` first"}
    times = []
    for _ in range(repeats):
        s, out = snakemake("--nolock", "--cores", "2")
        if "Nothing to be done" not in out:
            raise RuntimeError("the no-op rerun ran jobs:\n" + out[-2000:])
        times.append(s)
    return {"seconds": times, "median_s": median(times)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument("--quick", action="store_true", help="one run of each, to test the harness")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 1

    cache = ("--config", f"model_cache={ROOT / 'resources' / 'models'}")
    paper_t, paper_jobs = dry_run(ROOT / "config" / "paper.yaml", args.repeats)
    default_t, default_jobs = dry_run(ROOT / "config" / "config.yaml", args.repeats, cache)
    noop = noop_rerun(args.repeats)
    paper_s, default_s = median(paper_t), median(default_t)
    figures = {
        "paper_dry_run_seconds": paper_t,
        "paper_dry_run_s": paper_s,
        "paper_jobs": paper_jobs,
        "default_dry_run_seconds": default_t,
        "default_dry_run_s": default_s,
        "default_jobs": default_jobs,
        "paper_ms_per_job": 1000 * paper_s / max(paper_jobs, 1),
        "noop_rerun": noop,
        "targets": TARGETS,
    }
    print(
        f"paper grid dry run: {paper_s:.2f} s for {paper_jobs} jobs; default dry run: {default_s:.2f} s for "
        f"{default_jobs} jobs; no-op rerun of the default: {noop.get('median_s', noop.get('skipped'))}"
    )
    missed = []
    if paper_s >= TARGETS["paper_dry_run_s"]:
        missed.append(f"paper dry run {paper_s:.1f} s >= {TARGETS['paper_dry_run_s']:g} s")
    if "median_s" in noop and noop["median_s"] >= TARGETS["noop_rerun_s"]:
        missed.append(f"no-op rerun {noop['median_s']:.1f} s >= {TARGETS['noop_rerun_s']:g} s")
    rerun = (
        f"{noop['median_s']:.1f} s"
        if "median_s" in noop
        else "not measured here: results/ not up to date (the e2e row measures it)"
    )
    res = result(
        "snakemake",
        f"paper grid dry run {paper_s:.1f} s ({paper_jobs:,} jobs); no-op rerun of the default {rerun}",
        f"dry run of the default ({default_jobs} jobs): {default_s:.1f} s",
        figures,
        paper_s / default_s,
        "paper / default dry-run time",
        f"paper dry run < {TARGETS['paper_dry_run_s']:g} s, no-op rerun < {TARGETS['noop_rerun_s']:g} s",
        missed,
        args.quick,
    )
    return finish(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
