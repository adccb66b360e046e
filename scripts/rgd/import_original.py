"""Read the original implementation's files (docs/METHOD.md §2, §5, §7, §12) into rgd's formats.

  Data/{TASK}/{split}.json                      -> questions.jsonl + keys.jsonl (kept apart: label-free)
  Model_Responses/{TASK}-{SPLIT}/{model}.json   -> responses/{model}.jsonl
  artifacts/{TASK}_only_question_embeddings_early.pt -> embeddings.npz (ids, X, embedder)

Several splits of one task are imported in one call (`import_splits`, `rgd import-original
--split train test`): the task's embeddings file, which holds every split, is loaded once.

Question ids become strings (``str(question_id)``). Responses follow the conventions of
`rgd.records.Response`:
  selected_choice a letter, avg_logprob finite -> status "ok"
  selected_choice None (the original's empty output)  -> choice None, status "empty"
  selected_choice "N/A" (no letter found in the text) -> choice None, status "unparsed"
  avg_logprob NaN with a letter                       -> choice None, status "nan"; the letter is kept
                                                         in extra.original_choice
A NaN avg_logprob always becomes confidence None. The original's `is_correct` is not imported: keys
are the only source of truth. Token counts are unknown and written as 0. The embeddings file name
gets the original's "filtered" -> "large" substitution (filtered sets reuse the unfiltered
generation's embeddings, §8). The `.npz` records the embedder that made the vectors, as `rgd embed`
does, so that `rgd train` and `rgd route` accept it: by default the original's (Qwen3-Embedding-8B
through vLLM, §7), which `rgd route` can also use to embed new questions the same way.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from .io import InputError, dumps, read_json, save_npz, write_jsonl
from .records import LETTERS, validate_key, validate_question
from .spec import SpecError

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The original's embedder (docs/METHOD.md §7), as an rgd embedder spec (rgd.embed)
ORIGINAL_EMBEDDER = {"kind": "vllm", "model": "Qwen/Qwen3-Embedding-8B", "max_model_len": 16384}


def _qid(rec: dict, path: Path, i: int) -> int:
    q = rec.get("question_id")
    if isinstance(q, bool) or not isinstance(q, int):
        raise InputError(path, None, f"[{i}].question_id", f"expected an integer, got {q!r}")
    return q


def _records(path: Path) -> list[dict]:
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(path, None, None, f"expected a JSON list of records, got {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise InputError(path, None, f"[{i}]", "expected a JSON object")
    return data


def _reraise(path: Path, i: int, err: ValueError) -> InputError:
    field, _, msg = str(err).partition(": ")
    return InputError(path, None, f"[{i}].{field}" if msg else f"[{i}]", msg or field)


def read_original_questions(
    path: str | Path, drop_bad_keys: bool = False
) -> tuple[list[dict], list[dict], list[str]]:
    """A `Data/{TASK}/{split}.json` file -> (questions, keys, dropped ids).

    With `drop_bad_keys`, questions whose answer is not one of their option letters (the original
    never validates generated keys, §14.7) are dropped and listed instead of raising.
    """
    path = Path(path)
    questions, keys, dropped, seen = [], [], [], {}
    for i, rec in enumerate(_records(path)):
        qid = _qid(rec, path, i)
        if qid in seen:
            raise InputError(path, None, f"[{i}].question_id", f"duplicate {qid} (first at [{seen[qid]}])")
        seen[qid] = i
        # Absent fields stay absent so the validators report them as missing.
        q = {"id": str(qid)} | {k: rec[k] for k in ("category", "question", "options") if k in rec}
        key = {"id": str(qid)} | ({"answer": rec["answer"]} if "answer" in rec else {})
        try:
            validate_question(q)
        except ValueError as e:
            raise _reraise(path, i, e) from None
        try:
            validate_key(key)
            if LETTERS.index(key["answer"]) >= len(q["options"]):
                raise ValueError(f"answer: {key['answer']!r} is outside the {len(q['options'])} options")
        except ValueError as e:
            if not drop_bad_keys:
                raise _reraise(path, i, e) from None
            dropped.append(str(qid))
            continue
        questions.append(q)
        keys.append(key)
    return questions, keys, dropped


def _response(rec: dict, model: str, path: Path, i: int, n_options: int) -> dict:
    qid = str(_qid(rec, path, i))
    text_key = f"{model}_response"
    for k in (text_key, "avg_logprob", "selected_choice"):
        if k not in rec:
            raise InputError(path, None, f"[{i}].{k}", "missing")
    text, lp, sel = rec[text_key], rec["avg_logprob"], rec["selected_choice"]
    if text is not None and not isinstance(text, str):
        raise InputError(
            path, None, f"[{i}].{text_key}", f"expected a string or null, got {type(text).__name__}"
        )
    if lp is not None and (isinstance(lp, bool) or not isinstance(lp, (int, float))):
        raise InputError(path, None, f"[{i}].avg_logprob", f"expected a number or NaN, got {lp!r}")
    conf = None if lp is None or not math.isfinite(lp) else float(lp)
    out = {
        "id": qid,
        "expert": model,
        "choice": None,
        "confidence": conf,
        "status": "ok",
        "reason": None,
        "text": text,
        "n_prompt_tokens": 0,
        "n_output_tokens": 0,
    }
    if sel is None:
        out.update(status="empty", reason="original: no output (selected_choice null)")
    elif sel == "N/A":
        out.update(status="unparsed", reason="original: no answer letter found (selected_choice 'N/A')")
    elif not isinstance(sel, str) or len(sel) != 1 or sel not in LETTERS[:n_options]:
        raise InputError(
            path,
            None,
            f"[{i}].selected_choice",
            f"expected one of {LETTERS[:n_options]!r}, 'N/A' or null, got {sel!r}",
        )
    elif conf is None:
        out.update(status="nan", reason="original: avg_logprob is not finite", extra={"original_choice": sel})
    else:
        out["choice"] = sel
    return out


def read_original_responses(
    path: str | Path, model: str, questions: list[dict], skip_ids: frozenset[str] | set[str] = frozenset()
) -> list[dict]:
    """A `Model_Responses/{TASK}-{SPLIT}/{model}.json` file -> response records in `questions` order.

    Every question needs exactly one response; responses to other ids are an error (a file from
    another split), except ids in `skip_ids` (questions dropped on purpose), which are ignored.
    """
    path = Path(path)
    n_opts = {q["id"]: len(q["options"]) for q in questions}
    by_id: dict[str, dict] = {}
    for i, rec in enumerate(_records(path)):
        qid = str(_qid(rec, path, i))
        if qid in skip_ids:
            continue
        if qid in by_id:
            raise InputError(path, None, f"[{i}].question_id", f"duplicate response for {qid}")
        if qid not in n_opts:
            raise InputError(path, None, f"[{i}].question_id", f"{qid} is not a question of this split")
        by_id[qid] = _response(rec, model, path, i, n_opts[qid])
    missing = [q["id"] for q in questions if q["id"] not in by_id]
    if missing:
        raise InputError(
            path, None, "question_id", f"no response for {len(missing)} question(s), first {missing[0]}"
        )
    return [by_id[q["id"]] for q in questions]


def load_original_embeddings(path: str | Path) -> dict:
    """A torch-saved `{question_id: float tensor [d]}`, loaded once (weights only: no code runs)."""
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(path, None, None, "file not found") from None
    except Exception as e:  # torch raises several types for a corrupt or unsafe pickle
        raise InputError(path, None, None, f"not a loadable torch file: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise InputError(
            path, None, None, f"expected a dict of question_id -> tensor, got {type(obj).__name__}"
        )
    return obj


def embedding_rows(obj: dict, path: str | Path, question_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `question_ids` in a loaded embeddings dict.

    Returns (ids (n,) str, X (n, d) float32, unit rows)."""
    import torch

    path = Path(path)
    rows, dim = [], None
    for qid in question_ids:
        try:
            key = int(qid)
        except ValueError:
            raise ValueError(f"question_ids: {qid!r} is not an integer id of the original") from None
        if key not in obj:
            raise InputError(path, None, "question_id", f"no embedding for question {key}")
        v = obj[key]
        if not isinstance(v, torch.Tensor) or v.ndim != 1:
            raise InputError(path, None, f"[{key}]", "expected a 1-D tensor")
        if dim is None:
            dim = v.shape[0]
        elif v.shape[0] != dim:
            raise InputError(path, None, f"[{key}]", f"dimension {v.shape[0]}, expected {dim}")
        rows.append(v.detach().to(torch.float32).numpy())
    X = np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)
    if not np.isfinite(X).all():
        bad = question_ids[int(np.argwhere(~np.isfinite(X).all(axis=1))[0, 0])]
        raise InputError(path, None, f"[{bad}]", "non-finite values")
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    if (norm == 0).any():
        raise InputError(path, None, f"[{question_ids[int(np.argmin(norm[:, 0]))]}]", "zero vector")
    return np.array(question_ids, dtype=str), (X / norm).astype(np.float32)


def read_original_embeddings(path: str | Path, question_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`embedding_rows` of a file: (ids (n,) str, X (n, d) float32, unit rows)."""
    return embedding_rows(load_original_embeddings(path), path, question_ids)


def embeddings_path(root: Path, task: str) -> Path:
    return Path(root) / "artifacts" / f"{task}_only_question_embeddings_early.pt".replace("filtered", "large")


def _read_split(root: Path, task: str, split: str, models: list[str] | None, drop_bad_keys: bool):
    qpath = root / "Data" / task / f"{split}.json"
    questions, keys, dropped = read_original_questions(qpath, drop_bad_keys)
    if not questions:
        raise InputError(qpath, None, None, "no questions")
    rdir = root / "Model_Responses" / f"{task}-{split}"
    if models is None:
        models = sorted(p.stem for p in rdir.glob("*.json"))
        if not models:
            raise InputError(rdir, None, None, "no response files (*.json)")
    for m in models:
        if not _MODEL_NAME.match(m):
            raise InputError(rdir, None, "model", f"unsafe model name {m!r}")
    drop = frozenset(dropped)
    responses = {m: read_original_responses(rdir / f"{m}.json", m, questions, drop) for m in models}
    return questions, keys, dropped, list(models), responses


def import_splits(
    root: Path,
    task: str,
    splits: list[str],
    out_dir: Path,
    models: list[str] | None = None,
    *,
    with_embeddings: bool = True,
    drop_bad_keys: bool = False,
    embedder: dict | None = None,
) -> list[dict]:
    """Convert the `splits` of one task of an original checkout at `root`; return one summary each.

    One split is written into `out_dir`; several go into `out_dir/{split}/`. `models` (default:
    every `*.json` under each split's responses directory, sorted by name) fixes the response files
    read and their pool order. The task's embeddings file is loaded once for all splits; `embedder`
    (default ORIGINAL_EMBEDDER) is recorded in each `embeddings.npz`.
    """
    root, out_dir = Path(root), Path(out_dir)
    if not splits or len(set(splits)) != len(splits):
        raise SpecError("--split", None, f"expected distinct split names, got {list(splits)}")
    if embedder is not None and not (isinstance(embedder, dict) and isinstance(embedder.get("kind"), str)):
        raise SpecError(
            "--embedder", None, f"expected an embedder spec {{'kind': ...}} (see rgd.embed), got {embedder!r}"
        )
    read = {s: _read_split(root, task, s, models, drop_bad_keys) for s in splits}
    emb = {}
    if with_embeddings:
        path = embeddings_path(root, task)
        obj = load_original_embeddings(path)
        emb = {s: embedding_rows(obj, path, [q["id"] for q in read[s][0]]) for s in splits}
        del obj
    spec = dumps(ORIGINAL_EMBEDDER if embedder is None else embedder)

    # Read everything before writing anything, so bad input leaves out_dir untouched.
    return [
        _write_split(out_dir if len(splits) == 1 else out_dir / s, task, s, read[s], emb.get(s), spec)
        for s in splits
    ]


def _write_split(d: Path, task: str, split: str, read: tuple, emb: tuple | None, spec: str) -> dict:
    """One split's files in rgd's layout; its summary."""
    questions, keys, dropped, names, responses = read
    write_jsonl(d / "questions.jsonl", questions)
    write_jsonl(d / "keys.jsonl", keys)
    for m, recs in responses.items():
        write_jsonl(d / "responses" / f"{m}.jsonl", recs)
    X = None
    if emb is not None:
        ids, X = emb
        save_npz(d / "embeddings.npz", ids=ids, X=X, embedder=np.array(spec))
    return {
        "task": task,
        "split": split,
        "n_questions": len(questions),
        "dropped_bad_keys": dropped,
        "models": names,
        "status": {
            m: dict(sorted(Counter(r["status"] for r in recs).items())) for m, recs in responses.items()
        },
        "embedding_dim": None if X is None else int(X.shape[1]),
    }


def import_original(
    root: Path, task: str, split: str, out_dir: Path, models: list[str] | None = None, **options
) -> dict:
    """`import_splits` of one split, written into `out_dir`; returns its summary."""
    return import_splits(root, task, [split], out_dir, models, **options)[0]
