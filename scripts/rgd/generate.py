"""RGD generation: a generator LLM writes 4-option questions from category descriptions alone.

docs/METHOD.md §4. The generator never sees a real question: a real training question only says
*which category* to write for (the "seed"), and the prompt carries that category's
description. Differences from the original (§14.7): the parser does not truncate at "[",
the key must be one of A-D, duplicate questions and options are rejected, every reject is
kept with its reason, and seed choice is seeded.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from . import backends
from .backends.base import (
    GENERATOR_SAMPLING,
    Backend,
    Generation,
    LocalBackend,
    Sampling,
    Settings,
    request_seed,
)
from .records import LETTERS, check_unicode
from .spec import SpecError, bounds, parse, validate

N_OPTIONS = 4
TAGS = ["QUESTION"] + [f"OPTION {c}" for c in LETTERS[:N_OPTIONS]] + ["ANSWER"]


def system_prompt(per_call: int = 1) -> str:
    """The generator's instructions; `per_call` > 1 asks for several questions separated by
    '#####' (the original Gemini prompt asks for five per request, docs/METHOD.md §4.2)."""
    what = (
        "one new, challenging question of that kind, with exactly four answer options A to D, exactly one of "
        "which is correct."
        if per_call == 1
        else f"{per_call} new, challenging questions of that kind, "
        "each with exactly four answer options A to D, "
        "exactly one of which is correct. Make the questions differ from each other."
    )
    sep = "" if per_call == 1 else "Separate consecutive questions with a line that contains only #####.\n"
    return (
        "You write multiple-choice exam questions for a teaching team. You are given a description of "
        f"a category of exam questions. Write {what} Do not use JSON or markdown code "
        "fences. Use this tagged format, each tag at the start of its own line:\n"
        "[QUESTION] the question\n[OPTION A] first option\n[OPTION B] second option\n"
        "[OPTION C] third option\n[OPTION D] fourth option\n[ANSWER] the single letter of the correct "
        "option\n"
        f"{sep}Write mathematics in LaTeX between $ signs. Always include all six tags."
    )


SYSTEM = system_prompt(1)

# Worked examples for completion-style (base) generators, written for rgd.
_FEWSHOT = (
    (
        "Questions about how living cells obtain and use energy, including photosynthesis and respiration.",
        "In which part of a plant cell does the Calvin cycle take place?",
        (
            "The thylakoid membrane",
            "The stroma of the chloroplast",
            "The mitochondrial matrix",
            "The nucleus",
        ),
        "B",
    ),
    (
        "Questions that test reasoning about prices, supply, demand and market outcomes.",
        "If the price of a good rises and the quantity demanded falls only slightly, demand for the good is",
        ("perfectly elastic", "unit elastic", "relatively inelastic", "relatively elastic"),
        "C",
    ),
)


def _block(description: str, question: str | None = None, options=None, answer: str | None = None) -> str:
    head = f"Category: {description.strip()}\n[QUESTION]"
    if question is None:
        return head
    opts = "\n".join(f"[OPTION {LETTERS[i]}] {o}" for i, o in enumerate(options))
    return f"{head} {question}\n{opts}\n[ANSWER] {answer}\n#####"


def build_prompt(description: str, style: str, per_call: int = 1) -> dict:
    """`chat`: system + user turns; `chat-fewshot`: the same with two worked examples as
    earlier turns; `fewshot`: a completion prompt for base models. Only `chat` asks for
    `per_call` > 1 questions (the others keep the first block of a reply)."""
    if per_call != 1 and style != "chat":
        raise ValueError(f"per_call: {per_call} questions per request needs style chat, not {style!r}")
    if style == "chat":
        return {
            "messages": [
                {"role": "system", "content": system_prompt(per_call)},
                {"role": "user", "content": f"Category description:\n{description.strip()}"},
            ]
        }
    if style == "chat-fewshot":
        # worked examples as earlier turns, and the reply opened with its first tag: small
        # chat models copy a demonstrated format far more reliably than a described one
        msgs = [{"role": "system", "content": SYSTEM}]
        for desc, q, opts, ans in _FEWSHOT:
            block = _block(desc, q, opts, ans).split("\n", 1)[1].removesuffix("\n#####")
            msgs += [
                {"role": "user", "content": f"Category description:\n{desc}"},
                {"role": "assistant", "content": block},
            ]
        msgs.append({"role": "user", "content": f"Category description:\n{description.strip()}"})
        return {"messages": msgs, "assistant_prefix": "[QUESTION]", "continues_tag": "QUESTION"}
    if style == "fewshot":
        shots = "\n".join(_block(*ex) for ex in _FEWSHOT)
        return {"text": f"{shots}\n{_block(description)}", "continues_tag": "QUESTION"}
    raise ValueError(f"unknown generator prompt style {style!r}")


_TAG_LINE = re.compile(r"^[ \t]*\[(QUESTION|OPTION [A-D]|[A-D]|ANSWER)\][ \t]*", re.MULTILINE)
_ANSWER = re.compile(r"^\(?([A-Da-d])\)?(?:[.):\s]|$)")


@dataclass
class Parsed:
    question: str | None = None
    options: list[str] | None = None
    answer: str | None = None
    reason: str | None = None


def parse_block(text: str) -> Parsed:
    """Parse one tagged block. Each tag's content runs to the next line-initial tag."""
    fields: dict[str, str] = {}
    marks = list(_TAG_LINE.finditer(text))
    for m, nxt in zip(marks, marks[1:] + [None]):
        tag = m.group(1)
        tag = f"OPTION {tag}" if len(tag) == 1 else tag
        body = text[m.end() : nxt.start() if nxt else len(text)].strip()
        if tag in fields:
            return Parsed(reason=f"repeated tag: [{tag}]")
        fields[tag] = body
    missing = [t for t in TAGS if not fields.get(t)]
    if missing:
        return Parsed(reason="missing fields: " + ", ".join(f"[{t}]" for t in missing))
    options = [fields[f"OPTION {c}"] for c in LETTERS[:N_OPTIONS]]
    if len({o.casefold() for o in options}) < N_OPTIONS:
        return Parsed(reason="duplicate options: two options are the same")
    m = _ANSWER.match(fields["ANSWER"])
    if not m:
        return Parsed(reason=f"bad answer: {fields['ANSWER'][:20]!r} is not one of A-D")
    return Parsed(fields["QUESTION"], options, m.group(1).upper())


def parse_output(text: str, continues_tag: str | None = None) -> list[Parsed]:
    """Split a generator's reply on '#####' and parse each block; the first block only for
    completion prompts, which tend to run on into further (unrequested) examples."""
    if continues_tag:
        # a base model runs on into further examples: keep its first block only
        text = f"[{continues_tag}] " + re.split(r"#####|\n\s*Category:", text, maxsplit=1)[0]
    blocks = [b for b in text.split("#####") if b.strip()]
    if not blocks:
        return [Parsed(reason="empty output: nothing generated")]
    return [parse_block(b) for b in (blocks[:1] if continues_tag else blocks)]


def choose_seeds(seed_pool: dict[str, list[str]], n: int, seed: int, replace: bool) -> list[tuple[str, str]]:
    """Category-balanced round robin over seed question ids (docs/METHOD.md §4.2/§4.3), seeded.

    Without replacement a category drops out once exhausted (API generators); with
    replacement its ids are reshuffled and reused (local generators)."""
    rng = np.random.default_rng(seed)
    cats = sorted(seed_pool)
    queues = {c: list(rng.permutation(seed_pool[c])) for c in cats}
    total = sum(len(v) for v in seed_pool.values())
    if not replace and n > total:
        raise ValueError(f"num_prompts: {n} seeds asked without replacement, only {total} available")
    out: list[tuple[str, str]] = []
    while len(out) < n:
        active = [c for c in cats if queues[c] or (replace and seed_pool[c])]
        if not active:
            break
        for c in active:
            if len(out) == n:
                break
            if not queues[c]:
                queues[c] = list(rng.permutation(seed_pool[c]))
            out.append((c, str(queues[c].pop(0))))
    return out


def dedupe_key(question: str) -> str:
    return re.sub(r"\W+", " ", question.casefold()).strip()


def collect(
    outputs: list[tuple[int, str, str]], continues_tag: str | None, generator: str
) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt index, category, raw text) triples -> questions, keys, rejects."""
    questions, keys, rejects = [], [], []
    seen: dict[str, str] = {}
    for idx, category, text in outputs:
        for j, p in enumerate(parse_output(text, continues_tag)):
            reason = p.reason
            if reason is None:
                dk = dedupe_key(p.question)
                if dk in seen:
                    reason = f"duplicate question: same as {seen[dk]}"
            if reason is not None:
                rejects.append(
                    {"prompt": idx, "block": j, "category": category, "reason": reason, "text": text}
                )
                continue
            qid = f"{generator}-{idx:05d}-{j}"
            seen[dk] = qid
            questions.append({"id": qid, "category": category, "question": p.question, "options": p.options})
            keys.append({"id": qid, "answer": p.answer})
    return questions, keys, rejects


def seed_pool_from(questions: list[dict]) -> dict[str, list[str]]:
    pool: dict[str, list[str]] = defaultdict(list)
    for q in questions:
        pool[q["category"]].append(q["id"])
    return dict(pool)


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


@dataclass(frozen=True)
class Prices:
    input: float | None = field(default=None, metadata=bounds(min=0.0))
    cached_input: float | None = field(default=None, metadata=bounds(min=0.0))
    output: float | None = field(default=None, metadata=bounds(min=0.0))


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator's config entry as `rgd generate --spec` gets it (the workflow adds seed,
    template_kwargs and engine from the model registry). Backends read the same dict."""

    num_prompts: int = field(metadata=bounds(min=1))
    model: str | None = field(default=None, metadata=bounds(doc="a model registry name (local backends)"))
    model_id: str | None = field(default=None, metadata=bounds(doc="API model id (gemini, openai)"))
    backend: Literal["transformers", "vllm", "llamacpp", "gemini", "openai"] = "transformers"
    base_url: str | None = field(default=None, metadata=bounds(pattern=r"https?://.+"))
    api_key_env: str | None = field(default=None, metadata=bounds(pattern=_NAME))
    api_key: Any = None  # refused below with the reason
    per_call: int = field(default=1, metadata=bounds(min=1))
    max_retries: int | None = field(default=None, metadata=bounds(min=0))
    backoff_base_s: float | None = field(default=None, metadata=bounds(exclusive_min=0.0))
    backoff_max_s: float | None = field(default=None, metadata=bounds(exclusive_min=0.0))
    timeout_s: float | None = field(default=None, metadata=bounds(exclusive_min=0.0))
    concurrency: int | None = field(default=None, metadata=bounds(min=1))
    thinking_budget: int | None = field(default=None, metadata=bounds(min=-1))
    price_per_million: Prices | None = None
    style: Literal["chat", "chat-fewshot", "fewshot"] = "chat"
    guided: bool = False
    replace: bool | None = None
    batch_size: int = field(default=8, metadata=bounds(min=1))
    max_prompt_tokens: int | None = field(default=None, metadata=bounds(min=16))
    sampling: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    template_kwargs: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)
    filter: dict | None = None  # builds gen-<name>-filtered: the workflow's and rgd filter's business

    def __post_init__(self) -> None:
        validate(self)
        if self.api_key is not None:
            raise ValueError(
                "api_key: keys are never read from config; set the variable named by api_key_env "
                "in the environment or .env"
            )
        if self.backend in backends.LOCAL and not self.model:
            raise ValueError(f"model: the {self.backend} backend needs a model registry name")
        if self.per_call != 1 and self.style != "chat":
            raise ValueError(
                f"per_call: {self.per_call} questions per request needs style chat, not {self.style!r}"
            )
        generator_sampling(self.sampling, self.seed)

    @property
    def local(self) -> bool:
        return self.backend in backends.LOCAL


def generator_sampling(given: dict, seed: int, where: str | None = None):
    """The Sampling of a generator: GENERATOR_SAMPLING under the config's `sampling`; the
    generator's `seed` seeds it (a `sampling.seed` is not used)."""
    try:
        return parse(Sampling, {**GENERATOR_SAMPLING, **given, "seed": seed}, where)
    except SpecError as e:
        raise e.at(where, "sampling") from None


def load_descriptions(path) -> dict[str, str]:
    """Category descriptions from YAML: `{categories: {name: text}}` (plus an optional
    `benchmark`), or a plain mapping name -> text. Duplicate keys, a list, an empty file or a
    description that is not text are errors naming the file."""
    from .io import InputError, read_yaml

    data = read_yaml(path, unique_keys=True)
    if data is None:
        raise InputError(path, None, None, "empty file, expected category descriptions")
    if not isinstance(data, dict):
        raise InputError(
            path, None, None, f"expected a mapping of category descriptions, got {type(data).__name__}"
        )
    if "categories" in data:
        unknown = sorted(map(str, set(data) - {"benchmark", "categories"}))
        if unknown:
            raise InputError(path, None, unknown[0], "unknown top-level key (expected benchmark, categories)")
        data = data["categories"]
        if not isinstance(data, dict) or not data:
            raise InputError(
                path, None, "categories", "expected a non-empty mapping of category -> description"
            )
    out = {}
    for name, text in data.items():
        field_ = f"categories.{name}"
        if not isinstance(name, str):
            raise InputError(path, None, field_, f"category names are strings, got {type(name).__name__}")
        if not isinstance(text, str) or not text.strip():
            raise InputError(path, None, field_, f"expected a non-empty description text, got {text!r}")
        try:
            check_unicode(field_, text)
        except ValueError as e:
            raise InputError(path, None, field_, str(e).partition(": ")[2]) from None
        out[name] = text
    if not out:
        raise InputError(path, None, None, "no category descriptions")
    return out


def backend_settings(gen_cfg: dict, sampling: Sampling, threads: int = 1) -> Settings:
    """What a generator asks of its backend (an API backend reads its own settings from the config)."""
    return Settings(
        threads=threads,
        batch_size=gen_cfg.get("batch_size", 8),
        max_new_tokens=sampling.max_new_tokens,
        template_kwargs=gen_cfg.get("template_kwargs", {}),
        engine=gen_cfg.get("engine", {}),
        seed=sampling.seed,
        config=gen_cfg,
    )


def make_backend(kind: str, model_dir, settings: Settings) -> Backend:
    """rgd.backends.make; an API backend's settings (model_id, base_url, style) and its key are
    checked as it is made: nothing has run yet, and each is the user's to fix."""
    try:
        return backends.make(kind, model_dir, settings)
    except ValueError as e:
        if kind in backends.LOCAL:
            raise
        field_, sep, msg = str(e).partition(": ")
        raise SpecError(
            "--spec", field_ if sep and " " not in field_ else None, msg if sep else str(e)
        ) from None


def run(
    name: str,
    gen_cfg: dict,
    seed_questions_path,
    descriptions: dict[str, str],
    model_dir,
    out_questions,
    out_keys,
    out_rejects,
    out_meta,
    cache_path,
    threads: int = 1,
    log=None,
    run_record=None,
    descriptions_path=None,
) -> dict:
    """Generate, parse and write one generator's question set (resumable through `cache_path`)."""
    import time

    from .cache import RecordCache
    from .runrecord import write_meta

    log = log or (lambda msg: print(msg, flush=True))
    spec, seeds, prompts, sampling = _plan(gen_cfg, seed_questions_path, descriptions, descriptions_path)
    identity = _manifest(spec, model_dir) if spec.local else None
    settings = backend_settings(gen_cfg, sampling, threads)
    backend = make_backend(spec.backend, model_dir, settings)
    if not backend.local:  # API backends: backend, model id and any option that changes replies
        identity = backend.identity
    cache = RecordCache(cache_path)
    t0 = time.perf_counter()
    keys = _prompt_keys(identity, sampling, spec, prompts, backend.cache_identity)

    def failed(first: int, last: int) -> None:
        log(
            f"[{name}] failed at prompts {first}-{last}; the {sum(k in cache for k in keys)} finished "
            f"prompts are kept in {cache_path}: a rerun computes only the rest"
        )

    work = _generate_missing(
        name, backend, prompts, keys, sampling, cache, settings.batch_size, spec.guided, log, failed
    )
    seconds = time.perf_counter() - t0
    replies = [cache.get(k) for k in keys]
    questions, rejects = _write_sets(name, seeds, prompts, replies, out_questions, out_keys, out_rejects)
    meta = _meta(name, gen_cfg, identity, len(prompts), questions, rejects, replies, work, seconds, backend)
    return write_meta(
        out_meta, meta, run_record, step="generate"
    )  # timings and this run's work: the run record


def _plan(
    gen_cfg: dict, seed_questions_path, descriptions: dict[str, str], descriptions_path
) -> tuple[GeneratorSpec, list[tuple[str, str]], list[dict], Sampling]:
    """(spec, seeds, prompts, sampling), every input checked: no model has loaded yet."""
    from .io import InputError
    from .records import read_questions

    spec = parse(GeneratorSpec, gen_cfg, "--spec")
    seeds_q = [q.to_dict() for q in read_questions(seed_questions_path)]
    pool = seed_pool_from(seeds_q)
    missing = sorted(set(pool) - set(descriptions))
    if missing:
        raise InputError(
            descriptions_path or "descriptions",
            None,
            None,
            f"descriptions: no description for categories {missing}",
        )
    replace = spec.local if spec.replace is None else spec.replace  # API generators: each seed once (§4.2)
    if not replace and spec.num_prompts > len(seeds_q):
        raise SpecError(
            "--spec",
            "num_prompts",
            f"{spec.num_prompts} seeds asked without replacement, only "
            f"{len(seeds_q)} in {seed_questions_path}",
        )
    seeds = choose_seeds(pool, spec.num_prompts, spec.seed, replace)
    prompts = [build_prompt(descriptions[c], spec.style, spec.per_call) for c, _ in seeds]
    return spec, seeds, prompts, generator_sampling(spec.sampling, spec.seed, "--spec")


def _manifest(spec: GeneratorSpec, model_dir) -> dict:
    """A local model's identity, its manifest.

    Read first, so a wrong directory fails before the model loads."""
    from pathlib import Path

    from .io import InputError, read_json
    from .models import MANIFEST

    if not model_dir:
        raise InputError(
            "<command line>", None, "--model-dir", f"the {spec.backend} backend needs the model directory"
        )
    return read_json(Path(model_dir) / MANIFEST)


def _prompt_keys(
    identity, sampling: Sampling, spec: GeneratorSpec, prompts: list[dict], engine_id
) -> list[str]:
    """Each prompt's cache key: everything that changes its reply.

    vLLM adds its version, dtype and logprobs mode."""
    from .cache import content_key

    engine = [engine_id] if engine_id else []
    return [
        content_key(identity, vars(sampling), spec.style, spec.guided, i, p, *engine)
        for i, p in enumerate(prompts)
    ]


def _generate_missing(
    name: str, backend: Backend, prompts, keys, sampling, cache, batch_size: int, guided: bool, log, failed
) -> Counter:
    """Every prompt not in the cache yet, with a progress line; returns the counts of this run's work."""
    from .progress import Progress

    work = Counter()
    progress = Progress(name, len(prompts), "prompt", log)
    if backend.streams and not guided:
        _generate_streaming(backend, prompts, keys, sampling, cache, batch_size, work, progress)
    else:
        _generate_batches(backend, prompts, keys, sampling, cache, batch_size, work, progress, guided, failed)
    progress.finish()
    return work


def _generate_batches(
    backend: Backend, prompts, keys, sampling, cache, batch_size: int, work, progress, guided: bool, failed
) -> None:
    """Batches of prompts, each seeded by its first index; a batch already cached is skipped whole.
    `failed(first, last)` is told which prompts a batch that raises held."""
    for start in range(0, len(prompts), batch_size):
        idx = [i for i in range(start, min(start + batch_size, len(prompts)))]
        if all(keys[i] in cache for i in idx):
            work["cached"] += len(idx)
            progress.update(work["prompts"], work["cached"])
            continue
        batch_sampling = Sampling(**{**vars(sampling), "seed": sampling.seed + start})
        try:
            if guided:
                gens = guided_generate(backend, [prompts[i] for i in idx], batch_sampling)
            else:
                gens = backend.generate([prompts[i] for i in idx], batch_sampling, logprobs=False)
        except Exception:
            failed(start, idx[-1])
            raise
        cache.add((keys[i], _reply(g, backend.reports_usage)) for i, g in zip(idx, gens))
        work["prompts"] += len(idx)
        work["tokens"] += sum(g.n_prompt_tokens + g.n_output_tokens for g in gens)
        progress.update(work["prompts"], work["cached"])


def _reply(g: Generation, usage: bool) -> dict:
    """A reply as the cache keeps it; API backends also return token usage (input, cached input, output)
    for the cost."""
    return {
        "text": g.text,
        "n_prompt_tokens": g.n_prompt_tokens,
        "n_output_tokens": g.n_output_tokens,
        **({"usage": g.usage} if usage else {}),
    }


def _write_sets(
    name: str, seeds, prompts: list[dict], replies: list[dict], out_questions, out_keys, out_rejects
) -> tuple[list[dict], list[dict]]:
    """Parse every reply and write the questions, their keys and the rejects; returns (questions, rejects)."""
    from .io import write_jsonl

    outputs = [(i, seeds[i][0], replies[i]["text"]) for i in range(len(prompts))]
    questions, answer_keys, rejects = collect(
        outputs, prompts[0].get("continues_tag") if prompts else None, name
    )
    write_jsonl(out_questions, questions)
    write_jsonl(out_keys, answer_keys)
    write_jsonl(out_rejects, rejects)
    return questions, rejects


def _meta(
    name: str,
    gen_cfg: dict,
    identity,
    n_prompts: int,
    questions: list[dict],
    rejects: list[dict],
    replies: list[dict],
    work: Counter,
    seconds: float,
    backend: Backend,
) -> dict:
    """The run's meta: settings (never an api_key), model, acceptance, reject reasons, throughput, engine,
    API use."""
    meta = {
        "generator": name,
        "settings": {k: v for k, v in gen_cfg.items() if k != "api_key"},
        "model": identity,
        "n_prompts": n_prompts,
        "n_questions": len(questions),
        "n_rejects": len(rejects),
        "acceptance_rate": round(len(questions) / max(1, n_prompts), 4),
        "reject_reasons": dict(sorted(Counter(r["reason"].split(":")[0] for r in rejects).items())),
        "throughput": _throughput(replies, work, seconds, backend),
    }
    if engine := backend.describe():
        meta["engine"] = engine
    if backend.reports_usage:  # API backends: token totals over all prompts, their cost, retries
        meta["api"] = backend.report([r.get("usage", {}) for r in replies])
    return meta


def _throughput(replies: list[dict], work: Counter, seconds: float, backend: Backend) -> dict:
    """Token totals over all replies; this run's computed prompts and tokens, and their rate."""
    computed = work["prompts"]
    return {
        "computed_prompts": computed,
        "output_tokens": sum(r["n_output_tokens"] for r in replies),
        "compute_seconds": round(seconds, 3),
        "prompt_tokens": sum(r["n_prompt_tokens"] for r in replies),
        "computed_tokens": work["tokens"],  # this run's prompt + output tokens
        "tokens_per_second": round(work["tokens"] / seconds, 2) if computed and seconds > 0 else None,
        "load_seconds": round(backend.load_seconds, 3),
        "device": backend.device,
    }


def _generate_streaming(backend: Backend, prompts, keys, sampling, cache, chunk: int, work, progress) -> None:
    """vLLM: every missing prompt in one engine call, each seeded from its own content key;
    finished texts are appended to the cache in chunks (at least `chunk`, at most one a second)."""
    import time

    todo = [i for i in range(len(prompts)) if keys[i] not in cache]
    work["cached"] = len(prompts) - len(todo)
    pending: list = []

    def flush():
        cache.add(pending)
        work["prompts"] += len(pending)
        work["tokens"] += sum(r["n_prompt_tokens"] + r["n_output_tokens"] for _, r in pending)
        pending.clear()
        progress.update(work["prompts"], work["cached"])

    last = time.perf_counter()
    stream = backend.stream_generate(
        [prompts[i] for i in todo], sampling, [request_seed(keys[i]) for i in todo], logprobs=False
    )
    for j, g in stream:
        pending.append((keys[todo[j]], _reply(g, False)))
        if len(pending) >= chunk and time.perf_counter() - last >= 1.0:
            flush()
            last = time.perf_counter()
    if pending:
        flush()


def guided_generate(backend: LocalBackend, prompts: list[dict], sampling: Sampling) -> list[Generation]:
    """Structured generation for weak local generators: the model writes each field's text, and
    rgd writes the tags around it (as guided decoding does in serving engines).

    Each field is sampled up to the end of its line; the key is the letter the generator itself
    finds most likely after "[ANSWER]". The result is an ordinary tagged block, so the same
    parser and validation (empty fields, duplicate options, duplicate questions) apply.
    """
    budget = {"QUESTION": 64, "OPTION": 24}  # new tokens per field
    texts = [backend.render(p) for p in prompts]
    start_tag = prompts[0].get("continues_tag") if prompts else None
    blocks = ["" if start_tag else "[QUESTION]" for _ in prompts]
    if not start_tag:
        texts = [t + "[QUESTION]" for t in texts]
    n_out = [0] * len(prompts)
    for k, tag in enumerate(TAGS[:-1]):
        s = Sampling(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_new_tokens=budget["QUESTION" if tag == "QUESTION" else "OPTION"],
            seed=sampling.seed * 7 + k,
        )
        gens = backend.generate([{"text": t} for t in texts], s, logprobs=False, stop=["\n"])
        nxt = f"\n[{TAGS[k + 1]}]"
        for i, g in enumerate(gens):
            piece = " " + g.text.strip()
            texts[i] += piece + nxt
            blocks[i] += piece + nxt
            n_out[i] += g.n_output_tokens
    letters = backend.score_letters([{"text": t} for t in texts], [N_OPTIONS] * len(texts))
    out = []
    for i, (lp, n_tok) in enumerate(letters):
        best = LETTERS[max(range(N_OPTIONS), key=lp.__getitem__)]
        out.append(Generation(blocks[i] + " " + best, None, n_tok, n_out[i] + 1))
    return out
