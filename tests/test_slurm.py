"""The SLURM profile (profiles/slurm) and the registry-derived job resources.

Without a cluster: dry runs check what every job asks for (GPU only where the registry says so,
runtime x attempt, site values from the environment or the site file).

With a cluster (`slurm` marker; .ci/run starts one with .ci/slurm/start.sh): a small config runs
through `snakemake --profile profiles/slurm`, and sacct shows that every planned job went through
sbatch, that GPU jobs got the fake GPU gres and CPU jobs none, that the outputs equal a local
run's byte for byte, that a rerun submits nothing, and that a failing job is retried with more
time and its log is shown. The cluster tests skip when no cluster answers, unless
RGD_REQUIRE_SLURM=1 (set by .ci/run), where that is a failure.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
PROFILE = ROOT / "profiles" / "slurm"
TINY = ROOT / "tests" / "config" / "tiny.yaml"
BIN = Path(sys.executable).parent
SITE_VARS = (
    "RGD_SLURM_SITE",
    "RGD_SLURM_PARTITION",
    "RGD_SLURM_GPU_PARTITION",
    "RGD_SLURM_ACCOUNT",
    "RGD_SLURM_GPU_MODEL",
)
# CI-only speed-ups, on the command line so the production profile stays as it is: the first
# status check after 2 s instead of 40 s.
CI_FLAGS = ("--slurm-init-seconds-before-status-checks", "2")
# The pipeline up to the summary table (later stages, e.g. the report, are not needed here).
TARGETS = ("results/tables/summary.csv", "results/tables/summary.md")


def small_config(cache: Path) -> dict:
    """tiny.yaml without the generator: two experts, one on a GPU model and one on a CPU model,
    two routers. Eight pipeline stages, so the SLURM run stays within a few minutes."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model_cache"] = str(cache)
    cfg.pop("generators")
    del cfg["models"]["gemma3-270m"]
    cfg["models"]["tiny-a"]["resources"] = {"gpus": 1, "cpus": 1, "mem_mb": 1500, "runtime": 5}
    cfg["models"]["tiny-b"]["resources"] = {"cpus": 1, "mem_mb": 1500, "runtime": 5}
    cfg["embedder"]["resources"] = {"cpus": 1, "mem_mb": 2000, "runtime": 5}
    cfg["experts"] = {"a-chat": cfg["experts"]["a-chat"], "b-plain": cfg["experts"]["b-plain"]}
    cfg["pools"] = {"tiny": ["a-chat", "b-plain"]}
    # the embedded benchmark only: its recorded twin runs no model, so no sbatch job needs it
    cfg["benchmarks"] = {"mmlu": cfg["benchmarks"]["mmlu"]}
    cfg["models"] = {m: cfg["models"][m] for m in ("tiny-a", "tiny-b")}
    cfg["report"] = {k: v for k, v in cfg["report"].items() if k != "router_seeds"}
    cfg["routers"] = {"cascal": {}, "knn": {"params": {"k": 3}}}
    cfg["evaluation"] = {"n_boot": 50, "seed": 0}
    return cfg


def model_cache() -> Path:
    """The materialised-model cache shared with tests/test_workflow.py."""
    d = Path(os.environ.get("RGD_TEST_MODEL_CACHE", ROOT / ".pytest_cache" / "rgd-models"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def snakemake(
    work: Path, config: Path, *args: str, env: dict | None = None, timeout: int = 600, check: bool = True
) -> subprocess.CompletedProcess:
    """snakemake from the repository root, as a user runs it (so profiles/default, the workflow
    profile, is loaded too), on a work directory elsewhere. `timeout -k`: if the SLURM plugin
    loses track of its jobs it can wait forever and ignore SIGTERM."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    cmd = [
        "timeout",
        "-k",
        "30",
        str(timeout),
        str(BIN / "snakemake"),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(work),
        "--configfile",
        str(config),
        *args,
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 60)
    if check and res.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
        )
    return res


def job_resources(res: subprocess.CompletedProcess) -> list[tuple[str, dict, dict]]:
    """(rule, wildcards, resources) of every job a dry run would submit (local rules left out)."""

    def pairs(text: str) -> dict:
        return dict(p.split("=", 1) for p in text.split(", ")) if text else {}

    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", res.stdout + res.stderr):
        m = re.match(r"rule (\w+):", block)
        if m and m.group(1) != "all":
            w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            r = re.search(r"^\s+resources: (.*)$", block, re.M)
            jobs.append((m.group(1), pairs(w.group(1) if w else ""), pairs(r.group(1) if r else "")))
    return jobs


def planned(res: subprocess.CompletedProcess) -> dict[str, int]:
    text = res.stdout + res.stderr
    table = text[text.index("Job stats:") :]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
        if m.group(1) != "total"
    }


# ---------------------------------------------------------------- without a cluster
@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No site values: none from the environment, and an empty site file instead of a
    profiles/slurm/site.yaml that may exist on this machine."""
    for var in SITE_VARS:
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "no-site.yaml").write_text("")
    monkeypatch.setenv("RGD_SLURM_SITE", str(tmp_path / "no-site.yaml"))


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_resources_come_from_the_registry(tmp_path, clean_env):
    """The whole tiny DAG: every job carries registry-derived resources; only the jobs of a model
    with resources.gpus ask for a GPU."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model_cache"] = str(tmp_path / "models")
    cfg["models"]["tiny-a"]["resources"] = {"gpus": 1, "runtime": 5}
    config = write_config(tmp_path / "config.yaml", cfg)
    jobs = job_resources(snakemake(tmp_path, config, "-n", "--profile", str(PROFILE), timeout=120))
    assert {"materialise", "generate", "respond", "embed", "consensus", "summary"} <= {j[0] for j in jobs}
    for rule, w, r in jobs:
        missing = {"gpu", "cpus_per_task", "mem_mb", "runtime"} - set(r)
        assert not missing, f"rule {rule} lacks `resources: **rule_resources(...)` ({missing})"
        assert not {"slurm_partition", "slurm_account", "gpu_model"} & set(r), (rule, r)  # no site set
        on_gpu = rule == "respond" and cfg["experts"][w["expert"]]["model"] == "tiny-a"
        assert r["gpu"] == ("1" if on_gpu else "0"), (rule, w, r)
        if on_gpu:
            assert (r["cpus_per_task"], r["mem_mb"], r["runtime"]) == ("2", "8000", "5")  # defaults, runtime
    generate = next(r for rule, _, r in jobs if rule == "generate")  # a model without resources
    assert (generate["cpus_per_task"], generate["mem_mb"], generate["runtime"]) == ("2", "8000", "60")
    consensus = next(r for rule, _, r in jobs if rule == "consensus")  # a CPU job
    assert (consensus["cpus_per_task"], consensus["mem_mb"], consensus["runtime"]) == ("1", "2000", "30")


def test_site_values_from_file_and_environment(tmp_path, clean_env):
    cfg = small_config(tmp_path / "models")
    cfg["models"]["tiny-b"]["resources"] = {"tensor_parallel": 2, "gpu_model": "h100"}
    config = write_config(tmp_path / "config.yaml", cfg)
    site = tmp_path / "site.yaml"
    site.write_text("partition: cpu\ngpu_partition: gpu\naccount: proj1\ngpu_model: a100\n")
    env = {"RGD_SLURM_SITE": str(site), "RGD_SLURM_ACCOUNT": "proj2"}  # the environment wins
    jobs = job_resources(snakemake(tmp_path, config, "-n", env=env, timeout=120))
    respond = {w["expert"]: r for rule, w, r in jobs if rule == "respond"}
    assert respond["a-chat"]["gpu_model"] == "a100" and respond["a-chat"]["slurm_partition"] == "gpu"
    # a vLLM-style model spans tensor_parallel GPUs; its own gpu_model beats the site's
    assert respond["b-plain"]["gpu"] == "2" and respond["b-plain"]["gpu_model"] == "h100"
    split = next(r for rule, _, r in jobs if rule == "split")
    assert (
        split["slurm_partition"] == "cpu" and split["slurm_account"] == "proj2" and "gpu_model" not in split
    )


def test_the_documented_command_works_once_the_profile_is_installed(tmp_path, clean_env):
    """`snakemake --profile slurm` from the checkout root (the design card's command) finds the
    profile only in Snakemake's profile directories: `rgd install-profile slurm` puts it there."""
    home = tmp_path / "home"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(home)}
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    cmd = [str(BIN / "snakemake"), "--profile", "slurm", "-n", "--configfile", str(TINY)]
    before = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert before.returncode != 0 and "no profile.yaml (or config.yaml) found" in before.stderr
    rgd = [str(BIN / "rgd"), "install-profile", "slurm"]
    inst = subprocess.run(rgd, env=env, capture_output=True, text=True, timeout=60)
    target = home / ".config" / "snakemake" / "slurm" / "config.yaml"
    assert inst.returncode == 0 and f"installed: {target}" in inst.stdout, inst.stderr
    assert yaml.safe_load(target.read_text()) == yaml.safe_load(PROFILE.joinpath("config.yaml").read_text())
    after = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    text = after.stdout + after.stderr
    assert after.returncode == 0, text[-3000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in text
    assert planned(after) == planned(snakemake(tmp_path, TINY, "-n", "--profile", str(PROFILE), env=env))
    # installing again changes nothing; a profile edited by hand is kept unless --force
    again = subprocess.run(rgd, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already installed" in again.stdout
    target.write_text(target.read_text() + "jobs: 5\n")
    kept = subprocess.run(rgd, env=env, capture_output=True, text=True, timeout=60)
    assert kept.returncode == 2 and "give --force to replace it" in kept.stderr
    forced = subprocess.run([*rgd, "--force"], env=env, capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0 and "jobs: 5" not in target.read_text()


def test_bad_site_file_names_the_file_and_key(tmp_path, clean_env):
    config = write_config(tmp_path / "config.yaml", small_config(tmp_path / "models"))
    site = tmp_path / "site.yaml"
    site.write_text("partition: cpu\nqueue: gpu\n")
    res = snakemake(tmp_path, config, "-n", env={"RGD_SLURM_SITE": str(site)}, timeout=120, check=False)
    assert res.returncode != 0
    assert f"{site}: unknown key(s) ['queue']" in res.stdout + res.stderr


# ---------------------------------------------------------------- on a cluster
def cluster() -> tuple[str, str]:
    """(default partition, root's default account) of the running cluster, or skip."""

    def unavailable(reason):
        if os.environ.get("RGD_REQUIRE_SLURM") == "1":
            pytest.fail(f"RGD_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(f"{reason} (start one with .ci/slurm/start.sh and source its env.sh)")

    if not shutil.which("sinfo") or not shutil.which("sacct"):
        unavailable("no SLURM cluster: sinfo/sacct are not installed")
    res = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        unavailable("no SLURM cluster answers: " + " / ".join(res.stderr.split("\n")[:2]))
    partitions = res.stdout.split() or ["?"]
    partition = next((p for p in partitions if p.endswith("*")), partitions[0]).rstrip("*")  # the default
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    acc = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "user", user, "format=defaultaccount"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if acc.returncode != 0:
        pytest.fail(
            f"the cluster has no accounting (sacct is the profile's status command): {acc.stderr[:300]}"
        )
    return partition, acc.stdout.strip()


SACCT_FIELDS = [
    "JobIDRaw",
    "JobName",
    "State",
    "Partition",
    "Account",
    "Timelimit",
    "AllocTRES",
    "WorkDir",
    "Comment",
]


def sacct(work: Path, since: str) -> list[dict]:
    """Every allocation submitted from `work` since `since`, one dict per job."""
    res = subprocess.run(
        ["sacct", "-X", "-a", "-n", "-P", "-S", since, "-o", ",".join(f"{f}%400" for f in SACCT_FIELDS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in res.stdout.splitlines() if line]
    for r in rows:
        r["rule"] = r["Comment"].removeprefix("rule_").split("_wildcards_")[0]
    return [r for r in rows if r["WorkDir"] == str(work)]


def compared(results: Path) -> dict[str, bytes]:
    """Every result file except logs, timings, caches and .meta.json (which record durations)."""
    skip = ("logs", "timings", "cache")
    return {
        str(p.relative_to(results)): p.read_bytes()
        for p in sorted(results.rglob("*"))
        if p.is_file() and p.relative_to(results).parts[0] not in skip and not p.name.endswith(".meta.json")
    }


BAD_TARGET = "results/responses/mmlu/test/b-chat.jsonl"


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    """Three runs at once (each mostly waits for the scheduler or its status checks): the small
    config through the SLURM profile; the same config locally, for reference; and, in a third
    work directory, an expert that fails at run time (a chat prompt on tiny-b, which has no chat
    template), through the SLURM profile."""
    partition, account = cluster()
    base = tmp_path_factory.mktemp("slurm")
    cfg = small_config(model_cache())
    config = write_config(base / "config.yaml", cfg)
    cfg["experts"]["b-chat"] = {"model": "tiny-b", "style": "chat", "mode": "letter"}
    bad_config = write_config(base / "bad.yaml", cfg)
    site = base / "site.yaml"
    site.write_text(yaml.safe_dump({"partition": partition, "account": account}))
    env = {var: "" for var in SITE_VARS} | {"RGD_SLURM_SITE": str(site)}
    local, work, bad = base / "local", base / "work", base / "bad"

    # locally first: the models (shared by all runs, so none materialises them concurrently),
    # and the failing run's input, so that its only job is the failing one
    models = [str(model_cache() / m / "rgd-model.json") for m in cfg["models"]]
    snakemake(local, config, "--cores", "2", *models, env=env)
    snakemake(bad, bad_config, "--cores", "2", "results/data/mmlu/test.questions.jsonl", env=env)
    profile = ("--profile", str(PROFILE), *CI_FLAGS)
    plan = planned(snakemake(work, config, "-n", *profile, *TARGETS, env=env, timeout=120))
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        reference = pool.submit(snakemake, local, config, "--cores", "2", *TARGETS, env=env)
        failing = pool.submit(
            snakemake, bad, bad_config, *profile, BAD_TARGET, env=env, timeout=420, check=False
        )
        snakemake(work, config, *profile, *TARGETS, env=env, timeout=420)
        slurm_s = time.monotonic() - t0
        reference.result()
        failed = failing.result()
    jobs = sacct(work, since)
    print(
        f"\nSLURM run {slurm_s:.0f} s, {len(jobs)} jobs; all three {time.monotonic() - t0:.0f} s; plan {plan}"
    )
    return dict(
        base=base,
        work=work,
        local=local,
        bad=bad,
        config=config,
        env=env,
        profile=profile,
        plan=plan,
        since=since,
        jobs=jobs,
        failed=failed,
        partition=partition,
        account=account,
    )


@pytest.mark.slurm
def test_every_planned_job_went_through_sbatch(slurm_run):
    jobs, plan = slurm_run["jobs"], slurm_run["plan"]
    submitted = {rule: sum(j["rule"] == rule for j in jobs) for rule in {j["rule"] for j in jobs}}
    assert submitted == plan
    assert len({j["JobName"] for j in jobs}) == 1, "one run, one run id"
    assert all(j["State"] == "COMPLETED" for j in jobs), [(j["rule"], j["State"]) for j in jobs]
    assert {(j["Partition"], j["Account"]) for j in jobs} == {(slurm_run["partition"], slurm_run["account"])}


@pytest.mark.slurm
def test_gpu_jobs_get_the_gres_and_cpu_jobs_none(slurm_run):
    for j in slurm_run["jobs"]:
        gpu_job = j["rule"] == "respond" and "_a-chat" in j["Comment"]  # tiny-a: resources.gpus 1
        assert ("gres/gpu=1" in j["AllocTRES"]) == gpu_job, (j["Comment"], j["AllocTRES"])
        limit = "00:05:00" if j["rule"] in ("respond", "embed") else "00:30:00"  # registry, CPU default
        assert j["Timelimit"] == limit, (j["Comment"], j["Timelimit"])


@pytest.mark.slurm
def test_outputs_equal_a_local_run(slurm_run):
    on_slurm = compared(slurm_run["work"] / "results")
    local = compared(slurm_run["local"] / "results")
    assert "tables/summary.csv" in local and any(k.startswith("responses/") for k in local)
    assert sorted(on_slurm) == sorted(local)
    assert [k for k in local if on_slurm[k] != local[k]] == []
    rows = list(csv.DictReader(io.StringIO(local["tables/summary.csv"].decode())))
    assert {r["router"] for r in rows if r["source"] == "train"} == {"cascal", "knn"}


@pytest.mark.slurm
def test_rerun_submits_nothing(slurm_run):
    r = slurm_run
    res = snakemake(r["work"], r["config"], *r["profile"], *TARGETS, env=r["env"], timeout=120)
    assert "Nothing to be done" in res.stdout + res.stderr
    assert len(sacct(r["work"], r["since"])) == len(r["jobs"])


@pytest.mark.slurm
def test_failed_job_is_retried_with_more_time_and_its_log_shown(slurm_run):
    """The profile's `retries: 2` resubmits the failing job twice, each time with runtime x
    attempt, and the failing rule's own log is printed."""
    r = slurm_run
    out = r["failed"].stdout + r["failed"].stderr
    assert r["failed"].returncode != 0
    assert "rgd respond: error: this model has no chat template" in out, out[-3000:]
    jobs = sacct(r["bad"], r["since"])
    assert [j["rule"] for j in jobs] == ["respond"] * 3, jobs
    assert [j["State"] for j in jobs] == ["FAILED"] * 3
    assert [j["Timelimit"] for j in jobs] == ["00:05:00", "00:10:00", "00:15:00"]
    assert not (r["bad"] / BAD_TARGET).exists()


@pytest.mark.slurm
def test_a_killed_driver_resumes_with_the_same_command(slurm_run):
    """SIGKILL of the driver while a respond job runs on the cluster (the job keeps running in
    SLURM), then the same command: the dead driver's lock is dropped, what it left incomplete is
    resubmitted, and the responses equal the local run's byte for byte, no cache record twice."""
    r = slurm_run
    work = r["base"] / "resumed"
    targets = [f"results/consensus/mmlu/tiny/{q}.jsonl" for q in ("train", "test")]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **r["env"]}
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(work),
        "--configfile",
        str(r["config"]),
        *r["profile"],
        *targets,
    ]
    driver = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    logs, deadline = work / "results/logs/respond", time.monotonic() + 420
    while not any(
        not (work / "results/responses" / p.relative_to(logs)).with_suffix(".jsonl").exists()
        for p in logs.rglob("*.log")
    ):
        assert driver.poll() is None and time.monotonic() < deadline, "the run ended before inference"
        time.sleep(0.1)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert list((work / ".snakemake/locks").glob("*.lock")), "the killed driver left no lock"

    again = snakemake(
        work, r["config"], *r["profile"], *targets, env=r["env"], timeout=420
    )  # the same command
    assert "removed the lock left by a Snakemake run that no longer runs" in again.stderr
    local = r["local"] / "results"
    for reference in sorted((local / "responses/mmlu").glob("t*/*.jsonl")):
        rel = reference.relative_to(local)
        assert (work / "results" / rel).read_bytes() == reference.read_bytes(), rel
    for cache in (work / "results/cache/responses").rglob("*.jsonl"):
        keys = [json.loads(line)["key"] for line in cache.read_text().splitlines() if line.strip()]
        assert len(keys) == len(set(keys)), f"{cache}: a record computed twice"
