"""Make tests/data/recorded-tiny: a small slice of the committed recording data/mmlu-pro-recorded
(the first 16 questions of two categories, three models), for the end-to-end test config.

    .venv/bin/python tests/data/make_recorded_tiny.py
"""

from __future__ import annotations

from pathlib import Path

from rgd.io import sha256_file
from rgd.recorded.recording import load_recording, write_recording

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data" / "mmlu-pro-recorded"
OUT = ROOT / "tests" / "data" / "recorded-tiny"
CATEGORIES = ("biology", "math")
PER_CATEGORY = 16
MODELS = ("Meta-Llama-3.1-8B-Instruct", "Phi-3-mini-4k-instruct", "mathstral-7B")


def main() -> None:
    rec = load_recording(SOURCE)
    common = set.intersection(*(rec.covered(m) for m in MODELS))
    picked = [
        q
        for c in CATEGORIES
        for q in [q for q in rec.questions if q.category == c and q.id in common][:PER_CATEGORY]
    ]
    ids = {q.id for q in picked}
    questions = [
        dict(id=q.id, category=q.category, question=q.question, options=list(q.options)) for q in picked
    ]
    keys = [{"id": q.id, "answer": rec.keys[q.id]} for q in picked]
    answers, counts = [], {}
    for m in MODELS:
        a = {k: v for k, v in rec.answers(m).items() if k in ids}
        b = {k: v for k, v in rec.abstentions(m).items() if k in ids}
        answers.append({"model": m, "answers": a, "abstentions": b, "confidences": {}})
        counts[m] = {"answered": len(a), "abstained": len(b), "covered": len(a) + len(b), "confidences": 0}
    prov = {
        "derived_from": {
            "recording": "data/mmlu-pro-recorded",
            "provenance_sha256": sha256_file(SOURCE / "provenance.json"),
            "categories": list(CATEGORIES),
            "per_category": PER_CATEGORY,
        },
        "source": rec.provenance.get("source"),
        "questions": {"n": len(questions)},
        "models": counts,
    }
    write_recording(OUT, questions, keys, answers, prov)
    print(f"{OUT}: {len(questions)} questions, {len(MODELS)} models")


if __name__ == "__main__":
    main()
