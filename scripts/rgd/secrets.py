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


def parse_env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines, optionally `export NAME=value`, quoted values, `#` comments."""
    out: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not _NAME.match(name):
            continue  # never echo an unparseable line: it may hold a key
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        out[name] = value
    return out


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
