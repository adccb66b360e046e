"""The summary table: one row per (benchmark, pool, training source, router), plus reference rows.

Reference rows are properties of the test set and pool, not of a router: the best single
model *on the test set* (an upper bound for any fixed choice), the random-model expectation,
the oracle (some pool model is right) and the pool's majority vote.

After the table: one sentence per training source on CASCAL against the best single model,
judged only by the paired bootstrap CI already in each eval file (beats: the CI of Top-1 minus
best single lies above 0; trails: below 0; matches: it contains 0), with the share of the oracle
gap it closes; and, given the analysis files, the pool diagnostics (rgd.diagnostics) and their
warnings.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .io import write_text

COLUMNS = [
    "benchmark",
    "pool",
    "source",
    "router",
    "n",
    "top1",
    "top1_ci",
    "top3",
    "top3_ci",
    "gap_closed_top1",
    "top1_minus_best",
    "top1_over_seeds",
]


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _ci(pair) -> str:
    return "" if not pair or pair[0] is None else f"[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}]"


def _key(lab: dict) -> tuple:
    return tuple(lab[k] for k in ("benchmark", "pool", "source", "router"))


def _over_seeds(sp: dict | None) -> str:
    """'mean ± sd [min, max] (n seeds)' of a seed-spread file's Top-1, in percent."""
    if not sp:
        return ""
    t = sp["top1"]
    return (
        f"{100 * t['mean']:.1f} ± {100 * t['sd']:.1f} [{100 * t['min']:.1f}, {100 * t['max']:.1f}] "
        f"({len(sp['seeds'])} seeds)"
    )


def rows_from(evals: list[dict], seeds: dict | None = None) -> list[dict]:
    rows, refs = [], {}
    for e in evals:
        lab = e["labels"]
        ci = e.get("ci", {})
        paired = e.get("paired", {}).get("top1_vs_best_single", {})
        rows.append(
            {
                "benchmark": lab["benchmark"],
                "pool": lab["pool"],
                "source": lab["source"],
                "router": lab["router"],
                "n": e["n_questions"],
                "top1": _pct(e["top1"]),
                "top1_ci": _ci(ci.get("top1")),
                "top3": _pct(e["top3_vote"]),
                "top3_ci": _ci(ci.get("top3_vote")),
                "gap_closed_top1": "" if e.get("gap_closed_top1") is None else f"{e['gap_closed_top1']:.2f}",
                "top1_minus_best": _ci(paired.get("ci")) if paired else "",
                "top1_over_seeds": _over_seeds((seeds or {}).get(_key(lab))),
            }
        )
        key = (lab["benchmark"], lab["pool"])
        refs.setdefault(key, (e, ci))
    for (bench, pool), (e, ci) in refs.items():
        for name, field in (
            ("best-single@test (" + e["best_single_model"] + ")", "best_single"),
            ("random", "random"),
            ("pool-vote", "pool_vote"),
            ("oracle", "oracle"),
        ):
            rows.append(
                {
                    "benchmark": bench,
                    "pool": pool,
                    "source": "-",
                    "router": name,
                    "n": e["n_questions"],
                    "top1": _pct(e[field]),
                    "top1_ci": _ci(ci.get(field)),
                    "top3": "",
                    "top3_ci": "",
                    "gap_closed_top1": "",
                    "top1_minus_best": "",
                    "top1_over_seeds": "",
                }
            )
    return sorted(
        rows, key=lambda r: (r["benchmark"], r["pool"], r["source"] == "-", r["source"], r["router"])
    )


def markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |\n" for r in rows)


HEADLINE = "cascal"


def _signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def verdict(e: dict) -> str:
    """'beats', 'matches' or 'trails': where the paired CI of (Top-1 - best single) lies against 0."""
    lo, hi = e.get("paired", {}).get("top1_vs_best_single", {}).get("ci") or [None, None]
    if lo is None or hi is None:
        return "undefined"
    return "beats" if lo > 0 else "trails" if hi < 0 else "matches"


def seed_note(e: dict, sp: dict | None) -> str:
    """Whether the best single model lies inside the router's Top-1 range over seeds."""
    if not sp:
        return ""
    t, best = sp["top1"], e["best_single"]
    inside = t["min"] <= best <= t["max"]
    return (
        f" Over {len(sp['seeds'])} training seeds its Top-1 is {_pct(t['mean'])}% ± {_pct(t['sd'])} "
        f"(range {_pct(t['min'])}-{_pct(t['max'])}%): the best single model's {_pct(best)}% lies "
        + ("inside that seed spread, so the seed alone can move the verdict." if inside else "outside it.")
    )


def sentence(e: dict, sp: dict | None = None) -> str:
    """The honest one-sentence reading of one router's eval file against the best single model."""
    lab = e["labels"]
    name = "CASCAL" if lab["router"] == HEADLINE else lab["router"]
    p = e["paired"]["top1_vs_best_single"]
    v = verdict(e)
    source = "the real training split" if lab["source"] == "train" else lab["source"]
    head = (
        f"{lab['benchmark']} / {lab['pool']}, trained on {source}: {name} (Top-1 {_pct(e['top1'])}%) "
        f"{v if v != 'undefined' else 'cannot be compared with'} the best single model on the test set "
        f"({e['best_single_model']}, {_pct(e['best_single'])}%, an optimistic baseline chosen on the "
        f"{e['n_questions']} test questions themselves)"
    )
    if v == "undefined":
        return head + ": the paired bootstrap interval is undefined." + seed_note(e, sp)
    lo, hi = p["ci"]
    ci = f"paired 95% CI of Top-1 minus best single [{_signed(lo)}, {_signed(hi)}] points"
    head += (
        f": {ci}, which contains 0."
        if v == "matches"
        else f": {ci}, entirely {'above' if v == 'beats' else 'below'} 0."
    )
    g, gci = e.get("gap_closed_top1"), (e.get("ci", {}).get("gap_closed_top1") or [None, None])
    head += seed_note(e, sp)
    if g is None:
        return (
            head
            + " The oracle is no better than the best single model here: there is no oracle gap to close."
        )
    gci_txt = "" if gci[0] is None else f", 95% CI [{100 * gci[0]:.0f}%, {100 * gci[1]:.0f}%]"
    # the share is reported, never read as progress: its CI says whether it differs from 0
    return head + (
        f" Share of the gap from the best single model to the oracle that it closes: {100 * g:.0f}%"
        f"{gci_txt} (0% = the best single model, 100% = the oracle, below 0 = worse than the best single "
        "model)."
    )


def verdicts(evals: list[dict], seeds: dict | None = None) -> list[str]:
    """One sentence per (benchmark, pool, training source) for the headline router, sorted."""
    heads = [e for e in evals if e["labels"]["router"] == HEADLINE]
    heads.sort(
        key=lambda e: (
            e["labels"]["benchmark"],
            e["labels"]["pool"],
            e["labels"]["source"] != "train",
            e["labels"]["source"],
        )
    )
    return [sentence(e, (seeds or {}).get(_key(e["labels"]))) for e in heads]


def estimators_text(files: list[dict]) -> str:
    """The estimator comparison as Markdown (the report's `estimators` table)."""
    from .report.tables import estimators_table

    return estimators_table(files).markdown()


def _k(x) -> str:
    from .report.tables import num

    return "n/a" if x is None else num(x, 2)


def diagnostics_text(analysis: dict) -> str:
    """The pool diagnostics of one analysis file as Markdown: letters, kappas, warnings, ranking."""
    from .diagnostics import Thresholds, warning_lines

    d, lab = analysis["diagnostics"], analysis.get("labels", {})
    out = [
        f"### Pool diagnostics: {lab.get('benchmark', '?')} / {lab.get('pool', '?')}",
        "",
        f"Label-free: the experts' chosen letters on the {d['n_questions']} real training questions "
        f"(% of each expert's answers). Fleiss' kappa of the pool: {_k(d['fleiss_kappa'])}.",
        "",
        *_diagnostics_tables(d),
    ]
    thresholds = Thresholds(**d["thresholds"])
    if d["warnings"]:
        out.append("Warnings: consensus may not rank these experts by skill.")
        out += [f"- {line}" for line in warning_lines(d["warnings"], thresholds)]
    else:
        out.append("No warning: nothing in the pool's agreement pattern argues against its consensus.")
    out += ["", "Thresholds: " + "; ".join(thresholds.describe()) + "."]
    r = analysis.get("consensus_ranking")
    if r:
        per = ", ".join(f"{s} {_k(v)}" for s, v in zip(r["subjects"], r["spearman"]))
        same = sum(r.get("same_best_model", []))
        out += [
            "",
            f"After the fact, against the keys: Spearman correlation between the experts' mean consensus "
            f"and their accuracy, per subject: {per}; question-weighted mean {_k(r['mean_spearman'])} "
            f"(Kendall {_k(r['mean_kendall'])}); over all questions {_k(r['overall']['spearman'])}. "
            f"Consensus names the keys' best expert in {same} of {len(r['subjects'])} subjects.",
        ]
    return "\n".join(out) + "\n"


def _diagnostics_tables(d: dict) -> list[str]:
    """The per-expert letter table and the pairwise agreement table, as Markdown."""
    letters = list(next(iter(d["per_expert"].values()))["shares"]) if d["per_expert"] else []
    cols = ["expert", "answered", "abstained"] + letters + ["top letter", "mean kappa with the others"]
    rows = [
        [e, str(v["answered"]), str(v["abstained"])]
        + [_pct(v["shares"][x]) for x in letters]
        + [
            f"{v['top_letter']} {_pct(v['top_share'])}%" if v["top_letter"] else "",
            _k(v["mean_kappa_with_rest"]),
        ]
        for e, v in ((e, d["per_expert"][e]) for e in d["experts"])
    ]
    pair_cols = [
        "pair",
        "questions",
        "agreement",
        "above the rest (points)",
        "Cohen's kappa",
        "kappa above the rest",
    ]
    pair_rows = [
        [
            " / ".join(p["experts"]),
            str(p["n"]),
            _pct(p["agreement"]),
            _points(p["agreement_excess"]),
            _k(p["kappa"]),
            _k(p["kappa_excess"]),
        ]
        for p in d["pairs"]
    ]
    return [_md_table(cols, rows), _md_table(pair_cols, pair_rows)]


def _points(x) -> str:
    from .report.tables import signed

    return "n/a" if x is None else signed(100 * x)


def _md_table(cols: list[str], rows: list[list[str]]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(r) + " |\n" for r in rows)


def _read_analyses(paths: list[Path]) -> list[dict]:
    from .report.files import read_analysis

    out = [read_analysis(p) for p in paths]
    return sorted(out, key=lambda a: (a["labels"]["benchmark"], a["labels"]["pool"]))


def summarise(
    eval_paths: list[Path],
    out_csv: Path,
    out_md: Path,
    analyses: list[Path] | None = None,
    seeds: list[Path] | None = None,
    estimators: list[Path] | None = None,
) -> str:
    """Write the summary table (CSV, Markdown); the Markdown adds the verdicts, the estimator
    comparison and the diagnostics."""
    from .io import read_json
    from .report.files import read_eval

    evals = [read_eval(p) for p in sorted(eval_paths)]
    analyses = _read_analyses(analyses or [])  # every input checked before anything is written
    spreads = {_key(sp["labels"]): sp for sp in (read_json(p) for p in seeds or [])}
    compared = sorted(
        (read_json(p) for p in estimators or []),
        key=lambda f: (f["labels"]["benchmark"], f["labels"]["pool"]),
    )
    rows = rows_from(evals, spreads)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    md = (
        "Accuracy in percent; CIs are seeded 95% bootstrap intervals; `top1_minus_best` is the paired "
        "bootstrap CI of (router Top-1 - best single model on the test set).\n\n" + markdown(rows)
    )
    said = verdicts(evals, spreads)
    if said:
        md += "\n## CASCAL against the best single model\n\n" + "".join(f"- {t}\n" for t in said)
    if compared:
        md += "\n## Label-free skill estimators\n\n" + estimators_text(compared)
    if analyses:
        md += "\n## Pool diagnostics\n\n" + "\n".join(diagnostics_text(a) for a in analyses)
    write_text(out_csv, buf.getvalue())
    write_text(out_md, md)
    return md
