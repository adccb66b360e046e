"""Routing evaluation (docs/METHOD.md §10) plus the baselines and statistics the original lacks.

Inputs are arrays over n_q test questions and the n_m pool models:
  scores  (n_q, n_m) float  router scores, higher = better (NaN ranks last)
  choices (n_q, n_m) int    chosen option index, -1 = abstention (never correct, never a vote)
  gold    (n_q,)     int    the key's option index
  z       (n_q, n_m) float  confidence z-scores, used only to break voting ties (NaN = least confident)
All accuracies are fractions in [0, 1] (the original prints 100 * round(x, 3)).

Decisions where rgd differs from the original (docs/DIFFERENCES.md):

* Ranking ties are broken by a seeded random permutation (the original shuffles unseeded, then
  stable-sorts; the distribution of outcomes is the same).
* Top-3 vote. The original takes the plurality of the three top-ranked models' letters and, only
  when all three differ, the letter of the model with the highest z. Its "N/A" answers are letters
  like any other, so two abstentions out-vote one real answer. rgd: abstentions cast no vote; the
  answer is the plurality letter of the remaining votes; a tie between letters (three different
  letters, or two different letters plus one abstention, ...) goes to the letter of the highest-z
  model among those voting for a tied letter; equal z goes to the higher-ranked model; no votes at
  all is a wrong answer. With three valid votes this is exactly the original rule.
* Added: top-k any-correct, oracle (any pool model correct), best single model (highest accuracy
  *on the test set itself*, so an optimistic baseline), random model (mean model accuracy), pool
  majority vote (same voting rule over all models, ties to the highest z, then pool order), and the
  fraction of the oracle gap closed (router - best) / (oracle - best), NaN when oracle == best.
* Added: seeded percentile bootstrap CIs over questions. One index matrix (n_boot, n_q) is drawn
  once and shared by every metric, so the resamples are paired. In each resample the best single
  model is chosen again (the maximum of the resampled model accuracies), which accounts for picking
  the best model on the test data; the paired test reports the CI of router - best single and the
  fraction of resamples with router <= best single (a one-sided bootstrap p-value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .spec import bounds, validate

ABSTAIN = -1


@dataclass(frozen=True)
class EvaluationSettings:
    """Config `evaluation` (and `rgd evaluate` options): the seeded bootstrap of every metric."""

    n_boot: int = field(default=1000, metadata=bounds(min=1, doc="bootstrap resamples"))
    seed: int = 0

    def __post_init__(self) -> None:
        validate(self)


def _check(choices: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    choices, gold = np.asarray(choices), np.asarray(gold)
    if choices.ndim != 2 or not np.issubdtype(choices.dtype, np.integer):
        raise ValueError(f"choices: expected a 2-D integer array, got {choices.dtype} {choices.shape}")
    if gold.shape != (choices.shape[0],) or not np.issubdtype(gold.dtype, np.integer):
        raise ValueError(f"gold: expected {choices.shape[0]} integers, got {gold.dtype} {gold.shape}")
    if gold.size and gold.min() < 0:
        raise ValueError("gold: negative option index")
    return choices, gold


def rank(scores: np.ndarray, seed: int = 0) -> np.ndarray:
    """Model columns per row, best score first; ties in random (seeded) order, NaN scores last."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected a 2-D array, got shape {scores.shape}")
    tiebreak = np.random.default_rng(seed).random(scores.shape)
    # lexsort: last key is primary. NaN sorts after every number, so NaN scores go last.
    return np.lexsort((tiebreak, -scores), axis=1)


def correct_matrix(choices: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(n_q, n_m) bool: model m answered question q correctly (an abstention never does)."""
    choices, gold = _check(choices, gold)
    return choices == gold[:, None]


def vote(choices: np.ndarray, z: np.ndarray | None = None, members: np.ndarray | None = None) -> np.ndarray:
    """Plurality answer of `members` (n_q, k) columns (default: all, in pool order), -1 if nobody voted.

    Abstentions do not vote. A tie between letters goes to the highest-z model voting for a tied
    letter, then to the earlier member (so list members in priority order).
    """
    choices = np.asarray(choices)
    n_q, n_m = choices.shape
    if members is None:
        members = np.broadcast_to(np.arange(n_m), (n_q, n_m))
    c = np.take_along_axis(choices, members, axis=1)
    zz = (
        np.zeros(c.shape)
        if z is None
        else np.take_along_axis(np.asarray(z, dtype=np.float64), members, axis=1)
    )
    zz = np.where(np.isnan(zz), -np.inf, zz)
    valid = c >= 0
    counts = ((c[:, :, None] == c[:, None, :]) & valid[:, None, :]).sum(axis=2)
    counts[~valid] = 0
    candidate = valid & (counts == counts.max(axis=1, keepdims=True))
    position = np.broadcast_to(np.arange(c.shape[1]), c.shape)
    # Primary: candidates first; then highest z; then earliest member.
    pick = np.lexsort((position, -zz, ~candidate), axis=1)[:, 0]
    answer = c[np.arange(n_q), pick]
    return np.where(valid.any(axis=1), answer, ABSTAIN)


def top1_correct(order: np.ndarray, choices: np.ndarray, gold: np.ndarray) -> np.ndarray:
    choices, gold = _check(choices, gold)
    return choices[np.arange(len(gold)), order[:, 0]] == gold


def topk_any_correct(order: np.ndarray, choices: np.ndarray, gold: np.ndarray, k: int = 3) -> np.ndarray:
    correct = correct_matrix(choices, gold)
    return np.take_along_axis(correct, order[:, :k], axis=1).any(axis=1)


def top3_vote_correct(
    order: np.ndarray, choices: np.ndarray, gold: np.ndarray, z: np.ndarray | None, k: int = 3
) -> np.ndarray:
    """CASCAL's top-3 answer: vote of the k top-ranked models, ties to the most confident (module doc)."""
    choices, gold = _check(choices, gold)
    return vote(choices, z, order[:, :k]) == gold


def pool_vote_correct(choices: np.ndarray, gold: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    choices, gold = _check(choices, gold)
    return vote(choices, z) == gold


def gap_closed(
    router: np.ndarray | float, best: np.ndarray | float, oracle: np.ndarray | float
) -> np.ndarray:
    """(router - best) / (oracle - best); NaN where the oracle is no better than the best model."""
    router, best, oracle = (np.asarray(a, dtype=np.float64) for a in (router, best, oracle))
    denom = oracle - best
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (router - best) / np.where(denom > 0, denom, 1.0), np.nan)


class Bootstrap:
    """Resampling of questions with replacement; the index matrix is drawn once from `seed`."""

    def __init__(self, n: int, n_boot: int = 1000, seed: int = 0):
        if n < 1 or n_boot < 1:
            raise ValueError(f"bootstrap: need n >= 1 and n_boot >= 1, got {n}, {n_boot}")
        self.n, self.n_boot = n, n_boot
        self.idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n), dtype=np.int64)

    def means(self, values: np.ndarray) -> np.ndarray:
        """Resampled means of per-question `values` (n,) or (n, s) -> (n_boot,) or (n_boot, s)."""
        x = np.asarray(values, dtype=np.float64)
        if x.shape[0] != self.n:
            raise ValueError(f"values: {x.shape[0]} rows, bootstrap over {self.n}")
        flat = x.reshape(self.n, -1)
        out = np.empty((self.n_boot, flat.shape[1]))
        step = max(1, 4_000_000 // (self.n * flat.shape[1]))  # bound the gathered block to ~32 MB
        for lo in range(0, self.n_boot, step):
            out[lo : lo + step] = flat[self.idx[lo : lo + step]].mean(axis=1)
        return out.reshape((self.n_boot,) + x.shape[1:])


def percentile_ci(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    s = np.asarray(samples, dtype=np.float64)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(s, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class PairedBootstrap:
    diff: float  # router - best single, on the full test set
    ci: tuple[float, float]
    frac_router_le_best: float

    def to_dict(self) -> dict:
        return {
            "diff": _num(self.diff),
            "ci": [_num(v) for v in self.ci],
            "frac_router_le_best": _num(self.frac_router_le_best),
        }


def _paired(router: np.ndarray, best: np.ndarray, point: float, alpha: float) -> PairedBootstrap:
    d = router - best
    return PairedBootstrap(point, percentile_ci(d, alpha), float(np.mean(d <= 0)))


def paired_bootstrap(
    router_correct: np.ndarray,
    model_correct: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedBootstrap:
    """Router (n_q,) vs the best single model of `model_correct` (n_q, n_m), re-chosen per resample."""
    router_correct = np.asarray(router_correct, dtype=np.float64)
    model_correct = np.asarray(model_correct, dtype=np.float64)
    boot = Bootstrap(len(router_correct), n_boot, seed)
    m = boot.means(np.column_stack([router_correct, model_correct]))
    point = float(router_correct.mean() - model_correct.mean(axis=0).max())
    return _paired(m[:, 0], m[:, 1:].max(axis=1), point, alpha)


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


@dataclass
class EvalReport:
    n_questions: int
    models: list[str]
    model_accuracy: list[float]
    top1: float
    top3_vote: float
    top3_any: float
    best_single: float
    best_single_model: str
    random: float
    oracle: float
    pool_vote: float
    gap_closed_top1: float
    gap_closed_top3: float
    n_boot: int
    seed: int
    alpha: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    paired: dict[str, PairedBootstrap] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-safe: NaN (an undefined gap) becomes None."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("ci", "paired")}
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = _num(v)
        d["model_accuracy"] = [float(a) for a in self.model_accuracy]
        d["ci"] = {k: [_num(a), _num(b)] for k, (a, b) in self.ci.items()}
        d["paired"] = {k: v.to_dict() for k, v in self.paired.items()}
        return d


def evaluate(
    scores: np.ndarray,
    choices: np.ndarray,
    gold: np.ndarray,
    z: np.ndarray | None,
    *,
    models: list[str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    alpha: float = 0.05,
    k: int = 3,
) -> EvalReport:
    """Every metric with bootstrap CIs. `seed` drives both the ranking tie-break and the resampling."""
    choices, gold, models = _check_evaluation(scores, choices, gold, z, models)
    order = rank(scores, seed)
    correct = correct_matrix(choices, gold)
    per_q = _per_question(order, choices, gold, z, k, correct)
    point = {n: float(v.mean()) for n, v in per_q.items()}
    acc = correct.mean(axis=0)
    best_j = int(np.argmax(acc))  # ties: first in pool order
    b = _resampled(per_q, correct, n_boot, seed)
    best = float(acc[best_j])
    return EvalReport(
        n_questions=len(gold),
        models=models,
        model_accuracy=[float(a) for a in acc],
        top1=point["top1"],
        top3_vote=point["top3_vote"],
        top3_any=point["top3_any"],
        best_single=best,
        best_single_model=models[best_j],
        random=float(acc.mean()),
        oracle=point["oracle"],
        pool_vote=point["pool_vote"],
        gap_closed_top1=float(gap_closed(point["top1"], best, point["oracle"])),
        gap_closed_top3=float(gap_closed(point["top3_vote"], best, point["oracle"])),
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        ci={n: percentile_ci(v, alpha) for n, v in b.items()},
        paired={
            "top1_vs_best_single": _paired(b["top1"], b["best_single"], point["top1"] - best, alpha),
            "top3_vote_vs_best_single": _paired(
                b["top3_vote"], b["best_single"], point["top3_vote"] - best, alpha
            ),
        },
    )


def _check_evaluation(scores, choices, gold, z, models) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Checked (choices, gold, model names); the names default to model0, model1, ..."""
    choices, gold = _check(choices, gold)
    n_q, n_m = choices.shape
    if np.shape(scores) != choices.shape or (z is not None and np.shape(z) != choices.shape):
        raise ValueError(f"scores/z: shapes must equal choices {choices.shape}")
    if n_q == 0:
        raise ValueError("no questions to evaluate")
    models = list(models) if models is not None else [f"model{j}" for j in range(n_m)]
    if len(models) != n_m:
        raise ValueError(f"models: {len(models)} names for {n_m} columns")
    return choices, gold, models


def _per_question(order, choices, gold, z, k: int, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Each question-level metric as an (n_q,) bool array, in report order."""
    return {
        "top1": top1_correct(order, choices, gold),
        "top3_vote": top3_vote_correct(order, choices, gold, z, k),
        "top3_any": topk_any_correct(order, choices, gold, k),
        "oracle": correct.any(axis=1),
        "pool_vote": pool_vote_correct(choices, gold, z),
    }


def _resampled(
    per_q: dict[str, np.ndarray], correct: np.ndarray, n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """(n_boot,) resampled values of every metric, from one shared index matrix (paired resamples);
    the best single model is re-chosen in each resample."""
    names = list(per_q)
    boot = Bootstrap(len(correct), n_boot, seed).means(np.column_stack([per_q[n] for n in names] + [correct]))
    b = {n: boot[:, i] for i, n in enumerate(names)}
    b_models = boot[:, len(names) :]
    b["best_single"] = b_models.max(axis=1)
    b["random"] = b_models.mean(axis=1)
    b["gap_closed_top1"] = gap_closed(b["top1"], b["best_single"], b["oracle"])
    b["gap_closed_top3"] = gap_closed(b["top3_vote"], b["best_single"], b["oracle"])
    return b
