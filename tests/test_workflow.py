"""End-to-end: the real Snakefile on a tiny config in a temporary directory.

One run of the whole DAG (module fixture), then: the summary table, a no-op rerun, targeted
staleness after a config change, schema validation, and the label-free guarantee read from
the DAG itself.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
TINY = ROOT / "tests" / "config" / "tiny.yaml"
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, *args: str, config: Path = TINY, check: bool = True, timeout: int = 1200):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", str(config), "--cores", "2", *args]
    res = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


def shared_model_cache() -> Path:
    """Materialised models are reused across test sessions (the GGUF dequantisation is slow)."""
    d = Path(os.environ.get("RGD_TEST_MODEL_CACHE", ROOT / ".pytest_cache" / "rgd-models"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model_cache"] = str(shared_model_cache())
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    first = snakemake(work, config=config)
    return work, config, first


def test_summary_table(run):
    work, config, _ = run
    rows = list(csv.DictReader((work / "results/tables/summary.csv").open()))
    cfg = yaml.safe_load(config.read_text())
    routed = {(r["source"], r["router"]) for r in rows if r["source"] != "-"}
    assert routed == {(s, r) for s in ("train", "gen-gemma") for r in cfg["routers"]}
    refs = {r["router"].split(" ")[0] for r in rows if r["source"] == "-"}
    assert refs == {"best-single@test", "random", "pool-vote", "oracle"}
    for r in rows:
        assert int(r["n"]) > 0 and 0 <= float(r["top1"]) <= 100
    oracle = float(next(r["top1"] for r in rows if r["router"] == "oracle"))
    assert all(float(r["top1"]) <= oracle + 1e-9 for r in rows)
    gen = [l for l in (work / "results/data/mmlu/gen-gemma.questions.jsonl").read_text().splitlines() if l]
    assert gen, "the real generator produced no valid question"
    assert (work / "results/tables/summary.md").read_text().count("|") > 20


def test_every_rule_has_log_and_benchmark(run):
    work, _, _ = run
    assert list((work / "results/logs").rglob("*.log"))
    rules = {p.parts[len((work / "results/benchmarks").parts)] for p in (work / "results/benchmarks").rglob("*.tsv")}
    assert {"data", "split", "generate", "respond", "consensus", "embed", "train", "route", "evaluate"} <= rules


def test_rerun_has_nothing_to_do(run):
    work, config, _ = run
    res = snakemake(work, "-n", config=config)
    assert "Nothing to be done" in res.stdout + res.stderr


def _planned(res) -> dict[str, int]:
    text = res.stdout + res.stderr
    table = text[text.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def test_changing_one_expert_reruns_only_its_jobs(run, tmp_path):
    work, config, _ = run
    cfg = yaml.safe_load(config.read_text())
    cfg["experts"]["b-fewshot"]["style"] = "plain"
    cfg["experts"]["b-fewshot"]["batch_size"] = 2
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    res = snakemake(work, "-n", config=changed)
    planned = _planned(res)
    n_routes = 2 * len(cfg["routers"])
    assert planned.get("respond") == 3  # train, test, gen-gemma of b-fewshot only
    assert "generate" not in planned and "embed" not in planned and "materialise" not in planned
    assert planned.get("consensus") == 2 and planned.get("train_router") == n_routes
    text = res.stdout
    responds = re.findall(r"output: results/responses/\S+/(\S+)\.jsonl", text)
    assert set(responds) == {"b-fewshot"}


def test_a_models_dtype_reaches_its_transformers_jobs(run, tmp_path):
    """The registry's `dtype` is the weights' dtype for either backend: changing it reruns the
    jobs of that model's experts only, and their spec carries it to the transformers backend."""
    work, config, _ = run
    cfg = yaml.safe_load(config.read_text())
    cfg["models"]["tiny-b"]["dtype"] = "bfloat16"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    res = snakemake(work, "-n", "-p", config=changed)
    responds = set(re.findall(r"output: results/responses/\S+/(\S+)\.jsonl", res.stdout))
    assert responds == {"b-plain", "b-fewshot"}
    shells = [l for l in (res.stdout + res.stderr).splitlines() if "rgd respond " in l]
    assert len(shells) == 6 and all('"engine": {"dtype": "bfloat16"}' in l for l in shells)


def _summary_inputs(work: Path, config: Path) -> dict[str, list[str]]:
    """output file -> input files, for every train_router job, from Snakemake's own DAG."""
    res = snakemake(work, "--detailed-summary", config=config)
    lines = res.stdout.splitlines()
    header = lines.index(next(l for l in lines if l.startswith("output_file")))
    cols = lines[header].split("\t")
    out = {}
    for line in lines[header + 1:]:
        f = dict(zip(cols, line.split("\t")))
        if f.get("rule") == "train_router":
            out[f["output_file"]] = f["input-file(s)"].split(",")
    return out


def test_query_only_routers_never_read_keys(run):
    """Label-free by construction, read from the DAG: CASCAL's training jobs take no key file,
    while every query-answer router's do (so this test can fail)."""
    work, config, _ = run
    jobs = _summary_inputs(work, config)
    assert jobs
    for output, inputs in jobs.items():
        router = Path(output).name
        has_keys = any(i.endswith(".keys.jsonl") for i in inputs)
        if router == "cascal":
            assert not has_keys, f"{output} reads answer keys: {inputs}"
        else:
            assert has_keys, f"{output}: query-answer router without keys"
    # the consensus and embedding jobs that feed CASCAL read no keys either
    for p in (work / "results/logs/consensus").rglob("*.log"):
        assert "keys" not in p.read_text()


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"seed": "zero"}, "seed"),
        ({"experts": {"a-chat": {"model": "tiny-a", "style": "chat", "colour": "red"}}}, "colour"),
        ({"experts": {"a-chat": {"model": "nope", "style": "chat"}}}, "experts.a-chat.model: unknown model 'nope'"),
        ({"pools": {"tiny": ["a-chat", "ghost"]}}, "pools.tiny: unknown expert 'ghost'"),
        ({"routers": {"cascal": {}, "magic": {}}}, "magic"),
        ({"routers": {"cascal": {"params": {"k_nearst": 3}}}}, "routers.cascal.params"),
        ({"routers": {"cascal": {"params": {"min_consensus": 7}}}}, "min_consensus"),
        ({"models": {"tiny-a": {"source": {"kind": "tiny-random", "seed": 0}, "dtype": "half"}}}, "dtype"),
    ],
)
def test_config_errors_name_the_key(tmp_path, patch, message):
    cfg = yaml.safe_load(TINY.read_text())
    for k, v in patch.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "-n", config=bad, check=False, timeout=120)
    assert res.returncode != 0
    assert message in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_report_and_frozen_archive(run):
    """The run ends with the HTML report (every figure category) and an archive that verifies."""
    work, _, _ = run
    html = (work / "results/report.html").read_text(errors="replace")
    for category in ("Tables", "Routing accuracy", "Skills", "Calibration", "CASCAL clusters", "Data scaling"):
        assert category in html, category
    archives = sorted((work / "results/archive").glob("rgd-results-*.tar.gz"))
    assert len(archives) == 1
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    ok = subprocess.run([str(BIN / "rgd"), "verify", str(archives[0])], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
