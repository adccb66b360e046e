"""API generator backends: Gemini (through `google-genai`) and any OpenAI-compatible HTTP server.

Both are rgd.backends.base.Backends that render nothing and score no letters: they take the
prompt dicts of rgd.generate and return `APIGeneration`s in prompt order, like the local
backends, so `generate.run` caches finished chunks the same way (that cache is what makes a
killed or failed run resumable). What is particular to an API:

- transient failures (HTTP 408/429/5xx, timeouts, dropped connections, a garbled body) are
  retried with exponential backoff and jitter from a seeded RNG, honouring Retry-After; after
  `max_retries` retries the chunk fails with one clear error naming the status and endpoint;
  other HTTP errors (400, 401, 404...) fail at once;
- a few requests run at a time (`concurrency`), each with its own seed (run seed + prompt
  position), so identical prompts for one category still differ;
- token usage is returned per prompt, and priced (`price_per_million`) into the step's meta;
- the key comes only from the environment or `.env` (rgd.secrets) and is redacted from every
  message this module writes or raises.

Needs the network for real use; tests run both clients against a local server on 127.0.0.1.
"""

from __future__ import annotations

import email.utils
import random
import sys
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..secrets import DEFAULT_ENV, Secret, read_key, redact
from .base import APIGeneration, Backend, Sampling, Settings

# The reference's Gemini-2.5-Flash rates (gemini_gen.py), US$ per million tokens.
GEMINI_PRICES = {"input": 0.30, "cached_input": 0.03, "output": 2.50}


def retryable(status: int | None) -> bool:
    """408 (request timeout), 429 (rate limit) and every 5xx are worth another try."""
    return status in (408, 429) or (status is not None and 500 <= status < 600)


class ServiceError(RuntimeError):
    """An API request that failed for good: the message names the endpoint and the status."""


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with "equal jitter": attempt k waits between cap/2 and cap, with
    cap = min(max_s, base_s * 2**k), and at least what the server's Retry-After asks."""

    max_retries: int = 5
    base_s: float = 1.0
    max_s: float = 60.0
    seed: int = 0

    def delay(self, attempt: int, request: str, retry_after: float | None = None) -> float:
        # one RNG per (request, attempt): the waits do not depend on thread scheduling
        rng = random.Random(f"{self.seed}:{request}:{attempt}")
        cap = min(self.max_s, self.base_s * 2**attempt)
        return max(cap / 2 + rng.uniform(0, cap / 2), retry_after or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110: delay-seconds or an HTTP date); None if absent/garbled."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def cost_usd(usage: dict, prices: dict | None) -> float | None:
    """Price of token totals {input, cached_input, output}: cached input tokens are part of the
    input count and billed at the cached rate; output includes thinking tokens."""
    if not prices:
        return None
    cached = usage.get("cached_input", 0)
    total = (
        (usage.get("input", 0) - cached) * prices.get("input", 0.0)
        + cached * prices.get("cached_input", 0.0)
        + usage.get("output", 0) * prices.get("output", 0.0)
    ) / 1e6
    return round(total, 6)


class _APIBackend(Backend):
    """Retries, the thread pool and the counters shared by both clients."""

    name = "api"
    reports_usage = True
    completions = False  # has a completions endpoint: takes completion prompts (style fewshot)

    def __init__(
        self,
        model_id: str,
        key: Secret | None,
        retry: Retry,
        timeout_s: float,
        concurrency: int,
        prices: dict | None,
        log: Callable[[str], None] | None = None,
    ):
        self.model_id, self.key, self.retry = model_id, key, retry
        self.timeout_s, self.concurrency, self.prices = timeout_s, max(1, concurrency), prices
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0}

    @classmethod
    def create(cls, model_dir, settings: Settings, log=None) -> _APIBackend:
        """A backend from a generator's config (`settings.config`). The key is read here, from
        `api_key_env` (default GEMINI_API_KEY / OPENAI_API_KEY) in the environment or `.env`:
        never from the config."""
        cfg, kind = settings.config, cls.name
        if "api_key" in cfg:
            raise ValueError(
                f"api_key: keys are never read from config; set {DEFAULT_ENV[kind]} in the environment or "
                ".env"
            )
        if not cfg.get("model_id"):
            raise ValueError(f"model_id: the {kind} backend needs the API's model id")
        if cfg.get("guided"):
            raise ValueError(
                f"guided: rgd writes the tags around a local model's text; the {kind} backend cannot"
            )
        style = cfg.get("style", "chat")
        if style == "chat-fewshot" or (not cls.completions and style != "chat"):
            raise ValueError(
                f"style: {style!r} is not available with the {kind} backend (chat APIs cannot continue "
                "a prefilled "
                f"reply{'' if cls.completions else f'; the {kind} API has no completions endpoint'})"
            )
        retry = Retry(
            max_retries=cfg.get("max_retries", 5),
            base_s=cfg.get("backoff_base_s", 1.0),
            max_s=cfg.get("backoff_max_s", 60.0),
            seed=cfg.get("seed", 0),
        )
        common = {
            "retry": retry,
            "timeout_s": cfg.get("timeout_s", 120.0),
            "concurrency": cfg.get("concurrency", 5),
            "log": log,
        }
        return cls._from_config(cfg, cfg.get("api_key_env", DEFAULT_ENV[kind]), common)

    @classmethod
    @abstractmethod
    def _from_config(cls, cfg: dict, key_env: str, common: dict) -> _APIBackend:
        """The client's own settings from the config; `common`: the arguments every client takes."""

    @property
    def identity(self) -> dict:
        """What, besides prompt and sampling, determines a reply (goes into the cache key)."""
        return {"backend": self.name, "model": self.model_id}

    def log(self, msg: str) -> None:
        self._log(self._redact(msg))

    def _redact(self, text: str) -> str:
        return redact(text, [self.key] if self.key else [])

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _with_retries(self, call: Callable[[], APIGeneration], what: str, request: str) -> APIGeneration:
        attempts = self.retry.max_retries + 1
        for attempt in range(attempts):
            self._count("requests")
            try:
                return call()
            except _Transient as e:
                reason, retry_after = e.reason, e.retry_after
            if attempt + 1 == attempts:
                break
            wait = self.retry.delay(attempt, request, retry_after)
            self._count("retries")
            self.log(f"{what}: {reason}; retry {attempt + 1}/{self.retry.max_retries} in {wait:.2f} s")
            time.sleep(wait)
        raise ServiceError(self._redact(f"{what}: {reason} after {attempts} attempts; giving up"))

    def _fail(self, what: str, reason: str) -> ServiceError:
        return ServiceError(self._redact(f"{what}: {reason}"))

    def generate(
        self, prompts: list[dict], sampling: Sampling, logprobs: bool = False, stop: list[str] | None = None
    ) -> list[APIGeneration]:
        """Replies in prompt order; prompt j of the chunk is sampled with seed sampling.seed + j."""
        if logprobs:
            raise ValueError(f"{self.name}: API generators return no log-probabilities")
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            futures = [
                pool.submit(self._one, p, sampling, sampling.seed + j, stop) for j, p in enumerate(prompts)
            ]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:  # a failed chunk is not cached: do not send what is still queued
                    f.cancel()
                raise

    @abstractmethod
    def _one(self, prompt: dict, sampling: Sampling, seed: int, stop: list[str] | None) -> APIGeneration:
        """One request for one prompt (retries are the caller's)."""

    def report(self, usages: list[dict]) -> dict:
        """Meta for a whole run: token totals over every prompt (cached or not), their price,
        and this run's request counts."""
        total: dict[str, int] = {}
        for u in usages:
            for k, v in u.items():
                total[k] = total.get(k, 0) + int(v or 0)
        return {
            "usage": dict(sorted(total.items())),
            "prices_per_million": self.prices,
            "cost_usd": cost_usd(total, self.prices),
            "this_run": dict(self.stats),
        }

    def _check_prompt(self, prompt: dict) -> None:
        if "assistant_prefix" in prompt:
            raise ValueError(
                f"{self.name}: a chat API cannot continue a prefilled reply (style chat-fewshot); use style "
                "chat"
            )
        if "messages" not in prompt and not self.completions:
            raise ValueError(
                f"{self.name}: completion prompts (style fewshot) need a completions endpoint; use style chat"
            )


class OpenAICompatible(_APIBackend):
    """Any server with the OpenAI `/chat/completions` and `/completions` endpoints (OpenAI, vLLM
    serve, llama.cpp server, SGLang...), through plain `requests`."""

    name = "openai"
    completions = True

    def __init__(
        self,
        base_url: str,
        model_id: str,
        key: Secret | None,
        retry: Retry = Retry(),
        timeout_s: float = 120.0,
        concurrency: int = 5,
        prices: dict | None = None,
        log=None,
    ):
        super().__init__(model_id, key, retry, timeout_s, concurrency, prices, log)
        self.base_url = base_url.rstrip("/")
        self._local = threading.local()

    @classmethod
    def _from_config(cls, cfg, key_env, common):
        if not cfg.get("base_url"):
            raise ValueError(
                "base_url: the openai backend needs the server's base URL, e.g. http://host:8000/v1"
            )
        # a local server may need no key; a service that does answers 401, and the error says so
        return cls(
            cfg["base_url"],
            cfg["model_id"],
            read_key(key_env, required=False),
            prices=cfg.get("price_per_million"),
            **common,
        )

    def _session(self):
        import requests

        if not hasattr(self._local, "session"):  # requests.Session is not thread-safe: one per thread
            self._local.session = requests.Session()
        return self._local.session

    def _one(self, prompt, sampling, seed, stop):
        import requests

        self._check_prompt(prompt)
        chat = "messages" in prompt
        url = f"{self.base_url}/{'chat/completions' if chat else 'completions'}"
        body = {
            "model": self.model_id,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed,
            "n": 1,
            **({"messages": prompt["messages"]} if chat else {"prompt": prompt["text"]}),
            **({"stop": stop} if stop else {}),
        }
        headers = {"Authorization": f"Bearer {self.key.value}"} if self.key else {}
        what = f"{self.name}: POST {url}"

        def call() -> APIGeneration:
            try:
                r = self._session().post(url, json=body, headers=headers, timeout=self.timeout_s)
            except requests.Timeout:
                raise _Transient(f"no reply within {self.timeout_s:g} s") from None
            except requests.RequestException as e:  # refused or dropped connection, truncated body...
                raise _Transient(f"request failed ({type(e).__name__})") from None
            if retryable(r.status_code):
                raise _Transient(f"HTTP {r.status_code}", parse_retry_after(r.headers.get("Retry-After")))
            if r.status_code != 200:
                hint = "" if self.key else " (no key was sent: set OPENAI_API_KEY or api_key_env)"
                raise self._fail(what, f"HTTP {r.status_code}{hint}: {r.text[:300]!r}")
            try:
                data = r.json()
                choice = data["choices"][0]
                text = choice["message"]["content"] if chat else choice["text"]
                usage = data.get("usage") or {}
            except (ValueError, KeyError, IndexError, TypeError):
                raise _Transient("HTTP 200 with a malformed body") from None
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            u = {
                "input": int(usage.get("prompt_tokens") or 0),
                "cached_input": int(cached),
                "output": int(usage.get("completion_tokens") or 0),
            }
            return APIGeneration(text or "", None, u["input"], u["output"], u)

        return self._with_retries(call, what, f"{seed}:{url}")


class Gemini(_APIBackend):
    """Gemini through the official `google-genai` client; `base_url` points it at another host
    (a proxy, or the local test server). The client's own retries stay off: rgd's policy rules."""

    name = "gemini"

    def __init__(
        self,
        model_id: str,
        key: Secret,
        base_url: str | None = None,
        retry: Retry = Retry(),
        timeout_s: float = 120.0,
        concurrency: int = 5,
        prices: dict | None = GEMINI_PRICES,
        thinking_budget: int | None = None,
        log=None,
    ):
        from google import genai
        from google.genai import types

        super().__init__(model_id, key, retry, timeout_s, concurrency, prices, log)
        self.base_url, self.thinking_budget = base_url, thinking_budget
        self._types = types
        http = types.HttpOptions(base_url=base_url, timeout=max(1, int(timeout_s * 1000)), retry_options=None)
        self.client = genai.Client(api_key=key.value, vertexai=False, http_options=http)
        self._transport = _httpx_errors()

    @classmethod
    def _from_config(cls, cfg, key_env, common):
        return cls(
            cfg["model_id"],
            read_key(key_env),
            base_url=cfg.get("base_url"),
            prices=cfg.get("price_per_million", GEMINI_PRICES),
            thinking_budget=cfg.get("thinking_budget"),
            **common,
        )

    @property
    def identity(self) -> dict:
        extra = {} if self.thinking_budget is None else {"thinking_budget": self.thinking_budget}
        return {**super().identity, **extra}

    def _request(self, prompt: dict, sampling: Sampling, seed: int, stop):
        t = self._types
        self._check_prompt(prompt)
        system = "\n\n".join(m["content"] for m in prompt["messages"] if m["role"] == "system") or None
        contents = [
            t.Content(role="model" if m["role"] == "assistant" else "user", parts=[t.Part(text=m["content"])])
            for m in prompt["messages"]
            if m["role"] != "system"
        ]
        thinking = (
            None if self.thinking_budget is None else t.ThinkingConfig(thinking_budget=self.thinking_budget)
        )
        config = t.GenerateContentConfig(
            system_instruction=system,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_output_tokens=sampling.max_new_tokens,
            seed=seed,
            stop_sequences=stop or None,
            thinking_config=thinking,
        )
        return contents, config

    def _one(self, prompt, sampling, seed, stop):
        from google.genai import errors

        contents, config = self._request(prompt, sampling, seed, stop)
        what = f"{self.name}: generateContent {self.model_id} at {self.base_url or 'the Gemini API'}"

        def call() -> APIGeneration:
            try:
                resp = self.client.models.generate_content(
                    model=self.model_id, contents=contents, config=config
                )
            except errors.APIError as e:
                if retryable(e.code):
                    raise _Transient(
                        f"HTTP {e.code} {e.status or ''}".strip(), _gemini_retry_after(e)
                    ) from None
                raise self._fail(what, f"HTTP {e.code} {e.status or ''}: {str(e.message)[:300]!r}") from None
            except self._transport as e:
                timeout = "Timeout" in type(e).__name__
                raise _Transient(
                    f"no reply within {self.timeout_s:g} s"
                    if timeout
                    else f"connection failed ({type(e).__name__})"
                ) from None
            except ValueError:  # a 200 whose body is not JSON (json.JSONDecodeError, pydantic errors)
                raise _Transient("HTTP 200 with a malformed body") from None
            m = resp.usage_metadata
            n_in = (m.prompt_token_count or 0) if m else 0
            thoughts = (m.thoughts_token_count or 0) if m else 0
            u = {
                "input": n_in,
                "cached_input": (m.cached_content_token_count or 0) if m else 0,
                "output": ((m.candidates_token_count or 0) if m else 0) + thoughts,
                "thoughts": thoughts,
            }
            return APIGeneration(_text(resp), None, n_in, u["output"], u)

        return self._with_retries(call, what, f"{seed}:{self.model_id}")


def _text(resp) -> str:
    """The first candidate's answer text, thought summaries excluded; "" when blocked/empty."""
    cands = resp.candidates or []
    parts = (cands[0].content.parts if cands and cands[0].content else None) or []
    return "".join(p.text for p in parts if p.text and not p.thought)


def _gemini_retry_after(e) -> float | None:
    headers = getattr(getattr(e, "response", None), "headers", None) or {}
    ra = parse_retry_after(headers.get("Retry-After"))
    if ra is not None:
        return ra
    # the Gemini API says it in the body:
    # {"error": {"details": [{"@type": "...RetryInfo", "retryDelay": "30s"}]}}
    body = e.details if isinstance(e.details, dict) else {}
    for d in (body.get("error") or body).get("details") or []:
        delay = d.get("retryDelay") if isinstance(d, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            return parse_retry_after(delay[:-1])
    return None


def _httpx_errors() -> tuple[type[BaseException], ...]:
    out = []
    for name in ("httpx2", "httpx"):  # google-genai uses httpx2 (newer) or httpx
        try:
            out.append(__import__(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(out)
