"""The backend contract (rgd.backends.base) and the one factory (rgd.backends.make)."""

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rgd import backends, config
from rgd.backends.base import GENERATOR_SAMPLING, Backend, LocalBackend, Sampling, Settings

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_backends_and_the_steps_loads_no_model_library():
    code = (
        "import sys, rgd.backends, rgd.respond, rgd.generate\n"
        "classes = [rgd.backends.backend_class(n) for n in rgd.backends.NAMES]\n"
        "heavy = ('torch', 'transformers', 'vllm', 'google.genai', 'requests')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert ast.literal_eval(out.strip()) == []


def test_every_backend_implements_the_contract_and_declares_its_capabilities():
    for name in backends.NAMES:
        cls = backends.backend_class(name)
        assert issubclass(cls, Backend) and not inspect.isabstract(cls) and cls.name == name
        local = name in backends.LOCAL
        assert issubclass(cls, LocalBackend) == cls.local == cls.scores_letters == local
    assert [n for n in backends.NAMES if backends.backend_class(n).streams] == ["vllm"]
    assert [n for n in backends.NAMES if backends.backend_class(n).reports_usage] == ["gemini", "openai"]
    assert [n for n in backends.NAMES if backends.backend_class(n).replays] == ["recorded"]
    with pytest.raises(ValueError, match="unknown backend 'tgi' .one of transformers, vllm, llamacpp, gemini, openai"):
        backends.make("tgi")


def test_the_registry_is_the_one_list_of_backends():
    """The schema's enums, the config checks and the workflow's rule families agree with it."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    enum = {
        block: spec["additionalProperties"]["properties"]["backend"]["enum"]
        for block, spec in schema["properties"].items()
        if block in ("models", "experts", "generators")
    }
    experts, writers = list(backends.EXPERT), list(backends.GENERATOR)
    assert enum == {"models": experts, "experts": experts, "generators": writers}
    assert set(backends.NAMES) == set(experts) | set(writers) and "recorded" not in writers
    assert config.LOCAL_BACKENDS is backends.LOCAL
    smk = (ROOT / "workflow/rules/common.smk").read_text()
    family = ast.literal_eval(re.search(r"family = (\{[^}]*\})", smk).group(1))
    assert set(family) == set(backends.NAMES)


def test_sampling_defaults_once_per_role():
    """An expert samples at the reference's 0.7 / top-p 1.0, a generator at 0.8 / 0.95; a
    generator's seed is its own, never the sampling block's."""
    assert Sampling.from_config(None) == Sampling() == Sampling(0.7, 1.0, 256, 0)
    assert Sampling.from_config({"seed": 4}, GENERATOR_SAMPLING, seed=9) == Sampling(0.8, 0.95, 256, 9)
    assert Sampling.from_config({"temperature": 0.2}, GENERATOR_SAMPLING).temperature == 0.2
    assert list(vars(Sampling())) == ["temperature", "top_p", "max_new_tokens", "seed"]  # cache keys' order


def test_the_factory_builds_the_transformers_backend_from_a_steps_settings(tiny_model):
    from rgd.respond import Expert

    expert = Expert.from_config(
        "e", {"model": "tiny", "style": "plain", "batch_size": 3, "engine": {"dtype": "bfloat16"}}
    )
    b = backends.make("transformers", tiny_model, expert.backend_settings(threads=1))
    assert isinstance(b, LocalBackend) and b.batch_size == 3 and b.dtype == "bfloat16"
    assert b.cache_identity == {"backend": "transformers", "dtype": "bfloat16"} and b.identity is None
    assert b.describe()["batch_size"] == 3 and b.load_seconds > 0 and b.device == "cpu"
    assert expert.backend_settings().max_new_tokens == 1  # a letter is one token
    assert Settings().max_prompt_tokens == expert.max_prompt_tokens
