import json
import os

import pytest

from rgd.io import InputError, atomic_path, read_jsonl, write_jsonl
from rgd.records import read_keys, read_questions, slug


def _write(path, lines):
    path.write_bytes(b"".join(x if isinstance(x, bytes) else (x + "\n").encode() for x in lines))
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


@pytest.mark.parametrize(
    "name", ["Gynaecology & Obstetrics", "a/b", "computer science", "Ästhetik", "..", ""]
)
def test_slugs_are_safe_and_distinct(name):
    s = slug(name)
    assert s and "/" not in s and " " not in s and "&" not in s and s not in (".", "..")
    assert s.isascii()
    assert slug(name) == s
    assert slug(name + "x") != s


# --------------------------------------------------------------------------- issue 12 §4: records
def test_key_errors_give_file_lines_not_record_numbers(tmp_path):
    qs = _write(tmp_path / "q.jsonl", [json.dumps({**Q, "id": f"q{i}"}) for i in (1, 2)])
    keys = _write(tmp_path / "k.jsonl", ['{"id": "q1", "answer": "A"}', "", '{"id": "q2", "answer": "F"}'])
    with pytest.raises(InputError, match=r"k\.jsonl:3: answer: 'F' is outside the 4 options"):
        read_keys(keys, read_questions(qs))


def test_a_missing_key_names_the_key_file(tmp_path):
    qs = _write(tmp_path / "q.jsonl", [json.dumps({**Q, "id": f"q{i}"}) for i in (1, 8)])
    keys = _write(tmp_path / "k.jsonl", ['{"id": "q1", "answer": "A"}'])
    with pytest.raises(InputError, match=r"k\.jsonl: id: no key for 1 of 2 questions, e.g. \['q8'\]"):
        read_keys(keys, read_questions(qs))


def test_empty_files_are_refused_unless_allowed(tmp_path):
    empty = _write(tmp_path / "e.jsonl", [])
    with pytest.raises(InputError, match=r"e\.jsonl: no questions \(empty file\)"):
        read_questions(empty)
    assert read_questions(empty, allow_empty=True) == []
    with pytest.raises(InputError, match="no keys"):
        read_keys(empty)


def test_lone_surrogates_are_located(tmp_path):
    path = _write(tmp_path / "q.jsonl", [json.dumps(Q).replace("What", "Wh\\udfffat")])
    with pytest.raises(InputError, match=r"q\.jsonl:1: question: lone surrogate U\+DFFF at character 2"):
        read_questions(path)


@pytest.mark.parametrize(
    "conf, status, fragment",
    [
        ("NaN", "ok", "confidence: nan is not finite"),
        ("Infinity", "ok", "confidence: inf is not finite"),
        ("-Infinity", "unparsed", "confidence: -inf is not finite"),
        ("true", "ok", "confidence: expected a number or null, got bool"),
        ("-0.5", "great", "status: expected one of ok, unparsed, empty, nan"),
    ],
)
def test_non_finite_confidences_and_unknown_statuses_are_errors(tmp_path, conf, status, fragment):
    from rgd.records import read_responses

    choice = "null" if status != "ok" else '"A"'
    path = _write(
        tmp_path / "r.jsonl",
        [f'{{"id": "q1", "expert": "e", "choice": {choice}, "confidence": {conf}, "status": "{status}"}}'],
    )
    with pytest.raises(InputError, match=r"r\.jsonl:1: " + fragment.replace("(", r"\(")):
        read_responses(path)


def test_responses_outside_the_question_set_are_errors(tmp_path):
    from rgd.records import read_responses

    path = _write(
        tmp_path / "r.jsonl",
        [
            '{"id": "q1", "expert": "e", "choice": "A", "confidence": -1}',
            "",
            '{"id": "q9", "expert": "e", "choice": "B", "confidence": -1}',
        ],
    )
    assert len(read_responses(path)) == 2
    with pytest.raises(InputError, match=r"r\.jsonl:3: id: 'q9' is not in the question set \(1 responses"):
        read_responses(path, ["q1"])


def test_prompts_in_every_format(tmp_path):
    from rgd.records import read_prompts

    text = tmp_path / "p.txt"
    text.write_text("How do cells divide?\n\n  Who wrote the constitution?  \n")
    assert [(p.id, p.text) for p in read_prompts(text)] == [
        ("line-1", "How do cells divide?"),
        ("line-3", "Who wrote the constitution?"),
    ]
    jl = _write(
        tmp_path / "p.jsonl",
        [
            '{"id": "a", "question": "Q1?"}',
            '{"question": "Q2?", "category": "law"}',
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Q3?"},
                        {"role": "assistant", "content": "..."},
                        {"role": "user", "content": [{"type": "text", "text": "Q4?"}]},
                    ]
                }
            ),
        ],
    )
    got = read_prompts(jl)
    assert [(p.id, p.text, p.category) for p in got] == [
        ("a", "Q1?", None),
        ("line-2", "Q2?", "law"),
        ("line-3", "Q4?", None),
    ]
    full = read_prompts(_write(tmp_path / "q.jsonl", [json.dumps(Q)]))  # the rgd question format
    assert full[0].options == tuple(Q["options"]) and full[0].category == "bio"
    sniffed = tmp_path / "prompts"
    sniffed.write_text('{"question": "Q?"}\n')
    assert read_prompts(sniffed)[0].text == "Q?"
    assert read_prompts(sniffed, "text")[0].text == '{"question": "Q?"}'
    with pytest.raises(InputError, match=r":1: options: need 2..26 options"):
        read_prompts(_write(tmp_path / "b.jsonl", ['{"question": "Q?", "options": ["a"]}']))
    with pytest.raises(InputError, match="duplicate id 'line-2'"):
        read_prompts(
            _write(tmp_path / "d.jsonl", ['{"id": "line-2", "question": "Q?"}', '{"question": "R?"}'])
        )


def test_yaml_duplicate_keys_and_syntax_are_located(tmp_path):
    from rgd.io import read_yaml

    p = tmp_path / "c.yaml"
    p.write_text("a:\n  b: 1\n  c: 2\nd: [1\n")
    with pytest.raises(
        InputError, match=r"c\.yaml:5: malformed YAML: .* \(while parsing a flow sequence on line 4\)"
    ):
        read_yaml(p)
    p.write_text("a:\n  b: 1\n  b: 2\n")
    with pytest.raises(InputError, match=r"c\.yaml:3: b: duplicate key \(first on line 2\)"):
        read_yaml(p)
    assert read_yaml(p, unique_keys=False) == {"a": {"b": 2}}
    p.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert read_yaml(p) == {"base": {"x": 1}, "other": {"x": 1, "y": 2}}
    p.write_text("")
    assert read_yaml(p) is None


def test_os_errors_are_located(tmp_path):
    from rgd.io import read_json, read_npz, write_json

    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"/d: is a directory, expected a file"):
        read_jsonl(tmp_path / "d")
    with pytest.raises(InputError, match=r"/f/x\.json: a parent of this path is a file"):
        read_json(tmp_path / "f" / "x.json")
    with pytest.raises(InputError, match=r"/f/x\.json: cannot write: a parent of this path is a file"):
        write_json(tmp_path / "f" / "x.json", {})
    with pytest.raises(InputError, match=r"/d: cannot write: is a directory"):
        write_json(tmp_path / "d", {})
    with pytest.raises(InputError, match=r"/f: not a readable \.npz archive"):
        read_npz(tmp_path / "f")
