"""`rgd train`: fit one router on one training source and save it with its provenance.

Label-free by construction: a query-only router (CASCAL) refuses answer keys (the key file is
never read), a query-answer router requires them (rgd.routers.NEEDS_KEYS). Every input and the
router's settings are checked before anything is fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .io import InputError
from .spec import SpecError, parse


@dataclass(frozen=True)
class TrainSpec:
    """The config's `routers.<kind>` entry (plus the workflow's `seed`)."""

    params: dict = field(default_factory=dict)
    seed: int = 0


def check_router_settings(kind: str, spec: TrainSpec, where: str = "--spec"):
    """Build the router from its settings (no fitting): unknown or bad parameters fail here."""
    from . import routers

    if kind not in routers.KINDS:
        raise SpecError("--kind", None, f"unknown router kind {kind!r}; known: {', '.join(routers.KINDS)}")
    try:
        return routers.make(kind, spec.params, spec.seed)
    except ValueError as e:  # the routers' own constructors check their hyperparameters
        field_, sep, msg = str(e).partition(": ")
        raise SpecError(
            where, f"params.{field_}" if sep and " " not in field_ else "params", msg if sep else str(e)
        ) from None


def run(
    kind: str,
    questions,
    embeddings,
    consensus,
    experts: list[str],
    out_dir,
    keys=None,
    spec: dict | None = None,
    threads: int | None = None,
) -> int:
    from . import routers

    settings = parse(TrainSpec, spec or {}, "--spec")
    data = training_set(kind, settings, questions, embeddings, consensus, experts, keys)
    router = routers.train(kind, settings.params, settings.seed, data, n_jobs=threads)
    n = len(data.ids)
    routers.save(router, kind, Path(out_dir), experts, data.embedder, {"questions": str(questions), "n": n})
    return n


def training_set(kind: str, settings: TrainSpec, questions, embeddings, consensus, experts, keys=None):
    """The checked TrainingSet of a training source for router `kind`: every file and the router's
    settings are checked before anything is fitted, and the key file is read only for a
    query-answer router (a query-only router given one is refused)."""
    from .embed import aligned
    from .matrices import consensus_matrices, correctness
    from .records import read_consensus, read_keys, read_questions

    if len(set(experts)) != len(experts):
        raise SpecError("--experts", None, f"an expert is listed twice: {experts}")
    qs = read_questions(questions, allow_empty=True)
    if not qs:
        raise InputError(
            questions,
            None,
            None,
            "training source has no questions (for a generated set, every "
            "output was rejected: see its .rejects.jsonl and .meta.json)",
        )
    ids = [q.id for q in qs]
    X, embedder = aligned(embeddings, ids)
    choices, cons = consensus_matrices(read_consensus(consensus), ids, experts, consensus)
    # the files are sound: now the router code (scikit-learn) and its settings
    from . import routers

    check_router_settings(kind, settings)
    if routers.needs_keys(kind) != (keys is not None):
        what = (
            "a query-answer router: it needs the training source's keys"
            if keys is None
            else "query-only: it must not be given answer keys"
        )
        raise InputError("<command line>", None, "--keys", f"router {kind!r} is {what}")
    correct = correctness(choices, ids, read_keys(keys, qs), keys) if keys else None
    return routers.TrainingSet(X, experts, [q.category for q in qs], choices, cons, correct, ids, embedder)
