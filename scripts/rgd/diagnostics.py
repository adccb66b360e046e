"""Diagnostics of an expert pool: can its consensus be trusted, and (after the fact) did it rank well?

Label-free part (the experts' chosen letters only, no keys), on a (n questions, m experts) integer
matrix of option indices with -1 for an abstention:
  * letter distribution per expert (and its abstentions);
  * pairwise raw agreement and Cohen's kappa, each over the questions both experts answered;
  * Fleiss' kappa of the pool (the form for a varying number of raters per question: a question
    counts with the experts that answered it, if at least two did);
  * warnings, by the thresholds of `Thresholds` (defined once, below). Prompt-twins are judged on
    raw agreement, which is what consensus rewards, and on kappa, so that two experts that merely
    share a letter bias are not taken for twins (the letter-bias warning names those).

Why these: consensus scores reward agreement. Agreement carries signal about skill only when the
experts err independently. Two prompt variants of one model share their errors, so they agree far
more than the rest and consensus crowns them together; an expert at chance agreement with the rest
gets scores that say nothing about it; an expert that answers one letter most of the time agrees
with anyone who happens to pick that letter, which is a letter bias and not knowledge.

Evaluation part (keys required, after the fact): per subject, the rank correlation (Spearman and
Kendall tau-b) between the experts' mean consensus score and their accuracy against the keys.

Everything is vectorised numpy; results are JSON-safe (an undefined value is None).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .records import LETTERS


@dataclass(frozen=True)
class Thresholds:
    """When the pool's consensus is flagged. One place for these numbers; the report prints them."""

    # prompt-twins: a pair's raw agreement (what consensus rewards) lies this far above the two
    # experts' mean agreement with the others, and its kappa (agreement beyond their letter
    # frequencies) this far above their mean kappa with the others
    twin_agreement: float = 0.25
    twin_kappa: float = 0.15
    chance_kappa: float = 0.1  # an expert's mean kappa with the others (or the pool's Fleiss') at most this
    letter_share: float = 0.5  # an expert gives one letter on more than this share of its answers
    min_questions: int = 20  # kappa-based warnings need at least this many jointly answered questions

    def describe(self) -> list[str]:
        t = self
        return [
            f"prompt-twins: a pair's raw agreement >= {100 * t.twin_agreement:g} points and its Cohen's "
            "kappa "
            f">= {t.twin_kappa:g} above the two experts' mean agreement and kappa with the other experts "
            f"(needs 3 or more experts)",
            f"at chance: an expert's mean kappa with the other experts <= {t.chance_kappa:g} "
            f"(the pool: Fleiss' kappa <= {t.chance_kappa:g})",
            f"letter bias: one letter on more than {t.letter_share:.0%} of an expert's answers",
            f"kappa-based warnings need >= {t.min_questions} questions answered by both experts",
        ]


THRESHOLDS = Thresholds()


def _none(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _check(choices: np.ndarray, n_options: int | None) -> tuple[np.ndarray, int]:
    c = np.asarray(choices)
    if c.ndim != 2 or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"choices: expected a 2-D integer array, got {c.dtype} {c.shape}")
    k = int(c.max(initial=-1)) + 1 if n_options is None else int(n_options)
    if c.size and c.max() >= k:
        raise ValueError(f"choices: option index {int(c.max())} with only {k} options")
    return c, max(k, 1)


def one_hot(choices: np.ndarray, n_options: int | None = None) -> np.ndarray:
    """(n, m, K) float: 1 where expert j chose option k on question i; abstentions are all zero."""
    c, k = _check(choices, n_options)
    return (c[:, :, None] == np.arange(k)).astype(np.float64)


def letter_counts(choices: np.ndarray, n_options: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(m, K) counts of each chosen option per expert, and (m,) abstentions."""
    c, _ = _check(choices, n_options)
    return one_hot(c, n_options).sum(axis=0).astype(np.int64), (c < 0).sum(axis=0)


def pairwise(choices: np.ndarray, n_options: int | None = None) -> dict[str, np.ndarray]:
    """Raw agreement, Cohen's kappa and the number of jointly answered questions, each (m, m).

    Each pair uses the questions both experts answered; its chance agreement comes from the two
    experts' letter frequencies on those questions. Undefined (NaN): no joint question, or chance
    agreement 1 (both always give the same single letter)."""
    x = one_hot(choices, n_options)
    a = x.sum(axis=2)  # answered (n, m)
    n = a.T @ a
    same = np.einsum("qik,qjk->ij", x, x)
    marg = np.einsum("qik,qj->ijk", x, a)  # expert i's letter counts on the questions j answered
    with np.errstate(divide="ignore", invalid="ignore"):
        p_o = same / n
        p_e = np.einsum("ijk,jik->ij", marg, marg) / n**2
        kappa = np.where(p_e < 1 - 1e-12, (p_o - p_e) / (1 - p_e), np.nan)
    return {"agreement": p_o, "kappa": np.where(n > 0, kappa, np.nan), "n": n.astype(np.int64)}


def fleiss_kappa(choices: np.ndarray, n_options: int | None = None) -> float:
    """Fleiss' kappa of the pool; a question counts with the r >= 2 experts that answered it.

    Per question, P = (sum_k n_k^2 - r) / (r (r - 1)) is the share of agreeing rater pairs; the
    chance term uses the pooled letter frequencies. With no abstentions this is Fleiss (1971)."""
    x = one_hot(choices, n_options)
    counts = x.sum(axis=1)  # (n, K)
    r = counts.sum(axis=1)
    keep = r >= 2
    counts, r = counts[keep], r[keep]
    if not len(r):
        return math.nan
    p_q = ((counts**2).sum(axis=1) - r) / (r * (r - 1))
    p_k = counts.sum(axis=0) / r.sum()
    p_e = float((p_k**2).sum())
    return math.nan if p_e >= 1 - 1e-12 else float((p_q.mean() - p_e) / (1 - p_e))


def _off_diagonal_mean(a: np.ndarray) -> np.ndarray:
    """Per row, the mean over the other columns, ignoring NaN (NaN if none)."""
    a = np.array(a, dtype=np.float64)
    np.fill_diagonal(a, np.nan)
    ok = ~np.isnan(a)
    with np.errstate(invalid="ignore"):
        return np.where(ok.any(axis=1), np.where(ok, a, 0).sum(axis=1) / ok.sum(axis=1), np.nan)


def excess_over_rest(pairwise_matrix: np.ndarray) -> np.ndarray:
    """(m, m): a(i, j) minus the mean of a(i, k) and a(j, k) over the other experts k.

    For an agreement or kappa matrix: how much more the pair agrees with itself than its members
    agree with the rest; NaN on the diagonal and with fewer than 3 experts."""
    k = np.array(pairwise_matrix, dtype=np.float64)
    m = k.shape[0]
    ok = ~np.isnan(k)
    np.fill_diagonal(ok, False)
    v = np.where(ok, k, 0.0)
    row_sum, row_n = v.sum(axis=1), ok.sum(axis=1)
    # the others of (i, j): row i without j, row j without i
    rest_sum = row_sum[:, None] + row_sum[None, :] - 2 * v
    rest_n = row_n[:, None] + row_n[None, :] - 2 * ok
    with np.errstate(invalid="ignore", divide="ignore"):
        out = k - rest_sum / rest_n
    out[rest_n == 0] = np.nan
    np.fill_diagonal(out, np.nan)
    return out if m >= 3 else np.full_like(k, np.nan)


def pool_diagnostics(
    choices: np.ndarray, experts: list[str], n_options: int | None = None, thresholds: Thresholds = THRESHOLDS
) -> dict:
    """The label-free diagnostics of one question set as seen by one pool (JSON-safe)."""
    c, k = _check(choices, n_options)
    if c.shape[1] != len(experts):
        raise ValueError(f"experts: {len(experts)} names for {c.shape[1]} columns")
    counts, abstained = letter_counts(c, k)
    answered = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / answered[:, None]
    top = counts.argmax(axis=1)
    top_share = np.where(answered > 0, counts.max(axis=1) / np.maximum(answered, 1), np.nan)
    pw = pairwise(c, k)
    rest = _off_diagonal_mean(pw["kappa"])
    agree_excess, kappa_excess = excess_over_rest(pw["agreement"]), excess_over_rest(pw["kappa"])
    fleiss = fleiss_kappa(c, k)
    per_expert = {
        e: {
            "answered": int(answered[j]),
            "abstained": int(abstained[j]),
            "letters": {LETTERS[i]: int(counts[j, i]) for i in range(k)},
            "shares": {LETTERS[i]: _none(shares[j, i]) for i in range(k)},
            "top_letter": LETTERS[int(top[j])] if answered[j] else None,
            "top_share": _none(top_share[j]),
            "mean_kappa_with_rest": _none(rest[j]),
        }
        for j, e in enumerate(experts)
    }
    pairs = [
        {
            "experts": [experts[i], experts[j]],
            "n": int(pw["n"][i, j]),
            "agreement": _none(pw["agreement"][i, j]),
            "kappa": _none(pw["kappa"][i, j]),
            "agreement_excess": _none(agree_excess[i, j]),
            "kappa_excess": _none(kappa_excess[i, j]),
        }
        for i in range(len(experts))
        for j in range(i + 1, len(experts))
    ]
    out = {
        "n_questions": int(c.shape[0]),
        "n_options": k,
        "experts": list(experts),
        "per_expert": per_expert,
        "pairs": pairs,
        "fleiss_kappa": _none(fleiss),
        "thresholds": asdict(thresholds),
    }
    out["warnings"] = warnings(out, thresholds)
    return out


def warnings(diag: dict, t: Thresholds = THRESHOLDS) -> list[dict]:
    """Reasons not to trust the pool's consensus, each {kind, experts, value, message}."""
    enough = [p for p in diag["pairs"] if p["n"] >= t.min_questions]
    out = _few_questions(diag, enough, t) + _twins(enough, t) + _chance(diag, t)
    for e, d in ((e, diag["per_expert"][e]) for e in diag["experts"]):  # pool order
        if d["top_share"] is not None and d["top_share"] > t.letter_share:
            msg = (
                f"{e} answers {d['top_letter']} on {d['top_share']:.0%} of its answers: "
                "its agreements are mostly that letter, not knowledge"
            )
            out.append(_warning("letter-bias", [e], d["top_share"], msg, letter=d["top_letter"]))
    f = diag["fleiss_kappa"]
    if f is not None and f <= t.chance_kappa and diag["n_questions"] >= t.min_questions:
        msg = (
            f"the pool as a whole agrees no better than chance (Fleiss' kappa {f:.2f}): "
            "consensus scores are mostly noise"
        )
        out.append(_warning("pool-chance", [], f, msg))
    return out


def _warning(kind: str, experts: list[str], value, message: str, **extra) -> dict:
    return {"kind": kind, "experts": experts, "value": value, **extra, "message": message}


def _few_questions(diag: dict, enough: list[dict], t: Thresholds) -> list[dict]:
    if not diag["pairs"] or len(enough) == len(diag["pairs"]):
        return []
    few = min(p["n"] for p in diag["pairs"])
    msg = (
        f"some expert pairs share only {few} answered questions (< {t.min_questions}): "
        "their kappas are too noisy for the agreement warnings, which skip them"
    )
    return [_warning("few-questions", [], few, msg)]


def _twins(enough: list[dict], t: Thresholds) -> list[dict]:
    out = []
    for p in enough:
        ae, ke = p["agreement_excess"], p["kappa_excess"]
        if ae is not None and ke is not None and ae >= t.twin_agreement and ke >= t.twin_kappa:
            a, b = p["experts"]
            msg = (
                f"{a} and {b} agree far beyond the rest ({p['agreement']:.0%} of their answers, "
                f"{100 * ae:.0f} points above their mean with the others; kappa {p['kappa']:.2f}, "
                f"{ke:+.2f}): consensus rewards agreement, so it favours the two together, right or "
                "wrong; prompt variants of one model look like this (so do two distinct models "
                "that are both often right, which only keys tell apart)"
            )
            out.append(_warning("twins", [a, b], ae, msg))
    return out


def _chance(diag: dict, t: Thresholds) -> list[dict]:
    out = []
    n_ok = {
        e: sum(p["n"] >= t.min_questions for p in diag["pairs"] if e in p["experts"]) for e in diag["experts"]
    }
    for e in diag["experts"]:  # pool order
        r = diag["per_expert"][e]["mean_kappa_with_rest"]
        if r is not None and n_ok[e] and r <= t.chance_kappa:
            msg = (
                f"{e} agrees with the others no better than chance (mean kappa {r:.2f}): "
                "its consensus scores say little about its skill"
            )
            out.append(_warning("chance", [e], r, msg))
    return out


# --------------------------------------------------------------------------- after the fact
def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of (S, m) arrays; NaN where a row is constant."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=-1) * (rb**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=-1) / np.where(den > 0, den, 1), np.nan)


def kendall_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair of (S, m) arrays; NaN where a row is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m = a.shape[-1]
    iu = np.triu_indices(m, 1)
    sa = np.sign(a[..., :, None] - a[..., None, :])[..., iu[0], iu[1]]
    sb = np.sign(b[..., :, None] - b[..., None, :])[..., iu[0], iu[1]]
    den = np.sqrt((sa != 0).sum(axis=-1) * (sb != 0).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (sa * sb).sum(axis=-1) / np.where(den > 0, den, 1), np.nan)


def consensus_ranking(
    subjects: list[str],
    n: list[int],
    consensus: np.ndarray,
    accuracy: np.ndarray,
    overall_consensus: np.ndarray,
    overall_accuracy: np.ndarray,
) -> dict:
    """How well mean consensus ranked the experts against their key accuracy, per subject and overall.

    `consensus`, `accuracy`: (S, m) per-subject means; `overall_*`: (m,) means over all questions."""
    c, a = np.atleast_2d(consensus), np.atleast_2d(accuracy)
    rho, tau = spearman_rows(c, a), kendall_rows(c, a)
    oc, oa = np.asarray(overall_consensus)[None], np.asarray(overall_accuracy)[None]
    defined = ~np.isnan(rho)
    w = np.asarray(n, dtype=np.float64)[defined]
    return {
        "subjects": list(subjects),
        "n": [int(v) for v in n],
        "spearman": [_none(v) for v in rho],
        "kendall": [_none(v) for v in tau],
        "overall": {"spearman": _none(spearman_rows(oc, oa)[0]), "kendall": _none(kendall_rows(oc, oa)[0])},
        # the question-weighted mean over subjects where the correlation is defined
        "mean_spearman": _none(np.average(rho[defined], weights=w)) if defined.any() and w.sum() else None,
        "mean_kendall": _none(np.average(tau[defined], weights=w)) if defined.any() and w.sum() else None,
    }


def warning_lines(warns: list[dict], t: Thresholds = THRESHOLDS) -> list[str]:
    """The warnings for a reader: one line per twin pair and pool-level warning, one line for all
    experts at chance, one for all letter-biased experts."""
    lines, chance, bias = [], [], []
    for w in warns:
        if w["kind"] == "chance":
            chance.append(f"{w['experts'][0]} {w['value']:.2f}")
        elif w["kind"] == "letter-bias":
            bias.append(f"{w['experts'][0]} {w['letter']} {w['value']:.0%}")
        else:
            lines.append(w["message"])
    if chance:
        lines.append(
            f"no better than chance agreement with the others (mean kappa <= {t.chance_kappa:g}): "
            f"{', '.join(chance)}; "
            "consensus scores say little about these experts' skill"
        )
    if bias:
        lines.append(
            f"one letter on more than {t.letter_share:.0%} of the answers: {', '.join(bias)}; their "
            "agreements are mostly that letter, not knowledge"
        )
    return lines
