"""Read published per-question outputs into `Item`s: one per (model, question), with the question
as that file gives it, the file's gold letter, and either the response text (to be parsed by
rgd's own rule) or a letter already chosen by log-likelihood.

Two formats:

* ``mmlu-pro``: the MMLU-Pro authors' `eval_results/` files (TIGER-AI-Lab/MMLU-Pro): a .zip
  holding one JSON list, or a tar of per-category `*_result.json` lists (`*_summary.json` score
  files are skipped). Records: `question_id`, `question`, `options` (a list, or in older files a
  Python-literal string of one, read with `ast.literal_eval`), `answer`, `category`, the response
  in `generated_text`, `model_outputs` or `response` (null: an empty output), and `pred` (the
  authors' own parsed letter, kept only to measure agreement). Entries of the list that are not
  objects (DeepSeek-Coder-V2's file has 43 category names among its records) are skipped and
  counted. The model's name comes from the file name (`model_outputs_<NAME>_5shots.zip`,
  `<NAME>_results.tar.xz`; a `_` between two digits becomes `.`: `Meta-Llama-3_1-8B` ->
  `Meta-Llama-3.1-8B`).
* ``lm-eval``: lm-evaluation-harness `--log_samples` files (`samples_<TASK>_<DATE>.jsonl`), one
  JSON record per line with `doc_id`, `doc`, `resps` (and `filtered_resps`, `target`, ...). See
  `lm_eval_items` for the fields read.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets.common import Row, clean_text, need_letter, need_options, need_str, upstream_id
from ..io import InputError, iter_jsonl
from ..records import LETTERS
from .archive import json_members

FORMATS = ("mmlu-pro", "lm-eval")
TEXT_FIELDS = ("generated_text", "model_outputs", "response")  # MMLU-Pro's response fields
SUMMARY_SUFFIX = "_summary.json"


@dataclass(frozen=True)
class Item:
    """One model's record of one question, as its file has it."""

    id: str
    category: str
    question: str
    options: tuple[str, ...]
    answer: str  # the gold letter in this file
    text: str | None = None  # response text, parsed by rgd's rule (None: no output)
    letter: str | None = None  # a letter already chosen (log-likelihood tasks); text is then unused
    confidence: float | None = None
    pred: str | None = None  # the source's own parsed letter (agreement only, never used)
    loglikelihood: bool = False  # a log-likelihood record (letter or abstention already decided)
    reason: str | None = None  # why a log-likelihood record has no letter


@dataclass
class FileRead:
    """What one input file gave: its items and what was skipped."""

    path: Path
    model: str
    items: list[Item]
    non_records: int = 0
    skipped_members: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # the input file names (several: an lm-eval model's task files)

    def __post_init__(self) -> None:
        self.inputs = self.inputs or (self.path.name,)


_DIGIT_UNDERSCORE = re.compile(r"(?<=\d)_(?=\d)")
_ARCHIVE_SUFFIX = re.compile(r"\.(zip|json|tar|tgz|txz|tbz2|tar\.gz|tar\.xz|tar\.bz2)$", re.IGNORECASE)


def mmlu_pro_model_name(path: Path) -> str:
    """`model_outputs_Meta-Llama-3_1-8B_5shots.zip` -> `Meta-Llama-3.1-8B`."""
    stem = _ARCHIVE_SUFFIX.sub("", path.name)
    stem = re.sub(r"^model_outputs_", "", stem)
    stem = re.sub(r"_(\d+shots?|results?)$", "", stem)
    return _DIGIT_UNDERSCORE.sub(".", stem)


def _options(rec: dict, at: Row) -> list[str]:
    opts = rec.get("options")
    if isinstance(opts, str):  # older files: the list as a Python literal
        try:
            opts = ast.literal_eval(opts)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise at.error("options", "a string that is not a Python list literal") from None
    if isinstance(opts, list) and len(opts) == 1:
        # an older revision's broken question (5 files' worth in MMLU-Pro): read, never chosen as gold
        return need_options(opts * 2, "options", at)[:1]
    return need_options(opts, "options", at)


def _text(rec: dict, at: Row) -> str | None:
    field = next((f for f in TEXT_FIELDS if f in rec), None)
    if field is None:
        raise at.error(TEXT_FIELDS[0], f"missing (expected one of {', '.join(TEXT_FIELDS)})")
    v = rec[field]
    if v is not None and not isinstance(v, str):
        raise at.error(field, f"expected a string or null, got {type(v).__name__}")
    return v


def _pred(rec: dict, key: str, at: Row) -> str | None:
    v = rec.get(key)
    if v is not None and not isinstance(v, str):
        raise at.error(key, f"expected a string or null, got {type(v).__name__}")
    return v


def mmlu_pro_item(rec: dict, at: Row) -> Item:
    """One MMLU-Pro output record."""
    qid = upstream_id(rec.get("question_id"), "question_id", at)
    options = _options(rec, at)
    return Item(
        id=qid,
        category=clean_text(need_str(rec, "category", at)),
        question=clean_text(need_str(rec, "question", at)),
        options=tuple(options),
        answer=need_letter(rec.get("answer"), "answer", len(options), at),
        text=_text(rec, at),
        pred=_pred(rec, "pred", at),
    )


def _member_records(member) -> list:
    try:
        data = json.loads(member.data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(member.where, None, None, f"not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(member.where, e.lineno, None, f"malformed JSON: {e.msg}") from None
    if not isinstance(data, list):
        raise InputError(
            member.where, None, None, f"expected a JSON list of records, got {type(data).__name__}"
        )
    return data


def read_mmlu_pro(path: str | Path) -> FileRead:
    """An MMLU-Pro outputs file (.zip, tar or .json) -> its items, in file order."""
    path = Path(path)
    out = FileRead(path, mmlu_pro_model_name(path), [])
    skipped, seen = [], {}
    for member in json_members(path):
        if member.name.endswith(SUMMARY_SUFFIX):
            skipped.append(member.name)
            continue
        for i, rec in enumerate(_member_records(member)):
            if not isinstance(rec, dict):
                out.non_records += 1
                continue
            at = Row(member.where, item=f"[{i}]")
            item = mmlu_pro_item(rec, at)
            if item.id in seen:
                raise at.error("question_id", f"duplicate {item.id} (first at {seen[item.id]})")
            seen[item.id] = f"{member.name}[{i}]"
            out.items.append(item)
    out.skipped_members = tuple(skipped)
    if not out.items:
        raise InputError(path, None, None, "no output records")
    return out


# ------------------------------------------------------------------------------------------ lm-eval
QUESTION_FIELDS = ("question", "query")
OPTION_FIELDS = ("options", "choices")
GOLD_FIELDS = ("answer", "answer_index", "answerKey", "gold", "label")
CATEGORY_FIELDS = ("category", "subject")
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+?)(_\d{4}-\d{2}-\d{2}T[0-9.:_-]+)?\.jsonl$")


def lm_eval_task(path: Path) -> str:
    """`samples_mmlu_pro_math_2024-07-01T12-00-00.000000.jsonl` -> `mmlu_pro_math`."""
    m = _SAMPLES_NAME.match(path.name)
    return m.group("task") if m else path.stem


def _first(doc: dict, fields: tuple[str, ...]) -> tuple[str, Any]:
    for f in fields:
        if f in doc and doc[f] is not None:
            return f, doc[f]
    return fields[0], None


def _doc_options(doc: dict, at: Row) -> list[str]:
    field, v = _first(doc, OPTION_FIELDS)
    if isinstance(v, dict):  # ARC-style {"text": [...], "label": [...]}
        field, v = f"{field}.text", v.get("text")
    if isinstance(v, str):
        v = _literal_list(v, f"doc.{field}", at)
    return need_options(v, f"doc.{field}", at)


def _literal_list(v: str, field: str, at: Row) -> Any:
    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise at.error(field, "a string that is not a Python list literal") from None


def _gold(doc: dict, target: Any, n: int, at: Row) -> str:
    """The gold letter from the doc (a letter, an index, or a 1-based digit label), else `target`."""
    field, v = _first(doc, GOLD_FIELDS)
    if v is None:
        field, v = "target", target
    else:
        field = f"doc.{field}"
    if isinstance(v, str) and v.strip().isdigit():  # an index as text; ARC's digit labels are 1-based
        v = int(v) - (1 if field == "doc.answerKey" else 0)
    if isinstance(v, int) and not isinstance(v, bool):
        if not 0 <= v < n:
            raise at.error(field, f"index {v} is outside the {n} options")
        return LETTERS[v]
    if v is None:
        raise at.error("doc.answer", f"missing (expected one of {', '.join(GOLD_FIELDS)} in doc, or target)")
    return need_letter(v, field, n, at)


def _lm_eval_id(doc: dict, rec: dict, task: str, at: Row) -> str:
    for f in ("question_id", "id"):
        if doc.get(f) is not None:
            return upstream_id(doc[f], f"doc.{f}", at)
    doc_id = rec.get("doc_id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, int):
        raise at.error("doc_id", f"expected an integer, got {doc_id!r}")
    return f"{task}-{doc_id}"


def _number(v: Any, field: str, at: Row) -> float:
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise at.error(field, f"expected a number, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise at.error(field, f"expected a number, got {type(v).__name__}")
    return float(v)


def _loglikelihoods(rec: dict, n: int, at: Row) -> list[float] | None:
    """Per-option log-likelihoods of a multiple-choice record, or None for a generative one."""
    field = "filtered_resps" if isinstance(rec.get("filtered_resps"), list) else "resps"
    resps = rec.get(field)
    if not isinstance(resps, list) or not resps:
        raise at.error("resps", "missing or not a non-empty list")
    flat = [r[0] if isinstance(r, list) and r and isinstance(r[0], list) else r for r in resps]
    if not all(isinstance(r, list) and len(r) == 2 for r in flat):
        return None
    if len(flat) != n:
        raise at.error(field, f"{len(flat)} log-likelihoods for {n} options")
    return [_number(r[0], f"{field}[{i}][0]", at) for i, r in enumerate(flat)]


def _generation(rec: dict, at: Row) -> str | None:
    r = rec["resps"]
    while isinstance(r, list) and r:
        r = r[0]
    if r is not None and not isinstance(r, str):
        raise at.error("resps[0][0]", f"expected the generated text, got {type(r).__name__}")
    return r


def _lm_eval_pred(rec: dict) -> str | None:
    """The task's own filtered answer, if it is a bare letter (agreement only)."""
    f = rec.get("filtered_resps")
    v = f[0] if isinstance(f, list) and f else None
    v = v.strip().strip("()") if isinstance(v, str) else None
    return v if v and len(v) == 1 and v in LETTERS else None


def lm_eval_item(rec: dict, task: str, at: Row) -> Item:
    """One lm-eval `--log_samples` record."""
    doc = rec.get("doc")
    if not isinstance(doc, dict):
        raise at.error("doc", "missing or not an object")
    qfield, _ = _first(doc, QUESTION_FIELDS)
    question = clean_text(need_str(doc, qfield, Row(at.path, line=at.line, item="doc")))
    options = _doc_options(doc, at)
    _, cat = _first(doc, CATEGORY_FIELDS)
    base = dict(
        id=_lm_eval_id(doc, rec, task, at),
        category=clean_text(cat) if isinstance(cat, str) and cat.strip() else task,
        question=question,
        options=tuple(options),
        answer=_gold(doc, rec.get("target"), len(options), at),
    )
    lls = _loglikelihoods(rec, len(options), at)
    if lls is None:
        return Item(**base, text=_generation(rec, at), pred=_lm_eval_pred(rec))
    finite = [(v, i) for i, v in enumerate(lls) if math.isfinite(v)]
    if not finite or any(math.isnan(v) for v in lls):
        return Item(**base, loglikelihood=True, reason="no finite log-likelihood")
    best = max(v for v, _ in finite)
    i = min(i for v, i in finite if v == best)  # ties: the first option, as numpy's argmax
    return Item(**base, letter=LETTERS[i], confidence=best, loglikelihood=True)


def read_lm_eval(path: str | Path, model: str) -> FileRead:
    """An lm-eval `--log_samples` JSONL file of one task -> its items, in file order."""
    path = Path(path)
    task = lm_eval_task(path)
    out = FileRead(path, model, [], tasks=(task,))
    seen: dict[str, int] = {}
    for lineno, rec in iter_jsonl(path):
        at = Row(path, line=lineno)
        item = lm_eval_item(rec, task, at)
        if item.id in seen:
            raise at.error("doc_id", f"duplicate question id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        out.items.append(item)
    if not out.items:
        raise InputError(path, None, None, "no samples (empty file)")
    return out
