"""A small LLM API server on 127.0.0.1 for tests: OpenAI `/v1/chat/completions` and
`/v1/completions`, and Gemini REST `/{version}/models/{model}:generateContent`, with scripted
faults.

Its "model" is a deterministic function of the request: the prompt and the seed decide the
question text and the key, so two runs that send the same requests get byte-identical replies
(what the resume tests compare), and different seeds give different questions. A system prompt
that asks for "Write N new" questions gets N blocks separated by '#####'.

Faults are consumed one per request, in arrival order, then `default` applies:
  None / "ok"     a normal reply
  "429" / "429:S" HTTP 429 with Retry-After: S (default 0)
  "500", "503", "400", "401"   that status with an error body
  "slow:S"        sleep S seconds, then reply (past the client's timeout, it has gone)
  "hold"          wait until `release()` (at most 60 s), then reply: a client is surely mid-run
  "malformed"     HTTP 200 whose body is cut-off JSON
  "drop"          close the connection without a reply
  "echo401"       HTTP 401 whose message repeats the request's Authorization header (a careless upstream)
A request with `"stream": true` to an OpenAI path gets the same reply as server-sent events (one per
word, then `data: [DONE]`), with these faults for streams:
  "cut:K"         K events, then the connection is closed mid-body
  "stall:K:S"     K events, then S seconds of silence, then the rest
  "trickle:S"     S seconds between events (a slow stream that never stalls for long)
Hostile upstreams (`rgd serve`'s bounds; each ends when its client goes, and after HOSTILE_S at most):
  "comments" / "comments:S"   a 200 stream of SSE comment lines and never an event: 1 KB lines as
                  fast as they go, or one every S seconds
  "endless:S"     a 200 stream of events, one every S seconds, never [DONE]
  "nodone"        the reply's events without [DONE], the stream ended properly
  "longline"      the first event, then one line that never ends (64 KiB chunks)
  "huge:N"        HTTP 200 whose JSON body is N bytes, chunked (no Content-Length)
  "drip:S"        HTTP 200 whose JSON body comes one byte every S seconds
  "nonjson"       HTTP 200 with an HTML body
  "deep"          HTTP 200 whose JSON body is nested 10,000 levels deep
A request's record gets `gone_at` (time.time()) when a write finds its client gone.

Run it by hand: `python tests/fault_server.py [PORT]`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOSTILE_S = 30.0  # no hostile answer lasts longer, client or not
_GEMINI = re.compile(r"^/v1(?:beta|alpha)?\d*/models/([^/:]+):generateContent$")
_ERRORS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _h(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def fake_reply(prompt: str, seed, n: int, continuation: bool = False) -> str:
    """`n` tagged question blocks determined by (prompt, seed); a completion prompt ending in
    "[QUESTION]" is continued without repeating its tag."""
    topic = " ".join(re.findall(r"[A-Za-z]+", prompt.rsplit("Category", 1)[-1])[-6:]).lower() or "things"
    blocks = []
    for k in range(n):
        h = _h(prompt, seed, k)
        opts = "\n".join(
            f"[OPTION {c}] statement {h[4 * i : 4 * i + 6]} on {topic}" for i, c in enumerate("ABCD")
        )
        tag = "" if continuation and k == 0 else "[QUESTION] "
        blocks.append(
            f"{tag}Which statement about {topic} holds in case {h[:10]}?\n{opts}\n[ANSWER] "
            f"{'ABCD'[int(h[40], 16) % 4]}"
        )
    return "\n#####\n".join(blocks)


def stream_events(reply: dict) -> list[str]:
    """A completion reply as the `data:` payloads of its stream: one chunk per word, then [DONE]."""
    choice = reply["choices"][0]
    chat = "message" in choice
    text = choice["message"]["content"] if chat else choice["text"]
    pieces = re.findall(r"\s*\S+", text) or [""]
    out = []
    for k, piece in enumerate(pieces):
        last = k == len(pieces) - 1
        if chat:
            delta = {"role": "assistant", "content": piece} if k == 0 else {"content": piece}
            c = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
        else:
            c = {"index": 0, "text": piece, "finish_reason": "stop" if last else None}
        out.append(
            json.dumps(
                {
                    "id": reply["id"],
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "model": reply["model"],
                    "created": 0,
                    "choices": [c],
                }
            )
        )
    return out + ["[DONE]"]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many clients at once (the default 5 drops connections: 1 s retries)
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is no error
            super().handle_error(request, client_address)


class FaultServer:
    def __init__(
        self, faults=(), default=None, delay_s: float = 0.0, cached_tokens: int = 0, thoughts_tokens: int = 0
    ):
        self.faults = deque(faults)
        self.default = default
        self.delay_s = delay_s  # added to every normal reply
        self._released = threading.Event()
        self.cached_tokens, self.thoughts_tokens = cached_tokens, thoughts_tokens
        self.requests: list[dict] = []  # path, headers, body, fault of every request received
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        # a short poll interval: shutdown() waits up to one interval
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "FaultServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, faults=(), default=None) -> None:
        with self._lock:
            self.faults, self.default = deque(faults), default
            self._released = threading.Event()  # "hold" holds again

    def release(self) -> None:
        self._released.set()

    def held(self) -> int:
        with self._lock:
            return sum(r["fault"] == "hold" for r in self.requests)

    def _next_fault(self, record: dict) -> str | None:
        with self._lock:
            fault = self.faults.popleft() if self.faults else self.default
            record["fault"] = fault
            self.requests.append(record)
        return None if fault in (None, "ok") else fault

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _stream(self, reply: dict, fault: str | None):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                kind, *args = (fault or "").split(":")
                for k, event in enumerate(stream_events(reply)):
                    if kind == "cut" and k == int(args[0]):
                        self.close_connection = True
                        self.wfile.flush()
                        self.connection.shutdown(2)
                        return
                    if kind == "stall" and k == int(args[0]):
                        time.sleep(float(args[1]))
                    if kind == "trickle" and k:
                        time.sleep(float(args[0]))
                    data = f"data: {event}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = None
                rec = {"path": self.path, "headers": dict(self.headers), "body": body}
                fault = server._next_fault(rec)
                try:
                    self._answer(fault, body)
                except (BrokenPipeError, ConnectionResetError):
                    rec["gone_at"] = time.time()  # the client gave up (timeout) before the reply

            def _chunked(self, status: int, ctype: str):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

            def _chunk(self, data: bytes):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _hostile(self, kind: str, arg: str, body) -> None:
                """The hostile answers (module docstring); every loop ends by HOSTILE_S."""
                until = time.time() + HOSTILE_S
                if kind in ("huge", "drip", "nonjson", "deep"):
                    return self._hostile_body(kind, arg, until)
                self._chunked(200, "text/event-stream")
                events = stream_events(server._openai(self.path, body))
                if kind in ("nodone", "longline"):
                    for event in events[:-1] if kind == "nodone" else events[:1]:
                        self._chunk(f"data: {event}\n\n".encode())
                while kind != "nodone" and time.time() < until:
                    if kind == "comments":
                        self._chunk(b": " + b"x" * 1000 + b"\n" if not arg else b": keep-alive\n")
                    elif kind == "endless":
                        self._chunk(f"data: {events[0]}\n\n".encode())
                    else:  # longline
                        self._chunk(b"y" * 65536)
                    time.sleep(float(arg or 0))
                self._chunk(b"")

            def _hostile_body(self, kind: str, arg: str, until: float) -> None:
                if kind == "nonjson":
                    return self._send(
                        200, b"<html><body>Bad gateway</body></html>", {"Content-Type": "text/html"}
                    )
                if kind == "deep":
                    return self._send(200, b"[" * 10000 + b"]" * 10000)
                if kind == "drip":
                    data = json.dumps({"choices": [{"message": {"content": "x" * 1000}}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    for k in range(len(data)):
                        if time.time() > until:
                            return
                        self.wfile.write(data[k : k + 1])
                        self.wfile.flush()
                        time.sleep(float(arg))
                    return
                self._chunked(200, "application/json")  # huge: a JSON string of N bytes, 64 KiB at a time
                n = int(arg)
                self._chunk(b'{"choices": [{"message": {"content": "')
                for _ in range(n // 65536):
                    self._chunk(b"z" * 65536)
                self._chunk(b'"}}]}')
                self._chunk(b"")

            def _answer(self, fault, body):
                gemini = _GEMINI.match(self.path)
                kind, _, arg = (fault or "").partition(":")
                if kind in ("comments", "endless", "nodone", "longline", "huge", "drip", "nonjson", "deep"):
                    return self._hostile(kind, arg, body)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault == "hold":
                    server._released.wait(60)
                    fault = None
                if fault and fault.startswith("slow:"):
                    time.sleep(float(fault[5:]))
                    fault = None
                if fault == "echo401":
                    msg = f"invalid key {self.headers.get('Authorization')!r}"
                    return self._send(401, json.dumps({"error": {"code": 401, "message": msg}}).encode())
                stream_fault = None
                if fault and fault.split(":")[0] in ("cut", "stall", "trickle"):
                    stream_fault, fault = fault, None
                if fault == "malformed":
                    return self._send(200, b'{"choices": [{"message": {"content": "[QUES')
                if fault:
                    code, _, after = fault.partition(":")
                    code = int(code)
                    err = {
                        "error": {
                            "code": code,
                            "message": f"injected fault {code}",
                            "status": _ERRORS.get(code, ""),
                        }
                    }
                    limits = {"Retry-After": after, "x-ratelimit-remaining-requests": "0"}
                    return self._send(code, json.dumps(err).encode(), limits if after else None)
                if server.delay_s:
                    time.sleep(server.delay_s)
                if gemini:
                    return self._send(200, json.dumps(server._gemini(gemini.group(1), body)).encode())
                if self.path.endswith("/chat/completions") or self.path.endswith("/completions"):
                    reply = server._openai(self.path, body)
                    if isinstance(body, dict) and body.get("stream"):
                        return self._stream(reply, stream_fault)
                    return self._send(200, json.dumps(reply).encode())
                self._send(
                    404, json.dumps({"error": {"code": 404, "message": f"no route {self.path}"}}).encode()
                )

        return Handler

    @staticmethod
    def _count_asked(system: str) -> int:
        m = re.search(r"Write (\d+) new", system)
        return int(m.group(1)) if m else 1

    def _openai(self, path: str, body: dict) -> dict:
        if path.endswith("/chat/completions"):
            msgs = body["messages"]
            system = " ".join(m["content"] for m in msgs if m["role"] == "system")
            prompt = "\n".join(m["content"] for m in msgs)
            text = fake_reply(prompt, body.get("seed"), self._count_asked(system))
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        else:
            prompt = body["prompt"]
            text = fake_reply(
                prompt, body.get("seed"), 1, continuation=prompt.rstrip().endswith("[QUESTION]")
            )
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
        n_in, n_out = len(prompt.split()), len(text.split())
        return {
            "id": "cmpl-" + _h(prompt)[:8],
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [choice],
            "usage": {
                "prompt_tokens": n_in,
                "completion_tokens": n_out,
                "total_tokens": n_in + n_out,
                "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens, n_in)},
            },
        }

    def _gemini(self, model: str, body: dict) -> dict:
        system = " ".join(p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts", []))
        turns = [p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", [])]
        prompt = "\n".join([system, *turns])
        cfg = body.get("generationConfig") or {}
        text = fake_reply(prompt, cfg.get("seed"), self._count_asked(system))
        n_in, n_out = len(prompt.split()), len(text.split())
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": n_in,
                "candidatesTokenCount": n_out,
                "cachedContentTokenCount": min(self.cached_tokens, n_in),
                "thoughtsTokenCount": self.thoughts_tokens,
                "totalTokenCount": n_in + n_out + self.thoughts_tokens,
            },
            "modelVersion": model,
        }


if __name__ == "__main__":
    srv = FaultServer()
    if len(sys.argv) > 1:
        srv.httpd.server_close()
        srv.httpd = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), srv._handler())
    print(srv.url, flush=True)
    srv.httpd.serve_forever()
