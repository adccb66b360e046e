"""Label-free consensus scores (docs/METHOD.md §6), vectorised over questions and models.

For every model m and question q:

1. z_m(q) = (lp_m(q) - median_m) / sigma_m, with sigma_m = 1.4826 * MAD of model m's confidences
   (fallback: the standard deviation, then 1.0, when the MAD is 0 or not finite);
2. w_m(q) = clip(sigmoid(scale * z_m(q)), 0.01, 0.99);
3. raw_c(q) = sum of w_m(q) over the models that chose c, for each of `n_classes` letters;
4. p_c(q) = softmax_c(raw_c(q) / tau) over all `n_classes` letters (unchosen letters keep raw 0 and
   still take probability mass, so the score depends on `n_classes`, not on the option count);
5. consensus_m(q) = p_{choice_m(q)}(q).

Where rgd differs from the original (see docs/DIFFERENCES.md):

* Abstentions. The original replaces an unparseable answer by a uniformly random letter from A..T
  (unseeded), so a model that produced no answer still votes and can "agree" with the others by
  luck. rgd (``compat="rgd"``) treats it as an abstention: no vote, consensus score 0.0, because an
  answer that does not exist can never be correct. ``compat="original"`` keeps the random letter, but
  draws it from ``numpy.random.Generator(PCG64(seed))`` so runs repeat.
* Missing confidence. The original lets a NaN log-probability turn into a NaN weight, which makes
  the whole question's posterior NaN. rgd gives such a (valid) vote z = 0, i.e. the neutral weight
  0.5: the answer is still evidence, we just know nothing about its confidence. This applies in both
  compat modes. Statistics (median, MAD, std) ignore NaNs, as the original's nan-aware helpers do; a
  model with no finite confidence at all gets median 0 and sigma 1 (the original would store NaN).
* Overflow. The original's ``math.exp(-z)`` raises OverflowError for z < -709; rgd evaluates the
  logistic as 0.5 * (1 + tanh(x / 2)), the same function, which saturates instead; z itself is
  clipped to +-1e12 so that it stays finite and serialisable.
* A choice index >= n_classes is an error in rgd mode (the class set is too small for the data and
  scores would silently ignore those votes); in original mode it is an invalid answer and becomes a
  random letter, as there.

Abstentions' confidences still count towards the model's median and MAD, as in the original: the
statistics describe the model's confidence over all of its generations.

`estimator="dawid-skene"` (rgd only, docs/METHOD.md §6.1) replaces steps 2-5 by a latent-class fit
of the votes (rgd.dawid_skene); the rows keep their shape and meaning (score = probability that
the model's own letter is right), and `estimated_skill` tabulates either estimator per category.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from .dawid_skene import DSFit, dawid_skene, vote_scores
from .io import InputError
from .records import LETTER_INDEX, LETTERS
from .spec import bounds, parse, validate

ABSTAIN = -1
Z_MAX = 1e12
DS_FIELDS = ("estimator", "ds_model", "ds_max_iter", "ds_tol", "ds_smoothing")  # see config_record


@dataclass(frozen=True)
class ConsensusConfig:
    """The `consensus` block of the config; bounds here are the only ones (rgd.spec)."""

    n_classes: int = field(default=20, metadata=bounds(min=2, max=len(LETTERS), doc="letters in the softmax"))
    scale: float = field(default=1.0, metadata=bounds(doc="multiplies z inside the sigmoid"))
    clip_low: float = field(default=0.01, metadata=bounds(min=0.0, max=1.0, doc="lowest vote weight"))
    clip_high: float = field(default=0.99, metadata=bounds(min=0.0, max=1.0, doc="highest vote weight"))
    tau: float = field(default=1.0, metadata=bounds(exclusive_min=0.0, doc="softmax temperature"))
    mad_const: float = field(default=1.4826, metadata=bounds(exclusive_min=0.0, doc="MAD to sigma factor"))
    compat: Literal["rgd", "original"] = "rgd"
    seed: int = 0
    # "confidence": the paper's confidence-weighted vote (above); "dawid-skene": rgd's latent-class
    # estimator (rgd.dawid_skene, METHOD.md §6.1), which ignores confidences and weighs each model
    # by the reliability EM estimates for it. The ds_* knobs are read only by the latter.
    estimator: Literal["confidence", "dawid-skene"] = "confidence"
    ds_model: Literal["one-coin", "full"] = "one-coin"
    ds_max_iter: int = field(default=100, metadata=bounds(min=1, max=100_000, doc="EM iterations at most"))
    ds_tol: float = field(
        default=1e-6, metadata=bounds(min=0.0, max=1.0, doc="stop when no posterior moves by this much")
    )
    ds_smoothing: float = field(
        default=0.01, metadata=bounds(exclusive_min=0.0, max=1e6, doc="pseudo-count added to every count")
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.compat == "original" and self.estimator != "confidence":
            raise ValueError(
                f"estimator: compat='original' uses the paper's 'confidence' estimator, got "
                f"{self.estimator!r} (leave estimator out, or use compat='rgd')"
            )
        if self.clip_low > self.clip_high:
            raise ValueError(
                f"clip_low/clip_high: need clip_low <= clip_high, got {self.clip_low}, {self.clip_high}"
            )

    @classmethod
    def from_spec(cls, spec: dict, where: str = "consensus") -> ConsensusConfig:
        return parse(cls, spec, where)


@dataclass(frozen=True)
class ModelStats:
    """Per-model location and scale of the confidence signal, arrays of shape (n_models,)."""

    median: np.ndarray
    sigma: np.ndarray

    def to_json(self, experts: list[str]) -> dict[str, dict[str, float]]:
        return {
            e: {"median": float(m), "sigma": float(s)} for e, m, s in zip(experts, self.median, self.sigma)
        }

    @classmethod
    def from_json(cls, experts_stats: dict, experts: list[str]) -> ModelStats:
        """Build from the ``stats["experts"]`` mapping written by `run_consensus`, in `experts` order."""
        missing = [e for e in experts if e not in experts_stats]
        if missing:
            raise ValueError(f"experts: no statistics for {missing}")
        med = np.array([float(experts_stats[e]["median"]) for e in experts])
        sig = np.array([float(experts_stats[e]["sigma"]) for e in experts])
        return cls(med, sig)


@dataclass(frozen=True)
class ConsensusResult:
    scores: np.ndarray  # (n_q, n_m) consensus score; 0.0 for an abstention (rgd mode)
    z: np.ndarray  # (n_q, n_m) confidence z-score; 0.0 where the confidence is missing
    weights: np.ndarray  # (n_q, n_m) the vote weight actually cast; 0.0 for an abstention
    stats: ModelStats
    fit: DSFit | None = None  # the Dawid-Skene fit, for estimator="dawid-skene"


def _median_inplace(v: np.ndarray) -> float:
    """Median of a 1-D array, partially sorting it in place (one introselect, no copy)."""
    k = [(v.size - 1) // 2, v.size // 2]
    v.partition(k)
    return 0.5 * (float(v[k[0]]) + float(v[k[1]]))


def robust_stats(logprobs: np.ndarray, mad_const: float = 1.4826) -> ModelStats:
    """Per-column nan-median and scaled MAD, with the original's fallbacks (MAD 0 -> std -> 1.0).

    A column without any finite value gets median 0 and sigma 1.
    """
    cols = np.array(np.asarray(logprobs, dtype=np.float64).T, order="C")  # one copy, rows contiguous
    med = np.zeros(cols.shape[0])
    sigma = np.ones(cols.shape[0])
    for j, col in enumerate(cols):  # a handful of models; each step is O(n_q) numpy work
        v = col[np.isfinite(col)]
        if v.size == 0:
            continue
        med[j] = _median_inplace(v)
        np.subtract(v, med[j], out=v)
        np.abs(v, out=v)
        s = mad_const * _median_inplace(v)
        if not (math.isfinite(s) and s != 0):
            std = float(np.std(col[np.isfinite(col)]))  # `col` is intact: `v` was a copy
            s = std if math.isfinite(std) and std != 0 else 1.0
        sigma[j] = s
    return ModelStats(med, sigma)


def stable_sigmoid(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Logistic function of scale * x that saturates instead of overflowing (tanh never overflows)."""
    y = np.multiply(x, 0.5 * scale, dtype=np.float64)
    np.tanh(y, out=y)
    y += 1.0
    y *= 0.5
    return y


def _flat_index(choices: np.ndarray, n_classes: int) -> np.ndarray:
    """Index of each (question, chosen class) cell in a row-major (n_q, n_classes) matrix."""
    return choices + (np.arange(choices.shape[0], dtype=np.int64) * n_classes)[:, None]


def _posterior(flat: np.ndarray, weights: np.ndarray, n_q: int, n_classes: int, tau: float) -> np.ndarray:
    """Softmax over classes of summed vote weights, from flat cell indices (weight 0 = no vote)."""
    raw = np.bincount(flat.ravel(), weights=weights.ravel(), minlength=n_q * n_classes)
    raw = raw.astype(np.float64, copy=False).reshape(n_q, n_classes)  # empty input gives int64
    if tau != 1.0:
        raw /= tau
    # |raw| <= n_votes * max|w| / tau: the usual max-shift is needed only when exp could overflow,
    # and skipping it saves a pass over the (n_q, n_classes) matrix.
    if weights.size and flat.shape[-1] * float(np.abs(weights).max()) / tau > 600.0:
        raw -= raw.max(axis=1, keepdims=True)
    np.exp(raw, out=raw)
    raw /= raw.sum(axis=1, keepdims=True)
    return raw


def vote_posterior(choices: np.ndarray, weights: np.ndarray, n_classes: int, tau: float = 1.0) -> np.ndarray:
    """Softmax over `n_classes` of the per-class summed vote weights; abstentions (-1) cast no vote.

    Returns (n_q, n_classes). Exposed separately so §6's reference values can be checked directly.
    """
    choices = np.asarray(choices, dtype=np.int64)
    voting = choices >= 0
    w = np.where(voting, np.asarray(weights, dtype=np.float64), 0.0)
    return _posterior(
        _flat_index(np.where(voting, choices, 0), n_classes), w, choices.shape[0], n_classes, tau
    )


def _check_inputs(choices: np.ndarray, logprobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    choices = np.asarray(choices)
    logprobs = np.asarray(logprobs, dtype=np.float64)
    if choices.ndim != 2:
        raise ValueError(f"choices: expected a 2-D (questions, models) array, got shape {choices.shape}")
    if logprobs.shape != choices.shape:
        raise ValueError(f"logprobs: shape {logprobs.shape} differs from choices {choices.shape}")
    if not np.issubdtype(choices.dtype, np.integer):
        raise ValueError(f"choices: expected integers, got dtype {choices.dtype}")
    if choices.size and choices.min() < ABSTAIN:
        raise ValueError(f"choices: values below {ABSTAIN} (abstention) are not allowed")
    return choices.astype(np.int64), logprobs  # astype copies: the caller edits choices in place


def consensus_scores(
    choices: np.ndarray,
    logprobs: np.ndarray,
    cfg: ConsensusConfig | None = None,
    stats: ModelStats | None = None,
    n_options: np.ndarray | list[int] | None = None,
) -> ConsensusResult:
    """Consensus scores for `choices` (n_q, n_m; -1 = abstain) weighted by `logprobs` (NaN allowed).

    `stats` fixes each model's (median, sigma), e.g. to score a test split with training statistics;
    by default they are computed from `logprobs`. `n_options` (each question's option count) is read
    by the Dawid-Skene estimator only: a question's truth is one of its options. The confidence
    estimator's scores depend on `n_classes`, not on the option count (module docstring).
    """
    cfg = cfg or ConsensusConfig()
    choices, logprobs = _check_inputs(choices, logprobs)
    stats = _checked_stats(stats, logprobs, cfg, choices.shape[1])
    if cfg.estimator == "dawid-skene":
        return _dawid_skene_scores(choices, logprobs, cfg, stats, n_options)
    n_q = choices.shape[0]
    invalid = (choices < 0) | (choices >= cfg.n_classes)
    if cfg.compat == "original":
        # Row-major draw order over the invalid cells: the same inputs and seed give the same letters.
        choices[invalid] = np.random.default_rng(cfg.seed).integers(0, cfg.n_classes, size=int(invalid.sum()))
        invalid[:] = False
    else:
        _refuse_beyond_classes(choices, cfg.n_classes)

    z = z_scores(logprobs, stats)
    w = stable_sigmoid(z, cfg.scale)
    np.clip(w, cfg.clip_low, cfg.clip_high, out=w)
    w[invalid] = 0.0
    choices[invalid] = 0  # any column; weight 0 adds nothing and the score is zeroed below
    flat = _flat_index(choices, cfg.n_classes)
    scores = _posterior(flat, w, n_q, cfg.n_classes, cfg.tau).ravel()[flat]
    scores[invalid] = 0.0
    return ConsensusResult(scores=scores, z=z, weights=w, stats=stats)


def _checked_stats(
    stats: ModelStats | None, logprobs: np.ndarray, cfg: ConsensusConfig, n_m: int
) -> ModelStats:
    if stats is None:
        return robust_stats(logprobs, cfg.mad_const)
    if stats.median.shape != (n_m,) or stats.sigma.shape != (n_m,):
        raise ValueError(
            f"stats: expected arrays of shape ({n_m},), got {stats.median.shape}, {stats.sigma.shape}"
        )
    if not np.isfinite(stats.median).all():
        raise ValueError("stats: medians must be finite")
    return stats


def _refuse_beyond_classes(choices: np.ndarray, n_classes: int) -> None:
    if (choices >= n_classes).any():
        q, m = np.argwhere(choices >= n_classes)[0]
        raise ValueError(
            f"choices: question row {q}, model column {m} chose index {choices[q, m]}, outside the "
            f"{n_classes} consensus classes; raise n_classes"
        )


def _dawid_skene_scores(
    choices: np.ndarray, logprobs: np.ndarray, cfg: ConsensusConfig, stats: ModelStats, n_options
) -> ConsensusResult:
    """Scores from a Dawid-Skene fit: the posterior probability that the model's own letter is the
    true one (0.0 for an abstention); weight = the model's estimated P(correct | it voted) (0.0 for an
    abstention); z = the confidence z-score, as for the confidence estimator (not used by the fit)."""
    _refuse_beyond_classes(choices, cfg.n_classes)
    fit = dawid_skene(
        choices,
        cfg.n_classes,
        n_options,
        variant=cfg.ds_model,
        max_iter=cfg.ds_max_iter,
        tol=cfg.ds_tol,
        smoothing=cfg.ds_smoothing,
    )
    voting = choices >= 0
    weights = np.where(voting, fit.accuracy[None, :], 0.0)
    return ConsensusResult(
        vote_scores(fit.posterior, choices), z_scores(logprobs, stats), weights, stats, fit
    )


def z_scores(logprobs: np.ndarray, stats: ModelStats) -> np.ndarray:
    """(logprob - median) / sigma per model column (sigma 1 where it is not a positive number);
    0 where the confidence is missing (NaN); clipped to +-Z_MAX so that it stays finite (JSON has
    no inf; the vote weight saturates from |z| ~ 40 on anyway)."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    sigma = np.where(np.isfinite(stats.sigma) & (stats.sigma > 0), stats.sigma, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        z = logprobs - stats.median
        z /= sigma
    np.clip(z, -Z_MAX, Z_MAX, out=z)
    z[~np.isfinite(logprobs)] = 0.0
    return z


def _letter_index(letter: object, expert: str, qid: str, source: str) -> int:
    if letter is None:
        return ABSTAIN
    if not isinstance(letter, str) or len(letter) != 1 or letter not in LETTERS:
        raise InputError(
            source,
            None,
            "choice",
            f"expert {expert!r}, question {qid!r}: expected a capital letter or null, got {letter!r}",
        )
    return LETTER_INDEX[letter]


def _confidence(value: object, expert: str, qid: str, source: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(
            source,
            None,
            "confidence",
            f"expert {expert!r}, question {qid!r}: expected a number or null, got {value!r}",
        )
    return float(value)


def run_consensus(
    question_ids: list[str],
    responses: dict[str, list[dict]],
    cfg: ConsensusConfig | None = None,
    *,
    stats: dict | None = None,
    sources: dict[str, str] | None = None,
    n_options: list[int] | None = None,
) -> tuple[list[dict], dict]:
    """Score every (question, expert) pair from response records.

    `responses` maps expert name -> its response records (any order; ids not in `question_ids` are
    ignored here: `rgd consensus` refuses a response file with such ids, records.read_responses).
    Rows come in question order, then expert (dict insertion = pool) order. `stats` is an
    optional ``{"experts": {name: {"median", "sigma"}}}`` mapping (the stats this function returns) to
    reuse; `sources` names each expert's file in error messages. A row's "choice" is the response's
    own letter (None for an abstention), also in original mode, where the random stand-in letter only
    exists inside the vote. `n_options` gives each question's option count (Dawid-Skene reads it).
    """
    cfg = cfg or ConsensusConfig()
    experts = list(responses)
    if not experts:
        raise ValueError("responses: no experts")
    if len(set(question_ids)) != len(question_ids):
        raise ValueError("question_ids: duplicate ids")
    choices, logprobs, letters = _vote_matrices(question_ids, responses, sources or {})
    if cfg.compat == "rgd":
        _check_classes(choices, question_ids, experts, cfg.n_classes, sources or {})
    fixed = ModelStats.from_json(stats["experts"], experts) if stats is not None else None
    res = consensus_scores(choices, logprobs, cfg, fixed, n_options)
    rows = [
        {
            "id": qid,
            "expert": expert,
            "choice": letters[i][j],
            "consensus": float(res.scores[i, j]),
            "z": float(res.z[i, j]),
            "weight": float(res.weights[i, j]),
        }
        for i, qid in enumerate(question_ids)
        for j, expert in enumerate(experts)
    ]
    out_stats = {
        "experts": res.stats.to_json(experts),
        "n_questions": len(question_ids),
        "config": config_record(cfg),
    }
    if res.fit is not None:
        out_stats["estimator"] = _fit_record(res.fit, cfg, experts, choices)
    return rows, out_stats


def config_record(cfg: ConsensusConfig) -> dict:
    """The config as the stats file and the loaded workflow config record it: the confidence
    estimator's record leaves out the Dawid-Skene knobs and `estimator` itself (absent means
    "confidence"), so that its outputs, the rule's parameters and the config hash stay as they were
    before rgd had a second estimator."""
    record = asdict(cfg)
    if cfg.estimator == "confidence":
        for name in DS_FIELDS:
            del record[name]
    return record


def _fit_record(fit: DSFit, cfg: ConsensusConfig, experts: list[str], choices: np.ndarray) -> dict:
    """What the stats file says about a Dawid-Skene fit: `accuracy` is each model's estimated
    P(correct | it answered), the reliability its votes were weighed by; `expected_accuracy` is its
    expected share of all questions answered right (an abstention counts as wrong, as with keys)."""
    expected = fit.expected_accuracy(choices)
    return {
        "name": cfg.estimator,
        "model": cfg.ds_model,
        "iterations": fit.iterations,
        "converged": fit.converged,
        "accuracy": {e: float(a) for e, a in zip(experts, fit.accuracy)},
        "expected_accuracy": {e: float(a) for e, a in zip(experts, expected)},
        "class_prior": [float(p) for p in fit.prior],
    }


def _vote_matrices(
    question_ids: list[str], responses: dict[str, list[dict]], sources: dict[str, str]
) -> tuple[np.ndarray, np.ndarray, list[list[str | None]]]:
    """(choice indices (n_q, n_m), -1 = abstain; confidences (n_q, n_m), NaN = missing; each response's
    own letter [q][m]) from the experts' records, checked expert by expert in pool order."""
    n_q, n_m = len(question_ids), len(responses)
    choices = np.empty((n_q, n_m), dtype=np.int64)
    logprobs = np.empty((n_q, n_m), dtype=np.float64)
    letters: list[list[str | None]] = [[None] * n_m for _ in range(n_q)]
    for j, expert in enumerate(responses):
        source = sources.get(expert, f"<responses of {expert}>")
        by_id = _by_id(responses[expert], expert, source)
        for i, qid in enumerate(question_ids):
            rec = by_id.get(qid)
            if rec is None:
                raise InputError(
                    source, None, "id", f"expert {expert!r} has no response for question {qid!r}"
                )
            choices[i, j] = _letter_index(rec.get("choice"), expert, qid, source)
            logprobs[i, j] = _confidence(rec.get("confidence"), expert, qid, source)
            letters[i][j] = rec.get("choice")
    return choices, logprobs, letters


def _check_classes(
    choices: np.ndarray, question_ids: list[str], experts: list[str], n_classes: int, sources: dict
) -> None:
    """In rgd mode a letter past the consensus classes is refused (consensus_scores would raise a
    plain ValueError about matrix cells): the data's problem, named by file, line and field."""
    outside = np.argwhere(choices >= n_classes)
    if not outside.size:
        return
    i, j = (int(v) for v in outside[0])
    source = sources.get(experts[j], f"<responses of {experts[j]}>")
    letter, highest = LETTERS[choices[i, j]], int(choices.max())
    raise InputError(
        source,
        _line_of(source, question_ids[i]),
        "choice",
        f"{letter!r} (question {question_ids[i]!r}, expert {experts[j]!r}) is outside the {n_classes} "
        f"consensus classes A-{LETTERS[n_classes - 1]}: set consensus n_classes to {highest + 1} or more",
    )


def _line_of(source: str, qid: str) -> int | None:
    """The line of question `qid`'s record in a JSONL file (None if `source` is not a file): read
    again only to locate an error."""
    from pathlib import Path

    from .io import iter_jsonl

    if not Path(source).is_file():
        return None
    return next((lineno for lineno, rec in iter_jsonl(source) if rec.get("id") == qid), None)


def _by_id(records: list[dict], expert: str, source: str) -> dict[str, dict]:
    """One expert's records by question id; a record by another expert or a repeated id is an error."""
    by_id: dict[str, dict] = {}
    for rec in records:
        rid = rec.get("id")
        if rec.get("expert", expert) != expert:
            raise InputError(
                source, None, "expert", f"record {rid!r} is by {rec.get('expert')!r}, filed under {expert!r}"
            )
        if rid in by_id:
            raise InputError(
                source, None, "id", f"expert {expert!r}: duplicate response for question {rid!r}"
            )
        by_id[rid] = rec
    return by_id


def run(questions_path, responses: dict[str, str], cfg: ConsensusConfig, out, stats_out) -> dict:
    """`rgd consensus`: score a pool's response files (expert -> file) on a question set. An empty
    question set (every generated output rejected) gives empty outputs and a warning."""
    from .io import warn, write_json, write_jsonl
    from .records import read_questions, read_responses

    questions = read_questions(questions_path, allow_empty=True)
    ids = [q.id for q in questions]
    if not ids:
        warn(f"{questions_path}: no questions; writing empty consensus rows")
    records = {name: read_responses(path, ids) for name, path in responses.items()}
    n_options = [len(q.options) for q in questions]
    if cfg.estimator == "dawid-skene":
        _refuse_too_many_options(questions, cfg.n_classes, questions_path)
    rows, stats = run_consensus(ids, records, cfg, sources=responses, n_options=n_options)
    if not ids:
        stats["warnings"] = ["no questions"]
    write_jsonl(out, rows)
    write_json(stats_out, stats)
    return {"n_questions": len(ids), "n_experts": len(responses)}


def _refuse_too_many_options(questions: list, n_classes: int, path) -> None:
    for q in questions:
        if len(q.options) > n_classes:
            raise InputError(
                path,
                None,
                "options",
                f"question {q.id!r} has {len(q.options)} options, more than consensus.n_classes "
                f"({n_classes}); raise n_classes",
            )


def estimated_skill(scores: np.ndarray, categories: list[str]) -> tuple[list[str], np.ndarray]:
    """Label-free skill per (category, model): the mean consensus score of the model's rows in the
    category, an abstention counting 0 (its score). Returns (sorted categories, (n_cat, n_m) array).

    One rule for every estimator, so their tables compare: for the confidence estimator it is the
    signal CASCAL ranks models by; for Dawid-Skene it is the model's expected accuracy on the
    category under the posterior, which a single pooled fit's per-model accuracy cannot give."""
    scores = np.asarray(scores, dtype=np.float64)
    cats = np.asarray(categories, dtype=object)
    if scores.ndim != 2 or cats.shape != (scores.shape[0],):
        raise ValueError(f"categories: expected one per score row ({scores.shape[0]}), got {cats.shape}")
    names = sorted(set(categories))
    table = np.zeros((len(names), scores.shape[1]))
    for i, c in enumerate(names):
        table[i] = scores[cats == c].mean(axis=0)
    return names, table
