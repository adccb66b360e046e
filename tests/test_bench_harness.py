"""The benchmark harness (benchmarks/run.py): a quick run of every benchmark (tiny sizes; vLLM and
end to end skipped) writes the run's JSON and regenerates the table between the markers of a copy
of docs/BENCHMARKS.md; failures, timeouts and same-day reruns are handled."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "benchmarks" / "run.py"
DOC = ROOT / "docs" / "BENCHMARKS.md"


def load_harness():
    spec = importlib.util.spec_from_file_location("bench_run", HARNESS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    doc = d / "BENCHMARKS.md"
    doc.write_text(DOC.read_text())
    res = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--results-dir", str(d / "results"), "--doc", str(doc)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    files = list((d / "results").glob("*.json"))
    assert len(files) == 1, res.stdout[-3000:] + res.stderr[-3000:]
    return res, json.loads(files[0].read_text()), doc, files[0]


def test_quick_run_records_every_benchmark_in_the_common_shape(quick):
    res, run, _, path = quick
    assert path.name == f"{run['date']}.json" and run["quick"] is True
    names = [b["name"] for b in run["benchmarks"]]
    assert names == [
        "consensus",
        "cascal",
        "cascal-mmlu",
        "cascal-scale",
        "startup",
        "embed",
        "hf",
        "cpu-engine",
        "vllm",
        "route-decision",
        "serve",
        "snakemake",
        "e2e",
    ]
    by = {b["name"]: b for b in run["benchmarks"]}
    assert by["vllm"]["skipped"] == by["e2e"]["skipped"] == "quick mode"
    for name in [n for n in names if n not in ("vllm", "e2e")]:  # the rows quick mode runs
        b = by[name]
        assert b["exit_status"] in (0, 1), b.get("error")
        assert isinstance(b["figures"], dict) and b["figures"] and b["quick"] is True
        assert isinstance(b["ratio"], float) and b["ratio"] > 0 and b["ratio_meaning"] and b["target"]
        assert b["passed"] is (b["exit_status"] == 0) and b["passed"] is (not b["missed"])
    # the comparisons check that candidate and baseline compute the same thing
    assert by["consensus"]["figures"]["max_abs_diff"] <= 1e-9
    assert by["cascal"]["figures"]["loop_max_abs_diff"] <= 1e-5
    assert (
        by["cascal"]["figures"]["original_picks_identical"] == by["cascal"]["figures"]["workload"]["n_test"]
    )
    assert (
        by["startup"]["figures"]["route_questions"] == 500
        and not by["startup"]["figures"]["route_heavy_imports"]
    )
    mmlu = by["cascal-mmlu"]["figures"]  # real embeddings of 10 subjects x 20 questions, both arms
    assert mmlu["questions"] == 200 and mmlu["dim"] == 384 and len(mmlu["top1_diff_ci95"]) == 2
    assert by["embed"]["figures"]["max_abs_diff"] <= 1e-5
    # every embedder runtime is measured, each through the server's own loader and through HTTP
    assert set(by["route-decision"]["figures"]["runtimes"]) == {"torch", "onnx", "onnx-int8", "static"}
    assert set(by["serve"]["figures"]["runtimes"]) == {"torch", "onnx", "onnx-int8", "static"}
    assert by["hf"]["figures"]["styles"]["fewshot"]["max_abs_diff"] <= 1e-3
    # the paper grid (1,231 jobs) is several times the default (276, both benchmarks)
    assert by["snakemake"]["figures"]["paper_jobs"] > 4 * by["snakemake"]["figures"]["default_jobs"]
    # exit status 1 exactly when a benchmark missed a target, each named on stderr
    missed = [b["name"] for b in run["benchmarks"] if b.get("passed") is False]
    assert run["missed"] == missed and res.returncode == (1 if missed else 0)
    for name in missed:
        assert f"MISSED {name}:" in res.stderr


def test_table_is_regenerated_between_the_markers_only(quick):
    harness = load_harness()
    _, run, doc, path = quick
    before, after = DOC.read_text(), doc.read_text()
    # text outside the markers is unchanged
    assert before.split(harness.BEGIN)[0] == after.split(harness.BEGIN)[0]
    assert before.split(harness.END)[1] == after.split(harness.END)[1]
    table = after.split(harness.BEGIN)[1].split(harness.END)[0]
    assert "quick mode" in table and str(path) in table
    rows = [
        line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")
    ]
    assert [r.split("|")[1].strip() for r in rows] == [b["name"] for b in run["benchmarks"]]
    for row, b in zip(rows, run["benchmarks"]):
        verdict = row.rstrip(" |").rsplit("|", 1)[1].strip()
        if b.get("skipped"):
            assert verdict == "skipped"
        elif b["passed"]:
            assert verdict == "met"
        else:
            assert verdict.startswith("**missed**: ") and b["missed"][0] in verdict


def test_failures_timeouts_and_inconsistent_results(tmp_path):
    harness = load_harness()
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nprint('boom')\nsys.exit(3)\n")
    r = harness.run_one("crash", [sys.executable, str(crash)], timeout=60)
    assert (
        r["passed"] is False
        and r["missed"] == ["failed: exit status 3, no result written"]
        and "boom" in r["error"]
    )

    liar = tmp_path / "liar.py"  # writes a passing result but exits 1
    liar.write_text(
        "import json, sys\nout = sys.argv[sys.argv.index('--out') + 1]\n"
        "json.dump({'name': 'liar', 'passed': True, 'missed': [], 'figures': {'x': 1}, 'ratio': 2.0}, "
        "open(out, 'w'))\n"
        "sys.exit(1)\n"
    )
    r = harness.run_one("liar", [sys.executable, str(liar)], timeout=60)
    assert r["passed"] is False and r["missed"] == ["exit status 1"]

    slow = tmp_path / "slow.py"
    slow.write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    r = harness.run_one("slow", [sys.executable, str(slow)], timeout=2)
    assert r["passed"] is False and r["missed"] == ["failed: timed out after 2 s"] and r["seconds"] < 30

    table = harness.render_table(
        {
            "date": "2026-01-01",
            "commit": "abc",
            "quick": False,
            "seconds": 60,
            "machine": {"cpus": 2, "load_start": [1.0, 1, 1], "load_end": [2.0, 2, 2]},
            "benchmarks": [r, {"name": "vllm", "skipped": "no .venv-vllm", "passed": None}],
        },
        "benchmarks/results/2026-01-01.json",
    )
    assert "| slow |" in table and "**missed**: failed: timed out after 2 s" in table
    assert "| vllm | skipped: no .venv-vllm |" in table


def test_bare_vllm_figures_are_adapted():
    harness = load_harness()
    bare = {
        "vllm": "0.32.0",
        "modes": {
            "cot": {"ratio": 0.95, "tokens_per_second": {"raw": 100.0, "rgd": 95.0}},
            "letter": {"ratio": 0.8, "tokens_per_second": {"raw": 50.0, "rgd": 40.0}},
        },
    }
    res = {
        "name": "vllm",
        "summary": "",
        "baseline": "",
        "figures": {},
        "ratio": None,
        "ratio_meaning": "",
        "target": "",
        "missed": ["exit status 1"],
        **bare,
        "passed": False,
        "exit_status": 1,
        "seconds": 9,
    }
    a = harness.adapt(res)
    assert a["passed"] is False and a["ratio"] == 0.8 and a["missed"] == ["letter: rgd/raw 0.80x < 0.9x"]
    assert (
        a["figures"] == bare and "cot 95 tok/s through rgd" in a["summary"] and "letter raw" in a["baseline"]
    )


def test_earlier_results_are_kept_and_markers_are_required(tmp_path):
    harness = load_harness()
    (tmp_path / "2026-01-01.json").write_text("{}")
    (tmp_path / "2026-01-01-2.json").write_text("{}")
    assert harness.results_path(tmp_path, "2026-01-01").name == "2026-01-01-3.json"
    assert harness.results_path(tmp_path, "2026-01-02").name == "2026-01-02.json"
    doc = tmp_path / "doc.md"
    doc.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="expected one"):
        harness.update_doc(doc, "table")
    doc.write_text(f"a\n{harness.BEGIN}\nold\n{harness.END}\nb\n")
    harness.update_doc(doc, "new")
    assert doc.read_text() == f"a\n{harness.BEGIN}\nnew\n{harness.END}\nb\n"
