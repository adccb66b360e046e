"""CASCAL as docs/METHOD.md describes the original code (§8 training, §9 inference), written
the straightforward way: Python loops over questions where the original loops, scikit-learn's float64
k-means and its full-matrix `silhouette_score(metric="cosine")` for every k, no thread limits.

It is the same-run baseline of the CASCAL benchmarks (bench_cascal.py, bench_cascal_scale.py), not part
of rgd: rgd's `Cascal(compat="original")` must pick the same models on every question. Two points where
the original is not reproducible are fixed here as rgd fixes them, so that the two can be compared:
clusters keep their order after step D (the original passed them through a Python set, so the step-F
scan order depended on the string hash seed), and subjects are processed in sorted order. The workload
has no abstentions, so the original's random A-D substitute for unparseable answers never applies.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np

EPS = 1e-9
SETTINGS = dict(
    min_consensus=0.5,
    merge_threshold=0.15,
    k_max=5,
    floor=0.05,
    prune_jaccard=0.95,
    top=3,
    k_nearest=3,
    distance_temp=0.1,
    score_temp=0.1,
    threshold=0.5,
    ramp=0.2,
)


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, EPS)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z))
    return e / e.sum()


def _ranking(members, consensus, experts, decimals=3):
    """[(model, score)] sorted by score desc, ties by name asc (§8 step E)."""
    scores = [round(float(np.mean(consensus[members, j])), decimals) for j in range(len(experts))]
    return sorted(zip(experts, scores), key=lambda t: (-t[1], t[0]))


def _skill_centroids(X, w, s=SETTINGS, audit=None):
    """§8 step B for one model in one subject: [(vector, seed_count, label)]. `audit(X, labels, score)`,
    if given, sees every silhouette sklearn computed (bench_cascal compares rgd's with it)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(X)
    w = w * (n / w.sum()) if w.sum() > 0 else np.ones(n)
    n_unique = len(np.unique(np.round(X, 12), axis=0))
    if n <= 1 or n_unique == 1:
        return [(_unit(np.average(X, axis=0, weights=w)), n, 0)]
    best, best_labels, best_k = -np.inf, None, 0
    for k in range(2, max(min(s["k_max"], n - 1, n_unique - 1), 1) + 1):
        try:
            labels = (
                KMeans(n_clusters=k, n_init="auto", random_state=0, max_iter=200)
                .fit(X, sample_weight=w)
                .labels_
            )
            score = silhouette_score(X, labels, metric="cosine")
        except ValueError:
            continue
        if audit is not None:
            audit(X, labels, score)
        if score > best:
            best, best_labels, best_k = score, labels, k
    if best_labels is None or best < s["floor"]:
        return [(_unit(np.average(X, axis=0, weights=w)), n, 0)]
    out = []
    for j in range(best_k):
        rows = best_labels == j
        if rows.any():
            out.append((_unit(np.average(X[rows], axis=0, weights=w[rows])), int(rows.sum()), j))
    return out


def _merge(cents, s=SETTINGS):
    """§8 step C: [(id, vector, seeds)] -> merged list, roots keep their id."""
    into = {}
    for a in range(len(cents)):
        if a in into:
            continue
        for b in range(a + 1, len(cents)):
            if b in into:
                continue
            if 1.0 - float(cents[a][1] @ cents[b][1]) < s["merge_threshold"]:
                if cents[b][2] > cents[a][2]:
                    into[a] = b
                    break
                into[b] = a
    groups: dict[int, list[int]] = {}
    for i in range(len(cents)):
        r = i
        while r in into:
            r = into[r]
        groups.setdefault(r, []).append(i)
    out = []
    for r, g in groups.items():
        if len(g) == 1:
            out.append(cents[r])
            continue
        seeds = sum(cents[i][2] for i in g)
        vec = _unit(sum(cents[i][2] * cents[i][1] for i in g) / seeds)
        out.append((cents[r][0], vec, seeds))
    return out


def fit(X, subjects, choices, consensus, experts, s=SETTINGS, audit=None):
    """The router's tables: {subject: {"centroids": {cid: vec}, "rankings": {cid: [...]}, "assigned": {cid:
    [row]}}}, subject representatives {subject: vec} and the global ranking [(model, score)]."""
    m = len(experts)
    glob = sorted(
        ((e, round(float(np.mean(consensus[:, j])), 4)) for j, e in enumerate(experts)),
        key=lambda t: (-t[1], t[0]),
    )
    tables, reps = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on near-duplicate points, as in the original
        for subject in sorted(set(subjects)):
            qs = [i for i, x in enumerate(subjects) if x == subject]
            proficient = {e: [] for e in experts}
            for q in qs:  # step A, one question at a time
                counts = Counter(int(c) for c in choices[q])
                top = max(counts.values())
                maj = {c for c, k in counts.items() if k == top}
                agree = sum(int(c) in maj for c in choices[q]) / m
                if agree < s["min_consensus"]:
                    continue
                for j, e in enumerate(experts):
                    if int(choices[q, j]) in maj:
                        proficient[e].append((q, agree))
            cents = []
            for e in experts:  # step B
                if not proficient[e]:
                    continue
                rows = [q for q, _ in proficient[e]]
                w = np.array([a for _, a in proficient[e]])
                for vec, seeds, j in _skill_centroids(_unit(X[rows]), w, s, audit):
                    cents.append((f"{subject}::model={e}::c{j}", vec, seeds))
            Xs = _unit(X[qs])
            if not cents:
                tables[subject] = {"centroids": {}, "rankings": {}, "assigned": {}}
                reps[subject] = _unit(Xs.mean(axis=0))
                continue
            if s["merge_threshold"] > 0:
                cents = _merge(cents, s)  # step C
            C = np.stack([c[1] for c in cents])
            nearest = np.argmax(Xs @ C.T, axis=1)  # step D
            assigned = {c[0]: [qs[i] for i in np.flatnonzero(nearest == k)] for k, c in enumerate(cents)}
            assigned = {cid: a for cid, a in assigned.items() if a}
            vecs = {c[0]: c[1] for c in cents if c[0] in assigned}
            rankings = {cid: _ranking(a, consensus, experts) for cid, a in assigned.items()}  # step E
            ids = list(assigned)  # step F
            dropped = set()
            for a_i, a in enumerate(ids):
                if a in dropped:
                    continue
                for b in ids[a_i + 1 :]:
                    if b in dropped:
                        continue
                    ta = {mm for mm, _ in rankings[a][: s["top"]]}
                    tb = {mm for mm, _ in rankings[b][: s["top"]]}
                    if len(ta & tb) / len(ta | tb) < s["prune_jaccard"]:
                        continue
                    if len(assigned[b]) > len(assigned[a]):
                        assigned[b] = assigned[b] + assigned[a]
                        dropped.add(a)
                        break
                    assigned[a] = assigned[a] + assigned[b]
                    dropped.add(b)
            kept = [c for c in ids if c not in dropped]
            assigned = {c: assigned[c] for c in kept}
            rankings = {c: _ranking(assigned[c], consensus, experts) for c in kept}
            vecs = {c: _unit(_unit(X[assigned[c]]).mean(axis=0)) for c in kept}
            tables[subject] = {"centroids": vecs, "rankings": rankings, "assigned": assigned}
            reps[subject] = _unit(np.mean(np.stack(list(vecs.values())), axis=0))  # step G
    return {"tables": tables, "reps": reps, "global": glob, "experts": list(experts)}


def route(router, X, s=SETTINGS) -> np.ndarray:
    """§9 one question at a time: (n, m) scores P in pool order."""
    experts = router["experts"]
    G = np.array([dict(router["global"])[e] for e in experts])
    names = list(router["reps"])
    R = np.stack([router["reps"][n] for n in names])
    out = np.empty((len(X), len(experts)))
    for i, v in enumerate(X):
        v = _unit(v)
        subject = names[int(np.argmin(1.0 - R @ v))]
        t = router["tables"][subject]
        if not t["centroids"]:
            out[i] = G
            continue
        near = sorted((1.0 - float(c @ v), k, cid) for k, (cid, c) in enumerate(t["centroids"].items()))
        near = near[: s["k_nearest"]]
        a = _softmax(np.array([-d / s["distance_temp"] for d, _, _ in near]))
        P = np.zeros(len(experts))
        for ai, (_, _, cid) in zip(a, near):
            r = dict(t["rankings"][cid])
            r = np.array([r[e] for e in experts])
            P += ai * _softmax(r / s["score_temp"])
        d_near = near[0][0]
        if d_near > s["threshold"]:
            alpha = min((d_near - s["threshold"]) / s["ramp"], 1.0)
            P = (1 - alpha) * P / P.sum() + alpha * G / G.sum()
        out[i] = P
    return out
