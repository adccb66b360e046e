# Shared configuration, path patterns and input functions for every rule.
#
# Conventions, as in snakemake-workflows: a path is written once, as a plain pattern under the
# results folder (`results_path("data/{bench}/all.questions.jsonl")`); anything longer than a line
# that a rule needs is a named function here; every placeholder in a shell command is quoted
# (with the q format), so no config value or path ever reaches a shell unquoted (tests/test_rules.py checks both).
import json
import os
import re
from pathlib import Path

import rgd.config
import rgd.models
import rgd.routers
from rgd.recorded.recording import ANSWERS as RECORDED_ANSWERS
from snakemake.exceptions import WorkflowError

ROOT = Path(workflow.basedir).parent
try:  # the whole config, checked before any job: schema, names, references, every step's settings
    rgd.config.load(
        config,
        workflow.source_path("../schemas/config.schema.yaml"),
        files=[str(f) for f in workflow.configfiles],
    )
except rgd.config.ConfigError as e:
    raise WorkflowError(str(e)) from None

RESULTS = config["results"]
CACHE = config["model_cache"]
RAW = config["raw_data"]
# the project checkout, for `-e ${RGD_ROOT}` in envs/*.yaml (pip expands it when conda builds an env)
os.environ.setdefault("RGD_ROOT", str(ROOT))


def results_path(pattern):
    """A path pattern under the results folder (wildcards in braces, as Snakemake reads them)."""
    return os.path.join(RESULTS, pattern)


def log_path(pattern):
    """A job's log: results/logs/<pattern>.log."""
    return os.path.join(RESULTS, "logs", f"{pattern}.log")


def timing_path(pattern):
    """A job's Snakemake `benchmark:` record (wall time, memory): results/timings/<pattern>.tsv."""
    return os.path.join(RESULTS, "timings", f"{pattern}.tsv")


def run_record(pattern):
    """A job's run record (wall times, throughput, resumed records): a log, so never archived."""
    return os.path.join(RESULTS, "logs", f"{pattern}.run.json")


def project_file(path):
    """A config-relative data file (e.g. descriptions): the working directory first, then the
    project root, so the workflow also runs from another directory (--directory)."""
    return path if os.path.isabs(path) or os.path.exists(path) else str(ROOT / path)


def one_of(names):
    """A wildcard constraint matching exactly these names (none: matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


BENCHMARKS = list(config["benchmarks"])
POOLS = list(config["pools"])
GENERATORS = list(config.get("generators", {}))
ROUTERS = list(config["routers"])
# Generators whose set is also filtered (rules/filter.smk): source gen-<g>-filtered.
FILTERED = [g for g, c in config.get("generators", {}).items() if c.get("filter")]


def bench_pools(bench):
    """The pools run on a benchmark (its `pools`, default every pool)."""
    return config["benchmarks"][bench].get("pools", POOLS)


def bench_sources(bench):
    """A benchmark's training sources: the real train split, each of its generators' question
    sets, their filtered sets."""
    gens = config["benchmarks"][bench].get("generators", GENERATORS)
    return (
        ["train"]
        + [f"gen-{g}" for g in gens]
        + [f"gen-{g}-filtered" for g in gens if g in FILTERED]
    )


def bench_qsets(bench):
    return ["train", "test"] + bench_sources(bench)[1:]


# Every training source and question set of some benchmark (wildcard constraints).
SOURCES = list(dict.fromkeys(s for b in BENCHMARKS for s in bench_sources(b)))
QSETS = list(dict.fromkeys(q for b in BENCHMARKS for q in bench_qsets(b)))
KINDS = {b: c["source"]["kind"] for b, c in config["benchmarks"].items()}
EMBEDDED = [b for b in BENCHMARKS if KINDS[b] == "embedded-mmlu"]
RECORDED = [b for b in BENCHMARKS if KINDS[b] == "recorded"]
DOWNLOADED = [b for b in BENCHMARKS if b not in EMBEDDED + RECORDED]


wildcard_constraints:
    bench=one_of(BENCHMARKS),
    pool=one_of(POOLS),
    qset=one_of(["all"] + QSETS),
    source=one_of(SOURCES),
    router=one_of(ROUTERS),
    expert=one_of(config["experts"]),
    model=one_of(config["models"]),
    gen=one_of(GENERATORS),


def conda_env(backend):
    """The conda env of a rule family (used with --sdm conda), by backend."""
    family = {
        "transformers": "torch",
        "vllm": "vllm",
        "llamacpp": "torch",
        "gemini": "api",
        "openai": "api",
        "recorded": "core",
    }
    return f"../../envs/{family[backend]}.yaml"


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def questions(qset):
    return results_path(f"data/{{bench}}/{qset}.questions.jsonl")


def keys(qset):
    return results_path(f"data/{{bench}}/{qset}.keys.jsonl")


def model_manifest(model):
    return os.path.join(CACHE, model, "rgd-model.json")


def embedder_dir():
    """An exported embedder runtime's files in the model cache (rule export_embedder)."""
    e = config["embedder"]
    model = e.get("path") or e.get("model") or "embedder"
    name = e.get("package") or os.path.basename(os.path.normpath(model))
    return os.path.join(CACHE, "embedders", f"{name}-{e.get('runtime', 'torch')}")


def embedder_exported():
    """The export an embedding job reads: none for PyTorch, which reads the model as is."""
    if config["embedder"].get("runtime", "torch") == "torch":
        return []
    return os.path.join(embedder_dir(), "rgd-embedder.json")


def embed_spec(wildcards):
    """The embedder block as `rgd embed` reads it: an exported runtime with its files' directory."""
    spec = dict(config["embedder"])
    if embedder_exported():
        spec["exported"] = embedder_dir()
    return as_json(spec)


def is_local(backend):
    return backend in rgd.config.LOCAL_BACKENDS


# Per-(benchmark, pool, source, router) outputs that several rule files name.
ROUTE = results_path("routes/{bench}/{pool}/{source}/{router}.jsonl")
EVAL = results_path("eval/{bench}/{pool}/{source}/{router}.json")
ANALYSIS = results_path("analysis/{bench}/{pool}.json")
SCALING = results_path("scaling/{bench}/{pool}/{source}.json")
CASCAL = results_path("routers/{bench}/{pool}/{source}/cascal")


def every(pattern, bench=None, pool=None, pools=None):
    """`pattern` for every (benchmark, pool, source, router) the config runs: each benchmark with
    its own pools and sources. `bench` and `pool` fix one (a per-(benchmark, pool) job's inputs);
    `pools` keeps only those pools. Wildcards the pattern lacks are not expanded over.
    """
    names = set(re.findall(r"{(\w+)}", pattern))
    out = []
    for b in [bench] if bench else BENCHMARKS:
        for p in [pool] if pool else bench_pools(b):
            for s in bench_sources(b) if "source" in names else [None]:
                for r in ROUTERS if "router" in names else [None]:
                    if pools is None or p in pools:
                        out.append(pattern.format(bench=b, pool=p, source=s, router=r))
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- data (data.smk)
def bench_source(wildcards):
    return config["benchmarks"][wildcards.bench]["source"]


def split_settings(wildcards):
    return config["benchmarks"][wildcards.bench]["split"]


def split_test_ids(wildcards):
    """The optional file of test ids that fixes a benchmark's split."""
    path = split_settings(wildcards).get("test_ids")
    return [project_file(path)] if path else []


def optional_args(settings, *names):
    """`--name value` for each of `names` that `settings` sets (the step's default otherwise)."""
    return [
        a
        for n in names
        if n in settings
        for a in (f"--{n.replace('_', '-')}", str(settings[n]))
    ]


def recorded_models(wildcards):
    """The recorded models of a recorded benchmark's pools (their source names, sorted)."""
    models = {
        config["experts"][e]["model"]
        for p in bench_pools(wildcards.bench)
        for e in config["pools"][p]
    }
    return sorted(config["models"][m]["source"]["name"] for m in models)


# --------------------------------------------------------------------------- experts (respond.smk)
def model_engine(model, backend):
    """Engine settings of a registry model: vLLM's (rgd.backends.vllm.EngineSpec), or the
    transformers backend's (dtype only)."""
    m = config["models"][model]
    if backend == "recorded":
        return {"name": m["source"]["name"]}
    names = ("dtype", "max_model_len", "gpu_memory_utilization", "engine_args")
    e = {k: m[k] for k in (names if backend == "vllm" else names[:1]) if k in m}
    if backend == "vllm" and "tensor_parallel" in m.get("resources", {}):
        e["tensor_parallel"] = m["resources"]["tensor_parallel"]
    return e


def expert_spec(expert):
    """An expert's settings with its model's registry defaults (backend, template, tokens, engine)."""
    e = dict(config["experts"][expert])
    m = config["models"][e["model"]]
    e.setdefault("backend", m.get("backend", "transformers"))
    e.setdefault("template_kwargs", m.get("template_kwargs", {}))
    if "max_new_tokens" in m and e.get("mode") == "cot":
        e["sampling"] = {"max_new_tokens": m["max_new_tokens"]} | e.get("sampling", {})
    if engine := model_engine(e["model"], e["backend"]):
        e["engine"] = engine
    return e


def model_backends(model):
    """The backends of the experts and generators that run `model`."""
    users = {
        expert_spec(e)["backend"]
        for e, x in config["experts"].items()
        if x["model"] == model
    }
    return users | {
        g["backend"]
        for g in config.get("generators", {}).values()
        if g.get("model") == model
    }


def weightless(model):
    """A GGUF model that only llamacpp experts and generators run: materialised without its
    dequantised weights (rgd materialise --gguf-only)."""
    source = config["models"][model]["source"]["kind"]
    return source in rgd.models.GGUF_KINDS and model_backends(model) == {"llamacpp"}


def gguf_flags(model):
    """rgd materialise's GGUF flag (docs/MODELS.md): --gguf-only for a weightless model,
    --keep-gguf for one a llamacpp job runs beside another backend, none where no llamacpp job
    runs it."""
    if weightless(model):
        return ["--gguf-only"]
    return ["--keep-gguf"] if "llamacpp" in model_backends(model) else []


def recording(model):
    """The recording directory of a recorded model (None for a model with weights)."""
    source = config["models"][model]["source"]
    return project_file(source["path"]) if source["kind"] == "recorded" else None


def expert_model(wildcards):
    """What an expert's respond job loads: the model manifest, or a recorded model's answers."""
    model = config["experts"][wildcards.expert]["model"]
    rec = recording(model)
    return os.path.join(rec, RECORDED_ANSWERS) if rec else model_manifest(model)


def pool_members(wildcards):
    return config["pools"][wildcards.pool]


def pool_responses(wildcards, qset=None):
    """{expert: response file} of the pool on a question set (default: the job's own)."""
    qset = qset or wildcards.qset
    return {
        e: results_path(f"responses/{wildcards.bench}/{qset}/{e}.jsonl")
        for e in pool_members(wildcards)
    }


def test_responses(wildcards):
    return pool_responses(wildcards, "test")


def pairs(mapping):
    """NAME=PATH arguments (each quoted on its own by :q in the shell line)."""
    return [f"{k}={v}" for k, v in mapping.items()]


# --------------------------------------------------------------------------- generators (generate.smk)
def generator_spec(wildcards):
    g = dict(config["generators"][wildcards.gen])
    g.setdefault("seed", config["seed"])
    if is_local(g["backend"]):  # registry defaults
        m = config["models"][g["model"]]
        if m.get("template_kwargs"):
            g.setdefault("template_kwargs", m["template_kwargs"])
        if "max_new_tokens" in m:
            g["sampling"] = {"max_new_tokens": m["max_new_tokens"]} | g.get(
                "sampling", {}
            )
        if engine := model_engine(g["model"], g["backend"]):
            g["engine"] = engine
    return g


def generator_model(wildcards):
    """The model manifest a local generator loads (an API generator loads none)."""
    g = config["generators"][wildcards.gen]
    return model_manifest(g["model"]) if is_local(g["backend"]) else []


def model_dir_arg(wildcards, input):
    return ["--model-dir", os.path.dirname(input.model)] if input.model else []


def descriptions_file(wildcards):
    return project_file(config["benchmarks"][wildcards.bench]["descriptions"])


# --------------------------------------------------------------------------- filters (filter.smk)
def filter_spec(wildcards):
    return {"seed": config["seed"], **config["generators"][wildcards.gen]["filter"]}


def filter_inputs(wildcards):
    """The generated set, its keys, and the responses each configured criterion reads."""
    f = config["generators"][wildcards.gen]["filter"]
    base = results_path(f"data/{wildcards.bench}/gen-{wildcards.gen}")
    resp = results_path(f"responses/{wildcards.bench}/gen-{wildcards.gen}")
    inputs = {"questions": f"{base}.questions.jsonl", "keys_file": f"{base}.keys.jsonl"}
    if "self_consistency" in f:
        inputs["own"] = f"{resp}/{f['self_consistency']['expert']}.jsonl"
    if "differentiation" in f:
        pool = config["pools"][f["differentiation"]["pool"]]
        inputs["pool"] = [f"{resp}/{e}.jsonl" for e in pool]
    return inputs


def filter_args(wildcards, input):
    """--own-responses FILE and --pool-responses EXPERT=FILE ..., as the filter's criteria need."""
    f = config["generators"][wildcards.gen]["filter"]
    args = []
    if "own" in input.keys():
        args += ["--own-responses", input.own]
    if "pool" in input.keys():
        pool = config["pools"][f["differentiation"]["pool"]]
        args += ["--pool-responses", *pairs(dict(zip(pool, input.pool)))]
    return args


# --------------------------------------------------------------------------- routers (route.smk)
def train_inputs(wildcards):
    src = wildcards.source
    inputs = {
        "questions": results_path(f"data/{wildcards.bench}/{src}.questions.jsonl"),
        "embeddings": results_path(f"embeddings/{wildcards.bench}/{src}.npz"),
        "consensus": results_path(
            f"consensus/{wildcards.bench}/{wildcards.pool}/{src}.jsonl"
        ),
    }
    # Label-free by construction: only query-answer routers get the key file.
    if rgd.routers.needs_keys(wildcards.router):
        inputs["keys_file"] = results_path(f"data/{wildcards.bench}/{src}.keys.jsonl")
    return inputs


def key_arg(wildcards, input):
    return ["--keys", input.keys_file] if "keys_file" in input.keys() else []


def router_spec(wildcards):
    return {"seed": config["seed"], **config["routers"][wildcards.router]}


def labels(wildcards):
    """The (benchmark, pool, source, router) a job's outputs are about."""
    names = {
        "bench": "benchmark",
        "pool": "pool",
        "source": "source",
        "router": "router",
    }
    return {label: wildcards[w] for w, label in names.items() if w in wildcards.keys()}


# --------------------------------------------------------------------------- report (report.smk)
REPORT_CFG = config.get("report", {})
SCALING_CFG = REPORT_CFG.get("scaling", {})
# seed stability (rule seed_spread) and the estimator comparison (rule estimators), both optional
ROUTER_SEEDS = REPORT_CFG.get("router_seeds", [])
SEED_SPREAD = results_path("seeds/{bench}/{pool}/{source}/{router}.json")
SEED_FILES = every(SEED_SPREAD) if ROUTER_SEEDS else []
ESTIMATORS = results_path("estimators/{bench}/{pool}.json")
ESTIMATOR_FILES = every(ESTIMATORS) if REPORT_CFG.get("estimators", True) else []
ARCHIVE = results_path(
    f"archive/rgd-results-{rgd.config.config_hash(config)[:12]}.tar.gz"
)
# generated sets with a generation meta file (filtered sets have none)
GEN_META = [f"gen-{g}" for g in GENERATORS]
FIGURES = ["accuracy", "skills", "calibration", "clusters", "scaling", "diagnostics"]
TABLES = [
    "main",
    "generators",
    "calibration",
    "scaling",
    "clusters",
    "diagnostics",
    "agreement",
    "ranking",
    "estimators",
    "seeds",
]
CAPTIONS = "../report"
FIGURE_FILES = [
    f
    for fig in FIGURES
    for f in every(results_path(f"figures/{{bench}}/{{pool}}/{fig}.svg"))
]
TABLE_FILES = expand(
    results_path("tables/{t}.{ext}"), t=TABLES, ext=["md", "csv", "tex"]
)
SUMMARY_FILES = [results_path("tables/summary.csv"), results_path("tables/summary.md")]
# models whose manifests (revisions) go into the archive's MANIFEST
# (a recorded model has no manifest: its recording's digests are in each response's .meta.json)
USED_MODELS = sorted(
    m
    for m in {
        config["experts"][e]["model"] for p in config["pools"].values() for e in p
    }
    | {g["model"] for g in config.get("generators", {}).values() if "model" in g}
    if not recording(m)
)


def generated_files(wildcards):
    """{kind: {source: file}} of every generated training source, as `rgd analyse` reads them."""
    b, p = wildcards.bench, wildcards.pool
    kinds = {
        "questions": "data/{b}/{s}.questions.jsonl",
        "keys": "data/{b}/{s}.keys.jsonl",
        "consensus": "consensus/{b}/{p}/{s}.jsonl",
    }
    out = {
        kind: {s: results_path(pat.format(b=b, p=p, s=s)) for s in bench_sources(b)[1:]}
        for kind, pat in kinds.items()
    }
    out["meta"] = {
        s: results_path(f"data/{b}/{s}.meta.json")
        for s in bench_sources(b)
        if s in GEN_META
    }
    return out


def analyse_inputs(wildcards):
    return [f for files in generated_files(wildcards).values() for f in files.values()]


def analyse_args(wildcards):
    return [
        a
        for kind, files in generated_files(wildcards).items()
        if files
        for a in [f"--gen-{kind}", *pairs(files)]
    ]


def per_source(pattern):
    """{source: file} of a per-(benchmark, pool, source) pattern, for one (benchmark, pool) job."""

    def files(wildcards):
        return {
            s: pattern.format(bench=wildcards.bench, pool=wildcards.pool, source=s)
            for s in bench_sources(wildcards.bench)
        }

    return files


def figure(name, caption, category, title):
    """A figure of one (benchmark, pool), registered for the HTML report."""
    return report(
        results_path(f"figures/{{bench}}/{{pool}}/{name}.svg"),
        caption=f"{CAPTIONS}/{caption}.rst",
        category=category,
        subcategory="{bench} / {pool}",
        labels={"benchmark": "{bench}", "pool": "{pool}", "figure": title},
    )


def archived_results(wildcards, input):
    """What the archive holds under results/: each benchmark's data folder, each question set's
    responses folder (answers, confidences, .meta.json), then the declared inputs file by file.
    Not the HTML report: `snakemake --report` embeds job runtimes and its creation time, so it
    would make two runs of the same inputs differ; it stays beside the archive."""
    return (
        [results_path(f"data/{b}") for b in BENCHMARKS]
        + [
            results_path(f"responses/{b}/{q}")
            for b in BENCHMARKS
            for q in bench_qsets(b)
        ]
        + [
            *input.consensus,
            *input.routers,
            *input.routes,
            *input.evals,
            *input.analyses,
            *input.scaling,
            *input.robustness,
            *input.tradeoffs,
            *input.tables,
            *input.figures,
        ]
    )


# --------------------------------------------------------------------------- accuracy and cost (tradeoff.smk)
TRADEOFF = results_path("tradeoff/{bench}/{pool}/{source}.json")


def pool_costs(pool):
    """{expert: cost} of a pool from its models' registry `cost`; None if a member has none."""
    costs = {
        e: config["models"][config["experts"][e]["model"]].get("cost")
        for e in config["pools"][pool]
    }
    return costs if all(costs.values()) else None


COST_POOLS = [p for p in POOLS if pool_costs(p)]
TRADEOFF_FIGURES = every(
    results_path("figures/{bench}/{pool}/cost.svg"), pools=COST_POOLS
)
TRADEOFF_TABLES = (
    expand(results_path("tables/cost.{ext}"), ext=["md", "csv", "tex"])
    if every(TRADEOFF, pools=COST_POOLS)
    else []
)


def source_routes(wildcards):
    """{router: route file} of one (benchmark, pool, source)."""
    return {
        r: ROUTE.format(
            bench=wildcards.bench,
            pool=wildcards.pool,
            source=wildcards.source,
            router=r,
        )
        for r in ROUTERS
    }
