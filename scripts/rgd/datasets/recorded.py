"""A recorded benchmark: the questions of a recording (rgd.recorded) that every model of its pools
was recorded on, with the recording's one gold revision as keys.

Only the question records and keys leave the recording here; the models' answers reach the
workflow through their experts' respond jobs (the recorded backend), as any expert's would.
"""

from __future__ import annotations

from pathlib import Path

from ..io import InputError


def covered_ids(recording, models: list[str]) -> set[str]:
    """Ids that every one of `models` answered or abstained on in `recording`."""
    unknown = [m for m in models if m not in recording.models]
    if unknown:
        raise InputError(
            "<command line>",
            None,
            "--models",
            f"no recorded model {unknown[0]!r}; the recording has {', '.join(recording.models)}",
        )
    return set.intersection(*(recording.covered(m) for m in models)) if models else set()


def benchmark(recording_dir: str | Path, models: list[str]) -> tuple[list[dict], list[dict], dict]:
    """(question records, key records, a summary) of the questions all `models` were recorded on,
    in the recording's order."""
    from ..recorded import load_recording

    rec = load_recording(recording_dir)
    ids = covered_ids(rec, models)
    if not ids:
        raise InputError(recording_dir, None, "--models", f"no question is covered by all of {models}")
    questions = [
        {"id": q.id, "category": q.category, "question": q.question, "options": list(q.options)}
        for q in rec.questions
        if q.id in ids
    ]
    keys = [{"id": q["id"], "answer": rec.keys[q["id"]]} for q in questions]
    summary = {
        "recording": str(recording_dir),
        "models": list(models),
        "n_recorded": len(rec.questions),
        "n_covered_by_all": len(questions),
    }
    return questions, keys, summary
