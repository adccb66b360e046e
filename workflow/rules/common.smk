# Shared configuration, validation and path helpers for every rule.
import json
import os
import re
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

RESULTS = config.get("results", "results")
CACHE = config.get("model_cache", "resources/models")
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
RGD = "rgd"  # unused: shells write `rgd` literally (snakemake --lint flags globals in shell)
ROOT = Path(workflow.basedir).parent
# the project checkout, for `-e ${RGD_ROOT}` in envs/*.yaml (pip expands it when conda builds an env)
os.environ.setdefault("RGD_ROOT", str(ROOT))


def project_file(path):
    """A config-relative data file (e.g. descriptions): the working directory first, then the
    project root, so the workflow also runs from another directory (--directory)."""
    return path if os.path.isabs(path) or os.path.exists(path) else str(ROOT / path)


def one_of(names):
    """A wildcard regex matching exactly these names (none: matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def _check_references():
    """Cross-references the schema cannot express, checked before any job starts."""
    errors = []
    for name, e in config["experts"].items():
        if e["model"] not in config["models"]:
            errors.append(f"experts.{name}.model: unknown model {e['model']!r}")
    for name, members in config["pools"].items():
        for m in members:
            if m not in config["experts"]:
                errors.append(f"pools.{name}: unknown expert {m!r}")
    for name, g in config.get("generators", {}).items():
        local = g.get("backend", "transformers") in ("transformers", "vllm")
        if local and g.get("model") not in config["models"]:
            errors.append(f"generators.{name}.model: unknown model {g.get('model')!r}")
    from rgd.routers import make as make_router

    for name, r in config["routers"].items():
        try:  # builds the router object: unknown or out-of-range knobs fail here, not mid-run
            make_router(name, r.get("params", {}), config.get("seed", 0))
        except (TypeError, ValueError) as err:
            errors.append(f"routers.{name}.params: {err}")
    if errors:
        raise ValueError("invalid config:\n  " + "\n  ".join(errors))


def _check_filters():
    """A filter's self-consistency expert is the generator's own model run as a responder."""
    errors = []
    gens = config.get("generators", {})
    for name, g in gens.items():
        f = g.get("filter") or {}
        if f and f"{name}-filtered" in gens:
            errors.append(
                f"generators.{name}-filtered: the name is taken by {name}'s filtered set"
            )
        expert = f.get("self_consistency", {}).get("expert")
        if expert is not None:
            if expert not in config["experts"]:
                errors.append(
                    f"generators.{name}.filter.self_consistency.expert: unknown expert {expert!r}"
                )
            elif config["experts"][expert]["model"] != g.get("model"):
                errors.append(
                    f"generators.{name}.filter.self_consistency.expert: {expert!r} runs model "
                    f"{config['experts'][expert]['model']!r}, not the generator's {g.get('model')!r} "
                    "(the generator must answer its own questions; an API generator cannot)"
                )
        pool = f.get("differentiation", {}).get("pool")
        if pool is not None and pool not in config["pools"]:
            errors.append(
                f"generators.{name}.filter.differentiation.pool: unknown pool {pool!r}"
            )
    if errors:
        raise ValueError("invalid config:\n  " + "\n  ".join(errors))


_check_references()
_check_filters()

BENCHMARKS = list(config["benchmarks"])
POOLS = list(config["pools"])
GENERATORS = list(config.get("generators", {}))
ROUTERS = list(config["routers"])
# Generators whose set is also filtered (rules/filter.smk): source gen-<g>-filtered.
FILTERED = [g for g, c in config.get("generators", {}).items() if c.get("filter")]
# Training sources: the real train split, each generator's question set, the filtered sets.
SOURCES = (
    ["train"]
    + [f"gen-{g}" for g in GENERATORS]
    + [f"gen-{g}-filtered" for g in FILTERED]
)
QSETS = ["train", "test"] + SOURCES[1:]
# Routers that learn from answer keys; every other router never gets a key file.
QUERY_ANSWER = {"cascal-gt", "knn", "mlp", "mf", "best-single"}


wildcard_constraints:
    bench="|".join(BENCHMARKS) or "none",
    pool="|".join(POOLS) or "none",
    qset="train|test|all|gen-[A-Za-z0-9_.-]+",
    source="train|gen-[A-Za-z0-9_.-]+",
    router="|".join(ROUTERS) or "none",
    expert="|".join(config["experts"]) or "none",
    model="|".join(config["models"]) or "none",
    gen=one_of(GENERATORS),


def conda_env(backend):
    """The conda env of a rule family (used with --sdm conda), by backend."""
    family = {
        "transformers": "torch",
        "vllm": "vllm",
        "gemini": "api",
        "openai": "api",
    }[backend]
    return f"../../envs/{family}.yaml"


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def questions(qset):
    return f"{RESULTS}/data/{{bench}}/{qset}.questions.jsonl"


def keys(qset):
    return f"{RESULTS}/data/{{bench}}/{qset}.keys.jsonl"


def model_manifest(model):
    return f"{CACHE}/{model}/rgd-model.json"


def expert_spec(expert):
    e = dict(config["experts"][expert])
    m = config["models"][e["model"]]
    e.setdefault("backend", m.get("backend", "transformers"))
    e.setdefault("template_kwargs", m.get("template_kwargs", {}))
    if "max_new_tokens" in m and e.get("mode") == "cot":
        e["sampling"] = {"max_new_tokens": m["max_new_tokens"]} | e.get("sampling", {})
    if engine := model_engine(e["model"], e["backend"]):
        e["engine"] = engine
    return e


def model_engine(model, backend):
    """Engine settings of a registry model: vLLM's (rgd.backends.vllm.EngineSpec), or the
    transformers backend's (dtype only)."""
    m = config["models"][model]
    keys = ("dtype", "max_model_len", "gpu_memory_utilization", "engine_args")
    e = {k: m[k] for k in (keys if backend == "vllm" else keys[:1]) if k in m}
    if backend == "vllm" and "tensor_parallel" in m.get("resources", {}):
        e["tensor_parallel"] = m["resources"]["tensor_parallel"]
    return e


def pool_responses(wildcards, qset=None):
    qset = qset or wildcards.qset
    return {
        e: f"{RESULTS}/responses/{wildcards.bench}/{qset}/{e}.jsonl"
        for e in config["pools"][wildcards.pool]
    }


def pairs(mapping):
    return " ".join(f"{k}={v}" for k, v in mapping.items())


# SLURM resources (profiles/slurm, docs/SLURM.md). A job that runs a model asks for what the
# registry says (models.<name>.resources, embedder.resources); every other job is a small CPU job.
# Where a job runs (partition, account, GPU model) is site-specific: it comes from the environment
# (RGD_SLURM_<KEY>) or the site file ($RGD_SLURM_SITE, default profiles/slurm/site.yaml).
CPU_JOB = {"cpus": 1, "mem_mb": 2000, "runtime": 30}
MODEL_JOB = {"cpus": 2, "mem_mb": 8000, "runtime": 60}
SITE_KEYS = ("partition", "gpu_partition", "account", "gpu_model")


def slurm_site():
    """Site values, environment first; a key that is unset is left to the profile and SLURM."""
    import yaml

    path = Path(os.environ.get("RGD_SLURM_SITE") or ROOT / "profiles/slurm/site.yaml")
    site = {}
    if "RGD_SLURM_SITE" in os.environ or path.exists():
        site = yaml.safe_load(path.read_text()) or {}
        if not isinstance(site, dict):
            raise ValueError(f"{path}: not a mapping of site keys")
        unknown = sorted(set(site) - set(SITE_KEYS))
        if unknown:
            known = list(SITE_KEYS)
            raise ValueError(f"{path}: unknown key(s) {unknown}; known keys: {known}")
    for key in SITE_KEYS:
        site[key] = os.environ.get(f"RGD_SLURM_{key.upper()}") or site.get(key)
    return {k: str(v) for k, v in site.items() if v not in (None, "")}


SLURM_SITE = slurm_site()


def model_resources(spec, attempt=1):
    """SLURM resources of one job. spec: the registry `resources` of the model the job
    runs (None: a CPU job, which asks for no GPU). Runtime grows with the attempt, so a
    retried job gets more time."""
    r = {**(CPU_JOB if spec is None else MODEL_JOB), **(spec or {})}
    # a vLLM model spans tensor_parallel GPUs unless `gpus` says otherwise
    gpus = r.get("gpus", r.get("tensor_parallel", 0))
    gpu_model = r.get("gpu_model") or SLURM_SITE.get("gpu_model")
    partition = gpus and SLURM_SITE.get("gpu_partition")
    return {
        "gpu": gpus,  # sbatch --gpus=N, or --gpus=<gpu_model>:N
        "gpu_model": gpu_model if gpus else None,
        "cpus_per_task": r["cpus"],
        "mem_mb": r["mem_mb"],
        "runtime": r["runtime"] * attempt,
        "slurm_partition": partition or SLURM_SITE.get("partition"),
        "slurm_account": SLURM_SITE.get("account"),
    }


def rule_resources(spec_of=None):
    """A rule's `resources:`, one function per key; spec_of(wildcards) gives the registry
    entry. Unset site keys stay out, so the profile's default-resources still apply."""
    keys = ["gpu", "cpus_per_task", "mem_mb", "runtime"]
    keys += ["gpu_model"] if spec_of else []
    where = {"partition", "gpu_partition"} & set(SLURM_SITE)
    keys += ["slurm_partition"] if where else []
    keys += ["slurm_account"] if "account" in SLURM_SITE else []

    def value(key):
        def get(wildcards, attempt):
            spec = spec_of(wildcards) if spec_of else None
            return model_resources(spec, attempt)[key]

        return get

    return {key: value(key) for key in keys}


def model_spec(model):
    return config["models"][model].get("resources", {})


def generator_resources(wildcards):
    """A local generator runs its model (registry resources); an API generator is a CPU job."""
    g = config["generators"][wildcards.gen]
    local = g.get("backend", "transformers") in ("transformers", "vllm")
    return model_spec(g["model"]) if local else None


# used by rules/data.smk
def bench_source(wildcards):
    return config["benchmarks"][wildcards.bench]["source"]


# used by rules/generate.smk
def generator_spec(wildcards):
    g = dict(config["generators"][wildcards.gen])
    g.setdefault("seed", config.get("seed", 0))
    local = g.get("backend", "transformers") in ("transformers", "vllm")
    if local:  # registry defaults
        m = config["models"][g["model"]]
        if m.get("template_kwargs"):
            g.setdefault("template_kwargs", m["template_kwargs"])
        if "max_new_tokens" in m:
            default = {"max_new_tokens": m["max_new_tokens"]}
            g["sampling"] = default | g.get("sampling", {})
        if engine := model_engine(g["model"], g.get("backend", "transformers")):
            g["engine"] = engine
    return g


# used by rules/generate.smk
def generator_model(wildcards):
    g = config["generators"][wildcards.gen]
    if g.get("backend", "transformers") in ("transformers", "vllm"):
        return model_manifest(g["model"])
    return []


# used by rules/route.smk
def train_inputs(wildcards):
    src = wildcards.source
    inputs = {
        "questions": f"{RESULTS}/data/{wildcards.bench}/{src}.questions.jsonl",
        "embeddings": f"{RESULTS}/embeddings/{wildcards.bench}/{src}.npz",
        "consensus": f"{RESULTS}/consensus/{wildcards.bench}/{wildcards.pool}/{src}.jsonl",
    }
    # Label-free by construction: only query-answer routers get the key file.
    if wildcards.router in QUERY_ANSWER:
        inputs["answers"] = f"{RESULTS}/data/{wildcards.bench}/{src}.keys.jsonl"
    return inputs


# used by rules/data.smk: which rule writes all.{questions,keys} of a benchmark
EMBEDDED = [
    b for b, c in config["benchmarks"].items() if c["source"]["kind"] == "embedded-mmlu"
]
DOWNLOADED = [b for b in config["benchmarks"] if b not in EMBEDDED]
RAW = config.get("raw_data", "resources/datasets")


# used by rules/filter.smk
def filter_spec(gen):
    f = config["generators"][gen]["filter"]
    return {"seed": config.get("seed", 0), **f}


def filter_inputs(wildcards):
    """The generated set, its keys, and the responses each configured criterion reads."""
    f = config["generators"][wildcards.gen]["filter"]
    base = f"{RESULTS}/data/{wildcards.bench}/gen-{wildcards.gen}"
    resp = f"{RESULTS}/responses/{wildcards.bench}/gen-{wildcards.gen}"
    inputs = {"questions": f"{base}.questions.jsonl", "answers": f"{base}.keys.jsonl"}
    if "self_consistency" in f:
        inputs["own"] = f"{resp}/{f['self_consistency']['expert']}.jsonl"
    if "differentiation" in f:
        pool = config["pools"][f["differentiation"]["pool"]]
        inputs["pool"] = [f"{resp}/{e}.jsonl" for e in pool]
    return inputs


def filter_args(wildcards, input):
    f = config["generators"][wildcards.gen]["filter"]
    args = []
    if "own" in input.keys():
        args.append(f"--own-responses {input.own}")
    if "pool" in input.keys():
        pool = config["pools"][f["differentiation"]["pool"]]
        args.append(
            "--pool-responses " + " ".join(f"{e}={p}" for e, p in zip(pool, input.pool))
        )
    return " ".join(args)
