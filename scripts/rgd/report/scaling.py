"""Data scaling (docs/METHOD.md §10 "scaling statistics"): CASCAL accuracy against the number of
training questions.

For each fraction f and replicate seed s, CASCAL is trained on a category-balanced subsample of the
training source (in every category, round(f * n_category) questions, at least one, drawn with
`numpy.random.default_rng(s)`) and evaluated on the whole real test set with rgd.metrics. Within a
replicate every random step takes the seed s: the subsample, the k-means initialisation
(`random_state`) and the ranking tie-break. With f = 1 only the k-means seed varies. Summaries are
the mean and the population standard deviation over seeds, as in the original's `mean_and_std`.

Training is label-free (questions, embeddings, consensus of the training source); only the
evaluation reads the test keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import matrices, metrics
from ..io import InputError

# The curve's points and replicates when the config's report.scaling sets none (rules/report.smk).
DEFAULT_FRACTIONS = (0.25, 0.5, 1.0)
DEFAULT_SEEDS = (0, 1, 2)


def subsample_size(n: int, fraction: float) -> int:
    """Rows a category of `n` gives at `fraction`: round(fraction * n), at least one."""
    return n if fraction == 1 else max(1, int(round(fraction * n)))


def balanced_subsample(categories: list[str], fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices: round(fraction * n_c) rows of every category c (at least 1), seeded."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected a number in (0, 1], got {fraction}")
    cats = np.asarray(categories, dtype=object)
    rng = np.random.default_rng(seed)
    picked = []
    for c in sorted(set(categories)):
        rows = np.flatnonzero(cats == c)
        picked.append(rng.permutation(rows)[: subsample_size(len(rows), fraction)])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


@dataclass
class TestSet:
    """The real test set for one pool: choices (n, m), key indices (n,), confidence z-scores (n, m)."""

    choices: np.ndarray
    gold: np.ndarray
    z: np.ndarray
    X: np.ndarray


def load_test_set(questions, keys, embeddings, responses: dict[str, str], stats) -> TestSet:
    """As `rgd evaluate` (rgd.matrices): z = (confidence - median) / sigma with the training source's
    statistics; plus the test questions' embeddings."""
    from ..embed import aligned

    t = matrices.load_test_set(questions, keys, responses, stats)
    return TestSet(t.choices, t.gold, t.z, aligned(embeddings, t.ids)[0])


def scaling_curve(
    X: np.ndarray,
    categories: list[str],
    choices: np.ndarray,
    consensus: np.ndarray,
    experts: list[str],
    test: TestSet,
    fractions: list[float],
    seeds: list[int],
    params: dict | None = None,
) -> dict:
    """Every (fraction, seed) run and the per-fraction summary; see the module docstring."""
    from .. import routers

    if not fractions or not seeds:
        raise ValueError("fractions and seeds: need at least one of each")
    runs = []
    for f in sorted(set(fractions)):
        for s in seeds:
            idx = balanced_subsample(categories, f, s)
            router = routers.make(
                "cascal", {**(params or {}), "random_state": s}, s, n_jobs=1
            )  # a 1-thread job
            router.fit(
                routers.TrainingSet(
                    X[idx], experts, [categories[i] for i in idx], choices[idx], consensus[idx]
                )
            )
            order = metrics.rank(routers.scores(router, test.X), s)
            top1 = metrics.top1_correct(order, test.choices, test.gold).mean()
            top3 = metrics.top3_vote_correct(order, test.choices, test.gold, test.z).mean()
            runs.append(
                {"fraction": f, "seed": s, "n_train": len(idx), "top1": float(top1), "top3_vote": float(top3)}
            )
    summary = []
    for f in sorted(set(fractions)):
        rs = [r for r in runs if r["fraction"] == f]
        row = {"fraction": f, "n_train": float(np.mean([r["n_train"] for r in rs])), "n_seeds": len(rs)}
        for m in ("top1", "top3_vote"):
            v = np.array([r[m] for r in rs])
            row.update(
                {
                    f"{m}_mean": float(v.mean()),
                    f"{m}_std": float(v.std()),
                    f"{m}_min": float(v.min()),
                    f"{m}_max": float(v.max()),
                }
            )
        summary.append(row)
    correct = test.choices == test.gold[:, None]
    return {
        "experts": list(experts),
        "n_test": len(test.gold),
        "fractions": sorted(set(fractions)),
        "seeds": list(seeds),
        "runs": runs,
        "summary": summary,
        "best_single": float(correct.mean(axis=0).max()),
        "oracle": float(correct.any(axis=1).mean()),
    }


def run(
    questions,
    embeddings,
    consensus,
    experts: list[str],
    test: TestSet,
    fractions,
    seeds,
    params: dict | None = None,
) -> dict:
    from .analysis import load_pool_set

    ps = load_pool_set(questions, consensus, experts)
    if not ps.ids:
        raise InputError(questions, None, None, "training source has no questions")
    from ..embed import aligned

    X = aligned(embeddings, ps.ids)[0]
    out = scaling_curve(X, ps.categories, ps.choices, ps.consensus, experts, test, fractions, seeds, params)
    out["n_source"] = len(ps.ids)
    return out
