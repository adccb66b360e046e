"""Dawid-Skene latent-class estimator: label-free skill from a pool's votes (docs/METHOD.md §6.1).

Each question q has an unknown true letter c among its k_q options; each model m answers it
through its own noise model, independently of the other models given c:

* ``full``: a confusion matrix pi_m[c, l] = P(m votes l | true c) over the `n_classes` letters;
* ``one-coin``: one accuracy a_m, P(m votes l | c) = a_m if l == c, else (1 - a_m) / (k_q - 1)
  (errors spread evenly over the question's other options).

EM (Dawid & Skene 1979) alternates the posterior T[q, c] = P(true c | votes) (E-step) with the
class prior and the noise models fitted to T (M-step), from T = the plurality vote shares. Every
count gets `smoothing` added (a Dirichlet prior), so no probability is 0 and a model with few votes
stays near the uniform. An abstention (-1) is no observation; a letter >= k_q is a wrong answer for
every class (it can never be the truth). Everything is deterministic: no randomness at all.

Known weakness (docs/METHOD.md §6.1): the models are assumed independent given the truth, so two
models that share their mistakes look like two reliable witnesses and are weighted up together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Variant = Literal["full", "one-coin"]


@dataclass(frozen=True)
class DSFit:
    posterior: np.ndarray  # (n_q, n_classes): P(true class | votes); 0 beyond a question's options
    prior: np.ndarray  # (n_classes,) fitted class prior (before restricting to a question's options)
    accuracy: np.ndarray  # (n_m,) per-model P(vote correct | it voted) under the final posterior
    confusion: np.ndarray | None  # (n_m, n_classes, n_classes) for "full"; None for "one-coin"
    iterations: int  # EM iterations run (M-step + E-step pairs)
    converged: bool  # max |change of the posterior| fell below tol within max_iter

    def expected_accuracy(self, choices: np.ndarray) -> np.ndarray:
        """(n_m,) share of all questions each model answered right, in expectation under the
        posterior (an abstention counts as wrong, as with an answer key)."""
        scores = vote_scores(self.posterior, choices)
        return scores.mean(axis=0) if choices.shape[0] else np.zeros(choices.shape[1])


def vote_scores(posterior: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """(n_q, n_m) posterior probability of each model's own letter; 0.0 for an abstention."""
    voting = choices >= 0
    rows = np.arange(choices.shape[0])[:, None]
    return np.where(voting, posterior[rows, np.where(voting, choices, 0)], 0.0)


def option_mask(n_options: Sequence[int] | np.ndarray | None, n_q: int, n_classes: int) -> np.ndarray:
    """(n_q, n_classes) bool: letter c is one of question q's options (every letter by default)."""
    if n_options is None:
        return np.ones((n_q, n_classes), dtype=bool)
    k = np.asarray(n_options, dtype=np.int64)
    if k.shape != (n_q,):
        raise ValueError(f"n_options: expected {n_q} option counts, got shape {k.shape}")
    bad = np.flatnonzero((k < 1) | (k > n_classes))
    if bad.size:
        raise ValueError(
            f"n_options: question row {bad[0]} has {k[bad[0]]} options, outside 1..{n_classes} "
            "(raise n_classes)"
        )
    return np.arange(n_classes)[None, :] < k[:, None]


def vote_shares(choices: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n_q, n_classes) share of each option among the votes for an option; uniform over the options
    where nobody voted for one (all abstained): the EM's starting posterior."""
    n_q, k = mask.shape
    voting = (choices >= 0) & (choices < k)
    flat = np.where(voting, choices, 0) + (np.arange(n_q, dtype=np.int64) * k)[:, None]
    counts = np.bincount(flat.ravel(), weights=voting.ravel().astype(np.float64), minlength=n_q * k)
    counts = counts.reshape(n_q, k) * mask
    empty = counts.sum(axis=1) == 0
    counts[empty] = mask[empty]
    return counts / counts.sum(axis=1, keepdims=True)


def _normalise_log(log_t: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Posterior from unnormalised log-probabilities: softmax over each question's options."""
    log_t = np.where(mask, log_t, -np.inf)
    log_t -= log_t.max(axis=1, keepdims=True)
    t = np.exp(log_t)
    t /= t.sum(axis=1, keepdims=True)
    return t


def _one_coin_accuracy(t: np.ndarray, choices: np.ndarray, alpha: float) -> np.ndarray:
    """a_m = (expected correct votes + alpha) / (votes + 2 alpha)."""
    voting = choices >= 0
    correct = vote_scores(t, choices).sum(axis=0)
    return (correct + alpha) / (voting.sum(axis=0) + 2.0 * alpha)


def _one_coin_log_t(acc: np.ndarray, log_prior: np.ndarray, choices, mask) -> np.ndarray:
    """log prior + sum over voting models of log P(vote | c) for the one-coin model."""
    n_q, k = mask.shape
    voting = choices >= 0
    wrong_ways = np.maximum(mask.sum(axis=1) - 1, 1)  # the other options a wrong vote spreads over
    log_wrong = np.log1p(-acc)[None, :] - np.log(wrong_ways)[:, None]  # (n_q, n_m)
    log_t = np.where(voting, log_wrong, 0.0).sum(axis=1)[:, None] + log_prior[None, :]
    bonus = np.where(voting, np.log(acc)[None, :] - log_wrong, 0.0)
    hit = voting & (choices < k)  # a letter beyond the class set cannot be the truth
    flat = np.where(hit, choices, 0) + (np.arange(n_q, dtype=np.int64) * k)[:, None]
    log_t += np.bincount(flat.ravel(), weights=np.where(hit, bonus, 0.0).ravel(), minlength=n_q * k).reshape(
        n_q, k
    )
    return log_t


def _confusion(t: np.ndarray, choices: np.ndarray, alpha: float) -> np.ndarray:
    """pi[m, c, l] = (expected count of (true c, vote l) + alpha) / row total, per model."""
    n_q, k = t.shape
    pi = np.empty((choices.shape[1], k, k))
    for m in range(choices.shape[1]):  # a handful of models; each step is O(n_q * k) numpy work
        votes = choices[:, m]
        onehot = np.zeros((n_q, k))
        ok = votes >= 0
        onehot[np.flatnonzero(ok), votes[ok]] = 1.0
        pi[m] = t.T @ onehot + alpha
    pi /= pi.sum(axis=2, keepdims=True)
    return pi


def _full_log_t(pi: np.ndarray, log_prior: np.ndarray, choices: np.ndarray) -> np.ndarray:
    log_pi = np.log(pi)
    log_t = np.broadcast_to(log_prior, (choices.shape[0], pi.shape[1])).copy()
    for m in range(choices.shape[1]):
        ok = choices[:, m] >= 0
        log_t[ok] += log_pi[m][:, choices[ok, m]].T
    return log_t


def _check(choices: np.ndarray, n_classes: int, variant: str, max_iter: int, tol: float, smoothing: float):
    choices = np.asarray(choices)
    if choices.ndim != 2 or not np.issubdtype(choices.dtype, np.integer):
        raise ValueError(f"choices: expected a 2-D integer (questions, models) array, got {choices.shape}")
    if choices.size and (choices.min() < -1 or choices.max() >= n_classes):
        raise ValueError(f"choices: values must lie in -1..{n_classes - 1} (-1 = abstention)")
    if variant not in ("full", "one-coin"):
        raise ValueError(f"variant: expected 'full' or 'one-coin', got {variant!r}")
    if max_iter < 1 or not tol >= 0 or not smoothing > 0:
        raise ValueError("max_iter >= 1, tol >= 0 and smoothing > 0 are required")
    return choices.astype(np.int64)


def dawid_skene(
    choices: np.ndarray,
    n_classes: int,
    n_options: Sequence[int] | np.ndarray | None = None,
    *,
    variant: Variant = "one-coin",
    max_iter: int = 100,
    tol: float = 1e-6,
    smoothing: float = 0.01,
) -> DSFit:
    """Fit Dawid-Skene by EM to `choices` (n_q, n_m; -1 = abstention; letters 0..n_classes-1).

    `n_options[q]` (default: n_classes) limits question q's true class to its first k_q letters."""
    choices = _check(choices, n_classes, variant, max_iter, tol, smoothing)
    mask = option_mask(n_options, choices.shape[0], n_classes)
    t = vote_shares(choices, mask)
    prior, pi = np.full(n_classes, 1.0 / n_classes), None
    it, converged = 0, choices.shape[0] == 0
    while not converged and it < max_iter:
        it += 1
        prior = t.sum(axis=0) + smoothing  # M-step, then E-step
        prior /= prior.sum()
        if variant == "full":
            pi = _confusion(t, choices, smoothing)
            log_t = _full_log_t(pi, np.log(prior), choices)
        else:
            log_t = _one_coin_log_t(_one_coin_accuracy(t, choices, smoothing), np.log(prior), choices, mask)
        new = _normalise_log(log_t, mask)
        converged = bool(np.abs(new - t).max() < tol)
        t = new
    # P(correct | voted) under the final posterior: one-coin's a_m, also for "full"
    return DSFit(t, prior, _one_coin_accuracy(t, choices, smoothing), pi, it, converged)
