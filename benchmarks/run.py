"""Run every benchmark, keep their results, and update the table in docs/BENCHMARKS.md.

Each benchmark is a script run as its own process with `--out <json>` (shape: benchlib.py). The
run's results go to benchmarks/results/<YYYY-MM-DD>.json (a second run on the same day gets
<YYYY-MM-DD>-2.json; earlier files are never overwritten), and the table between the markers in
docs/BENCHMARKS.md is regenerated from this run. Exit status 1 if a benchmark missed a target or
failed, naming them; skipped benchmarks (no .venv-vllm, BENCH_E2E=0, --quick) are listed, not failed.

    .venv/bin/python benchmarks/run.py                    # what `make bench` runs
    .venv/bin/python benchmarks/run.py --e2e 0            # without the 12-min end-to-end run
    .venv/bin/python benchmarks/run.py --only hf embed    # a subset (the table then has only these)
    .venv/bin/python benchmarks/run.py --quick            # tiny sizes, no vLLM or e2e (tests)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
# (name, script, per-benchmark timeout in seconds); the order of the table
BENCHMARKS = [
    ("consensus", "bench_consensus.py", 900),
    ("cascal", "bench_cascal.py", 900),
    ("cascal-mmlu", "bench_cascal_mmlu.py", 600),
    ("cascal-scale", "bench_cascal_scale.py", 1500),
    ("startup", "bench_startup.py", 600),
    ("embed", "bench_embed.py", 900),
    ("hf", "bench_hf.py", 1200),
    ("cpu-engine", "bench_cpu_engine.py", 1800),
    ("vllm", "bench_vllm.py", 1800),
    ("route-decision", "bench_route_decision.py", 900),
    ("serve", "bench_serve.py", 1200),
    ("snakemake", "bench_snakemake.py", 900),
    ("e2e", "bench_e2e.py", 4200),
]

# the benchmarks that export MiniLM's runtimes (benchlib.runtime_specs) into one folder of the run
EXPORTS_SHARED = ("route-decision", "serve")


def skip_reason(name: str, script: Path, quick: bool, e2e: bool) -> str | None:
    if name == "vllm":
        if quick:
            return "quick mode"
        if not VLLM_PYTHON.exists():
            return "no .venv-vllm (make venv-vllm builds it)"
    if name == "e2e" and (quick or not e2e):
        return "quick mode" if quick else "BENCH_E2E=0"
    if not script.exists():
        return f"{script.relative_to(ROOT)} does not exist yet"
    return None


def run_one(name: str, cmd: list[str], timeout: float) -> dict:
    """Run one benchmark, echoing its output; return its JSON result, or a failure record."""
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    tail: deque[str] = deque(maxlen=30)
    with tempfile.TemporaryDirectory(prefix=f"rgd-bench-{name}-") as d:
        out = Path(d) / "result.json"
        # vLLM's INFO lines would drown every other line of the run
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
        }
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*cmd, "--out", str(out)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        timed_out = threading.Event()

        # the benchmark's own process group: bench_e2e's snakemake jobs go with it
        def kill():
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            for line in proc.stdout:
                if "Loading weights" not in line:  # transformers' progress bar
                    print(f"  {line}", end="", flush=True)
                    tail.append(line.rstrip("\n"))
            rc = proc.wait()
        finally:
            watchdog.cancel()
        seconds = round(time.perf_counter() - t0, 1)
        try:
            res = json.loads(out.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            res = None
    if timed_out.is_set():
        return failure(name, f"timed out after {timeout:.0f} s", seconds, tail)
    if not isinstance(res, dict):
        return failure(name, f"exit status {rc}, no result written", seconds, tail)
    res = {
        "name": name,
        "summary": "",
        "baseline": "",
        "figures": {},
        "ratio": None,
        "ratio_meaning": "",
        "target": "",
        "missed": [],
        **res,
        "exit_status": rc,
        "seconds": seconds,
    }
    res.setdefault("passed", rc == 0 and not res["missed"])
    if not res["passed"] and not res["missed"]:
        res["missed"] = [f"exit status {rc}"]
    if not res["summary"]:  # a result without the headline line: its first scalar figures
        scalars = [(k, v) for k, v in res["figures"].items() if isinstance(v, (int, float, str))][:4]
        res["summary"] = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in scalars)
    if rc != 0 and res["passed"]:  # a benchmark that reports success but exits non-zero is a failure
        res["passed"] = False
        res["missed"] = [*res["missed"], f"exit status {rc}"]
    return res


def vllm_args(scratch: Path) -> list[str]:
    """bench_vllm.py's inputs: the default's SmolLM2 from the model cache and real MMLU questions
    of the default's subjects; 12 prompts in cot mode and 24 in letter mode (~4 min on 2 cores)."""
    import yaml

    from rgd.embedded import load_mmlu
    from rgd.io import write_jsonl

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    qs, _ = load_mmlu(cfg["benchmarks"]["mmlu"]["source"]["subjects"], "test", 4, seed=0)
    path = scratch / "vllm-questions.jsonl"
    write_jsonl(path, qs)
    return [
        "--model-dir",
        str(ROOT / "resources" / "models" / "smollm2-135m"),
        "--questions",
        str(path),
        "--n",
        "12",
    ]


def adapt(res: dict) -> dict:
    """A result written as bare figures (bench_vllm.py: {"modes": {mode: {"ratio", ...}}, ...})
    gets the common shape: the worst mode's ratio, and a headline per mode."""
    if res["figures"] or "modes" not in res:
        return res
    modes = res["modes"]
    figures = {
        k: v
        for k, v in res.items()
        if k
        not in (
            "name",
            "summary",
            "baseline",
            "figures",
            "ratio",
            "ratio_meaning",
            "target",
            "missed",
            "passed",
            "exit_status",
            "seconds",
        )
    }
    rates = {m: v.get("tokens_per_second", {}) for m, v in modes.items()}
    ratios = {m: v["ratio"] for m, v in modes.items() if isinstance(v.get("ratio"), (int, float))}
    missed = [f"{m}: rgd/raw {r:.2f}x < 0.9x" for m, r in ratios.items() if r < 0.9]
    missed += [
        f"{m}: rgd and raw made different tokens" for m, v in modes.items() if v.get("same_tokens") is False
    ]
    if not res["passed"] and not missed:
        missed = res["missed"]
    return {
        **{k: res[k] for k in ("name", "exit_status", "seconds")},
        "passed": res["passed"] and not missed,
        "missed": missed,
        "figures": figures,
        "summary": "; ".join(f"{m} {r.get('rgd', 0):,.0f} tok/s through rgd" for m, r in rates.items()),
        "baseline": "; ".join(f"{m} raw LLM.generate {r.get('raw', 0):,.0f} tok/s" for m, r in rates.items()),
        "ratio": min(ratios.values()) if ratios else None,
        "ratio_meaning": "rgd / raw tok/s, worst mode",
        "target": ">= 0.9x in every mode",
    }


def failure(name: str, why: str, seconds: float, tail) -> dict:
    return {
        "name": name,
        "summary": "",
        "baseline": "",
        "figures": {},
        "ratio": None,
        "ratio_meaning": "",
        "target": "",
        "passed": False,
        "missed": [f"failed: {why}"],
        "error": "\n".join(tail),
        "exit_status": None,
        "seconds": seconds,
    }


def results_path(directory: Path, date: str) -> Path:
    path, n = directory / f"{date}.json", 1
    while path.exists():
        n += 1
        path = directory / f"{date}-{n}.json"
    return path


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{'+dirty' if dirty else ''}" if head else None


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_table(run: dict, results_file: str) -> str:
    m = run["machine"]
    lines = [
        f"Run of {run['date']} (commit {run.get('commit') or 'unknown'}"
        f"{', quick mode: tiny sizes, not comparable' if run['quick'] else ''}) on {m['cpus']} CPUs, "
        f"load average {m['load_start'][0]:.1f} at the start and {m['load_end'][0]:.1f} at the end; "
        f"{run['seconds'] / 60:.1f} min in all. Full figures: `{results_file}`.",
        "",
        "| benchmark | result | same-run baseline | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in run["benchmarks"]:
        if r.get("skipped"):
            lines.append(f"| {r['name']} | skipped: {_cell(r['skipped'])} | | | | skipped |")
            continue
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x ({_cell(r['ratio_meaning'])})"
        verdict = "met" if r["passed"] else "**missed**: " + _cell("; ".join(r["missed"]))
        lines.append(
            f"| {r['name']} | {_cell(r['summary'])} | {_cell(r['baseline'])} | {ratio} | "
            f"{_cell(r['target'])} | {verdict} |"
        )
    return "\n".join(lines)


def update_doc(doc: Path, table: str) -> None:
    """Replace what lies between the two markers; everything else in the file is kept."""
    from rgd.io import write_text

    text = doc.read_text(encoding="utf-8")
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{doc}: expected one '{BEGIN}' followed by one '{END}'")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    write_text(doc, f"{head}{BEGIN}\n{table}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes; skips vLLM and end to end (harness tests)"
    )
    ap.add_argument(
        "--e2e",
        type=int,
        choices=(0, 1),
        default=int(os.environ.get("BENCH_E2E", "1")),
        help="run the end-to-end benchmark (default 1; env BENCH_E2E)",
    )
    ap.add_argument("--only", nargs="+", choices=[b[0] for b in BENCHMARKS], help="run only these")
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    run = {
        "date": dt.date.today().isoformat(),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick,
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "load_start": [round(x, 2) for x in os.getloadavg()]},
        "benchmarks": [],
    }
    with tempfile.TemporaryDirectory(prefix="rgd-bench-") as scratch:
        for name, script, timeout in BENCHMARKS:
            if args.only and name not in args.only:
                continue
            path = HERE / script
            why = skip_reason(name, path, args.quick, bool(args.e2e))
            if why:
                print(f"\n=== {name}: skipped ({why})", flush=True)
                run["benchmarks"].append({"name": name, "skipped": why, "passed": None})
                continue
            if name == "vllm":  # its own venv; it takes a model directory and a questions file
                cmd = [str(VLLM_PYTHON), str(path), *vllm_args(Path(scratch))]
            else:
                cmd = [sys.executable, str(path), *(["--quick"] if args.quick else [])]
            if name in EXPORTS_SHARED:  # the embedder runtimes are exported once per run
                cmd += ["--exports", str(Path(scratch) / "embedders")]
            run["benchmarks"].append(adapt(run_one(name, cmd, timeout)))
    run["machine"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    run["seconds"] = round(time.perf_counter() - started, 1)
    run["missed"] = [r["name"] for r in run["benchmarks"] if r.get("passed") is False]

    from rgd.io import write_json

    out = results_path(args.results_dir, run["date"])
    write_json(out, run)
    shown = os.path.relpath(out, ROOT) if out.is_relative_to(ROOT) else str(out)
    table = render_table(run, shown)
    update_doc(args.doc, table)
    print(f"\n{table}\n\nresults: {shown}; table: {args.doc}")
    if run["missed"]:
        for r in run["benchmarks"]:
            if r.get("passed") is False:
                print(f"MISSED {r['name']}: {'; '.join(r['missed'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
