"""SuperGPQA (m-a-p/SuperGPQA, split `train`, the only one): ~26.5k questions, 13 disciplines.

Formatting (docs/METHOD.md §2.2): id = 0-based row index in file order (as a string); category =
discipline; answer = answer_letter (the textual `answer` column is not used). uuid, field,
subfield, difficulty and is_calculation are kept in meta.
"""

from __future__ import annotations

from pathlib import Path

from .common import hub_downloader, hub_rows, need_letter, need_options, question_record

NAME = "supergpqa"
REPO = "m-a-p/SuperGPQA"
SPLIT = "train"
REVISION = "4430d4458112c7d4497fdcf94d7cc223313d6acf"
PATTERNS = ("SuperGPQA-all.jsonl",)
EXPECTED_SHA256 = {
    "SuperGPQA-all.jsonl": "28b998e70205ee95e540317b5adc06a06552a3961fb50b153df126b833f7a910",
}
CATEGORIES = (
    "Management", "Literature and Arts", "Military Science", "Agronomy", "Science", "Economics",
    "Philosophy", "Law", "Sociology", "History", "Education", "Medicine", "Engineering",
)  # fmt: skip
META_FIELDS = ("uuid", "field", "subfield", "difficulty", "is_calculation")


download = hub_downloader(REPO, REVISION, PATTERNS, SPLIT, EXPECTED_SHA256, "SuperGPQA file(s)")


def format(raw_dir: Path, *, patterns=PATTERNS) -> tuple[list[dict], list[dict]]:  # noqa: A001
    """Raw SuperGPQA rows -> (questions, keys)."""
    questions, keys = [], []
    for index, (at, rec) in enumerate(hub_rows(raw_dir, patterns)):
        options = need_options(rec.get("options"), "options", at)
        qid = str(index)
        meta = {k: rec.get(k) for k in META_FIELDS}
        questions.append(question_record(rec, at, qid, options, "discipline", meta))
        answer = need_letter(rec.get("answer_letter"), "answer_letter", len(options), at)
        keys.append({"id": qid, "answer": answer})
    return questions, keys
