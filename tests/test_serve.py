"""`rgd serve` for real: the command as a user types it, on loopback, called with the official openai
client, in front of fault-injecting OpenAI-compatible servers (tests/fault_server.py); the router is
a real CASCAL trained on real MMLU questions and MiniLM embeddings with planted niches
(tests/serve_support.py). The real vLLM expert is in tests/test_serve_vllm.py."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from fault_server import FaultServer, fake_reply
from serve_support import EXPERTS, RgdServe, refused, write_endpoints

TIMEOUT_S = 1.5  # every expert's timeout: the "slow" faults sleep past it


@pytest.fixture(scope="module")
def server(router, fleet, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    ep = write_endpoints(
        work / "endpoints.yaml",
        {e: {"base_url": s.url + "/v1", "model": f"up-{e}", "timeout": TIMEOUT_S} for e, s in fleet.items()},
    )
    srv = RgdServe(["--router", router[0], "--endpoints", ep], work / "serve.log")
    yield srv
    srv.stop()


@pytest.fixture()
def fresh(fleet):
    """Every fake expert answers normally and forgets what it received."""
    for s in fleet.values():
        s.script()
        s.requests.clear()
    return fleet


def client(srv, **kw):
    return openai.OpenAI(
        base_url=srv.url + "/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, timeout=30, **kw
    )


def chat(c, text, **kw):
    return c.chat.completions.create(
        model=kw.pop("model", "rgd"), messages=[{"role": "user", "content": text}], **kw
    )


def headers(fake: FaultServer) -> dict:
    """The last request's headers at a fake expert, by lower-case name."""
    return {k.lower(): v for k, v in fake.requests[-1]["headers"].items()}


def get(url, key=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers, r.read().decode()


# --------------------------------------------------------------------------- routing
def test_requests_go_to_the_niche_expert_and_the_answer_says_who(server, router, fresh, tmp_path):
    _, held = router
    c = client(server)
    picks = {e: [chat(c, q["question"]).model for q in qs] for e, qs in held.items()}
    for expert, got in picks.items():  # the planted specialist wins most of its subject's new questions
        assert got.count(expert) > len(got) / 2, picks

    q = held["bio"][0]
    raw = c.chat.completions.with_raw_response.create(
        model="rgd",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": q["question"]}],
        temperature=0.3,
        seed=5,
        max_tokens=64,
    )
    r = raw.parse()
    assert raw.headers["x-rgd-expert"] == r.model == "bio"
    info = r.rgd
    assert info["expert"] == "bio" and info["upstream_model"] == "up-bio" and info["router"] == "cascal"
    assert [x["expert"] for x in info["ranking"]][0] == "bio" and {
        x["expert"] for x in info["ranking"]
    } == set(EXPERTS)
    scores = [x["score"] for x in info["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert info["attempts"] == [{"expert": "bio", "outcome": "answered", "status": 200}]
    # the upstream got the request unchanged but for `model`, and none of the client's headers
    sent = fresh["bio"].requests[-1]
    assert sent["body"] == {
        "model": "up-bio",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q["question"]}],
        "temperature": 0.3,
        "seed": 5,
        "max_tokens": 64,
    }
    assert "authorization" not in {k.lower() for k in sent["headers"]}
    want = fake_reply("Be brief.\n" + q["question"], 5, 1)
    assert r.choices[0].message.content == want


def test_the_ranking_is_the_one_rgd_route_writes(server, router, fresh, tmp_path):
    """The same embedder and the same router: the server ranks exactly as `rgd route` does."""
    from rgd.cli import main
    from rgd.io import read_jsonl, write_jsonl

    router_dir, held = router
    qs = [q for e in EXPERTS for q in held[e]]
    write_jsonl(tmp_path / "q.jsonl", qs)
    assert (
        main(
            [
                "route",
                "--router",
                str(router_dir),
                "--questions",
                str(tmp_path / "q.jsonl"),
                "--out",
                str(tmp_path / "routes.jsonl"),
            ]
        )
        == 0
    )
    routes = {r["id"]: r for r in read_jsonl(tmp_path / "routes.jsonl")}
    c = client(server)
    for q in qs:
        info = chat(c, q["question"]).rgd
        assert [x["expert"] for x in info["ranking"]] == routes[q["id"]]["ranking"]
        for x in info["ranking"]:
            assert x["score"] == pytest.approx(routes[q["id"]]["scores"][x["expert"]], abs=1e-5)


def test_concurrent_requests_are_batched_but_routed_alike(server, router, fresh):
    _, held = router
    qs = [q["question"] for e in EXPERTS for q in held[e]]
    c = client(server)
    alone = [chat(c, q).rgd["ranking"] for q in qs]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda q: chat(c, q).rgd["ranking"], qs))
    assert [[x["expert"] for x in r] for r in together] == [[x["expert"] for x in r] for r in alone]
    assert sum(len(s.requests) for s in fresh.values()) == 2 * len(qs)  # each request once, no more


def test_streaming_is_passed_through(server, router, fresh):
    _, held = router
    q = held["world"][0]["question"]
    c = client(server)
    chunks = list(chat(c, q, stream=True, seed=2))
    assert all(ch.model == "world" for ch in chunks)
    assert chunks[0].rgd["expert"] == "world" and chunks[0].rgd["ranking"][0]["expert"] == "world"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == fake_reply(q, 2, 1)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert fresh["world"].requests[-1]["body"]["stream"] is True


def test_completions_plain_and_streaming(server, router, fresh):
    _, held = router
    q = held["market"][1]["question"]
    c = client(server)
    r = c.completions.create(model="rgd", prompt=q, seed=3)
    assert r.model == r.rgd["expert"] and r.choices[0].text == fake_reply(q, 3, 1)
    chunks = list(c.completions.create(model="rgd", prompt=q, seed=3, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks) == r.choices[0].text
    assert fresh[r.model].requests[-1]["path"] == "/v1/completions"


def test_an_expert_can_be_pinned(server, router, fresh):
    _, held = router
    r = chat(client(server), held["bio"][0]["question"], model="market")
    assert r.model == "market" and r.rgd["pinned"] == "market" and "ranking" not in r.rgd
    assert fresh["market"].requests[-1]["body"]["model"] == "up-market"
    # nothing is routed, so a pinned chat needs no user turn (a routed one does: see the bad requests)
    r = client(server).chat.completions.create(
        model="world", messages=[{"role": "system", "content": "Say hi."}]
    )
    assert r.model == "world" and r.choices[0].message.content == fake_reply("Say hi.", None, 1)


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize(
    "fault, outcome",
    [
        ("500", "http_5xx"),
        ("503", "http_5xx"),
        (f"slow:{TIMEOUT_S + 2}", "timeout"),
        ("drop", "connection"),
        ("malformed", "invalid_response"),
    ],
)
def test_a_failing_expert_hands_over_to_the_next_ranked(server, router, fresh, fault, outcome):
    _, held = router
    q = held["bio"][0]["question"]
    c = client(server)
    ranking = [x["expert"] for x in chat(c, q).rgd["ranking"]]
    assert ranking[0] == "bio"
    fresh["bio"].script([fault])
    raw = c.chat.completions.with_raw_response.create(model="rgd", messages=[{"role": "user", "content": q}])
    r = raw.parse()
    assert r.model == ranking[1] and raw.headers["x-rgd-attempts"] == "2"
    assert [a["expert"] for a in r.rgd["attempts"]] == ranking[:2]
    assert r.rgd["attempts"][0]["outcome"] == outcome and r.rgd["attempts"][1]["outcome"] == "answered"
    # bio got the probe above and the failed attempt; the next-ranked expert this request once
    assert len(fresh["bio"].requests) == 2 and len(fresh[ranking[1]].requests) == 1
    assert r.choices[0].message.content == fake_reply(q, None, 1)


def test_a_4xx_is_the_clients_to_see_and_is_not_retried(server, router, fresh):
    _, held = router
    fresh["bio"].script(["400"])
    with pytest.raises(openai.BadRequestError) as e:
        chat(client(server), held["bio"][0]["question"])
    assert e.value.status_code == 400 and e.value.response.headers["x-rgd-expert"] == "bio"
    assert "injected fault 400" in e.value.response.text
    assert not fresh["market"].requests and not fresh["world"].requests


def test_when_no_expert_answers_the_error_says_why(server, router, fresh):
    _, held = router
    for s in fresh.values():
        s.script(default="500")
    with pytest.raises(openai.APIStatusError) as e:
        chat(client(server), held["bio"][0]["question"])
    assert e.value.status_code == 502
    err = e.value.response.json()["error"]
    assert err["code"] == "no_expert_answered" and err["type"] == "upstream_error"
    assert "3 tried" in err["message"] and all(x in err["message"] for x in EXPERTS)
    assert [a["outcome"] for a in err["rgd"]["attempts"]] == ["http_5xx"] * 3
    assert sum(len(s.requests) for s in fresh.values()) == 3  # each expert once: bounded


def test_a_stream_fails_over_only_before_its_first_event(server, router, fresh):
    _, held = router
    q = held["world"][0]["question"]
    c = client(server)
    fresh["world"].script(["503"])  # before any event: the next-ranked expert streams the answer
    chunks = list(chat(c, q, stream=True))
    assert chunks[0].model != "world" and chunks[0].rgd["attempts"][0]["outcome"] == "http_5xx"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == fake_reply(q, None, 1)

    for s in fresh.values():
        s.requests.clear()
    fresh["world"].script(["cut:3"])  # mid-stream: an error event, never a second answer spliced on
    got = []
    with pytest.raises(openai.APIError) as e:
        for ch in chat(c, q, stream=True):
            got.append(ch.choices[0].delta.content or "")
    assert len(got) == 3 and "stream broke off after 3 events" in str(e.value)
    assert len(fresh["world"].requests) == 1 and not fresh["bio"].requests and not fresh["market"].requests


def test_a_stalled_stream_ends_with_an_error_and_a_slow_one_completes(server, router, fresh):
    _, held = router
    q = held["world"][1]["question"]
    c = client(server)
    fresh["world"].script([f"stall:2:{TIMEOUT_S + 2}"])
    got = []
    with pytest.raises(openai.APIError) as e:
        for ch in chat(c, q, stream=True):
            got.append(ch)
    assert len(got) == 2 and "stream stalled after 2 events" in str(e.value)
    fresh["world"].script(["trickle:0.05"])  # 3 s in all, over the timeout, but no gap near it
    chunks = list(chat(c, q, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == fake_reply(q, None, 1)


def test_bad_requests_get_openai_style_errors(server, fresh):
    c = client(server)
    with pytest.raises(openai.NotFoundError) as e:
        chat(c, "What is DNA?", model="gpt-4o")
    assert e.value.response.json()["error"]["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="rgd", messages=[{"role": "system", "content": "no user turn"}])
    assert "no user message" in e.value.response.json()["error"]["message"]
    req = urllib.request.Request(
        server.url + "/v1/chat/completions",
        data=b"{not json",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400 and json.loads(e.value.read())["error"]["code"] == "invalid_json"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server.url + "/v1/nothing", timeout=10)
    assert e.value.code == 404 and "error" in json.loads(e.value.read())
    assert not any(s.requests for s in fresh.values())


# --------------------------------------------------------------------------- models, health, metrics, logs
def test_models_health_and_metrics(server, router, fresh):
    c = client(server)
    ids = [m.id for m in c.models.list()]
    assert ids == ["rgd", *EXPERTS]
    status, _, body = get(server.url + "/health")
    h = json.loads(body)
    assert status == 200 and h["status"] == "ok" and h["experts"] == EXPERTS and h["router"] == "cascal"
    fresh["bio"].script(["500"])
    chat(c, router[1]["bio"][0]["question"])
    status, headers, text = get(server.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    fam = {f.name: f for f in text_string_to_metric_families(text)}
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fam.values() for s in f.samples}
    assert value[("rgd_upstream_errors_total", (("expert", "bio"), ("kind", "http_5xx")))] >= 1
    assert value[("rgd_failovers_total", ())] >= 1
    assert value[("rgd_requests_total", (("path", "/v1/chat/completions"), ("status", "200")))] >= 1
    assert sum(v for (n, _), v in value.items() if n == "rgd_answered_total") >= 1
    assert value[("rgd_routing_seconds_count", ())] >= 1 and "rgd_routed" in fam
    assert not any(n.endswith("_created") for n, _ in value)


def metric_values(srv) -> dict:
    """/metrics as {name: value} of the series without labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = get(srv.url + "/metrics")[2]
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


CACHE_SERIES = ("rgd_embed_cache_hits_total", "rgd_embed_cache_misses_total", "rgd_embedding_seconds_count")


def test_the_same_text_again_is_a_cache_hit_routed_alike(server, router, fresh):
    c = client(server)
    text = router[1]["market"][3]["question"] + "\n(asked once by the cache test)"
    before = metric_values(server)
    first = chat(c, text).rgd
    mid = metric_values(server)
    second = chat(c, text).rgd
    after = metric_values(server)
    hits, misses, timed = CACHE_SERIES
    assert (mid[misses] - before[misses], mid[hits] - before[hits]) == (1, 0)
    assert (after[misses] - mid[misses], after[hits] - mid[hits]) == (0, 1)
    assert after[timed] - before[timed] == 2 and after["rgd_ranking_seconds_count"] >= 2
    assert after["rgd_embed_cache_entries"] >= 1 and after["rgd_embed_cache_bytes"] > 0
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert second["ranking"] == first["ranking"] and second["expert"] == first["expert"]
    for info in (first, second):
        assert info["routing_ms"] == pytest.approx(info["embedding_ms"] + info["ranking_ms"], abs=0.002)
    assert second["embedding_ms"] < 5 and second["embedding_ms"] < first["embedding_ms"]


def test_without_the_cache_nothing_is_counted_and_threads_are_recorded(router, fleet, fresh, tmp_path):
    ep = write_endpoints(
        tmp_path / "endpoints.yaml",
        {e: {"base_url": s.url + "/v1", "model": f"up-{e}", "timeout": TIMEOUT_S} for e, s in fleet.items()},
    )
    args = ["--router", router[0], "--endpoints", ep, "--embed-cache-entries", "0", "--embed-threads", "2"]
    srv = RgdServe(args, tmp_path / "serve.log")
    try:
        c = client(srv)
        text = router[1]["bio"][3]["question"]
        infos = [chat(c, text).rgd for _ in range(2)]
        values = metric_values(srv)
        assert [i["cache"] for i in infos] == ["off", "off"] and infos[0]["ranking"] == infos[1]["ranking"]
        assert values["rgd_embed_cache_hits_total"] == values["rgd_embed_cache_misses_total"] == 0
        assert values["rgd_embed_cache_entries"] == values["rgd_embed_cache_bytes"] == 0
        assert "embedder threads 2; embedding cache off" in srv.output()
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--embed-threads", "0", "argument --embed-threads/--threads: must be >= 1, got 0"),
        ("--embed-threads", "two", "argument --embed-threads/--threads: expected an integer, got 'two'"),
        ("--embed-cache-entries", "-1", "--embed-cache-entries: "),
        ("--embed-cache-bytes", "-5", "--embed-cache-bytes: "),
    ],
)
def test_bad_embedder_options_are_refused_before_the_router_loads(router, tmp_path, option, value, message):
    ep = write_endpoints(
        tmp_path / "endpoints.yaml", {e: {"base_url": "http://h/v1", "model": e} for e in EXPERTS}
    )
    rc, err = refused(["--router", router[0], "--endpoints", ep, option, value])
    assert rc == 2 and err.count("\n") == 1 and err.startswith("rgd serve: error: ") and message in err, err


def test_request_bodies_are_not_logged(server, router):
    q = router[1]["bio"][2]["question"]
    chat(client(server), q)
    log = server.output()
    assert "/v1/chat/completions -> 200 expert=bio" in log
    assert q not in log and q[:40] not in log


# --------------------------------------------------------------------------- keys, costs, start-up checks
def test_keys_costs_and_logged_bodies(router, fleet, fresh, tmp_path):
    """A client key, an upstream key (sent upstream only, scrubbed from what comes back), bodies
    logged when asked, and a cost objective that picks the cheapest expert near the best."""
    entries = {
        e: {
            "base_url": s.url + "/v1",
            "model": f"up-{e}",
            "timeout": TIMEOUT_S,
            "cost": {"input_per_mtok": {"bio": 5.0, "market": 3.0, "world": 0.1}[e], "output_per_mtok": 1.0},
        }
        for e, s in fleet.items()
    }
    entries["bio"]["api_key_env"] = "RGD_TEST_UPSTREAM_KEY"
    ep = write_endpoints(tmp_path / "endpoints.yaml", entries)
    secret, upstream = "client-secret-4f1c", "upstream-secret-77aa"
    srv = RgdServe(
        [
            "--router",
            router[0],
            "--endpoints",
            ep,
            "--api-key-env",
            "RGD_TEST_CLIENT_KEY",
            "--log-bodies",
            "--objective",
            "tolerance=0.02",
        ],
        tmp_path / "serve.log",
        {"RGD_TEST_CLIENT_KEY": secret, "RGD_TEST_UPSTREAM_KEY": upstream},
    )
    try:
        q = router[1]["bio"][0]["question"]
        with pytest.raises(openai.AuthenticationError):
            chat(client(srv, api_key="wrong"), q)
        with pytest.raises(urllib.error.HTTPError) as e:
            get(srv.url + "/metrics")
        assert e.value.code == 401
        assert get(srv.url + "/health")[0] == 200  # a load balancer's probe needs no key
        c = client(srv, api_key=secret)
        r = chat(c, q, model="bio")
        assert headers(fresh["bio"])["authorization"] == f"Bearer {upstream}"
        fresh["bio"].script(["echo401"])
        with pytest.raises(openai.AuthenticationError) as e:
            chat(c, q, model="bio")
        assert upstream not in e.value.response.text and "***" in e.value.response.text

        # tolerance objective: the cheapest expert whose score is within 0.02 of the best
        r = chat(c, q)
        ranking = r.rgd["ranking"]
        assert r.rgd["objective"] == "tolerance=0.02"
        best = max(x["score"] for x in ranking)
        near = [x for x in ranking if x["score"] >= best - 0.02]
        assert r.model == min(near, key=lambda x: x["cost"])["expert"]
        assert {x["expert"]: x["cost"] for x in ranking} == {"bio": 3.0, "market": 2.0, "world": 0.55}
        assert "authorization" not in headers(fresh[r.model])  # bio's key goes to bio only
        log = srv.output()
        assert q[:40] in log  # --log-bodies
        assert secret not in log and upstream not in log
    finally:
        srv.stop()


def _refused(args, tmp_path, extra_env=None):
    return refused(args, extra_env)


def test_start_up_refuses_a_pool_expert_without_an_endpoint(router, fleet, tmp_path):
    ep = write_endpoints(
        tmp_path / "endpoints.yaml", {e: {"base_url": fleet[e].url + "/v1", "model": e} for e in EXPERTS[:2]}
    )
    rc, err = _refused(["--router", router[0], "--endpoints", ep], tmp_path)
    assert rc == 2 and err.count("\n") == 1
    assert (
        err == f"rgd serve: error: {ep}:1: experts: no endpoint for pool expert 'world' "
        f"(the router's pool: {', '.join(EXPERTS)})\n"
    )


@pytest.mark.parametrize(
    "entry, extra, message",
    [
        ({"base_url": "ftp://x", "model": "m"}, {}, "experts.world.base_url: expected an http(s) URL"),
        (
            {"base_url": "http://u:p@host/v1", "model": "m"},
            {},
            "experts.world.base_url: credentials in the URL",
        ),
        (  # a non-http URL with credentials: refused like an http one, the password not shown
            {"base_url": "ftp://u:sk-123@host/v1", "model": "m"},
            {},
            "experts.world.base_url: credentials in the URL",
        ),
        ({"base_url": "sk-123@host", "model": "m"}, {}, "expected an http(s) URL such as"),
        (
            {"base_url": "http://h\x07ost/v1", "model": "m"},
            {},
            "experts.world.base_url: character 8 is '\\x07': a URL holds no control characters",
        ),
        (
            {"base_url": "http://h/v1\r\nX-Injected: 1", "model": "m"},
            {},
            "experts.world.base_url: character 11 is '\\r'",
        ),
        (
            {"base_url": "http://h:99999/v1", "model": "m"},
            {},
            "experts.world.base_url: not a URL the HTTP client takes (Port out of range",
        ),
        ({"base_url": "http://h/v1"}, {}, "experts.world.model: missing"),
        (
            {"base_url": "http://h/v1", "model": "m", "timeout": 0},
            {},
            "experts.world.timeout: expected a number of seconds > 0",
        ),
        (
            {"base_url": "http://h/v1", "model": "m", "api_key_env": "RGD_NO_SUCH_VAR"},
            {},
            "experts.world.api_key_env: environment variable RGD_NO_SUCH_VAR is not set",
        ),
        (
            {"base_url": "http://h/v1", "model": "m", "cost": {"relative": -1}},
            {},
            "experts.world.cost.relative: expected",
        ),
        ({"base_url": "http://h/v1", "model": "m", "key": "sk-123"}, {}, "experts.world.key: unknown field"),
        (
            {"base_url": "http://h/v1", "model": "m"},
            {"--objective": "lambda=0.5"},
            "experts.bio.cost: missing: the objective lambda=0.5 needs every expert's cost",
        ),
        (
            {"base_url": "http://h/v1", "model": "m"},
            {"--objective": "cheapest"},
            "--objective: expected quality",
        ),
        (
            {"base_url": "http://h/v1", "model": "m"},
            {"--api-key-env": "RGD_NO_SUCH_VAR"},
            "--api-key-env: environment variable RGD_NO_SUCH_VAR is not set",
        ),
    ],
)
def test_start_up_refuses_bad_settings_in_one_line(router, fleet, tmp_path, entry, extra, message):
    entries = {e: {"base_url": fleet[e].url + "/v1", "model": e} for e in EXPERTS[:2]} | {"world": entry}
    ep = write_endpoints(tmp_path / "endpoints.yaml", entries)
    args = ["--router", router[0], "--endpoints", ep] + [x for kv in extra.items() for x in kv]
    rc, err = _refused(args, tmp_path)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("rgd serve: error: ") and message in err, err
    assert "Traceback" not in err and "sk-123" not in err
