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


# --------------------------------------------------------------------------- lines, nesting, size
def test_text_prompts_are_split_at_newlines_only(tmp_path):
    """A prompt's number is its line in the file, as an editor and `wc -l` count lines: form feeds,
    U+2028/U+2029, NEL and vertical tabs inside a line (str.splitlines splits at each) stay in it."""
    from rgd.records import read_prompts

    lines = ["one\fstill one", "two\u2028still two", "", "four\x85\u2029\vstill four", "five"]
    path = tmp_path / "prompts.txt"
    path.write_bytes("\r\n".join(lines).encode() + b"\n")
    got = read_prompts(path)
    assert [p.id for p in got] == ["line-1", "line-2", "line-4", "line-5"]
    assert [p.text for p in got] == [line for line in lines if line]
    (tmp_path / "ids.txt").write_text("a\fb\nc\n")  # a test-id file is read the same way
    from rgd.split import read_test_ids

    assert read_test_ids(tmp_path / "ids.txt") == {"a\fb": 1, "c": 2}


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "step, make_args",
    [
        ("questions", lambda f, t: ["split", "--questions", f, "--keys", GOOD_Q, *_split_outs(t)]),
        (
            "responses",
            lambda f, t: [
                "consensus",
                "--questions",
                GOOD_Q,
                "--responses",
                f"e1={f}",
                f"e2={f}",
                *_cons_outs(t),
            ],
        ),
        (
            "prompts",
            lambda f, t: ["route", "--router", t, "--prompts", f, "--format", "jsonl", "--out", t / "r"],
        ),
    ],
)
@pytest.mark.parametrize("depth", [100_000, 150])
def test_deeply_nested_jsonl_is_one_line(capsys, tmp_path, step, make_args, depth):
    """100,000 levels used to end in a RecursionError traceback; 150 (under Python's limit) is
    refused too, so no later recursive step can overflow. Either way one line, in well under a second."""
    import time

    (tmp_path / "provenance.json").write_text(json.dumps({"kind": "knn", "experts": ["e1", "e2"]}))
    path = tmp_path / f"deep.{step}.jsonl"
    path.write_text("\n" + '{"id": "q2", "x": ' + "[" * depth + "]" * depth + "}\n")  # line 2
    t0 = time.perf_counter()
    code, err = run_cli(capsys, *make_args(path, tmp_path))
    assert time.perf_counter() - t0 < 5
    assert_one_line_error(code, err, path, ":2: JSON nested more than 100 levels deep")


def _split_outs(t: Path) -> list:
    return [
        x for k in ("train", "test") for x in (f"--{k}-questions", t / f"{k}.q", f"--{k}-keys", t / f"{k}.k")
    ]


def _cons_outs(t: Path) -> list:
    return ["--out", t / "c.jsonl", "--stats", t / "s.json"]


def test_deeply_nested_json_yaml_and_options_are_one_line(capsys, tmp_path):
    from rgd.io import InputError, read_json, read_yaml

    (tmp_path / "deep.json").write_text(DEEP)
    (tmp_path / "deep.yaml").write_text(DEEP)
    with pytest.raises(InputError, match="deep.json: JSON nested more than 100 levels deep"):
        read_json(tmp_path / "deep.json")
    with pytest.raises(InputError, match="deep.yaml: YAML nested too deeply"):
        read_yaml(tmp_path / "deep.yaml")
    with pytest.raises(SystemExit) as e:  # an option's value: argparse's own one-line error
        main(["consensus", "--questions", str(GOOD_Q), "--responses", "a=x", "b=y", "--spec", DEEP])
    err = capsys.readouterr().err
    assert (
        e.value.code == 2
        and "--spec: JSON nested more than 100 levels deep" in err
        and "Traceback" not in err
    )


def test_an_oversized_endpoints_file_is_refused_by_its_size_before_parsing(tmp_path):
    """8.5 MB of endpoints took minutes and 650 MB of PyYAML before its error: now its size is
    checked first (serve.endpoints.MAX_BYTES), so it is refused at once."""
    import time

    from rgd.io import InputError
    from rgd.serve import endpoints

    entry = "  e{i}: {{base_url: 'http://127.0.0.1:9/v1', model: m{i}}}\n"
    body = "".join(entry.format(i=i) for i in range(150_000))
    path = tmp_path / "endpoints.yaml"
    path.write_text("experts:\n" + body)
    assert path.stat().st_size > 8_000_000
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=f"over the limit of {endpoints.MAX_BYTES:,} for an endpoints file"):
        endpoints.load(path, ["e0"], {})
    assert time.perf_counter() - t0 < 1
    # a file at the limit still loads: a pool of hundreds of experts fits
    n = (endpoints.MAX_BYTES - 100) // len(entry.format(i=99_999))
    path.write_text("experts:\n" + "".join(entry.format(i=i) for i in range(n)))
    assert path.stat().st_size <= endpoints.MAX_BYTES and n > 500
    assert set(endpoints.load(path, ["e0", f"e{n - 1}"], {})) == {"e0", f"e{n - 1}"}


# --------------------------------------------------------------------------- step errors
# Plain ValueErrors of step code escaped the CLI's error boundary (which catches InputError,
# SpecError and SetupError only, since the boundary stopped catching every ValueError) as
# tracebacks. Each case is bad input a user can give; each is one located line now.
def _responses(tmp_path: Path, name: str, letters: str) -> Path:
    qs = read_jsonl(GOOD_Q)
    path = tmp_path / f"{name}.jsonl"
    write_jsonl(
        path, [{"id": q["id"], "expert": name, "choice": c, "confidence": -0.5} for q, c in zip(qs, letters)]
    )
    return path


STEP_CASES = {
    # a letter past the consensus classes: was "ValueError: choices: question row 1, model column 1 ..."
    "consensus-choice-outside-classes": (
        lambda t: [
            "consensus",
            "--questions",
            GOOD_Q,
            "--responses",
            f"e1={_responses(t, 'e1', 'AB')}",
            f"e2={_responses(t, 'e2', 'AE')}",
            "--spec",
            '{"n_classes": 4}',
            *_cons_outs(t),
        ],
        "e2.jsonl:2: choice: 'E' (question 'q2', expert 'e2') is outside the 4 consensus classes A-D",
    ),
    "consensus-one-expert": (
        lambda t: [
            "consensus",
            "--questions",
            GOOD_Q,
            "--responses",
            f"e1={_responses(t, 'e1', 'AB')}",
            *_cons_outs(t),
        ],
        "--responses: a consensus needs a pool of at least 2 experts, got 1",
    ),
    "filter-self-consistency-without-own": (
        lambda t: [
            "filter",
            "--questions",
            GOOD_Q,
            "--keys",
            _keys(t),
            "--spec",
            '{"self_consistency": {}}',
            *_filter_outs(t),
        ],
        "--own-responses: missing: the spec's self_consistency needs the generator's own responses",
    ),
    "filter-differentiation-one-expert": (
        lambda t: [
            "filter",
            "--questions",
            GOOD_Q,
            "--keys",
            _keys(t),
            "--spec",
            '{"differentiation": {}}',
            "--pool-responses",
            f"e1={_responses(t, 'e1', 'AB')}",
            *_filter_outs(t),
        ],
        "--pool-responses: the spec's differentiation needs a pool of at least 2 experts' responses, got 1",
    ),
    "split-test-ids-list-everything": (
        lambda t: [
            "split",
            "--questions",
            GOOD_Q,
            "--keys",
            _keys(t),
            "--test-ids",
            _all_ids(t),
            *_split_outs(t),
        ],
        "ids.txt: id: lists every question: the train split would be empty",
    ),
    "import-original-split-twice": (
        lambda t: [
            "import-original",
            "--root",
            t,
            "--task",
            "x",
            "--split",
            "test",
            "test",
            "--out-dir",
            t / "o",
        ],
        "--split: expected distinct split names, got ['test', 'test']",
    ),
    "import-original-embedder": (
        lambda t: [
            "import-original",
            "--root",
            t,
            "--task",
            "x",
            "--split",
            "test",
            "--out-dir",
            t / "o",
            "--embedder",
            '{"model": "m"}',
        ],
        "--embedder: expected an embedder spec",
    ),
    # a consensus row's letter past its question's options: was "ValueError: choices: option index 4 ..."
    "analyse-choice-outside-options": (
        lambda t: [
            "analyse",
            "--labels",
            "b/p",
            "--experts",
            "e1",
            "e2",
            "--questions",
            GOOD_Q,
            "--keys",
            _keys(t),
            "--consensus",
            _consensus(t),
            "--out",
            t / "a.json",
        ],
        "c.jsonl: choice: question 'q2', expert 'e2': 'E' is outside the question's 4 options",
    ),
}


def _keys(t: Path) -> Path:
    write_jsonl(t / "keys.jsonl", [{"id": q["id"], "answer": "A"} for q in read_jsonl(GOOD_Q)])
    return t / "keys.jsonl"


def _all_ids(t: Path) -> Path:
    (t / "ids.txt").write_text("".join(q["id"] + "\n" for q in read_jsonl(GOOD_Q)))
    return t / "ids.txt"


def _filter_outs(t: Path) -> list:
    return ["--out-questions", t / "f.q", "--out-keys", t / "f.k", "--out-report", t / "f.json"]


def _consensus(t: Path) -> Path:
    main(
        [
            "consensus",
            "--questions",
            str(GOOD_Q),
            "--responses",
            f"e1={_responses(t, 'e1', 'AB')}",
            f"e2={_responses(t, 'e2', 'AE')}",
            "--out",
            str(t / "c.jsonl"),
            "--stats",
            str(t / "s.json"),
        ]
    )
    return t / "c.jsonl"


@pytest.mark.parametrize("case", STEP_CASES)
def test_step_errors_are_one_located_line(capsys, tmp_path, case):
    make_args, fragment = STEP_CASES[case]
    args = make_args(tmp_path)
    capsys.readouterr()
    code, err = run_cli(capsys, *args)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    assert not any(
        p.name in ("c.jsonl", "f.q", "train.q", "o")
        for p in tmp_path.iterdir()
        if case != "analyse-choice-outside-options"
    )
