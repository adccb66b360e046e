"""MMLU-Pro (TIGER-Lab/MMLU-Pro, split `test`): 12,032 questions, 14 categories, up to 10 options.

Formatting (docs/METHOD.md §2.1): keep the dataset's own question_id (as a string), question,
options, answer letter and category (note "computer science" has a space). answer_index and
cot_content are dropped; src is kept in meta.
"""

from __future__ import annotations

from pathlib import Path

from .common import (
    hub_downloader,
    hub_rows,
    need_letter,
    need_options,
    question_record,
    upstream_id,
)

NAME = "mmlu_pro"
REPO = "TIGER-Lab/MMLU-Pro"
SPLIT = "test"
# Commit of the dataset repo used by default; override with the `revision` argument / config.
REVISION = "b189ec765aa7ed75c8acfea42df31fdae71f97be"
PATTERNS = ("data/test-*.parquet",)
# Known checksums of the files at REVISION (checked only when downloading that revision).
EXPECTED_SHA256 = {
    "data/test-00000-of-00001.parquet": "0e24a191921c2f453518a537a8b2117bd137e7714d4ef1565e9ba06c1ecb9ad8",
}
CATEGORIES = (
    "biology", "history", "chemistry", "psychology", "economics", "other", "math",
    "philosophy", "engineering", "health", "business", "physics", "law", "computer science",
)  # fmt: skip
COLUMNS = ("question_id", "question", "options", "answer", "category")


download = hub_downloader(REPO, REVISION, PATTERNS, SPLIT, EXPECTED_SHA256, "test-split parquet file(s)")


def format(raw_dir: Path, *, patterns=PATTERNS) -> tuple[list[dict], list[dict]]:  # noqa: A001
    """Raw MMLU-Pro test parquet -> (questions, keys)."""
    questions, keys, seen = [], [], set()
    for at, rec in hub_rows(raw_dir, patterns, COLUMNS):
        qid = upstream_id(rec.get("question_id"), "question_id", at)
        if qid in seen:
            raise at.error("question_id", f"duplicate question_id {qid}")
        seen.add(qid)
        options = need_options(rec.get("options"), "options", at)
        questions.append(question_record(rec, at, qid, options, "category", {"src": rec.get("src")}))
        keys.append({"id": qid, "answer": need_letter(rec.get("answer"), "answer", len(options), at)})
    return questions, keys
