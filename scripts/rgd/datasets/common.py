"""Shared machinery for the benchmark downloaders and formatters.

Two steps per benchmark, kept apart so that the network step is small and cacheable:

* ``download(out_dir, revision, **opts)`` fetches the raw upstream files at a pinned commit
  into ``out_dir`` and writes ``out_dir/source.json`` (repo, revision, sha256 of every file).
  The directory appears atomically: it is built under a temporary name beside ``out_dir`` and
  renamed into place only once every file and the stamp are written.
* ``format(raw_dir, **opts)`` turns those raw files into ``(questions, keys)`` records, with no
  network access. Malformed upstream data raises :class:`rgd.io.InputError` naming the file,
  the row and the field.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..io import InputError, iter_jsonl, read_json, sha256_file, write_json, write_jsonl
from ..records import LETTERS, validate_key, validate_question

STAMP = "source.json"
_SHA = re.compile(r"[0-9a-f]{40}")


class DownloadError(RuntimeError):
    """Fetching upstream data failed (network, missing file, checksum, unpinned revision)."""


# ------------------------------------------------------------------------------------------
# text


_LINE_BREAKS = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n", "\ufeff": None, "\u200b": None})


def clean_text(s: str) -> str:
    """The original's string sanitiser: CRLF/CR/U+2028/U+2029 become \\n; U+FEFF and U+200B go."""
    return s.replace("\r\n", "\n").translate(_LINE_BREAKS)


def letter(index: int) -> str:
    return LETTERS[index]


# ------------------------------------------------------------------------------------------
# locating errors in rows


class Row:
    """Where one upstream record lives, for error messages.

    JSONL rows are located by line (``file.jsonl:12: field: ...``), parquet rows by their
    0-based row index in the file (``file.parquet[row 11]: field: ...``), JSON list items by
    a path such as ``examples[3]`` (``task.json: examples[3].target: ...``).
    """

    __slots__ = ("path", "line", "row", "item")

    def __init__(
        self, path: Path, *, line: int | None = None, row: int | None = None, item: str | None = None
    ):
        self.path, self.line, self.row, self.item = path, line, row, item

    def error(self, field: str, message: str) -> InputError:
        path: str | Path = self.path
        if self.row is not None:
            path = f"{self.path}[row {self.row}]"
        if self.item is not None:
            field = f"{self.item}.{field}"
        return InputError(path, self.line, field, message)


def need_str(rec: dict, key: str, at: Row, *, allow_empty: bool = False) -> str:
    if key not in rec or rec[key] is None:
        raise at.error(key, "missing")
    v = rec[key]
    if not isinstance(v, str):
        raise at.error(key, f"expected a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise at.error(key, "empty")
    return v


def need_int(rec: dict, key: str, at: Row) -> int:
    if key not in rec or rec[key] is None:
        raise at.error(key, "missing")
    v = rec[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise at.error(key, f"expected an integer, got {type(v).__name__} {v!r}")
    return v


def need_options(values: Any, key: str, at: Row) -> list[str]:
    """A list of 2..26 non-empty strings, sanitised."""
    if values is None:
        raise at.error(key, "missing")
    if not isinstance(values, (list, tuple)):
        raise at.error(key, f"expected a list of strings, got {type(values).__name__}")
    if not 2 <= len(values) <= len(LETTERS):
        raise at.error(key, f"need 2..{len(LETTERS)} options, got {len(values)}")
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise at.error(f"{key}[{i}]", f"expected a string, got {type(v).__name__}")
        if not v.strip():
            raise at.error(f"{key}[{i}]", "empty option")
        out.append(clean_text(v))
    return out


def need_letter(value: Any, key: str, n_options: int, at: Row) -> str:
    """A single capital letter naming one of the `n_options` options."""
    if value is None:
        raise at.error(key, "missing")
    if not isinstance(value, str) or len(value.strip()) != 1 or value.strip() not in LETTERS:
        raise at.error(key, f"expected one capital letter, got {value!r}")
    a = value.strip()
    if LETTERS.index(a) >= n_options:
        raise at.error(key, f"{a!r} is outside the {n_options} options (A..{LETTERS[n_options - 1]})")
    return a


def upstream_id(value: Any, key: str, at: Row) -> str:
    """An upstream identifier (int or non-empty string) as a string."""
    if value is None:
        raise at.error(key, "missing")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, str))
        or (isinstance(value, str) and not value.strip())
    ):
        raise at.error(key, f"expected an integer or a non-empty string, got {value!r}")
    return str(value)


def drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def question_record(rec: dict, at: Row, qid: str, options: list[str], category: str, meta: dict) -> dict:
    """A question from an upstream row: its category (from column `category`) and question text,
    sanitised, and `meta` without its unset fields (no `meta` at all when none is set)."""
    q = {
        "id": qid,
        "category": clean_text(need_str(rec, category, at)),
        "question": clean_text(need_str(rec, "question", at)),
        "options": options,
    }
    meta = drop_none(meta)
    if meta:
        q["meta"] = meta
    return q


# ------------------------------------------------------------------------------------------
# raw files


def find_files(raw_dir: Path, patterns: Sequence[str]) -> list[Path]:
    """Files under raw_dir whose relative POSIX path matches any pattern, sorted by that path."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise InputError(raw_dir, None, None, "raw data directory not found (run the download step first)")
    found = []
    for p in raw_dir.rglob("*"):
        rel = p.relative_to(raw_dir).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(raw_dir).parts):
            if any(fnmatch.fnmatchcase(rel, pat) for pat in patterns):
                found.append((rel, p))
    if not found:
        raise InputError(raw_dir, None, None, f"no raw file matches {list(patterns)}")
    return [p for _, p in sorted(found)]


def iter_parquet(
    path: Path, required: Sequence[str] = (), batch_size: int = 4096
) -> Iterator[tuple[Row, dict]]:
    """Yield (location, row dict) for each row of a parquet file, in file order; every column
    named in `required` must exist (values may still be null: callers check them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        missing = [c for c in required if c not in names]
        if missing:
            raise InputError(path, None, missing[0], f"column missing (file has {sorted(names)})")
        i = 0
        for batch in pf.iter_batches(batch_size=batch_size):
            for rec in batch.to_pylist():
                yield Row(path, row=i), rec
                i += 1
    except FileNotFoundError:
        raise InputError(path, None, None, "file not found") from None
    except (pa.ArrowException, OSError) as e:
        raise InputError(path, None, None, f"unreadable parquet: {e}") from None


def iter_table(path: Path, required: Sequence[str] = ()) -> Iterator[tuple[Row, dict]]:
    """Rows of a .parquet or .jsonl file, in file order, with their locations."""
    path = Path(path)
    if path.suffix == ".parquet":
        yield from iter_parquet(path, required)
    elif path.suffix == ".jsonl":
        for lineno, rec in iter_jsonl(path):
            yield Row(path, line=lineno), rec
    else:
        raise InputError(path, None, None, "expected a .parquet or .jsonl file")


def hub_rows(
    raw_dir: Path, patterns: Sequence[str], required: Sequence[str] = ()
) -> Iterator[tuple[Row, dict]]:
    """The rows of a downloaded benchmark, file by file in path order, once its stamp is verified."""
    raw_dir = Path(raw_dir)
    verify_stamp(raw_dir)
    for path in find_files(raw_dir, patterns):
        yield from iter_table(path, required)


def verify_stamp(raw_dir: Path) -> dict | None:
    """If raw_dir has a source.json, check every file it lists is present and unchanged."""
    stamp_path = Path(raw_dir) / STAMP
    if not stamp_path.exists():
        return None
    stamp = read_json(stamp_path)
    files = stamp.get("files") if isinstance(stamp, dict) else None
    if not isinstance(files, list):
        raise InputError(stamp_path, None, "files", "missing or not a list")
    for i, f in enumerate(files):
        if (
            not isinstance(f, dict)
            or not isinstance(f.get("path"), str)
            or not isinstance(f.get("sha256"), str)
        ):
            raise InputError(stamp_path, None, f"files[{i}]", "expected {path, sha256}")
        p = Path(raw_dir) / f["path"]
        if not p.is_file():
            raise InputError(stamp_path, None, f"files[{i}]", f"{f['path']} is listed but missing")
        if sha256_file(p) != f["sha256"]:
            raise InputError(
                p, None, None, f"sha256 differs from {STAMP}: the raw file changed after download"
            )
    return stamp


# ------------------------------------------------------------------------------------------
# downloading


def require_pinned(revision: str | None, *, allow_unpinned: bool = False, what: str = "revision") -> str:
    """A download revision must be a full 40-hex commit sha unless explicitly allowed otherwise."""
    if not isinstance(revision, str) or not revision.strip():
        raise DownloadError(f"{what}: a commit sha is required, got {revision!r}")
    if not _SHA.fullmatch(revision) and not allow_unpinned:
        raise DownloadError(
            f"{what}: {revision!r} is not a pinned commit (40 lowercase hex digits); pin a commit sha "
            "so the data cannot change under you, or pass allow_unpinned=True to fetch a moving ref"
        )
    return revision


@contextlib.contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside out_dir; on success it replaces out_dir."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield tmp
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.rmdir(old)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_stamp(stage: Path, files: Iterable[str], **fields: Any) -> dict:
    """Write stage/source.json: the given fields plus {path, sha256, bytes} for each file."""
    entries = []
    for rel in sorted(files):
        p = stage / rel
        entries.append({"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size})
    stamp = {**fields, "files": entries}
    write_json(stage / STAMP, stamp)
    return stamp


def check_sha256(path: Path, rel: str, expected: dict[str, str] | None, origin: str) -> None:
    if not expected or rel not in expected:
        return
    got = sha256_file(path)
    if got != expected[rel]:
        raise DownloadError(
            f"{origin}: {rel}: sha256 {got} differs from the expected {expected[rel]}; the upstream file "
            "is not the one this revision was pinned with (pass expected_sha256={} to skip this check)"
        )


def hub_downloader(
    repo: str,
    revision: str,
    patterns: Sequence[str],
    split: str | None,
    known_sha256: dict[str, str],
    what: str,
):
    """The `download` function of one Hugging Face benchmark: `hf_download` with the module's pinned
    defaults, checking `known_sha256` only when the default repo and revision are fetched."""
    default_repo, default_revision = repo, revision

    def download(
        out_dir: Path,
        revision: str = default_revision,
        *,
        repo: str = default_repo,
        patterns: Sequence[str] = patterns,
        expected_sha256: dict[str, str] | None = None,
        **opts,
    ) -> Path:
        if expected_sha256 is None:
            expected_sha256 = known_sha256 if (repo, revision) == (default_repo, default_revision) else {}
        return hf_download(
            out_dir,
            repo=repo,
            revision=revision,
            patterns=patterns,
            split=split,
            expected_sha256=expected_sha256,
            **opts,
        )

    download.__doc__ = f"Fetch the raw {what} of `repo` at commit `revision` into out_dir."
    return download


def hf_download(
    out_dir: Path,
    *,
    repo: str,
    revision: str,
    patterns: Sequence[str],
    split: str | None = None,
    expected_sha256: dict[str, str] | None = None,
    allow_unpinned: bool = False,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Fetch the files of HF dataset `repo` at `revision` whose paths match `patterns`.

    Files go through the normal huggingface_hub cache and are copied into out_dir under their
    repository paths, so out_dir holds exactly the raw upstream files plus source.json.
    """
    require_pinned(revision, allow_unpinned=allow_unpinned)
    try:
        import huggingface_hub
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DownloadError(f"huggingface_hub is needed to download {repo}: {e}") from None

    origin = f"huggingface.co/datasets/{repo}@{revision}"
    try:
        listing = huggingface_hub.list_repo_files(repo, repo_type="dataset", revision=revision, token=token)
    except Exception as e:  # the hub raises many exception types; all mean "cannot list"
        raise DownloadError(f"{origin}: cannot list the repository files: {type(e).__name__}: {e}") from e
    chosen = sorted(f for f in listing if any(fnmatch.fnmatchcase(f, p) for p in patterns))
    if not chosen:
        raise DownloadError(
            f"{origin}: no file matches {list(patterns)}; the repository has {sorted(listing)}"
        )

    with staged_dir(out_dir) as stage:
        for rel in chosen:
            try:
                src = huggingface_hub.hf_hub_download(
                    repo, rel, repo_type="dataset", revision=revision, token=token, cache_dir=cache_dir
                )
            except Exception as e:
                raise DownloadError(f"{origin}: cannot download {rel}: {type(e).__name__}: {e}") from e
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            check_sha256(dst, rel, expected_sha256, origin)
        write_stamp(
            stage,
            chosen,
            source="huggingface",
            repo=repo,
            repo_type="dataset",
            revision=revision,
            split=split,
        )
    return Path(out_dir)


# ------------------------------------------------------------------------------------------
# formatting to files


def resolve_format(benchmark: str | Callable[..., tuple[list[dict], list[dict]]]) -> Callable:
    if callable(benchmark):
        return benchmark
    from . import BENCHMARKS  # late import: the registry imports this module

    try:
        return BENCHMARKS[benchmark].format
    except KeyError:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {sorted(BENCHMARKS)}") from None


def format_options(benchmark: str, options: dict, where: str = "--options") -> dict:
    """Check `rgd format --options` against the benchmark's format function (its keyword
    arguments and their annotations) before any raw file is read."""
    import dataclasses
    import inspect

    from ..spec import SpecError, parse

    try:
        fmt = resolve_format(benchmark)
    except ValueError as e:
        raise SpecError("--benchmark", None, str(e)) from None
    params = [p for p in inspect.signature(fmt).parameters.values() if p.kind is p.KEYWORD_ONLY]
    ann = inspect.get_annotations(fmt, eval_str=True)
    cls = dataclasses.make_dataclass(
        f"{benchmark}_options",
        [(p.name, ann.get(p.name, Any), dataclasses.field(default=p.default)) for p in params],
    )
    parsed = parse(cls, options, where)
    return {k: getattr(parsed, k) for k in options}


def check_records(questions: list[dict], keys: list[dict], origin: str | Path) -> None:
    """Validate formatted records: schema, unique ids, one key per question, key within options."""
    if len(questions) != len(keys):
        raise InputError(origin, None, None, f"{len(questions)} questions but {len(keys)} keys")
    if not questions:
        raise InputError(origin, None, None, "no questions formatted")
    seen: set[str] = set()
    for i, (q, k) in enumerate(zip(questions, keys)):
        for validate, rec, kind in ((validate_question, q, "question"), (validate_key, k, "key")):
            try:
                validate(rec)
            except ValueError as e:
                field, _, msg = str(e).partition(": ")
                raise InputError(origin, None, f"{kind} {rec.get('id')!r} {field}", msg or field) from None
        if q["id"] in seen:
            raise InputError(origin, None, "id", f"duplicate id {q['id']!r}")
        seen.add(q["id"])
        if k["id"] != q["id"]:
            raise InputError(origin, None, "id", f"key #{i} is for {k['id']!r}, question #{i} is {q['id']!r}")
        if LETTERS.index(k["answer"]) >= len(q["options"]):
            raise InputError(
                origin,
                None,
                "answer",
                f"{q['id']!r}: {k['answer']!r} is outside the {len(q['options'])} options",
            )


def format_to_files(
    raw_dir: str | Path,
    questions_out: str | Path,
    keys_out: str | Path,
    benchmark: str | Callable[..., tuple[list[dict], list[dict]]],
    **opts: Any,
) -> int:
    """Format raw_dir with `benchmark` (a registry name or a format function), validate every
    record, and write questions.jsonl and keys.jsonl (each atomically). Returns the count."""
    fmt = resolve_format(benchmark)
    questions, keys = fmt(Path(raw_dir), **opts)
    check_records(questions, keys, raw_dir)
    write_jsonl(questions_out, questions)
    write_jsonl(keys_out, keys)
    return len(questions)
