"""An append-only record cache that makes long steps resumable.

Finished records are appended in chunks (flushed and fsync'ed), each under a content key:
a hash of everything that determines the result (model identity and revision, chat-template
hash, sampling settings, prompt). A job killed at any point restarts, reads what is there,
and computes only the missing keys. A torn last line (the kill came mid-write) is ignored.
Records under keys the current run does not ask for are left alone, never reused.

One writer at a time: a cache is opened under an exclusive lock on `<cache>.lock`, held until the
process ends. A job started while another process still writes the same cache (the orphan of a
killed workflow driver, say) waits for it, then reads what it wrote: the work is never done twice
and no record is appended twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from .io import dumps, sha256_text


def content_key(*parts: object) -> str:
    return sha256_text(dumps(list(parts)))[:32]


class RecordCache:
    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        """`readonly`: only read what is there (no lock; `add` refuses), e.g. to inspect a cache."""
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.torn_lines = 0
        self.readonly = readonly
        if not readonly:
            self._lock = _exclusive(self.path.with_name(self.path.name + ".lock"))
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as fh:
            for raw in fh:
                try:
                    entry = json.loads(raw.decode("utf-8"))
                    self.records[entry["key"]] = entry["record"]
                except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, RecursionError):
                    self.torn_lines += 1  # only a kill mid-write produces these

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, items: Iterable[tuple[str, dict]]) -> None:
        if self.readonly:
            raise RuntimeError(f"{self.path}: opened read-only")
        items = list(items)
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a torn final line must not glue onto the next record: start on a fresh line
        prefix = ""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                prefix = "" if fh.read(1) == b"\n" else "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(prefix + "".join(dumps({"key": k, "record": r}) + "\n" for k, r in items))
            fh.flush()
            os.fsync(fh.fileno())
        self.records.update(items)


_HELD: dict[str, object] = {}  # lock files this process holds (flock would block on a second open)


def _exclusive(path: Path):
    """An open file holding an exclusive lock on `path`; waits (saying for whom) while another
    process holds it. The lock goes with the process, however it ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(path)
    if key in _HELD:
        return _HELD[key]
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        print(f"{path.name}: held by {holder}; waiting for it to finish", file=sys.stderr, flush=True)
        fcntl.flock(fh, fcntl.LOCK_EX)
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    _HELD[key] = fh
    return fh
