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
        problems = rgd.config.duplicate_keys(path)
        if problems:
            raise WorkflowError("invalid SLURM site file:\n  " + "\n  ".join(problems))
        site = yaml.safe_load(path.read_text()) or {}
        if not isinstance(site, dict):
            raise WorkflowError(f"{path}: not a mapping of site keys")
        unknown = sorted(set(site) - set(SITE_KEYS))
        if unknown:
            raise WorkflowError(
                f"{path}: unknown key(s) {unknown}; known keys: {list(SITE_KEYS)}"
            )
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


def expert_resources(wildcards):
    return model_spec(config["experts"][wildcards.expert]["model"])


def materialise_resources(wildcards):
    """Materialising dequantises on the CPU: the model's memory and time, no GPU."""
    return {**model_spec(wildcards.model), "gpus": 0}


def generator_resources(wildcards):
    """A local generator runs its model (registry resources); an API generator is a CPU job."""
    g = config["generators"][wildcards.gen]
    return model_spec(g["model"]) if is_local(g["backend"]) else None


def embedder_resources(wildcards):
    return config["embedder"].get("resources", {})
