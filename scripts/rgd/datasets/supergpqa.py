"""SuperGPQA (m-a-p/SuperGPQA, split `train`, the only one): ~26.5k questions, 13 disciplines.

Formatting (reference §2.2): id = 0-based row index in file order (as a string); category =
discipline; answer = answer_letter (the textual `answer` column is not used). uuid, field,
subfield, difficulty and is_calculation are kept in meta.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    hub_downloader,
    clean_text,
    drop_none,
    find_files,
    iter_table,
    need_letter,
    need_options,
    need_str,
    verify_stamp,
)

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
    raw_dir = Path(raw_dir)
    verify_stamp(raw_dir)
    questions, keys = [], []
    index = 0
    for path in find_files(raw_dir, patterns):
        for at, rec in iter_table(path):
            options = need_options(rec.get("options"), "options", at)
            qid = str(index)
            q = {
                "id": qid,
                "category": clean_text(need_str(rec, "discipline", at)),
                "question": clean_text(need_str(rec, "question", at)),
                "options": options,
            }
            meta = drop_none({k: rec.get(k) for k in META_FIELDS})
            if meta:
                q["meta"] = meta
            questions.append(q)
            keys.append({"id": qid, "answer": need_letter(rec.get("answer_letter"), "answer_letter", len(options), at)})
            index += 1
    return questions, keys
