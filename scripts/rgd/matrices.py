"""Question-by-expert matrices, read once for every step that needs them (train, evaluate, scaling,
analyses), with one rule for each fact:

  choices (n, m) int    the option index of each expert's answer; -1 = abstention
  consensus (n, m)      the consensus score of that answer (rgd consensus)
  z (n, m)              the confidence z-score under a training source's (median, sigma), used by
                        the Top-3 vote's tie-break; 0 where the confidence is missing
  gold (n,)             the key's option index

A letter becomes an index through `records.LETTER_INDEX` only. Every file must cover the question
set exactly: a missing row and a row for a question outside the set are both errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import InputError, read_json
from .records import LETTER_INDEX, read_keys, read_questions, read_responses
from .spec import SpecError, bounds, parse

ABSTAIN = -1


def letter_index(letter: str | None) -> int:
    return ABSTAIN if letter is None else LETTER_INDEX[letter]


def consensus_matrices(
    rows: list[dict], ids: list[str], experts: list[str], source: str | Path = "<consensus>"
) -> tuple[np.ndarray, np.ndarray]:
    """(choices, consensus) of `experts` over `ids` from validated consensus rows
    (records.read_consensus). Rows of other experts are ignored; rows of other questions are not."""
    qi = {q: i for i, q in enumerate(ids)}
    mi = {e: j for j, e in enumerate(experts)}
    choices = np.full((len(ids), len(experts)), ABSTAIN, dtype=np.int64)
    cons = np.full((len(ids), len(experts)), np.nan)
    for r in rows:
        j = mi.get(r["expert"])
        if j is None:
            continue
        i = qi.get(r["id"])
        if i is None:
            raise InputError(
                source, None, "id", f"{r['id']!r} is not in the question set: is this the right file?"
            )
        if not np.isnan(cons[i, j]):
            raise InputError(source, None, "id", f"two rows for question {r['id']!r}, expert {r['expert']!r}")
        choices[i, j] = letter_index(r["choice"])
        cons[i, j] = r["consensus"]
    if np.isnan(cons).any():
        i, j = map(int, np.argwhere(np.isnan(cons))[0])
        raise InputError(source, None, "id", f"no row for question {ids[i]!r}, expert {experts[j]!r}")
    return choices, cons


def gold_indices(ids: list[str], keys: dict[str, str], source: str | Path = "<keys>") -> np.ndarray:
    missing = [q for q in ids if q not in keys]
    if missing:
        raise InputError(source, None, "id", f"no key for {len(missing)} questions, e.g. {missing[:3]}")
    return np.array([LETTER_INDEX[keys[q]] for q in ids], dtype=np.int64)


def correctness(
    choices: np.ndarray, ids: list[str], keys: dict[str, str], source: str | Path = "<keys>"
) -> np.ndarray:
    """(n, m) float 0/1: the expert's answer equals the key (an abstention never does)."""
    return (choices == gold_indices(ids, keys, source)[:, None]).astype(np.float64)


@dataclass(frozen=True)
class _Stats:
    median: float
    sigma: float = field(metadata=bounds(doc="robust scale; a non-positive value means 1"))


def read_stats(path: str | Path, experts: list[str]):
    """The (median, sigma) of each of `experts` from a consensus stats file, as consensus.ModelStats."""
    from .consensus import ModelStats

    data = read_json(path)
    table = data.get("experts") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise InputError(path, None, "experts", "missing or not an object of per-expert statistics")
    med, sig = [], []
    for e in experts:
        if e not in table:
            raise InputError(path, None, "experts", f"no statistics for expert {e!r}")
        try:
            st = parse(_Stats, table[e], where=None)
        except SpecError as err:
            raise InputError(
                path, None, f"experts.{e}.{err.field}" if err.field else f"experts.{e}", err.message
            ) from None
        med.append(st.median)
        sig.append(st.sigma)
    return ModelStats(np.array(med), np.array(sig))


def response_matrices(
    ids: list[str], responses: dict[str, str | Path], stats: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """(choices, z) of the experts in `responses` (name -> response file) over `ids`, z under the
    (median, sigma) of `stats` (rgd consensus's stats of the training source: label-free)."""
    from .consensus import z_scores

    experts = list(responses)
    model_stats = read_stats(stats, experts)
    qi = {q: i for i, q in enumerate(ids)}
    choices = np.full((len(ids), len(experts)), ABSTAIN, dtype=np.int64)
    conf = np.full(choices.shape, np.nan)
    for j, (e, path) in enumerate(responses.items()):
        seen = np.zeros(len(ids), dtype=bool)
        for r in read_responses(path, ids):
            if r["expert"] != e:
                raise InputError(
                    path, None, "expert", f"record {r['id']!r} is by {r['expert']!r}, filed under {e!r}"
                )
            i = qi[r["id"]]
            seen[i] = True
            choices[i, j] = letter_index(r["choice"])
            if r.get("confidence") is not None:
                conf[i, j] = r["confidence"]
        if not seen.all():
            missing = [ids[i] for i in np.flatnonzero(~seen)[:3]]
            raise InputError(
                path,
                None,
                "id",
                f"responses cover {int(seen.sum())} of {len(ids)} questions, e.g. none for {missing}",
            )
    return choices, z_scores(conf, model_stats)


@dataclass
class TestMatrices:
    """A test set as evaluation sees it: ids, choices (n, m), key indices (n,), z (n, m)."""

    ids: list[str]
    experts: list[str]
    choices: np.ndarray
    gold: np.ndarray
    z: np.ndarray


def load_test_set(questions, keys, responses: dict[str, str | Path], stats) -> TestMatrices:
    qs = read_questions(questions)
    ids = [q.id for q in qs]
    gold = gold_indices(ids, read_keys(keys, qs), keys)
    choices, z = response_matrices(ids, responses, stats)
    return TestMatrices(ids, list(responses), choices, gold, z)
