"""From the items of several files to one recording: rgd's letter per (model, question), one gold
revision, and the provenance that says how.

The letter rule (one for every model): the response is cut at the start of the next few-shot turn,
the first line that begins with `Question:` (5-shot completions of base models go on to write the
next question with its own "The answer is"), and the rest goes through
`rgd.answers.extract_choice`. A miss is an abstention with its reason, never a letter. A
log-likelihood record's letter is the option of highest log-likelihood, whose value becomes the
confidence; no other source has a confidence.

The gold revision: the files of one benchmark can carry different revisions of the same question
(a corrected key, a fixed option). One file's version is taken for every question (`gold_from`),
falling back to the version most files give for a question that file lacks; without `gold_from`
every question takes the version most files give (ties: the version of the first model by name).
A model that saw different options than the chosen version did not answer the chosen question:
its record there is an abstention ("options differ from the gold revision"). A change of the
question text alone (spacing, an escape) keeps the letter; the provenance lists both kinds.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ..answers import extract_choice
from .sources import FileRead, Item

NEXT_TURN = re.compile(r"^[ \t]*Question:", re.MULTILINE)
REVISED = "options differ from the gold revision"
CUT_MISS = "no answer before the next 'Question:' turn"
RULE = (
    "rgd.answers.extract_choice on the response cut at the first line that starts with 'Question:' "
    "(the next few-shot turn); a miss is an abstention with its reason"
)
LOGLIKELIHOOD_RULE = (
    "log-likelihood tasks: the option of highest log-likelihood (ties: the first), that "
    "log-likelihood as the confidence"
)


def cut_at_next_turn(text: str) -> tuple[str, bool]:
    """The response up to the next few-shot turn, and whether anything was cut."""
    m = NEXT_TURN.search(text)
    return (text[: m.start()], True) if m else (text, False)


def parse_letter(item: Item) -> tuple[str | None, str | None]:
    """(letter, None) or (None, reason) for one item, against the options the model saw."""
    if item.loglikelihood:
        return item.letter, item.reason
    if item.text is None:
        return None, "empty output"
    text, cut = cut_at_next_turn(item.text)
    letter, reason = extract_choice(text, item.options)
    if letter is None and cut and text.strip():
        reason = CUT_MISS
    return letter, reason


@dataclass(frozen=True)
class Version:
    """A question as one file gives it."""

    category: str
    question: str
    options: tuple[str, ...]
    answer: str


@dataclass
class Parsed:
    """One model's parsed records (no response text is kept)."""

    model: str
    file: FileRead
    versions: dict[str, Version] = field(default_factory=dict)
    letters: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    confidences: dict[str, float] = field(default_factory=dict)
    preds: dict[str, str | None] = field(default_factory=dict)
    records: int = 0


def parse_file(f: FileRead) -> Parsed:
    p = Parsed(f.model, f)
    for it in f.items:
        p.versions[it.id] = Version(it.category, it.question, it.options, it.answer)
        p.preds[it.id] = it.pred
        letter, reason = parse_letter(it)
        if letter is None:
            p.reasons[it.id] = reason or "no letter"
        else:
            p.letters[it.id] = letter
            if it.confidence is not None:
                p.confidences[it.id] = it.confidence
    p.records = len(f.items)
    f.items = []  # the texts are no longer needed
    return p


def id_order(qid: str) -> tuple:
    """Numeric ids in numeric order, then the others as strings."""
    return (0, int(qid), qid) if qid.isdigit() else (1, 0, qid)


def _majority(by_model: dict[str, Version]) -> Version:
    counts = Counter(by_model.values())
    first = {}
    for m in sorted(by_model):
        first.setdefault(by_model[m], m)
    return min(counts, key=lambda v: (-counts[v], first[v]))


def choose_versions(
    parsed: list[Parsed], gold_from: str | None
) -> tuple[dict[str, Version], list[str], list[str]]:
    """(the chosen version of every question, the ids the gold file lacks or has broken there (the
    majority version is taken), the ids dropped because no file has two options for them)."""
    by_id: dict[str, dict[str, Version]] = defaultdict(dict)
    for p in parsed:
        for qid, v in p.versions.items():
            if len(v.options) >= 2:  # an older revision's one-option question is never chosen
                by_id[qid][p.model] = v
            else:
                by_id.setdefault(qid, {})
    gold = next((p for p in parsed if p.model == gold_from), None)
    chosen, fallback, dropped = {}, [], []
    for qid in sorted(by_id, key=id_order):
        if gold is not None and gold_from in by_id[qid]:
            chosen[qid] = by_id[qid][gold_from]
        elif by_id[qid]:
            chosen[qid] = _majority(by_id[qid])
            if gold is not None:
                fallback.append(qid)
        else:
            dropped.append(qid)
    return chosen, fallback, dropped


def apply_revision(parsed: list[Parsed], chosen: dict[str, Version]) -> None:
    """A record whose options differ from the chosen version becomes an abstention; a record of a
    dropped question is removed."""
    for p in parsed:
        for qid, v in list(p.versions.items()):
            if qid not in chosen:
                for m in (p.versions, p.letters, p.reasons, p.confidences, p.preds):
                    m.pop(qid, None)
            elif v.options != chosen[qid].options:
                p.letters.pop(qid, None)
                p.confidences.pop(qid, None)
                p.reasons[qid] = REVISED


def differences(parsed: list[Parsed], chosen: dict[str, Version]) -> tuple[dict, dict]:
    """(ids whose gold letter differs between files: {id: {chosen, letters: {letter: [models]}}},
    ids whose question or options differ: {id: {options_differ: [...], question_differs: [...]}})"""
    gold, revised = {}, {}
    for qid, c in chosen.items():
        letters, opts, text = defaultdict(list), [], []
        for p in parsed:
            v = p.versions.get(qid)
            if v is None:
                continue
            letters[v.answer].append(p.model)
            if v.options != c.options:
                opts.append(p.model)
            elif v.question != c.question:
                text.append(p.model)
        if len(letters) > 1:
            gold[qid] = {"chosen": c.answer, "letters": {k: sorted(ms) for k, ms in sorted(letters.items())}}
        if opts or text:
            revised[qid] = {"options_differ": sorted(opts), "question_differs": sorted(text)}
    return gold, revised


def _share(n: int, d: int) -> float | None:
    return round(n / d, 6) if d else None


def model_stats(p: Parsed, keys: dict[str, str]) -> dict:
    """Counts and accuracies of one model (accuracy over all questions: a miss or an uncovered
    question counts wrong; accuracy_covered over the questions its file has)."""
    n = len(keys)
    correct = sum(keys[q] == a for q, a in p.letters.items())
    given = {q: x for q, x in p.preds.items() if x is not None}
    agree = sum(p.letters.get(q) == x for q, x in given.items())
    pred_correct = sum(keys[q] == x for q, x in given.items())
    covered = len(p.versions)
    return {
        "files": list(p.file.inputs),
        "records": p.records,
        "non_records": p.file.non_records,
        "covered": covered,
        "answered": len(p.letters),
        "abstained": len(p.reasons),
        "abstentions": dict(sorted(Counter(p.reasons.values()).items())),
        "confidences": len(p.confidences),
        "correct": correct,
        "accuracy": _share(correct, n),
        "accuracy_covered": _share(correct, covered),
        "abstention_share": _share(len(p.reasons), covered),
        "source_pred": {
            "given": len(given),
            "agree": agree,
            "agreement": _share(agree, len(given)),
            "correct": pred_correct,
            "accuracy": _share(pred_correct, n),
            "letter_where_pred_null": sum(q in p.letters for q, x in p.preds.items() if x is None),
        },
    }
