"""Seeded, stratified train/test split (docs/METHOD.md §3, with its bugs fixed).

The original shuffled with Python's unseeded global RNG and then replaced the result with a
test-id list that was never published. Here each category is shuffled by its own generator,
seeded from (seed, category), and the first round(ratio * n) items go to train. An explicit
test-id list can still be given to reproduce a fixed split.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .spec import bounds, validate


@dataclass(frozen=True)
class SplitSettings:
    """A benchmark's `split` settings (config `benchmarks.<name>.split`; `rgd split` options)."""

    train_fraction: float = field(
        default=0.6,
        metadata=bounds(
            exclusive_min=0.0, exclusive_max=1.0, doc="share of each category that goes to train"
        ),
    )
    seed: int = 0
    test_ids: str | None = None  # a file of test ids, one per line: reproduces a fixed split

    def __post_init__(self) -> None:
        validate(self)


def train_count(n: int, train_fraction: float) -> int:
    """How many of a category's `n` questions go to train: round(train_fraction * n), but at
    least one on each side when the category has two or more."""
    k = int(round(train_fraction * n))
    return min(max(k, 1), n - 1) if n > 1 else n


def stratified_split(
    questions: list[dict], train_fraction: float, seed: int, test_ids: set[str] | None = None
) -> tuple[list[str], list[str]]:
    """Return (train ids, test ids), each in the input order."""
    if test_ids is not None:
        unknown = test_ids - {q["id"] for q in questions}
        if unknown:
            raise ValueError(f"test_ids: {len(unknown)} ids are not in the data, e.g. {sorted(unknown)[:3]}")
        test = [q["id"] for q in questions if q["id"] in test_ids]
        return [q["id"] for q in questions if q["id"] not in test_ids], test
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction: must be in (0, 1), got {train_fraction}")
    by_cat: dict[str, list[str]] = defaultdict(list)
    for q in questions:
        by_cat[q["category"]].append(q["id"])
    train: set[str] = set()
    for cat, ids in by_cat.items():
        rng = np.random.default_rng([seed, *cat.encode()])
        order = rng.permutation(len(ids))
        train.update(ids[i] for i in order[: train_count(len(ids), train_fraction)])
    return [q["id"] for q in questions if q["id"] in train], [
        q["id"] for q in questions if q["id"] not in train
    ]


def read_test_ids(path) -> dict[str, int]:
    """A file of test ids, one per line (blank lines skipped) -> {id: line}."""
    from .io import InputError, read_text, text_lines

    out: dict[str, int] = {}
    for lineno, line in enumerate(text_lines(read_text(path)), 1):
        i = line.strip()
        if not i:
            continue
        if i in out:
            raise InputError(path, lineno, "id", f"{i!r} listed twice (first on line {out[i]})")
        out[i] = lineno
    if not out:
        raise InputError(path, None, None, "no test ids (empty file)")
    return out


def run(
    questions_path,
    keys_path,
    train_fraction: float,
    seed: int,
    test_ids_path,
    train_questions,
    train_keys,
    test_questions,
    test_keys,
) -> tuple[int, int]:
    """`rgd split`: read, split, write the four files; returns (n train, n test)."""
    from .io import InputError, write_jsonl
    from .records import read_keys, read_questions

    qs = read_questions(questions_path)
    keys = read_keys(keys_path, qs)
    test_ids = None
    if test_ids_path:
        listed = read_test_ids(test_ids_path)
        known = {q.id for q in qs}
        unknown = [(ln, i) for i, ln in listed.items() if i not in known]
        if unknown:
            raise InputError(
                test_ids_path,
                unknown[0][0],
                "id",
                f"{unknown[0][1]!r} is not in {questions_path} ({len(unknown)} unknown ids)",
            )
        test_ids = set(listed)
        if known <= test_ids:
            raise InputError(
                test_ids_path, None, "id", "lists every question: the train split would be empty"
            )
    records = [q.to_dict() for q in qs]
    train, test = stratified_split(records, train_fraction, seed, test_ids)
    by_id = {r["id"]: r for r in records}
    for ids, oq, ok in ((train, train_questions, train_keys), (test, test_questions, test_keys)):
        write_jsonl(oq, (by_id[i] for i in ids))
        write_jsonl(ok, ({"id": i, "answer": keys[i]} for i in ids))
    return len(train), len(test)
