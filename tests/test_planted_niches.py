"""Planted niches: CASCAL must find which model is best where, from consensus alone.

A synthetic pool of 5 models over 4 subjects with 2-3 embedding clusters each (Gaussian blobs on the
unit sphere, d = 32). In every cluster one planted model is best (90% correct); two more are
middling (60%, 50%) and the rest weak (35%). The middle tiers make each cluster's top-3 model *set*
differ from its subject neighbours': CASCAL's step F merges clusters whose top-3 sets coincide, even
when their best models differ, so a planted structure without them would test pruning, not niche
recovery. Answers: correct -> the key; wrong -> one of 9 distractors uniformly, so the plurality
tends to be right; confidences are higher when correct; consensus scores come from rgd.consensus.
The router trains on one sample and routes a fresh one; CASCAL-GT (answer-key correctness instead
of consensus) must do the same.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from rgd.cascal import Cascal
from rgd.consensus import consensus_scores
from rgd.routers import TrainingSet

N_MODELS, DIM, N_OPTIONS = 5, 32, 10
CLUSTERS_PER_SUBJECT = [2, 3, 2, 3]
# (best, second, third) model per planted cluster, subject by subject.
TIERS = [
    (0, 1, 2),
    (1, 3, 4),
    (2, 0, 3),
    (3, 4, 1),
    (4, 2, 0),
    (0, 3, 4),
    (1, 2, 0),
    (2, 4, 1),
    (3, 0, 2),
    (4, 1, 3),
]
ACCURACY = {0: 0.90, 1: 0.60, 2: 0.50}  # by tier; everyone else 0.35
WEAK = 0.35


def planted_world(seed: int = 0):
    rng = np.random.default_rng(seed)
    subject_of = np.repeat(np.arange(len(CLUSTERS_PER_SUBJECT)), CLUSTERS_PER_SUBJECT)
    subj_dir = rng.normal(size=(len(CLUSTERS_PER_SUBJECT), DIM))
    own_dir = rng.normal(size=(len(subject_of), DIM))
    centers = subj_dir[subject_of] + 0.8 * own_dir
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    acc = np.full((len(subject_of), N_MODELS), WEAK)
    for c, tiers in enumerate(TIERS):
        for tier, model in enumerate(tiers):
            acc[c, model] = ACCURACY[tier]
    return subject_of, centers, acc


def sample(rng, n, subject_of, centers, acc, noise=0.1):
    cluster = rng.integers(0, len(centers), n)
    X = centers[cluster] + noise * rng.normal(size=(n, DIM))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    gold = rng.integers(0, N_OPTIONS, n)
    correct = rng.random((n, N_MODELS)) < acc[cluster]
    wrong = (gold[:, None] + rng.integers(1, N_OPTIONS, (n, N_MODELS))) % N_OPTIONS
    choices = np.where(correct, gold[:, None], wrong)
    logprobs = np.where(correct, -0.3, -0.7) + rng.normal(0.0, 0.15, (n, N_MODELS))
    subjects = [f"subject {s}" for s in subject_of[cluster]]
    return X, subjects, cluster, choices, logprobs, correct


@pytest.mark.parametrize("signal", ["consensus", "correctness"])
def test_cascal_recovers_planted_niches(signal):
    t0 = time.perf_counter()
    subject_of, centers, acc = planted_world(seed=0)
    rng = np.random.default_rng(1)
    X, subjects, _, choices, logprobs, correct = sample(rng, 3000, subject_of, centers, acc)
    Xt, _, cluster_t, _, _, correct_t = sample(rng, 3000, subject_of, centers, acc)
    consensus = consensus_scores(choices, logprobs).scores
    experts = [f"model-{j}" for j in range(N_MODELS)]
    data = TrainingSet(X, experts, subjects, choices, consensus, correct if signal == "correctness" else None)
    router = Cascal(signal=signal).fit(data)

    planted_best = np.array([t[0] for t in TIERS])
    # Niches: routing each planted cluster's centre puts its planted best model first ...
    top_at_centre = router.rank(centers)[0][:, 0]
    np.testing.assert_array_equal(top_at_centre, planted_best)
    # ... and so does the majority of the fresh test questions drawn from each cluster.
    order, _ = router.rank(Xt)
    top = order[:, 0]
    for c in range(len(centers)):
        picks = np.bincount(top[cluster_t == c], minlength=N_MODELS)
        assert picks.argmax() == planted_best[c], (c, picks)

    rows = np.arange(len(Xt))
    top1 = correct_t[rows, top].mean()
    cluster_oracle = correct_t[rows, planted_best[cluster_t]].mean()  # routing upper bound
    question_oracle = correct_t.any(axis=1).mean()  # any model right: not reachable by routing
    best_single = correct_t.mean(axis=0).max()
    print(
        f"\nplanted niches ({signal}): top-1 {top1:.4f}, cluster oracle {cluster_oracle:.4f}, "
        f"per-question oracle {question_oracle:.4f}, best single model {best_single:.4f}, "
        f"clusters {len(router.cluster_ids_)}, {time.perf_counter() - t0:.2f} s"
    )
    assert cluster_oracle - top1 <= 0.05
    assert top1 - best_single >= 0.2  # routing is worth far more than the best single model
    assert question_oracle >= cluster_oracle
    assert time.perf_counter() - t0 < 10
