"""rgd.resume: a killed driver's lock is stale, a live driver's is not (real processes, real /proc).

The end-to-end proof, SIGKILL of snakemake mid-inference and the same command again, is in
tests/test_workflow.py (local) and tests/test_slurm.py (through the SLURM profile).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rgd import resume

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def locked(work: Path) -> Path:
    locks = work / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("a\n")
    (locks / "0.output.lock").write_text("b\n")
    return locks


def fake_snakemake(tmp: Path, cwd: Path, *args: str) -> subprocess.Popen:
    """A process that looks like Snakemake in /proc: a script named `snakemake`, run in `cwd`."""
    script = tmp / "bin" / "snakemake"
    script.parent.mkdir(exist_ok=True)
    script.write_text("import time\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, str(script), *args], cwd=cwd)
    time.sleep(0.2)
    return p


def test_no_lock_nothing_to_do(tmp_path):
    assert resume.clear_stale_locks(tmp_path) is None


def test_a_lock_without_a_live_driver_is_removed(tmp_path):
    locks = locked(tmp_path)
    note = resume.clear_stale_locks(tmp_path)
    assert note and "removed the lock" in note
    assert not list(locks.glob("*.lock"))


def test_a_live_driver_keeps_its_lock(tmp_path):
    locks = locked(tmp_path)
    p = fake_snakemake(tmp_path, tmp_path, "--cores", "2")
    try:
        assert resume.live_drivers(tmp_path) == [p.pid]
        assert resume.clear_stale_locks(tmp_path) is None
        assert len(list(locks.glob("*.lock"))) == 2
    finally:
        p.kill()
        p.wait()
    assert resume.clear_stale_locks(tmp_path) and not list(locks.glob("*.lock"))


def test_a_job_process_is_not_a_driver(tmp_path):
    """A SLURM or local job re-runs Snakemake with --mode remote/subprocess: it holds no lock."""
    p = fake_snakemake(tmp_path, tmp_path, "--mode", "remote", "--target-jobs", "x")
    try:
        assert resume.live_drivers(tmp_path) == []
    finally:
        p.kill()
        p.wait()


def test_a_driver_elsewhere_does_not_count(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    p = fake_snakemake(tmp_path, other)
    try:
        assert resume.live_drivers(tmp_path) == []
    finally:
        p.kill()
        p.wait()


def test_records_decide_what_cannot_be_seen(tmp_path):
    locks = locked(tmp_path)
    record = tmp_path / resume.RECORD
    # a driver recorded on another host: its lock cannot be judged from here
    record.write_text(json.dumps({"host": "elsewhere", "pid": 1, "start": "1"}))
    note = resume.clear_stale_locks(tmp_path)
    assert "elsewhere" in note and "left in place" in note and len(list(locks.glob("*.lock"))) == 2
    # the recorded driver still runs (same pid, same start time): keep
    resume.record_driver(tmp_path)
    assert resume.clear_stale_locks(tmp_path) is None and len(list(locks.glob("*.lock"))) == 2
    # the recorded pid is reused by a later process (start time differs): stale
    rec = json.loads(record.read_text())
    record.write_text(json.dumps({**rec, "start": "0"}))
    assert "removed the lock" in resume.clear_stale_locks(tmp_path)
    assert not record.exists() and not list(locks.glob("*.lock"))
    resume.forget_driver(tmp_path)  # no record: nothing to do, no error
