"""MedMCQA (openlifescienceai/medmcqa, split `train`), first N rows in file order (N = 30,000).

Formatting (docs/METHOD.md §2.3): id = 0-based row index (as a string); options = [opa, opb, opc,
opd]; answer = letter of cop (0 -> A ... 3 -> D); category = subject_name. The explanation is
dropped; the upstream id, choice_type and topic_name are kept in meta. The original takes the
first 30,000 rows without shuffling, so the subject mix follows the file order; rgd keeps that
rule for fidelity and makes N configurable (n=None keeps every row).
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    clean_text,
    hub_downloader,
    hub_rows,
    letter,
    need_int,
    need_str,
    question_record,
)

NAME = "medmcqa"
REPO = "openlifescienceai/medmcqa"
SPLIT = "train"
REVISION = "91c6572c454088bf71b679ad90aa8dffcd0d5868"
PATTERNS = ("data/train-*.parquet",)
EXPECTED_SHA256 = {
    "data/train-00000-of-00001.parquet": "b119434ba551517a6ec0ba1f7e0b4c029165ed284a4704f262ce37c791c493c5",
}
DEFAULT_N = 30_000
OPTION_COLUMNS = ("opa", "opb", "opc", "opd")
COLUMNS = ("id", "question", *OPTION_COLUMNS, "cop", "choice_type", "subject_name", "topic_name")
CATEGORIES = (
    "Pathology", "Ophthalmology", "Gynaecology & Obstetrics", "Anaesthesia", "Forensic Medicine",
    "Psychiatry", "Unknown", "Microbiology", "Medicine", "Radiology", "Biochemistry", "Dental",
    "Pediatrics", "Physiology", "Skin", "Pharmacology", "Social & Preventive Medicine", "ENT",
    "Surgery", "Orthopaedics", "Anatomy",
)  # fmt: skip


download = hub_downloader(REPO, REVISION, PATTERNS, SPLIT, EXPECTED_SHA256, "train-split parquet file(s)")


def format(raw_dir: Path, *, n: int | None = DEFAULT_N, patterns=PATTERNS) -> tuple[list[dict], list[dict]]:  # noqa: A001
    """Raw MedMCQA train parquet -> (questions, keys) for the first `n` rows in file order."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n: expected a positive integer or None, got {n!r}")
    questions, keys = [], []
    for index, (at, rec) in enumerate(hub_rows(raw_dir, patterns, COLUMNS)):
        if n is not None and index >= n:
            return questions, keys
        options = [clean_text(need_str(rec, c, at)) for c in OPTION_COLUMNS]
        cop = need_int(rec, "cop", at)
        if not 0 <= cop < len(OPTION_COLUMNS):
            raise at.error("cop", f"{cop} is outside 0..{len(OPTION_COLUMNS) - 1}")
        qid = str(index)
        meta = {"upstream_id": rec.get("id"), **{k: rec.get(k) for k in ("choice_type", "topic_name")}}
        questions.append(question_record(rec, at, qid, options, "subject_name", meta))
        keys.append({"id": qid, "answer": letter(cop)})
    return questions, keys
