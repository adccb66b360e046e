"""Step A: which training questions each model is "proficient" on, and with what weight.

A question's plurality set Maj(q) holds every answer tied for the most votes; abstentions (-1) are
no answer and never agree. A model is proficient on q when its answer is in Maj(q) (CASCAL-GT:
when it answered correctly). With weighting on, q is kept only if agree(q) >= min_consensus and
each proficient model gets weight agree(q); with weighting off, every proficient model gets 1.0 and
nothing is filtered (as in the original's unweighted path). With compat="original" an abstention
is a random letter A-D instead, as the original's training loader makes it (seeded here).
"""

from __future__ import annotations

import numpy as np

from .config import CascalConfig


def plurality_members(choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(members (n, m) bool: model's answer is in Maj(q); top (n,) int: size of the largest group)."""
    n, m = choices.shape
    valid = choices >= 0
    n_letters = int(choices.max()) + 1 if valid.any() else 1
    # Votes per (question, letter); one bincount over flattened (row, letter) cells.
    rows = np.broadcast_to(np.arange(n)[:, None], choices.shape)
    cells = (rows * n_letters + choices)[valid]
    counts = np.bincount(cells, minlength=n * n_letters).reshape(n, n_letters)
    top = counts.max(axis=1)
    own = np.take_along_axis(counts, np.where(valid, choices, 0), axis=1)
    members = valid & (own == top[:, None]) & (top[:, None] > 0)
    return members, top


def proficiency(
    cfg: CascalConfig, choices: np.ndarray | None, correct: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(weights (n, m) float: 0 = not proficient; skipped (n,) bool: dropped by min_consensus)."""
    if cfg.signal == "correctness":
        members = np.asarray(correct, dtype=bool)
        agree = members.sum(axis=1) / members.shape[1]
    else:
        if cfg.compat == "original" and (choices < 0).any():
            choices = choices.copy()  # row-major draw order: the same inputs and seed give the same letters
            choices[choices < 0] = np.random.default_rng(cfg.seed).integers(0, 4, int((choices < 0).sum()))
        members, top = plurality_members(choices)
        m = choices.shape[1]
        agree = (members.sum(axis=1) if cfg.agreement == "tied_union" else top) / m
    if not cfg.weighted:
        return members.astype(np.float64), np.zeros(len(members), dtype=bool)
    skipped = agree < cfg.min_consensus
    weights = np.where(members & ~skipped[:, None], agree[:, None], 0.0)
    return weights, skipped
