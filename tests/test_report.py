"""Report analyses, the scaling curve, figures and tables, on a small synthetic world.

The world: 3 experts, 2 subjects, Gaussian-blob embeddings. Expert `alg` is strong on algebra,
`bio` on biology, `mid` middling; wrong answers are spread over the distractors and confidences are
higher when right, so consensus carries signal. A real training split, one generated set and a
test set go through the real `rgd consensus/train/route/evaluate` commands, then through the
report commands. The checks compare against independent computations (sklearn's AUROC, hand-made
examples, `rgd evaluate`'s numbers), so they can fail.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from rgd.cli import main
from rgd.io import dumps, read_json, save_npz, write_json, write_jsonl
from rgd.report import analysis, figures, scaling, tables
from rgd.report.analysis import PoolSet

EXPERTS = ["alg", "bio", "mid"]
SUBJECTS = ["algebra", "biology"]
ACC = {"algebra": [0.85, 0.3, 0.5], "biology": [0.3, 0.85, 0.5]}
EMBEDDER = {"kind": "sentence-transformers", "package": "none-synthetic"}


def rgd(*args):
    assert main([str(a) for a in args]) == 0, args


def make_set(root: Path, name: str, n: int, rng, centers):
    subj = rng.integers(0, 2, n)
    ids = [f"{name}-{i}" for i in range(n)]
    qs = [
        {"id": q, "category": SUBJECTS[s], "question": f"question {q}", "options": ["a", "b", "c", "d"]}
        for q, s in zip(ids, subj)
    ]
    gold = rng.integers(0, 4, n)
    X = centers[subj] + 0.3 * rng.normal(size=(n, centers.shape[1]))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    data = root / "data"
    write_jsonl(data / f"{name}.questions.jsonl", qs)
    write_jsonl(data / f"{name}.keys.jsonl", ({"id": q, "answer": "ABCD"[g]} for q, g in zip(ids, gold)))
    save_npz(
        root / "emb" / f"{name}.npz",
        ids=np.array(ids, dtype=str),
        X=X.astype(np.float32),
        embedder=np.array(dumps(EMBEDDER)),
    )
    for j, e in enumerate(EXPERTS):
        p = np.array([ACC[SUBJECTS[s]][j] for s in subj])
        right = rng.random(n) < p
        choice = np.where(right, gold, (gold + rng.integers(1, 4, n)) % 4)
        conf = np.where(right, -0.3, -0.9) + rng.normal(0, 0.2, n)
        write_jsonl(
            root / "responses" / name / f"{e}.jsonl",
            (
                {"id": q, "expert": e, "choice": "ABCD"[c], "confidence": float(v), "status": "ok"}
                for q, c, v in zip(ids, choice, conf)
            ),
        )


def responses(root, name):
    return [f"{e}={root / 'responses' / name / e}.jsonl" for e in EXPERTS]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2, 16))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    for name, n in (("train", 90), ("gen-g", 60), ("test", 80)):
        make_set(root, name, n, rng, centers)
    write_json(
        root / "data" / "gen-g.meta.json",
        {"acceptance_rate": 0.75, "n_prompts": 80, "n_rejects": 20, "model": {"name": "generator"}},
    )
    d = root / "data"
    for s in ("train", "gen-g"):
        rgd(
            "consensus",
            "--questions",
            d / f"{s}.questions.jsonl",
            "--responses",
            *responses(root, s),
            "--out",
            root / "cons" / f"{s}.jsonl",
            "--stats",
            root / "cons" / f"{s}.stats.json",
        )
        for router in ("cascal", "knn"):
            keys = ["--keys", d / f"{s}.keys.jsonl"] if router == "knn" else []
            params = {"params": {"k": 5}} if router == "knn" else {}
            rgd(
                "train",
                "--kind",
                router,
                "--questions",
                d / f"{s}.questions.jsonl",
                "--embeddings",
                root / "emb" / f"{s}.npz",
                "--consensus",
                root / "cons" / f"{s}.jsonl",
                "--experts",
                *EXPERTS,
                *keys,
                "--spec",
                json.dumps({"seed": 0, **params}),
                "--out-dir",
                root / "routers" / s / router,
            )
            rgd(
                "route",
                "--router",
                root / "routers" / s / router,
                "--questions",
                d / "test.questions.jsonl",
                "--embeddings",
                root / "emb" / "test.npz",
                "--seed",
                0,
                "--out",
                root / "routes" / s / f"{router}.jsonl",
            )
            labels = {"benchmark": "syn", "pool": "p", "source": s, "router": router}
            rgd(
                "evaluate",
                "--routes",
                root / "routes" / s / f"{router}.jsonl",
                "--questions",
                d / "test.questions.jsonl",
                "--keys",
                d / "test.keys.jsonl",
                "--responses",
                *responses(root, "test"),
                "--stats",
                root / "cons" / f"{s}.stats.json",
                "--labels",
                json.dumps(labels),
                "--seed",
                0,
                "--n-boot",
                50,
                "--out",
                root / "eval" / s / f"{router}.json",
            )
        rgd(
            "scaling",
            "--questions",
            d / f"{s}.questions.jsonl",
            "--embeddings",
            root / "emb" / f"{s}.npz",
            "--consensus",
            root / "cons" / f"{s}.jsonl",
            "--stats",
            root / "cons" / f"{s}.stats.json",
            "--experts",
            *EXPERTS,
            "--test-questions",
            d / "test.questions.jsonl",
            "--test-keys",
            d / "test.keys.jsonl",
            "--test-embeddings",
            root / "emb" / "test.npz",
            "--test-responses",
            *responses(root, "test"),
            "--fractions",
            0.5,
            1.0,
            "--seeds",
            0,
            1,
            "--spec",
            "{}",
            "--labels",
            f"syn/p/{s}",
            "--out",
            root / "scaling" / f"{s}.json",
        )
    rgd(
        "analyse",
        "--experts",
        *EXPERTS,
        "--questions",
        d / "train.questions.jsonl",
        "--keys",
        d / "train.keys.jsonl",
        "--consensus",
        root / "cons" / "train.jsonl",
        "--gen-questions",
        f"gen-g={d / 'gen-g.questions.jsonl'}",
        "--gen-keys",
        f"gen-g={d / 'gen-g.keys.jsonl'}",
        "--gen-consensus",
        f"gen-g={root / 'cons' / 'gen-g.jsonl'}",
        "--gen-meta",
        f"gen-g={d / 'gen-g.meta.json'}",
        "--bins",
        5,
        "--labels",
        "syn/p",
        "--out",
        root / "analysis.json",
    )
    return root


# --------------------------------------------------------------------------- analyses
def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    s = np.round(rng.random(200), 1)  # many ties
    y = rng.random(200) < s
    assert analysis.auroc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert analysis.auroc(s, np.ones(200, bool)) is None


def test_reliability_bins_and_ece_by_hand():
    r = analysis.reliability(np.array([0.05, 0.15, 0.95, 1.0]), np.array([0, 1, 1, 1]), n_bins=2)
    lo, hi = r["bins"]
    assert (lo["n"], hi["n"]) == (2, 2) and hi["hi"] == 1.0  # 1.0 falls in the last bin
    assert lo["mean_score"] == pytest.approx(0.1) and lo["accuracy"] == 0.5
    assert r["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * abs(1 - 0.975))


def test_set_properties_by_hand():
    # q0: all pick A = key; q1: split, consensus highest on C, key C; q2: split, key B, consensus on A
    ch = np.array([[0, 0, 0], [2, 2, 1], [0, 1, -1]])
    cons = np.array([[0.9, 0.9, 0.9], [0.7, 0.7, 0.3], [0.6, 0.4, 0.0]])
    ps = PoolSet(["q0", "q1", "q2"], ["x", "x", "y"], EXPERTS, ch, cons, np.array([0, 2, 1]))
    p = analysis.set_properties(ps)
    assert p["consensus_key_match"] == pytest.approx(2 / 3)
    assert p["key_agreement"] == pytest.approx((1 + 2 / 3 + 1 / 3) / 3)
    assert p["differentiation"] == pytest.approx(2 / 3)


def test_calibration_leaves_abstentions_out():
    ch = np.array([[0, -1], [1, 1], [0, 0]])
    cons = np.array([[0.8, 0.0], [0.7, 0.6], [0.2, 0.2]])
    c = analysis.calibration(
        PoolSet(["a", "b", "c"], ["x"] * 3, ["m1", "m2"], ch, cons, np.array([0, 1, 1])), 4
    )
    assert c["experts"]["m2"]["n"] == 2 and c["experts"]["m2"]["n_abstained"] == 1
    assert c["experts"]["m1"]["auroc"] == 1.0 and c["pooled"]["n"] == 5


def test_analysis_file(world):
    a = read_json(world / "analysis.json")
    sk = a["skills"]
    assert sk["subjects"] == SUBJECTS and sk["experts"] == EXPERTS
    acc = np.array(sk["accuracy"])
    assert acc[0].argmax() == 0 and acc[1].argmax() == 1  # the planted niches, by keys
    assert sk["n_same_best_model"] == 2  # consensus finds them without keys
    assert a["calibration"]["pooled"]["auroc"] > 0.7
    gen = a["sources"]["gen-g"]
    assert gen["acceptance_rate"] == 0.75 and gen["n_questions"] == 60
    assert a["sources"]["train"]["consensus_key_match"] > 0.6


# --------------------------------------------------------------------------- scaling
def test_balanced_subsample():
    cats = ["a"] * 10 + ["b"] * 3 + ["c"] * 1
    idx = scaling.balanced_subsample(cats, 0.5, seed=4)
    got = {c: sum(cats[i] == c for i in idx) for c in "abc"}
    assert got == {"a": 5, "b": 2, "c": 1}  # round(1.5) = 2; at least one per category
    assert list(idx) == sorted(idx)
    assert np.array_equal(idx, scaling.balanced_subsample(cats, 0.5, seed=4))
    assert not np.array_equal(idx, scaling.balanced_subsample(cats, 0.5, seed=5))
    assert len(scaling.balanced_subsample(cats, 1.0, seed=0)) == 14
    with pytest.raises(ValueError, match="fraction"):
        scaling.balanced_subsample(cats, 0.0, 0)


def test_scaling_curve_agrees_with_rgd_evaluate(world):
    """The full-size, seed-0 run equals the CASCAL that `rgd train/route/evaluate` measured (same
    seeds: k-means 0, tie-break 0): two code paths for the test set's choices, keys and z."""
    for s in ("train", "gen-g"):
        sc = read_json(world / "scaling" / f"{s}.json")
        ev = read_json(world / "eval" / s / "cascal.json")
        run = next(r for r in sc["runs"] if r["fraction"] == 1.0 and r["seed"] == 0)
        assert run["top1"] == pytest.approx(ev["top1"]) and run["top3_vote"] == pytest.approx(ev["top3_vote"])
        assert sc["best_single"] == pytest.approx(ev["best_single"]) and sc["oracle"] == pytest.approx(
            ev["oracle"]
        )
        half = [r for r in sc["runs"] if r["fraction"] == 0.5]
        assert len(half) == 2 and all(r["n_train"] < sc["n_source"] for r in half)
        row = next(r for r in sc["summary"] if r["fraction"] == 0.5)
        v = np.array([r["top1"] for r in half])
        assert row["top1_mean"] == pytest.approx(v.mean()) and row["top1_std"] == pytest.approx(v.std())
        assert sc["labels"] == {"benchmark": "syn", "pool": "p", "source": s}


# --------------------------------------------------------------------------- figures
def _figures(world, out: Path):
    cascal = [f"{s}={world / 'routers' / s / 'cascal'}" for s in ("train", "gen-g")]
    scal = [f"{s}={world / 'scaling' / f'{s}.json'}" for s in ("train", "gen-g")]
    evals = sorted(world.glob("eval/*/*.json"))
    rgd(
        "figures",
        "--analysis",
        world / "analysis.json",
        "--evals",
        *evals,
        "--scaling",
        *scal,
        "--cascal",
        *cascal,
        "--out-dir",
        out,
    )


def test_figures_are_svg_and_deterministic(world, tmp_path):
    _figures(world, tmp_path / "a")
    _figures(world, tmp_path / "b")
    for n in ["accuracy", "skills", "calibration", "clusters", "scaling"]:
        a, b = (tmp_path / "a" / f"{n}.svg").read_bytes(), (tmp_path / "b" / f"{n}.svg").read_bytes()
        assert a == b, f"{n}.svg differs between two runs"
        assert ET.fromstring(a).tag.endswith("svg")
        assert b"<dc:date>" not in a and len(a) > 5000


def test_figure_text_content(world, tmp_path, monkeypatch):
    """Text drawn into the figures (captured through matplotlib's Text objects, since glyphs are paths)."""
    import matplotlib.pyplot as plt

    seen = {}

    def capture(fig, path):
        seen[Path(path).stem] = (
            {t.get_text() for ax in fig.axes for t in ax.texts + [ax.title]}
            | {t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}
            | {
                t.get_text()
                for lg in [ax.get_legend() for ax in fig.axes] + fig.legends
                if lg
                for t in lg.get_texts()
            }
        )
        plt.close(fig)

    monkeypatch.setattr(figures, "save", capture)
    _figures(world, tmp_path)
    assert "cascal (query-only)" in seen["accuracy"] and "knn (query-answer)" in seen["accuracy"]
    assert "real train" in seen["accuracy"] and any(t.startswith("gen-g\nq=") for t in seen["accuracy"])
    assert {"algebra (n=", "biology (n="} <= {t.split("(n=")[0] + "(n=" for t in seen["skills"] if "(n=" in t}
    assert any(t.startswith("alg (AUROC") for t in seen["calibration"])
    assert any(t.startswith("train: ") and "clusters" in t for t in seen["clusters"])
    assert "best single (test)" in seen["scaling"]


# --------------------------------------------------------------------------- tables
def _tables(world, out_dir):
    """`rgd tables` over the synthetic world's evaluations, analysis, scaling and CASCAL routers."""
    cascal = [f"syn/p/{s}={world / 'routers' / s / 'cascal'}" for s in ("train", "gen-g")]
    evals, scaling = sorted(world.glob("eval/*/*.json")), sorted(world.glob("scaling/*.json"))
    rgd(
        "tables",
        "--evals",
        *evals,
        "--analyses",
        world / "analysis.json",
        "--scaling",
        *scaling,
        "--cascal",
        *cascal,
        "--out-dir",
        out_dir,
    )


def test_tables_three_formats(world, tmp_path):
    _tables(world, tmp_path)
    for name in ("main", "generators", "calibration", "scaling", "clusters"):
        rows = list(csv.reader(io.StringIO((tmp_path / f"{name}.csv").read_text())))
        md = [row for row in (tmp_path / f"{name}.md").read_text().splitlines() if row.startswith("|")]
        tex = (tmp_path / f"{name}.tex").read_text()
        assert len(md) == len(rows) + 1  # + the |---| line
        assert "\\toprule" in tex and "\\bottomrule" in tex and tex.count("\\\\") == len(rows)
        assert rows[0][0] == "benchmark"
    main_rows = list(csv.DictReader((tmp_path / "main.csv").open()))
    head = next(csv.reader((tmp_path / "main.csv").open()))
    assert head[4:] == ["train Top-1", "train Top-3", "gen-g Top-1", "gen-g Top-3"]
    cas = next(r for r in main_rows if r["router"] == "cascal")
    ev = read_json(world / "eval" / "gen-g" / "cascal.json")
    assert cas["gen-g Top-1"] == f"{100 * ev['top1']:.1f}" and cas["type"] == "query-only"
    assert [r["router"] for r in main_rows][:2] == ["cascal", "knn"]
    assert any(r["router"].startswith("best single (test): ") for r in main_rows)
    assert "gen-g" in (tmp_path / "generators.md").read_text()
    niches = list(csv.DictReader((tmp_path / "clusters.csv").open()))
    total = sum(int(r["questions in them"]) for r in niches if r["source"] == "train")
    assert total == 90


def test_source_order_and_latex_escape():
    assert tables.source_order(["gen-b", "train", "gen-a", "gen-c"], {"gen-a": 0.2, "gen-b": 0.9}) == [
        "train",
        "gen-b",
        "gen-a",
        "gen-c",
    ]
    assert tables.latex_escape("a_b 50% & #1 ~ {x}") == r"a\_b 50\% \& \#1 \textasciitilde{} \{x\}"
    t = tables.Table("t", "cap_tion", ["name", "acc"], [["x|y", "1.0"]])
    assert "x\\|y" in t.markdown() and "\\begin{tabular}{lr}" in t.latex() and "cap\\_tion" in t.latex()


# --------------------------------------------------------------------------- pool diagnostics
def test_analysis_has_pool_diagnostics_and_consensus_ranking(world):
    from rgd.diagnostics import pairwise
    from rgd.matrices import consensus_matrices

    a = read_json(world / "analysis.json")
    d, r = a["diagnostics"], a["consensus_ranking"]
    assert d["experts"] == EXPERTS and d["n_questions"] == 90 and d["n_options"] == 4
    assert all(sum(v["letters"].values()) + v["abstained"] == 90 for v in d["per_expert"].values())
    # the same kappas as rgd.diagnostics on the consensus file's own choices
    ids = [q["id"] for q in read_jsonl_(world / "data" / "train.questions.jsonl")]
    ch, _ = consensus_matrices(read_jsonl_(world / "cons" / "train.jsonl"), ids, EXPERTS)
    k = pairwise(ch, 4)["kappa"]
    assert [p["kappa"] for p in d["pairs"]] == pytest.approx([k[0, 1], k[0, 2], k[1, 2]])
    # the planted niches: consensus orders the experts as the keys do in both subjects
    assert r["subjects"] == SUBJECTS and all(v is not None and v > 0 for v in r["spearman"])
    assert r["same_best_model"] == [True, True] and r["overall"]["spearman"] is not None


def read_jsonl_(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_summary_with_verdicts_and_diagnostics(world, tmp_path):
    evals = sorted(world.glob("eval/*/*.json"))
    rgd(
        "summarise",
        "--evals",
        *evals,
        "--out-csv",
        tmp_path / "s.csv",
        "--out-md",
        tmp_path / "s.md",
        "--analyses",
        world / "analysis.json",
    )
    md = (tmp_path / "s.md").read_text()
    said = [line for line in md.splitlines() if line.startswith("- syn / p, trained on")]
    assert len(said) == 2  # one per training source, CASCAL only
    for line, s in zip(said, ("train", "gen-g")):
        ev = read_json(world / "eval" / s / "cascal.json")
        lo, hi = ev["paired"]["top1_vs_best_single"]["ci"]
        word = "beats" if lo > 0 else "trails" if hi < 0 else "matches"
        assert f"CASCAL (Top-1 {100 * ev['top1']:.1f}%) {word} the best single model on the test set" in line
        assert f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" in line and "oracle" in line
    assert "### Pool diagnostics: syn / p" in md and "Fleiss' kappa of the pool" in md
    assert "| alg / bio |" in md and "Thresholds: prompt-twins:" in md and "Spearman" in md
    # the CSV keeps its columns and rows without the analyses
    rgd("summarise", "--evals", *evals, "--out-csv", tmp_path / "t.csv", "--out-md", tmp_path / "t.md")
    assert (tmp_path / "t.csv").read_bytes() == (tmp_path / "s.csv").read_bytes()
    assert "Pool diagnostics" not in (tmp_path / "t.md").read_text()


def _eval(ci, gap, gap_ci, router="cascal", source="gen-x"):
    return {
        "labels": {"benchmark": "b", "pool": "p", "source": source, "router": router},
        "n_questions": 72,
        "top1": 0.222,
        "best_single": 0.306,
        "best_single_model": "m2",
        "gap_closed_top1": gap,
        "ci": {"gap_closed_top1": gap_ci},
        "paired": {"top1_vs_best_single": {"diff": -0.083, "ci": ci}},
    }


def test_verdict_sentences_say_only_what_the_paired_ci_supports():
    from rgd.summary import sentence, verdict, verdicts

    trails = _eval([-0.236, -0.014], -0.45, [-0.9, -0.05])
    assert verdict(trails) == "trails"
    t = sentence(trails)
    assert "CASCAL (Top-1 22.2%) trails the best single model on the test set (m2, 30.6%" in t
    assert (
        "[-23.6, -1.4] points, entirely below 0" in t
        and "that it closes: -45%, 95% CI [-90%, -5%] (0% =" in t
    )
    matches = _eval([-0.05, 0.0], 0.1, [-0.2, 0.4])
    assert verdict(matches) == "matches"  # a CI that touches 0 contains it
    assert "matches the best single model" in sentence(matches) and "which contains 0" in sentence(matches)
    assert "that it closes: 10%, 95% CI [-20%, 40%]" in sentence(matches)
    beats = _eval([0.001, 0.2], None, [None, None])
    assert verdict(beats) == "beats" and "no oracle gap to close" in sentence(beats)
    assert verdict(_eval([None, None], None, None)) == "undefined"
    assert "undefined" in sentence(_eval([None, None], None, None))
    # one sentence per training source, for the headline router only, the real split first
    got = verdicts(
        [
            _eval([0, 1], 0.1, [0, 1], source="gen-a"),
            _eval([0, 1], 0.1, [0, 1], router="knn"),
            _eval([0, 1], 0.1, [0, 1], source="train"),
        ]
    )
    assert len(got) == 2 and "real training split" in got[0] and "gen-a" in got[1]


def test_summarise_refuses_an_analysis_without_diagnostics(world, tmp_path, capsys):
    old = read_json(world / "analysis.json")
    del old["diagnostics"]
    write_json(tmp_path / "old.json", old)
    evals = sorted(world.glob("eval/*/*.json"))
    assert (
        main(
            [
                "summarise",
                "--evals",
                *map(str, evals),
                "--out-csv",
                str(tmp_path / "s.csv"),
                "--out-md",
                str(tmp_path / "s.md"),
                "--analyses",
                str(tmp_path / "old.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("rgd summarise: error: ") and "old.json: diagnostics: missing" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "s.csv").exists()


def test_diagnostics_figure_deterministic_with_its_text(world, tmp_path, monkeypatch):
    a = read_json(world / "analysis.json")
    figures.diagnostics_figure(a, tmp_path / "a.svg")
    figures.diagnostics_figure(a, tmp_path / "b.svg")
    x = (tmp_path / "a.svg").read_bytes()
    assert (
        x == (tmp_path / "b.svg").read_bytes()
        and ET.fromstring(x).tag.endswith("svg")
        and b"<dc:date>" not in x
    )
    _figures(world, tmp_path / "all")  # rgd figures draws it too
    assert (tmp_path / "all" / "diagnostics.svg").read_bytes() == x
    import matplotlib.pyplot as plt

    seen = set()

    def capture(fig, path):
        seen.update(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title] + ax.get_yticklabels())
        seen.update(t.get_text() for t in fig.texts + [fig._suptitle] if t)
        plt.close(fig)

    monkeypatch.setattr(figures, "save", capture)
    # a twin pair: the flagged experts are marked, the warning named in the title
    twin = json.loads(json.dumps(a))
    twin["diagnostics"]["warnings"] = [
        {"kind": "twins", "experts": ["alg", "bio"], "value": 0.9, "message": "m"}
    ]
    figures.diagnostics_figure(twin, tmp_path / "c.svg")
    assert "alg (!) [0 abst.]" in seen and "mid [0 abst.]" in seen
    assert any(t.startswith("90 real training questions; warnings: twins") for t in seen)
    assert any(t.startswith("agreement per pair, Cohen's κ (Fleiss' κ ") for t in seen)
    assert any(t.endswith("%\nκ " + f"{a['diagnostics']['pairs'][0]['kappa']:.2f}") for t in seen)
    assert {"algebra (n=", "biology (n="} <= {t.split("(n=")[0] + "(n=" for t in seen if "(n=" in t}


def test_diagnostics_tables(world, tmp_path):
    _tables(world, tmp_path)
    a = read_json(world / "analysis.json")
    d = a["diagnostics"]
    rows = list(csv.DictReader((tmp_path / "diagnostics.csv").open()))
    assert [r["expert"] for r in rows] == EXPERTS + ["pool (Fleiss' kappa)"]
    alg = d["per_expert"]["alg"]
    assert rows[0]["A"] == f"{100 * alg['shares']['A']:.1f}" and rows[0]["answered"] == "90"
    assert rows[-1]["mean kappa with the others"] == f"{d['fleiss_kappa']:.2f}"
    assert "prompt-twins: a pair's raw agreement >= 25 points" in (tmp_path / "diagnostics.md").read_text()
    pairs = list(csv.DictReader((tmp_path / "agreement.csv").open()))
    assert [p["expert pair"] for p in pairs] == ["alg / bio", "alg / mid", "bio / mid"]
    assert pairs[0]["Cohen's kappa"] == f"{d['pairs'][0]['kappa']:.2f}"
    rank = list(csv.DictReader((tmp_path / "ranking.csv").open()))
    assert [r["subject"] for r in rank] == SUBJECTS + ["all questions"]
    assert rank[-1]["same best expert"] == "2 of 2" and rank[-1]["questions"] == "90"
    for name in ("diagnostics", "agreement", "ranking"):
        tex = (tmp_path / f"{name}.tex").read_text()
        assert "\\toprule" in tex and tex.count("\\\\") == len(
            list(csv.reader((tmp_path / f"{name}.csv").open()))
        )


def test_diagnostics_table_names_the_flagged_experts():
    d = {
        "experts": ["a", "b", "c"],
        "n_questions": 50,
        "fleiss_kappa": 0.05,
        "thresholds": {},
        "per_expert": {
            e: {
                "answered": 50,
                "abstained": 0,
                "shares": {"A": 0.6, "B": 0.4},
                "top_letter": "A",
                "top_share": 0.6,
                "mean_kappa_with_rest": 0.1,
            }
            for e in "abc"
        },
        "pairs": [],
        "warnings": [
            {"kind": "twins", "experts": ["a", "b"]},
            {"kind": "letter-bias", "experts": ["c"]},
            {"kind": "pool-chance", "experts": []},
        ],
    }
    t = tables.diagnostics_table({("x", "p"): {"diagnostics": d}})
    flags = {r[2]: r[-1] for r in t.rows}
    assert flags == {
        "a": "twins with b",
        "b": "twins with a",
        "c": "letter bias",
        "pool (Fleiss' kappa)": "pool chance",
    }


def test_diagnostics_text_keeps_pool_order_through_sorted_json():
    from rgd.diagnostics import pool_diagnostics
    from rgd.summary import diagnostics_text

    ch = np.array([[0, 1, 1], [1, 1, 1], [2, 2, 0]] * 10)
    a = {
        "diagnostics": pool_diagnostics(ch, ["zeta", "alpha", "mid"], 4),
        "labels": {"benchmark": "b", "pool": "p"},
    }
    a = json.loads(json.dumps(a, sort_keys=True))  # as write_json stores it
    rows = [line.split(" | ")[0] for line in diagnostics_text(a).splitlines() if line.startswith("| ")]
    assert rows[1:4] == ["| zeta", "| alpha", "| mid"]
    t = tables.diagnostics_table({("b", "p"): a})
    assert [r[2] for r in t.rows] == ["zeta", "alpha", "mid", "pool (Fleiss' kappa)"]
