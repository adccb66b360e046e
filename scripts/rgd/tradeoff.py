"""The accuracy-cost evaluation (rgd.cost.tradeoff) as files and `rgd` subcommands.

  rgd tradeoff         one (benchmark, pool, training source): every router's sweep of both objectives,
                       its Pareto frontier, best single / random / oracle points, from the test keys
  rgd tradeoff-report  --figure: the accuracy-cost figure of one (benchmark, pool), a panel per training
                       source; --tables-dir: every router's cost to match the best single model
                       (cost.md, cost.csv, cost.tex)

Costs in the files are per question in the pool's unit (rgd.cost); figure and table show them per
1,000 questions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .io import InputError, read_json, read_jsonl, write_json

PER = 1000  # figure and table: cost per 1,000 questions


def load_test(questions, keys, responses: dict[str, str]):
    """(ids, correct (n, m) bool, prompt tokens (n, m), output tokens (n, m)) of the test set."""
    from .records import read_keys, read_questions, read_responses

    qs = read_questions(questions)
    ids = [q.id for q in qs]
    gold = read_keys(keys, qs)
    qi = {q: i for i, q in enumerate(ids)}
    n, m = len(ids), len(responses)
    correct = np.zeros((n, m), dtype=bool)
    n_in, n_out = np.zeros((n, m)), np.zeros((n, m))
    seen = np.zeros((n, m), dtype=bool)
    for j, (e, path) in enumerate(responses.items()):
        for r in read_responses(path):
            i = qi.get(r["id"])
            if i is None:
                continue
            seen[i, j] = True
            correct[i, j] = r["choice"] is not None and r["choice"] == gold[r["id"]]
            n_in[i, j], n_out[i, j] = r.get("n_prompt_tokens") or 0, r.get("n_output_tokens") or 0
        if not seen[:, j].all():
            missing = [ids[i] for i in np.flatnonzero(~seen[:, j])[:3]]
            raise InputError(
                path,
                None,
                "id",
                f"no response of {e} for {int((~seen[:, j]).sum())} test questions, e.g. {missing}",
            )
    return ids, correct, n_in, n_out


def route_scores(path, ids: list[str], experts: list[str]) -> np.ndarray:
    rows = {r["id"]: r for r in read_jsonl(path)}
    missing = [q for q in ids if q not in rows]
    if missing:
        raise InputError(path, None, "id", f"no route for {len(missing)} questions, e.g. {missing[:3]}")
    try:
        return np.array([[rows[q]["scores"][e] for e in experts] for q in ids], dtype=np.float64)
    except (KeyError, TypeError) as e:
        raise InputError(path, None, "scores", f"no score for expert {e}") from None


def run(
    routes: dict[str, str],
    questions,
    keys,
    responses: dict[str, str],
    costs: dict,
    labels: dict,
    seed: int = 0,
    n_points: int = 25,
) -> dict:
    from . import cost

    experts = list(responses)
    try:
        parsed = cost.parse_costs(costs or {}, experts)
    except ValueError as e:
        field, _, msg = str(e).partition(": ")
        raise InputError("<command line>", None, f"--costs: {field}", msg) from None
    if not routes:
        raise InputError("<command line>", None, "--routes", "no router")
    ids, correct, n_in, n_out = load_test(questions, keys, responses)
    if not ids:
        raise InputError(questions, None, None, "no test questions")
    scores = {name: route_scores(p, ids, experts) for name, p in routes.items()}
    out = cost.tradeoff(
        scores,
        cost.expected_costs(parsed),
        correct,
        cost.realised_costs(parsed, n_in, n_out),
        experts,
        seed=seed,
        n_points=n_points,
    )
    return {
        "labels": labels,
        "unit": cost.common_unit(parsed, experts),
        "costs": {e: c.to_dict() for e, c in zip(experts, parsed)},
        **out,
    }


# --------------------------------------------------------------------------- figure and table
def _fmt(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{x:.4g}"


def figure(tradeoffs: list[dict], path) -> None:
    """Accuracy against cost per 1,000 questions; one panel per training source of one (benchmark, pool)."""
    from .report.figures import RC, _colors, plt, save
    from .report.tables import router_key, source_order

    by_source = {t["labels"].get("source", ""): t for t in tradeoffs}
    sources = source_order(sorted(by_source)) + sorted(
        s for s in by_source if s not in source_order(sorted(by_source))
    )
    routers = sorted({r for t in tradeoffs for r in t["routers"]}, key=router_key)
    colors = _colors(routers)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(
            1, len(sources), figsize=(4.2 * len(sources), 3.4), squeeze=False, sharey=True
        )
        for ax, src in zip(axes[0], sources):
            _panel(ax, by_source[src], src, routers, colors)
        axes[0][0].set_ylabel("Top-1 accuracy")
        lab = tradeoffs[0]["labels"]
        fig.suptitle(
            f"{lab.get('benchmark', '')} / {lab.get('pool', '')}: accuracy against cost "
            "(lines: Pareto frontiers; circles: quality-only routing; grey: single models)",
            fontsize=8,
        )
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=min(6, len(names)), bbox_to_anchor=(0.5, -0.12))
        save(fig, path)


def _panel(ax, t: dict, src: str, routers: list[str], colors: dict) -> None:
    """One training source: each router's frontier and quality point, the single models, the oracle."""
    xs = [PER * v["cost"] for v in t["models"].values()] + [PER * t["oracle"]["cost"]]
    lo, hi = min(xs), max(xs)
    for name in routers:
        if name not in t["routers"]:
            continue
        front = t["routers"][name]["frontier"]
        ax.step(
            [PER * p["cost"] for p in front],
            [p["accuracy"] for p in front],
            where="post",
            color=colors[name],
            marker=".",
            ms=3,
            lw=1.2,
            label=name,
        )
        q = t["routers"][name]["quality"]
        ax.plot([PER * q["cost"]], [q["accuracy"]], "o", mfc="none", color=colors[name], ms=6)
    for m, v in t["models"].items():
        ax.plot([PER * v["cost"]], [v["accuracy"]], ".", color="0.6", ms=5)
    b, r, o = t["best_single"], t["random"], t["oracle"]
    ax.plot(
        [PER * b["cost"]],
        [b["accuracy"]],
        "*",
        color="black",
        ms=9,
        label=f"best single ({b['model']})",
    )
    ax.plot([PER * r["cost"]], [r["accuracy"]], "x", color="black", ms=6, label="random model")
    ax.plot([PER * o["cost"]], [o["accuracy"]], "D", color="black", mfc="none", ms=5, label="oracle")
    ax.axhline(b["accuracy"], color="black", lw=0.5, ls=":")
    if lo > 0 and hi / lo > 10:
        ax.set_xscale("log")
    ax.set_title(f"trained on {src}")
    ax.set_xlabel(f"cost per {PER:,} questions ({t['unit']})")


def table(tradeoffs: list[dict]):
    from .report.tables import Table

    t = Table(
        "cost",
        "Accuracy-cost trade-off: each router's Top-1 with quality-only routing and the lowest cost "
        f"on its frontier that matches the best single model (cost per {PER:,} test questions; empty: never; "
        "the frontier and the best single model are both read off the test keys).",
        [
            "benchmark",
            "pool",
            "source",
            "router",
            "unit",
            "top-1 (quality)",
            "cost (quality)",
            "cost to match best single",
            "best single",
            "best single top-1",
            "best single cost",
            "match / best single cost",
            "oracle top-1",
            "oracle cost",
        ],
    )
    rows = [_row(d, name, r) for d in tradeoffs for name, r in d["routers"].items()]
    t.rows = [r for _, r in sorted(rows)]
    return t


def _row(d: dict, name: str, r: dict) -> tuple:
    """(sort key, cells) of one router in one trade-off."""
    from .report.tables import pct, router_key

    lab, b, o = d["labels"], d["best_single"], d["oracle"]
    bench, pool, src = lab.get("benchmark", ""), lab.get("pool", ""), lab.get("source", "")
    match = r["cost_to_match_best_single"]
    ratio = match / b["cost"] if match is not None and b["cost"] > 0 else None
    cells = [
        bench,
        pool,
        src,
        name,
        d["unit"],
        pct(r["quality"]["accuracy"]),
        _fmt(PER * r["quality"]["cost"]),
        _fmt(None if match is None else PER * match),
        b["model"],
        pct(b["accuracy"]),
        _fmt(PER * b["cost"]),
        "" if ratio is None else f"{ratio:.2f}",
        pct(o["accuracy"]),
        _fmt(PER * o["cost"]),
    ]
    return (bench, pool, src != "train", src, router_key(name)), cells


# --------------------------------------------------------------------------- commands
def cmd_tradeoff(a):
    labels = dict(zip(("benchmark", "pool", "source"), a.labels.split("/"))) if a.labels else {}
    out = run(a.routes, a.questions, a.keys, a.responses, a.costs, labels, a.seed, a.grid_points)
    write_json(a.out, out)
    for name, r in out["routers"].items():
        match = r["cost_to_match_best_single"]
        print(
            f"{name}: top-1 {r['quality']['accuracy']:.3f} at cost {PER * r['quality']['cost']:.4g}/{PER} q; "
            f"matches best single ({out['best_single']['accuracy']:.3f} at "
            f"{PER * out['best_single']['cost']:.4g}) "
            f"{'at ' + format(PER * match, '.4g') if match is not None else 'never'}"
        )


def _read_all(paths) -> list[dict]:
    out = []
    for p in sorted(paths):
        d = read_json(p)
        if not isinstance(d, dict) or not all(
            k in d for k in ("routers", "best_single", "random", "oracle", "models", "labels", "unit")
        ):
            raise InputError(p, None, None, "not an `rgd tradeoff` file")
        out.append(d)
    return out


def cmd_tradeoff_report(a):
    if not a.figure and not a.tables_dir:
        raise InputError("<command line>", None, "--figure", "give --figure, --tables-dir or both")
    data = _read_all(a.tradeoffs)
    if a.figure:
        pairs = {(d["labels"].get("benchmark"), d["labels"].get("pool")) for d in data}
        if len(pairs) > 1:
            raise InputError(
                "<command line>",
                None,
                "--tradeoffs",
                f"--figure draws one (benchmark, pool), got "
                f"{', '.join(f'{b}/{p}' for b, p in sorted(pairs, key=str))}",
            )
        figure(data, Path(a.figure))
        print(f"figure {a.figure}")
    if a.tables_dir:
        t = table(data)
        t.write(a.tables_dir)
        print(f"{t.name} ({len(t.rows)} rows) in {a.tables_dir}")


def register(add) -> None:
    """Add the subcommands with rgd.cli's `add(name, fn, help)`."""
    from .args import IN, OUT, OUT_DIR, PAIRS, count, json_object
    from .cost import COSTS

    s = add(
        "tradeoff", cmd_tradeoff, "accuracy against cost of every router of one (benchmark, pool, source)"
    )
    s.add_argument(
        "--routes",
        nargs="+",
        required=True,
        path=PAIRS,
        metavar="ROUTER=FILE",
        help="`rgd route` outputs (quality scores) of the real test set",
    )
    s.add_argument("--questions", required=True, path=IN, help="the test questions")
    s.add_argument("--keys", required=True, path=IN, help="the test keys")
    s.add_argument(
        "--responses",
        nargs="+",
        required=True,
        path=PAIRS,
        metavar="EXPERT=FILE",
        help="every pool expert's test responses (choices and token counts), in pool order",
    )
    s.add_argument("--costs", type=json_object, required=True, help=COSTS)
    s.add_argument("--labels", help="BENCH/POOL/SOURCE, copied into the output")
    s.add_argument("--seed", type=int, default=0, help="seed of the ranking tie-break (default %(default)s)")
    s.add_argument(
        "--grid-points", type=count(2), default=25, help="objective values per sweep (default %(default)s)"
    )
    s.add_argument("--out", required=True, path=OUT, help="the JSON file to write")

    s = add(
        "tradeoff-report",
        cmd_tradeoff_report,
        "the accuracy-cost figure of one (benchmark, pool) and the "
        "table of each router's cost to match the best single model",
    )
    s.add_argument("--tradeoffs", nargs="+", required=True, path=IN, help="`rgd tradeoff` files")
    s.add_argument("--figure", path=OUT, help="the SVG to write (the files of one benchmark and pool)")
    s.add_argument("--tables-dir", path=OUT_DIR, help="where cost.md, cost.csv and cost.tex are written")
