"""The four benchmarks: download raw upstream data at a pinned commit, then format it into
rgd's label-free question records and separate answer keys.

    from rgd.datasets import BENCHMARKS, format_to_files
    b = BENCHMARKS["mmlu_pro"]
    b.download(Path("data/raw/mmlu_pro"), b.revision)
    format_to_files("data/raw/mmlu_pro", "questions.jsonl", "keys.jsonl", "mmlu_pro")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import bbeh, medmcqa, mmlu_pro, supergpqa
from .common import DownloadError, format_to_files


@dataclass(frozen=True)
class Benchmark:
    name: str
    source: str  # "huggingface" (a dataset repo) or "github" (raw files of a git repo)
    repo: str  # default upstream repository id
    revision: str  # default pinned commit of that repository
    split: str | None  # upstream split used (None for BBEH, which has no splits)
    categories: tuple[str, ...]  # the category names as they appear in the formatted data
    download: Callable[..., Path]  # download(out_dir, revision=..., **opts) -> out_dir
    format: Callable[..., tuple[list[dict], list[dict]]]  # format(raw_dir, **opts) -> (questions, keys)


def _hf(mod) -> Benchmark:
    return Benchmark(
        mod.NAME,
        "huggingface",
        mod.REPO,
        mod.REVISION,
        mod.SPLIT,
        tuple(mod.CATEGORIES),
        mod.download,
        mod.format,
    )


BENCHMARKS: dict[str, Benchmark] = {
    "mmlu_pro": _hf(mmlu_pro),
    "supergpqa": _hf(supergpqa),
    "medmcqa": _hf(medmcqa),
    "bbeh": Benchmark(
        bbeh.NAME,
        "github",
        bbeh.REPO,
        bbeh.REVISION,
        None,
        tuple(bbeh.CATEGORIES),
        bbeh.download,
        bbeh.format,
    ),
}

__all__ = ["BENCHMARKS", "Benchmark", "DownloadError", "format_to_files"]
