"""Benchmark download + formatting (rgd.datasets), on fixtures mirroring each upstream schema.

The network cannot be reached from the test machine, so the download code runs for real
against a fake `huggingface_hub` module (HF datasets) and a local HTTP server on 127.0.0.1
(BBEH raw files), which exercises the real code paths, stamps and error handling.
"""

from __future__ import annotations

import http.server
import json
import shutil
import sys
import threading
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from rgd.datasets import BENCHMARKS, bbeh, medmcqa, mmlu_pro, supergpqa
from rgd.datasets.common import (
    STAMP,
    DownloadError,
    check_records,
    clean_text,
    find_files,
    format_to_files,
    require_pinned,
    verify_stamp,
)
from rgd.io import InputError, read_json, sha256_file
from rgd.records import read_keys, read_questions

UPSTREAM = Path(__file__).parent / "data" / "upstream"
ROOT = Path(__file__).resolve().parents[1]
SHA_A = "a" * 40
SHA_B = "0123456789abcdef0123456789abcdef01234567"

# column types as published on the hub (parquet files of the default config)
MMLU_SCHEMA = pa.schema([
    ("question_id", pa.int64()), ("question", pa.string()), ("options", pa.list_(pa.string())),
    ("answer", pa.string()), ("answer_index", pa.int64()), ("cot_content", pa.string()),
    ("category", pa.string()), ("src", pa.string()),
])  # fmt: skip
MEDMCQA_SCHEMA = pa.schema([
    ("id", pa.string()), ("question", pa.string()), ("opa", pa.string()), ("opb", pa.string()),
    ("opc", pa.string()), ("opd", pa.string()), ("cop", pa.int64()), ("choice_type", pa.string()),
    ("exp", pa.string()), ("subject_name", pa.string()), ("topic_name", pa.string()),
])  # fmt: skip

MMLU_FILE = "data/test-00000-of-00001.parquet"
MEDMCQA_FILE = "data/train-00000-of-00001.parquet"
SUPERGPQA_FILE = "SuperGPQA-all.jsonl"


def fixture_rows(rel: str) -> list[dict]:
    return [
        json.loads(line) for line in (UPSTREAM / rel).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def write_parquet(rows: list[dict], path: Path, schema: pa.Schema | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def make_mmlu(dir_: Path, rows: list[dict] | None = None, schema=MMLU_SCHEMA) -> Path:
    rows = fixture_rows("mmlu_pro/data/test-00000-of-00001.rows.jsonl") if rows is None else rows
    write_parquet(rows, dir_ / MMLU_FILE, schema)
    return dir_


def make_medmcqa(dir_: Path, rows: list[dict] | None = None, schema=MEDMCQA_SCHEMA) -> Path:
    rows = fixture_rows("medmcqa/data/train-00000-of-00001.rows.jsonl") if rows is None else rows
    write_parquet(rows, dir_ / MEDMCQA_FILE, schema)
    return dir_


def make_supergpqa(dir_: Path, rows: list[dict] | None = None) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    if rows is None:
        shutil.copyfile(UPSTREAM / "supergpqa" / SUPERGPQA_FILE, dir_ / SUPERGPQA_FILE)
    else:
        (dir_ / SUPERGPQA_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return dir_


def make_bbeh(dir_: Path) -> Path:
    shutil.copytree(UPSTREAM / "bbeh", dir_)
    return dir_


def edit_bbeh(dir_: Path, subset: str, index: int, **changes) -> Path:
    p = dir_ / subset / "task.json"
    data = json.loads(p.read_text(encoding="utf-8"))
    for k, v in changes.items():
        if v is None:
            data["examples"][index].pop(k, None)
        else:
            data["examples"][index][k] = v
    p.write_text(json.dumps(data), encoding="utf-8")
    return dir_


# ==========================================================================================
# registry


def test_registry_shape():
    assert list(BENCHMARKS) == ["mmlu_pro", "supergpqa", "medmcqa", "bbeh"]
    expected = {
        "mmlu_pro": ("TIGER-Lab/MMLU-Pro", "test", 14, "huggingface"),
        "supergpqa": ("m-a-p/SuperGPQA", "train", 13, "huggingface"),
        "medmcqa": ("openlifescienceai/medmcqa", "train", 21, "huggingface"),
        "bbeh": ("google-deepmind/bbeh", None, 9, "github"),
    }
    for name, b in BENCHMARKS.items():
        repo, split, n_cat, source = expected[name]
        assert (b.name, b.repo, b.split, len(b.categories), b.source) == (name, repo, split, n_cat, source)
        assert len(set(b.categories)) == n_cat
        require_pinned(b.revision)  # every default is a full commit sha
        assert callable(b.download) and callable(b.format)
    assert "computer science" in BENCHMARKS["mmlu_pro"].categories
    assert BENCHMARKS["bbeh"].categories == bbeh.SUBSETS


# ==========================================================================================
# MMLU-Pro


def test_mmlu_pro_format(tmp_path):
    raw = make_mmlu(tmp_path / "raw")
    qs, ks = mmlu_pro.format(raw)
    rows = fixture_rows("mmlu_pro/data/test-00000-of-00001.rows.jsonl")
    assert [q["id"] for q in qs] == [
        str(r["question_id"]) for r in rows
    ]  # upstream ids, as strings, file order
    assert [k["id"] for k in ks] == [q["id"] for q in qs]
    assert {q["category"] for q in qs} == set(mmlu_pro.CATEGORIES)  # all 14, incl. "computer science"
    for q, k, r in zip(qs, ks, rows):
        assert q["options"] == r["options"]
        assert k["answer"] == r["answer"]
        assert q["meta"] == {"src": r["src"]}
        assert set(q) == {
            "id",
            "category",
            "question",
            "options",
            "meta",
        }  # answer_index, cot_content dropped
    assert max(len(q["options"]) for q in qs) == 10 and min(len(q["options"]) for q in qs) == 4
    law = next(q for q in qs if q["category"] == "law")
    assert "\r" not in law["question"] and "and\nwhich" in law["question"]  # CRLF -> LF


@pytest.mark.parametrize(
    "mutate, where, field",
    [
        (lambda r: r.update(answer="F"), "[row 14]", "answer"),  # 4 options, answer F
        (lambda r: r.update(answer="b"), "[row 14]", "answer"),
        (lambda r: r.update(answer=None), "[row 14]", "answer"),
        (lambda r: r.update(category=None), "[row 14]", "category"),
        (lambda r: r.update(question="  "), "[row 14]", "question"),
        (lambda r: r["options"].__setitem__(2, ""), "[row 14]", "options[2]"),
        (lambda r: r.update(options=["only one"], answer="A"), "[row 14]", "options"),
        (lambda r: r.update(question_id=70), "[row 14]", "question_id"),  # duplicate of row 0
    ],
)
def test_mmlu_pro_bad_rows(tmp_path, mutate, where, field):
    rows = fixture_rows("mmlu_pro/data/test-00000-of-00001.rows.jsonl")
    mutate(rows[14])
    raw = make_mmlu(tmp_path / "raw", rows)
    with pytest.raises(InputError) as e:
        mmlu_pro.format(raw)
    msg = str(e.value)
    assert "test-00000-of-00001.parquet" in msg and where in msg and e.value.field == field, msg


def test_mmlu_pro_missing_column(tmp_path):
    rows = fixture_rows("mmlu_pro/data/test-00000-of-00001.rows.jsonl")
    for r in rows:
        del r["answer"]
    schema = pa.schema([f for f in MMLU_SCHEMA if f.name != "answer"])
    raw = make_mmlu(tmp_path / "raw", rows, schema)
    with pytest.raises(InputError, match=r"test-00000-of-00001\.parquet: answer: column missing"):
        mmlu_pro.format(raw)


def test_mmlu_pro_unreadable_or_absent(tmp_path):
    (tmp_path / "raw" / "data").mkdir(parents=True)
    (tmp_path / "raw" / MMLU_FILE).write_bytes(b"not a parquet file")
    with pytest.raises(InputError, match="unreadable parquet"):
        mmlu_pro.format(tmp_path / "raw")
    with pytest.raises(InputError, match="no raw file matches"):
        mmlu_pro.format(tmp_path)  # nothing matching data/test-*.parquet directly under it
    with pytest.raises(InputError, match="not found"):
        mmlu_pro.format(tmp_path / "absent")


# ==========================================================================================
# SuperGPQA


def test_supergpqa_format(tmp_path):
    raw = make_supergpqa(tmp_path / "raw")
    qs, ks = supergpqa.format(raw)
    rows = fixture_rows("supergpqa/SuperGPQA-all.jsonl")
    assert [q["id"] for q in qs] == [str(i) for i in range(len(rows))]  # row index
    for q, k, r in zip(qs, ks, rows):
        assert q["category"] == r["discipline"]
        assert k["answer"] == r["answer_letter"]  # the letter, not the textual answer
        assert q["options"][ord(k["answer"]) - 65] == r["answer"]
        assert q["meta"] == {f: r[f] for f in ("uuid", "field", "subfield", "difficulty", "is_calculation")}
    assert set(q["category"] for q in qs) <= set(supergpqa.CATEGORIES)
    assert "\u200b" not in qs[2]["question"] and qs[2]["question"].startswith("A projectile")


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r.update(answer_letter="K"), "answer_letter"),  # 10 options: K is outside
        (lambda r: r.update(answer_letter="AB"), "answer_letter"),
        (lambda r: r.pop("answer_letter"), "answer_letter"),
        (lambda r: r.pop("discipline"), "discipline"),
        (lambda r: r.update(options="A, B, C"), "options"),
        (lambda r: r.update(question=7), "question"),
    ],
)
def test_supergpqa_bad_rows(tmp_path, mutate, field):
    rows = fixture_rows("supergpqa/SuperGPQA-all.jsonl")
    mutate(rows[2])
    raw = make_supergpqa(tmp_path / "raw", rows)
    with pytest.raises(InputError) as e:
        supergpqa.format(raw)
    assert e.value.line == 3 and e.value.field == field and e.value.path.endswith(SUPERGPQA_FILE), str(
        e.value
    )
    assert f"{SUPERGPQA_FILE}:3: {field}:" in str(e.value)


def test_supergpqa_malformed_line(tmp_path):
    raw = make_supergpqa(tmp_path / "raw")
    with open(raw / SUPERGPQA_FILE, "a", encoding="utf-8") as fh:
        fh.write('{"uuid": "x", "question": \n')
    with pytest.raises(InputError, match=r"SuperGPQA-all\.jsonl:7: malformed JSON"):
        supergpqa.format(raw)


# ==========================================================================================
# MedMCQA


def test_medmcqa_format(tmp_path):
    raw = make_medmcqa(tmp_path / "raw")
    rows = fixture_rows("medmcqa/data/train-00000-of-00001.rows.jsonl")
    qs, ks = medmcqa.format(raw)  # default n = 30,000 > 8 rows: all kept
    assert medmcqa.DEFAULT_N == 30_000
    assert [q["id"] for q in qs] == [str(i) for i in range(len(rows))]
    for q, k, r in zip(qs, ks, rows):
        assert q["options"] == [r["opa"], r["opb"], r["opc"], r["opd"]]
        assert k["answer"] == "ABCD"[r["cop"]]
        assert q["category"] == r["subject_name"]
        assert q["meta"]["upstream_id"] == r["id"] and q["meta"]["choice_type"] == r["choice_type"]
        assert "exp" not in q and "exp" not in q["meta"]
    assert "topic_name" not in qs[2]["meta"]  # null upstream values are left out
    assert [k["answer"] for k in ks] == ["B", "C", "C", "A", "B", "A", "B", "B"]
    assert {q["category"] for q in qs} <= set(medmcqa.CATEGORIES)


def test_medmcqa_first_n_in_file_order(tmp_path):
    rows = fixture_rows("medmcqa/data/train-00000-of-00001.rows.jsonl")
    rows[6]["cop"] = 9  # a bad row after the first n is never read
    raw = make_medmcqa(tmp_path / "raw", rows)
    qs, ks = medmcqa.format(raw, n=5)
    assert [q["id"] for q in qs] == ["0", "1", "2", "3", "4"]
    assert [q["question"] for q in qs] == [r["question"] for r in rows[:5]]
    with pytest.raises(InputError, match="cop"):
        medmcqa.format(raw, n=None)
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="n:"):
            medmcqa.format(raw, n=bad)


@pytest.mark.parametrize(
    "mutate, field, text",
    [
        (lambda r: r.update(cop=4), "cop", "outside 0..3"),
        (lambda r: r.update(cop=-1), "cop", "outside 0..3"),
        (lambda r: r.update(cop=None), "cop", "missing"),
        (lambda r: r.update(opc=None), "opc", "missing"),
        (lambda r: r.update(opd=" "), "opd", "empty"),
        (lambda r: r.update(subject_name=None), "subject_name", "missing"),
        (lambda r: r.update(question=""), "question", "empty"),
    ],
)
def test_medmcqa_bad_rows(tmp_path, mutate, field, text):
    rows = fixture_rows("medmcqa/data/train-00000-of-00001.rows.jsonl")
    mutate(rows[2])
    raw = make_medmcqa(tmp_path / "raw", rows)
    with pytest.raises(InputError) as e:
        medmcqa.format(raw)
    msg = str(e.value)
    assert f"train-00000-of-00001.parquet[row 2]: {field}: " in msg and text in msg, msg


def test_medmcqa_cop_of_wrong_type(tmp_path):
    rows = fixture_rows("medmcqa/data/train-00000-of-00001.rows.jsonl")
    for r in rows:
        r["cop"] = str(r["cop"])
    schema = pa.schema([pa.field("cop", pa.string()) if f.name == "cop" else f for f in MEDMCQA_SCHEMA])
    raw = make_medmcqa(tmp_path / "raw", rows, schema)
    with pytest.raises(InputError, match=r"\[row 0\]: cop: expected an integer"):
        medmcqa.format(raw)


# ==========================================================================================
# BBEH


def test_bbeh_format_all_tasks(tmp_path):
    qs, ks = bbeh.format(make_bbeh(tmp_path / "raw"))
    assert [q["id"] for q in qs] == [str(i) for i in range(len(qs))]  # running global index
    assert len(qs) == 14
    cats = [q["category"] for q in qs]
    assert list(dict.fromkeys(cats)) == list(bbeh.SUBSETS)  # fixed task order, contiguous
    by = {}
    for q, k in zip(qs, ks):
        by.setdefault(q["category"], []).append((q, k["answer"]))
    for q, _ in by["bbeh_boardgame_qa"]:
        assert q["options"] == ["proved", "disproved", "unknown"] and q["question"].startswith(
            "A few players"
        )
    assert [a for _, a in by["bbeh_boardgame_qa"]] == ["B", "A", "C"]
    for q, _ in by["bbeh_causal_understanding"]:
        assert q["options"] == ["Yes", "No", "Ambiguous"] and q["question"].endswith("reply Ambiguous.")
    assert [a for _, a in by["bbeh_causal_understanding"]] == ["A", "C"]

    ((q, a),) = by["bbeh_boolean_expressions"]
    assert (
        q["question"] == "From the following five expressions, only one evaluates to true. Which one is it?"
    )
    assert len(q["options"]) == 5 and a == "D" and q["options"][3].startswith("(not (False)")

    assert [len(q["options"]) for q, _ in by["bbeh_disambiguation_qa"]] == [3, 5]  # variable count
    assert [a for _, a in by["bbeh_disambiguation_qa"]] == ["B", "E"]

    ((q, a),) = by["bbeh_geometric_shapes"]
    assert len(q["options"]) == 16 and q["options"][-1] == "4 and 10" and a == "C"

    ((q, a),) = by["bbeh_hyperbaton"]
    assert (
        len(q["options"]) == 11 and q["options"][-1] == "None of the above" and a == "A"
    )  # bare-letter target
    assert not any("concatenation" in o for o in q["options"]) and "(A)" not in q["question"]
    assert q["question"].endswith("Select all that apply.")

    ((q, a),) = by["bbeh_movie_recommendation"]
    assert len(q["options"]) == 10 and a == "C" and q["options"][2] == "Jaws, Alien, Heat, Fargo, Se7en"
    ((q, a),) = by["bbeh_shuffled_objects"]
    assert (
        q["options"] == ["Dune", "Emma", "Ulysses", "Beloved", "Frankenstein", "Lolita", "Walden"]
        and a == "G"
    )

    nycc = by["bbeh_nycc"]
    assert [len(q["options"]) for q, _ in nycc] == [10, 10] and [a for _, a in nycc] == ["H", "C"]
    assert nycc[0][0]["options"][-1] == "Profits are thin."  # first line of a multi-line option only
    assert nycc[0][0]["question"].startswith("The following is a description")
    assert all(q["meta"]["example"] == i for i, (q, _) in enumerate(by["bbeh_boardgame_qa"]))


def test_bbeh_geometric_question_text(tmp_path):
    qs, _ = bbeh.format(make_bbeh(tmp_path / "raw"))
    q = next(q for q in qs if q["category"] == "bbeh_geometric_shapes")
    assert q["question"].endswith("visualized?\nOptions:")
    assert "rounded" not in " ".join(q["options"])  # the note after the last option is dropped


def test_bbeh_parse_generic_rules():
    q, opts = bbeh.parse_generic(
        "\nPick one.\n(A) red\n(B) blue and\nstill blue\n(C) green\n\nAnswer with a letter."
    )
    assert q == "Pick one." and opts == ["red", "blue and", "green"]
    # option text may mention "(C)" inline: only "\n(X) " starts a new option
    assert bbeh.parse_generic("Q?\n(A) see (C) below\n(B) x")[1] == ["see (C) below", "x"]
    for bad, why in [
        ("no options here", r"no '\(A\)'"),
        ("(A) a\n(B) b", "no question"),
        ("Q?\n(A) a\n(C) c", r"marked \(B\)"),
        ("Q?\n(A) only one", "at least 2"),
        ("Q?\n(A) \n(B) b", r"option \(A\) has no text"),
    ]:
        with pytest.raises(ValueError, match=why):
            bbeh.parse_generic(bad)


def test_bbeh_target_letter():
    assert bbeh.target_letter("(E)") == "E"
    assert bbeh.target_letter(" K ") == "K"
    for bad in ("BC", "(e)", "e", "", "(AB)", "E)", "proved"):
        with pytest.raises(ValueError, match="cannot read an option letter"):
            bbeh.target_letter(bad)


@pytest.mark.parametrize(
    "subset, index, changes, field, text",
    [
        ("bbeh_hyperbaton", 0, {"target": "AC"}, "examples[0].target", "cannot read an option letter"),
        ("bbeh_nycc", 1, {"target": "(K)"}, "examples[1].target", "outside the 10 parsed options"),
        (
            "bbeh_disambiguation_qa",
            0,
            {"target": "(D)"},
            "examples[0].target",
            "outside the 3 parsed options",
        ),
        ("bbeh_boardgame_qa", 2, {"target": "maybe"}, "examples[2].target", "not one of"),
        ("bbeh_causal_understanding", 1, {"target": None}, "examples[1].target", "missing"),
        ("bbeh_movie_recommendation", 0, {"input": None}, "examples[0].input", "missing"),
        (
            "bbeh_shuffled_objects",
            0,
            {"input": "Who holds Dune?"},
            "examples[0].input",
            "no '(A)' option marker",
        ),
        ("bbeh_geometric_shapes", 0, {"target": 3}, "examples[0].target", "expected a string"),
    ],
)
def test_bbeh_bad_examples(tmp_path, subset, index, changes, field, text):
    raw = edit_bbeh(make_bbeh(tmp_path / "raw"), subset, index, **changes)
    with pytest.raises(InputError) as e:
        bbeh.format(raw)
    msg = str(e.value)
    assert f"{subset}/task.json: {field}: " in msg and text in msg, msg


def test_bbeh_bad_files(tmp_path):
    raw = make_bbeh(tmp_path / "raw")
    (raw / "bbeh_nycc" / "task.json").write_text('{"examples": {}}', encoding="utf-8")
    with pytest.raises(InputError, match=r"bbeh_nycc/task\.json: examples: missing or not a list"):
        bbeh.format(raw)
    (raw / "bbeh_nycc" / "task.json").write_text('{"examples": [', encoding="utf-8")
    with pytest.raises(InputError, match=r"bbeh_nycc/task\.json:1: malformed JSON"):
        bbeh.format(raw)
    (raw / "bbeh_nycc" / "task.json").write_text('{"examples": ["just text"]}', encoding="utf-8")
    with pytest.raises(InputError, match=r"examples\[0\]: expected an object"):
        bbeh.format(raw)
    (raw / "bbeh_nycc" / "task.json").unlink()
    with pytest.raises(InputError, match=r"bbeh_nycc/task\.json: file not found"):
        bbeh.format(raw)
    with pytest.raises(ValueError, match="only the multiple-choice tasks"):
        bbeh.format(raw, subsets=["bbeh_word_sorting"])


# ==========================================================================================
# common: records, files, stamps


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_format_to_files(tmp_path, name):
    maker = {"mmlu_pro": make_mmlu, "supergpqa": make_supergpqa, "medmcqa": make_medmcqa, "bbeh": make_bbeh}[
        name
    ]
    raw = maker(tmp_path / "raw")
    qpath, kpath = tmp_path / "out" / "questions.jsonl", tmp_path / "out" / "keys.jsonl"
    n = format_to_files(raw, qpath, kpath, name)
    questions = read_questions(qpath)
    keys = read_keys(kpath, questions)  # every key lies within its question's options
    assert n == len(questions) == len(keys) > 0
    for line in qpath.read_text(encoding="utf-8").splitlines():
        assert set(json.loads(line)) <= {"id", "category", "question", "options", "meta"}  # label-free
    first = (qpath.read_bytes(), kpath.read_bytes())
    format_to_files(raw, qpath, kpath, BENCHMARKS[name].format)  # a callable works too; output is stable
    assert (qpath.read_bytes(), kpath.read_bytes()) == first
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keys.jsonl", "questions.jsonl"]


def test_format_to_files_opts_and_unknown(tmp_path):
    raw = make_medmcqa(tmp_path / "raw")
    assert format_to_files(raw, tmp_path / "q.jsonl", tmp_path / "k.jsonl", "medmcqa", n=3) == 3
    with pytest.raises(ValueError, match="unknown benchmark"):
        format_to_files(raw, tmp_path / "q.jsonl", tmp_path / "k.jsonl", "mmlu")


def _q(i, n=3, cat="c"):
    return {"id": str(i), "category": cat, "question": f"q{i}?", "options": [f"o{j}" for j in range(n)]}


@pytest.mark.parametrize(
    "questions, keys, text",
    [
        ([_q(1), _q(1)], [{"id": "1", "answer": "A"}] * 2, "duplicate id"),
        ([_q(1)], [{"id": "1", "answer": "D"}], "outside the 3 options"),
        ([_q(1)], [{"id": "2", "answer": "A"}], "key #0 is for '2'"),
        ([_q(1)], [], "1 questions but 0 keys"),
        ([], [], "no questions"),
        ([{**_q(1), "id": 1}], [{"id": "1", "answer": "A"}], "id: expected a string"),
        ([_q(1, n=1)], [{"id": "1", "answer": "A"}], "options: need 2"),
        ([_q(1)], [{"id": "1", "answer": "a"}], "answer: expected one capital letter"),
    ],
)
def test_check_records_rejects(tmp_path, questions, keys, text):
    with pytest.raises(InputError, match=text):
        check_records(questions, keys, "somewhere")
    with pytest.raises(InputError, match=text):
        format_to_files(tmp_path, tmp_path / "q.jsonl", tmp_path / "k.jsonl", lambda raw: (questions, keys))
    assert not (tmp_path / "q.jsonl").exists() and not (tmp_path / "k.jsonl").exists()


def test_clean_text():
    assert clean_text("a\r\nb\rc\u2028d\u2029e\ufefff\u200bg") == "a\nb\nc\nd\nef" + "g"


def test_find_files_skips_hidden(tmp_path):
    (tmp_path / ".cache" / "data").mkdir(parents=True)
    (tmp_path / ".cache" / "data" / "test-1.parquet").write_text("x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test-2.parquet").write_text("x")
    (tmp_path / "data" / "test-1.parquet").write_text("x")
    assert [p.name for p in find_files(tmp_path, ["data/test-*.parquet"])] == [
        "test-1.parquet",
        "test-2.parquet",
    ]


def test_require_pinned():
    assert require_pinned(SHA_B) == SHA_B
    for bad in ("main", "refs/heads/main", "v1.0", SHA_B.upper(), SHA_B[:12], "", None):
        with pytest.raises(DownloadError):
            require_pinned(bad)
    assert require_pinned("main", allow_unpinned=True) == "main"


# ==========================================================================================
# downloads from the Hugging Face hub (fake huggingface_hub module)


class FakeHub:
    """Stands in for huggingface_hub: list_repo_files + hf_hub_download over in-memory repos."""

    def __init__(self, cache: Path, repos: dict[str, dict[str, dict[str, bytes]]]):
        self.cache, self.repos, self.calls = cache, repos, []
        self.fail_download: set[str] = set()

    def _files(self, repo_id, revision, repo_type):
        assert repo_type == "dataset"
        try:
            return self.repos[repo_id][revision]
        except KeyError:
            raise RuntimeError(f"404 Revision Not Found for {repo_id}@{revision}") from None

    def module(self):
        m = types.ModuleType("huggingface_hub")

        def list_repo_files(repo_id, *, revision=None, repo_type=None, token=None):
            self.calls.append(("list", repo_id, revision))
            return sorted(self._files(repo_id, revision, repo_type))

        def hf_hub_download(
            repo_id, filename, *, repo_type=None, revision=None, token=None, cache_dir=None, **kw
        ):
            self.calls.append(("get", repo_id, revision, filename))
            files = self._files(repo_id, revision, repo_type)
            if filename in self.fail_download or filename not in files:
                raise RuntimeError(f"connection reset while fetching {filename}")
            p = self.cache / repo_id / revision / filename
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(files[filename])
            return str(p)

        m.list_repo_files, m.hf_hub_download = list_repo_files, hf_hub_download
        return m


def _hub_files(name: str, tmp: Path) -> dict[str, bytes]:
    """The files of each dataset repo as they sit on the hub (with neighbours to be ignored)."""
    tmp.mkdir(parents=True, exist_ok=True)
    if name == "mmlu_pro":
        main = make_mmlu(tmp / "m") / MMLU_FILE
        return {
            MMLU_FILE: main.read_bytes(),
            "data/validation-00000-of-00001.parquet": b"PAR1...",
            "README.md": b"# MMLU-Pro\n",
            ".gitattributes": b"*.parquet filter=lfs\n",
        }
    if name == "medmcqa":
        main = make_medmcqa(tmp / "m") / MEDMCQA_FILE
        return {
            MEDMCQA_FILE: main.read_bytes(),
            "data/test-00000-of-00001.parquet": b"PAR1...",
            "data/validation-00000-of-00001.parquet": b"PAR1...",
            "README.md": b"# medmcqa\n",
        }
    main = UPSTREAM / "supergpqa" / SUPERGPQA_FILE
    return {SUPERGPQA_FILE: main.read_bytes(), "README.md": b"# SuperGPQA\n"}


MAIN_FILE = {"mmlu_pro": MMLU_FILE, "medmcqa": MEDMCQA_FILE, "supergpqa": SUPERGPQA_FILE}
HF = ["mmlu_pro", "supergpqa", "medmcqa"]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    repos = {BENCHMARKS[n].repo: {SHA_A: _hub_files(n, tmp_path / "hubsrc" / n)} for n in HF}
    fake = FakeHub(tmp_path / "hfcache", repos)
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake.module())
    return fake


def _no_leftovers(parent: Path):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", HF)
def test_hf_download_then_format(tmp_path, hub, name):
    b = BENCHMARKS[name]
    out = tmp_path / "raw" / name
    assert b.download(out, SHA_A) == out
    rel = MAIN_FILE[name]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        [rel, STAMP]
    )
    stamp = read_json(out / STAMP)
    assert stamp["repo"] == b.repo and stamp["revision"] == SHA_A and stamp["repo_type"] == "dataset"
    assert stamp["source"] == "huggingface" and stamp["split"] == b.split
    assert stamp["files"] == [
        {"path": rel, "sha256": sha256_file(out / rel), "bytes": (out / rel).stat().st_size}
    ]
    assert ("list", b.repo, SHA_A) in hub.calls and ("get", b.repo, SHA_A, rel) in hub.calls
    assert _no_leftovers(out.parent)
    # the downloaded directory formats exactly like the fixture itself
    fixture_dir = {"mmlu_pro": make_mmlu, "supergpqa": make_supergpqa, "medmcqa": make_medmcqa}[name](
        tmp_path / "fx"
    )
    assert b.format(out) == b.format(fixture_dir)
    # a raw file changed after download is caught by the stamp
    with open(out / rel, "ab") as fh:
        fh.write(b"\n")
    with pytest.raises(InputError, match="sha256 differs"):
        verify_stamp(out)


@pytest.mark.parametrize("name", HF)
def test_hf_download_refuses_unpinned(tmp_path, hub, name):
    with pytest.raises(DownloadError, match="not a pinned commit"):
        BENCHMARKS[name].download(tmp_path / "raw", "main")
    assert hub.calls == [] and not (tmp_path / "raw").exists()


def test_hf_download_allow_unpinned(tmp_path, hub):
    hub.repos["TIGER-Lab/MMLU-Pro"]["main"] = hub.repos["TIGER-Lab/MMLU-Pro"][SHA_A]
    out = mmlu_pro.download(tmp_path / "raw", "main", allow_unpinned=True)
    assert read_json(out / STAMP)["revision"] == "main"


def test_hf_download_errors(tmp_path, hub):
    out = tmp_path / "raw"
    with pytest.raises(DownloadError, match=rf"TIGER-Lab/MMLU-Pro@{SHA_B}: cannot list .*Revision Not Found"):
        mmlu_pro.download(out, SHA_B)
    with pytest.raises(
        DownloadError, match=r"no file matches \['data/train-\*\.parquet'\]; the repository has"
    ):
        mmlu_pro.download(out, SHA_A, patterns=("data/train-*.parquet",))
    hub.fail_download.add(MMLU_FILE)
    with pytest.raises(
        DownloadError, match=r"cannot download data/test-00000-of-00001\.parquet.*connection reset"
    ):
        mmlu_pro.download(out, SHA_A)
    assert not out.exists() and _no_leftovers(tmp_path)


def test_hf_download_failure_keeps_previous_copy(tmp_path, hub):
    out = medmcqa.download(tmp_path / "raw", SHA_A)
    before = read_json(out / STAMP)
    hub.fail_download.add(MEDMCQA_FILE)
    with pytest.raises(DownloadError):
        medmcqa.download(out, SHA_A)
    assert read_json(out / STAMP) == before and _no_leftovers(tmp_path)


def test_hf_download_checksums(tmp_path, hub):
    # the default revision carries known checksums; fixture bytes do not match them
    hub.repos["openlifescienceai/medmcqa"][medmcqa.REVISION] = hub.repos["openlifescienceai/medmcqa"][SHA_A]
    with pytest.raises(DownloadError, match="differs from the expected b119434b"):
        medmcqa.download(tmp_path / "raw", medmcqa.REVISION)
    assert not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)
    out = medmcqa.download(tmp_path / "raw", medmcqa.REVISION, expected_sha256={})  # check switched off
    good = sha256_file(out / MEDMCQA_FILE)
    medmcqa.download(tmp_path / "raw2", SHA_A, expected_sha256={MEDMCQA_FILE: good})
    with pytest.raises(DownloadError, match="differs from the expected"):
        medmcqa.download(tmp_path / "raw3", SHA_A, expected_sha256={MEDMCQA_FILE: "0" * 64})


# ==========================================================================================
# BBEH download from a local HTTP server


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    failures: dict[str, list[int]]
    bodies: dict[str, bytes]
    log: list[str]

    def do_GET(self):  # noqa: N802
        self.log.append(self.path)
        queued = self.failures.get(self.path)
        if queued:
            self._send(queued.pop(0), b"busy")
            return
        if self.path in self.bodies:
            self._send(200, self.bodies[self.path])
            return
        p = self.root / self.path.lstrip("/")
        if p.is_file():
            self._send(200, p.read_bytes())
        else:
            self._send(404, b"404: Not Found")

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def gh(tmp_path, monkeypatch):
    """A local stand-in for raw.githubusercontent.com serving the BBEH fixtures at SHA_A."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "gh"
    for subset in bbeh.SUBSETS:
        dst = root / bbeh.REPO / SHA_A / bbeh.TASK_PATH.format(subset=subset)
        dst.parent.mkdir(parents=True)
        shutil.copyfile(UPSTREAM / "bbeh" / subset / "task.json", dst)
    handler = type("H", (_Handler,), {"root": root, "failures": {}, "bodies": {}, "log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    handler.url_path = lambda subset, rev=SHA_A: f"/{bbeh.REPO}/{rev}/{bbeh.TASK_PATH.format(subset=subset)}"
    handler.root_dir = root
    yield handler
    server.shutdown()
    server.server_close()


def test_bbeh_download_then_format(tmp_path, gh):
    flaky = gh.url_path("bbeh_nycc")
    gh.failures[flaky] = [503, 429]  # transient: retried
    out = bbeh.download(tmp_path / "raw", SHA_A, base_url=gh.base_url, backoff=0)
    assert gh.log.count(flaky) == 3
    for subset in bbeh.SUBSETS:
        assert (out / subset / "task.json").read_bytes() == (
            UPSTREAM / "bbeh" / subset / "task.json"
        ).read_bytes()
    stamp = read_json(out / STAMP)
    assert (
        stamp["source"] == "github" and stamp["repo"] == "google-deepmind/bbeh" and stamp["revision"] == SHA_A
    )
    assert stamp["url_template"].endswith(
        f"/google-deepmind/bbeh/{SHA_A}/bbeh/benchmark_tasks/{{subset}}/task.json"
    )
    assert [f["path"] for f in stamp["files"]] == sorted(f"{s}/task.json" for s in bbeh.SUBSETS)
    assert all(f["sha256"] == sha256_file(out / f["path"]) for f in stamp["files"])
    assert _no_leftovers(tmp_path)
    assert bbeh.format(out) == bbeh.format(UPSTREAM / "bbeh")


def test_bbeh_download_default_url_layout(tmp_path, gh):
    """The real default: raw.githubusercontent.com/<owner>/<repo>/<commit>/bbeh/benchmark_tasks/..."""
    assert bbeh.task_url(bbeh.BASE_URL, bbeh.REPO, bbeh.REVISION, "bbeh_nycc") == (
        "https://raw.githubusercontent.com/google-deepmind/bbeh/"
        f"{bbeh.REVISION}/bbeh/benchmark_tasks/bbeh_nycc/task.json"
    )
    assert len(bbeh.REVISION) == 40


def test_bbeh_download_not_found_is_not_retried(tmp_path, gh):
    (gh.root_dir / gh.url_path("bbeh_hyperbaton").lstrip("/")).unlink()
    with pytest.raises(DownloadError, match=r"bbeh_hyperbaton/task\.json: HTTP 404 \(not retried\)"):
        bbeh.download(tmp_path / "raw", SHA_A, base_url=gh.base_url, backoff=0)
    assert gh.log.count(gh.url_path("bbeh_hyperbaton")) == 1
    assert not (tmp_path / "raw").exists() and _no_leftovers(tmp_path)


def test_bbeh_download_gives_up_after_retries(tmp_path, gh):
    gh.failures[gh.url_path("bbeh_boardgame_qa")] = [503] * 10
    with pytest.raises(DownloadError, match=r"failed after 3 attempts; last error: HTTP 503"):
        bbeh.download(tmp_path / "raw", SHA_A, base_url=gh.base_url, retries=2, backoff=0)
    assert gh.log.count(gh.url_path("bbeh_boardgame_qa")) == 3
    assert not (tmp_path / "raw").exists()


def test_bbeh_download_rejects_non_task_body(tmp_path, gh):
    gh.bodies[gh.url_path("bbeh_geometric_shapes")] = b"<html>rate limited</html>"
    with pytest.raises(DownloadError, match="not a JSON task file"):
        bbeh.download(tmp_path / "raw", SHA_A, base_url=gh.base_url, backoff=0)
    gh.bodies[gh.url_path("bbeh_geometric_shapes")] = b'{"examples": []}'
    with pytest.raises(DownloadError, match="non-empty 'examples' list"):
        bbeh.download(tmp_path / "raw", SHA_A, base_url=gh.base_url, backoff=0)


def test_bbeh_download_unreachable(tmp_path, gh):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DownloadError, match="failed after 2 attempts; last error: ConnectionError"):
        bbeh.download(
            tmp_path / "raw", SHA_A, base_url=f"http://127.0.0.1:{port}", retries=1, backoff=0, timeout=5
        )


def test_bbeh_download_pins_and_subsets(tmp_path, gh):
    with pytest.raises(DownloadError, match="not a pinned commit"):
        bbeh.download(tmp_path / "raw", "main", base_url=gh.base_url)
    assert gh.log == []
    with pytest.raises(ValueError, match="only the multiple-choice tasks"):
        bbeh.download(tmp_path / "raw", SHA_A, base_url=gh.base_url, subsets=["bbeh_dyck_languages"])
    out = bbeh.download(
        tmp_path / "raw", SHA_A, base_url=gh.base_url, subsets=["bbeh_nycc", "bbeh_hyperbaton"]
    )
    assert sorted(p.name for p in out.iterdir()) == ["bbeh_hyperbaton", "bbeh_nycc", STAMP]
    qs, _ = bbeh.format(out, subsets=["bbeh_nycc", "bbeh_hyperbaton"])
    assert [q["category"] for q in qs] == ["bbeh_nycc", "bbeh_nycc", "bbeh_hyperbaton"]
    with pytest.raises(DownloadError, match="sha256 .* differs"):
        bbeh.download(
            tmp_path / "raw",
            SHA_A,
            base_url=gh.base_url,
            subsets=["bbeh_nycc"],
            expected_sha256={"bbeh_nycc/task.json": "0" * 64},
        )


# ==========================================================================================
# category descriptions (config/descriptions/{benchmark}.yaml)


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_descriptions_cover_categories(name):
    b = BENCHMARKS[name]
    data = yaml.safe_load((ROOT / "config/descriptions" / f"{b.name}.yaml").read_text(encoding="utf-8"))
    assert set(data) == {"benchmark", "categories"} and data["benchmark"] == name
    cats = data["categories"]
    assert set(cats) == set(b.categories) and len(cats) == len(b.categories)
    for cat, text in cats.items():
        assert isinstance(text, str) and text == text.strip() and "\n" not in text, cat
        assert 150 <= len(text) <= 900, (cat, len(text))


def test_descriptions_all_distinct():
    texts = []
    for b in BENCHMARKS.values():
        texts += yaml.safe_load(
            (ROOT / "config/descriptions" / f"{b.name}.yaml").read_text(encoding="utf-8")
        )["categories"].values()
    assert len(texts) == 57 and len(set(texts)) == len(texts)


def test_causal_understanding_description_is_about_causation():
    cats = yaml.safe_load((ROOT / "config/descriptions/bbeh.yaml").read_text(encoding="utf-8"))["categories"]
    causal = cats["bbeh_causal_understanding"].lower()
    assert "cause" in causal and "ambiguous" in causal and "swap" not in causal
    assert causal != cats["bbeh_shuffled_objects"].lower()
