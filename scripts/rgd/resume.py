"""The same command resumes a workflow whose Snakemake driver was killed (SIGKILL, OOM, a closed
login session).

Such a driver leaves two things behind: the "incomplete" marks of the jobs it was running, which
the profiles answer with `rerun-incomplete: true` (outputs are written atomically and the long
steps resume from their record caches, so rerunning those jobs is safe), and its lock on the
working directory, which Snakemake keeps until `--unlock`. This module tells a stale lock from a
live one, so that the Snakefile can drop only the stale one:

- while a driver runs it is recorded in `.snakemake/rgd-driver.json` (host, pid, process start
  time; written by the Snakefile's onstart handler, removed when the run ends);
- a lock is stale when no process on this host that runs Snakemake has the working directory as
  its current directory, and no recorded driver of another host exists (a driver there cannot be
  seen from here, so its lock is left alone).

Linux only (/proc); elsewhere locks are never removed and Snakemake's own message stands.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

RECORD = Path(".snakemake") / "rgd-driver.json"
LOCKS = Path(".snakemake") / "locks"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), which
    tells a live driver from a later process that reuses its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def record_driver(workdir: str | os.PathLike = ".") -> None:
    """Write the driver record (onstart)."""
    path = Path(workdir) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(me))
    os.replace(tmp, path)


def forget_driver(workdir: str | os.PathLike = ".") -> None:
    """Remove the driver record (onsuccess, onerror)."""
    try:
        (Path(workdir) / RECORD).unlink()
    except FileNotFoundError:
        pass


def _is_driver_in(pid: int, here: str) -> bool:
    """Is `pid` a Snakemake driver (not one of its jobs, which run `--mode remote|subprocess`)
    working in `here`? Started as a script (`.../bin/snakemake`) or as `python -m snakemake`."""
    try:
        if os.path.realpath(f"/proc/{pid}/cwd") != here:
            return False
        argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except OSError:
        return False
    head = argv[:3]
    started = any(Path(a).name.startswith("snakemake") for a in head[:2]) or head[1:3] == ["-m", "snakemake"]
    mode = argv[argv.index("--mode") + 1] if "--mode" in argv[:-1] else "default"
    return started and mode == "default"


def live_drivers(workdir: str | os.PathLike = ".") -> list[int]:
    """Pids of the other Snakemake processes on this host working in `workdir`, this process's
    ancestors included (a job's own `snakemake --report`, say, runs under a live driver)."""
    here = os.path.realpath(workdir)
    me = os.getpid()
    return [
        int(e.name)
        for e in Path("/proc").iterdir()
        if e.name.isdigit() and int(e.name) != me and _is_driver_in(int(e.name), here)
    ]


def clear_stale_locks(workdir: str | os.PathLike = ".") -> str | None:
    """Remove the working directory's Snakemake locks if no driver holding them can be alive;
    return what was done (or why not), None when there is no lock."""
    workdir = Path(workdir)
    locks = sorted((workdir / LOCKS).glob("*.lock"))
    if not locks or not Path("/proc/self/stat").exists():
        return None
    record = {}
    try:
        record = json.loads((workdir / RECORD).read_text())
    except (OSError, ValueError):
        pass
    host = socket.gethostname()
    if record.get("host") not in (None, host):
        return (
            f"rgd: the lock in {workdir / LOCKS} may belong to a Snakemake run on {record['host']} "
            f"(pid {record.get('pid')}); left in place"
        )
    alive = live_drivers(workdir)
    if alive:
        return None  # a live run: Snakemake's own "cannot be locked" message is the right answer
    pid = record.get("pid")
    if pid is not None and record.get("start") is not None and _start_time(int(pid)) == record["start"]:
        return None  # the recorded driver still runs (from another directory); leave its lock
    for lock in locks:
        lock.unlink(missing_ok=True)
    forget_driver(workdir)
    who = f" (pid {pid})" if pid is not None else ""
    return f"rgd: removed the lock left by a Snakemake run that no longer runs{who}; resuming"
