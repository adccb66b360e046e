"""Paper-style tables, each written as Markdown, CSV and LaTeX (booktabs) with the same cells.

Accuracies are percentages with one decimal; an empty cell means "not defined" (e.g. an AUROC
when a model is always right). Rows are sorted, so equal inputs give equal bytes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..io import write_text

QUERY_ONLY = ("cascal",)
ROUTER_ORDER = ("cascal", "cascal-gt", "knn", "mlp", "mf", "best-single")


@dataclass
class Table:
    name: str
    caption: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> str:
        esc = [[c.replace("|", "\\|") for c in r] for r in [self.columns] + self.rows]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
        return f"{self.caption}\n\n" + "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        w.writerows(self.rows)
        return buf.getvalue()

    def latex(self) -> str:
        align = "".join("r" if _numeric_col(c, self) else "l" for c in self.columns)
        body = [" & ".join(latex_escape(c) for c in self.columns) + r" \\", r"\midrule"]
        body += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in self.rows]
        return (
            "\n".join(
                [
                    r"\begin{table}[t]",
                    r"\centering",
                    r"\small",
                    rf"\caption{{{latex_escape(self.caption)}}}",
                    rf"\label{{tab:rgd-{self.name}}}",
                    rf"\begin{{tabular}}{{{align}}}",
                    r"\toprule",
                    *body,
                    r"\bottomrule",
                    r"\end{tabular}",
                    r"\end{table}",
                ]
            )
            + "\n"
        )

    def write(self, directory: str | Path) -> list[Path]:
        d = Path(directory)
        paths = [d / f"{self.name}.md", d / f"{self.name}.csv", d / f"{self.name}.tex"]
        for p, text in zip(paths, (self.markdown(), self.csv(), self.latex())):
            write_text(p, text)
        return paths


def _numeric_col(col: str, t: Table) -> bool:
    i = t.columns.index(col)
    vals = [r[i] for r in t.rows if r[i]]
    return bool(vals) and all(_is_number(v.split(" ")[0]) for v in vals)


def _is_number(s: str) -> bool:
    try:
        float(s.replace("±", ""))
        return True
    except ValueError:
        return False


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def pct(x) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def num(x, digits: int = 3) -> str:
    if x is None:
        return ""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def signed(x, digits: int = 1) -> str:
    text = num(x, digits)
    return text if not text or text.startswith("-") or float(text) == 0 else "+" + text


def pm(mean, std) -> str:
    return "" if mean is None else f"{100 * mean:.1f} ± {100 * std:.1f}"


def source_order(sources: list[str], quality: dict[str, float | None] | None = None) -> list[str]:
    """The real training split first, then generated sets by decreasing quality (then by name)."""
    q = quality or {}
    gen = sorted((s for s in sources if s != "train"), key=lambda s: (-(q.get(s) or 0.0), s))
    return (["train"] if "train" in sources else []) + gen


def _source_first(item) -> tuple:
    """(bench, pool, source) keys: the real training split before the generated sets."""
    bench, pool, source = item[0]
    return (bench, pool, source != "train", source)


def router_key(name: str) -> tuple:
    return (ROUTER_ORDER.index(name) if name in ROUTER_ORDER else len(ROUTER_ORDER), name)


# --------------------------------------------------------------------------- the tables
def main_table(
    evals: list[dict], quality: dict[tuple[str, str], dict[str, float | None]] | None = None
) -> Table:
    """Routers x training sources, Top-1 and Top-3 (the paper's main comparison), per benchmark and pool.

    `quality[(bench, pool)][source]` orders the generated sources (best generator first).
    """
    by_bp: dict[tuple[str, str], dict] = {}
    for e in evals:
        lab = e["labels"]
        by_bp.setdefault((lab["benchmark"], lab["pool"]), {})[(lab["source"], lab["router"])] = e
    all_sources = sorted({s for d in by_bp.values() for s, _ in d})
    q0 = next(iter((quality or {}).values()), {})
    order = source_order(all_sources, q0)
    cols = ["benchmark", "pool", "router", "type"] + [f"{s} {m}" for s in order for m in ("Top-1", "Top-3")]
    t = Table(
        "main",
        "Routing accuracy (%) on the real test set by training source: the real training split, "
        "then generated sets from the best to the weakest generator. Reference rows do not depend on "
        "the training source.",
        cols,
    )
    for (bench, pool), d in sorted(by_bp.items()):
        for router in sorted({r for _, r in d}, key=router_key):
            kind = "query-only" if router in QUERY_ONLY else "query-answer"
            cells = []
            for s in order:
                e = d.get((s, router))
                cells += [pct(e["top1"]), pct(e["top3_vote"])] if e else ["", ""]
            t.rows.append([bench, pool, router, kind] + cells)
        ref = next(iter(d.values()))
        for name, field_ in (
            ("best single (test)", "best_single"),
            ("random model", "random"),
            ("pool vote", "pool_vote"),
            ("oracle", "oracle"),
        ):
            label = name + (f": {ref['best_single_model']}" if field_ == "best_single" else "")
            t.rows.append([bench, pool, label, "reference"] + [pct(ref[field_]), ""] * len(order))
    return t


def generators_table(analyses: dict[tuple[str, str], dict]) -> Table:
    cols = [
        "benchmark",
        "pool",
        "source",
        "questions",
        "acceptance",
        "consensus = key",
        "key agreement",
        "differentiation",
    ]
    t = Table(
        "generators",
        "Training sources and the paper's generator properties, measured with the pool: "
        "acceptance rate of generated questions, share of questions whose consensus answer equals the "
        "generator's key, mean share of pool models choosing the key, and share of questions on which "
        "the pool disagrees (all in %).",
        cols,
    )
    for (bench, pool), a in sorted(analyses.items()):
        q = {s: p.get("consensus_key_match") for s, p in a["sources"].items()}
        for s in source_order(list(a["sources"]), q):
            p = a["sources"][s]
            t.rows.append(
                [
                    bench,
                    pool,
                    s,
                    str(p["n_questions"]),
                    pct(p.get("acceptance_rate")),
                    pct(p["consensus_key_match"]),
                    pct(p["key_agreement"]),
                    pct(p["differentiation"]),
                ]
            )
    return t


def calibration_table(analyses: dict[tuple[str, str], dict]) -> Table:
    cols = [
        "benchmark",
        "pool",
        "model",
        "answered",
        "abstained",
        "accuracy",
        "mean consensus",
        "AUROC",
        "ECE",
    ]
    t = Table(
        "calibration",
        "Consensus scores against true correctness on the real training split: accuracy "
        "and mean consensus score (%), AUROC of the consensus score for telling right from wrong "
        "answers, expected calibration error.",
        cols,
    )
    for (bench, pool), a in sorted(analyses.items()):
        cal = a["calibration"]
        for name, c in list(cal["experts"].items()) + [("all models", cal["pooled"])]:
            t.rows.append(
                [
                    bench,
                    pool,
                    name,
                    str(c["n"]),
                    str(c.get("n_abstained", "")),
                    pct(c["accuracy"]),
                    pct(c["mean_score"]),
                    num(c["auroc"]),
                    num(c["ece"]),
                ]
            )
    return t


def scaling_table(scaling: dict[tuple[str, str, str], dict]) -> Table:
    cols = ["benchmark", "pool", "source", "fraction", "questions", "seeds", "Top-1", "Top-3"]
    t = Table(
        "scaling",
        "CASCAL accuracy (%, mean ± population std over seeds) against the number of training "
        "questions (category-balanced subsamples of each training source).",
        cols,
    )
    for (bench, pool, source), sc in sorted(scaling.items(), key=_source_first):
        for row in sc["summary"]:
            t.rows.append(
                [
                    bench,
                    pool,
                    source,
                    f"{row['fraction']:g}",
                    f"{row['n_train']:g}",
                    str(row["n_seeds"]),
                    pm(row["top1_mean"], row["top1_std"]),
                    pm(row["top3_vote_mean"], row["top3_vote_std"]),
                ]
            )
    return t


def cluster_niches(router_json: dict) -> dict:
    """Per expert: clusters it ranks first, and the training questions assigned to them."""
    experts = router_json["experts"]
    out = {e: {"clusters": 0, "questions": 0} for e in experts}
    for c in router_json["clusters"]:
        top = c["ranking"][0][0] if c["ranking"] else None
        if top in out:
            out[top]["clusters"] += 1
            out[top]["questions"] += int(c["assigned"])
    return out


def clusters_table(routers: dict[tuple[str, str, str], dict]) -> Table:
    cols = ["benchmark", "pool", "source", "model", "clusters ranked first", "questions in them", "share"]
    t = Table(
        "clusters",
        "CASCAL niches: for each training source, the clusters in which each model is ranked "
        "first and the training questions assigned to them (share in %).",
        cols,
    )
    for (bench, pool, source), r in sorted(routers.items(), key=_source_first):
        niches = cluster_niches(r)
        total = sum(v["questions"] for v in niches.values()) or 1
        for e in r["experts"]:
            v = niches[e]
            t.rows.append(
                [bench, pool, source, e, str(v["clusters"]), str(v["questions"]), pct(v["questions"] / total)]
            )
    return t


# --------------------------------------------------------------------------- pool diagnostics
def _thresholds(analyses: dict[tuple[str, str], dict]):
    from ..diagnostics import THRESHOLDS, Thresholds

    for a in analyses.values():
        return Thresholds(**a["diagnostics"]["thresholds"])
    return THRESHOLDS


def _flags(diag: dict) -> dict[str, list[str]]:
    """Per expert, the warnings that name it ("twins with X", "chance", "letter bias")."""
    out: dict[str, list[str]] = {e: [] for e in diag["experts"]}
    for w in diag["warnings"]:
        names = w["experts"]
        for e in names:
            if w["kind"] == "twins":
                out[e].append("twins with " + next(x for x in names if x != e))
            else:
                out[e].append(w["kind"].replace("-", " "))
    return out


def diagnostics_table(analyses: dict[tuple[str, str], dict]) -> Table:
    """Label-free, per expert: letter shares, abstentions, mean kappa with the others, warnings."""
    letters = sorted(
        {x for a in analyses.values() for v in a["diagnostics"]["per_expert"].values() for x in v["shares"]}
    )
    cols = (
        ["benchmark", "pool", "expert", "answered", "abstained"]
        + letters
        + ["top letter share", "mean kappa with the others", "warnings"]
    )
    t = Table(
        "diagnostics",
        "Label-free pool diagnostics on the real training split: the share (%) of each "
        "expert's answers per letter, its abstentions, its mean Cohen's kappa with the other experts, and "
        "the warnings that argue against trusting consensus; the pool row gives Fleiss' kappa. Warnings: "
        + "; ".join(_thresholds(analyses).describe())
        + ".",
        cols,
    )
    for (bench, pool), a in sorted(analyses.items()):
        d = a["diagnostics"]
        flags = _flags(d)
        for e, v in ((e, d["per_expert"][e]) for e in d["experts"]):  # pool order
            t.rows.append(
                [bench, pool, e, str(v["answered"]), str(v["abstained"])]
                + [pct(v["shares"].get(x)) for x in letters]
                + [
                    f"{v['top_letter']} {pct(v['top_share'])}" if v["top_letter"] else "",
                    num(v["mean_kappa_with_rest"], 2),
                    "; ".join(flags[e]),
                ]
            )
        pool_flags = [w["kind"].replace("-", " ") for w in d["warnings"] if not w["experts"]]
        t.rows.append(
            [bench, pool, "pool (Fleiss' kappa)", str(d["n_questions"]), ""]
            + [""] * len(letters)
            + ["", num(d["fleiss_kappa"], 2), "; ".join(pool_flags)]
        )
    return t


def agreement_table(analyses: dict[tuple[str, str], dict]) -> Table:
    cols = [
        "benchmark",
        "pool",
        "expert pair",
        "questions",
        "agreement",
        "agreement above the rest",
        "Cohen's kappa",
        "kappa above the rest",
    ]
    t = Table(
        "agreement",
        "Pairwise agreement on the real training split (label-free): questions both experts "
        "answered, raw agreement (%), Cohen's kappa (chance-corrected), and how far each lies above the two "
        "experts' mean with the other experts (percentage points, kappa units; high for prompt-twins of one "
        "model).",
        cols,
    )
    for (bench, pool), a in sorted(analyses.items()):
        for p in a["diagnostics"]["pairs"]:
            ae = p["agreement_excess"]
            t.rows.append(
                [
                    bench,
                    pool,
                    " / ".join(p["experts"]),
                    str(p["n"]),
                    pct(p["agreement"]),
                    "" if ae is None else signed(100 * ae),
                    num(p["kappa"], 2),
                    num(p["kappa_excess"], 2),
                ]
            )
    return t


def ranking_table(analyses: dict[tuple[str, str], dict]) -> Table:
    cols = ["benchmark", "pool", "subject", "questions", "Spearman", "Kendall", "same best expert"]
    t = Table(
        "ranking",
        "After the fact, against the keys: how well the experts' mean consensus score on the real "
        "training split ranks them by their key accuracy, per subject and overall (rank correlations; "
        "empty where one side is constant), and whether both name the same best expert.",
        cols,
    )
    for (bench, pool), a in sorted(analyses.items()):
        r = a.get("consensus_ranking")
        if not r:
            continue
        for s, n, rho, tau, same in zip(
            r["subjects"], r["n"], r["spearman"], r["kendall"], r["same_best_model"]
        ):
            t.rows.append([bench, pool, s, str(n), num(rho, 2), num(tau, 2), "yes" if same else "no"])
        t.rows.append(
            [
                bench,
                pool,
                "all questions",
                str(sum(r["n"])),
                num(r["overall"]["spearman"], 2),
                num(r["overall"]["kendall"], 2),
                f"{sum(r['same_best_model'])} of {len(r['subjects'])}",
            ]
        )
    return t


def estimators_table(files: list[dict]) -> Table:
    """The label-free skill estimators of every (benchmark, pool) (`rgd estimators` files)."""
    t = Table(
        "estimators",
        "Label-free skill estimates on each pool's real training split, judged against its keys after "
        "the fact: Spearman's correlation of estimated and key per-(model, category) skill, its mean "
        "per category, how often the estimator's own label is the key, and CASCAL trained on each "
        "estimator's scores, evaluated on the test set (percent).",
        [
            "benchmark",
            "pool",
            "estimator",
            "Spearman (model, category)",
            "mean per-category Spearman",
            "label = key",
            "CASCAL Top-1",
            "CASCAL Top-3",
        ],
    )
    for f in sorted(files, key=lambda f: (f["labels"]["benchmark"], f["labels"]["pool"])):
        where = [f["labels"]["benchmark"], f["labels"]["pool"]]
        for name, r in f["estimators"].items():
            if "skipped" in r:
                t.rows.append([*where, name, r["skipped"], "", "", "", ""])
                continue
            t.rows.append(
                [*where, name, num(r["spearman_model_category"], 2), num(r["spearman_per_category_mean"], 2)]
                + [pct(r[k]) for k in ("label_accuracy", "cascal_top1", "cascal_top3_vote")]
            )
    return t


def seeds_table(files: list[dict]) -> Table:
    """Every router's Top-1 and Top-3 over its training seeds (`rgd seed-spread` files)."""
    t = Table(
        "seeds",
        "Seed stability: each router retrained under several seeds on the same training source, "
        "evaluated on the real test set; mean, population standard deviation and range (percent).",
        [
            "benchmark",
            "pool",
            "source",
            "router",
            "seeds",
            "Top-1 mean",
            "Top-1 sd",
            "Top-1 range",
            "Top-3 mean",
        ],
    )
    key = ("benchmark", "pool", "source", "router")
    for f in sorted(
        files, key=lambda f: (*(f["labels"][k] for k in key[:3]), router_key(f["labels"]["router"]))
    ):
        a, b = f["top1"], f["top3_vote"]
        t.rows.append(
            [*(f["labels"][k] for k in key), str(len(f["seeds"])), pct(a["mean"]), pct(a["sd"])]
            + [f"{pct(a['min'])}-{pct(a['max'])}", pct(b["mean"])]
        )
    return t
