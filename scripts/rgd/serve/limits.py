"""The bounds of `rgd serve`, in one place, and the readers that keep to them.

Every bound is a field of `Limits` (its default and its one-line meaning), a command-line option
of the same name (`max_body_bytes` -> `--max-body-bytes`) and a row of docs/SERVING.md. What a
client or an upstream sends is read within them: a request body up to its cap and no further, an
upstream answer up to its cap, a stream line by line with each line capped, and JSON only once its
nesting is known to be shallow (a parser recurses once per level).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..spec import bounds, validate

CHARS_PER_TOKEN = 32  # the routed text kept per token of the embedder's input: a generous margin
FALLBACK_TOKENS = 8192  # an embedder that does not say its maximum input length
RETRY_AFTER_S = 1  # what a 503 (too many requests in flight) asks a client to wait
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    deadline: float = field(
        default=600.0,
        metadata=bounds(
            exclusive_min=0,
            doc="seconds from a request's arrival to the last byte of its answer, streams included "
            "(past it: 504, or an error event that ends the stream)",
        ),
    )
    head_timeout: float = field(
        default=10.0,
        metadata=bounds(
            exclusive_min=0,
            doc="seconds a client has to send a request's head (request line and headers); "
            "then the connection is closed",
        ),
    )
    body_timeout: float = field(
        default=60.0,
        metadata=bounds(exclusive_min=0, doc="seconds a client has to send a request's body (then 408)"),
    )
    max_head_bytes: int = field(
        default=16384, metadata=bounds(min=1024, doc="bytes of a request's head (more: 400, closed)")
    )
    max_body_bytes: int = field(
        default=8 * MiB,
        metadata=bounds(min=1024, doc="bytes of a request body, counted as it arrives (more: 413, closed)"),
    )
    max_json_depth: int = field(
        default=64, metadata=bounds(min=4, max=500, doc="nesting of a request body's JSON (deeper: 400)")
    )
    max_route_chars: int | None = field(
        default=None,
        metadata=bounds(
            min=256,
            doc="characters of the routed text that are embedded (the request is forwarded whole); "
            f"default: the embedder's maximum input length in tokens x {CHARS_PER_TOKEN}",
        ),
    )
    max_concurrent: int = field(
        default=128,
        metadata=bounds(
            min=1,
            doc="routed requests in progress, streams until their end (more: 503 with Retry-After, at once)",
        ),
    )
    max_answer_bytes: int = field(
        default=16 * MiB,
        metadata=bounds(
            min=1024,
            doc="bytes of an upstream's answer that is not a stream, or of its error body "
            "(more: that expert failed, the next is tried)",
        ),
    )
    max_event_bytes: int = field(
        default=MiB,
        metadata=bounds(
            min=1024,
            doc="bytes of one line of an upstream stream, and of all it sends before its first event "
            "(more: a failed attempt before the first event, an error event after it)",
        ),
    )

    embed_cache_entries: int = field(
        default=4096,
        metadata=bounds(
            min=0,
            doc="texts whose embedding is kept (exact text; least recently used out first; 0: no cache)",
        ),
    )
    embed_cache_bytes: int = field(
        default=64 * MiB,
        metadata=bounds(
            min=0,
            doc="bytes of the embedding cache: its float32 vectors plus about 256 bytes per entry "
            "(0: no cache)",
        ),
    )

    def __post_init__(self):
        validate(self)

    def route_chars(self, max_tokens: int | None) -> int:
        """The routed text's cap: the option, or the embedder's input length worth of characters."""
        if self.max_route_chars is not None:
            return self.max_route_chars
        return (max_tokens or FALLBACK_TOKENS) * CHARS_PER_TOKEN


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def register_options(parser) -> None:
    """One option per field of Limits, its help the field's doc and default."""
    for f in dataclasses.fields(Limits):
        seconds = f.type == "float"
        default = "" if f.default is None else f" (default {f.default:{'g' if seconds else 'd'}})"
        parser.add_argument(
            option(f.name),
            type=float if seconds else int,
            metavar="S" if seconds else "N",
            help=f.metadata["doc"] + default,
        )


def from_args(a) -> Limits:
    """The Limits of the options given (the rest: defaults); a bound broken names its option."""
    from ..io import InputError
    from ..spec import SpecError

    fields = dataclasses.fields(Limits)
    given = {f.name: v for f in fields if (v := getattr(a, f.name, None)) is not None}
    try:
        return Limits(**given)
    except SpecError as e:
        raise InputError("<command line>", None, option(e.field or ""), e.message) from None


# --------------------------------------------------------------------------- bounded readers
class OutOfBounds(Exception):
    """What an upstream sent that rgd does not hold: over a cap (str() says which), or compressed."""


_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]], _STEP[[ord("]"), ord("}")]] = 1, -1
_LONE = re.compile(rb"\\u[dD][89a-fA-F]")  # the escape of a surrogate: a lone one is possible
_EOL = re.compile(rb"\r\n|\r|\n")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of brackets outside strings, in linear time and before any parse.
    Escaped backslashes and quotes are dropped first, so every quote left opens or closes a string;
    then only quotes and brackets are kept (a few, in a usual request), and scanned in slices."""
    kept = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    deepest = level = quotes = 0
    for i in range(0, len(kept), MiB):
        a = np.frombuffer(kept, np.uint8, count=min(MiB, len(kept) - i), offset=i)
        parity = (np.cumsum(a == ord('"'), dtype=np.uint8) + quotes) & 1  # 1 inside a string
        run = np.cumsum(np.where(parity == 0, _STEP[a], 0), dtype=np.int32) + level
        deepest, level, quotes = max(deepest, int(run.max())), int(run[-1]), int(parity[-1])
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:20]} is out of range")
    return v


def loads(raw: bytes, max_depth: int, strict: bool = True):
    """JSON from UTF-8 bytes, or a ValueError whose message reads after "request body: ": not
    UTF-8, nested deeper than `max_depth` (checked before the parser recurses), not JSON, and with
    `strict`, NaN, Infinity or a number out of range."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (byte {e.start})") from None
    depth = json_depth(raw)
    if depth > max_depth:
        raise ValueError(f"nested {depth} levels deep, over the limit of {max_depth}")
    try:
        if strict:
            return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"not valid JSON: {e}") from None


def lone_surrogate(raw: bytes, obj) -> str | None:
    """'field: lone surrogate U+D800 at character 4 ...' for the first string (value or key) of
    `obj` (parsed from `raw`) that holds one, or None. Only a body with such an escape is walked."""
    from ..records import check_unicode

    if not _LONE.search(raw):
        return None
    stack = [("", obj)]
    while stack:
        path, v = stack.pop()
        try:
            if isinstance(v, str):
                check_unicode(path or "body", v)
            elif isinstance(v, dict):
                for k in v:
                    check_unicode(f"{path or 'body'}: key {k!r}", k)
                stack += [(f"{path}.{k}" if path else k, x) for k, x in reversed(v.items())]
            elif isinstance(v, list):
                stack += [(f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v)))]
        except ValueError as e:
            return str(e)
    return None


def header_problem(value: str) -> str | None:
    """Why `value` cannot be an HTTP header value (None: it can): a control character, a line
    break, a character beyond Latin-1, or blanks at either end."""
    for i, c in enumerate(value):
        if ord(c) < 32 or ord(c) == 127 or ord(c) > 255:
            return f"character {i} is {c!r}, which an HTTP header cannot carry"
    if value != value.strip():
        return "blanks at either end, which an HTTP header drops"
    return None


async def read_capped(resp, cap: int, what: str) -> bytes:
    """An upstream response's body (not decoded: rgd asks for identity), refused past `cap` bytes
    before more is held: the declared length first, then as it arrives."""
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise OutOfBounds(f"{what} is compressed ({encoding}), although rgd asked for identity")
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise OutOfBounds(f"{what} of {int(declared)} bytes declared, over the limit of {cap}")
    buf = bytearray()
    async for chunk in resp.aiter_raw():
        buf += chunk
        if len(buf) > cap:
            raise OutOfBounds(f"{what} over the limit of {cap} bytes")
    return bytes(buf)


async def capped_lines(chunks, cap: int):
    """The lines (bytes, without their end) of a byte stream split at CRLF, CR or LF, as SSE has
    them; a line that grows past `cap` bytes raises OutOfBounds before it is held whole."""
    buf, scanned = bytearray(), 0
    async for chunk in chunks:
        buf += chunk
        start = 0
        while (m := _EOL.search(buf, max(start, scanned))) is not None:
            if m.group() == b"\r" and m.end() == len(buf):
                break  # maybe the first half of a CRLF: wait for the next byte
            yield bytes(buf[start : m.start()])
            start = m.end()
        del buf[:start]
        scanned = max(0, len(buf) - 1)
        if len(buf) > cap:
            raise OutOfBounds(f"a line over the limit of {cap} bytes")
    if buf:
        yield bytes(buf.rstrip(b"\r"))
