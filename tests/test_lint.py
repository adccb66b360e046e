"""Style: `snakemake --lint` has no findings, `snakefmt --check` passes, and ruff (check and format) has
no findings in scripts, tests and benchmarks (run by `make test`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


@pytest.mark.parametrize("config", ["config/config.yaml", "tests/config/tiny.yaml"])
def test_snakemake_lint_has_no_findings(config, tmp_path):
    # run from an empty directory, so that only the given config is loaded (and no lock is taken here)
    res = subprocess.run(
        [
            str(BIN / "snakemake"),
            "--lint",
            "-s",
            str(ROOT / "workflow" / "Snakefile"),
            "--configfile",
            str(ROOT / config),
            "--directory",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "Lints for" not in out, out[-6000:]
    assert "Congratulations, your workflow is in a good condition!" in out


def test_snakefmt_check_passes():
    res = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "--diff", "workflow"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]


@pytest.mark.parametrize("check", [["check"], ["format", "--check", "--diff"]], ids=["check", "format"])
def test_ruff_has_no_findings(check):
    # the rules and the line length live in pyproject.toml ([tool.ruff]); nothing is silenced inline
    res = subprocess.run(
        [str(BIN / "ruff"), *check, "scripts", "tests", "benchmarks"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
