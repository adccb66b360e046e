"""The files one rgd step writes and the report steps read, checked on reading.

Each reader returns the file's JSON as it is, after checking (rgd.spec, unknown keys ignored) the
fields the summary, figures and tables use, so that a wrong file (another step's output, an
evaluation run without labels, a truncated write) is one located line instead of a KeyError
deep inside a figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import InputError, read_json
from ..spec import SpecError, parse


@dataclass(frozen=True)
class EvalLabels:
    benchmark: str
    pool: str
    source: str
    router: str


@dataclass(frozen=True)
class EvalFile:
    """rgd.metrics.EvalReport.to_dict() plus the labels `rgd evaluate --labels` copies in."""

    labels: EvalLabels
    n_questions: int
    models: list[str]
    top1: float
    top3_vote: float
    best_single: float
    best_single_model: str
    random: float
    oracle: float
    pool_vote: float
    gap_closed_top1: float | None = None
    ci: dict[str, list[float | None]] = field(default_factory=dict)
    paired: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolLabels:
    benchmark: str
    pool: str


@dataclass(frozen=True)
class AnalysisFile:
    """rgd analyse's output."""

    labels: PoolLabels
    experts: list[str]
    sources: dict[str, dict[str, Any]]
    skills: dict[str, Any]
    calibration: dict[str, Any]
    diagnostics: dict[str, Any]  # rgd.diagnostics: the label-free pool diagnostics
    consensus_ranking: dict[str, Any] | None = None


@dataclass(frozen=True)
class ScalingLabels:
    benchmark: str
    pool: str
    source: str


@dataclass(frozen=True)
class ScalingFile:
    """rgd scaling's output."""

    labels: ScalingLabels
    experts: list[str]
    summary: list[dict[str, Any]]
    best_single: float
    oracle: float


@dataclass(frozen=True)
class RouterHeader:
    """The fields of a CASCAL router.json the report reads."""

    experts: list[str]
    clusters: list[dict[str, Any]]


def _read(cls, path: str | Path, what: str) -> dict:
    data = read_json(path)
    try:
        parse(cls, data, str(path), ignore_unknown=True)
    except SpecError as e:
        raise InputError(path, None, e.field, f"{e.message} (is this {what}?)") from None
    return data


def read_eval(path) -> dict:
    return _read(EvalFile, path, "an `rgd evaluate` output")


def read_analysis(path) -> dict:
    return _read(AnalysisFile, path, "an `rgd analyse` output")


def read_scaling(path) -> dict:
    return _read(ScalingFile, path, "an `rgd scaling` output")


def read_router_header(directory) -> dict:
    return _read(RouterHeader, Path(directory) / "router.json", "a CASCAL router directory")
