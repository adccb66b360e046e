"""The recorded benchmark's workflow side: the recorded backend replays exactly the questions of a
set (and refuses one it does not cover), `rgd recorded-data` keeps the questions every pool model
answered, the config refuses what a recording cannot do, and the robustness analyses (seed spread,
estimator comparison) and their summary lines."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rgd import config as rgd_config
from rgd.recorded.recording import write_recording

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
RGD = [sys.executable, "-m", "rgd.cli"]


def make_recording(directory: Path, n: int = 12, missing: dict | None = None) -> Path:
    """A recording of three models on `n` four-option questions in two categories; `missing`
    {model: [ids]} leaves those ids out of a model's recording."""
    qs = [
        {
            "id": f"q{i:03d}",
            "category": "math" if i % 2 else "law",
            "question": f"What is {i}?",
            "options": list("wxyz"),
        }
        for i in range(n)
    ]
    keys = [{"id": q["id"], "answer": "ABCD"[i % 4]} for i, q in enumerate(qs)]
    answers = []
    for j, model in enumerate(("alpha", "beta", "gamma")):
        skip = set((missing or {}).get(model, []))
        ans = {q["id"]: "ABCD"[(i + j) % 4] for i, q in enumerate(qs) if q["id"] not in skip and i % 5}
        abst = {
            q["id"]: "no option letter found" for i, q in enumerate(qs) if q["id"] not in skip and not i % 5
        }
        answers.append({"model": model, "answers": ans, "abstentions": abst, "confidences": {}})
    prov = {
        "questions": {"n": n},
        "models": {
            a["model"]: {
                "answered": len(a["answers"]),
                "abstained": len(a["abstentions"]),
                "covered": len(a["answers"]) + len(a["abstentions"]),
                "confidences": 0,
            }
            for a in answers
        },
    }
    write_recording(directory, qs, keys, answers, prov)
    return directory


def rgd(*args, cwd=None):
    return subprocess.run([*RGD, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_recorded_data_keeps_the_questions_every_model_answered(tmp_path):
    rec = make_recording(tmp_path / "rec", missing={"beta": ["q003"], "gamma": ["q007"]})
    out_q, out_k = tmp_path / "q.jsonl", tmp_path / "k.jsonl"
    outs = ("--out-questions", str(out_q), "--out-keys", str(out_k))
    res = rgd("recorded-data", "--recording", str(rec), "--models", "alpha", "beta", "gamma", *outs)
    assert res.returncode == 0, res.stderr
    ids = [json.loads(line)["id"] for line in out_q.read_text().splitlines()]
    assert len(ids) == 10 and "q003" not in ids and "q007" not in ids
    assert [json.loads(line)["id"] for line in out_k.read_text().splitlines()] == ids
    res = rgd("recorded-data", "--recording", str(rec), "--models", "alpha", "delta", *outs)
    assert res.returncode == 2 and "no recorded model 'delta'" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def _respond(tmp_path, rec, questions, model="beta"):
    spec = {"model": "m", "style": "fewshot", "mode": "cot", "backend": "recorded", "engine": {"name": model}}
    paths = {x: str(tmp_path / f"r.{x}") for x in ("jsonl", "meta.json", "cache.jsonl")}
    return rgd(
        *("respond", "--questions", str(questions), "--expert", "e", "--spec", json.dumps(spec)),
        *("--model-dir", str(rec), "--out", paths["jsonl"], "--meta", paths["meta.json"]),
        *("--cache", paths["cache.jsonl"]),
    )


def test_the_recorded_backend_replays_exactly_the_questions_of_a_set(tmp_path):
    rec = make_recording(tmp_path / "rec")
    qs = tmp_path / "set.jsonl"
    rows = [json.loads(x) for x in rgd_questions(rec)][:6]
    qs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = _respond(tmp_path, rec, qs)
    assert res.returncode == 0, res.stderr
    out = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    # q000 is an abstention with its recorded reason; the others are the recorded letters, no confidence
    assert out[0]["choice"] is None and out[0]["reason"] == "no option letter found"
    assert [r["choice"] for r in out[1:]] == ["C", "D", "A", "B", None]  # q005: abstained too
    assert all(r["confidence"] is None for r in out)
    meta = json.loads((tmp_path / "r.meta.json").read_text())
    assert meta["backend"] == "recorded" and meta["model"]["recorded"] == "beta"
    assert set(meta["model"]["recording"]) == {"questions.jsonl.gz", "answers.jsonl.gz"}


def test_the_recorded_backend_refuses_a_set_it_does_not_cover(tmp_path):
    rec = make_recording(tmp_path / "rec", missing={"beta": ["q002"]})
    rows = [json.loads(x) for x in rgd_questions(rec)][:4]
    generated = tmp_path / "gen.jsonl"
    generated.write_text(json.dumps({**rows[0], "id": "gen-1"}) + "\n")
    for questions, says in (
        (generated, "does not cover 1 of the 1 questions (first: 'gen-1')"),
        (_write(tmp_path / "hole.jsonl", rows), "does not cover 1 of the 4 questions (first: 'q002')"),
        (_write(tmp_path / "edited.jsonl", [{**rows[1], "question": "Edited?"}]), "differs from the text"),
    ):
        res = _respond(tmp_path, rec, questions)
        assert res.returncode == 2, res.stderr
        assert says in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "r.jsonl").exists()


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rgd_questions(rec: Path) -> list[str]:
    import gzip

    return gzip.decompress((rec / "questions.jsonl.gz").read_bytes()).decode().splitlines()


# --------------------------------------------------------------------------- the config
def _config() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _problems(cfg: dict) -> str:
    with pytest.raises(rgd_config.ConfigError) as e:
        rgd_config.load(copy.deepcopy(cfg), SCHEMA)
    return str(e.value)


def test_the_shipped_config_runs_both_benchmarks_each_with_its_own_pools():
    cfg = rgd_config.load(_config(), SCHEMA)
    assert cfg["benchmarks"]["mmlu"]["pools"] == ["four"]
    pro = cfg["benchmarks"]["mmlu-pro"]
    assert (
        pro["source"]["kind"] == "recorded" and pro["generators"] == [] and pro["pools"] == ["large", "small"]
    )
    for pool in pro["pools"]:
        assert len(cfg["pools"][pool]) == 6
        assert all(
            cfg["models"][cfg["experts"][e]["model"]]["backend"] == "recorded" for e in cfg["pools"][pool]
        )


def test_the_config_refuses_what_a_recording_cannot_do():
    cfg = _config()
    with_gens = copy.deepcopy(cfg)
    with_gens["benchmarks"]["mmlu-pro"]["generators"] = ["qwen"]
    assert "benchmarks.mmlu-pro.generators: a recorded benchmark has no generated source" in _problems(
        with_gens
    )
    crossed = copy.deepcopy(cfg)
    crossed["benchmarks"]["mmlu"]["pools"] = ["four", "small"]
    assert "benchmarks.mmlu.pools: expert 'llama3.1-8b-instruct' replays a recording" in _problems(crossed)
    writer = copy.deepcopy(cfg)
    writer["generators"]["qwen"]["model"] = "gemma-7b"
    assert "generators.qwen.model: 'gemma-7b' is recorded" in _problems(writer)
    mixed = copy.deepcopy(cfg)
    mixed["pools"]["small"] = ["llama3.1-8b-instruct", "smol-chat"]
    assert "expert 'smol-chat' does not replay this benchmark's recording" in _problems(mixed)
    unknown = copy.deepcopy(cfg)
    unknown["benchmarks"]["mmlu-pro"]["pools"] = ["huge"]
    assert "benchmarks.mmlu-pro.pools: unknown pool 'huge'" in _problems(unknown)
    no_desc = copy.deepcopy(cfg)
    del no_desc["benchmarks"]["mmlu"]["descriptions"]
    assert "benchmarks.mmlu.descriptions: required" in _problems(no_desc)
    weightless = copy.deepcopy(cfg)
    del weightless["models"]["gemma-7b"]["backend"]
    assert "models.gemma-7b.backend: the recorded backend needs a recorded source" in _problems(weightless)


# --------------------------------------------------------------------------- robustness analyses
def _planted(n: int = 240, seed: int = 0):
    """Two categories, three models; model 0 is right on category a, model 1 on b, model 2 at chance."""
    from rgd import routers
    from rgd.report.scaling import TestSet

    rng = np.random.default_rng(seed)
    cats = ["a" if i % 2 else "b" for i in range(n)]
    X = np.array([[1.0, 0.0] if c == "a" else [0.0, 1.0] for c in cats]) + rng.normal(0, 0.05, (n, 2))
    gold = rng.integers(0, 4, n)
    choices = np.stack([gold, gold, rng.integers(0, 4, n)], axis=1)
    a = np.array(cats) == "a"
    choices[~a, 0] = (gold[~a] + 1) % 4
    choices[a, 1] = (gold[a] + 1) % 4
    correct = (choices == gold[:, None]).astype(float)
    data = routers.TrainingSet(X, ["m0", "m1", "m2"], cats, choices, correct, ids=[str(i) for i in range(n)])
    return data, TestSet(choices, gold, np.zeros(choices.shape), X), cats


def test_seed_spread_retrains_under_each_seed_and_summarises():
    from rgd.report.robustness import seed_spread

    data, test, _ = _planted()
    out = seed_spread("cascal", {}, data, test, [0, 1, 2])
    assert [r["seed"] for r in out["runs"]] == [0, 1, 2]
    t = out["top1"]
    assert t["min"] <= t["mean"] <= t["max"] and t["sd"] >= 0
    assert t["mean"] > 0.9  # the planted niches: each category's right model
    with pytest.raises(ValueError, match="seeds: need at least one"):
        seed_spread("cascal", {}, data, test, [])


def test_estimator_quality_ranks_the_planted_skills():
    from rgd.report.robustness import estimator_quality

    data, test, cats = _planted()
    choices, gold = data.choices, test.gold
    good = estimator_quality(cats, choices, data.consensus, gold)  # scores = correctness: perfect
    assert good["spearman_model_category"] == pytest.approx(1.0) and good["label_accuracy"] == 1.0
    bad = estimator_quality(cats, choices, 1.0 - data.consensus, gold)  # inverted skills
    assert bad["spearman_model_category"] < 0 and bad["label_accuracy"] < 0.5


def test_the_summary_reports_the_seed_spread_and_the_estimators(tmp_path):
    from rgd.summary import estimators_text, seed_note

    e = {"best_single": 0.5}
    inside = seed_note(e, {"seeds": [0, 1], "top1": {"mean": 0.5, "sd": 0.02, "min": 0.48, "max": 0.52}})
    assert "inside that seed spread" in inside
    outside = seed_note(e, {"seeds": [0, 1], "top1": {"mean": 0.6, "sd": 0.01, "min": 0.59, "max": 0.61}})
    assert "outside it" in outside and "2 training seeds" in outside
    row = {
        "spearman_model_category": 0.81,
        "spearman_per_category_mean": 0.7,
        "label_accuracy": 0.55,
        "cascal_top1": 0.6,
        "cascal_top3_vote": 0.62,
    }
    text = estimators_text(
        [{"labels": {"benchmark": "b", "pool": "p"}, "estimators": {"confidence": row, "dawid-skene": row}}]
    )
    assert "| b | p | dawid-skene | 0.81 | 0.70 | 55.0 | 60.0 | 62.0 |" in text


def test_the_seed_and_estimator_tables_in_three_formats(tmp_path):
    from rgd.report.tables import estimators_table, seeds_table

    spread = {"mean": 0.5, "sd": 0.01, "min": 0.49, "max": 0.52}
    names = ("benchmark", "pool", "source", "router")
    files = [
        {
            "labels": dict(zip(names, ("b", "p", "train", r))),
            "seeds": [0, 1, 2],
            "top1": spread,
            "top3_vote": spread,
        }
        for r in ("knn", "cascal")
    ]
    t = seeds_table(files)
    assert [r[3] for r in t.rows] == ["cascal", "knn"]  # the paper's router order
    assert t.rows[0][4:] == ["3", "50.0", "1.0", "49.0-52.0", "50.0"]
    skipped = {
        "labels": {"benchmark": "b", "pool": "p"},
        "estimators": {"dawid-skene": {"skipped": "compat"}},
    }
    e = estimators_table([skipped])
    assert e.rows == [["b", "p", "dawid-skene", "compat", "", "", "", ""]]
    for table in (t, e):
        paths = table.write(tmp_path)
        assert [p.suffix for p in paths] == [".md", ".csv", ".tex"] and all(p.read_text() for p in paths)
