"""The report's figures as byte-deterministic SVG (matplotlib, Agg backend).

Determinism: fixed rcParams (inside `rc_context`, so a user's matplotlibrc cannot change them),
`svg.hashsalt` for the element ids, no creation date in the metadata, glyphs drawn as paths from the
DejaVu font bundled with matplotlib, and every input iterated in sorted or pool order. The same
inputs and matplotlib version give the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from ..io import atomic_path  # noqa: E402
from .tables import QUERY_ONLY, router_key, source_order  # noqa: E402

RC = {
    "svg.hashsalt": "rgd-report",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "path.simplify": True,
    "image.interpolation": "nearest",
}
METADATA = {"Date": None, "Creator": f"rgd via matplotlib {matplotlib.__version__}"}


def save(fig, path: str | Path) -> None:
    with atomic_path(path, suffix=".svg") as tmp:
        fig.savefig(tmp, format="svg", metadata=METADATA, bbox_inches="tight")
    plt.close(fig)


def _colors(names: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def _short(s: str, n: int = 30) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


# --------------------------------------------------------------------------- routing accuracy
def accuracy_figure(evals: list[dict], quality: dict[str, float | None], path: str | Path) -> None:
    """Top-1 and Top-3 of every router against the training source (real, then best to weakest
    generator), with bootstrap CIs and the test-set reference lines."""
    with plt.rc_context(RC):
        by = {(e["labels"]["source"], e["labels"]["router"]): e for e in evals}
        sources = source_order(sorted({s for s, _ in by}), quality)
        routers = sorted({r for _, r in by}, key=router_key)
        colors = _colors(list(routers))
        ref = evals[0]
        x = np.arange(len(sources))
        offsets = np.linspace(-0.12, 0.12, len(routers)) if len(routers) > 1 else [0.0]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
        for ax, metric, title in ((axes[0], "top1", "Top-1"), (axes[1], "top3_vote", "Top-3 vote")):
            for off, r in zip(offsets, routers):
                y = np.array([_nan(by[(s, r)][metric]) if (s, r) in by else math.nan for s in sources])
                ci = [by[(s, r)].get("ci", {}).get(metric) if (s, r) in by else None for s in sources]
                lo = np.array([_nan(c[0]) if c else math.nan for c in ci])
                hi = np.array([_nan(c[1]) if c else math.nan for c in ci])
                q_only = r in QUERY_ONLY
                ax.errorbar(
                    x + off,
                    100 * y,
                    yerr=100 * np.abs(np.vstack([y - lo, hi - y])),
                    color=colors[r],
                    marker="o" if q_only else "s",
                    ms=4,
                    lw=2.0 if q_only else 1.0,
                    ls="-" if q_only else "--",
                    capsize=2,
                    label=f"{r} ({'query-only' if q_only else 'query-answer'})",
                )
            for field, style, name in (
                ("oracle", "-.", "oracle"),
                ("best_single", ":", "best single (test)"),
                ("random", (0, (1, 3)), "random model"),
            ):
                ax.axhline(100 * ref[field], color="0.35", ls=style, lw=1, label=name)
            labels = [
                "real train"
                if s == "train"
                else (f"{s}\nq={quality[s]:.2f}" if quality.get(s) is not None else s)
                for s in sources
            ]
            ax.set_xticks(x, labels)
            ax.set_title(title)
            ax.set_xlabel("training source (generators ordered by quality q)")
        axes[0].set_ylabel("accuracy on the real test set (%)")
        axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        save(fig, path)


# --------------------------------------------------------------------------- skills
def skills_figure(sk: dict, path: str | Path) -> None:
    """Per-subject, per-model skill from consensus (no keys) and from keys, side by side."""
    with plt.rc_context({**RC, "axes.grid": False}):
        subjects, experts = sk["subjects"], sk["experts"]
        S, m = len(subjects), len(experts)
        fig, axes = plt.subplots(
            1, 2, figsize=(2.2 + 1.5 * m, 1.2 + 0.38 * S), sharey=True, constrained_layout=True
        )
        for ax, key, title in (
            (axes[0], "consensus", "mean consensus score (no keys)"),
            (axes[1], "accuracy", "accuracy against the keys"),
        ):
            a = np.array(sk[key], dtype=np.float64).reshape(S, m)
            im = ax.imshow(a, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            best = a.argmax(axis=1) if m else []
            for i in range(S):
                for j in range(m):
                    ax.text(
                        j,
                        i,
                        f"{a[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="black" if a[i, j] > 0.55 else "white",
                        fontweight="bold" if j == best[i] else "normal",
                    )
            ax.set_xticks(range(m), experts, rotation=30, ha="right")
            ax.set_yticks(range(S), [f"{_short(s)} (n={n})" for s, n in zip(subjects, sk["n"])])
            ax.set_title(title)
        fig.colorbar(im, ax=axes, shrink=0.8, label="score / accuracy")
        fig.suptitle(
            f"bold: best model per subject; same best model in {sk['n_same_best_model']} of {S} subjects",
            fontsize=8,
        )
        save(fig, path)


# --------------------------------------------------------------------------- pool diagnostics
def diagnostics_figure(analysis: dict, path: str | Path) -> None:
    """Label-free pool diagnostics (letter shares per expert, pairwise Cohen's kappa) and, after the
    fact, the per-subject rank correlation of mean consensus with key accuracy."""
    d, r = analysis["diagnostics"], analysis.get("consensus_ranking")
    m = len(d["experts"])
    flagged = {e for w in d["warnings"] for e in w["experts"]}
    names = [f"{e} (!)" if e in flagged else e for e in d["experts"]]
    with plt.rc_context({**RC, "axes.grid": False}):
        S = len(r["subjects"]) if r else 0
        ncols = 3 if r else 2
        fig, axes = plt.subplots(
            1, ncols, figsize=(3.4 * ncols + 1.0, 1.6 + 0.34 * max(m, S, 3)), constrained_layout=True
        )
        _letter_shares(axes[0], d, names)
        _agreement(fig, axes[1], d, names)
        if r:
            _consensus_ranking(axes[2], r)
        kinds = sorted({w["kind"] for w in d["warnings"]})
        fig.suptitle(
            f"{d['n_questions']} real training questions; "
            + (f"warnings: {', '.join(kinds)}; (!) marks the experts named" if kinds else "no warning"),
            fontsize=8,
        )
        save(fig, path)


def _letter_shares(ax, d: dict, names: list[str]) -> None:
    """Stacked bars: the share of each letter among each expert's answers, and the letter-bias threshold."""
    experts = d["experts"]
    m = len(experts)
    letters = list(next(iter(d["per_expert"].values()))["shares"]) if m else []
    cmap = plt.get_cmap("tab10")
    y = np.arange(m)[::-1]
    left = np.zeros(m)
    for i, x in enumerate(letters):
        share = np.array([_nan(d["per_expert"][e]["shares"][x]) for e in experts])
        share = np.nan_to_num(share)
        ax.barh(y, share, left=left, color=cmap(i % 10), height=0.7, label=x)
        left += share
    ax.axvline(d["thresholds"]["letter_share"], color="0.2", ls=":", lw=1, label="letter-bias threshold")
    ax.set_yticks(y, [f"{n} [{d['per_expert'][e]['abstained']} abst.]" for n, e in zip(names, experts)])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the expert's answers")
    ax.set_title("letters chosen (no keys)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(len(letters) + 1, 6), frameon=False)


def _agreement(fig, bx, d: dict, names: list[str]) -> None:
    """Pairwise heat map; colour: raw agreement (what consensus rewards); text: raw % and Cohen's kappa."""
    experts = d["experts"]
    m = len(experts)
    agree, k = np.full((m, m), np.nan), np.full((m, m), np.nan)
    for p in d["pairs"]:
        i, j = experts.index(p["experts"][0]), experts.index(p["experts"][1])
        agree[i, j] = agree[j, i] = _nan(p["agreement"])
        k[i, j] = k[j, i] = _nan(p["kappa"])
    cm = plt.get_cmap("viridis").with_extremes(bad="0.9")  # the diagonal and undefined cells: grey
    im = bx.imshow(np.ma.masked_invalid(agree), vmin=0, vmax=1, cmap=cm, aspect="auto")
    for i in range(m):
        for j in range(m):
            if i != j:
                txt = (
                    "n/a"
                    if math.isnan(agree[i, j])
                    else (
                        f"{100 * agree[i, j]:.0f}%\nκ " + ("n/a" if math.isnan(k[i, j]) else f"{k[i, j]:.2f}")
                    )
                )
                bx.text(
                    j,
                    i,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="black" if math.isnan(agree[i, j]) or agree[i, j] > 0.55 else "white",
                )
    bx.set_xticks(range(m), names, rotation=30, ha="right")
    bx.set_yticks(range(m), names)
    fk = d["fleiss_kappa"]
    bx.set_title("agreement per pair, Cohen's κ" + ("" if fk is None else f" (Fleiss' κ {fk:.2f})"))
    fig.colorbar(im, ax=bx, shrink=0.8, label="raw agreement")


def _consensus_ranking(cx, r: dict) -> None:
    """Bars of the per-subject Spearman correlation of mean consensus with key accuracy (after the fact)."""
    rho = np.array([_nan(v) for v in r["spearman"]])
    ys = np.arange(len(r["subjects"]))[::-1]
    cx.barh(ys, np.nan_to_num(rho), color=["0.6" if math.isnan(v) else "tab:blue" for v in rho], height=0.7)
    for yi, v in zip(ys, rho):
        cx.text(
            0.02 if math.isnan(v) or v < 0 else v + 0.02,
            yi,
            "n/a" if math.isnan(v) else f"{v:.2f}",
            va="center",
            fontsize=6.5,
        )
    cx.axvline(0, color="0.2", lw=0.8)
    if r["mean_spearman"] is not None:
        cx.axvline(r["mean_spearman"], color="tab:red", ls="--", lw=1)
    cx.set_xlim(-1.05, 1.15)
    cx.set_yticks(ys, [f"{_short(s, 24)} (n={n})" for s, n in zip(r["subjects"], r["n"])])
    cx.set_xlabel("Spearman: mean consensus vs key accuracy")
    mean = "n/a" if r["mean_spearman"] is None else f"{r['mean_spearman']:.2f}"
    cx.set_title(f"consensus ranking, after the fact (mean {mean})")


# --------------------------------------------------------------------------- calibration
def calibration_figure(cal: dict, path: str | Path) -> None:
    """Reliability diagram of the consensus score per model, and AUROC per model."""
    with plt.rc_context(RC):
        experts = list(cal["experts"])
        colors = _colors(experts)
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.5, 3.5), gridspec_kw={"width_ratios": [3, 2]})
        ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfect calibration")
        for e in experts:
            c = cal["experts"][e]
            pts = [(b["mean_score"], b["accuracy"], b["n"]) for b in c["bins"] if b["n"]]
            if not pts:
                continue
            xs, ys, ns = map(np.array, zip(*pts))
            auc = "n/a" if c["auroc"] is None else f"{c['auroc']:.2f}"
            ax.plot(
                xs,
                ys,
                color=colors[e],
                marker="o",
                ms=3,
                lw=1.2,
                label=f"{e} (AUROC {auc}, ECE {c['ece']:.2f})",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("consensus score (bin mean)")
        ax.set_ylabel("fraction correct")
        ax.set_title("reliability of consensus scores")
        ax.legend(loc="upper left", frameon=False)
        aucs = [cal["experts"][e]["auroc"] for e in experts]
        xs = np.arange(len(experts))
        bx.bar(xs, [_nan(a) if a is not None else 0 for a in aucs], color=[colors[e] for e in experts])
        for i, a in enumerate(aucs):
            bx.text(i, (a or 0) + 0.02, "n/a" if a is None else f"{a:.2f}", ha="center", fontsize=7)
        bx.axhline(0.5, color="0.35", ls=":", lw=1)
        pooled = cal["pooled"]["auroc"]
        bx.set_title("AUROC per model" + ("" if pooled is None else f" (all models: {pooled:.2f})"))
        bx.set_xticks(xs, experts, rotation=30, ha="right")
        bx.set_ylim(0, 1.05)
        save(fig, path)


# --------------------------------------------------------------------------- CASCAL clusters
def clusters_figure(routers: dict[str, dict], path: str | Path, quality: dict | None = None) -> None:
    """One panel per training source: every CASCAL cluster, its size, coloured by its top-ranked model."""
    with plt.rc_context({**RC, "axes.grid": False}):
        sources = source_order(sorted(routers), quality)
        experts = routers[sources[0]]["experts"]
        colors = _colors(experts)
        kmax = max((len(r["clusters"]) for r in routers.values()), default=1)
        height = min(24.0, max(2.5, 0.16 * kmax + 1.3))
        fig, axes = plt.subplots(1, len(sources), figsize=(3.4 * len(sources), height), squeeze=False)
        for ax, s in zip(axes[0], sources):
            cl = sorted(routers[s]["clusters"], key=lambda c: (c["subject"], -int(c["assigned"]), c["id"]))
            y = np.arange(len(cl))[::-1]
            tops = [c["ranking"][0][0] if c["ranking"] else None for c in cl]
            ax.barh(
                y, [int(c["assigned"]) for c in cl], color=[colors.get(t, "0.7") for t in tops], height=0.8
            )
            # one label per subject, at its first cluster
            ticks, labels, prev = [], [], None
            for yi, c in zip(y, cl):
                if c["subject"] != prev:
                    ticks.append(yi)
                    labels.append(_short(c["subject"], 26))
                    prev = c["subject"]
            ax.set_yticks(ticks, labels)
            n = sum(int(c["assigned"]) for c in cl)
            ax.set_title(f"{s}: {len(cl)} clusters, {n} questions")
            ax.set_xlabel("questions assigned")
            ax.set_ylim(-0.7, max(len(cl), 1) - 0.3)
        fig.legend(
            handles=[Patch(color=colors[e], label=e) for e in experts],
            title="ranked first",
            loc="upper center",
            ncol=min(len(experts), 6),
            frameon=False,
            bbox_to_anchor=(0.5, 1.0),
        )
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
        save(fig, path)


# --------------------------------------------------------------------------- data scaling
def scaling_figure(scaling: dict[str, dict], path: str | Path, quality: dict | None = None) -> None:
    """CASCAL Top-1 / Top-3 against the number of training questions, mean ± std over seeds."""
    with plt.rc_context(RC):
        sources = source_order(sorted(scaling), quality)
        colors = _colors(sources)
        first = scaling[sources[0]]
        fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.3), sharey=True)
        for ax, metric, title in ((axes[0], "top1", "Top-1"), (axes[1], "top3_vote", "Top-3 vote")):
            for s in sources:
                rows = scaling[s]["summary"]
                n = np.array([r["n_train"] for r in rows])
                mu = 100 * np.array([r[f"{metric}_mean"] for r in rows])
                sd = 100 * np.array([r[f"{metric}_std"] for r in rows])
                ax.plot(
                    n,
                    mu,
                    color=colors[s],
                    marker="o",
                    ms=3,
                    lw=1.5,
                    label=f"{s} ({scaling[s]['n_source']} questions)",
                )
                ax.fill_between(n, mu - sd, mu + sd, color=colors[s], alpha=0.2, lw=0)
            ax.axhline(100 * first["best_single"], color="0.35", ls=":", lw=1, label="best single (test)")
            ax.axhline(100 * first["oracle"], color="0.35", ls="-.", lw=1, label="oracle")
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.set_xlabel("training questions (log scale)")
            ax.set_title(f"{title}, mean ± std over {len(first['seeds'])} seeds")
        axes[0].set_ylabel("CASCAL accuracy on the real test set (%)")
        axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
        save(fig, path)
