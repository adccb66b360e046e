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
    with pytest.raises(
        ValueError, match="unknown backend 'tgi' .one of transformers, vllm, llamacpp, gemini, openai"
    ):
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
    assert enum == {"models": [*experts, backends.AUTO], "experts": experts, "generators": writers}
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


def test_special_tokens_are_added_unless_every_text_starts_with_the_bos():
    """One rule for every local backend: a chat template that writes the BOS gets no second one."""
    from types import SimpleNamespace

    from rgd.backends.base import adds_special_tokens
    from rgd.models import tiny_tokenizer

    tok = tiny_tokenizer()
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert chat.startswith("<s>") and not adds_special_tokens(tok, [chat, "<s>x"])
    assert adds_special_tokens(tok, ["Question: hi"]) and adds_special_tokens(tok, [chat, "x"])
    assert adds_special_tokens(SimpleNamespace(bos_token=None), ["<s>x"])


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


def test_backend_auto_picks_the_faster_cpu_engine_of_the_machine():
    """Measured in docs/MODELS.md: transformers in bfloat16 where the CPU has native bf16, llama.cpp
    on the quantised GGUF elsewhere (transformers would run float32 there)."""
    assert backends.resolve_auto("flags\t: fpu avx2 avx512f avx512_bf16\n")[0] == "transformers"
    assert backends.resolve_auto("flags\t: fpu avx2 fma f16c\n")[0] == "llamacpp"
    assert backends.resolve_auto("flags\t: fpu amx_bf16\n")[0] == "transformers"
    # decoding: llama.cpp was the faster engine on both kinds (1.1-1.4x against bfloat16)
    for flags in ("fpu avx2 avx512f avx512_bf16", "fpu avx2 fma f16c"):
        assert backends.resolve_auto(f"flags\t: {flags}\n", task="generate")[0] == "llamacpp"


def test_a_config_resolves_backend_auto_for_its_models_and_their_generators(monkeypatch):
    import copy

    import rgd.backends.base as base

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    local = [n for n, m in cfg["models"].items() if m.get("backend") == "auto"]
    assert local, "the embedded default picks its engine per machine"
    for flags, want in ((["avx512_bf16"], "transformers"), ([], "llamacpp")):
        monkeypatch.setattr(base, "cpu_bf16_flags", lambda cpuinfo=None, f=flags: f)
        c = config.load(copy.deepcopy(cfg), ROOT / "workflow/schemas/config.schema.yaml")
        assert {c["models"][n]["backend"] for n in local} == {want}
        assert {g["backend"] for g in c["generators"].values()} == {"llamacpp"}
        # a generator that names its backend keeps it
        named = copy.deepcopy(cfg)
        next(iter(named["generators"].values()))["backend"] = "transformers"
        c = config.load(named, ROOT / "workflow/schemas/config.schema.yaml")
        assert next(iter(c["generators"].values()))["backend"] == "transformers"
