"""BBEH (BIG-Bench Extra Hard, GitHub google-deepmind/bbeh): the 9 tasks castable as multiple choice.

Raw data: ``bbeh/benchmark_tasks/{subset}/task.json`` (``{"examples": [{"input", "target"}]}``)
fetched from raw.githubusercontent.com at a pinned commit (the original used the moving `main`
branch). Formatting (docs/METHOD.md §2.4):

* tasks in the fixed order of SUBSETS; id = running global index over them (as a string);
  category = subset name;
* bbeh_boardgame_qa: question = input, options = [proved, disproved, unknown];
* bbeh_causal_understanding: question = input, options = [Yes, No, Ambiguous];
* the 7 others: question = text before the first literal "(A)"; options = the "(X) text"
  blocks from there on, each running to the next line that starts with "(Y) " or to the end,
  of which only the first line is kept (this drops instructions that follow the last option,
  and the continuation lines of the rare multi-line option); answer = X of a target "(X)", or
  a bare one-letter target (hyperbaton).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from ..io import read_json
from ..records import LETTERS
from .common import (
    DownloadError,
    Row,
    clean_text,
    need_str,
    require_pinned,
    staged_dir,
    verify_stamp,
    write_stamp,
)

NAME = "bbeh"
REPO = "google-deepmind/bbeh"
REVISION = "80d12ca916b7158f22293fcf3144f4d3d854d4be"
BASE_URL = "https://raw.githubusercontent.com"
TASK_PATH = "bbeh/benchmark_tasks/{subset}/task.json"
SUBSETS = (
    "bbeh_boardgame_qa",
    "bbeh_boolean_expressions",
    "bbeh_causal_understanding",
    "bbeh_disambiguation_qa",
    "bbeh_geometric_shapes",
    "bbeh_hyperbaton",
    "bbeh_movie_recommendation",
    "bbeh_shuffled_objects",
    "bbeh_nycc",
)
CATEGORIES = SUBSETS
FIXED_OPTIONS = {
    "bbeh_boardgame_qa": ("proved", "disproved", "unknown"),
    "bbeh_causal_understanding": ("Yes", "No", "Ambiguous"),
}
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_TASK_BYTES = 64 << 20

_NEXT_OPTION = re.compile(r"\n\(([A-Z])\) ")
_MARKER = re.compile(r"\(([A-Z])\)")
_PAREN_TARGET = re.compile(r"\(([A-Z])\)")


# ------------------------------------------------------------------------------------------
# download


def task_url(base_url: str, repo: str, revision: str, subset: str) -> str:
    return f"{base_url.rstrip('/')}/{repo}/{revision}/{TASK_PATH.format(subset=subset)}"


def _fetch(session: Any, url: str, *, timeout: float, retries: int, backoff: float) -> bytes:
    """GET url; retry connection errors, timeouts and transient HTTP statuses; fail fast otherwise."""
    import requests

    last = "no attempt made"
    for attempt in range(retries + 1):
        try:
            resp = session.get(url, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout) as e:
            last = f"{type(e).__name__}: {e}"
        else:
            if resp.status_code == 200:
                body = resp.content
                if len(body) > MAX_TASK_BYTES:
                    raise DownloadError(f"{url}: {len(body)} bytes, over the {MAX_TASK_BYTES}-byte limit")
                return body
            if resp.status_code not in RETRY_STATUS:
                raise DownloadError(f"{url}: HTTP {resp.status_code} (not retried)")
            last = f"HTTP {resp.status_code}"
        if attempt < retries:
            time.sleep(backoff * (2**attempt))
    raise DownloadError(f"{url}: failed after {retries + 1} attempts; last error: {last}")


def _check_task_bytes(body: bytes, url: str) -> None:
    """Refuse anything that is not a BBEH task file (an HTML error page, a truncated body...)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DownloadError(f"{url}: not a JSON task file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list) or not data["examples"]:
        raise DownloadError(f"{url}: expected an object with a non-empty 'examples' list")


def download(
    out_dir: Path,
    revision: str = REVISION,
    *,
    repo: str = REPO,
    subsets: tuple[str, ...] | list[str] = SUBSETS,
    base_url: str = BASE_URL,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    session: Any = None,
    allow_unpinned: bool = False,
    expected_sha256: dict[str, str] | None = None,
) -> Path:
    """Fetch the task.json of each MC subset of `repo` at commit `revision` into
    out_dir/{subset}/task.json, plus out_dir/source.json."""
    require_pinned(revision, allow_unpinned=allow_unpinned)
    _check_subsets(subsets)
    if session is None:
        import requests

        session = requests.Session()
    files = []
    with staged_dir(out_dir) as stage:
        for subset in subsets:
            url = task_url(base_url, repo, revision, subset)
            body = _fetch(session, url, timeout=timeout, retries=retries, backoff=backoff)
            _check_task_bytes(body, url)
            rel = f"{subset}/task.json"
            if expected_sha256 and rel in expected_sha256:
                got = hashlib.sha256(body).hexdigest()
                if got != expected_sha256[rel]:
                    raise DownloadError(
                        f"{url}: sha256 {got} differs from the expected {expected_sha256[rel]}"
                    )
            (stage / subset).mkdir()
            (stage / rel).write_bytes(body)
            files.append(rel)
        write_stamp(
            stage,
            files,
            source="github",
            repo=repo,
            revision=revision,
            url_template=task_url(base_url, repo, revision, "{subset}"),
        )
    return Path(out_dir)


def _check_subsets(subsets) -> None:
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown or not subsets:
        raise ValueError(
            f"subsets: only the multiple-choice tasks {list(SUBSETS)} are supported, got {list(subsets)}"
        )


# ------------------------------------------------------------------------------------------
# format


def parse_generic(text: str) -> tuple[str, list[str]]:
    """Split a generic BBEH input into (question, options); ValueError if it is not MC-shaped."""
    start = text.find("(A)")
    if start < 0:
        raise ValueError("no '(A)' option marker")
    question = text[:start].strip()
    if not question:
        raise ValueError("no question text before '(A)'")
    tail = text[start:]
    starts = [0] + [m.start() + 1 for m in _NEXT_OPTION.finditer(tail)]
    options = []
    for i, (a, b) in enumerate(zip(starts, starts[1:] + [len(tail)])):
        block = tail[a:b]
        m = _MARKER.match(block)
        expected = LETTERS[i] if i < len(LETTERS) else "?"
        if m is None or m.group(1) != expected:
            raise ValueError(f"option #{i + 1} should be marked ({expected}), found {block[:12]!r}")
        first_line = block[m.end() :].split("\n", 1)[0].strip()
        if not first_line:
            raise ValueError(f"option ({expected}) has no text on its line")
        options.append(first_line)
    if len(options) < 2:
        raise ValueError(f"found {len(options)} option(s), need at least 2")
    return question, options


def target_letter(target: str) -> str:
    """'(E)' -> 'E'; a bare single letter 'E' -> 'E' (hyperbaton); anything else: ValueError."""
    t = target.strip()
    m = _PAREN_TARGET.fullmatch(t)
    if m:
        return m.group(1)
    if len(t) == 1 and t in LETTERS:
        return t
    raise ValueError(f"cannot read an option letter from {target!r} (expected '(X)' or 'X')")


def _examples(path: Path) -> list:
    data = read_json(path)
    if not isinstance(data, dict):
        raise Row(path).error("examples", "expected a JSON object with an 'examples' list")
    ex = data.get("examples")
    if not isinstance(ex, list):
        raise Row(path).error("examples", "missing or not a list")
    if not ex:
        raise Row(path).error("examples", "empty")
    return ex


def format(raw_dir: Path, *, subsets: tuple[str, ...] | list[str] = SUBSETS) -> tuple[list[dict], list[dict]]:  # noqa: A001
    """Raw BBEH task files -> (questions, keys) over the MC subsets, in order."""
    _check_subsets(subsets)
    raw_dir = Path(raw_dir)
    verify_stamp(raw_dir)
    questions, keys = [], []
    for subset in subsets:
        path = raw_dir / subset / "task.json"
        for i, ex in enumerate(_examples(path)):
            at = Row(path, item=f"examples[{i}]")
            if not isinstance(ex, dict):
                raise Row(path).error(f"examples[{i}]", f"expected an object, got {type(ex).__name__}")
            text = clean_text(need_str(ex, "input", at))
            target = need_str(ex, "target", at)
            if subset in FIXED_OPTIONS:
                options = list(FIXED_OPTIONS[subset])
                question = text.strip()
                lowered = [o.lower() for o in options]
                t = target.strip().lower()
                if t not in lowered:
                    raise at.error("target", f"{target!r} is not one of {options}")
                answer = LETTERS[lowered.index(t)]
            else:
                try:
                    question, options = parse_generic(text)
                except ValueError as e:
                    raise at.error("input", str(e)) from None
                try:
                    answer = target_letter(target)
                except ValueError as e:
                    raise at.error("target", str(e)) from None
                if LETTERS.index(answer) >= len(options):
                    raise at.error("target", f"{target!r} is outside the {len(options)} parsed options")
            qid = str(len(questions))
            questions.append(
                {
                    "id": qid,
                    "category": subset,
                    "question": question,
                    "options": options,
                    "meta": {"example": i},
                }
            )
            keys.append({"id": qid, "answer": answer})
    return questions, keys
