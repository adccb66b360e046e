"""Shared fixtures: a tiny random model (built in a second, no download) and paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from rgd.models import materialise

    out = tmp_path_factory.mktemp("models") / "tiny"
    materialise("tiny", {"kind": "tiny-random", "seed": 0}, out)
    return out


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """The same tiny model without a chat template (a 'base' model)."""
    from rgd.models import materialise

    out = tmp_path_factory.mktemp("models") / "tiny-base"
    materialise("tiny-base", {"kind": "tiny-random", "seed": 1, "chat": False}, out)
    return out
