"""The summary table: one row per (benchmark, pool, training source, router), plus reference rows.

Reference rows are properties of the test set and pool, not of a router: the best single
model *on the test set* (an upper bound for any fixed choice), the random-model expectation,
the oracle (some pool model is right) and the pool's majority vote.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .io import write_text

COLUMNS = ["benchmark", "pool", "source", "router", "n", "top1", "top1_ci", "top3", "top3_ci",
           "gap_closed_top1", "top1_minus_best"]


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _ci(pair) -> str:
    return "" if not pair or pair[0] is None else f"[{100 * pair[0]:.1f}, {100 * pair[1]:.1f}]"


def rows_from(evals: list[dict]) -> list[dict]:
    rows, refs = [], {}
    for e in evals:
        lab = e["labels"]
        ci = e.get("ci", {})
        paired = e.get("paired", {}).get("top1_vs_best_single", {})
        rows.append({
            "benchmark": lab["benchmark"], "pool": lab["pool"], "source": lab["source"], "router": lab["router"],
            "n": e["n_questions"], "top1": _pct(e["top1"]), "top1_ci": _ci(ci.get("top1")),
            "top3": _pct(e["top3_vote"]), "top3_ci": _ci(ci.get("top3_vote")),
            "gap_closed_top1": "" if e.get("gap_closed_top1") is None else f"{e['gap_closed_top1']:.2f}",
            "top1_minus_best": _ci(paired.get("ci")) if paired else "",
        })
        key = (lab["benchmark"], lab["pool"])
        refs.setdefault(key, (e, ci))
    for (bench, pool), (e, ci) in refs.items():
        for name, field in (("best-single@test (" + e["best_single_model"] + ")", "best_single"),
                            ("random", "random"), ("pool-vote", "pool_vote"), ("oracle", "oracle")):
            rows.append({"benchmark": bench, "pool": pool, "source": "-", "router": name, "n": e["n_questions"],
                         "top1": _pct(e[field]), "top1_ci": _ci(ci.get(field)), "top3": "", "top3_ci": "",
                         "gap_closed_top1": "", "top1_minus_best": ""})
    return sorted(rows, key=lambda r: (r["benchmark"], r["pool"], r["source"] == "-", r["source"], r["router"]))


def markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |\n" for r in rows)


def summarize(eval_paths: list[Path], out_csv: Path, out_md: Path) -> str:
    from .report.files import read_eval

    rows = rows_from([read_eval(p) for p in sorted(eval_paths)])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(out_csv, buf.getvalue())
    md = ("Accuracy in percent; CIs are seeded 95% bootstrap intervals; `top1_minus_best` is the paired "
          "bootstrap CI of (router Top-1 - best single model on the test set).\n\n" + markdown(rows))
    write_text(out_md, md)
    return md
