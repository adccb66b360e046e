"""Verifying an archive, and saying what the check proved.

Two kinds of check, with different strength:

1. Internal consistency (always): every member matches its MANIFEST entry (sha256, size), nothing
   is missing or extra, SHA256SUMS is the MANIFEST's hashes, config/config.json has the config
   hash, the name and top folder carry it. This finds corruption and a careless edit. It cannot
   find a careful one: whoever edits a member can rewrite its MANIFEST and SHA256SUMS lines too.

2. The archive's own sha256 against an independent digest, which is what makes (1) mean
   anything against a careful edit:
   - `--sha256 HEX`, the digest published with the archive (a paper, a release page, a DOI
     record): a match proves the file is byte for byte the published archive, as far as the
     place it was published is trusted.
   - else `ARCHIVE.sha256`, the sidecar `rgd archive` writes next to the archive: a match proves
     the file is intact since the sidecar was written (a bad download, a disk error). It does not
     prove the archive is the published one: whoever edited the archive can regenerate the
     sidecar, or rename the archive so that none is found.
   - else nothing: only (1) was checked.
   `rgd verify` states which it used, and warns when it was the sidecar or nothing.

Strict mode (`strict=True`, `rgd verify --strict`) passes only with a published digest: it
fails when `--sha256` is not given, whether or not a sidecar is present.

Bounds: the metadata members (MANIFEST, SHA256SUMS, config/config.json) are refused above
MAX_METADATA_BYTES before any of their bytes are read (a small .tar.gz can inflate to gigabytes);
every member is hashed as a stream; SHA256SUMS is compared by its hash, never held in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..io import sha256_file
from .layout import (
    CHUNK,
    CONFIG_JSON,
    FORMAT,
    MANIFEST,
    MAX_MEMBERS,
    MAX_METADATA_BYTES,
    METADATA,
    SUMS,
    ArchiveError,
    archive_name,
    sums_text,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
PUBLISHED, SIDECAR = "published", "sidecar"


@dataclass
class Verified:
    archive: str
    sha256: str
    config_sha256: str
    n_files: int
    git_commit: str | None
    digest: str | None = None  # what the archive's sha256 was checked against: PUBLISHED, SIDECAR or None
    warnings: list[str] = field(default_factory=list)

    def proved(self) -> str:
        """One sentence: what this verification shows."""
        if self.digest == PUBLISHED:
            return "its sha256 equals the published one given with --sha256: it is the published archive"
        if self.digest == SIDECAR:
            return (
                f"its sha256 equals {Path(self.archive).name}.sha256 beside it: intact since that file was "
                "written, not proof that it is the published archive"
            )
        return (
            "no independent digest was checked: the files agree with the MANIFEST, "
            "which an editor can rewrite"
        )


def _sidecar_digest(sidecar: Path, archive: Path, problems: list[str], warnings: list[str]) -> str | None:
    with open(sidecar, "rb") as fh:
        head = fh.read(4096).decode("utf-8", "replace").split()
    want = head[0].lower() if head else ""
    if not HEX64.match(want):
        problems.append(f"{sidecar.name}: does not start with a sha256 (64 hex digits)")
        return None
    if len(head) > 1 and head[1].lstrip("*") != archive.name:
        warnings.append(f"{sidecar.name} names {head[1]!r}, not {archive.name!r}: the archive was renamed")
    return want


def _check_digest(
    archive: Path, digest: str, expected: str | None, strict: bool, problems: list[str], warnings: list[str]
) -> str | None:
    """Compare the archive's sha256 with the independent digest at hand; return which one it was."""
    if expected is not None:
        want = expected.strip().lower()
        if not HEX64.match(want):
            raise ArchiveError(f"--sha256: {expected!r} is not a sha256 (64 hex digits)")
        if want != digest:
            problems.append(f"{archive.name}: sha256 {digest} differs from the expected {want}")
        return PUBLISHED
    sidecar = Path(f"{archive}.sha256")
    if sidecar.is_file():
        want = _sidecar_digest(sidecar, archive, problems, warnings)
        if want is not None and want != digest:
            problems.append(f"{archive.name}: sha256 {digest} differs from {sidecar.name} ({want})")
        how = (
            f"the archive's sha256 was checked only against {sidecar.name}, the file beside it, which "
            "whoever "
            "edited the archive can regenerate"
        )
        (problems if strict else warnings).append(
            f"{'strict: ' if strict else ''}{how}; check it against the published digest: "
            f"rgd verify {archive} --sha256 HEX"
        )
        return SIDECAR
    how = (
        f"no independent digest (no --sha256, no {sidecar.name}): only the archive's internal consistency "
        "was "
        "checked, and a member edited together with its MANIFEST and SHA256SUMS entries would pass"
    )
    (problems if strict else warnings).append(
        f"{'strict: ' if strict else ''}{how}; give the published digest: rgd verify {archive} --sha256 HEX"
    )
    return None


# --------------------------------------------------------------------------- the MANIFEST
def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _kind(v) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "an integer",
        float: "a number",
    }.get(type(v), type(v).__name__)


def _want(ok: bool, where: str, expected: str, v) -> None:
    if not ok:
        raise ArchiveError(f"{MANIFEST}: {where}: expected {expected}, got {_kind(v)}")


def _str_map(m: dict, key: str, value_ok, expected: str) -> None:
    v = m.get(key, {})
    _want(isinstance(v, dict), key, "an object", v)
    for k, x in v.items():
        _want(value_ok(x), f"{key}[{k!r}]", expected, x)


def _safe_member_path(rel: str) -> bool:
    p = PurePosixPath(rel)
    return (
        bool(rel)
        and not p.is_absolute()
        and ".." not in p.parts
        and p.as_posix() == rel
        and rel not in (MANIFEST, SUMS)
    )


def parse_manifest(raw: bytes) -> dict:
    """The MANIFEST's JSON, every field type-checked; one-line ArchiveError on the first bad one."""
    m = _manifest_json(raw)
    _check_header(m)
    _check_files(m["files"])
    return m


def _manifest_json(raw: bytes):
    try:
        m = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as e:
        raise ArchiveError(f"{MANIFEST}: not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ArchiveError(f"{MANIFEST}: line {e.lineno}: malformed JSON: {e.msg}") from None
    except ValueError as e:
        raise ArchiveError(f"{MANIFEST}: {e}") from None
    except RecursionError:
        raise ArchiveError(f"{MANIFEST}: nested too deeply to be a MANIFEST") from None
    return m


def _check_header(m) -> None:
    """Every field but the file list."""
    _want(isinstance(m, dict), "top level", "an object", m)
    if m.get("format") != FORMAT:
        raise ArchiveError(f"{MANIFEST}: format: {m.get('format')!r}, this rgd reads {FORMAT!r}")
    known = {
        "format",
        "config_sha256",
        "config_hash_rule",
        "git",
        "python",
        "packages",
        "step_versions",
        "models",
        "datasets",
        "files",
    }
    unknown = sorted(set(m) - known)
    if unknown:
        raise ArchiveError(f"{MANIFEST}: {unknown[0]}: unknown key in a {FORMAT} MANIFEST")
    for key in ("config_sha256", "files"):
        if key not in m:
            raise ArchiveError(f"{MANIFEST}: {key}: missing")
    v = m["config_sha256"]
    _want(
        isinstance(v, str) and bool(HEX64.match(v)), "config_sha256", "a sha256 (64 lowercase hex digits)", v
    )
    for key in ("config_hash_rule", "python"):
        _want(isinstance(m.get(key, ""), str), key, "a string", m.get(key))
    git = m.get("git", {})
    _want(isinstance(git, dict), "git", "an object", git)
    for key, types, expected in (
        ("commit", (str, type(None)), "a string or null"),
        ("describe", (str, type(None)), "a string or null"),
        ("dirty", (bool, type(None)), "a boolean or null"),
    ):
        _want(isinstance(git.get(key), types), f"git.{key}", expected, git.get(key))
    _str_map(m, "packages", lambda x: isinstance(x, str), "a version string")
    _str_map(
        m,
        "step_versions",
        lambda x: isinstance(x, list) and all(isinstance(s, str) for s in x),
        "a list of version strings",
    )
    _str_map(m, "models", lambda x: isinstance(x, dict), "an object")
    _str_map(m, "datasets", lambda x: isinstance(x, dict), "an object")


def _check_files(files) -> None:
    _want(isinstance(files, dict), "files", "an object of path -> {sha256, size}", files)
    entry = 'an object {"sha256": 64 lowercase hex digits, "size": integer >= 0}'
    for rel, e in files.items():
        if not _safe_member_path(rel):
            raise ArchiveError(f"{MANIFEST}: files[{rel!r}]: not a safe relative member path")
        where = f"files[{rel!r}]"
        _want(isinstance(e, dict) and set(e) == {"sha256", "size"}, where, entry, e)
        _want(
            isinstance(e["sha256"], str) and bool(HEX64.match(e["sha256"])),
            f"{where}.sha256",
            "64 lowercase hex digits",
            e["sha256"],
        )
        size = e["size"]
        _want(
            isinstance(size, int) and not isinstance(size, bool) and size >= 0,
            f"{where}.size",
            "an integer >= 0",
            size,
        )


# --------------------------------------------------------------------------- the members
def _read_members(
    archive: Path, problems: list[str]
) -> tuple[dict[str, tuple[str, int]], bytes | None, str | None]:
    """(relative name -> (sha256, size)) of every regular member, the MANIFEST's bytes, the top folder."""
    found: dict[str, tuple[str, int]] = {}
    manifest_raw, top, n = None, None, 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for ti in tar:
                n += 1
                if n > MAX_MEMBERS:
                    raise ArchiveError(
                        f"{archive}: more than {MAX_MEMBERS} members: not an rgd results archive"
                    )
                name = PurePosixPath(ti.name)
                if name.is_absolute() or ".." in name.parts or len(name.parts) < 2:
                    problems.append(f"{ti.name}: unsafe or top-level member path")
                    continue
                top = top or name.parts[0]
                if name.parts[0] != top:
                    problems.append(f"{ti.name}: outside the archive's top folder {top}/")
                    continue
                rel = "/".join(name.parts[1:])
                if not ti.isfile():
                    problems.append(
                        f"{rel}: not a regular file ({'link' if ti.issym() or ti.islnk() else 'other'})"
                    )
                    continue
                if rel in METADATA and ti.size > MAX_METADATA_BYTES:
                    cap = MAX_METADATA_BYTES >> 20
                    raise ArchiveError(
                        f"{archive}: {rel}: {ti.size} bytes, more than the {cap} MiB a metadata "
                        "member may hold: not read"
                    )
                data = tar.extractfile(ti)
                h, size = hashlib.sha256(), 0
                chunks = [] if rel == MANIFEST else None
                while block := data.read(CHUNK):
                    h.update(block)
                    size += len(block)
                    if chunks is not None:
                        chunks.append(block)
                if rel in found:
                    problems.append(f"{rel}: appears twice in the archive")
                found[rel] = (h.hexdigest(), size)
                if chunks is not None:
                    manifest_raw = b"".join(chunks)
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ArchiveError(f"{archive}: not a readable tar.gz ({e})") from None
    return found, manifest_raw, top


def verify(archive: str | Path, expected_sha256: str | None = None, strict: bool = False) -> Verified:
    """Re-check every file of `archive` against its MANIFEST, and the archive's sha256 against the
    independent digest at hand (see the module docstring); raise ArchiveError listing each problem."""
    archive = Path(archive)
    if not archive.is_file():
        raise ArchiveError(
            f"{archive}: {'a directory, not an archive' if archive.is_dir() else 'file not found'}"
        )
    problems: list[str] = []
    warnings: list[str] = []
    digest = sha256_file(archive)
    source = _check_digest(archive, digest, expected_sha256, strict, problems, warnings)

    found, manifest_raw, top = _read_members(archive, problems)
    if manifest_raw is None:
        raise ArchiveError(f"{archive}: no {MANIFEST}")
    try:
        manifest = parse_manifest(manifest_raw)
    except ArchiveError as e:
        raise ArchiveError(f"{archive}: {e}") from None
    listed, chash = manifest["files"], manifest["config_sha256"]

    for rel, want in sorted(listed.items()):
        got = found.get(rel)
        if got is None:
            problems.append(f"{rel}: listed in {MANIFEST} but missing from the archive")
        elif got != (want["sha256"], want["size"]):
            problems.append(
                f"{rel}: changed (sha256 {got[0][:12]}…, {got[1]} bytes; "
                f"{MANIFEST} says {want['sha256'][:12]}…, {want['size']} bytes)"
            )
    for rel in sorted(set(found) - set(listed) - {MANIFEST, SUMS}):
        problems.append(f"{rel}: in the archive but not listed in {MANIFEST}")
    if SUMS not in found:
        problems.append(f"{SUMS}: missing")
    elif found[SUMS][0] != hashlib.sha256(sums_text(listed).encode()).hexdigest():
        problems.append(f"{SUMS}: does not match {MANIFEST}")
    if CONFIG_JSON not in listed:
        problems.append(f"{CONFIG_JSON}: not listed in {MANIFEST}")
    elif listed[CONFIG_JSON]["sha256"] != chash:
        problems.append(f"{CONFIG_JSON}: its sha256 is not the config hash {chash[:12]}… of {MANIFEST}")
    if archive.name.startswith("rgd-results-") and archive.name != archive_name(chash):
        problems.append(f"{archive.name}: name does not carry the config hash {chash[:12]}")
    if (
        top
        and archive.name.endswith(".tar.gz")
        and archive.name.startswith("rgd-results-")
        and top != archive.name.removesuffix(".tar.gz")
    ):
        problems.append(f"{top}/: top folder does not match the archive name")
    if problems:
        raise ArchiveError(f"{archive}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return Verified(
        str(archive), digest, chash, len(listed), manifest.get("git", {}).get("commit"), source, warnings
    )
