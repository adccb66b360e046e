"""CASCAL settings: every knob (docs/METHOD.md §13) with its default, plus rgd's additions.

`compat` picks the semantics: "rgd" (the default) or "original", which reproduces the original
code's choices (docs/DIFFERENCES.md, CASCAL): the settings in `COMPAT` below, plus two behaviours
without a knob of their own: an abstention in training becomes a random letter A-D (seeded by `seed`;
the original's was unseeded), and ranking scores are rounded with Python's `round` instead of
`numpy.round` (they differ at exact half-way cases). A knob that `compat` sets may be left out (it
then takes the compat's value); with compat="original" a different explicit value is an error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

SIGNALS = ("consensus", "correctness")
AGREEMENTS = ("plurality", "tied_union")
SILHOUETTES = ("linear", "sklearn")
COMPATS = ("rgd", "original")
# The knobs each compat mode sets, in the order they are documented.
COMPAT = {
    "rgd": {"agreement": "plurality", "silhouette": "linear", "kmeans_float32": True, "kmeans_dims": 64},
    "original": {
        "agreement": "tied_union",
        "silhouette": "sklearn",
        "kmeans_float32": False,
        "kmeans_dims": 0,
    },
}


@dataclass(frozen=True)
class CascalConfig:
    compat: Literal["rgd", "original"] = "rgd"
    # --- training (§8) ---
    # "consensus": label-free CASCAL; "correctness": CASCAL-GT (§11), answer-key correctness replaces
    # consensus in every ranking and "answered correctly" replaces "agrees with the plurality" in step A.
    signal: Literal["consensus", "correctness"] = "consensus"
    min_consensus: float = 0.5
    # How agree(q) counts a tied plurality. "plurality" (rgd): the size of one top answer group / m,
    # so a 3-3 split is 0.5. "tied_union" (original, §14.11): all tied groups together, so 3-3 is 1.0.
    agreement: Literal["plurality", "tied_union"] | None = None  # None: as `compat` says
    weighted: bool = True
    merge_threshold: float = 0.15  # cosine distance; 0 disables step C
    prune: bool = True
    prune_jaccard: float = 0.95
    prune_top: int = 3
    k_min: int = 2
    k_max: int = 5
    silhouette_floor: float = 0.05
    # "linear": exact cosine silhouette from per-cluster sums, O(n*d*k) (rgd). "sklearn": the k that
    # scikit-learn's silhouette_score(metric="cosine") picks (the original's call): the same sums, and
    # sklearn's own O(n^2*d) score where two candidates (or one and the floor) are too close to call.
    silhouette: Literal["linear", "sklearn"] | None = None
    kmeans_n_init: int | Literal["auto"] = "auto"  # sklearn's "auto" = 1 run for k-means++
    kmeans_max_iter: int = 200
    kmeans_float32: bool | None = None  # k-means on a float32 copy (speed); centroids are float64 means
    # k-means runs on each subject's rows projected onto their top `kmeans_dims` principal directions
    # (seeded randomized PCA, shared by the subject's models); silhouettes, centroids and routing stay
    # in the full space. Cluster structure lives in the top directions, and a k-means pass then reads
    # kmeans_dims numbers per row instead of d. 0: full dimension (exact; compat="original").
    kmeans_dims: int | None = None
    # A (model, subject) with more proficient rows than this is clustered on a seeded sample of this
    # many, every row going to its nearest centre (k is still picked on all rows); 0: never (exact).
    # k-means takes more iterations to converge as rows grow; this bounds its cost, at a price in
    # accuracy (docs/DIFFERENCES.md). compat="original" requires 0.
    kmeans_max_rows: int = 0
    random_state: int = 0  # k-means seed, the same for every (model, subject) fit as in the original
    rank_decimals: int | None = 3  # cluster ranking scores are rounded (original: 3); None = exact
    global_rank_decimals: int | None = 4  # global ranking (original: 4)
    # --- inference (§9) ---
    two_stage: bool = True
    k_nearest: int = 3
    distance_temp: float = 0.1
    score_temp: float = 0.1
    sharp_scoring: bool = True
    fallback: bool = True
    distance_threshold: float = 0.5  # the original CLI default (its function default is 0.35)
    ramp_width: float = 0.2
    seed: int = 0  # ranking tie-breaks

    def __post_init__(self) -> None:
        _choice("compat", self.compat, COMPATS)
        for name, value in COMPAT[self.compat].items():
            given = getattr(self, name)
            if given is None:
                object.__setattr__(self, name, value)
            elif self.compat == "original" and given != value:
                raise ValueError(
                    f"{name}: compat='original' sets {value!r}, got {given!r} (leave {name} out, or use "
                    "compat='rgd')"
                )
        _int("kmeans_dims", self.kmeans_dims, low=0)
        if self.compat == "original" and self.kmeans_max_rows != 0:
            raise ValueError(
                f"kmeans_max_rows: compat='original' clusters every row (0), got {self.kmeans_max_rows!r}"
            )
        _choice("signal", self.signal, SIGNALS)
        _choice("agreement", self.agreement, AGREEMENTS)
        _choice("silhouette", self.silhouette, SILHOUETTES)
        _finite("min_consensus", self.min_consensus)
        for name in ("min_consensus", "prune_jaccard"):  # both are fractions
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)!r}")
        _finite("merge_threshold", self.merge_threshold, low=0.0)
        _finite("prune_jaccard", self.prune_jaccard, low=0.0)
        _finite("silhouette_floor", self.silhouette_floor)
        _finite("distance_threshold", self.distance_threshold)
        for name in ("distance_temp", "score_temp", "ramp_width"):
            _finite(name, getattr(self, name), positive=True)
        for name in ("prune_top", "k_nearest", "kmeans_max_iter"):
            _int(name, getattr(self, name), low=1)
        _int("k_min", self.k_min, low=2)
        _int("kmeans_max_rows", self.kmeans_max_rows, low=0)
        if 0 < self.kmeans_max_rows <= self.k_max:
            raise ValueError(
                f"kmeans_max_rows: 0 (no limit) or more than k_max={self.k_max}, got {self.kmeans_max_rows}"
            )
        _int("k_max", self.k_max, low=self.k_min)
        for name in ("random_state", "seed"):
            _int(name, getattr(self, name), low=0)
        if self.kmeans_n_init != "auto":
            _int("kmeans_n_init", self.kmeans_n_init, low=1)
        for name in ("rank_decimals", "global_rank_decimals"):
            if getattr(self, name) is not None:
                _int(name, getattr(self, name), low=0)
        for name in ("weighted", "prune", "kmeans_float32", "two_stage", "sharp_scoring", "fallback"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true/false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CascalConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"config: unknown keys {unknown}")
        return cls(**d)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {list(allowed)}, got {value!r}")


def _finite(name: str, value: object, low: float | None = None, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name}: must be > 0, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name}: must be >= {low}, got {value}")


def _int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: must be >= {low}, got {value}")
