"""End-to-end: the real Snakefile on a tiny config, run from the checkout root as a user types it.

`snakemake --cores 2 --configfile CONFIG` from the repository root, with the results folder and
the model cache at paths that contain spaces (every path reaches the shell quoted). One run of the
whole DAG (module fixture), then: the summary table, a no-op rerun, targeted staleness after a
config change, config errors, the label-free guarantee read from the DAG itself, and a driver
killed mid-inference that the same command resumes.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "config" / "tiny.yaml"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


def command(config: Path, *args: str) -> list[str]:
    # --configfile takes several files: it goes last, so that targets in `args` stay targets
    return [str(BIN / "snakemake"), "--cores", "2", *args, "--configfile", str(config)]


def snakemake(*args: str, config: Path, check: bool = True, timeout: int = 1200):
    res = subprocess.run(
        command(config, *args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
        )
    return res


def shared_model_cache() -> Path:
    """Materialised models are reused across test sessions (the GGUF dequantisation is slow)."""
    d = Path(os.environ.get("RGD_TEST_MODEL_CACHE", ROOT / ".pytest_cache" / "rgd-models"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def tiny_config(work: Path, results: str = "my results", **changes) -> Path:
    """tiny.yaml with its results folder and model cache under `work`, both named with a space
    (the cache is a link to the shared one)."""
    cfg = yaml.safe_load(TINY.read_text())
    cache = work / "model cache"
    if not cache.exists():
        cache.symlink_to(shared_model_cache(), target_is_directory=True)
    cfg |= {"results": str(work / results), "model_cache": str(cache), **changes}
    path = work / f"{results.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    config = tiny_config(work)
    first = snakemake(config=config)
    return work / "my results", config, first


def test_summary_table(run):
    results, config, _ = run
    rows = list(csv.DictReader((results / "tables/summary.csv").open()))
    cfg = yaml.safe_load(config.read_text())
    routed = {(r["benchmark"], r["source"], r["router"]) for r in rows if r["source"] != "-"}
    # the recorded benchmark has its own pool and no generated source (a recording covers only its questions)
    sources = [("mmlu", "train"), ("mmlu", "gen-gemma"), ("recorded", "train")]
    assert routed == {(b, s, r) for b, s in sources for r in cfg["routers"]}
    assert {r["pool"] for r in rows if r["benchmark"] == "recorded"} == {"recorded"}
    assert all(r["top1_over_seeds"].endswith("(2 seeds)") for r in rows if r["source"] != "-")
    refs = {r["router"].split(" ")[0] for r in rows if r["source"] == "-"}
    summary = (results / "tables/summary.md").read_text()
    assert "## Label-free skill estimators" in summary and "| recorded | recorded | dawid-skene |" in summary
    assert refs == {"best-single@test", "random", "pool-vote", "oracle"}
    for r in rows:
        assert int(r["n"]) > 0 and 0 <= float(r["top1"]) <= 100
    oracle = {r["benchmark"]: float(r["top1"]) for r in rows if r["router"] == "oracle"}
    assert all(float(r["top1"]) <= oracle[r["benchmark"]] + 1e-9 for r in rows)
    gen = [
        line for line in (results / "data/mmlu/gen-gemma.questions.jsonl").read_text().splitlines() if line
    ]
    assert gen, "the real generator produced no valid question"
    assert (results / "tables/summary.md").read_text().count("|") > 20


def test_every_rule_has_log_and_timing(run):
    results, _, _ = run
    assert list((results / "logs").rglob("*.log"))
    rules = {p.parts[len((results / "timings").parts)] for p in (results / "timings").rglob("*.tsv")}
    assert {
        "data",
        "split",
        "generate",
        "respond",
        "consensus",
        "embed",
        "train",
        "route",
        "evaluate",
    } <= rules


def test_rerun_has_nothing_to_do(run):
    results, config, _ = run
    res = snakemake("-n", config=config)
    assert "Nothing to be done" in res.stdout + res.stderr


# the expert of each respond job a dry run plans (its output line)
RESPONSE = re.compile(r"output: [^\n]*?/responses/[^/\s]+/[^/\s]+/([^/\s,]+)\.jsonl")


def _planned(res) -> dict[str, int]:
    text = res.stdout + res.stderr
    table = text[text.index("Job stats:") :]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
        if m.group(1) != "total"
    }


def test_changing_one_expert_reruns_only_its_jobs(run, tmp_path):
    results, config, _ = run
    cfg = yaml.safe_load(config.read_text())
    cfg["experts"]["b-fewshot"]["style"] = "plain"
    cfg["experts"]["b-fewshot"]["batch_size"] = 2
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    res = snakemake("-n", config=changed)
    planned = _planned(res)
    n_routes = 2 * len(cfg["routers"])
    assert planned.get("respond") == 3  # train, test, gen-gemma of b-fewshot only
    assert "generate" not in planned and "embed" not in planned and "materialise" not in planned
    assert planned.get("consensus") == 2 and planned.get("train_router") == n_routes
    text = res.stdout
    assert set(RESPONSE.findall(text)) == {"b-fewshot"}


def test_a_models_dtype_reaches_its_transformers_jobs(run, tmp_path):
    """The registry's `dtype` is the weights' dtype for either backend: changing it reruns the
    jobs of that model's experts only, and their spec carries it to the transformers backend."""
    results, config, _ = run
    cfg = yaml.safe_load(config.read_text())
    cfg["models"]["tiny-b"]["dtype"] = "bfloat16"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    res = snakemake("-n", "-p", config=changed)
    responds = set(RESPONSE.findall(res.stdout))
    assert responds == {"b-plain", "b-fewshot"}
    shells = [line for line in (res.stdout + res.stderr).splitlines() if "rgd respond " in line]
    assert len(shells) == 6 and all('"engine": {"dtype": "bfloat16"}' in s for s in shells)


def _summary_inputs(config: Path) -> dict[str, tuple[str, list[str]]]:
    """output file -> (rule, input files) of every job that fits a router, from Snakemake's own
    DAG: train_router, and the report's scaling and seed_spread, which retrain one to evaluate it."""
    res = snakemake("--detailed-summary", config=config)
    lines = res.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("output_file")))
    cols = lines[header].split("\t")
    out = {}
    for line in lines[header + 1 :]:
        f = dict(zip(cols, line.split("\t")))
        if f.get("rule") in ("train_router", "scaling", "seed_spread"):
            out[f["output_file"]] = (f["rule"], f["input-file(s)"].split(","))
    return out


def test_query_only_routers_never_read_keys(run):
    """Label-free by construction, read from the DAG: CASCAL's training jobs take no key file,
    while every query-answer router's take their training source's (so this test can fail). The
    report's jobs that retrain CASCAL (scaling curve, seed spread) get the real test split's keys
    to evaluate it, and never a training source's."""
    results, config, _ = run
    jobs = _summary_inputs(config)
    assert {rule for rule, _ in jobs.values()} == {"train_router", "scaling", "seed_spread"}
    for output, (rule, inputs) in jobs.items():
        router = "cascal" if rule == "scaling" else Path(output).name.removesuffix(".json")
        keys = [i for i in inputs if i.endswith(".keys.jsonl")]
        training_keys = [k for k in keys if not k.endswith("/test.keys.jsonl")]
        if rule == "train_router" and router == "cascal":
            assert not keys, f"{output} reads answer keys: {inputs}"
        if rule != "train_router":  # evaluated on the real test set
            assert any(k.endswith("/test.keys.jsonl") for k in keys), f"{output}: {keys}"
        if router == "cascal":
            assert not training_keys, f"{output} reads its training source's keys: {inputs}"
        else:
            assert training_keys, f"{output}: query-answer router without keys"
    # the consensus and embedding jobs that feed CASCAL read no keys either
    for p in (results / "logs/consensus").rglob("*.log"):
        assert "keys" not in p.read_text()


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"seed": "zero"}, "seed"),
        ({"experts": {"a-chat": {"model": "tiny-a", "style": "chat", "colour": "red"}}}, "colour"),
        (
            {"experts": {"a-chat": {"model": "nope", "style": "chat"}}},
            "experts.a-chat.model: unknown model 'nope'",
        ),
        ({"pools": {"tiny": ["a-chat", "ghost"]}}, "pools.tiny: unknown expert 'ghost'"),
        ({"routers": {"cascal": {}, "magic": {}}}, "magic"),
        ({"routers": {"cascal": {"params": {"k_nearst": 3}}}}, "routers.cascal.params"),
        ({"routers": {"cascal": {"params": {"min_consensus": 7}}}}, "min_consensus"),
        ({"models": {"tiny-a": {"source": {"kind": "tiny-random", "seed": 0}, "dtype": "half"}}}, "dtype"),
    ],
)
def test_config_errors_name_the_key(tmp_path, patch, message):
    cfg = yaml.safe_load(TINY.read_text()) | {"results": str(tmp_path / "results")}
    for k, v in patch.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = snakemake("-n", config=bad, check=False, timeout=120)
    assert res.returncode != 0
    assert message in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_report_and_frozen_archive(run):
    """The run ends with the HTML report (every figure category) and an archive that verifies."""
    results, _, _ = run
    html = (results / "report.html").read_text(errors="replace")
    for category in (
        "Tables",
        "Routing accuracy",
        "Skills",
        "Calibration",
        "CASCAL clusters",
        "Data scaling",
    ):
        assert category in html, category
    archives = sorted((results / "archive").glob("rgd-results-*.tar.gz"))
    assert len(archives) == 1
    ok = subprocess.run(
        [str(BIN / "rgd"), "verify", str(archives[0])], capture_output=True, text=True, env=ENV
    )
    assert ok.returncode == 0, ok.stderr


def test_a_killed_driver_resumes_with_the_same_command(run, tmp_path):
    """SIGKILL of the snakemake process while a respond job runs (its orphan keeps running), then
    the same command again: it drops the dead driver's lock, reruns what was left incomplete,
    and ends with responses byte-identical to the uninterrupted run's, no cache record twice."""
    results, _, _ = run
    config = tiny_config(tmp_path, "resumed results")
    resumed = tmp_path / "resumed results"
    targets = [str(resumed / f"consensus/mmlu/tiny/{q}.jsonl") for q in ("train", "test")]
    driver = subprocess.Popen(
        command(config, *targets),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    # a respond job has started (its log exists) and not finished (no output yet)
    while not any(
        not (resumed / "responses" / p.relative_to(resumed / "logs/respond")).with_suffix(".jsonl").exists()
        for p in (resumed / "logs/respond").rglob("*.log")
    ):
        assert driver.poll() is None and time.monotonic() < deadline, "the run ended before inference"
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: its running job is orphaned, as after an OOM kill
    driver.wait()
    assert list((ROOT / ".snakemake/locks").glob("*.lock")), "the killed driver left no lock"

    again = snakemake(*targets, config=config)  # the same command
    assert "removed the lock left by a Snakemake run that no longer runs" in again.stderr
    for reference in sorted((results / "responses/mmlu").glob("t*/*.jsonl")):
        rel = reference.relative_to(results)
        assert (resumed / rel).read_bytes() == reference.read_bytes(), rel
    for cache in (resumed / "cache/responses").rglob("*.jsonl"):
        keys = [json.loads(line)["key"] for line in cache.read_text().splitlines() if line.strip()]
        assert len(keys) == len(set(keys)), f"{cache}: a record computed twice"
    assert "Nothing to be done" in snakemake("-n", *targets, config=config).stdout


def test_an_exported_embedder_runtime_is_built_once_before_every_embedding(tmp_path):
    """embedder.runtime: onnx-int8 plans one export_embedder job into the model cache, and every
    embed job reads that export (its spec names the directory); PyTorch plans none."""
    cfg = yaml.safe_load(TINY.read_text())
    config = tiny_config(tmp_path, embedder={**cfg["embedder"], "runtime": "onnx-int8"})
    res = snakemake("-n", "-p", config=config, timeout=300)
    planned = _planned(res)
    assert planned.get("export_embedder") == 1 and planned.get("embed", 0) >= 2
    text = res.stdout + res.stderr
    name = f"{cfg['embedder']['package']}-onnx-int8"
    assert f"embedders/{name}/rgd-embedder.json" in text
    assert text.count(f'"exported": "{tmp_path / "model cache" / "embedders" / name}"') == planned["embed"]
    plain = snakemake("-n", config=tiny_config(tmp_path, results="plain"), timeout=300)
    assert "export_embedder" not in _planned(plain)


def test_a_model_only_llamacpp_runs_is_materialised_gguf_only(tmp_path):
    """backend llamacpp on a registry model reaches its experts' and generator's jobs. The GGUF flag
    of rgd materialise: --gguf-only (no dequantised weights) for a GGUF model only llamacpp runs;
    --keep-gguf (the GGUF beside the weights) for one llamacpp runs beside transformers, and for a
    tiny-random model llamacpp runs (its GGUF is written); neither where no llamacpp job runs it."""
    cfg = yaml.safe_load(tiny_config(tmp_path).read_text())
    cfg["model_cache"] = str(tmp_path / "empty cache")  # every materialise job is planned
    for model in ("gemma3-270m", "tiny-b"):
        cfg["models"][model]["backend"] = "llamacpp"
    # the same GGUF again, answered by a transformers expert and a llamacpp one
    cfg["models"]["gemma-both"] = {
        "source": cfg["models"]["gemma3-270m"]["source"],
        "cost": {"relative": 2.0},
    }
    cfg["experts"] |= {
        "g-hf": {"model": "gemma-both", "style": "plain", "mode": "letter"},
        "g-llama": {"model": "gemma-both", "style": "plain", "mode": "letter", "backend": "llamacpp"},
    }
    cfg["pools"]["tiny"] += ["g-hf", "g-llama"]
    path = tmp_path / "llamacpp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    lines = [line for line in snakemake("-n", "-p", config=path).stdout.splitlines() if "rgd " in line]
    want = {
        "gemma3-270m": {"--gguf-only"},
        "gemma-both": {"--keep-gguf"},
        "tiny-b": {"--keep-gguf"},
        "tiny-a": set(),
    }
    for model, flags in want.items():
        materialise = [s for s in lines if "rgd materialise " in s and f"--name {model} " in s]
        assert materialise and all(
            {f for f in ("--gguf-only", "--keep-gguf") if f in s} == flags for s in materialise
        ), model
    responds = [s for s in lines if "rgd respond " in s and "/b-" in s]
    generates = [s for s in lines if "rgd generate " in s]
    assert responds and all('"backend": "llamacpp"' in s for s in responds)
    assert generates and all('"backend": "llamacpp"' in s for s in generates)
    both = [s for s in lines if "rgd respond " in s and "/g-" in s]
    assert {'"backend": "llamacpp"' in s for s in both} == {True, False}
