"""Per-subject skills, calibration of consensus scores, generator quality and pool diagnostics.

The first three compare the label-free consensus signal with answer keys, so they belong to evaluation:
  * skills: mean consensus score and key accuracy per (subject, model) on the same question set;
  * calibration: does a higher consensus score mean a correct answer? Reliability bins, expected
    calibration error (ECE) and AUROC per model. Abstentions are left out (their consensus score is
    0 and they are never correct, which would flatter the AUROC); their count is reported;
  * generator quality: the paper's two generator properties measured on a generated set with the
    pool's answers: (i) the generator's key agrees with the pool (`consensus_key_match`: the letter
    with the highest consensus equals the key; `key_agreement`: mean share of pool models choosing
    the key), (ii) the questions differentiate the pool (`differentiation`: share of questions on
    which the answering models do not all agree). Plus the generator's acceptance rate.
The pool diagnostics (rgd.diagnostics) are label-free (letters, kappas, warnings on the real training
split's choices); their after-the-fact part ranks consensus against the keys per subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import InputError, read_json
from ..records import LETTERS, read_consensus, read_keys, read_questions


@dataclass
class PoolSet:
    """One question set as seen by one pool: choices (-1 = abstention) and consensus, (n, m)."""

    ids: list[str]
    categories: list[str]
    experts: list[str]
    choices: np.ndarray
    consensus: np.ndarray
    gold: np.ndarray | None = None  # key option index per question (evaluation only)
    n_options: int | None = None  # the most options of any question (letters of the distribution)


def load_pool_set(
    questions: str | Path, consensus: str | Path, experts: list[str], keys: str | Path | None = None
) -> PoolSet:
    from ..matrices import consensus_matrices, gold_indices

    qs = read_questions(questions, allow_empty=True)  # a generated set may be empty: analysed as such
    ids = [q.id for q in qs]
    choices, cons = consensus_matrices(read_consensus(consensus), ids, experts, consensus)
    _check_within_options(choices, qs, experts, consensus)
    gold = gold_indices(ids, read_keys(keys, qs), keys) if keys is not None else None
    n_options = max((len(q.options) for q in qs), default=None)
    return PoolSet(ids, [q.category for q in qs], list(experts), choices, cons, gold, n_options)


def _check_within_options(choices: np.ndarray, qs: list, experts: list[str], source) -> None:
    """Every answer is one of its question's options: a letter past them means the consensus file
    belongs to another question set (the distributions below would index past the options)."""
    n_opts = np.array([len(q.options) for q in qs], dtype=np.int64)
    bad = np.argwhere(choices >= n_opts[:, None]) if len(qs) else np.zeros((0, 2), dtype=int)
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise InputError(
            source,
            None,
            "choice",
            f"question {qs[i].id!r}, expert {experts[j]!r}: {LETTERS[choices[i, j]]!r} is outside the "
            f"question's {n_opts[i]} options (is this the consensus of this question set?)",
        )


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


# --------------------------------------------------------------------------- skills
def skills(ps: PoolSet) -> dict:
    """(subject x model) mean consensus score and key accuracy, and whether they pick the same model."""
    if ps.gold is None:
        raise ValueError("skills: needs the answer keys of the question set")
    cats = np.array(ps.categories, dtype=object)
    subjects = sorted(set(ps.categories))
    correct = ps.choices == ps.gold[:, None]
    cons_tab, acc_tab, n = [], [], []
    for s in subjects:
        rows = cats == s
        n.append(int(rows.sum()))
        cons_tab.append([float(v) for v in ps.consensus[rows].mean(axis=0)])
        acc_tab.append([float(v) for v in correct[rows].mean(axis=0)])
    # first index of the maximum = first in pool order on ties, for both tables alike
    same = [int(np.argmax(c)) == int(np.argmax(a)) for c, a in zip(cons_tab, acc_tab)]
    return {
        "subjects": subjects,
        "experts": ps.experts,
        "n": n,
        "consensus": cons_tab,
        "accuracy": acc_tab,
        "same_best_model": same,
        "n_same_best_model": int(sum(same)),
    }


# --------------------------------------------------------------------------- pool diagnostics
def pool_diagnostics(ps: PoolSet, sk: dict | None = None) -> tuple[dict, dict | None]:
    """(label-free diagnostics, consensus ranking against the keys or None without keys)."""
    from ..diagnostics import consensus_ranking
    from ..diagnostics import pool_diagnostics as diagnose

    diag = diagnose(ps.choices, ps.experts, ps.n_options)
    if ps.gold is None:
        return diag, None
    sk = sk or skills(ps)
    overall_acc = (ps.choices == ps.gold[:, None]).mean(axis=0)
    ranking = consensus_ranking(
        sk["subjects"],
        sk["n"],
        np.array(sk["consensus"]),
        np.array(sk["accuracy"]),
        ps.consensus.mean(axis=0),
        overall_acc,
    )
    ranking["same_best_model"] = sk["same_best_model"]
    return diag, ranking


# --------------------------------------------------------------------------- calibration
def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None if one class is empty."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability(scores: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> dict:
    """Equal-width bins over [0, 1]: count, mean score, fraction correct per bin, and the ECE."""
    if n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins}")
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.minimum((scores * n_bins).astype(np.int64), n_bins - 1)  # 1.0 goes to the last bin
    bins, ece = [], 0.0
    for b in range(n_bins):
        sel = which == b
        k = int(sel.sum())
        conf, acc = _mean(scores[sel]), _mean(correct[sel])
        bins.append(
            {"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": k, "mean_score": conf, "accuracy": acc}
        )
        if k:
            ece += k / len(scores) * abs(acc - conf)
    return {"bins": bins, "ece": float(ece) if len(scores) else None}


def calibration(ps: PoolSet, n_bins: int = 10) -> dict:
    if ps.gold is None:
        raise ValueError("calibration: needs the answer keys of the question set")
    out = {}
    correct = ps.choices == ps.gold[:, None]
    answered = ps.choices >= 0
    for j, e in enumerate(ps.experts):
        sel = answered[:, j]
        s, c = ps.consensus[sel, j], correct[sel, j]
        out[e] = {
            "n": int(sel.sum()),
            "n_abstained": int((~sel).sum()),
            "accuracy": _mean(c),
            "mean_score": _mean(s),
            "auroc": auroc(s, c),
            **reliability(s, c, n_bins),
        }
    s, c = ps.consensus[answered], correct[answered]
    pooled = {
        "n": int(answered.sum()),
        "accuracy": _mean(c),
        "mean_score": _mean(s),
        "auroc": auroc(s, c),
        **reliability(s, c, n_bins),
    }
    return {"n_bins": n_bins, "experts": out, "pooled": pooled}


# --------------------------------------------------------------------------- generator quality
def set_properties(ps: PoolSet) -> dict:
    """Key/pool agreement and pool differentiation of one question set (keys required)."""
    if ps.gold is None:
        raise ValueError("set_properties: needs the answer keys of the question set")
    n = len(ps.ids)
    if n == 0:
        return {
            "n_questions": 0,
            "consensus_key_match": None,
            "key_agreement": None,
            "differentiation": None,
            "n_categories": 0,
        }
    answered = ps.choices >= 0
    # the consensus answer: the letter chosen by the model with the highest consensus score (all
    # models on one letter share its posterior, so any of them gives the same letter)
    best = np.argmax(np.where(answered, ps.consensus, -np.inf), axis=1)
    top = ps.choices[np.arange(n), best]
    top = np.where(answered.any(axis=1), top, -1)
    agree = (ps.choices == ps.gold[:, None]).mean(axis=1)
    # differentiation: the answering models do not all pick the same letter
    lo = np.where(answered, ps.choices, np.iinfo(np.int64).max).min(axis=1)
    hi = np.where(answered, ps.choices, -1).max(axis=1)
    split = (answered.sum(axis=1) >= 2) & (lo != hi)
    return {
        "n_questions": n,
        "consensus_key_match": float(np.mean(top == ps.gold)),
        "key_agreement": float(agree.mean()),
        "differentiation": float(split.mean()),
        "n_categories": len(set(ps.categories)),
    }


def generator_quality(ps: PoolSet, meta_path: str | Path | None) -> dict:
    props = set_properties(ps)
    if meta_path is not None:
        meta = read_json(meta_path)
        props.update(
            acceptance_rate=meta.get("acceptance_rate"),
            n_prompts=meta.get("n_prompts"),
            n_rejects=meta.get("n_rejects"),
            generator_model=(meta.get("model") or {}).get("name"),
        )
    return props


def analyse(experts: list[str], real: dict, generated: dict[str, dict], n_bins: int = 10) -> dict:
    """The analysis file of one (benchmark, pool).

    `real`: {"questions", "keys", "consensus"} of the real training split; `generated`: source name ->
    {"questions", "keys", "consensus", "meta"} of each generated set.
    """
    ps = load_pool_set(real["questions"], real["consensus"], experts, real["keys"])
    sources = {"train": {**set_properties(ps), "acceptance_rate": None}}
    for name, g in generated.items():
        gs = load_pool_set(g["questions"], g["consensus"], experts, g["keys"])
        sources[name] = generator_quality(gs, g.get("meta"))
    sk = skills(ps)
    diag, ranking = pool_diagnostics(ps, sk)
    return {
        "experts": experts,
        "question_set": "train",
        "skills": sk,
        "calibration": calibration(ps, n_bins),
        "sources": sources,
        "diagnostics": diag,
        "consensus_ranking": ranking,
    }
