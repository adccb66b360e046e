"""The record types that flow between steps, and their validators.

Questions and answer keys are separate files by design (label-free routing):
  questions.jsonl  {"id": str, "category": str, "question": str, "options": [str, ...]}
  keys.jsonl       {"id": str, "answer": "A".."Z"}
  responses.jsonl  see `Response`
  consensus.jsonl  {"id", "expert", "choice": letter or null, "consensus", "z", "weight"}
  prompts          what `rgd route` ranks: see `read_prompts`

Every location in an error is the file's own line (blank lines count), and every string must be
valid Unicode (a JSON escape can smuggle in a lone surrogate, which no UTF-8 file can hold).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .io import InputError, read_records, read_text, text_lines
from .spec import bounds, validate

LETTERS = string.ascii_uppercase
LETTER_INDEX = {c: i for i, c in enumerate(LETTERS)}  # the one way a letter becomes an option index
STATUSES = ("ok", "unparsed", "empty", "nan")
MAX_OPTIONS = 26
MAX_QUESTION_CHARS = 200_000  # a 1 MB "question" is a broken row, not a prompt


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    question: str
    options: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "category": self.category,
            "question": self.question,
            "options": list(self.options),
        }


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


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_unicode(key: str, v: str) -> None:
    """Refuse a lone surrogate (valid in JSON escapes, not in any UTF-8 file or model prompt)."""
    m = _SURROGATE.search(v)
    if m:
        raise ValueError(
            f"{key}: lone surrogate U+{ord(m.group()):04X} at character {m.start()} (not valid Unicode)"
        )


def _need_str(rec: dict, key: str, allow_empty: bool = False) -> str:
    if key not in rec:
        raise ValueError(f"{key}: missing")
    v = rec[key]
    if not isinstance(v, str):
        raise ValueError(f"{key}: expected a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise ValueError(f"{key}: empty")
    check_unicode(key, v)
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
        check_unicode(f"options[{i}]", o)


def validate_key(rec: dict) -> None:
    _need_str(rec, "id")
    a = _need_str(rec, "answer")
    if len(a) != 1 or a not in LETTERS:
        raise ValueError(f"answer: expected one capital letter, got {a!r}")


def _expert_choice(rec: dict) -> str | None:
    """A per-expert row's choice (a capital letter or null), once its id and expert are checked."""
    _need_str(rec, "id")
    _need_str(rec, "expert")
    c = rec.get("choice")
    if c is not None and (not isinstance(c, str) or len(c) != 1 or c not in LETTERS):
        raise ValueError(f"choice: expected a capital letter or null, got {c!r}")
    return c


def validate_response(rec: dict) -> None:
    c = _expert_choice(rec)
    conf = rec.get("confidence")
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float))):
        raise ValueError(f"confidence: expected a number or null, got {type(conf).__name__}")
    if conf is not None and not math.isfinite(conf):
        # rgd writes null for a missing confidence; a NaN here would silently become a neutral vote
        raise ValueError(f"confidence: {conf} is not finite (write null for a missing confidence)")
    status = rec.get("status", "ok")
    if status not in STATUSES:
        raise ValueError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    if status != "ok" and c is not None:
        raise ValueError(f"choice: {c!r} with status {status!r} (anything but 'ok' is an abstention)")


def validate_consensus_row(rec: dict) -> None:
    _expert_choice(rec)
    v = rec.get("consensus")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
        raise ValueError(f"consensus: expected a number in [0, 1], got {v!r}")


def _refuse_empty(path, records: list, what: str) -> None:
    if not records:
        raise InputError(path, None, None, f"no {what} (empty file)")


def read_questions(path: str | Path, allow_empty: bool = False) -> list[Question]:
    """Validated questions; an empty file is an error unless `allow_empty` (a generated set whose
    every output was rejected is empty, legitimately: the steps it flows through say so)."""
    qs = [
        Question(r["id"], r["category"], r["question"], tuple(r["options"]))
        for _, r in read_records(path, validate_question)
    ]
    if not allow_empty:
        _refuse_empty(path, qs, "questions")
    return qs


def read_keys(path: str | Path, questions: list[Question] | None = None, records=None) -> dict[str, str]:
    """Read a keys file; with `questions`, check each key is for one of them and within its
    options, and that every question has a key. `records`: the file's (line, record) pairs from
    another reader (rgd.io.read_records)."""
    recs = read_records(path, validate_key, records)
    keys = {r["id"]: r["answer"] for _, r in recs}
    if questions is None:
        _refuse_empty(path, recs, "keys")
        return keys
    by_id = {q.id: q for q in questions}
    for lineno, r in recs:
        q = by_id.get(r["id"])
        if q is None:
            raise InputError(path, lineno, "id", f"{r['id']!r} has no question")
        if LETTER_INDEX[r["answer"]] >= len(q.options):
            raise InputError(
                path, lineno, "answer", f"{r['answer']!r} is outside the {len(q.options)} options"
            )
    missing = [q.id for q in questions if q.id not in keys]
    if missing:
        raise InputError(
            path, None, "id", f"no key for {len(missing)} of {len(questions)} questions, e.g. {missing[:3]}"
        )
    return keys


def read_responses(path: str | Path, question_ids=None) -> list[dict]:
    """Validated response records; with `question_ids`, a response for any other id is an error
    (it means the file belongs to another question set)."""
    recs = read_records(path, validate_response)
    if question_ids is not None:
        known = set(question_ids)
        outside = [(ln, r["id"]) for ln, r in recs if r["id"] not in known]
        if outside:
            ln, rid = outside[0]
            raise InputError(
                path,
                ln,
                "id",
                f"{rid!r} is not in the question set ({len(outside)} responses "
                "for ids outside it: is this the right file?)",
            )
    return [r for _, r in recs]


def read_consensus(path: str | Path) -> list[dict]:
    """Consensus rows (one per question and expert), validated."""
    from .io import iter_jsonl

    out = []
    for lineno, rec in iter_jsonl(path):
        try:
            validate_consensus_row(rec)
        except ValueError as e:
            field, _, msg = str(e).partition(": ")
            raise InputError(path, lineno, field, msg) from None
        out.append(rec)
    return out


@dataclass(frozen=True)
class Prompt:
    """What `rgd route` ranks: the text to embed, and the question fields when they are known."""

    id: str
    text: str
    category: str | None = None
    options: tuple[str, ...] | None = None


PROMPT_FORMATS = ("auto", "jsonl", "text")


def _user_text(messages, lineno_field: str = "messages") -> str:
    """The content of the last user turn of OpenAI-style chat messages (string or text parts)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{lineno_field}: expected a non-empty list of chat messages")
    user = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError(f"{lineno_field}[{i}]: expected an object with a role")
        if m["role"] == "user":
            user = (i, m.get("content"))
    if user is None:
        raise ValueError(f"{lineno_field}: no user message")
    i, content = user
    if isinstance(content, list):  # content parts: keep the text ones
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "\n".join(t for t in texts if isinstance(t, str))
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"{lineno_field}[{i}].content: empty or not text")
    return content


def validate_prompt(rec: dict) -> None:
    if "id" in rec:
        _need_str(rec, "id")
    if "messages" in rec:
        check_unicode("messages", _user_text(rec["messages"]))
    else:
        q = _need_str(rec, "question")
        if len(q) > MAX_QUESTION_CHARS:
            raise ValueError(f"question: {len(q)} characters, over the limit of {MAX_QUESTION_CHARS}")
    if "category" in rec:
        _need_str(rec, "category")
    if "options" in rec:
        validate_question({"id": "x", "category": "x", "question": "x", **{"options": rec["options"]}})


def read_prompts(path: str | Path, fmt: str = "auto") -> list[Prompt]:
    """Prompts to route, from any of:
      JSONL with `question` (`id`, `category`, `options` optional; the rgd question format is one),
      JSONL with OpenAI-style chat `messages` (routed on the last user turn's text),
      a text file with one prompt per line.
    `fmt` "auto" reads .jsonl/.json as JSONL, .txt as text, and anything else by its first
    non-blank line ("{" starts JSONL). A record without an id gets `line-<N>`, N its line in the file."""
    path = Path(path)
    if fmt not in PROMPT_FORMATS:
        raise ValueError(f"fmt: expected one of {PROMPT_FORMATS}, got {fmt!r}")
    text = None
    if fmt == "auto":
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            fmt = "jsonl"
        elif suffix == ".txt":
            fmt = "text"
        else:
            text = read_text(path)
            first = next((line for line in text_lines(text) if line.strip()), "")
            fmt = "jsonl" if first.lstrip().startswith("{") else "text"
    out: list[Prompt] = []
    if fmt == "text":
        text = read_text(path) if text is None else text
        for lineno, line in enumerate(text_lines(text), 1):
            if line.strip():
                if len(line) > MAX_QUESTION_CHARS:
                    raise InputError(
                        path, lineno, None, f"{len(line)} characters, over the limit of {MAX_QUESTION_CHARS}"
                    )
                out.append(Prompt(f"line-{lineno}", line.strip()))
    else:
        for lineno, r in read_records(path, validate_prompt):
            body = _user_text(r["messages"]) if "messages" in r else r["question"]
            opts = tuple(r["options"]) if "options" in r else None
            out.append(Prompt(r.get("id", f"line-{lineno}"), body, r.get("category"), opts))
    seen: set[str] = set()
    for p in out:
        if p.id in seen:
            raise InputError(
                path, None, "id", f"duplicate id {p.id!r} (an explicit id equals a generated one)"
            )
        seen.add(p.id)
    _refuse_empty(path, out, "prompts")
    return out


PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class Provenance:
    """`provenance.json` of a router directory (written by rgd.routers.save)."""

    kind: str
    experts: list[str] = field(metadata=bounds(min_len=1))
    embedder: dict | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)
        if len(set(self.experts)) != len(self.experts) or not all(self.experts):
            raise ValueError(f"experts: expected distinct non-empty names, got {self.experts}")


def read_provenance(directory: str | Path) -> tuple[Provenance, dict]:
    """(checked provenance, its JSON) of a router directory; no router code is imported."""
    from .io import read_json
    from .spec import SpecError, parse

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(
            directory, None, None, "not a router directory" + (" (a file)" if directory.exists() else "")
        )
    path = directory / PROVENANCE
    data = read_json(path)
    try:
        return parse(Provenance, data, str(path)), data
    except SpecError as e:
        raise InputError(path, None, e.field, e.message) from None


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
