"""How much a result owes to chance and to the skill estimator (docs/METHOD.md §10).

* Seed spread: one router retrained under several seeds (its `seed`, CASCAL's k-means
  `random_state`, the ranking tie-break) on the same training source, each evaluated on the whole
  real test set. The single-seed bootstrap CI says how much the test questions move a result; the
  spread over seeds says how much the router's own randomness does. A query-only router is trained
  from questions, embeddings and consensus only: its job gets no key file (rules/report.smk).
* Estimators: the pool's label-free skill estimates on the real training split under each consensus
  estimator (the paper's confidence-weighted vote, Dawid-Skene), against the keys after the fact:
  the rank correlation of estimated per-(model, category) skill with key accuracy, how often the
  estimator's own label (the letter with the highest posterior) is the key, and CASCAL trained on
  each estimator's scores, evaluated on the test set.
"""

from __future__ import annotations

import numpy as np

from .. import metrics

ESTIMATORS = ("confidence", "dawid-skene")
STATS = ("mean", "sd", "min", "max")


def spread(values: list[float]) -> dict:
    """Mean, population standard deviation, min and max of per-seed results."""
    v = np.asarray(values, dtype=np.float64)
    return dict(zip(STATS, (float(v.mean()), float(v.std()), float(v.min()), float(v.max()))))


def evaluate_router(router, test, seed: int) -> tuple[float, float]:
    """(Top-1, Top-3 vote) of a fitted router on the test set, ties broken with `seed`."""
    from .. import routers

    order = metrics.rank(routers.scores(router, test.X), seed)
    top1 = metrics.top1_correct(order, test.choices, test.gold).mean()
    top3 = metrics.top3_vote_correct(order, test.choices, test.gold, test.z).mean()
    return float(top1), float(top3)


def seed_spread(kind: str, params: dict, data, test, seeds: list[int]) -> dict:
    """`kind` trained on `data` (rgd.routers.TrainingSet) once per seed; every run and the spread."""
    from .. import routers

    if not seeds:
        raise ValueError("seeds: need at least one")
    runs = []
    for s in seeds:
        p = dict(params or {})
        if "random_state" in routers.make(kind).get_params():  # CASCAL's k-means
            p["random_state"] = s
        router = routers.train(kind, p, s, data, n_jobs=1)
        top1, top3 = evaluate_router(router, test, s)
        runs.append({"seed": s, "top1": top1, "top3_vote": top3})
    return {
        "router": kind,
        "seeds": list(seeds),
        "runs": runs,
        "top1": spread([r["top1"] for r in runs]),
        "top3_vote": spread([r["top3_vote"] for r in runs]),
        "n_test": len(test.gold),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when either side is constant."""
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return None
    return float(spearmanr(a[ok], b[ok]).statistic)


def estimator_quality(categories: list[str], choices, scores, gold) -> dict:
    """How well one estimator's consensus `scores` (n, m) rank the pool against the keys `gold`:
    Spearman over every (model, category) of the mean consensus score (an abstention scores 0)
    against key accuracy; the mean per-category Spearman over models; and how often the letter
    the estimator believes most (the answer with the highest score) is the key."""
    from ..consensus import estimated_skill

    correct = (choices == gold[:, None]).astype(np.float64)
    cats, est = estimated_skill(scores, categories)
    _, acc = estimated_skill(correct, categories)  # the same table of the keys' correctness
    per_cat = [_spearman(est[i], acc[i]) for i in range(len(cats))]
    defined = [x for x in per_cat if x is not None]
    masked = np.where(choices >= 0, scores, -np.inf)
    best = masked.argmax(axis=1)
    label = choices[np.arange(len(gold)), best]
    return {
        "spearman_model_category": _spearman(est.ravel(), acc.ravel()),
        "spearman_per_category_mean": float(np.mean(defined)) if defined else None,
        "label_accuracy": float((label == gold).mean()),
        "n_questions": len(gold),
        "n_categories": len(cats),
    }


def compare_estimators(
    questions, keys, embeddings, responses: dict[str, str], consensus_spec: dict, cascal_spec: dict, test
) -> dict:
    """Each estimator of ESTIMATORS on one pool's real training split: `estimator_quality` against
    the keys, and CASCAL (the config's settings) trained on its scores and evaluated on `test`.
    Under `compat: original` only the paper's estimator exists; the other is reported as skipped."""
    from .. import routers
    from ..consensus import ConsensusConfig, run_consensus
    from ..embed import aligned
    from ..matrices import consensus_matrices, gold_indices
    from ..records import read_keys, read_questions, read_responses
    from ..spec import parse
    from ..train import TrainSpec

    qs = read_questions(questions)
    ids, cats = [q.id for q in qs], [q.category for q in qs]
    records = {e: read_responses(p, ids) for e, p in responses.items()}
    gold = gold_indices(ids, read_keys(keys, qs), keys)
    X = aligned(embeddings, ids)[0]
    spec = parse(TrainSpec, cascal_spec, "--cascal-spec")
    experts = list(responses)
    out: dict = {"experts": experts, "n_train": len(ids), "n_test": len(test.gold), "estimators": {}}
    for name in ESTIMATORS:
        if consensus_spec.get("compat") == "original" and name != "confidence":
            out["estimators"][name] = {"skipped": "compat: original has the paper's estimator only"}
            continue
        cfg = ConsensusConfig.from_spec({**consensus_spec, "estimator": name}, "--consensus-spec")
        rows, _ = run_consensus(ids, records, cfg, sources=responses, n_options=[len(q.options) for q in qs])
        choices, cons = consensus_matrices(rows, ids, experts)
        r = estimator_quality(cats, choices, cons, gold)
        router = routers.train(
            "cascal", spec.params, spec.seed, routers.TrainingSet(X, experts, cats, choices, cons, ids=ids)
        )
        r["cascal_top1"], r["cascal_top3_vote"] = evaluate_router(router, test, spec.seed)
        out["estimators"][name] = r
    return out
