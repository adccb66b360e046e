"""API keys: read from the environment or a `.env` file, never from config or the command line.

A key lives only in memory, inside a `Secret` whose repr and str are masked, so it cannot
reach a log line, a `.meta.json`, an exception message or a process argument by accident.
Anything that might echo a key back (a server's error body, an HTTP library's exception)
goes through `redact` before it is printed or raised.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

MASK = "***"
DEFAULT_ENV = {"gemini": "GEMINI_API_KEY", "openai": "OPENAI_API_KEY"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Secret:
    """A key and where it came from ("environment" or a .env path); prints as ***."""

    env: str
    source: str
    value: str = field(repr=False)

    def __str__(self) -> str:
        return MASK

    def redact(self, text: str) -> str:
        return redact(text, [self.value])


def parse_env_text(text: str) -> dict[str, str]:
    """The variables of a `.env` file's text. The one parser of such files in rgd (the archive's
    secret scan uses it too, so it searches for exactly the values a step would read).

      NAME=value                 unquoted: surrounding spaces dropped; ` #...` after a space is a comment
      NAME = value               spaces around `=` are allowed
      export NAME=value          the shell's `export` prefix is accepted
      NAME='va # lue'            single quotes: the text between them, as it is
      NAME="va \"q\" # lue"       double quotes: the text between them, with \" and \\ unescaped
      NAME="value" # note        a comment may follow a closing quote
      NAME=  /  NAME=""          the empty string
      # a comment, blank lines   ignored
    A line that is none of these (no `=`, a bad name, an unclosed quote, text after a closing
    quote) is skipped: it is never echoed, since it may hold a key.
    """
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export") and line[6:7].isspace():
            line = line[6:].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            continue
        parsed = _env_value(value)
        if parsed is not None:
            out[name] = parsed
    return out


def _env_value(value: str) -> str | None:
    """The value after `=` (spaces kept, so that `A= # note` is a comment, as in a shell)."""
    if not value.strip() or value.lstrip()[0] not in "'\"":
        return re.split(r"\s#", value, maxsplit=1)[0].strip()
    value = value.strip()
    quote, chars, i = value[0], [], 1
    while i < len(value):
        c = value[i]
        if c == quote:
            rest = value[i + 1 :].strip()
            return "".join(chars) if not rest or rest.startswith("#") else None
        if c == "\\" and quote == '"' and i + 1 < len(value) and value[i + 1] in '"\\':
            i += 1
            c = value[i]
        chars.append(c)
        i += 1
    return None  # no closing quote


def parse_env_file(path: str | os.PathLike) -> dict[str, str]:
    """`parse_env_text` of a UTF-8 file; a file that is not UTF-8 is an InputError naming it."""
    from .io import InputError

    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, None, None, f"not UTF-8 (byte {e.start})") from None
    return parse_env_text(text)


def read_key(env: str, required: bool = True, env_file: str | os.PathLike = ".env") -> Secret | None:
    """The key named `env` from the environment, else from `env_file` (the working directory's
    `.env`). A missing key is an error naming the variable when `required`, else None."""
    if not _NAME.match(env or ""):
        raise ValueError(f"api_key_env: {env!r} is not an environment variable name")
    value = os.environ.get(env, "").strip()
    if value:
        return Secret(env, "environment", value)
    path = Path(env_file)
    if path.is_file():
        value = parse_env_file(path).get(env, "").strip()
        if value:
            return Secret(env, str(path), value)
    if required:
        raise ValueError(f"api key: {env} is not set in the environment or in {path.resolve()}")
    return None


def redact(text: str, secrets) -> str:
    """`text` with every occurrence of each secret (str or Secret) replaced by ***."""
    for s in secrets:
        v = s.value if isinstance(s, Secret) else s
        if v:
            text = text.replace(v, MASK)
    return text
