"""`rgd route`: rank the pool for new prompts with a trained router.

Prompts need only their text (rgd.records.read_prompts: question JSONL, chat messages or one prompt
per line); the router embeds them with its own embedder (its recorded runtime, its exported files
checked against their recorded digest) unless precomputed embeddings are given. The embedder reads
at most its maximum sequence length in tokens (MiniLM: 256); a prompt is cut to that many tokens'
worth of characters (rgd.serve.limits.CHARS_PER_TOKEN each) before it is tokenised.
Each output record holds the ranking (best first), every expert's score and the router's
diagnostics for that prompt (CASCAL: predicted subject, nearest cluster, its distance, whether the
global fallback was used; rgd.routers.diagnostics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import InputError, write_jsonl
from .records import read_prompts


def route_records(
    ids: list[str],
    experts: list[str],
    S: np.ndarray,
    diagnostics: dict[str, list],
    seed: int = 0,
    objective=None,
    costs: np.ndarray | None = None,
) -> list[dict]:
    """The pure step: one record per prompt from router scores S (n, m) and per-prompt diagnostics;
    ties in the ranking are broken by a seeded permutation (rgd.metrics.rank). The ranking follows
    `objective` (rgd.cost.Objective; default quality) with the experts' expected `costs` (m,); the
    scores written are the router's own either way."""
    from .cost import Objective
    from .cost import order as objective_order

    obj = objective or Objective()
    order = objective_order(S, costs, obj, seed) if len(ids) else np.zeros((0, len(experts)), dtype=int)
    return [
        {
            "id": q,
            "ranking": [experts[j] for j in order[i]],
            "scores": {e: float(S[i, j]) for j, e in enumerate(experts)},
            **{k: v[i] for k, v in diagnostics.items()},
        }
        for i, q in enumerate(ids)
    ]


def run(
    router_dir,
    prompts_path,
    out,
    embeddings=None,
    seed: int = 0,
    threads: int = 1,
    fmt: str = "auto",
    objective: str = "quality",
    costs: dict | None = None,
) -> dict:
    from .cost import from_options
    from .embed import aligned, embedder_spec
    from .records import PROVENANCE, read_provenance

    # every input is checked before the router code (scikit-learn) or an embedder is loaded
    prov, _ = read_provenance(router_dir)
    obj, cost_vector = from_options(objective, costs, prov.experts)
    where = str(Path(router_dir) / PROVENANCE)
    prompts = read_prompts(prompts_path, fmt)
    ids = [p.id for p in prompts]
    X = None
    if embeddings:
        X, spec = aligned(embeddings, ids)
        if prov.embedder and spec != prov.embedder:
            raise InputError(
                embeddings, None, "embedder", f"{spec} differs from the router's {prov.embedder}"
            )
    elif not prov.embedder:
        raise InputError(where, None, "embedder", "router records no embedder: give --embeddings")
    else:
        embedder_spec(prov.embedder, where).check_available(where)
    from . import routers

    router, _ = routers.load(Path(router_dir))
    if X is None:
        from .embed import Embedder
        from .progress import Progress
        from .serve.limits import CHARS_PER_TOKEN, FALLBACK_TOKENS

        embedder = Embedder(prov.embedder, threads=threads)
        # the embedder reads max_tokens tokens: a huge prompt is cut before tokenising, as rgd serve does
        cap = (embedder.max_tokens or FALLBACK_TOKENS) * CHARS_PER_TOKEN
        progress = Progress("route: embed", len(prompts), "prompt")
        X = embedder.encode([p.text[:cap] for p in prompts], progress)
        progress.finish()
    dim = router.n_features_in_
    if X.shape[1] != dim:
        raise InputError(
            embeddings or prompts_path,
            None,
            "X",
            f"embedding dimension {X.shape[1]}, the router was trained on {dim}",
        )
    S = routers.scores(router, X)
    diag = routers.diagnostics(router, X)
    records = route_records(ids, prov.experts, S, diag, seed, obj, cost_vector)
    write_jsonl(out, records)
    return {"n": len(records), "kind": prov.kind}
