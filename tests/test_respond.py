"""The inference step: output contract, and resume after SIGKILL without loss or duplication."""

import json
import os
import signal
import subprocess
import sys
import time

from rgd.backends.base import LocalBackend
from rgd.io import read_jsonl, write_jsonl
from rgd.records import read_responses

N = 40


def _questions(path, n=N):
    write_jsonl(
        path,
        [
            {
                "id": f"q{i:03d}",
                "category": "c" + str(i % 3),
                "question": f"Question number {i}: which option is right?" + " pad" * (i % 7),
                "options": ["alpha", "beta", "gamma", "delta"][: 2 + i % 3],
            }
            for i in range(n)
        ],
    )
    return path


def _cmd(tmp_path, model, questions, tag, spec):
    return [
        sys.executable,
        "-m",
        "rgd.cli",
        "respond",
        "--questions",
        str(questions),
        "--expert",
        "e1",
        "--spec",
        json.dumps(spec),
        "--model-dir",
        str(model),
        "--out",
        str(tmp_path / f"{tag}.jsonl"),
        "--meta",
        str(tmp_path / f"{tag}.meta.json"),
        "--cache",
        str(tmp_path / f"{tag}.cache.jsonl"),
        "--run-record",
        str(tmp_path / f"{tag}.run.json"),
    ]


def _run_record(tmp_path, tag) -> dict:
    """This run's cache counts and timings: in the run record, not in the (archived) .meta.json."""
    return json.loads((tmp_path / f"{tag}.run.json").read_text())


def test_letter_mode_contract(tmp_path, tiny_model):
    q = _questions(tmp_path / "q.jsonl", 6)
    spec = {"model": "tiny", "style": "plain", "mode": "letter", "batch_size": 4}
    subprocess.run(_cmd(tmp_path, tiny_model, q, "a", spec), check=True, capture_output=True)
    recs = read_responses(tmp_path / "a.jsonl")
    assert [r["id"] for r in recs] == [f"q{i:03d}" for i in range(6)]
    for r in recs:
        assert r["status"] == "ok" and r["choice"] in "ABCD" and r["confidence"] < 0
        assert len(r["letter_logprobs"] if "letter_logprobs" in r else r["extra"]["letter_logprobs"]) >= 2
    meta = json.loads((tmp_path / "a.meta.json").read_text())
    run = _run_record(tmp_path, "a")
    assert run["n_computed"] == 6 and meta["model"]["source"]["kind"] == "tiny-random"
    assert run["step"] == "respond" and run["throughput"]["compute_seconds"] >= 0
    assert not {"n_computed", "n_cached"} & set(meta) and "compute_seconds" not in meta["throughput"]
    assert meta["throughput"]["prompt_tokens"] > 0 and "torch" in meta["versions"]
    assert meta["engine"] == {
        "backend": "transformers",
        "device": "cpu",
        "dtype": "float32",
        "letter_batching": "shared-prefix",
        "batch_size": 4,
    }


def test_registry_dtype_reaches_the_transformers_backend(tmp_path, tiny_model):
    """`engine.dtype` in the spec (the model registry's dtype) loads the weights in it; the
    records are keyed apart from float32 ones, so one cache never mixes them."""
    q = _questions(tmp_path / "q.jsonl", 4)
    spec = {"model": "tiny", "style": "plain", "mode": "letter", "batch_size": 4}
    for tag, extra in (("fp", {}), ("bf", {"engine": {"dtype": "bfloat16"}})):
        cmd = _cmd(tmp_path, tiny_model, q, tag, {**spec, **extra})
        cmd[cmd.index("--cache") + 1] = str(tmp_path / "shared.cache.jsonl")
        subprocess.run(cmd, check=True, capture_output=True)
    bf, run = json.loads((tmp_path / "bf.meta.json").read_text()), _run_record(tmp_path, "bf")
    assert bf["engine"]["dtype"] == "bfloat16" and run["n_computed"] == 4 and run["n_cached"] == 0


def test_cot_mode_records_unparsed_outputs_with_a_reason(tmp_path, tiny_model):
    q = _questions(tmp_path / "q.jsonl", 4)
    spec = {
        "model": "tiny",
        "style": "chat",
        "mode": "cot",
        "batch_size": 2,
        "sampling": {"temperature": 0.7, "max_new_tokens": 8, "seed": 1},
    }
    subprocess.run(_cmd(tmp_path, tiny_model, q, "c", spec), check=True, capture_output=True)
    for r in read_responses(tmp_path / "c.jsonl"):
        assert r["text"] is not None and r["n_output_tokens"] > 0
        assert (r["choice"] is None) == (r["status"] != "ok")
        if r["choice"] is None:
            assert r["reason"]


def test_sigkill_then_resume_is_byte_identical(tmp_path, tiny_model):
    q = _questions(tmp_path / "q.jsonl")
    spec = {
        "model": "tiny",
        "style": "plain",
        "mode": "cot",
        "batch_size": 2,
        "sampling": {"temperature": 0.8, "max_new_tokens": 24, "seed": 3},
    }
    subprocess.run(_cmd(tmp_path, tiny_model, q, "ref", spec), check=True, capture_output=True)

    cache = tmp_path / "run.cache.jsonl"
    proc = subprocess.Popen(
        _cmd(tmp_path, tiny_model, q, "run", spec), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 6):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_jsonl(cache)) if cache.exists() else 0
    assert 0 < done_before < N, "the kill must land mid-run"
    assert not (tmp_path / "run.jsonl").exists()  # no half-written output

    subprocess.run(_cmd(tmp_path, tiny_model, q, "run", spec), check=True, capture_output=True, text=True)
    meta = _run_record(tmp_path, "run")
    assert meta["n_cached"] >= done_before - 1 and meta["n_cached"] + meta["n_computed"] == N
    assert (tmp_path / "run.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    keys = []
    for line in cache.read_text().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except json.JSONDecodeError:
            pass  # a line torn by the kill is ignored by the cache, and by this count
    assert len(keys) == len(set(keys)) == N  # nothing computed twice


def test_progress_lines_in_the_log_count_cached_records(tmp_path, tiny_model):
    q = _questions(tmp_path / "q.jsonl", 6)
    spec = {"model": "tiny", "style": "plain", "mode": "letter", "batch_size": 4}
    first = subprocess.run(
        _cmd(tmp_path, tiny_model, q, "a", spec), check=True, capture_output=True, text=True
    )
    assert "[e1] done: 6/6 questions (0 cached, 6 computed) in " in first.stdout
    again = subprocess.run(
        _cmd(tmp_path, tiny_model, q, "a", spec), check=True, capture_output=True, text=True
    )
    assert "[e1] done: 6/6 questions (6 cached, 0 computed) in " in again.stdout


def test_progress_every_batch_with_rate_and_time_left(tmp_path, tiny_model, monkeypatch, capsys):
    from rgd import progress
    from rgd.respond import Expert, run

    monkeypatch.setattr(progress, "EVERY_SECONDS", 0.0)  # a line per update
    q = _questions(tmp_path / "q.jsonl", 10)
    run(
        q,
        Expert("e1", "tiny", "plain", batch_size=4),
        tiny_model,
        tmp_path / "o.jsonl",
        tmp_path / "m.json",
        tmp_path / "c.jsonl",
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[e1]")]
    assert [line.split(" (")[0] for line in lines] == [
        "[e1] 4/10 questions",
        "[e1] 8/10 questions",
        "[e1] 10/10 questions",
        "[e1] done: 10/10 questions",
    ]
    assert lines[0].startswith("[e1] 4/10 questions (0 cached, 4 computed), ") and lines[0].endswith(" left")
    assert "questions/s" in lines[0] or " s per question" in lines[0]


class _StreamingBackend(LocalBackend):
    """The streaming backend interface (as VLLMBackend offers it), answering 'B' to everything."""

    name, streams = "streaming-double", True

    @classmethod
    def create(cls, model_dir, settings, log=None):
        return cls()

    def render(self, prompt):
        return prompt.get("text") or str(prompt)

    def score_letters(self, prompts, n_options):
        raise AssertionError("a streaming backend is sent every prompt at once")

    def generate(self, prompts, sampling, logprobs=True, stop=None):
        raise AssertionError("a streaming backend is sent every prompt at once")

    def stream_letters(self, prompts, n_options):
        for j, n in enumerate(n_options):
            yield j, ([-2.0, -0.5] + [-3.0] * (n - 2), 7)


def test_streaming_path_reports_progress_with_cached_records(tmp_path):
    from rgd.cache import RecordCache
    from rgd.records import read_questions
    from rgd.respond import Expert, respond

    qs = read_questions(_questions(tmp_path / "q.jsonl", 9))
    expert = Expert("e1", "m", "plain", batch_size=4)
    lines = []
    respond(qs[:5], expert, _StreamingBackend(), RecordCache(tmp_path / "c.jsonl"), {"m": 1}, lines.append)
    assert lines[-1].startswith("[e1] done: 5/5 questions (0 cached, 5 computed) in ")
    lines.clear()
    res, meta = respond(
        qs, expert, _StreamingBackend(), RecordCache(tmp_path / "c.jsonl"), {"m": 1}, lines.append
    )
    assert lines[-1].startswith("[e1] done: 9/9 questions (5 cached, 4 computed) in ")
    assert meta["n_cached"] == 5 and meta["n_computed"] == 4 and {r.choice for r in res} == {"B"}
