"""File I/O shared by every step: atomic writes, strict reading with located errors.

Every output is written to a temporary file in the target directory and renamed into
place, so a killed job never leaves a half-written file that Snakemake would take as done.

Every reader here turns what can go wrong with a file the user named (missing, a directory,
unreadable, not UTF-8, malformed JSON/YAML, a truncated .npz) into one `InputError`
`file[:line]: field: message`; `rgd.cli` prints it as one line and exits 2.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """Bad input, located precisely: `file:line: field: message`."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field = str(path), line, field
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class SetupError(RuntimeError):
    """The environment lacks something a step needs (a package, a model): one line, exit 2."""


_warning_prefix = "warning: "


def set_warning_prefix(prefix: str) -> None:
    global _warning_prefix
    _warning_prefix = prefix


def warn(message: str) -> None:
    """A counted, recorded condition that is not an error (e.g. an empty generated set): one line
    on stderr; the step also records it in its output metadata where it has any."""
    import sys

    print(f"{_warning_prefix}{message}", file=sys.stderr, flush=True)


_OS_REASONS = {
    errno.ENOENT: "file not found",
    errno.EISDIR: "is a directory, expected a file",
    errno.ENOTDIR: "a parent of this path is a file, not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EEXIST: "a parent of this path is a file, not a directory",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENXIO: "not a regular file (a socket or device)",
    errno.ENOSPC: "no space left on the device",
}


def os_input_error(path: str | os.PathLike, e: OSError, doing: str = "") -> InputError:
    """An OSError on a path the user gave, as an InputError naming that path."""
    reason = _OS_REASONS.get(e.errno, e.strerror or type(e).__name__)
    return InputError(path, None, None, f"{doing}{reason}" if doing else reason)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only on success."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, None, None, "cannot write: is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    except OSError as e:
        raise os_input_error(path, e, "cannot write: ") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, no ASCII escaping, so equal data gives equal bytes."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=2, allow_nan=False) + "\n")


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise os_input_error(path, e) from None


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file (a leading byte-order mark is dropped)."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(path, line, None, f"not UTF-8 (byte {e.start})") from None


# JSON nested deeper than this is refused: rgd's own records nest a few levels (chat messages with
# content parts: 4), and Python's parser, encoder and every recursive check have a stack limit
# (about 1,000 levels), so a line nested 100,000 deep would otherwise end in a RecursionError.
MAX_JSON_DEPTH = 100


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Is `value` (parsed JSON) nested more than `limit` levels? Iterative: no stack to overflow."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > limit:
                return True
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def loads_json(text: str, path: str | os.PathLike, line: int | None = None) -> Any:
    """`json.loads`, with every failure an InputError at `path` (and `line`, for JSONL): malformed
    JSON, and nesting over MAX_JSON_DEPTH levels (checked only when the text has that many
    brackets, so ordinary records pay one str.count)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, line or e.lineno, None, f"malformed JSON: {e.msg}") from None
    except RecursionError:
        value, deep = None, True
    else:
        opening = text.count("[") + text.count("{")
        deep = opening > MAX_JSON_DEPTH and nested_deeper_than(value, MAX_JSON_DEPTH)
    if deep:
        raise InputError(path, line, None, f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def text_lines(text: str) -> list[str]:
    """The lines of a text file as editors and `wc -l` count them: split at "\\n" only (a "\\r"
    before it is dropped). str.splitlines also splits at form feeds, U+2028 and other
    separators, so line numbers would no longer match the file's."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise InputError(path, None, None, "empty file, expected JSON")
    return loads_json(text, path)


def read_yaml(path: str | os.PathLike, unique_keys: bool = True) -> Any:
    """A YAML file (safe loader); with `unique_keys`, a key given twice in one mapping is an
    error naming both lines (PyYAML would silently keep the last value). An empty file is None."""
    import yaml

    path = Path(path)
    text = read_text(path)
    loader = _unique_key_loader() if unique_keys else yaml.SafeLoader
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise InputError(path, e.line, e.key, f"duplicate key (first on line {e.first})") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = e.problem or e.context or "syntax error"
        if e.context and e.context_mark and e.problem_mark:
            what += f" ({e.context} on line {e.context_mark.line + 1})"
        raise InputError(path, mark.line + 1 if mark else None, None, f"malformed YAML: {what}") from None
    except yaml.YAMLError as e:
        raise InputError(path, None, None, f"malformed YAML: {e}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise InputError(path, None, None, "YAML nested too deeply (about 1,000 levels or more)") from None


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        self.key, self.line, self.first = key, line, first


@functools.cache
def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:  # an unhashable key: the base class reports it
                        continue
                    if first is not None:
                        raise _DuplicateKey(str(key), key_node.start_mark.line + 1, first)
                    seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return Loader


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(dumps(rec) + "\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
    return n


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number in the file, record); blank lines are skipped, anything else must be a
    JSON object."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise os_input_error(path, e) from None
    with fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(path, lineno, None, f"not UTF-8 (byte {e.start})") from None
                if lineno == 1:
                    line = line.removeprefix("\ufeff")
                if not line.strip():
                    continue
                rec = loads_json(line, path, lineno)
                if not isinstance(rec, dict):
                    raise InputError(path, lineno, None, "expected a JSON object")
                yield lineno, rec
        except OSError as e:  # a directory opens on some systems and fails on read
            raise os_input_error(path, e) from None


def read_records(
    path: str | os.PathLike, validate: Callable[[dict], None] | None = None, records=None
) -> list[tuple[int, dict]]:
    """(line number, record) of a JSONL file; `validate(rec)` raises ValueError('field: message')
    to reject a record; ids must be unique. Line numbers are the file's lines (blank lines count).
    `records`: the (line, record) pairs of another reader of `path` (default iter_jsonl)."""
    out, seen = [], {}
    for lineno, rec in iter_jsonl(path) if records is None else records:
        if validate is not None:
            try:
                validate(rec)
            except ValueError as e:
                field, _, msg = str(e).partition(": ")
                raise InputError(path, lineno, field if msg else None, msg or field) from None
        rid = rec.get("id")
        if rid is not None:
            if rid in seen:
                raise InputError(path, lineno, "id", f"duplicate id {rid!r} (first on line {seen[rid]})")
            seen[rid] = lineno
        out.append((lineno, rec))
    return out


def read_jsonl(path: str | os.PathLike, validate: Callable[[dict], None] | None = None) -> list[dict]:
    """Read a JSONL file; `validate(rec)` raises ValueError('field: message') to reject a record."""
    return [rec for _, rec in read_records(path, validate)]


_NOT_NPZ = "not a readable .npz archive (truncated, corrupt or another format)"


def read_npz(path: str | os.PathLike, required: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Every array of an .npz file (no pickles), read whole; a missing, truncated or foreign
    file, or one without a `required` array, is an InputError."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise InputError(path, None, None, "not an .npz archive (a single .npy array)")
        with z:
            arrays = {k: z[k] for k in z.files}
    except InputError:
        raise
    except OSError as e:
        if e.errno is not None:
            raise os_input_error(path, e) from None
        raise InputError(path, None, None, _NOT_NPZ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
        raise InputError(path, None, None, _NOT_NPZ) from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise InputError(path, None, missing[0], f"array missing (the file has {sorted(arrays) or 'none'})")
    return arrays


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
