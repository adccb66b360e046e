"""The bad-input corpus (tests/data/bad/): every file gets a one-line error naming the file, the
line and the field, or is accepted and handled (a recorded reject, a safe file name). No
traceback, and nothing is written."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from rgd.cli import main
from rgd.io import read_jsonl, save_npz, write_jsonl

BAD = Path(__file__).parent / "data" / "bad"
GOOD_Q = BAD / "good.questions.jsonl"

# (file, expected message fragment: always "<file>:<line>: <field>: ..." where a line exists)
QUESTION_CASES = [
    ("malformed-json.questions.jsonl", ":2: malformed JSON"),
    ("missing-question.questions.jsonl", ":2: question: missing"),
    ("missing-options.questions.jsonl", ":1: options: missing or not a list"),
    ("options-not-list.questions.jsonl", ":1: options: missing or not a list"),
    ("empty-options.questions.jsonl", ":1: options: need 2..26 options, got 0"),
    ("one-option.questions.jsonl", ":1: options: need 2..26 options, got 1"),
    ("empty-option-text.questions.jsonl", ":1: options[1]: empty"),
    ("duplicate-ids.questions.jsonl", ":2: id: duplicate id 'q1'"),
    ("id-not-string.questions.jsonl", ":1: id: expected a string, got int"),
    ("not-an-object.questions.jsonl", ":1: expected a JSON object"),
    ("non-utf8.questions.jsonl", ":1: not UTF-8"),
    ("truncated-last-line.questions.jsonl", ":2: malformed JSON"),
    ("empty-question.questions.jsonl", ":1: question: empty"),
]
KEY_CASES = [
    ("answer-outside-options.keys.jsonl", ":2: answer: 'F' is outside the 4 options"),
    ("answer-lowercase.keys.jsonl", ":1: answer: expected one capital letter, got 'b'"),
    ("answer-not-letter.keys.jsonl", ":1: answer: expected one capital letter"),
    ("key-without-question.keys.jsonl", ":2: id: 'q9' has no question"),
]
RESPONSE_CASES = [
    ("choice-not-letter.responses.jsonl", ":1: choice: expected a capital letter or null"),
    ("confidence-not-number.responses.jsonl", ":1: confidence: expected a number or null, got str"),
    ("missing-response.responses.jsonl", "id: expert 'e1' has no response for question 'q2'"),
    ("other-expert.responses.jsonl", "expert: record 'q2' is by 'e9', filed under 'e1'"),
]


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, path: Path, fragment: str):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and fragment in lines[0], lines[0]


@pytest.mark.parametrize("name, fragment", QUESTION_CASES)
@pytest.mark.parametrize("step", ["split", "embed", "respond"])
def test_bad_questions_stop_every_step_before_compute(capsys, tmp_path, name, fragment, step):
    path = BAD / name
    args = {
        "split": [
            "split",
            "--questions",
            path,
            "--keys",
            BAD / "answer-lowercase.keys.jsonl",
            *[
                x
                for k in ("train", "test")
                for x in (f"--{k}-questions", tmp_path / f"{k}.q", f"--{k}-keys", tmp_path / f"{k}.k")
            ],
        ],
        # the embedder/model named here do not exist: the error must come first
        "embed": [
            "embed",
            "--questions",
            path,
            "--spec",
            '{"kind": "sentence-transformers", "path": "/nonexistent"}',
            "--out",
            tmp_path / "e.npz",
        ],
        "respond": [
            "respond",
            "--questions",
            path,
            "--expert",
            "e",
            "--spec",
            '{"model": "m", "style": "plain"}',
            "--model-dir",
            "/nonexistent",
            "--out",
            tmp_path / "r.jsonl",
            "--meta",
            tmp_path / "r.json",
            "--cache",
            tmp_path / "c.jsonl",
        ],
    }[step]
    code, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, path, fragment)
    assert list(tmp_path.iterdir()) == []


def test_megabyte_question_is_refused(capsys, tmp_path):
    path = tmp_path / "huge.questions.jsonl"
    write_jsonl(path, [{"id": "q1", "category": "c", "question": "x" * 1_000_000, "options": ["a", "b"]}])
    code, err = run_cli(
        capsys,
        "embed",
        "--questions",
        path,
        "--spec",
        '{"kind": "sentence-transformers"}',
        "--out",
        tmp_path / "e.npz",
    )
    assert_one_line_error(code, err, path, ":1: question: 1000000 characters, over the limit")


@pytest.mark.parametrize("name, fragment", KEY_CASES)
def test_bad_keys(capsys, tmp_path, name, fragment):
    out = [
        x
        for k in ("train", "test")
        for x in (f"--{k}-questions", tmp_path / f"{k}.q", f"--{k}-keys", tmp_path / f"{k}.k")
    ]
    code, err = run_cli(capsys, "split", "--questions", GOOD_Q, "--keys", BAD / name, *out)
    assert_one_line_error(code, err, BAD / name, fragment)


@pytest.mark.parametrize("name, fragment", RESPONSE_CASES)
def test_bad_responses(capsys, tmp_path, name, fragment):
    code, err = run_cli(
        capsys,
        "consensus",
        "--questions",
        GOOD_Q,
        "--responses",
        f"e1={BAD / name}",
        f"e2={BAD / 'good-e2.responses.jsonl'}",
        "--out",
        tmp_path / "c.jsonl",
        "--stats",
        tmp_path / "s.json",
    )
    assert_one_line_error(code, err, BAD / name, fragment)
    assert not (tmp_path / "c.jsonl").exists()


def test_abstentions_are_recorded_not_randomised(capsys, tmp_path):
    code, _ = run_cli(
        capsys,
        "consensus",
        "--questions",
        GOOD_Q,
        "--responses",
        f"e2={BAD / 'good-e2.responses.jsonl'}",
        f"e3={BAD / 'good-e2.responses.jsonl'}",
        "--out",
        tmp_path / "c.jsonl",
        "--stats",
        tmp_path / "s.json",
    )
    # e3's file holds e2's records: refused, the expert is named
    assert code == 2
    write_jsonl(
        tmp_path / "e3.jsonl", [{**r, "expert": "e3"} for r in read_jsonl(BAD / "good-e2.responses.jsonl")]
    )
    code, err = run_cli(
        capsys,
        "consensus",
        "--questions",
        GOOD_Q,
        "--responses",
        f"e2={BAD / 'good-e2.responses.jsonl'}",
        f"e3={tmp_path / 'e3.jsonl'}",
        "--out",
        tmp_path / "c.jsonl",
        "--stats",
        tmp_path / "s.json",
    )
    assert code == 0, err
    rows = [r for _, r in __import__("rgd.io", fromlist=["iter_jsonl"]).iter_jsonl(tmp_path / "c.jsonl")]
    q2 = [r for r in rows if r["id"] == "q2"]
    assert all(r["choice"] is None and r["consensus"] == 0.0 for r in q2)


def test_empty_and_nan_model_output_become_recorded_abstentions():
    from rgd.backends.base import Generation
    from rgd.records import Question
    from rgd.respond import _cot_response, _letter_response

    q = Question("q1", "c", "?", ("a", "b", "c"))
    r = _letter_response(q, "e", [math.nan, -1.0, -2.0], 10)
    assert (r.choice, r.status) == (None, "nan") and r.reason
    r = _cot_response(q, "e", Generation("", None, 10, 0))
    assert (r.choice, r.status, r.reason) == (None, "empty", "empty output")
    r = _cot_response(q, "e", Generation("The answer is (B)", math.nan, 10, 5))
    assert (r.choice, r.confidence, r.status) == ("B", None, "ok") and "not finite" in r.reason
    r = _cot_response(q, "e", Generation("%%%% ???", -1.0, 10, 5))
    assert (r.choice, r.status) == (None, "unparsed") and r.reason


def test_garbage_generator_output_becomes_rejects_with_reasons():
    from rgd.generate import collect

    outs = [(0, "c", "\x00\x01 random bytes ]]][[["), (1, "c", ""), (2, "c", "[QUESTION] only a question")]
    qs, keys, rejects = collect(outs, None, "g")
    assert qs == [] and keys == [] and len(rejects) == 3
    assert all(r["reason"] for r in rejects) and [r["prompt"] for r in rejects] == [0, 1, 2]


def test_descriptions_missing_a_category(capsys, tmp_path):
    code, err = run_cli(
        capsys,
        "generate",
        "--name",
        "g",
        "--spec",
        '{"num_prompts": 2, "model": "m"}',
        "--seed-questions",
        GOOD_Q,
        "--descriptions",
        BAD / "descriptions-missing-category.yaml",
        "--model-dir",
        "/nonexistent",
        *[x for k in ("questions", "keys", "rejects", "meta") for x in (f"--out-{k}", tmp_path / k)],
        "--cache",
        tmp_path / "cache",
    )
    assert code == 2 and "descriptions: no description for categories ['biology']" in err
    assert list(tmp_path.iterdir()) == []


def test_hostile_category_names_stay_safe_on_disk(capsys, tmp_path):
    qpath = BAD / "hostile-categories.questions.jsonl"
    qs = read_jsonl(qpath)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(qs), 16)).astype(np.float32)
    save_npz(
        tmp_path / "e.npz",
        ids=np.array([q["id"] for q in qs]),
        X=X,
        embedder=np.array(json.dumps({"kind": "x"})),
    )
    experts = ["m1", "m2", "m3"]
    rows = [
        {
            "id": q["id"],
            "expert": e,
            "choice": "ABCD"[rng.integers(4)],
            "consensus": float(rng.random()),
            "z": 0.0,
            "weight": 0.5,
        }
        for q in qs
        for e in experts
    ]
    write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "router"
    code, err = run_cli(
        capsys,
        "train",
        "--kind",
        "cascal",
        "--questions",
        qpath,
        "--embeddings",
        tmp_path / "e.npz",
        "--consensus",
        tmp_path / "c.jsonl",
        "--experts",
        *experts,
        "--out-dir",
        out,
    )
    assert code == 0, err
    names = [p.name for p in out.rglob("*")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) and n not in (".", "..") for n in names), names
    header = json.loads((out / "router.json").read_text())
    assert {s["name"] for s in header["subjects"]} == {q["category"] for q in qs}
    assert all(re.fullmatch(r"[a-z0-9-]+", s["slug"]) for s in header["subjects"])
