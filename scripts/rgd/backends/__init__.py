"""Model backends: one contract (rgd.backends.base) and one factory (`make`) that every step uses.

Each backend's module is imported only when that backend is asked for: importing rgd.backends
loads no torch, transformers or vllm.
"""

from __future__ import annotations

from importlib import import_module

from .base import Backend, Settings

# The one list of backends: name -> (module, class). The config schema's backend enums, the config
# checks and the workflow's rule families are checked against it (tests/test_backends.py).
_CLASSES = {
    "transformers": ("hf", "HFBackend"),
    "vllm": ("vllm", "VLLMBackend"),
    "llamacpp": ("llamacpp", "LlamaCppBackend"),
    "gemini": ("api", "Gemini"),
    "openai": ("api", "OpenAICompatible"),
    "recorded": ("recorded", "RecordedBackend"),
}
NAMES = tuple(_CLASSES)
# backends that run a registry model here (LocalBackend): known before any backend module is imported
LOCAL = ("transformers", "vllm", "llamacpp")
# an expert's backends: the local ones, and the replay of a model's recorded answers
EXPERT = (*LOCAL, "recorded")
# a generator's: every backend that writes text (a recording cannot)
GENERATOR = tuple(n for n in NAMES if n != "recorded")
# a registry model's `backend: auto`: the faster CPU engine for this machine and task, measured in
# docs/MODELS.md ("CPU engines"); resolved when the config is loaded (rgd.config)
AUTO = "auto"


def resolve_auto(cpuinfo: str | None = None, task: str = "answer") -> tuple[str, str]:
    """(backend, why) for `backend: auto` on this machine (or the given /proc/cpuinfo text), for
    a model's `task`: "answer" (letter mode: prompt processing) or "generate" (decoding)."""
    from .base import cpu_bf16_flags

    if task == "generate":
        return "llamacpp", "generation: llama.cpp on the quantised GGUF decodes faster on every CPU measured"
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        return (
            "transformers",
            f"native bfloat16 ({', '.join(flags)}): transformers in bfloat16 is the faster engine",
        )
    return "llamacpp", "no native bfloat16: llama.cpp on the quantised GGUF beats transformers in float32"


def backend_class(name: str) -> type[Backend]:
    """The class of a backend name (its module imported; no model library is)."""
    if name not in _CLASSES:
        raise ValueError(f"backend: unknown backend {name!r} (one of {', '.join(NAMES)})")
    module, cls = _CLASSES[name]
    return getattr(import_module(f"{__name__}.{module}"), cls)


def make(name: str, model_dir=None, settings: Settings | None = None, log=None) -> Backend:
    """The backend `name`, for a registry model in `model_dir` (local backends) or for an API
    generator's `settings.config`; each backend takes from `settings` what it uses."""
    model_dir = None if model_dir is None else str(model_dir)
    return backend_class(name).create(model_dir, settings or Settings(), log)
