"""Extract the chosen option from a model's free-text answer (cot mode).

Differences from the original (docs/METHOD.md §5.3, §14.8): the *last* "The answer is" statement wins (a
model may restate or correct itself), the noisy "any stand-alone capital letter" fallback is
dropped, and an answer given as a value ("The answer is 0.75") is matched with math-verify
to the option it equals. Anything else is an explicit abstention with a reason, never a
random letter.
"""

from __future__ import annotations

import re

from .records import LETTERS

_ANSWER_IS = re.compile(r"answer is\s*:?\s*\$?\(?\s*([A-Z])\s*\)?(?![A-Za-z])", re.IGNORECASE)
_ANSWER_VALUE = re.compile(r"answer is\s*:?\s*(.+?)\s*(?:\.\s*$|$)", re.IGNORECASE | re.MULTILINE)
_BOXED = re.compile(r"\\boxed\{\s*\(?([A-Z])\)?\s*\}")
_PAREN = re.compile(r"\(([A-Z])\)")


def _valid(letter: str, n_options: int) -> bool:
    return letter in LETTERS[:n_options]


def _match_value(value: str, options: tuple[str, ...] | list[str]) -> str | None:
    """The letter of the single option mathematically equal to `value`, if any."""
    from math_verify import parse, verify

    # math-verify's default signal-based timeouts fail outside the main thread
    kw = {"parsing_timeout": None}
    gold = parse(value, **kw)
    if not gold:
        return None
    hits = []
    for i, opt in enumerate(options):
        cand = parse(opt, **kw)
        if cand and verify(gold, cand, timeout_seconds=None):
            hits.append(LETTERS[i])
    return hits[0] if len(hits) == 1 else None


def extract_choice(text: str | None, options: tuple[str, ...] | list[str]) -> tuple[str | None, str | None]:
    """Return (letter, None) or (None, reason)."""
    if text is None or not text.strip():
        return None, "empty output"
    n = len(options)
    stated = [m.group(1).upper() for m in _ANSWER_IS.finditer(text)]
    stated = [s for s in stated if _valid(s, n)]
    if stated:
        return stated[-1], None
    boxed = [m.group(1) for m in _BOXED.finditer(text) if _valid(m.group(1), n)]
    if boxed:
        return boxed[-1], None
    values = _ANSWER_VALUE.findall(text)
    if values:
        letter = _match_value(values[-1].strip().strip("$"), options)
        if letter:
            return letter, None
    parens = [m.group(1) for m in _PAREN.finditer(text) if _valid(m.group(1), n)]
    if parens:
        return parens[-1], None
    return None, "no option letter or matching value found"
