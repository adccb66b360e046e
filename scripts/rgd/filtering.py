"""Filtering generated data by the paper's two generator properties (docs/METHOD.md §11).

A filtered set is a subset, with the same ids and the same records, of one generated set:

* **self-consistency**: the generator, run as a pool responder on its own questions, picks its
  own key (an abstention fails);
* **differentiation**: the pool does not answer the question uniformly. `by="agreement"` (the
  default) keeps a question when the plurality share of the pool, over all pool members (an
  abstention agrees with nobody), is at most `max_agreement`, or below 1 (not unanimous) when that
  is unset; a question no pool model answered is dropped. `by="key"` keeps a question when the
  fraction of the pool that picks the generator's key is strictly between 0 and 1;
* then an optional seeded, category-balanced subsample down to `target_size`.

The generator's keys are read here by design: this step builds a training set from the
generator's own labelled output; the routers downstream still see only what their kind allows.

    from rgd.filtering import FilterConfig, filter_set
    kept, report = filter_set(questions, keys, own, pool, FilterConfig.from_spec(spec))
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .io import InputError, read_npz, warn
from .spec import bounds, parse, validate

BY = ("agreement", "key")


@dataclass(frozen=True)
class SelfConsistencySpec:
    expert: str | None = field(default=None, metadata=bounds(doc="the expert running the generator's model"))


@dataclass(frozen=True)
class DifferentiationSpec:
    pool: str | None = field(default=None, metadata=bounds(doc="the pool whose answers must differ"))
    by: Literal["agreement", "key"] = "agreement"
    max_agreement: float | None = field(default=None, metadata=bounds(exclusive_min=0.0, max=1.0))

    def __post_init__(self) -> None:
        validate(self)
        if self.max_agreement is not None and self.by != "agreement":
            raise ValueError("max_agreement: applies to by='agreement' only")


@dataclass(frozen=True)
class FilterSpec:
    """The config block `generators.<g>.filter` (plus `seed`); the expert and pool it names are
    the workflow's business, not this step's."""

    self_consistency: SelfConsistencySpec | None = None
    differentiation: DifferentiationSpec | None = None
    target_size: int | None = field(default=None, metadata=bounds(min=1, doc="balanced subsample size"))
    seed: int = 0

    def __post_init__(self) -> None:
        validate(self)
        if not (self.self_consistency or self.differentiation or self.target_size):
            raise ValueError("nothing to do (set self_consistency, differentiation or target_size)")


@dataclass(frozen=True)
class FilterConfig:
    self_consistency: bool = False
    differentiation: str | None = None  # None (off), "agreement" or "key"
    max_agreement: float | None = None  # "agreement": keep if share <= this; None: keep unless unanimous
    target_size: int | None = None
    seed: int = 0

    @classmethod
    def from_spec(cls, spec: Mapping, where: str = "filter spec") -> FilterConfig:
        s = parse(FilterSpec, spec, where)
        d = s.differentiation
        return cls(
            s.self_consistency is not None,
            d.by if d else None,
            d.max_agreement if d else None,
            s.target_size,
            s.seed,
        )


# ------------------------------------------------------------------------------------------
# criteria: pure functions over letters (None = abstention), one entry per question


def self_consistent(own: Sequence[str | None], keys: Sequence[str]) -> np.ndarray:
    """True where the generator, as a responder, chose its own key."""
    return np.array([c is not None and c == k for c, k in zip(own, keys, strict=True)], dtype=bool)


def fraction_correct(choices: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """(n_questions, n_models) letters or None -> fraction of the pool that chose the key."""
    if choices.shape[0] == 0:
        return np.zeros(0)
    return (choices == np.asarray(keys, dtype=object)[:, None]).mean(axis=1).astype(float)


def agreement(choices: np.ndarray) -> np.ndarray:
    """Plurality share over the whole pool: the largest group of equal letters / pool size.

    Abstentions are in the denominator but in no group, and ties do not inflate the share (a
    3-3 split is 0.5, not the original's 100 %, §14.11)."""
    n, m = choices.shape
    out = np.zeros(n)
    for i in range(n):
        counts: dict[str, int] = defaultdict(int)
        for c in choices[i]:
            if c is not None:
                counts[c] += 1
        out[i] = max(counts.values(), default=0) / m if m else 0.0
    return out


def differentiating(
    choices: np.ndarray, keys: Sequence[str], by: str = "agreement", max_agreement: float | None = None
) -> np.ndarray:
    """True where the pool's answers differ (see the module docstring for the two rules)."""
    if by == "key":
        f = fraction_correct(choices, keys)
        return (f > 0) & (f < 1)
    if by != "agreement":
        raise ValueError(f"differentiation by {by!r}: expected one of {BY}")
    a = agreement(choices)
    answered = np.array([any(c is not None for c in row) for row in choices], dtype=bool)
    keep = a <= max_agreement if max_agreement is not None else a < 1
    return keep & answered


def balanced_subsample(ids: Sequence[str], categories: Sequence[str], n: int, seed: int) -> list[str]:
    """At most n ids, spread as evenly as possible over categories, in the input order.

    Each category's ids are shuffled with one seeded generator (categories in sorted order), then
    drawn round-robin over the sorted categories, a category dropping out once exhausted (the
    original's seed-selection scheme, §4.2, seeded)."""
    if n >= len(ids):
        return list(ids)
    rng = np.random.default_rng(seed)
    by_cat: dict[str, list[str]] = defaultdict(list)
    for i, c in zip(ids, categories, strict=True):
        by_cat[c].append(i)
    queues = {c: [by_cat[c][j] for j in rng.permutation(len(by_cat[c]))] for c in sorted(by_cat)}
    chosen: set[str] = set()
    while len(chosen) < n:
        for c in sorted(queues):
            if queues[c] and len(chosen) < n:
                chosen.add(queues[c].pop(0))
    return [i for i in ids if i in chosen]


# ------------------------------------------------------------------------------------------
# the filter over records


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 6) if n else None


def _letters(ids: Sequence[str], responses: list[dict], origin: str) -> list[str | None]:
    by_id = {r["id"]: r.get("choice") for r in responses}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InputError(origin, None, "id", f"no response for {len(missing)} questions, e.g. {missing[:3]}")
    return [by_id[i] for i in ids]


def filter_set(
    questions: Sequence[Mapping],
    keys: Mapping[str, str],
    own_responses: list[dict] | None,
    pool_responses: Mapping[str, list[dict]] | None,
    cfg: FilterConfig,
    origins: Mapping[str, str] | None = None,
) -> tuple[list[str], dict]:
    """Ids of the questions kept (in input order) and the retention report.

    `own_responses`: the generator's own responses (for self-consistency); `pool_responses`:
    expert -> responses (for differentiation). `origins` names their files in error messages."""
    origins = origins or {}
    ids = [q["id"] for q in questions]
    cats = [q["category"] for q in questions]
    n = len(ids)
    gold = [keys[i] for i in ids]
    masks: dict[str, np.ndarray] = {}
    criteria: dict[str, dict] = {}
    if cfg.self_consistency:
        masks["self_consistency"] = _self_consistency(ids, gold, own_responses, origins)
    if cfg.differentiation:
        mask, criteria["differentiation"] = _differentiation(ids, gold, pool_responses, cfg, origins)
        masks["differentiation"] = mask
    passed = np.ones(n, dtype=bool)
    for name, m in masks.items():
        passed &= m
        criteria.setdefault(name, {}).update(kept=int(m.sum()), rate=_rate(int(m.sum()), n))
    passed_ids = [i for i, p in zip(ids, passed) if p]
    passed_cats = [c for c, p in zip(cats, passed) if p]
    kept = passed_ids
    if cfg.target_size is not None:
        kept = balanced_subsample(passed_ids, passed_cats, cfg.target_size, cfg.seed)
    report = {
        "n_parent": n,
        "criteria": criteria,
        "passed_all": {"kept": len(passed_ids), "rate": _rate(len(passed_ids), n)},
        "target_size": cfg.target_size,
        "seed": cfg.seed,
        "n_kept": len(kept),
        "retention": _rate(len(kept), n),
        "by_category": _by_category(ids, cats, masks, passed, set(kept)),
    }
    return kept, report


def _self_consistency(
    ids: Sequence[str], gold: Sequence[str], own_responses: list[dict] | None, origins: Mapping[str, str]
) -> np.ndarray:
    """The self-consistency mask from the generator's own letters."""
    if own_responses is None:
        raise ValueError("self-consistency needs the generator's own responses")
    own = _letters(ids, own_responses, origins.get("own", "generator responses"))
    return self_consistent(own, gold)


def _differentiation(
    ids: Sequence[str],
    gold: Sequence[str],
    pool_responses: Mapping[str, list[dict]] | None,
    cfg: FilterConfig,
    origins: Mapping[str, str],
) -> tuple[np.ndarray, dict]:
    """(the differentiation mask, its report entry) from the pool's letters, one column per expert."""
    if not pool_responses or len(pool_responses) < 2:
        raise ValueError("differentiation needs the responses of a pool of at least 2 experts")
    n = len(ids)
    cols = [_letters(ids, rs, origins.get(e, e)) for e, rs in pool_responses.items()]
    choices = np.empty((n, len(cols)), dtype=object)
    for j, col in enumerate(cols):
        choices[:, j] = col
    mask = differentiating(choices, gold, cfg.differentiation, cfg.max_agreement)
    return mask, {
        "by": cfg.differentiation,
        "max_agreement": cfg.max_agreement,
        "pool": list(pool_responses),
        "mean_agreement": round(float(agreement(choices).mean()), 6) if n else None,
        "mean_fraction_correct": round(float(fraction_correct(choices, gold).mean()), 6) if n else None,
    }


def _by_category(
    ids: Sequence[str],
    cats: Sequence[str],
    masks: Mapping[str, np.ndarray],
    passed: np.ndarray,
    kept: set[str],
) -> dict[str, dict[str, int]]:
    """Per category (sorted): parent questions, those passing each criterion and all of them, those kept."""
    by_cat: dict[str, dict[str, int]] = {}
    for j, (i, c) in enumerate(zip(ids, cats)):
        row = by_cat.setdefault(c, {"parent": 0, **{k: 0 for k in masks}, "passed": 0, "kept": 0})
        row["parent"] += 1
        for k, m in masks.items():
            row[k] += int(m[j])
        row["passed"] += int(passed[j])
        row["kept"] += int(i in kept)
    return dict(sorted(by_cat.items()))


def _check_criteria_inputs(cfg: FilterConfig, own_path, pool_paths: Mapping) -> None:
    """Each configured criterion has the responses it reads, before any file is read."""
    from .spec import SpecError

    if cfg.self_consistency and not own_path:
        raise SpecError(
            "--own-responses",
            None,
            "missing: the spec's self_consistency needs the generator's own responses",
        )
    if cfg.differentiation and len(pool_paths) < 2:
        raise SpecError(
            "--pool-responses",
            None,
            "the spec's differentiation needs a pool of at least 2 experts' responses, "
            f"got {len(pool_paths)}",
        )


def run(
    questions_path,
    keys_path,
    spec: Mapping,
    out_questions,
    out_keys,
    out_report,
    own_responses_path=None,
    pool_responses_paths: Mapping[str, str] | None = None,
    labels: Mapping | None = None,
) -> dict:
    """Read a generated set and its responses, filter, write the subset and the report."""
    from .io import read_jsonl, write_json, write_jsonl
    from .records import read_keys, read_questions, read_responses, validate_question

    cfg = (
        spec if isinstance(spec, FilterConfig) else FilterConfig.from_spec(spec, "--spec")
    )  # before any file
    _check_criteria_inputs(cfg, own_responses_path, pool_responses_paths or {})
    records = read_jsonl(questions_path, validate_question)
    if not records:
        warn(
            f"{questions_path}: no questions (every generated output was rejected); the filtered set is empty"
        )
    keys = read_keys(keys_path, read_questions(questions_path, allow_empty=True))
    ids = [r["id"] for r in records]
    own = read_responses(own_responses_path, ids) if own_responses_path else None
    pool = {e: read_responses(p, ids) for e, p in (pool_responses_paths or {}).items()} or None
    origins = {"own": str(own_responses_path), **{e: str(p) for e, p in (pool_responses_paths or {}).items()}}
    kept, report = filter_set(records, keys, own, pool, cfg, origins)
    kept_set = set(kept)
    write_jsonl(out_questions, (r for r in records if r["id"] in kept_set))
    write_jsonl(out_keys, ({"id": r["id"], "answer": keys[r["id"]]} for r in records if r["id"] in kept_set))
    report = {**(labels or {}), "parent": str(questions_path), **report}
    if own_responses_path:
        report["criteria"]["self_consistency"]["responses"] = str(own_responses_path)
    write_json(out_report, report)
    return report


# ------------------------------------------------------------------------------------------
# a filtered set reuses its parent's responses and embeddings: subsets, no recomputation


def _subset_ids(questions_path) -> list[str]:
    from .records import read_questions

    ids = [q.id for q in read_questions(questions_path, allow_empty=True)]
    if not ids:
        warn(f"{questions_path}: no questions; the subset is empty")
    return ids


def subset_responses(questions_path, responses_path, out, meta_path=None, meta_out=None) -> int:
    """The parent's response records of the questions in `questions_path`, in their order."""
    from .io import read_json, write_json, write_jsonl
    from .records import read_responses

    ids = _subset_ids(questions_path)
    by_id = {r["id"]: r for r in read_responses(responses_path)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise InputError(
            responses_path, None, "id", f"no response for {len(missing)} questions, e.g. {missing[:3]}"
        )
    parent = read_json(meta_path) if meta_path else None  # read everything before writing anything
    write_jsonl(out, (by_id[i] for i in ids))
    if meta_out:
        write_json(
            meta_out,
            {
                "subset_of": str(responses_path),
                "questions": str(questions_path),
                "n_questions": len(ids),
                "parent_meta": parent,
            },
        )
    return len(ids)


def subset_embeddings(questions_path, embeddings_path, out) -> int:
    """The parent's embedding rows of the questions in `questions_path`, in their order.

    Every array whose first axis runs over the parent's ids is subset; the rest (the embedder
    spec) is copied as it is."""
    from .io import save_npz

    ids = _subset_ids(questions_path)
    arrays = read_npz(embeddings_path, ("ids",))
    parent = [str(i) for i in arrays["ids"]]
    pos = {i: j for j, i in enumerate(parent)}
    missing = [i for i in ids if i not in pos]
    if missing:
        raise InputError(
            embeddings_path, None, "ids", f"no embedding for {len(missing)} questions, e.g. {missing[:3]}"
        )
    rows = np.array([pos[i] for i in ids], dtype=np.int64)
    n = len(parent)
    save_npz(out, **{k: (a[rows] if a.ndim >= 1 and a.shape[0] == n else a) for k, a in arrays.items()})
    return len(ids)


__all__ = [
    "FilterConfig",
    "FilterSpec",
    "agreement",
    "balanced_subsample",
    "differentiating",
    "filter_set",
    "fraction_correct",
    "run",
    "self_consistent",
    "subset_embeddings",
    "subset_responses",
]
