"""Faults: a killed local generation resumes without loss or duplication; a failed write (disk
full) leaves no half-written output that Snakemake could take as complete."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from rgd import io
from rgd.io import write_jsonl

N_PROMPTS = 24


def _gen_cmd(tmp_path, model, seeds, desc, tag, spec):
    return [
        sys.executable,
        "-m",
        "rgd.cli",
        "generate",
        "--name",
        "g",
        "--spec",
        json.dumps(spec),
        "--seed-questions",
        str(seeds),
        "--descriptions",
        str(desc),
        "--model-dir",
        str(model),
        "--out-questions",
        str(tmp_path / f"{tag}.q.jsonl"),
        "--out-keys",
        str(tmp_path / f"{tag}.k.jsonl"),
        "--out-rejects",
        str(tmp_path / f"{tag}.r.jsonl"),
        "--out-meta",
        str(tmp_path / f"{tag}.meta.json"),
        "--cache",
        str(tmp_path / f"{tag}.cache.jsonl"),
        "--run-record",
        str(tmp_path / f"{tag}.run.json"),
    ]


def test_sigkill_during_local_generation_then_resume(tmp_path, tiny_model):
    seeds = tmp_path / "seeds.jsonl"
    write_jsonl(
        seeds,
        [{"id": f"s{i}", "category": "abc"[i % 3], "question": "?", "options": ["a", "b"]} for i in range(9)],
    )
    desc = tmp_path / "d.yaml"
    desc.write_text(yaml.safe_dump({"categories": {c: f"Questions about {c}." for c in "abc"}}))
    spec = {
        "model": "tiny",
        "style": "chat",
        "num_prompts": N_PROMPTS,
        "batch_size": 2,
        "sampling": {"temperature": 0.9, "max_new_tokens": 40},
        "seed": 4,
    }
    subprocess.run(_gen_cmd(tmp_path, tiny_model, seeds, desc, "ref", spec), check=True, capture_output=True)

    cache = tmp_path / "run.cache.jsonl"
    proc = subprocess.Popen(
        _gen_cmd(tmp_path, tiny_model, seeds, desc, "run", spec),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 4):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_keys(cache))
    assert 0 < done < N_PROMPTS, "the kill must land mid-run"
    assert not (tmp_path / "run.q.jsonl").exists()

    subprocess.run(_gen_cmd(tmp_path, tiny_model, seeds, desc, "run", spec), check=True, capture_output=True)
    for suffix in ("q.jsonl", "k.jsonl", "r.jsonl"):
        assert (tmp_path / f"run.{suffix}").read_bytes() == (tmp_path / f"ref.{suffix}").read_bytes()
    keys = _keys(cache)
    assert len(keys) == len(set(keys)) == N_PROMPTS  # nothing lost, nothing computed twice
    run = json.loads((tmp_path / "run.run.json").read_text())  # this run's work: the run record, not the meta
    assert run["throughput"]["computed_prompts"] == N_PROMPTS - done


def _keys(cache):
    keys = []
    for line in cache.read_text().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except json.JSONDecodeError:
            pass  # a line torn by the kill: the cache ignores it too
    return keys


def test_disk_full_leaves_no_output(tmp_path, monkeypatch):
    out = tmp_path / "responses.jsonl"
    out.write_text("previous complete output\n")
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_jsonl(out, ({"id": str(i)} for i in range(1000)))
    monkeypatch.setattr(io.os, "fsync", real_fsync)
    # the old file is untouched and no temporary file is left behind
    assert out.read_text() == "previous complete output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["responses.jsonl"]
    fresh = tmp_path / "fresh.jsonl"
    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError):
        write_jsonl(fresh, [{"id": "x"}])
    assert not fresh.exists()
