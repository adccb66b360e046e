import json
import os

import pytest

from rgd.io import InputError, atomic_path, read_jsonl, write_jsonl
from rgd.records import read_keys, read_questions, slug


def _write(path, lines):
    path.write_bytes(b"".join(l if isinstance(l, bytes) else (l + "\n").encode() for l in lines))
    return path


Q = {"id": "q1", "category": "bio", "question": "What?", "options": ["a", "b", "c", "d"]}


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "x.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_write_jsonl_is_canonical(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"b": 1, "a": "é"}])
    assert (tmp_path / "a.jsonl").read_text(encoding="utf-8") == '{"a": "é", "b": 1}\n'


@pytest.mark.parametrize(
    "lines, where",
    [
        ([json.dumps(Q), "{not json"], ":2: malformed JSON"),
        ([json.dumps({**Q, "options": []})], ":1: options: need 2..26 options"),
        ([json.dumps({k: v for k, v in Q.items() if k != "question"})], ":1: question: missing"),
        ([json.dumps(Q), json.dumps(Q)], ":2: id: duplicate id 'q1' (first on line 1)"),
        ([json.dumps({**Q, "options": ["a", ""]})], ":1: options[1]: empty"),
        ([b'{"id": "\xff"}'], ":1: not UTF-8"),
        ([json.dumps([1, 2])], ":1: expected a JSON object"),
        ([json.dumps({**Q, "question": "x" * 300_000})], ":1: question: 300000 characters"),
    ],
)
def test_bad_questions_are_located(tmp_path, lines, where):
    path = _write(tmp_path / "q.jsonl", lines)
    with pytest.raises(InputError) as e:
        read_questions(path)
    assert str(e.value).startswith(str(path)) and where in str(e.value)


def test_keys_must_fall_inside_options(tmp_path):
    qp = _write(tmp_path / "q.jsonl", [json.dumps(Q)])
    kp = _write(tmp_path / "k.jsonl", [json.dumps({"id": "q1", "answer": "E"})])
    with pytest.raises(InputError, match=r"k.jsonl:1: answer: 'E' is outside the 4 options"):
        read_keys(kp, read_questions(qp))
    kp = _write(tmp_path / "k2.jsonl", [json.dumps({"id": "q1", "answer": "b"})])
    with pytest.raises(InputError, match="answer: expected one capital letter"):
        read_keys(kp)


def test_blank_lines_are_skipped(tmp_path):
    p = _write(tmp_path / "q.jsonl", [json.dumps(Q), "", "  "])
    assert len(read_jsonl(p)) == 1


@pytest.mark.parametrize("name", ["Gynaecology & Obstetrics", "a/b", "computer science", "Ästhetik", "..", ""])
def test_slugs_are_safe_and_distinct(name):
    s = slug(name)
    assert s and "/" not in s and " " not in s and "&" not in s and s not in (".", "..")
    assert s.isascii()
    assert slug(name) == s
    assert slug(name + "x") != s
