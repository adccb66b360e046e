"""The rules' shell commands, read from the rule files: no placeholder reaches a shell unquoted.

Every {input}, {output}, {log}, {params} and {wildcards} placeholder in a `shell:` command must be
quoted with `:q` (Snakemake then quotes each value, or each item of a list), so that a path with a
space or a config value with shell syntax stays one argument. `{threads}` is an integer Snakemake
computes, the only exception. The end-to-end proof, paths with spaces, is tests/test_workflow.py.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk")) + [ROOT / "workflow" / "Snakefile"]
PLACEHOLDER = re.compile(r"(?<!{){([A-Za-z_][\w.]*(?:\[[^\]]*\])?)(:[^}]*)?}(?!})")
UNQUOTED_OK = {"threads"}


def shell_commands(path: Path) -> list[tuple[int, str]]:
    """(line, command text) of every `shell:` directive: the string literals that follow it."""
    toks = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    out = []
    for i, t in enumerate(toks):
        if t.type == tokenize.NAME and t.string == "shell" and toks[i + 1].string == ":":
            parts, j = [], i + 2
            while toks[j].type in (
                tokenize.NEWLINE,
                tokenize.NL,
                tokenize.INDENT,
                tokenize.STRING,
                tokenize.COMMENT,
            ):
                if toks[j].type == tokenize.STRING:
                    parts.append(eval(toks[j].string))  # a plain literal; f-strings are refused below
                    assert not toks[j].string.lower().startswith(("f", "rf", "fr")), (
                        f"{path.name}:{t.start[0]}: f-string"
                    )
                j += 1
            out.append((t.start[0], "".join(parts)))
    return out


def unquoted(command: str) -> list[str]:
    return [
        m.group(0)
        for m in PLACEHOLDER.finditer(command)
        if m.group(1).split(".")[0] not in UNQUOTED_OK and m.group(2) != ":q"
    ]


def test_every_rule_file_has_shell_commands_to_check():
    commands = [c for f in RULE_FILES for c in shell_commands(f)]
    assert len(commands) >= 20  # every rule runs a shell command


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_no_placeholder_reaches_a_shell_unquoted(path):
    bad = [(line, ph) for line, cmd in shell_commands(path) for ph in unquoted(cmd)]
    assert not bad, f"{path.name}: unquoted placeholders (line, placeholder): {bad}"


def test_the_scanner_finds_what_it_must():
    """The check itself can fail: unquoted forms are caught, quoted ones and {threads} pass."""
    assert unquoted("rgd x --a {input.q} --b {params.spec:q} {output} {log:q} --t {threads}") == [
        "{input.q}",
        "{output}",
    ]
    assert unquoted("--w {wildcards.gen} {input[0]} {params.x:j}") == [
        "{wildcards.gen}",
        "{input[0]}",
        "{params.x:j}",
    ]
    assert unquoted("awk '{{print $1}}' {input:q}") == []
