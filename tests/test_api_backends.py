"""API generator backends against a real local server (tests/fault_server.py, 127.0.0.1 only):
request shapes, retries and clear failures under injected faults, token accounting, resume
after failure and after SIGKILL, and that an API key never leaks into any output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from fault_server import FaultServer, fake_reply

from rgd import backends, secrets
from rgd.backends import api
from rgd.backends.base import Sampling, Settings
from rgd.cache import RecordCache
from rgd.generate import build_prompt, run

KEY = "sk-test-" + uuid.uuid4().hex  # unique: any hit in an output is a leak
RGD = [str(Path(sys.executable).parent / "rgd")]
FAST = {"timeout_s": 2.0, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_retries": 3, "concurrency": 2}
CATS = {"biology": "Questions on cells and genes.", "marketing": "Questions on pricing and brands."}


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


@pytest.fixture(autouse=True)
def dummy_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)  # no stray .env from the repository


def make(kind: str, cfg: dict) -> api._APIBackend:
    """A generator's API backend, through the factory every step uses."""
    return backends.make(kind, settings=Settings(config=cfg))


def gen_cfg(kind: str, srv: FaultServer, **kw) -> dict:
    base = f"{srv.url}/v1" if kind == "openai" else srv.url
    return {
        "backend": kind,
        "model_id": "test-model",
        "base_url": base,
        "num_prompts": 12,
        "batch_size": 4,
        "seed": 5,
        "sampling": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64},
        **FAST,
        **kw,
    }


def chat(desc: str = "Questions on cells.") -> dict:
    return build_prompt(desc, "chat")


# --------------------------------------------------------------------------- secrets
def test_key_from_environment_then_dotenv(monkeypatch, tmp_path):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ValueError, match="GEMINI_API_KEY is not set in the environment or in") as e:
        secrets.read_key("GEMINI_API_KEY")
    assert KEY not in str(e.value)
    (tmp_path / ".env").write_text(f"# keys\nOTHER=1\nexport GEMINI_API_KEY='{KEY}'\nbroken line\n")
    s = secrets.read_key("GEMINI_API_KEY")
    assert s.value == KEY and s.source.endswith(".env")
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in f"{s} {[s]}"
    monkeypatch.setenv("GEMINI_API_KEY", "from-env")
    assert secrets.read_key("GEMINI_API_KEY").value == "from-env"  # the environment wins
    assert secrets.redact(f"x {KEY} y", [KEY]) == "x *** y"
    assert secrets.read_key("NOT_SET_ANYWHERE", required=False) is None


def test_config_cannot_carry_a_key_or_an_unusable_style(server):
    with pytest.raises(ValueError, match="never read from config"):
        make("openai", {**gen_cfg("openai", server), "api_key": KEY})
    with pytest.raises(ValueError, match="chat-fewshot"):
        make("openai", gen_cfg("openai", server, style="chat-fewshot"))
    with pytest.raises(ValueError, match="no completions endpoint"):
        make("gemini", gen_cfg("gemini", server, style="fewshot"))
    with pytest.raises(ValueError, match="guided"):
        make("openai", gen_cfg("openai", server, guided=True))
    with pytest.raises(ValueError, match="MY_KEY is not set"):
        make("gemini", gen_cfg("gemini", server, api_key_env="MY_KEY"))


# --------------------------------------------------------------------------- backoff
def test_backoff_is_seeded_bounded_and_honours_retry_after():
    r = api.Retry(max_retries=5, base_s=1.0, max_s=8.0, seed=3)
    waits = [r.delay(k, "req") for k in range(6)]
    assert waits == [api.Retry(5, 1.0, 8.0, 3).delay(k, "req") for k in range(6)]
    assert waits != [api.Retry(5, 1.0, 8.0, 4).delay(k, "req") for k in range(6)]
    for k, w in enumerate(waits):
        cap = min(8.0, 2**k)
        assert cap / 2 <= w <= cap
    assert r.delay(0, "req", retry_after=30) == 30
    assert api.parse_retry_after("2") == 2 and api.parse_retry_after("soon") is None
    assert (
        50
        < api.parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60)))
        <= 60
    )


# --------------------------------------------------------------------------- request shapes
def test_openai_chat_and_completions_requests(server):
    b = make("openai", gen_cfg("openai", server))
    prompts = [chat("Questions on cells."), chat("Questions on brands."), chat("Questions on cells.")]
    gens = b.generate(prompts, Sampling(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=10))
    reqs = sorted(server.requests, key=lambda r: r["body"]["seed"])
    assert [r["path"] for r in reqs] == ["/v1/chat/completions"] * 3
    assert [r["body"]["seed"] for r in reqs] == [
        10,
        11,
        12,
    ]  # one seed per prompt: equal prompts still differ
    body = reqs[0]["body"]
    assert (body["model"], body["temperature"], body["top_p"], body["max_tokens"]) == (
        "test-model",
        0.7,
        0.9,
        64,
    )
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in reqs)
    # replies come back in prompt order, whatever order the threads finished in
    for j, (p, g) in enumerate(zip(prompts, gens)):
        assert g.text == fake_reply("\n".join(m["content"] for m in p["messages"]), 10 + j, 1)
        assert g.n_prompt_tokens > 0 and g.usage["output"] == g.n_output_tokens > 0 and g.mean_logprob is None
    assert gens[0].text != gens[2].text
    assert b.stats == {"requests": 3, "retries": 0}

    b = make("openai", gen_cfg("openai", server, style="fewshot"))
    (g,) = b.generate([build_prompt("Questions on cells.", "fewshot")], Sampling(seed=0))
    assert server.requests[-1]["path"] == "/v1/completions" and "prompt" in server.requests[-1]["body"]
    assert not g.text.startswith("[QUESTION]")  # a continuation of the prompt's last tag


def test_gemini_request_and_token_accounting(server):
    server.cached_tokens, server.thoughts_tokens = 4, 7
    prices = {"input": 0.30, "cached_input": 0.03, "output": 2.50}
    b = make("gemini", gen_cfg("gemini", server, thinking_budget=0, per_call=5))
    p = build_prompt("Questions on cells.", "chat", per_call=5)
    (g,) = b.generate([p], Sampling(temperature=0.7, top_p=0.9, max_new_tokens=64, seed=3))
    (req,) = server.requests
    assert req["path"].endswith("/models/test-model:generateContent")
    assert req["headers"]["x-goog-api-key"] == KEY
    assert "Write 5 new" in req["body"]["systemInstruction"]["parts"][0]["text"]
    assert req["body"]["contents"] == [{"parts": [{"text": p["messages"][1]["content"]}], "role": "user"}]
    gc = req["body"]["generationConfig"]
    assert (gc["seed"], gc["temperature"], gc["topP"], gc["maxOutputTokens"]) == (3, 0.7, 0.9, 64)
    # this client version writes the field in snake case, which the REST API's JSON parser also accepts
    assert list(gc["thinkingConfig"].values()) == [0]
    assert g.text.count("#####") == 4  # five questions in one reply
    u = g.usage
    assert u["cached_input"] == 4 and u["thoughts"] == 7 and u["output"] == len(g.text.split()) + 7
    rep = b.report([u, u])
    want = ((u["input"] - 4) * 0.30 + 4 * 0.03 + u["output"] * 2.50) * 2 / 1e6
    assert rep["usage"]["input"] == 2 * u["input"] and rep["cost_usd"] == pytest.approx(want, abs=1e-6)
    assert rep["prices_per_million"] == prices == api.GEMINI_PRICES
    assert b.identity == {"backend": "gemini", "model": "test-model", "thinking_budget": 0}


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize("kind", ["openai", "gemini"])
@pytest.mark.parametrize("faults", [["429:0.5"], ["500", "503"], ["slow:3"], ["malformed"], ["drop"]])
def test_transient_faults_are_retried(kind, faults, server, capsys):
    server.script(faults)
    b = make(kind, gen_cfg(kind, server, concurrency=1, timeout_s=1.0))
    t0 = time.perf_counter()
    (g,) = b.generate([chat()], Sampling(seed=1))
    took = time.perf_counter() - t0
    assert "[QUESTION]" in g.text
    assert len(server.requests) == len(faults) + 1 and b.stats["retries"] == len(faults)
    if faults[0].startswith("429"):
        assert took >= 0.5  # Retry-After honoured (the backoff alone is at most 0.05 s)
    err = capsys.readouterr().err
    assert "retry 1/3" in err and KEY not in err


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_persistent_errors_fail_clearly(kind, server, capsys):
    server.script(default="500")
    b = make(kind, gen_cfg(kind, server, concurrency=1))
    with pytest.raises(api.ServiceError) as e:
        b.generate([chat()], Sampling())
    msg = str(e.value)
    assert "HTTP 500" in msg and "after 4 attempts" in msg and server.url in msg and KEY not in msg
    assert len(server.requests) == 4
    # a client error is not retried
    server.script(default="401")
    with pytest.raises(api.ServiceError, match="HTTP 401") as e:
        make(kind, gen_cfg(kind, server)).generate([chat()], Sampling())
    assert len(server.requests) == 5 and KEY not in str(e.value) and KEY not in capsys.readouterr().err


# --------------------------------------------------------------------------- resume
def _inputs(tmp: Path) -> tuple[Path, Path]:
    seeds = tmp / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps(
                {"id": f"{c}-{i}", "category": c, "question": f"q {c} {i}?", "options": ["a", "b", "c", "d"]}
            )
            + "\n"
            for c in CATS
            for i in range(20)
        )
    )
    desc = tmp / "descriptions.yaml"
    desc.write_text(yaml.safe_dump({"categories": CATS}))
    return seeds, desc


def _outs(d: Path) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    return {k: d / f"gen.{k}.jsonl" for k in ("questions", "keys", "rejects")} | {
        "meta": d / "gen.meta.json",
        "cache": d / "cache.jsonl",
    }


def _run(cfg, seeds, desc, o):
    return run(
        "g",
        cfg,
        seeds,
        CATS,
        None,
        o["questions"],
        o["keys"],
        o["rejects"],
        o["meta"],
        o["cache"],
        log=lambda m: None,
    )


def _same_outputs(a: dict, b: dict) -> None:
    for k in ("questions", "keys", "rejects"):
        assert a[k].read_bytes() == b[k].read_bytes(), k


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_failure_keeps_finished_chunks_and_rerun_computes_the_rest(kind, server, tmp_path):
    seeds, desc = _inputs(tmp_path)
    cfg = gen_cfg(kind, server, concurrency=1, per_call=2)
    ref = _outs(tmp_path / "ref")
    _run(cfg, seeds, desc, ref)
    assert len(server.requests) == 12

    server.script([None] * 8, default="503")  # two chunks of 4 succeed, then the service is down
    o = _outs(tmp_path / "broken")
    with pytest.raises(api.ServiceError, match="HTTP 503"):
        _run(cfg, seeds, desc, o)
    assert len(RecordCache(o["cache"], readonly=True)) == 8 and not o["meta"].exists()
    server.script()
    n = len(server.requests)
    meta = _run(cfg, seeds, desc, o)
    assert len(server.requests) - n == 4  # only the missing chunk
    _same_outputs(ref, o)
    assert meta["n_questions"] > 12  # two questions per request
    assert meta["api"]["usage"]["output"] == json.loads(ref["meta"].read_text())["api"]["usage"]["output"]
    assert meta["api"]["this_run"] == {"requests": 4, "retries": 0}


def _cli(kind: str, cfg: dict, seeds: Path, desc: Path, o: dict, env: dict, **kw) -> subprocess.Popen:
    args = RGD + [
        "generate",
        "--name",
        "g",
        "--spec",
        json.dumps(cfg),
        "--seed-questions",
        str(seeds),
        "--descriptions",
        str(desc),
        "--out-questions",
        str(o["questions"]),
        "--out-keys",
        str(o["keys"]),
        "--out-rejects",
        str(o["rejects"]),
        "--out-meta",
        str(o["meta"]),
        "--cache",
        str(o["cache"]),
    ]
    assert KEY not in " ".join(args)
    return subprocess.Popen(args, env=env, **kw)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "OPENAI_API_KEY")}
    return {**env, "PYTHONPATH": str(Path(__file__).parent), **extra}


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_sigkill_mid_run_resumes_without_loss_or_duplicates(kind, server, tmp_path):
    seeds, desc = _inputs(tmp_path)
    cfg = gen_cfg(kind, server, num_prompts=24)
    env = _env(**{secrets.DEFAULT_ENV[kind]: KEY})
    ref = _outs(tmp_path / "ref")
    _run(cfg, seeds, desc, ref)  # the uninterrupted run, in-process

    # two chunks of 4 are answered, then the server holds every request: the kill lands mid-chunk
    server.script([None] * 8, default="hold")
    o = _outs(tmp_path / "killed")
    proc = _cli(kind, cfg, seeds, desc, o, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and server.held() < 2 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    assert len(RecordCache(o["cache"], readonly=True)) == 8 and not o["meta"].exists()
    server.script()
    server.release()
    n = len(server.requests)
    assert _cli(kind, cfg, seeds, desc, o, env).wait(60) == 0
    assert len(server.requests) - n == 16  # the 8 finished prompts are not asked again
    _same_outputs(ref, o)
    keys = [json.loads(line)["key"] for line in o["cache"].read_text().splitlines() if line.strip()]
    assert len(keys) == len(set(keys)) == 24


@pytest.mark.parametrize("kind, source", [("openai", "environment"), ("gemini", ".env")])
def test_key_never_reaches_outputs_logs_or_arguments(kind, source, server, tmp_path):
    """Runs `rgd generate` with a dummy key (one retry and, on a second run, a hard failure on
    the way), then greps everything the runs wrote for the key."""
    work, out = tmp_path / "work", tmp_path / "results"
    work.mkdir()
    out.mkdir()
    var = secrets.DEFAULT_ENV[kind]
    env = _env(**({var: KEY} if source == "environment" else {}))
    if source == ".env":
        (work / ".env").write_text(f"{var}={KEY}\n")
    seeds, desc = _inputs(out)
    o = _outs(out / "data")
    cfg = gen_cfg(kind, server, num_prompts=8)
    logs = []
    # 2: the final API failure is a one-line error (rgd.cli), not a traceback
    for faults, default, want_rc in (([], "500", 2), (["429"], None, 0)):
        server.script(faults, default)
        log = out / "logs" / f"run{len(logs)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            proc = _cli(kind, cfg, seeds, desc, o, env, cwd=work, stdout=fh, stderr=subprocess.STDOUT)
            assert proc.wait(60) == want_rc
        logs.append(log.read_text())
    assert re.search(r"HTTP 500[A-Z ]* after 4 attempts; giving up", logs[0]) and "retry 1/3" in logs[1]
    header = "Authorization" if kind == "openai" else "x-goog-api-key"
    assert all(KEY in r["headers"][header] for r in server.requests)  # the server did get it ...
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 8
    leaks = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert leaks == []  # ... and no output or log holds it
    meta = json.loads(o["meta"].read_text())
    assert meta["api"]["cost_usd"] is None if kind == "openai" else meta["api"]["cost_usd"] > 0
