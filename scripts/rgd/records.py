"""The record types that flow between steps, and their validators.

Questions and answer keys are separate files by design (label-free routing):
  questions.jsonl  {"id": str, "category": str, "question": str, "options": [str, ...]}
  keys.jsonl       {"id": str, "answer": "A".."Z"}
  responses.jsonl  see `Response`
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .io import InputError, read_jsonl

LETTERS = string.ascii_uppercase
MAX_OPTIONS = 26
MAX_QUESTION_CHARS = 200_000  # a 1 MB "question" is a broken row, not a prompt


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    question: str
    options: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"id": self.id, "category": self.category, "question": self.question, "options": list(self.options)}


@dataclass
class Response:
    """One expert's answer to one question.

    status: "ok" (choice parsed), "unparsed" (output had no valid letter), "empty" (no output),
    "nan" (confidence not finite). Anything but "ok" is an abstention: choice is None.
    """

    id: str
    expert: str
    choice: str | None
    confidence: float | None
    status: str = "ok"
    reason: str | None = None
    text: str | None = None
    n_prompt_tokens: int = 0
    n_output_tokens: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d


def _need_str(rec: dict, key: str, allow_empty: bool = False) -> str:
    if key not in rec:
        raise ValueError(f"{key}: missing")
    v = rec[key]
    if not isinstance(v, str):
        raise ValueError(f"{key}: expected a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise ValueError(f"{key}: empty")
    return v


def validate_question(rec: dict) -> None:
    _need_str(rec, "id")
    _need_str(rec, "category")
    q = _need_str(rec, "question")
    if len(q) > MAX_QUESTION_CHARS:
        raise ValueError(f"question: {len(q)} characters, over the limit of {MAX_QUESTION_CHARS}")
    opts = rec.get("options")
    if not isinstance(opts, list):
        raise ValueError("options: missing or not a list")
    if not 2 <= len(opts) <= MAX_OPTIONS:
        raise ValueError(f"options: need 2..{MAX_OPTIONS} options, got {len(opts)}")
    for i, o in enumerate(opts):
        if not isinstance(o, str) or not o.strip():
            raise ValueError(f"options[{i}]: empty or not a string")


def validate_key(rec: dict) -> None:
    _need_str(rec, "id")
    a = _need_str(rec, "answer")
    if len(a) != 1 or a not in LETTERS:
        raise ValueError(f"answer: expected one capital letter, got {a!r}")


def validate_response(rec: dict) -> None:
    _need_str(rec, "id")
    _need_str(rec, "expert")
    c = rec.get("choice")
    if c is not None and (not isinstance(c, str) or len(c) != 1 or c not in LETTERS):
        raise ValueError(f"choice: expected a capital letter or null, got {c!r}")
    conf = rec.get("confidence")
    if conf is not None and not isinstance(conf, (int, float)):
        raise ValueError(f"confidence: expected a number or null, got {type(conf).__name__}")


def read_questions(path: str | Path) -> list[Question]:
    return [
        Question(r["id"], r["category"], r["question"], tuple(r["options"]))
        for r in read_jsonl(path, validate_question)
    ]


def read_keys(path: str | Path, questions: list[Question] | None = None) -> dict[str, str]:
    """Read a keys file; with `questions`, check each key is one of that question's options."""
    recs = read_jsonl(path, validate_key)
    keys = {r["id"]: r["answer"] for r in recs}
    if questions is not None:
        by_id = {q.id: q for q in questions}
        for lineno, r in enumerate(recs, 1):
            q = by_id.get(r["id"])
            if q is None:
                raise InputError(path, lineno, "id", f"{r['id']!r} has no question")
            if LETTERS.index(r["answer"]) >= len(q.options):
                raise InputError(path, lineno, "answer", f"{r['answer']!r} is outside the {len(q.options)} options")
    return keys


def read_responses(path: str | Path) -> list[dict]:
    return read_jsonl(path, validate_response)


_UNSAFE = re.compile(r"[^a-z0-9]+")


def slug(name: str) -> str:
    """A file-name-safe, readable, collision-resistant name for a category or model.

    "Gynaecology & Obstetrics" -> "gynaecology-obstetrics"; non-ASCII is transliterated where
    possible; a short hash suffix is added whenever the slug is not identical to the input, so
    two categories never map to one file.
    """
    import hashlib

    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    s = _UNSAFE.sub("-", ascii_.lower()).strip("-")[:60] or "x"
    if s != name:
        s += "-" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:6]
    return s
