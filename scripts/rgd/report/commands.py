"""`rgd` subcommands of the reproducibility deliverables (registered by rgd.cli.build_parser).

  rgd config-snapshot   the loaded config as canonical JSON; prints the config hash
  rgd analyse           skills, calibration and generator quality of one (benchmark, pool)
  rgd scaling           the data-scaling curve of one (benchmark, pool, training source)
  rgd figures           the report's SVG figures of one (benchmark, pool)
  rgd tables            paper-style tables (Markdown, CSV, LaTeX)
  rgd seed-spread       one router retrained under several seeds (seed stability)
  rgd estimators        the label-free skill estimators compared on one (benchmark, pool)
(`rgd archive` and `rgd verify` live in rgd/archive/commands.py.)
"""

from __future__ import annotations

from pathlib import Path

from ..args import IN, OUT, OUT_DIR, PAIRS, PAIRS_DIR, count, fraction, json_object
from ..io import InputError, read_json, write_json
from ..spec import SpecError
from .files import read_analysis, read_eval, read_router_header, read_scaling


def _labels(text: str, n: int, option: str = "--labels") -> tuple[str, ...]:
    parts = tuple(text.split("/"))
    if len(parts) != n or not all(parts):
        raise SpecError(option, None, f"expected {n} names separated by '/', got {text!r}")
    return parts


# --------------------------------------------------------------------------- commands
def cmd_config_snapshot(a):
    from ..archive import canonical_config, config_hash
    from ..io import write_text

    config = a.config if a.config is not None else read_json(a.config_file)
    if not isinstance(config, dict):
        raise InputError(a.config_file, None, None, f"expected a JSON object, got {type(config).__name__}")
    write_text(a.out, canonical_config(config).decode())
    print(config_hash(config))


def cmd_analyse(a):
    from .analysis import analyse

    labels = _labels(a.labels, 2)
    gen_q, gen_k, gen_c, gen_m = (x or {} for x in (a.gen_questions, a.gen_keys, a.gen_consensus, a.gen_meta))
    if not (set(gen_q) == set(gen_k) == set(gen_c)) or not set(gen_m) <= set(gen_q):
        raise InputError(
            "<command line>", None, "gen-*", "every generated set needs questions, keys and consensus"
        )
    generated = {
        s: {"questions": gen_q[s], "keys": gen_k[s], "consensus": gen_c[s], "meta": gen_m.get(s)}
        for s in sorted(gen_q)
    }
    real = {"questions": a.questions, "keys": a.keys, "consensus": a.consensus}
    out = analyse(a.experts, real, generated, a.bins)
    out["labels"] = dict(zip(("benchmark", "pool"), labels))
    write_json(a.out, out)
    cal = out["calibration"]["pooled"]
    print(
        f"AUROC (all models) {cal['auroc']}, same best model in {out['skills']['n_same_best_model']} "
        f"of {len(out['skills']['subjects'])} subjects"
    )


def cmd_scaling(a):
    from ..spec import parse
    from ..train import TrainSpec, check_router_settings
    from .scaling import load_test_set, run

    labels = _labels(a.labels, 3)
    spec = parse(TrainSpec, a.spec or {}, "--spec")
    test = load_test_set(a.test_questions, a.test_keys, a.test_embeddings, a.test_responses, a.stats)
    check_router_settings("cascal", spec)
    out = run(a.questions, a.embeddings, a.consensus, a.experts, test, a.fractions, a.seeds, spec.params)
    out["labels"] = dict(zip(("benchmark", "pool", "source"), labels))
    write_json(a.out, out)
    for r in out["summary"]:
        print(
            f"fraction {r['fraction']:g} (n={r['n_train']:g}): top1 {r['top1_mean']:.3f} ± "
            f"{r['top1_std']:.3f}"
        )


def cmd_figures(a):
    analysis = read_analysis(a.analysis)  # every input is read before the first figure is drawn
    quality = {s: p.get("consensus_key_match") for s, p in analysis["sources"].items()}
    out = Path(a.out_dir)
    evals = [read_eval(p) for p in sorted(a.evals)]
    routers = {s: read_router_header(d) for s, d in a.cascal.items()}
    scaling = {s: read_scaling(p) for s, p in a.scaling.items()}
    from . import figures  # matplotlib: after the inputs are checked

    figures.accuracy_figure(evals, quality, out / "accuracy.svg")
    figures.skills_figure(analysis["skills"], out / "skills.svg")
    figures.calibration_figure(analysis["calibration"], out / "calibration.svg")
    figures.clusters_figure(routers, out / "clusters.svg", quality)
    figures.scaling_figure(scaling, out / "scaling.svg", quality)
    figures.diagnostics_figure(analysis, out / "diagnostics.svg")
    print(f"6 figures in {out}")


def cmd_tables(a):
    from . import tables

    evals = [read_eval(p) for p in sorted(a.evals)]
    analyses = {}
    for p in a.analyses:
        d = read_analysis(p)
        analyses[(d["labels"]["benchmark"], d["labels"]["pool"])] = d
    quality = {
        bp: {s: v.get("consensus_key_match") for s, v in d["sources"].items()} for bp, d in analyses.items()
    }
    scaling = {}
    for p in a.scaling:
        d = read_scaling(p)
        lab = d["labels"]
        scaling[(lab["benchmark"], lab["pool"], lab["source"])] = d
    routers = {_labels(k, 3, "--cascal"): read_router_header(v) for k, v in a.cascal.items()}
    made = [
        tables.main_table(evals, quality),
        tables.generators_table(analyses),
        tables.calibration_table(analyses),
        tables.scaling_table(scaling),
        tables.clusters_table(routers),
        tables.diagnostics_table(analyses),
        tables.agreement_table(analyses),
        tables.ranking_table(analyses),
        tables.estimators_table([read_json(p) for p in a.estimators or []]),
        tables.seeds_table([read_json(p) for p in a.seeds or []]),
    ]
    for t in made:
        t.write(a.out_dir)
    print(", ".join(f"{t.name} ({len(t.rows)} rows)" for t in made))


# --------------------------------------------------------------------------- parser
def _add_config_snapshot(add) -> None:
    s = add(
        "config-snapshot", cmd_config_snapshot, "write the loaded config as canonical JSON, print its hash"
    )
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", type=json_object, help="the config as JSON text")
    g.add_argument("--config-file", help="the config as a JSON file")
    s.path_kinds["config_file"] = IN  # a group's add_argument does not take path=
    s.add_argument("--out", required=True, path=OUT, help="canonical JSON to write")


def _add_analyse(add) -> None:
    s = add("analyse", cmd_analyse, "skills, calibration and generator quality of one (benchmark, pool)")
    s.add_argument("--experts", nargs="+", required=True, help="the pool, in order")
    s.add_argument("--questions", required=True, path=IN, help="real training split")
    s.add_argument("--keys", required=True, path=IN, help="its answer keys")
    s.add_argument("--consensus", required=True, path=IN, help="the pool's consensus rows on it")
    for x, what in (
        ("questions", "questions"),
        ("keys", "keys"),
        ("consensus", "consensus rows"),
        ("meta", ".meta.json"),
    ):
        s.add_argument(
            f"--gen-{x}", nargs="*", metavar="SOURCE=FILE", path=PAIRS, help=f"each generated set's {what}"
        )
    s.add_argument("--bins", type=count(1), default=10, help="reliability-diagram bins (default %(default)s)")
    s.add_argument("--labels", required=True, help="BENCH/POOL")
    s.add_argument("--out", required=True, path=OUT, help="analysis JSON to write")


def _add_training_and_test(s, consensus: bool = True) -> None:
    """The options of a job that trains on a source and evaluates on the real test set."""
    for x, what in (
        ("questions", "the training source's questions"),
        ("embeddings", "their embeddings (.npz)"),
        *([("consensus", "the pool's consensus rows on them")] if consensus else []),
        ("test-questions", "the test questions"),
        ("test-keys", "the test keys"),
        ("test-embeddings", "the test embeddings (.npz)"),
        ("stats", "consensus stats of the training source (tie-break z)"),
    ):
        s.add_argument(f"--{x}", required=True, path=IN, help=what)
    s.add_argument("--experts", nargs="+", required=True, help="the pool, in order")
    s.add_argument(
        "--test-responses",
        nargs="+",
        required=True,
        metavar="EXPERT=FILE",
        path=PAIRS,
        help="each pool expert's test responses",
    )


def _add_scaling(add) -> None:
    s = add("scaling", cmd_scaling, "CASCAL accuracy against the number of training questions")
    _add_training_and_test(s)
    s.add_argument(
        "--fractions",
        nargs="+",
        type=fraction(include_one=True),
        required=True,
        help="training fractions in (0, 1]",
    )
    s.add_argument("--seeds", nargs="+", type=int, required=True, help="replicate seeds")
    s.add_argument("--spec", type=json_object, help="the cascal router's config entry (JSON)")
    s.add_argument("--labels", required=True, help="BENCH/POOL/SOURCE")
    s.add_argument("--out", required=True, path=OUT, help="scaling JSON to write")


def _add_figures(add) -> None:
    s = add("figures", cmd_figures, "the report's figures of one (benchmark, pool)")
    s.add_argument("--analysis", required=True, path=IN, help="the `rgd analyse` output")
    s.add_argument("--evals", nargs="+", required=True, path=IN, help="evaluation JSON files")
    s.add_argument(
        "--scaling",
        nargs="+",
        required=True,
        metavar="SOURCE=FILE",
        path=PAIRS,
        help="each source's `rgd scaling` output",
    )
    s.add_argument(
        "--cascal",
        nargs="+",
        required=True,
        metavar="SOURCE=DIR",
        path=PAIRS_DIR,
        help="each source's CASCAL router directory",
    )
    s.add_argument("--out-dir", required=True, path=OUT_DIR, help="folder for the SVG figures")


def _add_tables(add) -> None:
    s = add("tables", cmd_tables, "paper-style tables in Markdown, CSV and LaTeX")
    s.add_argument("--evals", nargs="+", required=True, path=IN, help="evaluation JSON files")
    s.add_argument("--analyses", nargs="+", required=True, path=IN, help="`rgd analyse` outputs")
    s.add_argument("--scaling", nargs="+", required=True, path=IN, help="`rgd scaling` outputs")
    s.add_argument(
        "--cascal",
        nargs="+",
        required=True,
        metavar="BENCH/POOL/SOURCE=DIR",
        path=PAIRS_DIR,
        help="CASCAL router directories",
    )
    s.add_argument("--estimators", nargs="*", path=IN, help="`rgd estimators` files (table estimators)")
    s.add_argument("--seeds", nargs="*", path=IN, help="`rgd seed-spread` files (table seeds)")
    s.add_argument("--out-dir", required=True, path=OUT_DIR, help="folder for the tables")


def cmd_seed_spread(a):
    from ..spec import parse
    from ..train import TrainSpec, training_set
    from .robustness import seed_spread
    from .scaling import load_test_set

    labels = _labels(a.labels, 4)
    spec = parse(TrainSpec, a.spec or {}, "--spec")
    data = training_set(a.kind, spec, a.questions, a.embeddings, a.consensus, a.experts, a.keys)
    test = load_test_set(a.test_questions, a.test_keys, a.test_embeddings, a.test_responses, a.stats)
    out = seed_spread(a.kind, spec.params, data, test, a.seeds)
    out["labels"] = dict(zip(("benchmark", "pool", "source", "router"), labels))
    write_json(a.out, out)
    t = out["top1"]
    print(f"{a.kind}: top1 over {len(a.seeds)} seeds {t['mean']:.3f} ± {t['sd']:.3f}")


def _add_seed_spread(add) -> None:
    s = add("seed-spread", cmd_seed_spread, "one router retrained under several seeds, each evaluated")
    s.add_argument("--kind", required=True, help="the router kind")
    _add_training_and_test(s)
    s.add_argument("--keys", path=IN, help="the training source's keys (query-answer routers only)")
    s.add_argument("--seeds", nargs="+", type=int, required=True, help="the seeds")
    s.add_argument("--spec", type=json_object, help="the router's config entry (JSON)")
    s.add_argument("--labels", required=True, help="BENCH/POOL/SOURCE/ROUTER")
    s.add_argument("--out", required=True, path=OUT, help="seed-spread JSON to write")


def cmd_estimators(a):
    from .robustness import compare_estimators
    from .scaling import load_test_set

    labels = _labels(a.labels, 2)
    test = load_test_set(a.test_questions, a.test_keys, a.test_embeddings, a.test_responses, a.stats)
    out = compare_estimators(
        a.questions, a.keys, a.embeddings, a.responses, a.consensus_spec or {}, a.cascal_spec or {}, test
    )
    out["labels"] = dict(zip(("benchmark", "pool"), labels))
    write_json(a.out, out)
    for name, r in out["estimators"].items():
        print(f"{name}: spearman {r['spearman_model_category']}, cascal top1 {r['cascal_top1']:.3f}")


def _add_estimators(add) -> None:
    s = add("estimators", cmd_estimators, "the label-free skill estimators compared on one pool")
    _add_training_and_test(s, consensus=False)
    s.add_argument("--keys", required=True, path=IN, help="the training split's keys (evaluation)")
    s.add_argument(
        "--responses", nargs="+", required=True, metavar="EXPERT=FILE", path=PAIRS, help="training responses"
    )
    s.add_argument("--consensus-spec", type=json_object, help="the config's consensus block (JSON)")
    s.add_argument("--cascal-spec", type=json_object, help="the cascal router's config entry (JSON)")
    s.add_argument("--labels", required=True, help="BENCH/POOL")
    s.add_argument("--out", required=True, path=OUT, help="estimators JSON to write")


def register(add) -> None:
    """Add the subcommands with rgd.cli's `add(name, fn, help)`."""
    for one in (
        _add_config_snapshot,
        _add_analyse,
        _add_scaling,
        _add_figures,
        _add_tables,
        _add_seed_spread,
        _add_estimators,
    ):
        one(add)
