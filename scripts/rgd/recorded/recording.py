"""A recording directory: the questions, one gold revision of the keys and every model's parsed
letters, written deterministically (gzip with mtime 0, sorted keys: two runs give the same bytes)
and read back with every field checked.

    questions.jsonl.gz  {"id", "category", "question", "options"} per question, sorted by id
    keys.jsonl.gz       {"id", "answer"} per question, same order
    answers.jsonl.gz    {"model", "answers": {id: letter}, "abstentions": {id: reason},
                         "confidences": {id: number}} per model, sorted by model; an id in
                         neither map is not covered by that model's recording
    provenance.json     source, files and digests, rules, gold revision, per-model counts
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..io import (
    InputError,
    atomic_path,
    dumps,
    loads_json,
    os_input_error,
    read_json,
    read_records,
    write_json,
)
from ..records import LETTER_INDEX, Question, read_keys, validate_question

QUESTIONS, KEYS, ANSWERS, PROVENANCE = (
    "questions.jsonl.gz",
    "keys.jsonl.gz",
    "answers.jsonl.gz",
    "provenance.json",
)
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_DECOMPRESSED = 1 << 30  # bytes of one .jsonl.gz file once inflated
_ANSWER_FIELDS = ("model", "answers", "abstentions", "confidences")


def safe_name(name: str) -> bool:
    return bool(MODEL_NAME.match(name)) and len(name) <= 200


# ------------------------------------------------------------------------------------------ write
def write_jsonl_gz(path: str | os.PathLike, records) -> int:
    """JSONL, gzip-compressed with no time stamp or file name in the header (same bytes each run)."""
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
                for rec in records:
                    gz.write((dumps(rec) + "\n").encode("utf-8"))
                    n += 1
            raw.flush()
            os.fsync(raw.fileno())
    return n


def write_recording(out_dir: Path, questions: list[dict], keys: list[dict], answers: list[dict], prov: dict):
    """Each file atomically; provenance last, so a directory cut short fails the loader's count check."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_gz(out_dir / QUESTIONS, questions)
    write_jsonl_gz(out_dir / KEYS, keys)
    write_jsonl_gz(out_dir / ANSWERS, answers)
    write_json(out_dir / PROVENANCE, prov)


# ------------------------------------------------------------------------------------------ read
def iter_jsonl_gz(path: Path) -> Iterator[tuple[int, dict]]:
    """(line, record) of a .jsonl.gz file; a corrupt or truncated file is one InputError."""
    try:
        fh = gzip.open(path, "rb")
    except OSError as e:
        raise os_input_error(path, e) from None
    total = 0
    with fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                total += len(raw)
                if total > MAX_DECOMPRESSED:
                    raise InputError(path, lineno, None, f"over {MAX_DECOMPRESSED} bytes once decompressed")
                yield lineno, _json_line(path, lineno, raw)
        except (gzip.BadGzipFile, EOFError, zlib.error):
            raise InputError(path, None, None, "not a readable gzip file (truncated or corrupt)") from None
        except OSError as e:
            raise os_input_error(path, e) from None


def _json_line(path: Path, lineno: int, raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, lineno, None, f"not UTF-8 (byte {e.start})") from None
    rec = loads_json(text, path, lineno)  # malformed or too deeply nested: one located line
    if not isinstance(rec, dict):
        raise InputError(path, lineno, None, "expected a JSON object")
    return rec


def _checked(path: Path, validate: Callable[[dict], None]) -> list[tuple[int, dict]]:
    """Every record validated, ids unique (rgd.io.read_records over the gzip lines)."""
    out = read_records(path, validate, iter_jsonl_gz(path))
    if not out:
        raise InputError(path, None, None, "no records (empty file)")
    return out


def _id_map(rec: dict, name: str, questions: dict[str, Question], check) -> dict:
    m = rec.get(name, {})
    if not isinstance(m, dict):
        raise ValueError(f"{name}: expected an object of id -> value, got {type(m).__name__}")
    for qid, v in m.items():
        q = questions.get(qid)
        if q is None:
            raise ValueError(f"{name}.{qid}: not a question of this recording")
        why = check(v, q)
        if why:
            raise ValueError(f"{name}.{qid}: {why}")
    return m


def _letter(v, q: Question) -> str | None:
    if not isinstance(v, str) or v not in LETTER_INDEX:
        return f"expected a capital letter, got {v!r}"
    if LETTER_INDEX[v] >= len(q.options):
        return f"{v!r} is outside the {len(q.options)} options"
    return None


def _reason(v, q: Question) -> str | None:
    return None if isinstance(v, str) and v.strip() else f"expected a non-empty reason, got {v!r}"


def _confidence(v, q: Question) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return f"expected a finite number, got {v!r}"
    return None


def _answer_line(rec: dict, questions: dict[str, Question]) -> tuple[str, dict, dict, dict]:
    unknown = sorted(set(rec) - set(_ANSWER_FIELDS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(_ANSWER_FIELDS)})")
    model = rec.get("model")
    if not isinstance(model, str) or not safe_name(model):
        raise ValueError(f"model: {model!r} is not a safe name (letters, digits, '_', '.', '-')")
    if "answers" not in rec or "abstentions" not in rec:
        raise ValueError(f"{'answers' if 'answers' not in rec else 'abstentions'}: missing")
    answers = _id_map(rec, "answers", questions, _letter)
    abstentions = _id_map(rec, "abstentions", questions, _reason)
    confidences = _id_map(rec, "confidences", questions, _confidence)
    both = sorted(set(answers) & set(abstentions), key=str)
    if both:
        raise ValueError(f"abstentions.{both[0]}: also in answers")
    orphan = sorted(set(confidences) - set(answers), key=str)
    if orphan:
        raise ValueError(f"confidences.{orphan[0]}: a confidence without an answer")
    return model, answers, abstentions, {k: float(v) for k, v in confidences.items()}


@dataclass(frozen=True)
class Recording:
    """A loaded recording. `answers(m)`, `abstentions(m)`, `confidences(m)` are id -> value maps of
    model m; `covered(m)` the ids its recording has (answered or abstained)."""

    path: Path
    questions: list[Question]
    keys: dict[str, str]
    models: list[str]
    provenance: dict
    _answers: dict[str, dict[str, str]]
    _abstentions: dict[str, dict[str, str]]
    _confidences: dict[str, dict[str, float]]

    def _model(self, model: str) -> str:
        if model not in self._answers:
            raise InputError(
                self.path,
                None,
                "model",
                f"{model!r} is not recorded here (recorded: {', '.join(self.models)})",
            )
        return model

    def answers(self, model: str) -> dict[str, str]:
        return dict(self._answers[self._model(model)])

    def abstentions(self, model: str) -> dict[str, str]:
        return dict(self._abstentions[self._model(model)])

    def confidences(self, model: str) -> dict[str, float]:
        return dict(self._confidences[self._model(model)])

    def covered(self, model: str) -> set[str]:
        return set(self._answers[self._model(model)]) | set(self._abstentions[model])


def _read_answers(path: Path, questions: dict[str, Question]) -> tuple[list[str], dict, dict, dict]:
    models, answers, abstentions, confidences, first = [], {}, {}, {}, {}
    for lineno, rec in iter_jsonl_gz(path):
        try:
            model, a, b, c = _answer_line(rec, questions)
        except ValueError as e:
            field, _, msg = str(e).partition(": ")
            raise InputError(path, lineno, field if msg else None, msg or field) from None
        if model in first:
            raise InputError(path, lineno, "model", f"{model!r} given twice (first on line {first[model]})")
        first[model] = lineno
        models.append(model)
        answers[model], abstentions[model], confidences[model] = a, b, c
    if not models:
        raise InputError(path, None, None, "no models (empty file)")
    return models, answers, abstentions, confidences


def _check_provenance(path: Path, prov, n_questions: int, counts: dict[str, dict[str, int]]) -> dict:
    """The provenance's counts must be those of the files beside it."""
    if not isinstance(prov, dict):
        raise InputError(path, None, None, f"expected a JSON object, got {type(prov).__name__}")
    n = prov.get("questions", {}).get("n") if isinstance(prov.get("questions"), dict) else None
    if n != n_questions:
        raise InputError(path, None, "questions.n", f"{n!r}, but {QUESTIONS} has {n_questions} questions")
    models = prov.get("models")
    if not isinstance(models, dict) or sorted(models) != sorted(counts):
        got = sorted(models) if isinstance(models, dict) else models
        raise InputError(path, None, "models", f"{got!r}, but {ANSWERS} has {sorted(counts)}")
    for m, c in counts.items():
        entry = models[m] if isinstance(models[m], dict) else {}
        for k, v in c.items():
            if entry.get(k) != v:
                raise InputError(path, None, f"models.{m}.{k}", f"{entry.get(k)!r}, but {ANSWERS} has {v}")
    return prov


def load_recording(path: str | os.PathLike) -> Recording:
    """Read and check a recording directory (see the module's docstring for its files)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(
            path, None, None, "not a recording directory" + (" (a file)" if path.exists() else "")
        )
    qs = [
        Question(r["id"], r["category"], r["question"], tuple(r["options"]))
        for _, r in _checked(path / QUESTIONS, validate_question)
    ]
    by_id = {q.id: q for q in qs}
    keys = read_keys(path / KEYS, qs, iter_jsonl_gz(path / KEYS))
    models, answers, abstentions, confidences = _read_answers(path / ANSWERS, by_id)
    counts = {
        m: {
            "answered": len(answers[m]),
            "abstained": len(abstentions[m]),
            "covered": len(answers[m]) + len(abstentions[m]),
            "confidences": len(confidences[m]),
        }
        for m in models
    }
    prov = _check_provenance(path / PROVENANCE, read_json(path / PROVENANCE), len(qs), counts)
    return Recording(path, qs, keys, models, prov, answers, abstentions, confidences)
