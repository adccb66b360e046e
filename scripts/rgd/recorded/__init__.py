"""Recorded answers of real models (`rgd import-responses`): published per-question outputs turned
into a *recording directory* that rgd reads without the models (`load_recording`).

    from rgd.recorded import import_responses, load_recording
    import_responses("mmlu-pro", ["model_outputs_gemma-7b_5shots.zip", ...], Path("rec"))
    rec = load_recording("rec"); rec.answers("gemma-7b")  # {question id: letter}

sources.py reads the two formats, build.py parses every model's letter with rgd's one rule and
chooses the gold revision, recording.py writes and loads the directory (its layout is in that
module's docstring). No confidence exists where the source has none (MMLU-Pro); lm-eval
log-likelihood tasks give the chosen option's log-likelihood.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .. import __version__
from ..io import InputError, read_text
from ..spec import SpecError
from .build import (
    LOGLIKELIHOOD_RULE,
    RULE,
    apply_revision,
    choose_versions,
    differences,
    id_order,
    model_stats,
    parse_file,
)
from .recording import Recording, load_recording, safe_name, write_recording
from .sources import FORMATS, FileRead, read_lm_eval, read_mmlu_pro

__all__ = ["FORMATS", "Recording", "import_responses", "load_recording"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_sums(path: Path) -> dict[str, str]:
    """A SHA256SUMS file (`<hex>  <name>` per line) as {name: digest}."""
    out = {}
    for lineno, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise InputError(path, lineno, None, "expected '<sha256 hex>  <file name>'")
        out[name] = digest.lower()
    return out


def _file_entry(path: Path, sums: dict[str, str] | None, sums_path: Path | None) -> dict:
    digest = _sha256(path)
    if sums is not None:
        if path.name not in sums:
            raise InputError(path, None, None, f"not listed in {sums_path}")
        if sums[path.name] != digest:
            raise InputError(
                path, None, None, f"sha256 {digest} differs from {sums_path} ({sums[path.name]})"
            )
    return {"name": path.name, "sha256": digest, "bytes": path.stat().st_size}


def _read_files(fmt: str, inputs: list[Path], model: str | None) -> tuple[list[FileRead], list[FileRead]]:
    """(one FileRead per model, one per input file)."""
    if fmt == "lm-eval":
        if not model:
            raise SpecError("--model", None, "required for --format lm-eval (the model the samples are of)")
        files = [read_lm_eval(p, model) for p in inputs]
        return [_merge_lm_eval(files)], files
    if model and len(inputs) > 1:
        raise SpecError("--model", None, "names one model: with several mmlu-pro files use --rename OLD=NEW")
    files = [read_mmlu_pro(p) for p in inputs]
    if model:
        files[0].model = model
    return files, files


def _merge_lm_eval(files: list[FileRead]) -> FileRead:
    """The task files of one model as one FileRead (a question id in two files is an error)."""
    seen: dict[str, Path] = {}
    for f in files:
        for it in f.items:
            if it.id in seen:
                raise InputError(f.path, None, "doc", f"question id {it.id!r} is also in {seen[it.id].name}")
            seen[it.id] = f.path
    merged = FileRead(files[0].path, files[0].model, [it for f in files for it in f.items])
    merged.tasks = tuple(t for f in files for t in f.tasks)
    merged.inputs = tuple(f.path.name for f in files)
    return merged


def _rename(files: list[FileRead], rename: dict[str, str]) -> None:
    names = {f.model for f in files}
    for old, new in rename.items():
        if old not in names:
            raise SpecError(
                "--rename", old, f"no input model of that name (models: {', '.join(sorted(names))})"
            )
    for f in files:
        f.model = rename.get(f.model, f.model)
        if not safe_name(f.model):
            raise InputError(
                f.path,
                None,
                None,
                f"model name {f.model!r} is not safe (letters, digits, '_', '.', '-'): use --rename",
            )
    counts: dict[str, int] = {}
    for f in files:
        counts[f.model] = counts.get(f.model, 0) + 1
        if counts[f.model] > 1:
            raise InputError(f.path, None, None, f"model {f.model!r} is given by two input files")


def _records(parsed, chosen) -> tuple[list[dict], list[dict], list[dict]]:
    ids = sorted(chosen, key=id_order)
    questions = [
        {
            "id": q,
            "category": chosen[q].category,
            "question": chosen[q].question,
            "options": list(chosen[q].options),
        }
        for q in ids
    ]
    keys = [{"id": q, "answer": chosen[q].answer} for q in ids]
    answers = [
        {"model": p.model, "answers": p.letters, "abstentions": p.reasons, "confidences": p.confidences}
        for p in sorted(parsed, key=lambda p: p.model)
    ]
    return questions, keys, answers


def _provenance(fmt, parsed, chosen, files_info, gold, source) -> dict:
    keys = {q: v.answer for q, v in chosen.items()}
    gold_diff, revised = differences(parsed, chosen)
    categories: dict[str, int] = {}
    for v in chosen.values():
        categories[v.category] = categories.get(v.category, 0) + 1
    return {
        "rgd_version": __version__,
        "format": fmt,
        "source": source,
        "files": files_info,
        "extraction": {"rule": RULE, "loglikelihood": LOGLIKELIHOOD_RULE, "confidence": "none unless stated"},
        "gold": {**gold, "differing": gold_diff, "revised_questions": revised},
        "questions": {"n": len(chosen), "by_category": dict(sorted(categories.items()))},
        "models": {p.model: model_stats(p, keys) for p in sorted(parsed, key=lambda p: p.model)},
    }


def import_responses(
    fmt: str,
    inputs: list[str | Path],
    out_dir: str | Path,
    *,
    model: str | None = None,
    rename: dict[str, str] | None = None,
    gold_from: str | None = None,
    gold_note: str | None = None,
    source: dict | None = None,
    sums: str | Path | None = None,
) -> dict:
    """Read `inputs` (format `fmt`), write the recording into `out_dir`; return its provenance."""
    if fmt not in FORMATS:
        raise SpecError("--format", None, f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    inputs = [Path(p) for p in inputs]
    if len({p.name for p in inputs}) != len(inputs):
        raise SpecError("INPUT", None, "two inputs have the same file name")
    sums_map = read_sums(Path(sums)) if sums else None
    files_info = {p.name: _file_entry(p, sums_map, Path(sums) if sums else None) for p in inputs}
    files, per_input = _read_files(fmt, inputs, model)
    _rename(files, rename or {})
    if gold_from is not None and gold_from not in {f.model for f in files}:
        raise SpecError("--gold-from", None, f"{gold_from!r} is not one of the models read")
    for f in per_input:
        model_of = next(m.model for m in files if f.path.name in m.inputs)
        files_info[f.path.name].update(model=model_of, non_records=f.non_records, tasks=list(f.tasks))
        files_info[f.path.name].update(records=len(f.items), skipped_members=list(f.skipped_members))
    parsed = [parse_file(f) for f in files]
    chosen, fallback, dropped = choose_versions(parsed, gold_from)
    if not chosen:
        raise InputError(inputs[0], None, "options", "no question with two or more options")
    apply_revision(parsed, chosen)
    gold = {
        "from": gold_from or "majority",
        "why": gold_note or ("given" if gold_from else "per question, the version most files give"),
        "majority_for": fallback,
        "dropped_one_option": dropped,
    }
    prov = _provenance(fmt, parsed, chosen, [files_info[n] for n in sorted(files_info)], gold, source or {})
    write_recording(Path(out_dir), *_records(parsed, chosen), prov)
    return prov
