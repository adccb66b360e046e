"""Embedder runtimes besides PyTorch (`embedder.runtime`; docs/METHOD.md §7):

  onnx        ONNX Runtime, float32: the transformer exported by torch's ONNX exporter
  onnx-int8   the same graph with its weights quantised to int8 by onnxruntime (dynamic quantisation)
  static      a Model2Vec static embedder distilled from the sentence-transformer (token vectors)

`export` builds a runtime's files once, offline, from the configured sentence-transformer (its
package's or path's weights) into one directory of the model cache, atomically, with a manifest
(MANIFEST: runtime, quantisation, source, library versions, every file's sha256). `verify` checks
the files on disk against that manifest, and the manifest against the digest recorded with the
embeddings and the router, before anything loads. The ONNX runtimes read the model's own fast
tokenizer and pool as the sentence-transformer does (attention-masked mean, then unit norm).
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from .io import InputError, SetupError, read_json, sha256_file, write_json

MANIFEST = "rgd-embedder.json"
ONNX_FILE = "model.onnx"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
QUANTISATION = {
    "onnx": "none (float32)",
    "onnx-int8": "onnxruntime dynamic quantisation: int8 weights (QInt8, per channel)",
    "static": "Model2Vec distillation: one float16 vector per token, mean-pooled",
}
LIBRARIES = {
    "onnx": (
        "torch",
        "transformers",
        "sentence-transformers",
        "onnx",
        "onnxscript",
        "onnxruntime",
        "tokenizers",
    ),
    "static": ("torch", "transformers", "sentence-transformers", "model2vec", "tokenizers"),
}
LIBRARIES["onnx-int8"] = LIBRARIES["onnx"]


def model_path(spec) -> Path:
    """The sentence-transformer's directory: the spec's path, or its package's weights."""
    if spec.path is not None:
        return Path(spec.path)
    return Path(importlib.import_module(spec.package).get_model_path())


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _need(modules: tuple[str, ...], runtime: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SetupError(
            f"embedder runtime {runtime!r} needs {', '.join(missing)} (see requirements/cpu.txt)"
        )


def export(spec, out_dir) -> dict:
    """Build `out_dir` (the runtime's files and MANIFEST) atomically; return the manifest."""
    runtime = spec.runtime
    if runtime not in QUANTISATION:
        raise SetupError(f"embedder runtime {runtime!r} has nothing to export (it reads the model as is)")
    _need(("onnxruntime", "onnx") if runtime != "static" else ("model2vec",), runtime)
    src = model_path(spec)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        build = work / "embedder"
        build.mkdir()
        if runtime == "static":
            max_len, dim = _distill_static(src, build)
        else:
            max_len, dim = _export_onnx(src, build, work, int8=runtime == "onnx-int8")
        source = (
            {"path": str(src)} if spec.path else {"package": spec.package, "version": _version(spec.package)}
        )
        files = {p.name: sha256_file(p) for p in sorted(build.iterdir()) if p.is_file()}
        manifest = {
            "runtime": runtime,
            "quantisation": QUANTISATION[runtime],
            "source": source,
            "max_seq_length": max_len,
            "dim": dim,
            "libraries": {lib: _version(lib) for lib in LIBRARIES[runtime]},
            "files": files,
        }
        write_json(build / MANIFEST, manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        build.replace(out_dir)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_onnx(src: Path, build: Path, work: Path, int8: bool) -> tuple[int, int]:
    """torch's ONNX exporter on the sentence-transformer's transformer (dynamic batch and length);
    int8: onnxruntime's dynamic quantisation of that graph. The tokenizer is saved beside it."""
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(src), device="cpu")
    transformer = _token_embeddings(st[0].auto_model.eval())
    sample = st.tokenizer(["a question", "a longer question than that"], padding=True, return_tensors="pt")
    args = tuple(sample[k] for k in ONNX_INPUTS)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=st.max_seq_length)
    fp32 = (work / ONNX_FILE) if int8 else (build / ONNX_FILE)
    with torch.no_grad():
        torch.onnx.export(
            transformer,
            args,
            str(fp32),
            input_names=list(ONNX_INPUTS),
            output_names=["token_embeddings"],
            dynamic_shapes={k: {0: batch, 1: length} for k in ONNX_INPUTS},
            dynamo=True,
            external_data=False,
        )
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # per channel: per tensor moved MiniLM's vectors to a median cosine of 0.96, per channel 0.994
        quantize_dynamic(str(fp32), str(build / ONNX_FILE), per_channel=True, weight_type=QuantType.QInt8)
    st.tokenizer.backend_tokenizer.save(str(build / "tokenizer.json"))
    return int(st.max_seq_length), int(st.get_embedding_dimension())


def _token_embeddings(model):
    """The transformer with positional inputs and its token embeddings as the one output."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    return TokenEmbeddings().eval()


def _distill_static(src: Path, build: Path) -> tuple[int, int]:
    """Model2Vec's distillation, keeping the full dimension (no PCA) so vectors stay comparable."""
    from model2vec.distill import distill
    from sentence_transformers import SentenceTransformer

    max_len = int(SentenceTransformer(str(src), device="cpu").max_seq_length)
    model = distill(model_name=str(src), pca_dims=None, device="cpu")
    model.save_pretrained(str(build))
    return max_len, int(model.dim)


def verify(spec, where: str) -> tuple[dict, str]:
    """(manifest, its sha256) of the spec's exported runtime, every file checked against the
    manifest and the manifest against the spec's recorded digest; one InputError otherwise."""
    root = Path(spec.exported)
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(
            where,
            None,
            "embedder.exported",
            f"{root}: no exported {spec.runtime!r} embedder (rgd export-embedder)",
        )
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise InputError(path, None, "files", "not an embedder manifest (rgd export-embedder writes one)")
    if manifest.get("runtime") != spec.runtime:
        raise InputError(
            path, None, "runtime", f"{manifest.get('runtime')!r}, the spec asks for {spec.runtime!r}"
        )
    digest = sha256_file(path)
    if spec.manifest_sha256 is not None and digest != spec.manifest_sha256:
        raise InputError(
            path,
            None,
            "embedder",
            f"sha256 {digest[:12]}, recorded {spec.manifest_sha256[:12]}: not the export the "
            "embeddings were made with (re-embed and retrain, or restore that export)",
        )
    for name, want in manifest["files"].items():
        f = root / str(name)
        if not f.is_file():
            raise InputError(f, None, None, f"missing: the {spec.runtime!r} embedder is incomplete")
        if sha256_file(f) != want:
            raise InputError(f, None, "sha256", f"differs from {path}: the export was changed")
    return manifest, digest


class OnnxEncoder:
    """An exported transformer in ONNX Runtime, pooled as the sentence-transformer pools."""

    inline = False  # milliseconds a text: `rgd serve` embeds in a worker thread

    def __init__(self, root: Path, manifest: dict, threads: int, batch_size: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(root / ONNX_FILE), opts, providers=["CPUExecutionProvider"])
        self.max_tokens, self.dim = int(manifest["max_seq_length"]), int(manifest["dim"])
        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()  # the saved tokenizer pads to a batch's longest: encode pads per pass
        # Dynamic quantisation scales each pass's activations by their range over the whole pass,
        # so an int8 vector would depend on the texts beside it (cosine 0.98 against the same text
        # alone): each text gets a pass of its own, which costs nothing on a CPU (150 texts/s alone,
        # 145/s in passes of several).
        self.batch_size = 1 if manifest["runtime"] == "onnx-int8" else batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        from .embed import length_batches

        enc = self.tokenizer.encode_batch(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows in length_batches([len(e.ids) for e in enc], self.batch_size):
            width = len(enc[rows[-1]].ids)  # the longest of the pass: rows are shortest first
            feeds = {k: np.zeros((len(rows), width), dtype=np.int64) for k in ONNX_INPUTS}
            for j, i in enumerate(rows):
                n = len(enc[i].ids)
                feeds["input_ids"][j, :n] = enc[i].ids
                feeds["attention_mask"][j, :n] = 1
                feeds["token_type_ids"][j, :n] = enc[i].type_ids
            tokens = self.session.run(None, feeds)[0]
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            out[rows] = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return out


class StaticEncoder:
    """A Model2Vec static embedder: the mean of its token vectors, at most max_seq_length tokens."""

    # ~0.2 ms a text, about what handing a batch to a thread and back costs: `rgd serve` embeds
    # it on its event loop (32 clients through HTTP: 35.8-38.6 ms added at p50, 36.9-43.5 in a thread)
    inline = True

    def __init__(self, root: Path, manifest: dict, threads: int, batch_size: int):
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(root), force_download=False)
        self.max_tokens = int(manifest["max_seq_length"])
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                texts, max_length=self.max_tokens, batch_size=self.batch_size, use_multiprocessing=False
            ),
            dtype=np.float32,
        )


def load(spec, threads: int, batch_size: int, where: str = "embedder"):
    """The encoder of the spec's exported runtime, its files verified first."""
    _need(("onnxruntime",) if spec.runtime != "static" else ("model2vec",), spec.runtime)
    manifest, _ = verify(spec, where)
    cls = StaticEncoder if spec.runtime == "static" else OnnxEncoder
    return cls(Path(spec.exported), manifest, threads, batch_size)
