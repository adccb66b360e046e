"""Conda environments (envs/*.yaml): they parse, pin every package, exist on PyPI, and every rule uses one.

The PyPI check asks the configured package index (`pip index versions NAME`, in parallel; local
wheel folders are ignored); it skips only when the index cannot be reached at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
RULE_FILES = [ROOT / "workflow" / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
CONDA_PACKAGES = {"python", "pip"}  # standard conda-forge packages, pinned as name=version
PROJECT = "-e ${RGD_ROOT}"  # the project itself, from the checkout
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)$")
CONDA_PIN = re.compile(r"^([a-z0-9_.-]+)=([0-9][0-9.]*)$")


def load(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict) and set(env) <= {"name", "channels", "dependencies"}, path.name
    return env


def pip_pins(path: Path) -> list[tuple[str, str]]:
    """(name, version) of every pip requirement of an env file and of its post-deploy script."""
    deps = load(path)["dependencies"]
    pip = next((d["pip"] for d in deps if isinstance(d, dict)), [])
    pins = [PIN.match(p).groups() for p in pip if not p.startswith("-")]
    post = path.with_name(path.stem + ".post-deploy.sh")
    if post.exists():
        pins += re.findall(r"pip install --no-deps ([A-Za-z0-9._-]+)==(\S+)", post.read_text())
    return pins


def lock() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements" / "cpu.lock.txt").read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            out[norm(m.group(1))] = m.group(2)
    return out


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("path", ENVS, ids=[p.name for p in ENVS])
def test_env_parses_and_pins_everything(path):
    env = load(path)
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    for d in conda:
        m = CONDA_PIN.match(d)
        assert m, f"{path.name}: conda dependency {d!r} is not pinned as name=version"
        assert m.group(1) in CONDA_PACKAGES, f"{path.name}: {d!r} is not a standard conda package here"
    assert any(d.startswith("python=3.") for d in conda) and any(d.startswith("pip=") for d in conda)
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    for p in pip:
        if p.startswith("-"):
            assert p == PROJECT or p.startswith("--extra-index-url https://"), (
                f"{path.name}: unexpected {p!r}"
            )
        else:
            assert PIN.match(p), f"{path.name}: pip requirement {p!r} is not pinned as name==version"
    assert PROJECT in pip, f"{path.name}: does not install the project (rgd) itself"
    names = [norm(n) for n, _ in pip_pins(path)]
    assert len(names) == len(set(names)), f"{path.name}: a package is pinned twice"


@pytest.mark.parametrize("path", [p for p in ENVS if p.stem != "vllm"], ids=lambda p: p.name)
def test_env_pins_agree_with_the_tested_lock(path):
    """The CPU envs use the versions `make test` runs with (vllm's CUDA stack is its own)."""
    locked = lock()
    for name, version in pip_pins(path):
        if norm(name) in locked:
            assert locked[norm(name)] == version, (
                f"{path.name}: {name}=={version}, the lock has {locked[norm(name)]}"
            )


def test_every_rule_has_a_conda_env_that_exists():
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    by_backend = set(re.findall(r':\s*"(\w+)"', common.split("def conda_env", 1)[1].split("\ndef ", 1)[0]))
    used = set()
    for f in RULE_FILES:
        for block in re.split(r"\n(?=rule \w+:)", f.read_text())[1:]:
            name = block.split(":", 1)[0].removeprefix("rule ")
            if name == "all":  # a target only: runs nothing
                continue
            m = re.search(r"\n    conda:\n        (.+)", block)
            assert m, f"{f.name}: rule {name} has no conda: directive"
            used.update(re.findall(r"envs/(\w+)\.yaml", m.group(1)))
            if "conda_env(" in m.group(1):  # the env of the rule's backend, rules/common.smk
                used |= by_backend
    assert used - {p.stem for p in ENVS} == set(), "rules name env files that do not exist"
    assert {"core", "torch", "vllm", "api", "report"} <= used


def _index_versions(name: str) -> tuple[int, set[str], str]:
    """(exit status, versions, output) of `pip index versions NAME` on the configured package index."""
    env = {
        **os.environ,
        "PIP_FIND_LINKS": "",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }  # the index, not local wheels
    cmd = [sys.executable, "-m", "pip", "index", "versions", name, "--timeout", "15", "--retries", "1"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return 124, set(), "timeout"
    m = re.search(r"Available versions: (.*)", r.stdout)
    return r.returncode, {v.strip() for v in m.group(1).split(",")} if m else set(), r.stdout + r.stderr


@pytest.fixture(scope="module")
def index():
    rc, versions, out = _index_versions("pip")
    if rc != 0 or not versions:
        pytest.skip(f"package index unreachable: {out.strip()[-200:]}")
    return _index_versions


def test_pinned_packages_exist_on_pypi(index):
    wanted: dict[str, set[str]] = {}
    for path in ENVS:
        for name, version in pip_pins(path):
            wanted.setdefault(norm(name), set()).add(version.split("+")[0])  # torch 2.13.0 (+cpu build)
    with ThreadPoolExecutor(max_workers=12) as pool:
        found = dict(zip(wanted, pool.map(index, wanted)))
    problems = [
        f"{n}=={v}: not on the index{'' if found[n][0] == 0 else ': ' + found[n][2].strip()[-150:]}"
        for n, vs in sorted(wanted.items())
        for v in sorted(vs - found[n][1])
    ]
    assert not problems, "\n".join(problems)


def test_the_index_check_can_fail(index):
    rc, versions, _ = index("numpy")
    assert rc == 0 and "2.4.6" in versions and "0.0.404" not in versions
    rc, versions, _ = index("rgd-no-such-package-on-any-index")
    assert rc != 0 and not versions
