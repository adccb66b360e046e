"""Cost-aware routing: pure functions over router scores S (n, m) and the pool's costs.

A model's cost (config `models.<name>.cost`, or an endpoint's `cost` in `rgd serve`'s endpoints file):
  {input_per_mtok: 0.15, output_per_mtok: 0.60, unit: USD}   list price per million tokens
  {relative: 7.8}                                             a relative price per million tokens
                                                              (e.g. a size proxy), unit "relative"
Costs of one pool must share a unit: a dollar price and a size proxy cannot be compared.

Two kinds of cost are used, and they are kept apart:
* the *expected* cost of sending one request to each expert, (m,), known before the answer: the
  mean of the input and output prices (a request with as many output as input tokens). Routing
  (`order`) sees only this, since the token counts of an answer not yet written are unknown;
* the *realised* cost of an answer, (n, m): its recorded prompt and output tokens times the prices
  (`realised_costs`). Evaluation (`tradeoff`) charges this.

Objectives (`Objective.parse`; `rgd route --objective`, `rgd serve --objective`):
  quality        rank by predicted score alone (rgd.metrics.rank; what routers did before costs)
  tolerance=T    the cheapest expert whose score is within T of the row's best score (in the router's
                 own score units) comes first, then the other such experts by cost, then the rest by
                 score. T = 0 is quality ranking with ties broken by cost.
  lambda=L       rank by S - L * c / max(c): quality minus L times the cost scaled to [0, 1], so L
                 is in score units whatever the currency.
Equal keys keep the order of rgd.metrics.rank(S, seed), so every objective breaks its remaining ties
by the same seeded permutation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

OBJECTIVES = ("quality", "tolerance", "lambda")
RELATIVE = "relative"
DEFAULT_GRID_POINTS = 25


# --------------------------------------------------------------------------- costs
@dataclass(frozen=True)
class Cost:
    input_per_mtok: float
    output_per_mtok: float
    unit: str
    source: str | None = None  # where the numbers come from (a price list, "size proxy", ...)

    @classmethod
    def parse(cls, d) -> Cost:
        """From a config mapping; raises ValueError("field: message")."""
        if not isinstance(d, Mapping):
            raise ValueError(f"cost: expected a mapping, got {type(d).__name__}")
        known = {"input_per_mtok", "output_per_mtok", "relative", "unit", "source"}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"cost.{extra[0]}: unknown field (known: {', '.join(sorted(known))})")
        source = d.get("source")
        if source is not None and not isinstance(source, str):
            raise ValueError("cost.source: expected a string")
        if "relative" in d:
            if "input_per_mtok" in d or "output_per_mtok" in d or "unit" in d:
                raise ValueError("cost.relative: give either `relative` or prices with a unit, not both")
            r = _price(d["relative"], "cost.relative")
            return cls(r, r, RELATIVE, source)
        if "input_per_mtok" not in d or "output_per_mtok" not in d:
            raise ValueError("cost: give `relative`, or both `input_per_mtok` and `output_per_mtok`")
        unit = d.get("unit", "USD")
        if not isinstance(unit, str) or not unit or unit == RELATIVE:
            raise ValueError(f"cost.unit: expected a currency name, got {unit!r}")
        return cls(
            _price(d["input_per_mtok"], "cost.input_per_mtok"),
            _price(d["output_per_mtok"], "cost.output_per_mtok"),
            unit,
            source,
        )

    def to_dict(self) -> dict:
        d = {
            "input_per_mtok": self.input_per_mtok,
            "output_per_mtok": self.output_per_mtok,
            "unit": self.unit,
        }
        return d | ({"source": self.source} if self.source else {})


def _price(v, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{field}: expected a finite number >= 0, got {v!r}")
    return float(v)


def parse_costs(d: Mapping, experts: Sequence[str]) -> list[Cost]:
    """The costs of `experts` from {expert: cost mapping}; every expert needs one, all in one unit."""
    missing = [e for e in experts if e not in d]
    if missing:
        raise ValueError(f"{missing[0]}: no cost for this expert")
    out = []
    for e in experts:
        try:
            out.append(Cost.parse(d[e]))
        except ValueError as err:
            raise ValueError(f"{e}.{err}") from None
    common_unit(out, experts)
    return out


def common_unit(costs: Sequence[Cost], experts: Sequence[str] | None = None) -> str:
    units = {c.unit for c in costs}
    if len(units) > 1:
        names = experts or [str(j) for j in range(len(costs))]
        listed = ", ".join(f"{n}: {c.unit}" for n, c in zip(names, costs))
        raise ValueError(f"cost.unit: a pool's costs must share one unit, got {listed}")
    return units.pop() if units else RELATIVE


def expected_costs(costs: Sequence[Cost]) -> np.ndarray:
    """(m,) routing cost of one request per expert: the mean of its input and output prices."""
    return np.array([(c.input_per_mtok + c.output_per_mtok) / 2 for c in costs], dtype=np.float64)


def realised_costs(costs: Sequence[Cost], n_in: np.ndarray, n_out: np.ndarray) -> np.ndarray:
    """(n, m) cost of each recorded answer: its prompt and output tokens times the prices."""
    p_in = np.array([c.input_per_mtok for c in costs])
    p_out = np.array([c.output_per_mtok for c in costs])
    return (np.asarray(n_in, np.float64) * p_in + np.asarray(n_out, np.float64) * p_out) / 1e6


# --------------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class Objective:
    kind: str = "quality"
    value: float = 0.0

    def __post_init__(self):
        if self.kind not in OBJECTIVES:
            raise ValueError(f"objective: unknown {self.kind!r}; known: quality, tolerance=T, lambda=L")
        if not math.isfinite(self.value) or self.value < 0:
            raise ValueError(f"objective: {self.kind} needs a finite value >= 0, got {self.value!r}")

    @classmethod
    def parse(cls, text: str) -> Objective:
        kind, sep, value = str(text).strip().partition("=")
        if kind == "quality" and not sep:
            return cls()
        if kind not in ("tolerance", "lambda") or not sep:
            raise ValueError(f"objective: expected quality, tolerance=T or lambda=L, got {text!r}")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"objective: {kind} needs a number, got {value!r}") from None
        return cls(kind, v)

    @property
    def needs_costs(self) -> bool:
        return self.kind != "quality"

    def __str__(self) -> str:
        return self.kind if self.kind == "quality" else f"{self.kind}={self.value:g}"


def scaled(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    top = c.max() if c.size else 0.0
    return c / top if top > 0 else np.zeros_like(c)


def order(S: np.ndarray, c: np.ndarray | None, objective: Objective, seed: int = 0) -> np.ndarray:
    """(n, m) expert columns per row, first = the one to call (module doc). `c`: (m,) or (n, m)."""
    from .metrics import rank

    S = np.asarray(S, dtype=np.float64)
    if objective.kind == "quality":
        return rank(S, seed)
    if c is None:
        raise ValueError(f"objective {objective}: needs the experts' costs")
    c = np.broadcast_to(np.asarray(c, dtype=np.float64), S.shape)
    if objective.kind == "lambda":
        return rank(S - objective.value * scaled(c), seed)
    base = rank(S, seed)  # quality order with its seeded ties: the last key below
    pos = np.empty_like(base)
    np.put_along_axis(pos, base, np.arange(S.shape[1])[None, :].repeat(len(S), 0), axis=1)
    with np.errstate(invalid="ignore"):
        best = np.nanmax(np.where(np.isnan(S), -np.inf, S), axis=1, keepdims=True) if S.size else S
        eligible = S >= best - objective.value
    return np.lexsort((pos, np.where(eligible, c, 0.0), ~eligible), axis=1)


OBJECTIVE = (
    "ranking objective: quality (default: predicted score alone), tolerance=T (the cheapest expert "
    "within T of the best score first) or lambda=L (score - L * cost / max cost); see rgd.cost"
)
COSTS = (
    'JSON {EXPERT: {"input_per_mtok": P, "output_per_mtok": P, "unit": "USD"} or {"relative": R}} for '
    "every pool expert (needed by the tolerance and lambda objectives)"
)


def from_options(
    objective: str, costs: Mapping | None, experts: Sequence[str]
) -> tuple[Objective, np.ndarray | None]:
    """(Objective, (m,) expected costs or None) from `--objective` and `--costs`.

    Errors are one located line."""
    from .io import InputError

    try:
        obj = Objective.parse(objective)
    except ValueError as e:
        raise InputError("<command line>", None, "--objective", str(e).partition(": ")[2]) from None
    if costs is None:
        if obj.needs_costs:
            raise InputError(
                "<command line>", None, "--costs", f"missing: the objective {obj} needs every expert's cost"
            )
        return obj, None
    if not isinstance(costs, Mapping):
        raise InputError("<command line>", None, "--costs", "expected a JSON object {EXPERT: cost}")
    try:
        parsed = parse_costs(costs, experts)
    except ValueError as e:
        field, _, msg = str(e).partition(": ")
        raise InputError("<command line>", None, f"--costs: {field}", msg) from None
    return obj, expected_costs(parsed)


# --------------------------------------------------------------------------- evaluation
def auto_grid(S: np.ndarray, c: np.ndarray, kind: str, n_points: int = DEFAULT_GRID_POINTS) -> list[float]:
    """Objective values that span the trade-off on these scores: 0 (quality alone) up to a value at
    which the cheapest eligible expert always wins; in between, quantiles of the score gaps
    (tolerance) or of the score-per-cost breakpoints (lambda). Scores only: no keys are seen."""
    S = np.asarray(S, dtype=np.float64)
    finite = np.where(np.isfinite(S), S, np.nan)
    best = np.nanmax(finite, axis=1, keepdims=True) if S.size else np.zeros((0, 1))
    if kind == "tolerance":
        gaps = (best - finite)[np.isfinite(finite)]
        values = gaps[gaps > 0]
    elif kind == "lambda":
        cs = np.broadcast_to(scaled(c), S.shape)
        b = np.nanargmax(np.where(np.isfinite(S), S, -np.inf), axis=1) if S.size else np.zeros(0, int)
        rows = np.arange(len(S))
        dc = cs[rows, b][:, None] - cs
        ds = finite[rows, b][:, None] - finite
        ok = (dc > 0) & np.isfinite(ds)
        values = ds[ok] / dc[ok]
    else:
        raise ValueError(f"objective: no grid for {kind!r}")
    if values.size == 0:
        return [0.0]
    q = np.quantile(values, np.linspace(0, 1, max(2, n_points)))
    top = float(values.max()) * (1 + 1e-9) + 1e-12  # just past the last breakpoint
    return sorted({0.0, *map(float, q), top})


def _point(top: np.ndarray, correct: np.ndarray, realised: np.ndarray) -> tuple[float, float]:
    rows = np.arange(len(top))
    return float(correct[rows, top].mean()), float(realised[rows, top].mean())


def sweep(S, c, correct, realised, kind: str, grid: Sequence[float], seed: int = 0) -> list[dict]:
    """Top-1 accuracy and mean realised cost per question at each objective value of `grid`."""
    out = []
    for v in grid:
        top = order(S, c, Objective(kind, float(v)), seed)[:, 0]
        acc, cost = _point(top, correct, realised)
        out.append({"objective": kind, "value": float(v), "accuracy": acc, "cost": cost})
    return out


def pareto(points: Sequence[dict]) -> list[dict]:
    """The points no other point beats on both cost (lower) and accuracy (higher), cheapest first."""
    frontier, best = [], -math.inf
    for p in sorted(points, key=lambda p: (p["cost"], -p["accuracy"])):
        if p["accuracy"] > best:
            frontier.append(p)
            best = p["accuracy"]
    return frontier


def references(correct: np.ndarray, realised: np.ndarray, models: Sequence[str]) -> dict:
    """Best single model (on these test keys; ties to the cheaper), random model (mean over the pool)
    and oracle (the cheapest correct model when one is correct, else the cheapest model)."""
    correct = np.asarray(correct, dtype=bool)
    acc, cost = correct.mean(axis=0), realised.mean(axis=0)
    j = int(np.lexsort((cost, -acc))[0])
    some = correct.any(axis=1)
    oracle_cost = np.where(some, np.where(correct, realised, np.inf).min(axis=1), realised.min(axis=1))
    return {
        "best_single": {"model": models[j], "accuracy": float(acc[j]), "cost": float(cost[j])},
        "random": {"accuracy": float(acc.mean()), "cost": float(cost.mean())},
        "oracle": {"accuracy": float(some.mean()), "cost": float(oracle_cost.mean())},
        "models": {m: {"accuracy": float(a), "cost": float(x)} for m, a, x in zip(models, acc, cost)},
    }


def cost_to_match(frontier: Sequence[dict], accuracy: float) -> float | None:
    """The lowest cost on a frontier that reaches `accuracy`, or None."""
    hits = [p["cost"] for p in frontier if p["accuracy"] >= accuracy - 1e-12]
    return min(hits) if hits else None


def tradeoff(
    scores: Mapping[str, np.ndarray],
    route_costs: np.ndarray,
    correct: np.ndarray,
    realised: np.ndarray,
    models: Sequence[str],
    *,
    seed: int = 0,
    grids: Mapping[str, Sequence[float]] | None = None,
    n_points: int = DEFAULT_GRID_POINTS,
) -> dict:
    """The accuracy-cost evaluation of several routers on one test set.

    scores: router -> (n, m) predicted scores; route_costs: (m,) expected costs the objectives see;
    correct: (n, m) bool from the test keys; realised: (n, m) costs of the recorded answers.
    Each router is swept over both objectives (`grids`, else `auto_grid` of its own scores); its
    curve is the Pareto frontier of all its points. Reference points come from the same keys. The
    frontier picks objective values in hindsight (on these keys), so it is optimistic in the same way
    as the best single model chosen on the test set; a deployment fixes the value beforehand.
    """
    correct = np.asarray(correct, dtype=bool)
    realised = np.asarray(realised, dtype=np.float64)
    n, m = correct.shape
    if realised.shape != (n, m) or np.shape(route_costs) != (m,) or len(models) != m:
        raise ValueError(
            f"tradeoff: shapes differ: correct {correct.shape}, realised {realised.shape}, "
            f"route costs {np.shape(route_costs)}, {len(models)} models"
        )
    if n == 0:
        raise ValueError("tradeoff: no questions")
    refs = references(correct, realised, models)
    out = {
        "n_questions": n,
        "models": list(models),
        "route_costs": [float(x) for x in route_costs],
        "seed": seed,
        **refs,
        "routers": {},
    }
    for name in sorted(scores):
        S = np.asarray(scores[name], dtype=np.float64)
        if S.shape != (n, m):
            raise ValueError(f"tradeoff: {name}: scores {S.shape}, expected {(n, m)}")
        points = []
        for kind in ("tolerance", "lambda"):
            grid = (grids or {}).get(kind) or auto_grid(S, route_costs, kind, n_points)
            points += sweep(S, route_costs, correct, realised, kind, grid, seed)
        acc, cost = _point(order(S, None, Objective(), seed)[:, 0], correct, realised)
        front = pareto(points)
        out["routers"][name] = {
            "quality": {"accuracy": acc, "cost": cost},
            "points": points,
            "frontier": front,
            "cost_to_match_best_single": cost_to_match(front, refs["best_single"]["accuracy"]),
        }
    return out
