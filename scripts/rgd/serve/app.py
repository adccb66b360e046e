"""The ASGI application of `rgd serve` (Starlette; upstream calls with httpx2, the HTTP client that
the openai package itself uses).

A request's life:
 1. authentication (a bearer key from the environment, when one is configured);
 2. routing: the last user turn's text (chat) or the prompt (completions) is embedded with the
    router's own embedder and scored by the trained router (`Ranker`); requests that arrive while a
    batch is being embedded wait for the next batch, so concurrent clients share one forward pass;
    a text routed before takes its vector from the embedding cache (embed_cache) and skips both;
 3. forwarding: the body goes unchanged, but for its `model` field (the expert's upstream name), to
    the first expert of the ranking. On a connection error, a timeout or a 5xx, the next-ranked
    expert is tried, at most `max_attempts` experts in all. A 4xx is the client's problem and comes
    back as it is. A stream is committed to an expert when its first event has arrived: a failure
    before that still fails over; after it, the client gets an error event and no `[DONE]`, never a
    second answer spliced onto the first;
 4. the answer comes back with `model` set to the expert that answered, an `x-rgd-expert` header and
    an `rgd` extension field: the ranking with every expert's score, the objective, and every
    attempt made.
Nothing is logged of a request's body unless `log_bodies` is set; upstream keys are sent only to
their own endpoint and are scrubbed from any upstream error passed back.

Every request is bounded (limits.Limits): its body is counted as it arrives, its JSON is checked
for depth before it is parsed, its routed text is checked and capped before it joins a batch, an
upstream answer is read up to a cap, a deadline covers the whole request, a client that goes
cancels its upstream work, and at most `max_concurrent` routed requests run at once (Guard).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..cost import Objective, expected_costs, order
from .embed_cache import EmbedCache, text_key
from .endpoints import Endpoint
from .limits import (
    RETRY_AFTER_S,
    Limits,
    OutOfBounds,
    capped_lines,
    header_problem,
    loads,
    lone_surrogate,
    read_capped,
)

log = logging.getLogger("rgd.serve")
DEFAULT_MAX_ATTEMPTS = 3
ROUTER_MODEL = "rgd"
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
DEADLINE = "rgd.deadline"  # the scope key of a routed request's deadline (loop time), set by Guard
HARD_GRACE_S = 2.0  # past the deadline, Guard cuts what the request itself could not end


# --------------------------------------------------------------------------- errors
def error_body(message: str, type_: str, code: str | None = None, **extra) -> dict:
    """The OpenAI error shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code, **extra}}


class ClientError(Exception):
    """A request refused: its status, message, code and the field it names (OpenAI's `param`)."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param

    def body(self) -> dict:
        err = error_body(str(self), "invalid_request_error", self.code)
        err["error"]["param"] = self.param
        return err


def json_type(v) -> str:
    """A value's JSON type name, for messages."""
    if v is None:
        return "null"
    for t, name in ((bool, "boolean"), (str, "string"), ((int, float), "number"), (list, "array")):
        if isinstance(v, t):
            return name
    return "object"


def user_text(body: dict, kind: str) -> str:
    """What a request is routed on: the last user turn of a chat (string or text parts), or the
    completion prompt (one string)."""
    if kind == "chat":
        from ..records import _user_text  # the same reading as `rgd route` of chat prompts

        try:
            return _user_text(body.get("messages"))
        except ValueError as e:
            raise ClientError(400, str(e), "invalid_messages", str(e).partition(":")[0]) from None
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt.strip():
        raise ClientError(
            400,
            "prompt: expected one non-empty string (rgd serve routes one prompt per request)",
            "invalid_prompt",
            "prompt",
        )
    return prompt


def _finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None  # JSON has no NaN: a score the router could not give


# --------------------------------------------------------------------------- routing
class Decision(NamedTuple):
    """One text's routing: the scores (m,) and ranking (m,), the seconds spent getting its vector
    (queueing and the batch's forward pass, or the cache look-up) and ranking it (scoring, ordering,
    and the hand-back to the request), and where its vector came from: "hit", "miss" or "off"."""

    scores: np.ndarray
    order: np.ndarray
    embedding_s: float
    ranking_s: float
    cache: str


class Ranker:
    """Embeds texts with the router's embedder and ranks the pool, in one worker thread (on the
    event loop itself where `inline`: a static embedder, cheaper than the hand-off to a thread).

    `embed(texts) -> (n, d)` is the router's embedder, `score(X) -> (n, m)` the router's one door
    (rgd.routers.scores). A text whose vector is in the cache (exact text) skips the embedder and the
    batch: it is ranked at once, on the event loop (a few hundred microseconds for CASCAL). Each row
    is ordered on its own (rgd.cost.order with the same seed), so a request's ranking does not
    depend on which other requests shared its batch.
    """

    def __init__(
        self,
        embed,
        score,
        n_experts: int,
        objective: Objective,
        costs: np.ndarray | None,
        seed: int = 0,
        max_batch: int = 64,
        cache: EmbedCache | None = None,
        inline: bool = False,
    ):
        self._embed, self._score, self.m = embed, score, n_experts
        self.inline = inline  # embed on the event loop, not in the worker thread (a static embedder)
        self.objective, self.costs, self.seed, self.max_batch = objective, costs, seed, max_batch
        self.cache = cache if cache is not None else EmbedCache(0, 0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rgd-embed")
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def rank_now(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(scores (m,), order (m,)) per text, synchronously and past the cache (warm-up, tests)."""
        return [row[:2] for row in self._embed_and_rank(texts)]

    def _embed_and_rank(self, texts: list[str]) -> list[tuple]:
        """(scores, order, vector, perf_counter when the batch's vectors were ready) per text."""
        X = np.asarray(self._embed(texts), dtype=np.float32)
        embedded = time.perf_counter()
        return [(*row, X[i], embedded) for i, row in enumerate(self._rank_vectors(X))]

    def _rank_vectors(self, X: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        S = np.asarray(self._score(X), dtype=np.float64)
        if S.shape != (len(X), self.m):
            raise RuntimeError(f"router returned scores of shape {S.shape}, expected {(len(X), self.m)}")
        return [(S[i], order(S[i : i + 1], self.costs, self.objective, self.seed)[0]) for i in range(len(X))]

    async def rank(self, text: str) -> Decision:
        t0 = time.perf_counter()
        key = text_key(text) if self.cache.enabled else None
        vector = self.cache.get(key) if key is not None else None
        if vector is not None:
            found = time.perf_counter()
            try:
                scores, ranked = self._rank_vectors(vector[None, :])[0]
            except Exception:  # noqa: BLE001 - as a failed batch's text: this request only
                log.exception("routing failed")
                raise RuntimeError("the router failed on this request's text (see the server log)") from None
            return Decision(scores, ranked, found - t0, time.perf_counter() - found, "hit")
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((text, key, fut))
        scores, ranked, embedded = await fut
        done = time.perf_counter()
        return Decision(scores, ranked, embedded - t0, done - embedded, "off" if key is None else "miss")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [b for b in batch if not b[-1].done()]  # its client went, or its deadline
            if not batch:
                continue
            if self.inline:
                rows = self._batch(batch)
            else:
                rows = await loop.run_in_executor(self._pool, self._batch, batch)
            self.batches += 1
            for (_, _, fut), row in zip(batch, rows):
                if not fut.done():
                    fut.set_exception(row) if isinstance(row, Exception) else fut.set_result(row)

    def _batch(self, batch: list[tuple]) -> list:
        """In the worker: each text's (scores, order, when embedded) or its exception; each vector
        goes into the cache."""
        rows = self._rank_each([text for text, _, _ in batch])
        out = []
        for (_, key, _), row in zip(batch, rows):
            if isinstance(row, Exception):
                out.append(row)
                continue
            scores, ranked, vector, embedded = row
            if key is not None:
                self.cache.put(key, vector)
            out.append((scores, ranked, embedded))
        return out

    def _rank_each(self, texts: list[str]) -> list:
        """A row per text, or the exception its text raised: when the batch fails, each text is
        ranked alone, so that one bad text fails only its own request."""
        try:
            return self._embed_and_rank(texts)
        except Exception:  # noqa: BLE001 - retried text by text below
            if len(texts) == 1:
                log.exception("routing failed")
                return [RuntimeError("the router failed on this request's text (see the server log)")]
            log.warning("routing a batch of %d failed: ranking each request alone", len(texts))
        return [self._rank_each([t])[0] for t in texts]


# --------------------------------------------------------------------------- metrics
class Metrics:
    def __init__(self, experts: list[str]):
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        prometheus_client.disable_created_metrics()  # no `*_created` series: counters and histograms only
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "rgd_requests", "client requests by path and HTTP status", ["path", "status"], registry=r
        )
        self.routed = Counter(
            "rgd_routed", "requests whose top-ranked expert this was", ["expert"], registry=r
        )
        self.answered = Counter("rgd_answered", "requests this expert answered", ["expert"], registry=r)
        self.upstream_errors = Counter(
            "rgd_upstream_errors",
            "failed upstream calls by expert and kind "
            "(connection, timeout, http_5xx, invalid_response, stream)",
            ["expert", "kind"],
            registry=r,
        )
        self.failovers = Counter(
            "rgd_failovers", "requests answered by another than their first expert", registry=r
        )
        self.routing = Histogram(
            "rgd_routing_seconds",
            "time to embed and rank one request (queueing included): embedding + ranking",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        fine = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
        self.embedding = Histogram(
            "rgd_embedding_seconds",
            "time to one request's vector: queueing and its batch's forward pass, or the cache look-up",
            buckets=fine,
            registry=r,
        )
        self.ranking = Histogram(
            "rgd_ranking_seconds",
            "time to rank one request from its vector (scoring, ordering, hand-back)",
            buckets=fine,
            registry=r,
        )
        self.cache_hits = Counter(
            "rgd_embed_cache_hits", "routed texts whose vector came from the embedding cache", registry=r
        )
        self.cache_misses = Counter(
            "rgd_embed_cache_misses", "routed texts embedded (and then cached): not in the cache", registry=r
        )
        self.cache_entries = Gauge("rgd_embed_cache_entries", "texts in the embedding cache", registry=r)
        self.cache_bytes = Gauge(
            "rgd_embed_cache_bytes", "bytes the embedding cache is charged (--embed-cache-bytes)", registry=r
        )
        self.total = Histogram(
            "rgd_request_seconds", "time to the answer (a stream: to its first event)", ["path"], registry=r
        )
        for e in experts:  # every series exists from the start, at 0
            self.routed.labels(e)
            self.answered.labels(e)

    def observe(self, d: Decision) -> None:
        """One routed request's timings and where its vector came from."""
        self.routing.observe(d.embedding_s + d.ranking_s)
        self.embedding.observe(d.embedding_s)
        self.ranking.observe(d.ranking_s)
        if d.cache == "hit":
            self.cache_hits.inc()
        elif d.cache == "miss":
            self.cache_misses.inc()

    def render(self, cache: EmbedCache | None = None) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if cache is not None:
            self.cache_entries.set(len(cache))
            self.cache_bytes.set(cache.bytes)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# --------------------------------------------------------------------------- the service
@dataclass
class ServeSettings:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    api_key: str | None = None  # clients must send `Authorization: Bearer <api_key>`
    log_bodies: bool = False
    model_name: str = ROUTER_MODEL  # the `model` clients ask for to be routed
    router_kind: str = ""
    embedder: dict = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    route_chars: int = Limits().route_chars(None)  # the routed text's cap (Limits.route_chars)
    embed_threads: int | None = None  # the embedder's CPU threads (--embed-threads), recorded at start-up


@dataclass
class Attempt:
    expert: str
    outcome: str  # "answered", "http_4xx", or a failure kind (connection, timeout, http_5xx, ...)
    detail: str = ""
    status: int | None = None

    def to_dict(self) -> dict:
        d = {"expert": self.expert, "outcome": self.outcome}
        return (
            d
            | ({"status": self.status} if self.status is not None else {})
            | ({"detail": self.detail} if self.detail else {})
        )


@dataclass
class _Call:
    """One attempt at one expert, as its steps share it: the request id, the expert, its endpoint and
    the request's attempts so far (this one is added once its outcome is known)."""

    rid: str
    expert: str
    ep: Endpoint
    attempts: list[Attempt]
    deadline: float  # the request's (loop time)

    def headers(self) -> dict:
        """The rgd headers of an answer from this expert (after its attempt is recorded)."""
        return {
            "x-rgd-expert": self.expert,
            "x-rgd-request-id": self.rid,
            "x-rgd-attempts": str(len(self.attempts)),
        }


class Service:
    def __init__(
        self, ranker: Ranker, experts: list[str], endpoints: dict[str, Endpoint], settings: ServeSettings
    ):
        self.ranker, self.experts, self.endpoints, self.s = ranker, experts, endpoints, settings
        self.metrics = Metrics(experts)
        self.client = None
        self._ids = itertools.count(1)
        self._costs = (
            expected_costs([endpoints[e].cost for e in experts])
            if all(endpoints[e].cost for e in experts)
            else None
        )

    # ---- lifecycle
    async def startup(self) -> None:
        import httpx2

        # no proxies from the environment: the fleet is addressed directly
        self.client = httpx2.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=256),
        )
        self.ranker.start()

    async def shutdown(self) -> None:
        await self.ranker.stop()
        if self.client is not None:
            await self.client.aclose()

    # ---- helpers
    def _authorised(self, request) -> bool:
        if not self.s.api_key:
            return True
        got = request.headers.get("authorization", "")
        scheme, _, token = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.s.api_key.encode()
        )

    def _json(self, obj, status: int = 200, headers: dict | None = None, path: str | None = None):
        from starlette.responses import Response

        if path:
            self.metrics.requests.labels(path, str(status)).inc()
        return Response(
            json.dumps(obj, ensure_ascii=False).encode(), status, headers, media_type="application/json"
        )

    def _scrub(self, data: bytes, ep: Endpoint) -> bytes:
        key = ep.api_key()
        return data.replace(key.encode(), b"***") if key else data

    # ---- endpoints
    async def health(self, request):
        return self._json(
            {
                "status": "ok",
                "router": self.s.router_kind,
                "experts": self.experts,
                "objective": str(self.ranker.objective),
                "embedder": self.s.embedder,
            }
        )

    async def models(self, request):
        if not self._authorised(request):
            return self._unauthorised("/v1/models")
        created = 0
        data = [
            {
                "id": self.s.model_name,
                "object": "model",
                "created": created,
                "owned_by": "rgd",
                "rgd": {"routed": True, "experts": self.experts},
            }
        ]
        data += [
            {
                "id": e,
                "object": "model",
                "created": created,
                "owned_by": "rgd",
                "rgd": {"routed": False, "upstream_model": self.endpoints[e].model},
            }
            for e in self.experts
        ]
        return self._json({"object": "list", "data": data}, path="/v1/models")

    async def metrics_endpoint(self, request):
        from starlette.responses import Response

        if not self._authorised(request):
            return self._unauthorised("/metrics")
        body, ctype = self.metrics.render(getattr(self.ranker, "cache", None))
        return Response(body, 200, media_type=ctype)

    def _unauthorised(self, path: str):
        return self._json(
            error_body(
                "missing or wrong API key: send `Authorization: Bearer <key>`",
                "invalid_request_error",
                "invalid_api_key",
            ),
            401,
            {"www-authenticate": "Bearer"},
            path,
        )

    async def chat(self, request):
        return await self._complete(request, "chat")

    async def completions(self, request):
        return await self._complete(request, "completions")

    @property
    def limits(self) -> Limits:
        return self.s.limits

    def _refuse(self, e: ClientError, rid: str, path: str):
        log.info("%s %s -> %d %s", rid, path, e.status, e.code)
        unread = e.status in (408, 413)  # the rest of the body stays unread: the connection closes
        return self._json(e.body(), e.status, {"connection": "close"} if unread else None, path)

    async def _complete(self, request, kind: str):
        """A chat or completion request: check it, then rank and forward it unless its client goes."""
        path = PATHS[kind]
        rid = f"rgd-{next(self._ids)}"
        t0 = time.perf_counter()
        if not self._authorised(request):
            return self._unauthorised(path)
        deadline = request.scope.get(DEADLINE)
        if deadline is None:  # without Guard (tests of the Service alone): from now
            deadline = asyncio.get_running_loop().time() + self.limits.deadline
        try:
            body, model, text = await self._read_request(request, kind, rid)
        except ClientError as e:
            return self._refuse(e, rid, path)
        work = self._answer(rid, path, kind, body, model, text, t0, deadline)
        return await self._unless_gone(request, rid, path, work)

    async def _unless_gone(self, request, rid: str, path: str, work):
        """Await `work` while watching the client: when it disconnects first, the work is cancelled
        (its upstream connection closed with it) and nobody is answered."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_disconnected(request.receive))
        try:
            await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            task.done() or task.cancel()
        if not task.cancelled() and task.done():
            return task.result()
        await asyncio.gather(task, return_exceptions=True)
        log.info("%s %s -> the client went: its upstream work is cancelled", rid, path)
        return self._json(error_body("the client disconnected", "invalid_request_error", "client_gone"), 499)

    async def _answer(self, rid, path, kind, body, model, text, t0, deadline):
        """Rank (unless an expert is pinned) and fail over, all before the request's deadline."""
        attempts: list[Attempt] = []
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    candidates, info = await self._route(model, text)
                except Exception as e:  # noqa: BLE001 - the router failed on this text: a server error
                    return self._json(
                        error_body(f"routing failed: {e}", "server_error", "routing_failed"), 500, path=path
                    )
                return await self._first_answer(
                    rid, path, kind, body, candidates, info, t0, attempts, deadline
                )
        except TimeoutError:
            return self._too_late(rid, path, attempts)

    async def _route(self, model, text) -> tuple[list[str], dict]:
        """(the experts to try, best first; the ranking and routing times to report)."""
        if model in self.endpoints:  # pinned: the client chose the expert, nothing to rank or fail over to
            return [model], {"pinned": model, "routing_ms": 0.0, "embedding_ms": 0.0, "ranking_ms": 0.0}
        d = await self.ranker.rank(text)
        self.metrics.observe(d)
        candidates, info = self._ranking(d.scores, d.order)
        embedding_ms, ranking_ms = round(1000 * d.embedding_s, 3), round(1000 * d.ranking_s, 3)
        return candidates, info | {
            "routing_ms": round(embedding_ms + ranking_ms, 3),  # their sum, as before the split
            "embedding_ms": embedding_ms,
            "ranking_ms": ranking_ms,
            "cache": d.cache,
        }

    def _too_late(self, rid: str, path: str, attempts: list[Attempt]):
        """The 504 of a request whose deadline passed before an answer began."""
        s, tried = self.limits.deadline, _tried(attempts)
        log.warning("%s %s -> 504 past the deadline of %g s%s", rid, path, s, f": {tried}" if tried else "")
        return self._json(
            error_body(
                f"no answer within the request deadline of {s:g} s (--deadline)"
                + (f"; {len(attempts)} tried: {tried}" if tried else ""),
                "timeout_error",
                "deadline_exceeded",
                rgd={"deadline_s": s, "attempts": [a.to_dict() for a in attempts]},
            ),
            504,
            {"x-rgd-attempts": str(len(attempts))},
            path,
        )

    async def _read_request(self, request, kind: str, rid: str) -> tuple[dict, object, str | None]:
        """(body, the `model` asked for, the text to route on: None when an expert is pinned); a bad
        request raises ClientError naming the field."""
        raw = await self._body(request)
        if self.s.log_bodies:
            log.info("%s body %s", rid, raw.decode("utf-8", "replace"))
        body = await self._parse(raw)
        model, stream = body.get("model"), body.get("stream")
        if model is not None and not isinstance(model, str):
            raise ClientError(
                400, f"model: expected a string, got {json_type(model)}", "invalid_type", "model"
            )
        if stream is not None and not isinstance(stream, bool):
            raise ClientError(
                400, f"stream: expected true or false, got {json_type(stream)}", "invalid_type", "stream"
            )
        if model is not None and model != self.s.model_name and model not in self.endpoints:
            raise ClientError(
                404,
                f"model {model!r}: ask for {self.s.model_name!r} to be routed, or one of "
                f"the experts {', '.join(self.experts)}",
                "model_not_found",
                "model",
            )
        if model in self.endpoints:  # a pinned request is not routed
            return body, model, None
        return body, model, user_text(body, kind)[: self.s.route_chars]  # the embedder reads no more

    async def _body(self, request) -> bytes:
        """The request body, counted as it arrives: past max_body_bytes (declared or sent) it is a
        413 at once, the rest unread; not all there within body_timeout, a 408."""
        from starlette.requests import ClientDisconnect

        cap, wait = self.limits.max_body_bytes, self.limits.body_timeout
        too_large = ClientError(413, f"request body over {cap} bytes (--max-body-bytes)", "body_too_large")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_large
        buf = bytearray()
        try:
            async with asyncio.timeout(wait), contextlib.aclosing(request.stream()) as chunks:
                async for chunk in chunks:
                    buf += chunk
                    if len(buf) > cap:
                        raise too_large
        except TimeoutError:
            raise ClientError(
                408, f"request body not received within {wait:g} s (--body-timeout)", "request_timeout"
            ) from None
        except ClientDisconnect:
            raise ClientError(499, "the client disconnected while sending its body", "client_gone") from None
        return bytes(buf)

    async def _parse(self, raw: bytes) -> dict:
        """The body as a JSON object, checked before anything reads it: its depth before the parse,
        then NaN and out-of-range numbers, then lone surrogates (which no tokenizer takes)."""
        depth = self.limits.max_json_depth
        try:  # a large body is parsed beside the event loop, which keeps serving the others
            body = await asyncio.to_thread(loads, raw, depth) if len(raw) > 1 << 20 else loads(raw, depth)
        except ValueError as e:
            raise ClientError(400, f"request body: {e}", "invalid_json") from None
        if not isinstance(body, dict):
            raise ClientError(
                400, f"request body: expected a JSON object, got {json_type(body)}", "invalid_json"
            )
        problem = lone_surrogate(raw, body)
        if problem:
            raise ClientError(400, problem, "invalid_unicode", problem.partition(":")[0])
        return body

    def _ranking(self, scores: np.ndarray, ranked: np.ndarray) -> tuple[list[str], dict]:
        """The experts to try, best first (at most max_attempts), and the ranking the answer reports."""
        names = [self.experts[j] for j in ranked]
        self.metrics.routed.labels(names[0]).inc()
        info = {
            "router": self.s.router_kind,
            "objective": str(self.ranker.objective),
            "ranking": [
                {
                    "expert": self.experts[j],
                    "score": _finite(scores[j]),
                    **({"cost": float(self._costs[j])} if self._costs is not None else {}),
                }
                for j in ranked
            ],
        }
        return names[: self.s.max_attempts], info

    async def _first_answer(self, rid, path, kind, body, candidates, info, t0, attempts, deadline):
        """The first Response of the candidates tried in order (bounded failover: one attempt each), or a
        502 naming every attempt."""
        stream = bool(body.get("stream"))
        for expert in candidates:
            resp = await self._forward(
                _Call(rid, expert, self.endpoints[expert], attempts, deadline), kind, body, stream, info
            )
            if resp is not None:
                if len(attempts) > 1:
                    self.metrics.failovers.inc()
                self.metrics.total.labels(path).observe(time.perf_counter() - t0)
                self.metrics.requests.labels(path, str(resp.status_code)).inc()
                log.info(
                    "%s %s -> %d expert=%s attempts=%d routing_ms=%.1f embedding_ms=%.1f cache=%s "
                    "total_ms=%.1f%s",
                    rid,
                    path,
                    resp.status_code,
                    expert,
                    len(attempts),
                    info["routing_ms"],
                    info["embedding_ms"],
                    info.get("cache", "-"),
                    1000 * (time.perf_counter() - t0),
                    " (stream)" if stream else "",
                )
                return resp
        tried = _tried(attempts)
        log.warning("%s %s -> 502 no expert answered: %s", rid, path, tried)
        return self._json(
            error_body(
                f"no expert answered ({len(attempts)} tried: {tried})",
                "upstream_error",
                "no_expert_answered",
                rgd=info | {"attempts": [a.to_dict() for a in attempts]},
            ),
            502,
            {"x-rgd-attempts": str(len(attempts))},
            path,
        )

    # ---- one attempt at one expert
    async def _forward(self, call: _Call, kind, body, stream, info):
        """One attempt at an expert: a Response to return, or None after recording why to try the
        next. Cut by the deadline or by the client's going, it is recorded and its connection closed."""
        try:
            resp = await self._send(call, kind, body, stream)
            if resp is None:
                return None
            try:
                return await self._judge(call, resp, stream, info)
            except BaseException:
                await resp.aclose()
                raise
        except asyncio.CancelledError:
            late = asyncio.get_running_loop().time() >= call.deadline
            call.attempts.append(Attempt(call.expert, "deadline" if late else "cancelled"))
            if late:
                self.metrics.upstream_errors.labels(call.expert, "timeout").inc()
            raise

    async def _judge(self, call: _Call, resp, stream: bool, info: dict):
        """What an expert's response is: a failure (None), a refusal passed back, or the answer."""
        if resp.status_code >= 500:
            await resp.aclose()
            self._failed(call, "http_5xx", f"HTTP {resp.status_code}", resp.status_code)
            return None
        if resp.status_code >= 300:  # the request itself was refused: the client's to see, as it is
            return await self._refused(call, resp)
        extra = info | {"expert": call.expert, "upstream_model": call.ep.model}
        if stream and resp.headers.get("content-type", "").startswith("text/event-stream"):
            return await self._commit_stream(call, resp, extra)
        return await self._whole_answer(call, resp, extra)

    def _failed(self, call: _Call, kind: str, detail: str, status: int | None = None) -> None:
        """Record a failed attempt: the next-ranked expert is tried."""
        call.attempts.append(Attempt(call.expert, kind, detail, status))
        self.metrics.upstream_errors.labels(call.expert, kind).inc()
        log.warning("%s expert %s failed: %s %s", call.rid, call.expert, kind, detail)

    async def _send(self, call: _Call, kind: str, body: dict, stream: bool):
        """The expert's response, its body not yet read; None after a timeout or a connection error.
        The body goes unchanged but for `model`; the endpoint's key is sent only to it."""
        import httpx2

        ep = call.ep
        url = f"{ep.base_url}/{'chat/completions' if kind == 'chat' else 'completions'}"
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "accept-encoding": "identity",  # what is read is counted as it arrives: no inflating
        }
        key = ep.api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
        payload = json.dumps({**body, "model": ep.model}, ensure_ascii=False).encode()
        try:
            req = self.client.build_request(
                "POST", url, content=payload, headers=headers, timeout=httpx2.Timeout(ep.timeout)
            )
            return await self.client.send(req, stream=True)
        except httpx2.TimeoutException:
            self._failed(call, "timeout", f"no answer within {ep.timeout:g} s")
        except httpx2.HTTPError as e:
            self._failed(call, "connection", type(e).__name__)
        return None

    async def _refused(self, call: _Call, resp):
        """A 3xx or 4xx, passed back as it is, with the headers a client acts on (Retry-After,
        x-ratelimit-*) and upstream keys scrubbed; None if its body broke off or is over the cap."""
        import httpx2
        from starlette.responses import Response

        try:
            data = await read_capped(resp, self.limits.max_answer_bytes, f"HTTP {resp.status_code} body")
        except (httpx2.HTTPError, httpx2.StreamError, OutOfBounds) as e:
            await resp.aclose()
            why = str(e) if isinstance(e, OutOfBounds) else f"body cut off ({type(e).__name__})"
            self._failed(call, "invalid_response", f"HTTP {resp.status_code}, {why}")
            return None
        await resp.aclose()
        outcome = f"http_{resp.status_code // 100}xx"
        call.attempts.append(Attempt(call.expert, outcome, status=resp.status_code))
        return Response(
            self._scrub(data, call.ep),
            resp.status_code,
            self._passed_on(resp, call.ep) | call.headers(),
            media_type=resp.headers.get("content-type", "application/json"),
        )

    def _passed_on(self, resp, ep: Endpoint) -> dict:
        """An upstream refusal's headers that tell a client when to come back, keys scrubbed; a
        value that cannot be a header is dropped."""
        key = ep.api_key()
        out = {}
        for name, value in resp.headers.items():
            name = name.lower()
            if (name == "retry-after" or name.startswith("x-ratelimit-")) and len(out) < 16:
                value = value.replace(key, "***") if key else value
                if header_problem(value) is None:
                    out[name] = value
        return out

    async def _commit_stream(self, call: _Call, resp, extra: dict):
        """Relay an SSE stream, committed to this expert only once its first event has arrived: a
        failure before that (or more than max_event_bytes of anything else first) is a failed attempt
        (failover); one after it ends the stream (_relay)."""
        import httpx2
        from starlette.responses import StreamingResponse

        cap = self.limits.max_event_bytes
        lines = capped_lines(_raw_chunks(resp), cap)
        head, size = [], 0
        try:
            async for raw in lines:
                size += len(raw) + 1
                if size > cap:
                    raise OutOfBounds(f"over {cap} bytes (--max-event-bytes)")
                head.append(raw.decode("utf-8", "replace"))
                if head[-1].startswith("data:"):
                    break
            else:
                raise httpx2.RemoteProtocolError("stream ended before its first event")
        except (httpx2.HTTPError, httpx2.StreamError, OutOfBounds) as e:
            await resp.aclose()
            self._failed(
                call,
                "timeout" if isinstance(e, httpx2.TimeoutException) else "stream",
                f"before the first event: {e if isinstance(e, OutOfBounds) else type(e).__name__}",
            )
            return None
        call.attempts.append(Attempt(call.expert, "answered", status=resp.status_code))
        extra["attempts"] = [a.to_dict() for a in call.attempts]
        self.metrics.answered.labels(call.expert).inc()
        return StreamingResponse(
            self._relay(call, resp, lines, head, extra),
            resp.status_code,
            call.headers() | {"cache-control": "no-cache"},
            media_type="text/event-stream",
        )

    async def _whole_answer(self, call: _Call, resp, extra: dict):
        """A non-streamed answer: a JSON object, returned with `model` set to the expert and the rgd
        field added; None if it stalls, breaks off, is over max_answer_bytes or is not a JSON object."""
        import httpx2
        from starlette.responses import Response

        try:
            data = await read_capped(resp, self.limits.max_answer_bytes, "answer")
        except httpx2.TimeoutException:
            self._failed(call, "timeout", f"answer stalled for {call.ep.timeout:g} s")
            return None
        except (httpx2.HTTPError, httpx2.StreamError) as e:
            self._failed(call, "invalid_response", f"body cut off ({type(e).__name__})")
            return None
        except OutOfBounds as e:
            self._failed(call, "invalid_response", str(e))
            return None
        finally:
            await resp.aclose()
        try:
            obj = loads(data, self.limits.max_json_depth, strict=False)  # NaN passes as it came
            if not isinstance(obj, dict):
                raise ValueError("not an object")
        except ValueError:
            self._failed(call, "invalid_response", "HTTP 200 with a body that is not a JSON object")
            return None
        call.attempts.append(Attempt(call.expert, "answered", status=resp.status_code))
        self.metrics.answered.labels(call.expert).inc()
        obj["model"] = call.expert
        obj["rgd"] = extra | {"attempts": [a.to_dict() for a in call.attempts]}
        return Response(
            json.dumps(obj, ensure_ascii=False).encode(),
            resp.status_code,
            call.headers(),
            media_type="application/json",
        )

    def _event(self, line: str, expert: str, extra: dict | None) -> str:
        """One SSE line with `model` set to the expert (and, on the first event, the rgd field)."""
        if not line.startswith("data:"):
            return line + "\n"
        data = line[5:].strip()
        if data == "[DONE]":
            return line + "\n"
        try:
            obj = loads(data.encode(), self.limits.max_json_depth, strict=False)
        except ValueError:
            return line + "\n"
        if isinstance(obj, dict):
            if "model" in obj:
                obj["model"] = expert
            if extra is not None:
                obj["rgd"] = extra
        return "data: " + json.dumps(obj, ensure_ascii=False) + "\n"

    async def _relay(self, call: _Call, resp, lines, head: list[str], extra: dict):
        """The stream's lines to the client, each read before the request's deadline."""
        import httpx2

        n_events = 1  # `head` ends with the first event
        done = head[-1][5:].strip() == "[DONE]"
        try:
            for line in head:
                yield self._event(line, call.expert, extra if line is head[-1] else None)
            while True:
                async with asyncio.timeout_at(call.deadline):
                    raw = await anext(lines, None)
                if raw is None:
                    break
                line = raw.decode("utf-8", "replace")
                if line.startswith("data:"):
                    n_events += 1
                    done = done or line[5:].strip() == "[DONE]"
                yield self._event(line, call.expert, None)
            if not done:
                raise _NoDone()
        except (httpx2.HTTPError, httpx2.StreamError, OutOfBounds, TimeoutError, _NoDone) as e:
            yield self._interrupted(call, e, n_events)
        finally:
            await resp.aclose()

    def _interrupted(self, call: _Call, e: Exception, n_events: int) -> str:
        """The error event that ends a stream cut after its first event."""
        import httpx2

        expert = call.expert
        if isinstance(e, TimeoutError):
            s = self.limits.deadline
            what, code = f"the request deadline of {s:g} s (--deadline) passed", "deadline_exceeded"
        elif isinstance(e, OutOfBounds):
            what, code = f"the stream sent {e}", "stream_interrupted"
        elif isinstance(e, _NoDone):
            what, code = "the stream ended without [DONE]", "stream_interrupted"
        else:
            why = "stalled" if isinstance(e, httpx2.TimeoutException) else "broke off"
            what, code = f"the stream {why}", "stream_interrupted"
        self.metrics.upstream_errors.labels(expert, "stream").inc()
        log.warning(
            "%s expert %s: %s after %d events (%s)", call.rid, expert, what, n_events, type(e).__name__
        )
        err = error_body(
            f"expert {expert}: {what} after {n_events} events ({type(e).__name__}); the answer is incomplete",
            "upstream_error",
            code,
        )
        return "\ndata: " + json.dumps(err) + "\n\n"


class _NoDone(Exception):
    """An upstream stream that ended properly but without its `data: [DONE]`."""


def _tried(attempts: list[Attempt]) -> str:
    return "; ".join(f"{a.expert}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in attempts)


async def _disconnected(receive) -> None:
    """Returns when the client has gone (after the body, the next ASGI message is the disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _raw_chunks(resp):
    """An upstream stream's bytes as they came: a compressed one is refused (rgd asks for identity)."""
    encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise OutOfBounds(f"a stream compressed ({encoding}), although rgd asked for identity")
    async for chunk in resp.aiter_raw():
        yield chunk


class Guard:
    """The outermost ASGI layer. A routed request is admitted only while fewer than max_concurrent
    are in progress (else a 503 with Retry-After, at once, its body unread), gets its deadline, and
    is cut HARD_GRACE_S after it when the request could not end itself (a client that does not read
    its stream). Any request: an exception that escapes everything is logged with its traceback and
    answered with a JSON 500 that holds none (the known bad inputs are 4xx long before)."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service
        self.active = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _head_bytes(scope) > self.service.limits.max_head_bytes:
            return await self._refuse_head(scope, receive, send)
        if scope["type"] != "http" or scope["path"] not in PATHS.values():
            return await self._last_resort(scope, receive, send)
        limits = self.service.limits
        if self.active >= limits.max_concurrent:
            return await self._overloaded(scope, receive, send)
        self.active += 1
        scope[DEADLINE] = deadline = asyncio.get_running_loop().time() + limits.deadline
        try:
            async with asyncio.timeout_at(deadline + HARD_GRACE_S):
                await self._last_resort(scope, receive, send)
        except TimeoutError:
            log.warning(
                "%s: cut %g s after the deadline of %g s", scope["path"], HARD_GRACE_S, limits.deadline
            )
        finally:
            self.active -= 1

    async def _refuse_head(self, scope, receive, send):
        """A head that came whole in one read (h11 bounds only the heads that arrive in pieces)."""
        n = self.service.limits.max_head_bytes
        err = ClientError(431, f"request head over {n} bytes (--max-head-bytes)", "head_too_large")
        resp = self.service._json(err.body(), 431, {"connection": "close"}, scope["path"])
        await resp(scope, receive, send)

    async def _overloaded(self, scope, receive, send):
        n = self.service.limits.max_concurrent
        log.warning("%s -> 503: %d requests in progress (--max-concurrent)", scope["path"], n)
        resp = self.service._json(
            error_body(
                f"rgd serve is at its limit of {n} requests in progress (--max-concurrent); "
                f"retry after {RETRY_AFTER_S} s",
                "server_error",
                "overloaded",
            ),
            503,
            {"retry-after": str(RETRY_AFTER_S)},
            scope["path"],
        )
        await resp(scope, receive, send)

    async def _last_resort(self, scope, receive, send):
        started = False

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as e:  # noqa: BLE001 - the last resort: logged, never shown
            if not started:  # (Starlette's handler below has answered and logged what it could)
                log.error(
                    "%s %s: unexpected %s",
                    scope.get("method"),
                    scope.get("path"),
                    type(e).__name__,
                    exc_info=e,
                )
                await internal_error()(scope, receive, send)


def _head_bytes(scope) -> int:
    """About the size of a request's head: its target and its headers."""
    target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    return target + sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))


def internal_error():
    """The JSON 500 of an unexpected exception: no traceback, no exception text."""
    from starlette.responses import Response

    body = error_body("internal error in rgd serve (logged on the server)", "server_error", "internal_error")
    return Response(json.dumps(body).encode(), 500, media_type="application/json")


def create_app(service: Service):
    """The Starlette application around a Service, inside Guard."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.startup()
        try:
            yield
        finally:
            await service.shutdown()

    async def http_error(request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return service._json(
            error_body(f"{request.method} {request.url.path}: {exc.detail}", "invalid_request_error", code),
            exc.status_code,
        )

    async def unexpected(request, exc: Exception):
        log.error("%s %s: unexpected %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return internal_error()

    routes = [
        Route("/v1/chat/completions", service.chat, methods=["POST"]),
        Route("/v1/completions", service.completions, methods=["POST"]),
        Route("/v1/models", service.models, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/metrics", service.metrics_endpoint, methods=["GET"]),
    ]
    handlers = {HTTPException: http_error, Exception: unexpected}
    return Guard(Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers), service)
