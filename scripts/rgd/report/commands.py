"""`rgd` subcommands of the reproducibility deliverables (registered by rgd.cli.build_parser).

  rgd config-snapshot   the loaded config as canonical JSON; prints the config hash
  rgd analyse           skills, calibration and generator quality of one (benchmark, pool)
  rgd scaling           the data-scaling curve of one (benchmark, pool, training source)
  rgd figures           the report's SVG figures of one (benchmark, pool)
  rgd tables            paper-style tables (Markdown, CSV, LaTeX)
(`rgd archive` and `rgd verify` live in rgd/archive/commands.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io import InputError, read_json, write_json


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for it in items or []:
        name, sep, path = it.partition("=")
        if not sep or not name:
            raise InputError("<command line>", None, what, f"expected NAME=PATH, got {it!r}")
        if name in out:
            raise InputError("<command line>", None, what, f"{name!r} given twice")
        out[name] = path
    return out


def _labels(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


# --------------------------------------------------------------------------- commands
def cmd_config_snapshot(a):
    from ..archive import canonical_config, config_hash
    from ..io import write_text

    config = json.loads(a.config) if a.config else read_json(a.config_file)
    write_text(a.out, canonical_config(config).decode())
    print(config_hash(config))


def cmd_analyse(a):
    from .analysis import analyse

    gen_q, gen_k = _pairs(a.gen_questions, "gen-questions"), _pairs(a.gen_keys, "gen-keys")
    gen_c, gen_m = _pairs(a.gen_consensus, "gen-consensus"), _pairs(a.gen_meta, "gen-meta")
    if not (set(gen_q) == set(gen_k) == set(gen_c)) or not set(gen_m) <= set(gen_q):
        raise InputError("<command line>", None, "gen-*", "every generated set needs questions, keys and consensus")
    generated = {s: {"questions": gen_q[s], "keys": gen_k[s], "consensus": gen_c[s], "meta": gen_m.get(s)}
                 for s in sorted(gen_q)}
    real = {"questions": a.questions, "keys": a.keys, "consensus": a.consensus}
    out = analyse(a.experts, real, generated, a.bins)
    out["labels"] = dict(zip(("benchmark", "pool"), _labels(a.labels)))
    write_json(a.out, out)
    cal = out["calibration"]["pooled"]
    print(f"AUROC (all models) {cal['auroc']}, same best model in {out['skills']['n_same_best_model']} "
          f"of {len(out['skills']['subjects'])} subjects")


def cmd_scaling(a):
    from .scaling import load_test_set, run

    test = load_test_set(a.test_questions, a.test_keys, a.test_embeddings,
                         _pairs(a.test_responses, "test-responses"), a.stats)
    spec = a.spec or {}
    out = run(a.questions, a.embeddings, a.consensus, a.experts, test, a.fractions, a.seeds, spec.get("params", {}))
    out["labels"] = dict(zip(("benchmark", "pool", "source"), _labels(a.labels)))
    write_json(a.out, out)
    for r in out["summary"]:
        print(f"fraction {r['fraction']:g} (n={r['n_train']:g}): top1 {r['top1_mean']:.3f} ± {r['top1_std']:.3f}")


def cmd_figures(a):
    from . import figures

    analysis = read_json(a.analysis)
    quality = {s: p.get("consensus_key_match") for s, p in analysis["sources"].items()}
    out = Path(a.out_dir)
    evals = [read_json(p) for p in sorted(a.evals)]
    if not evals:
        raise InputError("<command line>", None, "evals", "no evaluation files")
    figures.accuracy_figure(evals, quality, out / "accuracy.svg")
    figures.skills_figure(analysis["skills"], out / "skills.svg")
    figures.calibration_figure(analysis["calibration"], out / "calibration.svg")
    routers = {s: read_json(Path(d) / "router.json") for s, d in _pairs(a.cascal, "cascal").items()}
    figures.clusters_figure(routers, out / "clusters.svg", quality)
    scaling = {s: read_json(p) for s, p in _pairs(a.scaling, "scaling").items()}
    figures.scaling_figure(scaling, out / "scaling.svg", quality)
    figures.diagnostics_figure(analysis, out / "diagnostics.svg")
    print(f"6 figures in {out}")


def cmd_tables(a):
    from . import tables

    evals = [read_json(p) for p in sorted(a.evals)]
    analyses = {}
    for p in a.analyses:
        d = read_json(p)
        analyses[(d["labels"]["benchmark"], d["labels"]["pool"])] = d
    quality = {bp: {s: v.get("consensus_key_match") for s, v in d["sources"].items()} for bp, d in analyses.items()}
    scaling = {}
    for p in a.scaling:
        d = read_json(p)
        lab = d["labels"]
        scaling[(lab["benchmark"], lab["pool"], lab["source"])] = d
    routers = {_labels(k): read_json(Path(v) / "router.json") for k, v in _pairs(a.cascal, "cascal").items()}
    made = [tables.main_table(evals, quality), tables.generators_table(analyses), tables.calibration_table(analyses),
            tables.scaling_table(scaling), tables.clusters_table(routers), tables.diagnostics_table(analyses),
            tables.agreement_table(analyses), tables.ranking_table(analyses)]
    for t in made:
        t.write(a.out_dir)
    print(", ".join(f"{t.name} ({len(t.rows)} rows)" for t in made))


# --------------------------------------------------------------------------- parser
def register(add) -> None:
    """Add the subcommands with rgd.cli's `add(name, fn, help)`."""
    s = add("config-snapshot", cmd_config_snapshot, "write the loaded config as canonical JSON, print its hash")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", help="the config as JSON text")
    g.add_argument("--config-file", help="the config as a JSON file")
    s.add_argument("--out", required=True)

    s = add("analyse", cmd_analyse, "skills, calibration and generator quality of one (benchmark, pool)")
    s.add_argument("--experts", nargs="+", required=True)
    s.add_argument("--questions", required=True, help="real training split")
    s.add_argument("--keys", required=True)
    s.add_argument("--consensus", required=True)
    for x in ("gen-questions", "gen-keys", "gen-consensus", "gen-meta"):
        s.add_argument(f"--{x}", nargs="*", metavar="SOURCE=FILE")
    s.add_argument("--bins", type=int, default=10)
    s.add_argument("--labels", required=True, help="BENCH/POOL")
    s.add_argument("--out", required=True)

    s = add("scaling", cmd_scaling, "CASCAL accuracy against the number of training questions")
    for x in ("questions", "embeddings", "consensus", "test-questions", "test-keys", "test-embeddings", "stats"):
        s.add_argument(f"--{x}", required=True)
    s.add_argument("--experts", nargs="+", required=True)
    s.add_argument("--test-responses", nargs="+", required=True, metavar="EXPERT=FILE")
    s.add_argument("--fractions", nargs="+", type=float, required=True)
    s.add_argument("--seeds", nargs="+", type=int, required=True)
    s.add_argument("--spec", type=json.loads, help="the cascal router's config entry (JSON)")
    s.add_argument("--labels", required=True, help="BENCH/POOL/SOURCE")
    s.add_argument("--out", required=True)

    s = add("figures", cmd_figures, "the report's figures of one (benchmark, pool)")
    s.add_argument("--analysis", required=True)
    s.add_argument("--evals", nargs="+", required=True)
    s.add_argument("--scaling", nargs="+", required=True, metavar="SOURCE=FILE")
    s.add_argument("--cascal", nargs="+", required=True, metavar="SOURCE=DIR")
    s.add_argument("--out-dir", required=True)

    s = add("tables", cmd_tables, "paper-style tables in Markdown, CSV and LaTeX")
    s.add_argument("--evals", nargs="+", required=True)
    s.add_argument("--analyses", nargs="+", required=True)
    s.add_argument("--scaling", nargs="+", required=True)
    s.add_argument("--cascal", nargs="+", required=True, metavar="BENCH/POOL/SOURCE=DIR")
    s.add_argument("--out-dir", required=True)
