"""The config given is the config that runs, checked whole before any job, as a user types it.

Dry runs from the checkout root (`snakemake -n --configfile FILE`, the README's words) must plan
exactly what FILE alone plans: nothing of the embedded default is merged under it. Every name that
becomes a wildcard, a path part or a command argument must be safe, and every bound lives in the
step's own settings class, checked before any job starts.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import rgd.config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
TINY = ROOT / "tests" / "config" / "tiny.yaml"
DEFAULT = ROOT / "config" / "config.yaml"
PAPER = ROOT / "config" / "paper.yaml"


def snakemake(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A dry run of the whole DAG (--forceall: what a checkout already holds, e.g. materialised
    models under resources/, does not change the plan)."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(BIN / "snakemake"), "-n", "--forceall", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_stats(res: subprocess.CompletedProcess) -> dict[str, int]:
    text = res.stdout + res.stderr
    assert "Job stats:" in text, text[-3000:]
    table = text[text.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def alone(tmp: Path, config: Path) -> subprocess.CompletedProcess:
    """A dry run of a checkout whose embedded default IS `config`, with no --configfile."""
    for d in ("workflow", "config", "profiles", "tests/config", "data", "tests/data/recorded-tiny"):
        shutil.copytree(ROOT / d, tmp / d)
    shutil.copy(config, tmp / "config" / "config.yaml")
    return snakemake(tmp)


# the job counts the README and docs state (tiny.yaml: 123 before the fix, when the default was merged
# under it; paper.yaml: 3,233)
DOCUMENTED = {"tiny.yaml": 101, "paper.yaml": 1231, "config.yaml": 276}


@pytest.mark.parametrize("config", [TINY, PAPER, DEFAULT], ids=lambda p: p.name)
def test_a_given_config_plans_what_it_plans_alone(config, tmp_path):
    given = snakemake(ROOT, "--configfile", str(config.relative_to(ROOT)))
    assert given.returncode == 0, given.stderr[-3000:]
    assert "extended by additional config" not in given.stdout + given.stderr
    planned = job_stats(given)
    assert planned == job_stats(alone(tmp_path, config))
    assert planned["total"] == DOCUMENTED.get(config.name, planned["total"])


def test_a_config_without_a_router_has_no_jobs_for_it(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    for r in ("knn", "cascal-gt"):
        del cfg["routers"][r]
    path = tmp_path / "two-routers.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = snakemake(ROOT, "--configfile", str(path))
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout + res.stderr
    assert "/knn" not in text and "/cascal-gt" not in text
    # mmlu: train and gen-gemma; the recorded benchmark: train only
    assert job_stats(res)["train_router"] == 3 * len(cfg["routers"])


def test_the_archive_is_named_by_the_given_config_alone():
    """The config hash (archive name) covers the file and the schema's defaults, nothing else."""
    loaded = rgd.config.load(yaml.safe_load(TINY.read_text()), SCHEMA)
    res = snakemake(ROOT, "--configfile", "tests/config/tiny.yaml")
    assert f"rgd-results-{rgd.config.config_hash(loaded)[:12]}.tar.gz" in res.stdout


# --------------------------------------------------------------------------- names
HOSTILE = ["a$(touch INJECTED)", "a`touch INJECTED`", "a;touch INJECTED", "../a", "a b", "a/b", "-a", ""]


def rename(cfg: dict, where: str, value: str) -> str:
    """Put `value` where a name of kind `where` goes; return the key path the error must name."""
    if where == "subject":
        cfg["benchmarks"]["mmlu"]["source"]["subjects"][0] = value
        return "benchmarks.mmlu.source.subjects[0]"
    if where == "pool member":
        cfg["pools"]["tiny"][0] = value
        return "pools.tiny[0]"
    if where == "expert's model":
        cfg["experts"]["a-chat"]["model"] = value
        return "experts.a-chat.model"
    section, old = {
        "benchmark": ("benchmarks", "mmlu"),
        "model": ("models", "tiny-a"),
        "expert": ("experts", "a-chat"),
        "pool": ("pools", "tiny"),
        "generator": ("generators", "gemma"),
        "router": ("routers", "knn"),
    }[where]
    cfg[section][value] = cfg[section].pop(old)
    return section


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "where",
    [
        "benchmark",
        "subject",
        "model",
        "expert",
        "expert's model",
        "pool",
        "pool member",
        "generator",
        "router",
    ],
)
def test_unsafe_names_are_refused_naming_the_key(where, value):
    cfg = yaml.safe_load(TINY.read_text())
    key = rename(cfg, where, value)
    with pytest.raises(rgd.config.ConfigError) as e:
        rgd.config.load(cfg, SCHEMA)
    assert any(p.startswith(key) for p in e.value.problems), e.value.problems


def test_unsafe_values_stop_snakemake_before_any_job(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["benchmarks"]["mmlu"]["source"]["subjects"][0] = f"high_school_biology$(touch {tmp_path}/INJECTED)"
    cfg["results"] = str(tmp_path / "results")
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "1", "--configfile", str(path)],
        cwd=ROOT,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode != 0
    assert "benchmarks.mmlu.source.subjects[0]" in res.stdout + res.stderr
    assert "is not a safe name" in res.stdout + res.stderr
    assert not (tmp_path / "INJECTED").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("key", ["results", "model_cache", "raw_data"])
@pytest.mark.parametrize("value", ["res{bench}", "a\nb", ""])
def test_paths_refuse_braces_and_line_breaks(key, value):
    cfg = yaml.safe_load(TINY.read_text())
    cfg[key] = value
    with pytest.raises(rgd.config.ConfigError, match=f"{key}:"):
        rgd.config.load(cfg, SCHEMA)


# --------------------------------------------------------------------------- bounds, once
def _patched_tiny(patch: dict) -> dict:
    """tests/config/tiny.yaml with each dotted `path: value` of `patch` set."""
    cfg = yaml.safe_load(TINY.read_text())
    for path, value in patch.items():
        node = cfg
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"consensus": {"clip_low": 0.9, "clip_high": 0.1}}, "consensus: clip_low/clip_high"),
        ({"consensus": {"n_classes": 1}}, "consensus: n_classes"),
        ({"consensus": {"tau": 0}}, "consensus: tau"),
        ({"evaluation": {"n_boot": 0}}, "evaluation: n_boot"),
        ({"benchmarks.mmlu.split": {"train_fraction": 1.0}}, "benchmarks.mmlu.split: train_fraction"),
        ({"routers.knn": {"params": {"k": 0}}}, "routers.knn.params"),
        ({"routers.cascal": {"params": {"min_consensus": 7}}}, "routers.cascal.params: min_consensus"),
    ],
)
def test_bounds_are_the_steps_and_checked_before_any_job(patch, message):
    cfg = _patched_tiny(patch)
    with pytest.raises(rgd.config.ConfigError) as e:
        rgd.config.load(copy.deepcopy(cfg), SCHEMA)
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


def test_the_step_settings_fill_in_every_knob():
    """The loaded config lists the steps' defaults, so results/config.json and the hash cover them."""
    loaded = rgd.config.load(yaml.safe_load(TINY.read_text()), SCHEMA)
    from rgd.consensus import ConsensusConfig
    from rgd.metrics import EvaluationSettings

    assert loaded["consensus"]["n_classes"] == ConsensusConfig.n_classes
    assert loaded["evaluation"]["n_boot"] == 200 and loaded["benchmarks"]["mmlu"]["split"]["seed"] == 0
    assert EvaluationSettings().n_boot == 1000


def test_a_key_given_twice_is_refused_with_file_and_line(tmp_path):
    text = TINY.read_text().replace("seed: 0\n", "seed: 0\nseed: 1\n", 1)
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    line = text.splitlines().index("seed: 1") + 1
    res = snakemake(ROOT, "--configfile", str(path))
    assert res.returncode != 0
    assert f"{path}:{line}: seed: given twice (first on line {line - 1})" in res.stdout + res.stderr


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"experts.a-chat.batch_size": 0}, "experts.a-chat: batch_size"),
        ({"experts.a-chat.max_prompt_tokens": 8}, "experts.a-chat: max_prompt_tokens"),
        ({"experts.a-chat.sampling": {"temperature": -1}}, "experts.a-chat: sampling.temperature"),
        ({"experts.a-chat.sampling": {"top_p": 0}}, "experts.a-chat: sampling.top_p"),
        ({"generators.gemma.num_prompts": 0}, "generators.gemma: num_prompts"),
        ({"generators.gemma.sampling": {"max_new_tokens": 0}}, "generators.gemma: sampling.max_new_tokens"),
        ({"generators.gemma.filter": {"target_size": 0}}, "generators.gemma.filter: target_size"),
        ({"embedder.max_model_len": 4}, "embedder: max_model_len"),
    ],
)
def test_every_steps_bounds_are_checked_before_any_job(patch, message):
    """Experts, generators, filters, sampling and the embedder: each bound once, in the step's class."""
    cfg = _patched_tiny(patch)
    with pytest.raises(rgd.config.ConfigError) as e:
        rgd.config.load(cfg, SCHEMA)
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


# --------------------------------------------------------------------------- what the data holds
@pytest.mark.parametrize(
    "patch, message",
    [
        (
            {"benchmarks.mmlu.source.subjects": ["high_school_biology", "high_school_biolgy"]},
            "benchmarks.mmlu.source.subjects[1]: the embedded MMLU has no subject 'high_school_biolgy'; "
            "did you mean high_school_biology",
        ),
        (
            {"benchmarks.mmlu.source.per_subject": 5000},
            "benchmarks.mmlu.source.per_subject: 5000 questions asked, subject 'high_school_biology' has 310",
        ),
        (
            {"benchmarks.mmlu.source.split": "train"},
            "benchmarks.mmlu.source.split: the embedded MMLU has no split",
        ),
        # tiny: 2 subjects x 12 questions, 7 of each to train
        (
            {"routers.knn": {"params": {"k": 15}}},
            "routers.knn.params.k: 15 neighbours, but benchmark mmlu's train",
        ),
    ],
)
def test_what_the_data_cannot_give_is_refused_before_any_job(patch, message):
    with pytest.raises(rgd.config.ConfigError) as e:
        rgd.config.load(_patched_tiny(patch), SCHEMA)
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


def test_knn_k_up_to_the_train_split_and_a_fixed_split_are_accepted(tmp_path):
    rgd.config.load(_patched_tiny({"routers.knn": {"params": {"k": 14}}}), SCHEMA)
    ids = tmp_path / "test-ids.txt"  # a fixed split: the train size is not known before the data job
    ids.write_text("x\n")
    cfg = _patched_tiny(
        {"routers.knn": {"params": {"k": 15}}, "benchmarks.mmlu.split": {"test_ids": str(ids)}}
    )
    rgd.config.load(cfg, SCHEMA)


def test_scaling_fractions_that_leave_a_subject_empty_are_warned_about(capsys):
    rgd.config.load(_patched_tiny({"report.scaling": {"fractions": [0.05, 0.5, 1.0]}}), SCHEMA)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1, err
    assert (
        "report.scaling.fractions[0]: 0.05 of benchmark mmlu's train split leaves no question in 2 of 2"
        in err
    )
    rgd.config.load(_patched_tiny({}), SCHEMA)  # tiny's own 0.5 and 1.0: 4 and 7 of 7
    assert capsys.readouterr().err == ""


def test_a_knn_router_fitted_on_fewer_questions_than_k_says_so(capsys):
    """A generated source's size is known only when it exists: kNN then warns and routes on all."""
    import numpy as np

    from rgd import routers

    data = routers.TrainingSet(np.eye(4, 8, dtype=np.float32), ["a", "b"], correct=np.ones((4, 2)))
    r = routers.make("knn", {"k": 10}).fit(data)
    assert "k: 10 neighbours, but the training set has 4 questions" in capsys.readouterr().err
    assert r.route(np.eye(2, 8, dtype=np.float32)).shape == (2, 2)


# --------------------------------------------------------------------------- one compat line
def test_one_line_selects_the_originals_semantics(tmp_path):
    """`compat: original` added to the shipped config is a valid config with the original's
    consensus and CASCAL (the shipped file pins none of the settings the switch controls)."""
    from rgd import routers
    from rgd.consensus import ConsensusConfig

    shipped = rgd.config.load(yaml.safe_load(DEFAULT.read_text()), SCHEMA)
    path = tmp_path / "original.yaml"
    path.write_text(DEFAULT.read_text() + "compat: original\n")
    original = rgd.config.load(yaml.safe_load(path.read_text()), SCHEMA, files=[path])
    assert ConsensusConfig(**shipped["consensus"]).compat == "rgd"
    assert ConsensusConfig(**original["consensus"]).compat == "original"
    for name in ("cascal", "cascal-gt"):
        rgd_params = routers.make(name, shipped["routers"][name]["params"]).get_params()
        orig = routers.make(name, original["routers"][name]["params"]).get_params()
        assert (rgd_params["agreement"], rgd_params["kmeans_dims"], rgd_params["silhouette"]) == (
            "plurality",
            64,
            "linear",
        )
        assert (orig["compat"], orig["agreement"], orig["kmeans_dims"], orig["silhouette"]) == (
            "original",
            "tied_union",
            0,
            "sklearn",
        )
    # the same line in the paper config
    rgd.config.load({**yaml.safe_load(PAPER.read_text()), "compat": "original"}, SCHEMA)


def test_a_step_switch_against_the_top_level_compat_is_refused():
    cfg = _patched_tiny({"consensus": {"compat": "rgd"}})
    cfg["compat"] = "original"
    with pytest.raises(rgd.config.ConfigError) as e:
        rgd.config.load(cfg, SCHEMA)
    assert e.value.problems == [
        "consensus.compat: 'rgd', but the top-level compat is 'original' (set one of them)"
    ]


# --------------------------------------------------------------------------- the default profile
def test_a_run_from_elsewhere_gets_the_default_profile(tmp_path):
    """`snakemake -s CHECKOUT/workflow/Snakefile --directory ELSEWHERE` from a third folder loads
    profiles/default (workflow/profiles/default links to it: Snakemake looks next to the
    Snakefile), so after a kill the same command reruns the incomplete jobs."""
    import base64

    launch, work = tmp_path / "launch", tmp_path / "work"
    launch.mkdir()
    outputs = ["results/data/mmlu/all.questions.jsonl", "results/data/mmlu/all.keys.jsonl"]
    (work / ".snakemake" / "incomplete").mkdir(parents=True)
    for f in outputs:  # what a driver killed during the data job leaves
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        (work / f).write_text("")
        key = base64.urlsafe_b64encode(f.encode()).decode()
        (work / ".snakemake" / "incomplete" / key).write_text('{"external_jobid": null}')
    args = ("-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work), "--configfile", str(TINY))
    res = snakemake(launch, *args)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "Using workflow specific profile" in res.stdout + res.stderr
    res = snakemake(launch, *args, "--workflow-profile", "none")  # what it did before
    assert res.returncode != 0 and "IncompleteFilesException" in res.stdout + res.stderr
