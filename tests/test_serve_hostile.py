"""`rgd serve` under hostile clients and hostile upstreams (issue 21, classes 1-5): every request
bounded in memory and time, isolated from its neighbours, and never a 500.

One `rgd serve` with tight bounds (LIMITS) in front of three scripted fake experts
(tests/fault_server.py, its hostile modes), on loopback. Each test asserts the status and body a
hostile request gets, that good requests beside it succeed, and the server's RSS before and after
(`/proc/PID/status`); a bounded soak mixes good and hostile clients. Every loop is bounded in count
and time. Run with `-s` to see the figures (RSS, latencies) each test prints."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fault_server import fake_reply
from serve_support import EXPERTS, RgdServe, RssWatch, refused, write_endpoints

TIMEOUT_S = 2.5  # every expert's timeout (between two bytes)
DEADLINE_S = 4
LIMITS = {
    "--deadline": DEADLINE_S,
    "--head-timeout": 1,
    "--body-timeout": 2,
    "--max-concurrent": 24,
    "--max-answer-bytes": 1 << 20,
    "--max-event-bytes": 1 << 16,
}
RSS_MARGIN_MB = 150


@pytest.fixture(scope="module")
def server(router, fleet, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve-hostile")
    ep = write_endpoints(
        work / "endpoints.yaml",
        {e: {"base_url": s.url + "/v1", "model": f"up-{e}", "timeout": TIMEOUT_S} for e, s in fleet.items()},
    )
    args = ["--router", router[0], "--endpoints", ep] + [str(x) for kv in LIMITS.items() for x in kv]
    srv = RgdServe(args, work / "serve.log")
    yield srv
    srv.stop()
    log = srv.log.read_text()
    assert "Traceback" not in log and "unexpected" not in log, log[-6000:]  # nothing reached the last resort


@pytest.fixture()
def fresh(fleet):
    for s in fleet.values():
        s.script()
        s.requests.clear()
    return fleet


def calm(fleet) -> None:
    """Every fake expert answers normally again."""
    for s in fleet.values():
        s.script()


def questions(router) -> list[str]:
    return [q["question"] for e in EXPERTS for q in router[1][e]]


def post(srv, body, path="/v1/chat/completions", headers=None, timeout=30):
    """(status, headers, body bytes, seconds) of one POST on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    t0 = time.perf_counter()
    try:
        conn.request("POST", path, data, {"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read(), time.perf_counter() - t0
    finally:
        conn.close()


def chat_body(text: str, **kw) -> dict:
    return {"model": kw.pop("model", "rgd"), "messages": [{"role": "user", "content": text}], **kw}


def error(data: bytes) -> dict:
    return json.loads(data)["error"]


def events(data: bytes) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded ([DONE] as the string)."""
    out = []
    for line in data.decode().splitlines():
        if line.startswith("data:"):
            payload = line[5:].strip()
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def good(srv, text: str, kind: int = 0) -> float:
    """One good request (0: chat, 1: streamed chat, 2: completion), checked whole; its seconds."""
    if kind == 2:
        status, _, data, s = post(srv, {"model": "rgd", "prompt": text}, "/v1/completions")
        assert status == 200, data[:300]
        assert json.loads(data)["choices"][0]["text"] == fake_reply(text, None, 1)
        return s
    status, _, data, s = post(srv, chat_body(text, stream=kind == 1))
    assert status == 200, data[:300]
    if kind == 1:
        evs = events(data)
        assert evs[-1] == "[DONE]" and not any("error" in e for e in evs[:-1]), evs[-3:]
        got = "".join(e["choices"][0]["delta"].get("content") or "" for e in evs[:-1])
    else:
        got = json.loads(data)["choices"][0]["message"]["content"]
    assert got == fake_reply(text, None, 1)
    return s


def raw_socket(srv, timeout=10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)


def wait_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """(what the server sent, seconds until it closed the connection), within limit_s."""
    t0, got = time.perf_counter(), b""
    sock.settimeout(limit_s)
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return got, time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# --------------------------------------------------------------------------- 1. memory
def test_sse_comments_before_the_first_event_are_bounded(server, router, fresh):
    q = questions(router)[0]
    for s in fresh.values():
        s.script(default="comments")  # 1 KB comment lines as fast as they go, never an event
    with RssWatch(server.proc.pid) as rss:
        status, _, data, secs = post(server, chat_body(q, stream=True))
    assert status == 502, data[:300]
    err = error(data)
    assert err["code"] == "no_expert_answered"
    assert [a["outcome"] for a in err["rgd"]["attempts"]] == ["stream"] * 3
    assert all(
        a["detail"] == "before the first event: over 65536 bytes (--max-event-bytes)"
        for a in err["rgd"]["attempts"]
    )
    deadline = time.time() + 5
    while time.time() < deadline and not all("gone_at" in r for s in fresh.values() for r in s.requests):
        time.sleep(0.05)
    assert all("gone_at" in r for s in fresh.values() for r in s.requests)  # every upstream closed
    assert rss.peak - rss.before < RSS_MARGIN_MB, str(rss)
    print(f"\nSSE comments: 502 in {secs:.2f} s; {rss}")
    calm(fresh)
    good(server, q, 1)


def test_a_request_body_is_counted_as_it_arrives(server, router, fresh):
    cap = 8 << 20
    with RssWatch(server.proc.pid) as rss:
        # a declared 300 MB: refused from the head, nothing of the body read
        sock = raw_socket(server)
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300000000\r\n\r\n"
        )
        got, secs = wait_closed(sock, 5)
        sock.close()
        assert got.startswith(b"HTTP/1.1 413") and secs < 2, got[:200]
        assert error(got.partition(b"\r\n\r\n")[2])["code"] == "body_too_large"
        # chunked, no length: counted as it comes, 413 and closed after the cap, the rest not read
        sock = raw_socket(server)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece, sent = b"x" * (1 << 18), 0
        chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        try:
            while sent < 64 << 20:
                sock.sendall(chunk)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, _ = wait_closed(sock, 5)
        sock.close()
    assert sent < 4 * cap, f"the server read {sent} bytes of a body capped at {cap}"
    assert not got or got.startswith(b"HTTP/1.1 413"), got[:200]
    assert rss.peak - rss.before < RSS_MARGIN_MB, str(rss)
    print(
        f"\nbody: 300 MB declared -> 413 in {secs * 1000:.0f} ms; "
        f"chunked stopped after {sent >> 20} MiB; {rss}"
    )
    good(server, questions(router)[1])


@pytest.mark.parametrize("fault", ["huge:50000000", "nonjson", "deep"])
def test_an_upstream_answer_is_read_within_its_bounds(server, router, fresh, fault):
    q = router[1]["bio"][0]["question"]
    first = json.loads(post(server, chat_body(q))[2])["rgd"]["ranking"][0]["expert"]
    fresh[first].script([fault])
    with RssWatch(server.proc.pid) as rss:
        status, _, data, secs = post(server, chat_body(q))
    assert status == 200, data[:300]
    r = json.loads(data)
    assert r["model"] != first and r["choices"][0]["message"]["content"] == fake_reply(q, None, 1)
    a = r["rgd"]["attempts"][0]
    assert a["expert"] == first and a["outcome"] == "invalid_response", a
    if fault.startswith("huge"):
        assert "answer over the limit of 1048576 bytes" in a["detail"]
    assert rss.peak - rss.before < RSS_MARGIN_MB, str(rss)
    print(f"\nupstream {fault.split(':')[0]}: failed over in {secs:.2f} s; {rss}")


@pytest.mark.parametrize(
    "fault, message",
    [
        ("longline", "the stream sent a line over the limit of 65536 bytes"),
        ("nodone", "ended without [DONE]"),
    ],
)
def test_a_stream_cut_after_its_first_event_ends_with_an_error_event(server, router, fresh, fault, message):
    q = router[1]["world"][0]["question"]
    for s in fresh.values():
        s.script(default=fault)
    with RssWatch(server.proc.pid) as rss:
        status, _, data, secs = post(server, chat_body(q, stream=True))
    evs = events(data)
    assert status == 200 and "[DONE]" not in evs and evs[-1]["error"]["code"] == "stream_interrupted", evs[-1]
    assert message in evs[-1]["error"]["message"] and len(evs) >= 2
    assert rss.peak - rss.before < RSS_MARGIN_MB, str(rss)
    print(f"\nstream {fault}: error event after {secs:.2f} s; {rss}")


def test_requests_beyond_the_cap_get_503_at_once(server, router, fresh):
    qs = questions(router)
    n = LIMITS["--max-concurrent"]
    for s in fresh.values():
        s.script(default="hold")  # held until released, well within the expert timeout and the deadline
    with ThreadPoolExecutor(n) as pool:
        try:
            held = [pool.submit(post, server, chat_body(qs[i % len(qs)])) for i in range(n)]
            deadline = time.time() + 3  # routing 24 at once takes 2 s on a loaded machine
            while time.time() < deadline and sum(s.held() for s in fresh.values()) < n:
                time.sleep(0.02)
            assert sum(s.held() for s in fresh.values()) == n  # all n in progress
            status, headers, data, secs = post(server, chat_body(qs[0]))
            assert status == 503 and headers["retry-after"] == "1" and secs < 0.5, (status, secs)
            assert error(data)["code"] == "overloaded" and "--max-concurrent" in error(data)["message"]
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", "/health")
            assert conn.getresponse().status == 200  # probes are not requests in progress
            conn.close()
        finally:
            for s in fresh.values():
                s.release()
        assert [f.result()[0] for f in held] == [200] * n
    print(f"\nconcurrency: {n} in progress, the next one 503 in {secs * 1000:.0f} ms; the {n} all 200")
    calm(fresh)
    good(server, qs[0])


# --------------------------------------------------------------------------- 2. deadlines
@pytest.mark.parametrize("fault, stream", [("drip:0.2", False), ("comments:0.05", True)])
def test_the_deadline_ends_a_trickle_before_its_answer(server, router, fresh, fault, stream):
    q = router[1]["world"][0]["question"]
    for s in fresh.values():
        s.script(default=fault)  # bytes keep coming, never a gap as long as the expert's timeout
    status, _, data, secs = post(server, chat_body(q, stream=stream))
    assert status == 504 and DEADLINE_S - 0.5 < secs < DEADLINE_S + 2, (status, secs, data[:300])
    err = error(data)
    assert err["code"] == "deadline_exceeded" and f"deadline of {DEADLINE_S} s (--deadline)" in err["message"]
    assert err["rgd"]["deadline_s"] == DEADLINE_S and err["rgd"]["attempts"][-1]["outcome"] == "deadline"
    print(f"\ndeadline, {fault}: 504 after {secs:.2f} s")


def test_the_deadline_ends_an_endless_stream(server, router, fresh):
    q = router[1]["world"][0]["question"]
    for s in fresh.values():
        s.script(default="endless:0.1")
    status, _, data, secs = post(server, chat_body(q, stream=True))
    assert status == 200 and DEADLINE_S - 0.5 < secs < DEADLINE_S + 2, (status, secs)
    evs = events(data)
    assert len(evs) > 5 and "error" in evs[-1] and "[DONE]" not in evs
    assert (
        evs[-1]["error"]["code"] == "deadline_exceeded"
        and f"deadline of {DEADLINE_S} s" in evs[-1]["error"]["message"]
    )
    print(f"\ndeadline, endless stream: ended after {secs:.2f} s and {len(evs) - 1} events")


def test_a_client_that_goes_cancels_its_upstream_call(server, router, fresh):
    q = router[1]["bio"][0]["question"]
    for s in fresh.values():
        s.script(default="drip:0.05")
    body = json.dumps(chat_body(q)).encode()
    sock = raw_socket(server)
    t0 = time.time()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    deadline = time.time() + 5
    while time.time() < deadline and not any(s.requests for s in fresh.values()):
        time.sleep(0.02)
    time.sleep(0.3)
    sock.close()
    t_close = time.time()
    rec = next(r for s in fresh.values() for r in s.requests)
    while time.time() < t0 + DEADLINE_S - 0.5 and "gone_at" not in rec:
        time.sleep(0.02)
    assert "gone_at" in rec, "the upstream call outlived its client"
    assert rec["gone_at"] - t_close < 1.5 and rec["gone_at"] < t0 + DEADLINE_S - 0.5
    print(f"\nclient gone: upstream closed {rec['gone_at'] - t_close:.2f} s after the client")


def test_half_sent_heads_and_bodies_are_dropped(server, router, fresh):
    silent = raw_socket(server)  # connects and says nothing
    partial = raw_socket(server)  # a head that never ends
    partial.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: app")
    _, silent_s = wait_closed(silent, 5)
    got, partial_s = wait_closed(partial, 5)
    assert silent_s < 2.5 and partial_s < 2.5 and got == b"", (silent_s, partial_s, got)
    slow = raw_socket(server)  # a whole head, then a tenth of its body
    slow.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model":')
    got, slow_s = wait_closed(slow, 6)
    assert got.startswith(b"HTTP/1.1 408") and slow_s < 4, (got[:200], slow_s)
    assert error(got.partition(b"\r\n\r\n")[2])["code"] == "request_timeout"
    big = raw_socket(server)  # a head over max_head_bytes
    big.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 20000 + b"\r\n\r\n")
    got, _ = wait_closed(big, 5)
    assert got.startswith(b"HTTP/1.1 431"), got[:200]
    assert error(got.partition(b"\r\n\r\n")[2])["code"] == "head_too_large"
    pieces = raw_socket(server)  # the same, in pieces: refused before the head is whole
    for k in range(0, 20000, 2000):
        pieces.sendall((b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 20000)[k : k + 2000])
        time.sleep(0.01)
    got, _ = wait_closed(pieces, 5)
    assert got.startswith(b"HTTP/1.1 400"), got[:200]
    for s in (silent, partial, slow, big, pieces):
        s.close()
    print(
        f"\nheads: silent closed after {silent_s:.2f} s, partial {partial_s:.2f} s; "
        f"slow body 408 after {slow_s:.2f} s"
    )
    good(server, questions(router)[2])


# --------------------------------------------------------------------------- 3. isolation
def test_a_lone_surrogate_fails_only_its_own_request(server, router, fresh):
    qs = questions(router)
    bad = [
        (chat_body("What is DNA?\ud800"), "messages[0].content"),
        (
            {
                "model": "rgd",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x\udfff"}]}],
            },
            "messages[0].content[0].text",
        ),
        ({"model": "rgd", "prompt": "Which enzyme?\ud83d"}, "prompt"),
    ]

    def one(i):
        if i < len(bad):
            body, field = bad[i]
            path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
            status, _, data, _ = post(server, json.dumps(body).encode(), path)
            return status, error(data), field
        return good(server, qs[i % len(qs)], i % 2), None, None

    with RssWatch(server.proc.pid) as rss, ThreadPoolExecutor(20) as pool:  # under --max-concurrent
        out = list(pool.map(one, range(43)))
    for status, err, field in out[: len(bad)]:
        assert status == 400 and err["param"] == field and "lone surrogate" in err["message"], (status, err)
    assert len(out) == 43  # the 40 good ones passed `good`
    print(f"\nsurrogates: 3 x 400, 40 good requests beside them all 200; {rss}")


def test_a_huge_user_turn_does_not_hold_the_others(server, router, fresh):
    qs = questions(router)
    huge = chat_body("lorem ipsum dolor " * 400_000)  # 7.2 MB: under the body cap, over any embedder
    with RssWatch(server.proc.pid) as rss, ThreadPoolExecutor(17) as pool:
        big = pool.submit(post, server, huge)
        time.sleep(0.05)
        latencies = list(pool.map(lambda i: good(server, qs[i % len(qs)]), range(32)))
        status, _, data, big_s = big.result()
    assert status == 200, data[:300]
    assert json.loads(data)["rgd"]["routing_ms"] < 2000
    assert max(latencies) < 5, latencies
    assert rss.peak - rss.before < RSS_MARGIN_MB, str(rss)
    print(
        f"\n7.2 MB turn: answered in {big_s:.2f} s, routing "
        f"{json.loads(data)['rgd']['routing_ms']:.0f} ms; 32 good beside it: "
        f"p50 {pct(latencies, 0.5) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms; {rss}"
    )


def test_a_failed_batch_is_ranked_request_by_request():
    """The batch that a bad text would fail is ranked text by text: only that request fails."""
    import numpy as np

    from rgd.cost import Objective
    from rgd.serve.app import Ranker

    calls = []

    def embed(texts):
        calls.append(len(texts))
        if "bad" in texts:
            raise TypeError("TextEncodeInput must be Union[...]")
        return np.array([[len(t)] for t in texts])

    def score(X):
        return np.array([[x[0], 1.0] for x in X])

    async def run():
        ranker = Ranker(embed, score, 2, Objective.parse("quality"), None)
        ranker.start()
        try:
            return await asyncio.gather(
                *(ranker.rank(t) for t in ["a", "bad", "ccc"]), return_exceptions=True
            )
        finally:
            await ranker.stop()

    a, bad, c = asyncio.run(run())
    assert calls == [3, 1, 1, 1]  # the batch, then each text alone
    assert isinstance(bad, RuntimeError) and "this request's text" in str(bad)
    assert list(a[0]) == [1.0, 1.0] and list(c[0]) == [3.0, 1.0]


# --------------------------------------------------------------------------- 4. never a 500
DEEP = b"[" * 10000 + b"]" * 10000
MALFORMED = [
    (
        b'{"model": ["a"], "messages": [{"role": "user", "content": "hi"}]}',
        "model",
        "expected a string, got array",
    ),
    (b'{"model": {}, "messages": [{"role": "user", "content": "hi"}]}', "model", "got object"),
    (b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}', "model", "got number"),
    (
        b'{"stream": "yes", "messages": [{"role": "user", "content": "hi"}]}',
        "stream",
        "expected true or false",
    ),
    (b'{"messages": "hi"}', "messages", "expected a non-empty list"),
    (b'{"messages": [1]}', "messages[0]", "expected an object with a role"),
    (b'{"messages": [{"role": "user", "content": 5}]}', "messages[0].content", "empty or not text"),
    (
        b'{"messages": [{"role": "user", "content": "hi"}], "x": ' + DEEP + b"}",
        None,
        "nested 10001 levels deep",
    ),
    (DEEP, None, "nested 10000 levels deep"),
    (b'{"messages": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001, None, "over the limit of 64"),
    (
        b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        None,
        "NaN is not a JSON number",
    ),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}', None, "out of range"),
    (
        b'{"messages": [{"role": "user", "content": "hi"}], "seed": ' + b"9" * 5000 + b"}",
        None,
        "not valid JSON",
    ),
    (
        b'{"messages": [{"role": "system", "content": "\\udc00"}, {"role": "user", "content": "hi"}]}',
        "messages[0].content",
        "lone surrogate U+DC00",
    ),
    (
        b'{"messages": [{"role": "user", "content": "hi", "\\ud800": 1}]}',
        "messages[0]",
        "key '\\ud800': lone",
    ),
    (b'{"messages": [{"role": "user", "content": "hi \xff"}]}', None, "not UTF-8 (byte"),
    (b"", None, "not valid JSON"),
    (b"[1, 2]", None, "expected a JSON object, got array"),
    (b'"text"', None, "expected a JSON object, got string"),
    (b"\xef\xbb\xbf{}", None, "not valid JSON"),
]


def test_malformed_requests_are_400s_naming_the_field(server, fresh):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for raw, field, message in MALFORMED:
        conn.request("POST", "/v1/chat/completions", raw, {"Content-Type": "application/json"})
        r = conn.getresponse()
        err = error(r.read())
        assert r.status == 400 and message in err["message"], (raw[:80], r.status, err)
        assert err["type"] == "invalid_request_error" and (field is None or err["param"].startswith(field)), (
            err
        )
    conn.request("POST", "/v1/completions", b'{"prompt": ["a", "b"]}', {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 400 and error(r.read())["param"] == "prompt"
    conn.close()
    assert not any(s.requests for s in fresh.values())
    assert "Traceback" not in server.output()


def test_the_last_resort_is_a_json_500_without_a_traceback():
    """An exception nothing else handles: logged on the server, a JSON 500 without it to the client,
    whether it escapes a route (Starlette's handler) or the application itself (Guard)."""
    from rgd.serve.app import Guard, ServeSettings, Service, create_app
    from rgd.serve.endpoints import Endpoint

    class Ranker:
        objective = "quality"

    service = Service(Ranker(), ["a"], {"a": Endpoint("a", "http://h/v1", "m", 1.0)}, ServeSettings())

    async def broken(request):
        raise ZeroDivisionError("secret detail")

    service.health = broken

    async def call(app, path):
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "scheme": "http",
            "server": ("h", 80),
            "http_version": "1.1",
        }
        await app(scope, receive, send)
        return sent

    async def boom(scope, receive, send):
        raise KeyError("secret detail")

    for sent in (
        asyncio.run(call(create_app(service), "/health")),
        asyncio.run(call(Guard(boom, service), "/x")),
    ):
        assert sent[0]["status"] == 500
        body = sent[1]["body"].decode()
        assert json.loads(body)["error"]["code"] == "internal_error"
        assert "secret" not in body and "Traceback" not in body and "KeyError" not in body


def _copy_router(router, tmp_path, name):
    d = tmp_path / "router"
    shutil.copytree(router[0], d)
    prov = json.loads((d / "provenance.json").read_text())
    prov["experts"][1] = name
    (d / "provenance.json").write_text(json.dumps(prov))
    return d


@pytest.mark.parametrize("name", ["mar\r\nket", "市场", " market"])
def test_an_expert_name_that_cannot_be_a_header_is_refused_at_start_up(router, fleet, tmp_path, name):
    d = _copy_router(router, tmp_path, name)
    ep = write_endpoints(
        tmp_path / "endpoints.yaml", {e: {"base_url": fleet["bio"].url + "/v1", "model": e} for e in EXPERTS}
    )
    rc, err = refused(["--router", d, "--endpoints", ep])
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert (
        f"provenance.json: experts[1]: {name!r} cannot be served: the name goes into the x-rgd-expert header"
        in err
    )


@pytest.mark.parametrize("key", ["sk-1\r\nX-Injected: 1", "sk-\u20ac", "sk-1 "])
def test_an_upstream_key_that_cannot_be_a_header_is_refused_unseen(router, fleet, tmp_path, key):
    entries = {e: {"base_url": fleet[e].url + "/v1", "model": e} for e in EXPERTS}
    entries["world"]["api_key_env"] = "RGD_TEST_BAD_KEY"
    ep = write_endpoints(tmp_path / "endpoints.yaml", entries)
    rc, err = refused(["--router", router[0], "--endpoints", ep], {"RGD_TEST_BAD_KEY": key})
    assert rc == 2 and err.count("\n") == 1, err
    assert "experts.world.api_key_env: environment variable RGD_TEST_BAD_KEY holds a character" in err
    assert key.strip() not in err and "sk-" not in err


def test_an_occupied_port_fails_in_one_line_before_anything_loads(router, fleet, tmp_path):
    broken = tmp_path / "router"
    shutil.copytree(router[0], broken)
    for f in broken.iterdir():  # the router's arrays cut in half: loading them would fail
        if f.name != "provenance.json" and f.is_file():
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    ep = write_endpoints(
        tmp_path / "endpoints.yaml", {e: {"base_url": fleet[e].url + "/v1", "model": e} for e in EXPERTS}
    )
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        t0 = time.perf_counter()
        rc, err = refused(["--router", broken, "--endpoints", ep, "--port", port])
        secs = time.perf_counter() - t0
    finally:
        taken.close()
    want = f"--port: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert rc == 2 and err == f"rgd serve: error: <command line>: {want}\n", err
    rc, err = refused(["--router", broken, "--endpoints", ep, "--port", port])  # the port free again
    assert rc == 2 and "router.json:" in err and err.count("\n") == 1, err  # loading it fails
    print(f"\noccupied port: refused in {secs:.2f} s")


@pytest.mark.parametrize(
    "option, value, message",
    [("--max-body-bytes", "10", "must be >= 1024, got 10"), ("--deadline", "0", "must be > 0, got 0.0")],
)
def test_a_bound_out_of_range_names_its_option(router, tmp_path, option, value, message):
    ep = write_endpoints(tmp_path / "endpoints.yaml", {})
    rc, err = refused(["--router", router[0], "--endpoints", ep, option, value])
    assert rc == 2 and err == f"rgd serve: error: <command line>: {option}: {message}\n"


# --------------------------------------------------------------------------- 5. promises of the docs
def test_a_refusals_retry_after_is_passed_on(server, router, fresh):
    fresh["bio"].script(["429:7"])
    status, headers, data, _ = post(server, chat_body("What is DNA?", model="bio"))
    assert (
        status == 429 and headers["retry-after"] == "7" and headers["x-ratelimit-remaining-requests"] == "0"
    )
    assert headers["x-rgd-expert"] == "bio" and "injected fault 429" in data.decode()


# --------------------------------------------------------------------------- soak
def hostile_once(server, qs: list[str], i: int) -> None:
    """One of five hostile requests: malformed, a lone surrogate, over the body cap, a client that
    hangs up before its answer, half a head."""
    kind = i % 5
    if kind == 0:
        assert post(server, MALFORMED[i % len(MALFORMED)][0])[0] == 400
    elif kind == 1:
        assert post(server, chat_body("bad \ud800"))[0] == 400
    elif kind == 2:
        try:  # over the body cap: refused from its length, perhaps while it is still sent
            assert post(server, b"{" + b" " * (9 << 20) + b"}")[0] == 413
        except (BrokenPipeError, ConnectionResetError):
            pass
    elif kind == 3:
        sock = raw_socket(server)
        body = json.dumps(chat_body(qs[i % len(qs)])).encode()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        sock.close()  # gone before the answer
    else:
        sock = raw_socket(server)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHo")
        sock.close()


def test_soak_good_clients_all_succeed_beside_hostile_ones(server, router, fresh):
    """6 s: 16 good clients in a loop (chat, streams, completions) and 3 hostile ones (malformed
    bodies, lone surrogates, a body over the cap, clients that go mid-request, half heads)."""
    qs, stop = questions(router), time.time() + 6
    fresh["market"].script(default="503")  # two failing experts: their requests fail over to bio
    fresh["world"].script(default="drop")
    good_s: list[float] = []
    hostile_n = [0]
    lock = threading.Lock()

    def good_client(k):
        i = k
        while time.time() < stop:
            s = good(server, qs[i % len(qs)], i % 3)
            with lock:
                good_s.append(s)
            i += 16

    def hostile_client(k):
        i = k
        while time.time() < stop:
            hostile_once(server, qs, i)
            with lock:
                hostile_n[0] += 1
            i += 1
            time.sleep(0.02)  # a few hostile clients, not a flood: the machine is shared

    with RssWatch(server.proc.pid) as rss, ThreadPoolExecutor(19) as pool:
        futures = [pool.submit(good_client, k) for k in range(16)] + [
            pool.submit(hostile_client, k) for k in range(3)
        ]
        for f in futures:
            f.result(timeout=60)
    assert len(good_s) > 50
    assert rss.after - rss.before < RSS_MARGIN_MB, str(rss)
    print(
        f"\nsoak 6 s: {len(good_s)} good requests all answered (p50 {pct(good_s, 0.5) * 1000:.0f} ms, "
        f"p99 {pct(good_s, 0.99) * 1000:.0f} ms, max {max(good_s) * 1000:.0f} ms) beside "
        f"{hostile_n[0]} hostile ones; {rss}"
    )
