"""The endpoints file of `rgd serve`: where each pool expert is served (YAML or JSON).

    experts:
      smol-chat:
        base_url: http://gpu-node-07:8000/v1   # an OpenAI-compatible server (vllm serve, ...)
        model: HuggingFaceTB/SmolLM2-135M-Instruct   # the name that server knows the model by
        api_key_env: SMOL_API_KEY   # optional: the environment variable holding its key
        timeout: 60                 # optional: seconds to connect, and between bytes of the answer
        cost: {input_per_mtok: 0.02, output_per_mtok: 0.04, unit: USD}   # optional (rgd.cost)
    timeout: 60                     # optional: the default of every expert

Every expert of the router's pool needs an entry, checked before the server starts: a missing one
is refused with one line naming the file and the expert. Keys are read from the environment only,
never from this file, and are never printed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..cost import Cost
from ..io import InputError
from .limits import header_problem

DEFAULT_TIMEOUT_S = 60.0
# An entry is a few lines, so this holds hundreds of experts; PyYAML reads about 60 KB/s on a
# loaded core with these files' key lines, so an 8.5 MB file took minutes and 650 MB before
# its error. A larger file is refused by its size, before it is parsed.
MAX_BYTES = 128 * 1024
FIELDS = ("base_url", "model", "api_key_env", "timeout", "cost")


@dataclass(frozen=True)
class Endpoint:
    expert: str
    base_url: str  # without a trailing slash; the OpenAI paths (/chat/completions) follow it
    model: str
    timeout: float
    api_key_env: str | None = None
    cost: Cost | None = None

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def describe(self) -> dict:
        """What /health shows: never the key, only the variable's name."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "timeout": self.timeout,
            "api_key_env": self.api_key_env,
            "cost": self.cost.to_dict() if self.cost else None,
        }


def _lines(path: Path, text: str) -> dict[tuple, int]:
    """Line numbers of the YAML keys, by key path, for located errors."""
    import yaml

    out: dict[tuple, int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = prefix + (k.value,)
                out[key] = k.start_mark.line + 1
                walk(v, key)

    try:
        walk(yaml.compose(text), ())
    except yaml.YAMLError:
        pass
    return out


def load(path: str | os.PathLike, pool: list[str], env: dict | None = None) -> dict[str, Endpoint]:
    """{expert: Endpoint} for every expert of `pool`; raises InputError on the first problem."""
    from ..io import read_text, read_yaml

    path = Path(path)
    env = os.environ if env is None else env
    _check_size(path)
    doc = read_yaml(path)  # located errors; an expert given twice is refused, not silently replaced
    text = read_text(path)
    lines = _lines(path, text)

    def err(key: tuple, message: str) -> InputError:
        return InputError(path, lines.get(key), ".".join(key) if key else None, message)

    if not isinstance(doc, dict) or not isinstance(doc.get("experts"), dict):
        raise err(("experts",), "expected a mapping `experts: {EXPERT: {base_url, model, ...}}`")
    unknown = sorted(set(doc) - {"experts", "timeout"})
    if unknown:
        raise err((unknown[0],), "unknown field (known: experts, timeout)")
    default_timeout = _timeout(doc.get("timeout", DEFAULT_TIMEOUT_S), lambda m: err(("timeout",), m))
    entries = doc["experts"]
    missing = [e for e in pool if e not in entries]
    if missing:
        raise err(
            ("experts",), f"no endpoint for pool expert {missing[0]!r} (the router's pool: {', '.join(pool)})"
        )
    return {expert: _endpoint(expert, entries[expert], default_timeout, env, err) for expert in pool}


def _check_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        return  # read_yaml names the problem
    if size > MAX_BYTES:
        raise InputError(
            path,
            None,
            None,
            f"{size:,} bytes, over the limit of {MAX_BYTES:,} for an endpoints file (an entry per expert)",
        )


def _endpoint(expert: str, spec, default_timeout: float, env, err) -> Endpoint:
    """One expert's entry, checked field by field; `err(key, message)` makes the located error."""
    key = ("experts", expert)
    if not isinstance(spec, dict):
        raise err(key, "expected a mapping with base_url and model")
    extra = sorted(set(spec) - set(FIELDS))
    if extra:
        raise err(key + (extra[0],), f"unknown field (known: {', '.join(FIELDS)})")
    for f in ("base_url", "model"):
        if not isinstance(spec.get(f), str) or not spec[f].strip():
            raise err(key + (f,), "missing" if f not in spec else "expected a non-empty string")
    _check_url(spec["base_url"], lambda m: err(key + ("base_url",), m))
    var = spec.get("api_key_env")
    if var is not None:
        if not isinstance(var, str) or not var.strip():
            raise err(key + ("api_key_env",), "expected the name of an environment variable")
        if not env.get(var):
            raise err(key + ("api_key_env",), f"environment variable {var} is not set (or empty)")
        if header_problem(f"Bearer {env[var]}"):  # it is sent as a header; never shown
            raise err(
                key + ("api_key_env",),
                f"environment variable {var} holds a character an HTTP header cannot carry "
                "(a control character, a line break, blanks at either end or beyond Latin-1)",
            )
    cost = None
    if spec.get("cost") is not None:
        try:
            cost = Cost.parse(spec["cost"])
        except ValueError as e:
            field, _, msg = str(e).partition(": ")
            raise err(key + tuple(field.split(".")), msg) from None
    return Endpoint(
        expert,
        spec["base_url"].rstrip("/"),
        spec["model"],
        _timeout(spec.get("timeout", default_timeout), lambda m: err(key + ("timeout",), m)),
        var,
        cost,
    )


def _check_url(url: str, err) -> None:
    """An http(s) URL that requests can be built on: no credentials (shown nowhere, not even in
    this error), no control characters or blanks, and one that the HTTP client parses."""
    import httpx2

    if "@" in url.partition("://")[2].partition("/")[0]:
        raise err("credentials in the URL: put the key in an environment variable and name it in api_key_env")
    bad = next((i for i, c in enumerate(url) if not c.isprintable() or c.isspace()), None)
    if bad is not None:
        raise err(f"character {bad} is {url[bad]!r}: a URL holds no control characters or blanks")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range raises here
        httpx2.URL(url + "/chat/completions")
    except (ValueError, httpx2.InvalidURL) as e:
        raise err(f"not a URL the HTTP client takes ({e}): {_shown(url)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise err(f"expected an http(s) URL such as http://host:8000/v1, got {_shown(url)!r}")


def _shown(url: str) -> str:
    """The URL as an error may show it: nothing of what comes before an '@' (a password, perhaps)."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, sep, _ = head.partition("://")
    return f"{scheme}{sep}***@{tail}" if sep else f"***@{tail}"


def _timeout(v, err) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise err(f"expected a number of seconds > 0, got {v!r}")
    return float(v)
