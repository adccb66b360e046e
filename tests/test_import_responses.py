"""`rgd import-responses`: published per-question outputs (MMLU-Pro's files, lm-eval --log_samples)
into a recording directory, and `load_recording` reading it back.

The fixtures (tests/data/recorded/) are small real-shaped copies of each defect class of the
MMLU-Pro files: Alpha is the newest revision (a 5-shot continuation with its own "The answer is",
null preds, entries that are not records, a value answer, an empty output); Beta an older one
(options as a Python-literal string, a revised gold letter, revised options, a one-option question,
fewer rows, `model_outputs`); gamma a tar of per-category `*_result.json` with `response` and
`*_summary.json` files. The lm-eval fixtures: a generative task and two log-likelihood tasks.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from rgd.cli import main
from rgd.io import InputError
from rgd.recorded import archive, import_responses, load_recording
from rgd.recorded.build import CUT_MISS, REVISED, cut_at_next_turn
from rgd.recorded.recording import ANSWERS, KEYS, PROVENANCE, QUESTIONS, write_jsonl_gz
from rgd.recorded.sources import lm_eval_task, mmlu_pro_model_name
from rgd.spec import SpecError

DATA = Path(__file__).parent / "data" / "recorded"
COMMITTED = Path(__file__).resolve().parents[1] / "data" / "mmlu-pro-recorded"
MISS = "no option letter or matching value found"
ALPHA, BETA, GAMMA = "Alpha-3.1-8B", "Beta-7B", "gamma-2024-05-13"


@pytest.fixture
def inputs(tmp_path) -> list[Path]:
    """Alpha as a .zip, Beta as a plain .json, gamma as a .tar.xz of its folder."""
    d = tmp_path / "in"
    d.mkdir()
    src = DATA / "mmlu-pro"
    alpha = d / "model_outputs_Alpha-3_1-8B_5shots.zip"
    with zipfile.ZipFile(alpha, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(src / "model_outputs_Alpha-3_1-8B_5shots.json", "model_outputs_Alpha-3_1-8B_5shots.json")
    beta = d / "model_outputs_Beta-7B_5shots.json"
    shutil.copy(src / "model_outputs_Beta-7B_5shots.json", beta)
    gamma = d / "gamma-2024-05-13_results.tar.xz"
    with tarfile.open(gamma, "w:xz") as t:
        t.add(src / "gamma-2024-05-13", "gamma-2024-05-13")
    return [alpha, beta, gamma]


def _import(inputs, out, **kw):
    return import_responses("mmlu-pro", inputs, out, **kw)


# --------------------------------------------------------------------------- rules
def test_the_cut_ends_the_response_at_the_next_few_shot_turn():
    text = "It is B. The answer is (B).\n\nQuestion:\nWhat?\nAnswer: The answer is (A)."
    assert cut_at_next_turn(text) == ("It is B. The answer is (B).\n\n", True)
    assert cut_at_next_turn("  Question: first line") == ("", True)
    assert cut_at_next_turn("The question: is it? The answer is (C).") == (
        "The question: is it? The answer is (C).",
        False,
    )


def test_names_from_files():
    assert mmlu_pro_model_name(Path("model_outputs_Meta-Llama-3_1-70B-Instruct_5shots.zip")) == (
        "Meta-Llama-3.1-70B-Instruct"
    )
    assert mmlu_pro_model_name(Path("gpt4o-2024-05-13_results.tar.xz")) == "gpt4o-2024-05-13"
    assert mmlu_pro_model_name(Path("model_outputs_Mistral-7B-v0.2-hf_5shots.zip")) == "Mistral-7B-v0.2-hf"
    assert lm_eval_task(Path("samples_mmlu_pro_math_2024-07-01T12-00-00.000000.jsonl")) == "mmlu_pro_math"
    assert lm_eval_task(Path("my_task.jsonl")) == "my_task"


# --------------------------------------------------------------------------- mmlu-pro
def test_mmlu_pro_letters_abstentions_and_coverage(inputs, tmp_path):
    prov = _import(inputs, tmp_path / "rec", gold_from=ALPHA)
    rec = load_recording(tmp_path / "rec")
    assert rec.models == [ALPHA, BETA, GAMMA]
    assert [q.id for q in rec.questions] == ["70", "71", "72", "73", "74", "75"]
    assert rec.questions[3].category == "computer science" and rec.questions[4].options == (
        "Madison",
        "Jefferson",
    )
    # the continuation's "The answer is (A)" is cut; "the answer is 3" is matched to option B
    assert rec.answers(ALPHA) == {"70": "B", "71": "C", "73": "B"}
    assert rec.abstentions(ALPHA) == {"72": MISS, "74": "empty output", "75": CUT_MISS}
    # Beta: literal-string options read; revised options (73) and a one-option question (74) abstain
    assert rec.answers(BETA) == {"70": "A", "71": "C", "72": "D"}
    assert rec.abstentions(BETA) == {"73": REVISED, "74": REVISED}
    assert rec.covered(BETA) == {"70", "71", "72", "73", "74"}  # fewer rows: 75 is not covered
    assert rec.answers(GAMMA) == {"70": "B", "71": "C"} and rec.covered(GAMMA) == {"70", "71"}
    assert rec.confidences(ALPHA) == {}
    assert rec.keys == {"70": "B", "71": "C", "72": "A", "73": "B", "74": "A", "75": "B"}
    a = prov["models"][ALPHA]
    assert (a["records"], a["non_records"], a["answered"], a["abstained"], a["correct"]) == (6, 2, 3, 3, 3)
    assert a["accuracy"] == 0.5 and a["abstentions"] == {MISS: 1, CUT_MISS: 1, "empty output": 1}
    # Alpha's own preds: B, C, A on 70, 71, 75; rgd agrees on 70 and 71 and abstains on 75
    assert a["source_pred"] | {} == {
        "given": 3,
        "agree": 2,
        "agreement": round(2 / 3, 6),
        "correct": 2,
        "accuracy": round(2 / 6, 6),
        "letter_where_pred_null": 1,
    }


def test_provenance_names_files_gold_and_revisions(inputs, tmp_path):
    source = {"repository": "https://example.org/outputs", "commits": {"all": "0" * 40}}
    prov = _import(inputs, tmp_path / "rec", gold_from=ALPHA, gold_note="newest", source=source)
    assert prov == json.loads((tmp_path / "rec" / PROVENANCE).read_text())
    assert prov["format"] == "mmlu-pro" and prov["source"] == source and prov["rgd_version"]
    files = {f["name"]: f for f in prov["files"]}
    for p in inputs:
        assert files[p.name]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        assert files[p.name]["bytes"] == p.stat().st_size
    assert files[inputs[2].name]["skipped_members"] == [
        "gamma-2024-05-13/business_summary.json",
        "gamma-2024-05-13/math_summary.json",
    ]
    assert files[inputs[0].name]["non_records"] == 2 and files[inputs[0].name]["model"] == ALPHA
    g = prov["gold"]
    assert (g["from"], g["why"], g["majority_for"], g["dropped_one_option"]) == (ALPHA, "newest", [], [])
    assert g["differing"] == {"71": {"chosen": "C", "letters": {"A": [BETA], "C": [ALPHA, GAMMA]}}}
    assert g["revised_questions"] == {
        "70": {"options_differ": [], "question_differs": [BETA]},
        "73": {"options_differ": [BETA], "question_differs": []},
        "74": {"options_differ": [BETA], "question_differs": []},
    }
    assert prov["questions"]["by_category"]["math"] == 2 and prov["questions"]["n"] == 6
    assert "extract_choice" in prov["extraction"]["rule"] and "Question:" in prov["extraction"]["rule"]
    text = json.dumps(prov)
    assert str(tmp_path) not in text  # nothing machine-dependent


def test_another_gold_revision_and_the_majority_default(inputs, tmp_path):
    prov = _import(inputs, tmp_path / "beta", gold_from=BETA)
    rec = load_recording(tmp_path / "beta")
    assert rec.keys["71"] == "A" and rec.questions[3].options == ("2", "3", "4", "6")
    assert rec.abstentions(ALPHA)["73"] == REVISED
    # Beta's one-option 74 is never chosen; 75 is not in Beta's file: both take the majority version
    assert prov["gold"]["majority_for"] == ["74", "75"]
    prov = _import(inputs, tmp_path / "maj")
    assert prov["gold"]["from"] == "majority" and load_recording(tmp_path / "maj").keys["71"] == "C"


def test_a_question_only_an_old_revision_has_with_one_option_is_dropped(inputs, tmp_path):
    prov = _import([inputs[1]], tmp_path / "rec")
    assert prov["gold"]["dropped_one_option"] == ["74"]
    rec = load_recording(tmp_path / "rec")
    assert [q.id for q in rec.questions] == ["70", "71", "72", "73"] and "74" not in rec.covered(BETA)
    assert prov["models"][BETA]["records"] == 5 and prov["models"][BETA]["covered"] == 4


def test_two_runs_give_the_same_bytes(inputs, tmp_path):
    _import(inputs, tmp_path / "a", gold_from=ALPHA)
    _import(list(reversed(inputs)), tmp_path / "b", gold_from=ALPHA)
    for name in (QUESTIONS, KEYS, ANSWERS, PROVENANCE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    raw = (tmp_path / "a" / ANSWERS).read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and raw[3] & 0x08 == 0  # gzip: no time stamp, no file name
    lines = gzip.decompress(raw).decode().splitlines()
    assert [json.loads(x)["model"] for x in lines] == [ALPHA, BETA, GAMMA]
    assert all(set(json.loads(x)) == {"model", "answers", "abstentions", "confidences"} for x in lines)


def test_the_command_checks_digests_and_renames(inputs, tmp_path, capsys):
    sums = tmp_path / "SHA256SUMS"
    sums.write_text("".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in inputs))
    out = tmp_path / "rec"
    args = ["import-responses", "--format", "mmlu-pro", *map(str, inputs), "--out-dir", str(out)]
    assert main([*args, "--sums", str(sums), "--rename", f"{GAMMA}=gpt-x", "--gold-from", ALPHA]) == 0
    assert load_recording(out).models == [ALPHA, BETA, "gpt-x"]
    assert "6 questions, 3 models" in capsys.readouterr().out
    sums.write_text(sums.read_text().replace(inputs[1].name, "other.json"))
    assert main([*args, "--sums", str(sums)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{inputs[1]}: not listed in {sums}" in err
    assert main([*args, "--rename", "Nobody=x"]) == 2
    assert "--rename: Nobody: no input model of that name" in capsys.readouterr().err
    assert main([*args, "--rename", f"{BETA}=bad name"]) == 2
    assert "'bad name' is not safe" in capsys.readouterr().err
    assert main([*args, "--gold-from", "Nobody"]) == 2
    assert "--gold-from: 'Nobody' is not one of the models read" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input files
def _json_input(tmp_path, records, name="model_outputs_X_5shots.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(records))
    return p


def _alpha_records() -> list:
    return json.loads((DATA / "mmlu-pro" / "model_outputs_Alpha-3_1-8B_5shots.json").read_text())


@pytest.mark.parametrize(
    "edit, located",
    [
        (lambda r: r[0].pop("answer"), "[0].answer: missing"),
        (
            lambda r: r[1].update(options="['a', 'b'"),
            "[1].options: a string that is not a Python list literal",
        ),
        (lambda r: r[1].update(options="__import__('os')"), "[1].options: a string that is not a Python"),
        (lambda r: r[0].update(answer="Q"), "[0].answer: 'Q' is outside the 4 options"),
        (lambda r: r[3].update(question_id=70), "[3].question_id: duplicate 70"),
        (lambda r: r[0].pop("generated_text"), "[0].generated_text: missing (expected one of"),
        (lambda r: r[0].update(generated_text=5), "[0].generated_text: expected a string or null"),
        (lambda r: r[0].update(pred=3), "[0].pred: expected a string or null, got int"),
    ],
)
def test_a_bad_record_is_one_located_error(tmp_path, edit, located):
    recs = _alpha_records()
    edit(recs)
    p = _json_input(tmp_path, recs)
    with pytest.raises(InputError) as e:
        _import([p], tmp_path / "rec")
    assert str(e.value) == f"{p}: {located}" or str(e.value).startswith(f"{p}: {located}")
    assert not (tmp_path / "rec").exists()


def _zip(path: Path, members: dict[str, bytes], mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            z.writestr(info, data)
    return path


def test_archives_are_read_within_bounds(tmp_path, monkeypatch):
    ok = json.dumps(_alpha_records()).encode()
    cases = {
        "parent.zip": (_zip(tmp_path / "parent.zip", {"../x.json": ok}), "'../x.json': absolute or parent"),
        "abs.zip": (_zip(tmp_path / "abs.zip", {"/etc/x.json": ok}), "absolute or parent-relative"),
        "link.zip": (
            _zip(tmp_path / "link.zip", {"x.json": b"t"}, stat.S_IFLNK | 0o777),
            "not a regular file",
        ),
        "none.zip": (_zip(tmp_path / "none.zip", {"x.txt": b"t"}), "the archive holds no .json file"),
        "torn.zip": (tmp_path / "torn.zip", "not a readable zip archive"),
        "x.tar.gz": (tmp_path / "x.tar.gz", "not a readable tar archive"),
        "x.csv": (tmp_path / "x.csv", "expected a .json, .zip or tar file"),
    }
    cases["torn.zip"][0].write_bytes(cases["parent.zip"][0].read_bytes()[:40])
    cases["x.tar.gz"][0].write_bytes(b"\x1f\x8b\x08\x00garbage")
    cases["x.csv"][0].write_text("a,b\n")
    buf = tmp_path / "link.tar"
    with tarfile.open(buf, "w") as t:
        ti = tarfile.TarInfo("x.json")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(ti)
    cases["link.tar"] = (buf, "'x.json': a link or special file")
    for name, (path, fragment) in cases.items():
        with pytest.raises(InputError, match=None) as e:
            archive.json_members(path)
        assert str(e.value).startswith(f"{path}: ") and fragment in str(e.value), (name, str(e.value))
    big = _zip(tmp_path / "big.zip", {"x.json": ok})
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 100)
    with pytest.raises(InputError, match="over the bound of 100"):
        archive.json_members(big)


def test_a_member_that_is_not_a_list_names_the_member(tmp_path):
    z = _zip(tmp_path / "model_outputs_X_5shots.zip", {"a.json": b'{"x": 1}'})
    with pytest.raises(InputError, match=r"model_outputs_X_5shots\.zip!a\.json: expected a JSON list"):
        _import([z], tmp_path / "rec")


# --------------------------------------------------------------------------- lm-eval
def test_lm_eval_generative_and_loglikelihood_tasks(tmp_path):
    files = sorted((DATA / "lm-eval").glob("*.jsonl"))
    prov = import_responses("lm-eval", files, tmp_path / "rec", model="my-model_v1.2")
    rec = load_recording(tmp_path / "rec")
    assert rec.models == ["my-model_v1.2"]
    ids = [q.id for q in rec.questions]
    assert ids == ["70", "71", "72", "Mercury_7175875", "Mercury_SC_409171"] + [
        "mmlu_abstract_algebra-0",
        "mmlu_abstract_algebra-1",
    ]
    m = "my-model_v1.2"
    assert rec.answers(m) == {
        "70": "B",  # the continuation after "Question:" is cut
        "71": "B",
        "Mercury_7175875": "C",
        "Mercury_SC_409171": "A",  # a tie: the first option
        "mmlu_abstract_algebra-0": "B",
    }
    assert rec.abstentions(m) == {"72": MISS, "mmlu_abstract_algebra-1": "no finite log-likelihood"}
    assert rec.confidences(m) == {
        "Mercury_7175875": -3.5,
        "Mercury_SC_409171": -7.0,
        "mmlu_abstract_algebra-0": -1.5,
    }
    assert rec.keys["Mercury_SC_409171"] == "B"  # ARC's 1-based numeric label "2"
    cats = {q.id: q.category for q in rec.questions}
    assert (cats["70"], cats["Mercury_7175875"], cats["mmlu_abstract_algebra-0"]) == (
        "business",
        "arc_easy",
        "abstract_algebra",
    )
    s = prov["models"][m]
    assert s["confidences"] == 3 and s["source_pred"]["given"] == 2 and s["source_pred"]["agree"] == 2
    assert sorted(f["tasks"][0] for f in prov["files"]) == [
        "arc_easy",
        "mmlu_abstract_algebra",
        "mmlu_pro_custom",
    ]


@pytest.mark.parametrize(
    "doc, target, letter",
    [
        ({"answer": "C"}, None, "C"),
        ({"answer": 2}, None, "C"),
        ({"answer_index": 1, "answer": None}, None, "B"),
        ({"answerKey": "3"}, None, "C"),
        ({"label": "3"}, None, "D"),  # HellaSwag: a 0-based index as text
        ({}, 0, "A"),
    ],
)
def test_lm_eval_gold_fields(doc, target, letter):
    from rgd.datasets.common import Row
    from rgd.recorded.sources import _gold

    assert _gold(doc, target, 4, Row(Path("f"), line=1)) == letter


def _lm_line(tmp_path, edit) -> Path:
    src = DATA / "lm-eval" / "samples_arc_easy_2024-07-01T12-00-00.000000.jsonl"
    lines = [json.loads(x) for x in src.read_text().splitlines()]
    edit(lines[1])
    p = tmp_path / "samples_t.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return p


@pytest.mark.parametrize(
    "edit, located",
    [
        (lambda r: r.pop("doc"), ":2: doc: missing or not an object"),
        (lambda r: r["doc"].pop("question"), ":2: doc.question: missing"),
        (lambda r: r["doc"].pop("choices"), ":2: doc.options: missing"),
        (lambda r: r["doc"].update(answerKey="9"), ":2: doc.answerKey: index 8 is outside the 3 options"),
        (
            lambda r: r.update(filtered_resps=r["filtered_resps"][:2]),
            ":2: filtered_resps: 2 log-likelihoods for 3",
        ),
        (
            lambda r: r["filtered_resps"][0].__setitem__(0, "low"),
            ":2: filtered_resps[0][0]: expected a number",
        ),
        (lambda r: r.update(resps=5, filtered_resps=None), ":2: resps: missing or not a non-empty list"),
        (lambda r: r["doc"].update(id="Mercury_7175875"), ":2: doc_id: duplicate question id"),
    ],
)
def test_a_bad_lm_eval_line_is_one_located_error(tmp_path, edit, located):
    p = _lm_line(tmp_path, edit)
    with pytest.raises(InputError) as e:
        import_responses("lm-eval", [p], tmp_path / "rec", model="m")
    assert str(e.value).startswith(f"{p}{located}"), str(e.value)


def test_lm_eval_needs_a_safe_model_name(tmp_path):
    files = sorted((DATA / "lm-eval").glob("*.jsonl"))
    with pytest.raises(SpecError, match="--model: required for --format lm-eval"):
        import_responses("lm-eval", files, tmp_path / "rec")
    with pytest.raises(InputError, match="'../m' is not safe"):
        import_responses("lm-eval", files, tmp_path / "rec", model="../m")
    twice = tmp_path / "samples_again.jsonl"
    shutil.copy(files[0], twice)
    with pytest.raises(InputError, match=r"question id 'Mercury_7175875' is also in samples_arc_easy"):
        import_responses("lm-eval", [files[0], twice], tmp_path / "rec", model="m")


# --------------------------------------------------------------------------- the loader's refusals
@pytest.fixture
def recording(inputs, tmp_path) -> Path:
    _import(inputs, tmp_path / "rec", gold_from=ALPHA)
    return tmp_path / "rec"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in gzip.decompress(path.read_bytes()).decode().splitlines()]


def _rewrite(path: Path, edit) -> None:
    recs = _lines(path)
    edit(recs)
    write_jsonl_gz(path, recs)


@pytest.mark.parametrize(
    "name, edit, located",
    [
        (ANSWERS, lambda r: r[1].pop("abstentions"), f"{ANSWERS}:2: abstentions: missing"),
        (
            ANSWERS,
            lambda r: r[0].update(model="../evil"),
            f"{ANSWERS}:1: model: '../evil' is not a safe name",
        ),
        (ANSWERS, lambda r: r[2].update(model=BETA), f"{ANSWERS}:3: model: '{BETA}' given twice"),
        (
            ANSWERS,
            lambda r: r[0]["answers"].update({"71": "E"}),
            f"{ANSWERS}:1: answers.71: 'E' is outside the 3",
        ),
        (ANSWERS, lambda r: r[0]["answers"].update({"99": "A"}), f"{ANSWERS}:1: answers.99: not a question"),
        (ANSWERS, lambda r: r[0]["abstentions"].update({"70": "x"}), f"{ANSWERS}:1: abstentions.70: also in"),
        (
            ANSWERS,
            lambda r: r[0]["confidences"].update({"72": 1.0}),
            f"{ANSWERS}:1: confidences.72: a confidence",
        ),
        (ANSWERS, lambda r: r[0].update(text="hi"), f"{ANSWERS}:1: text: unknown field"),
        (KEYS, lambda r: r.pop(), f"{KEYS}: id: no key for 1 of 6 questions"),
        (KEYS, lambda r: r[0].update(answer="b"), f"{KEYS}:1: answer: expected one capital letter"),
        (QUESTIONS, lambda r: r[0].pop("options"), f"{QUESTIONS}:1: options: missing or not a list"),
        (QUESTIONS, lambda r: r.append(r[0]), f"{QUESTIONS}:7: id: duplicate id '70'"),
    ],
)
def test_the_loader_refuses_a_bad_line(recording, name, edit, located):
    _rewrite(recording / name, edit)
    with pytest.raises(InputError) as e:
        load_recording(recording)
    assert str(e.value).startswith(f"{recording}/{located}"), str(e.value)


def test_the_loader_refuses_bad_files_and_counts(recording):
    raw = (recording / ANSWERS).read_bytes()
    (recording / ANSWERS).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=f"{ANSWERS}: not a readable gzip file"):
        load_recording(recording)
    (recording / ANSWERS).write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=f"{ANSWERS}: not a readable gzip file"):
        load_recording(recording)
    first = gzip.decompress(raw).splitlines()[0]
    (recording / ANSWERS).write_bytes(gzip.compress(first + b"\n{torn\n", mtime=0))
    with pytest.raises(InputError, match=f"{ANSWERS}:2: malformed JSON"):
        load_recording(recording)
    (recording / ANSWERS).write_bytes(raw)
    load_recording(recording)
    prov = json.loads((recording / PROVENANCE).read_text())
    prov["models"][BETA]["answered"] = 4
    (recording / PROVENANCE).write_text(json.dumps(prov))
    with pytest.raises(InputError, match=f"{PROVENANCE}: models.{BETA}.answered: 4, but {ANSWERS} has 3"):
        load_recording(recording)
    (recording / QUESTIONS).unlink()
    with pytest.raises(InputError, match=f"{QUESTIONS}: file not found"):
        load_recording(recording)
    with pytest.raises(InputError, match="not a recording directory"):
        load_recording(recording / "nothing")


def test_an_unknown_model_is_one_clear_error(recording):
    rec = load_recording(recording)
    with pytest.raises(InputError, match=f"model: 'gpt-9' is not recorded here \\(recorded: {ALPHA}, {BETA}"):
        rec.answers("gpt-9")


# --------------------------------------------------------------------------- the committed copy
def test_the_committed_recording_matches_its_provenance():
    from rgd.datasets.mmlu_pro import CATEGORIES

    rec = load_recording(COMMITTED)  # checks every line and the per-model counts
    prov = rec.provenance
    assert len(rec.questions) == prov["questions"]["n"] == 12032
    assert len(rec.models) == 30 and len(prov["files"]) == 30
    assert {q.category for q in rec.questions} == set(CATEGORIES)
    assert sum(prov["questions"]["by_category"].values()) == 12032
    assert all(q.id.isdigit() for q in rec.questions)  # the formatter's ids: str(question_id)
    assert prov["gold"]["from"] == "jamba-1.5-large" and prov["format"] == "mmlu-pro"
    assert all(len(f["sha256"]) == 64 for f in prov["files"])
    for m in rec.models:
        s = prov["models"][m]
        assert s["covered"] == len(rec.covered(m)) <= s["records"]
        assert s["correct"] == sum(rec.keys[q] == a for q, a in rec.answers(m).items())
        assert not rec.confidences(m)  # MMLU-Pro's outputs have none
    assert {"gpt-4o-2024-05-13", "Meta-Llama-3.1-70B-Instruct", "mathstral-7B"} <= set(rec.models)
    assert sum(p.stat().st_size for p in COMMITTED.iterdir()) < 6_000_000


def test_a_json_member_is_read_from_a_tar(tmp_path):
    buf = io.BytesIO(json.dumps([1]).encode())
    p = tmp_path / "x.tar"
    with tarfile.open(p, "w") as t:
        ti = tarfile.TarInfo("d/x.json")
        ti.size = len(buf.getvalue())
        t.addfile(ti, buf)
    (m,) = archive.json_members(p)
    assert (m.name, m.where, m.data) == ("d/x.json", f"{p}!d/x.json", b"[1]")
