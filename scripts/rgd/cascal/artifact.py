"""The router artifact: `router.json` (header) + `centroids.npz` (arrays), written atomically.

The npz is written first and the JSON header, which records the npz's SHA-256, last: a directory
whose header exists is complete. JSON keys are sorted, so equal routers give equal bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import read_json, save_npz, sha256_file, write_json
from ..records import slug
from .config import CascalConfig

FORMAT = "rgd.cascal.router"
FORMAT_VERSION = 1
HEADER, ARRAYS = "router.json", "centroids.npz"


def save_router(router, directory: str | Path) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_npz(
        d / ARRAYS,
        centroids=router.centroids_,
        subject_reps=router.subject_reps_,
        rankings=router.rankings_,
        cluster_subject=router.cluster_subject_,
        global_scores=router.global_scores_,
    )
    rankings = router.cluster_rankings()
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": router.config.to_dict(),
        "experts": router.experts_,
        "subjects": [{"name": s, "slug": slug(s)} for s in router.subjects_],
        "embedding_dim": int(router.n_features_in_),
        "embedder": router.embedder_,
        "global_ranking": router.global_ranking(),
        "clusters": [
            {
                "id": cid,
                "subject": router.subjects_[int(s)],
                "seed": int(seed),
                "assigned": int(size),
                "ranking": rankings[cid],
            }
            for cid, s, seed, size in zip(
                router.cluster_ids_, router.cluster_subject_, router.cluster_seeds_, router.cluster_sizes_
            )
        ],
        "counters": router.counters_,
        "assigned": router.assigned_,
        "arrays": {"file": ARRAYS, "sha256": sha256_file(d / ARRAYS)},
    }
    write_json(d / HEADER, header)


def load_router(cls, directory: str | Path):
    d = Path(directory)
    h = read_json(d / HEADER)
    if not isinstance(h, dict) or h.get("format") != FORMAT:
        raise ValueError(f"{d / HEADER}: not a CASCAL router artifact")
    if h.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{d / HEADER}: format_version {h.get('format_version')!r}, this rgd reads {FORMAT_VERSION}"
        )
    npz = d / h["arrays"]["file"]
    if sha256_file(npz) != h["arrays"]["sha256"]:
        raise ValueError(f"{npz}: checksum differs from {HEADER}; the artifact is inconsistent")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    try:
        return cls.from_tables(
            CascalConfig.from_dict(h["config"]),
            experts=h["experts"],
            subjects=[s["name"] for s in h["subjects"]],
            centroids=arrays["centroids"],
            cluster_ids=[c["id"] for c in h["clusters"]],
            cluster_subject=arrays["cluster_subject"],
            rankings=arrays["rankings"],
            subject_reps=arrays["subject_reps"],
            global_scores=arrays["global_scores"],
            cluster_seeds=np.array([c["seed"] for c in h["clusters"]], dtype=np.int64),
            cluster_sizes=np.array([c["assigned"] for c in h["clusters"]], dtype=np.int64),
            counters=h["counters"],
            assigned=h["assigned"],
            embedder=h["embedder"],
        )
    except (KeyError, ValueError) as e:
        raise ValueError(f"{d}: inconsistent router artifact: {e}") from None
