"""`rgd serve`: the subcommand (registered by rgd.cli.build_parser through `register(add)`)."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path

from ..backends.base import usable_cpus
from ..io import InputError

# The embedder's CPU threads: 2 where the machine has them. Measured on a 2-core node (make bench,
# row serve; docs/SERVING.md): a second thread cut what a miss adds at p99 at 1 client from 44-50
# to 26-38 ms (int8 MiniLM) and from 84-104 to 54-69 ms (PyTorch), without slowing the proxy's
# own work.
DEFAULT_EMBED_THREADS = min(2, usable_cpus())

KEY_HELP = (
    "name of an environment variable holding the key clients must send as `Authorization: Bearer "
    "KEY` (default: no key; then bind to localhost only)"
)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_service(
    router_dir,
    endpoints_file,
    objective: str = "quality",
    seed: int = 0,
    threads: int = DEFAULT_EMBED_THREADS,
    max_attempts: int | None = None,
    api_key_env: str | None = None,
    log_bodies: bool = False,
    model_name: str | None = None,
    env: dict | None = None,
    limits=None,
    bind=None,
):
    """Check every input, then load the router and its embedder once: the Service to serve.
    Everything a user can get wrong fails here, with one located line, before the router and its
    embedder load; `bind()` (the listening socket) is called between the two, so that a port in
    use fails as early, after the cheap checks."""
    from . import endpoints as E
    from .app import DEFAULT_MAX_ATTEMPTS, ROUTER_MODEL, ServeSettings, Service
    from .limits import Limits

    env = os.environ if env is None else env
    limits = limits or Limits()
    obj = _objective(objective)
    router_dir = Path(router_dir)
    prov = _read_provenance(router_dir)
    experts = list(prov["experts"])
    _check_header_names(experts, router_dir)
    eps = E.load(endpoints_file, experts, env)
    if obj.needs_costs:
        _check_costs(eps, experts, endpoints_file, obj)
    key = _client_key(api_key_env, env)
    if max_attempts is not None and max_attempts < 1:
        raise _option_error("--max-attempts", f"must be >= 1, got {max_attempts}")
    if model_name is not None and model_name in experts:
        raise _option_error("--model-name", f"{model_name!r} is an expert's name")
    if bind is not None:
        bind()
    router, prov = _load_router(router_dir)
    ranker, max_tokens = _ranker(
        router, prov, router_dir, threads, obj, [eps[e].cost for e in experts], seed, limits
    )
    settings = ServeSettings(
        max_attempts=min(max_attempts or DEFAULT_MAX_ATTEMPTS, len(experts)),
        api_key=key,
        log_bodies=log_bodies,
        model_name=model_name or ROUTER_MODEL,
        router_kind=prov.get("kind", ""),
        embedder=dict(prov["embedder"]),
        limits=limits,
        route_chars=limits.route_chars(max_tokens),
        embed_threads=threads,
    )
    return Service(ranker, experts, eps, settings)


def _option_error(option: str, message: str) -> InputError:
    return InputError("<command line>", None, option, message)


def _objective(text: str):
    from ..cost import Objective

    try:
        return Objective.parse(text)
    except ValueError as e:
        raise _option_error("--objective", str(e).partition(": ")[2]) from None


def _read_provenance(router_dir: Path) -> dict:
    """The provenance of a trained router directory that records its embedder (nothing loaded)."""
    from .. import routers
    from ..records import read_provenance

    if not (router_dir / routers.PROVENANCE).is_file():
        raise InputError(router_dir, None, None, f"not a trained router directory (no {routers.PROVENANCE})")
    _, prov = read_provenance(router_dir)
    if not prov.get("embedder"):
        raise InputError(
            router_dir / routers.PROVENANCE,
            None,
            "embedder",
            "router records no embedder: rgd serve embeds each request with the router's own embedder",
        )
    return prov


def _load_router(router_dir: Path):
    """(router, provenance) of a router directory whose provenance has been read."""
    from .. import routers

    return routers.load(router_dir)


def _check_header_names(experts: list[str], router_dir: Path) -> None:
    """Every expert's name goes into the `x-rgd-expert` header of its answers: it must be one."""
    from .. import routers
    from .limits import header_problem

    for i, e in enumerate(experts):
        problem = header_problem(e) if isinstance(e, str) else "not a string"
        if problem:
            raise InputError(
                router_dir / routers.PROVENANCE,
                None,
                f"experts[{i}]",
                f"{e!r} cannot be served: the name goes into the x-rgd-expert header, and {problem}",
            )


def _check_costs(eps: dict, experts: list[str], endpoints_file, obj) -> None:
    """A cost-aware objective needs every expert's cost, all in one unit."""
    from ..cost import common_unit

    lacking = [e for e in experts if eps[e].cost is None]
    if lacking:
        raise InputError(
            endpoints_file,
            None,
            f"experts.{lacking[0]}.cost",
            f"missing: the objective {obj} needs every expert's cost",
        )
    try:
        common_unit([eps[e].cost for e in experts], experts)
    except ValueError as e:
        raise InputError(endpoints_file, None, "cost.unit", str(e).partition(": ")[2]) from None


def _client_key(api_key_env: str | None, env) -> str | None:
    """The key clients must send, from the environment variable named (None: no key)."""
    if not api_key_env:
        return None
    from .limits import header_problem

    key = env.get(api_key_env)
    if not key:
        raise _option_error("--api-key-env", f"environment variable {api_key_env} is not set (or empty)")
    if header_problem(key):  # the key itself is never shown
        raise _option_error(
            "--api-key-env",
            f"environment variable {api_key_env} holds a character an HTTP header cannot carry "
            "(a control character, a line break, blanks at either end or beyond Latin-1)",
        )
    return key


def _ranker(router, prov: dict, router_dir: Path, threads: int, obj, expert_costs: list, seed: int, limits):
    """(The Ranker over the router, its own embedder (its CPU threads set before it loads, so
    before its first encode) and the embedding cache, loaded once and warmed up; the longest input
    the embedder reads, in tokens). `expert_costs`: one per expert, in pool order; used only by a
    cost-aware objective."""
    from .. import routers
    from ..cost import expected_costs
    from ..embed import Embedder, embedder_spec
    from .app import Ranker
    from .embed_cache import EmbedCache

    embedder_spec(prov["embedder"], str(router_dir / routers.PROVENANCE)).check_available(
        str(router_dir / routers.PROVENANCE)
    )
    embedder = Embedder(prov["embedder"], threads=threads)  # torch.set_num_threads(threads)

    def score(X):
        return routers.scores(router, X)

    costs = expected_costs(expert_costs) if obj.needs_costs else None
    cache = EmbedCache(limits.embed_cache_entries, limits.embed_cache_bytes)
    ranker = Ranker(
        embedder.encode, score, len(expert_costs), obj, costs, seed, cache=cache, inline=embedder.inline
    )
    ranker.rank_now(["warm-up"])  # the first request should not pay for lazy initialisation
    return ranker, embedder.max_tokens


def cmd_serve(a):
    from .limits import from_args

    limits = from_args(a)
    if not _loopback(a.host) and not a.api_key_env:
        print(
            f"rgd serve: warning: binding to {a.host} without --api-key-env: anyone who can reach this port "
            "can use the pool",
            file=sys.stderr,
        )
    sockets = []  # an occupied port fails after the checks of the inputs, before anything loads
    service = build_service(
        a.router,
        a.endpoints,
        a.objective,
        a.seed,
        a.threads,
        a.max_attempts,
        a.api_key_env,
        a.log_bodies,
        a.model_name,
        limits=limits,
        bind=lambda: sockets.append(_bind(a.host, a.port)),
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx2").setLevel(
        logging.WARNING
    )  # one line per upstream call is ours, not the client's
    s = service.s
    print(
        f"rgd serve: router {s.router_kind} over {', '.join(service.experts)}; objective "
        f"{service.ranker.objective}; at most {s.max_attempts} experts per request; "
        f"{'bearer key required' if s.api_key else 'no client key'}; bodies "
        f"{'logged' if s.log_bodies else 'not logged'}; deadline {limits.deadline:g} s, at most "
        f"{limits.max_concurrent} requests at once; embedder threads {s.embed_threads}; embedding cache "
        f"{service.ranker.cache.describe()}",
        file=sys.stderr,
        flush=True,
    )
    _run(service, sockets[0])


def _bind(host: str, port: int):
    """A listening socket on host:port, or one line saying why not (the port in use, ...)."""
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise _option_error("--host", f"cannot bind to {host!r}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise _option_error("--port", f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _run(service, sock) -> None:
    """uvicorn on the bound socket, its h11 protocol with a deadline on request heads."""
    import uvicorn

    from .app import create_app

    limits = service.s.limits
    config = uvicorn.Config(
        create_app(service),
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=5,
        http=_head_timeout_protocol(limits.head_timeout),
        h11_max_incomplete_event_size=limits.max_head_bytes,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _head_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol, but a connection that has not sent a whole request head within
    `seconds` of opening (or of starting a head on a kept-alive connection) is closed."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeout(H11Protocol):
        _head_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._head_timer = self.loop.call_later(seconds, self._head_late)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is in
                self._stop_head_timer()
            elif self._head_timer is None:  # a new head begins on a kept-alive connection
                self._head_timer = self.loop.call_later(seconds, self._head_late)

        def connection_lost(self, exc):
            self._stop_head_timer()
            super().connection_lost(exc)

        def _stop_head_timer(self):
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self):
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                logging.getLogger("rgd.serve").info(
                    "closed a connection: no request head within %g s", seconds
                )
                self.transport.close()

    return HeadTimeout


def register(add) -> None:
    """Add `rgd serve` with rgd.cli's `add(name, fn, help)`."""
    from ..args import IN, IN_DIR, count
    from .limits import register_options

    def port(text: str) -> int:
        import argparse

        v = count(0)(text)
        if v > 65535:
            raise argparse.ArgumentTypeError(f"a port is at most 65535, got {v}")
        return v

    s = add("serve", cmd_serve, "an OpenAI-compatible routing endpoint in front of the pool's model servers")
    s.add_argument(
        "--router", required=True, path=IN_DIR, help="a trained router directory (rgd train --out-dir)"
    )
    s.add_argument(
        "--endpoints",
        required=True,
        path=IN,
        help="YAML/JSON file mapping every pool expert to its OpenAI-compatible endpoint (docs/SERVING.md)",
    )
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)"
    )
    s.add_argument("--port", type=port, default=8000, help="port to bind (default %(default)s)")
    s.add_argument(
        "--objective",
        default="quality",
        help="quality (default), tolerance=T (the cheapest expert "
        "within T of the best score) or lambda=L (score - L * cost / max cost); costs come from the "
        "endpoints file",
    )
    s.add_argument(
        "--max-attempts",
        type=count(1),
        help="experts tried per request when one fails (default: 3, at most the pool)",
    )
    s.add_argument("--api-key-env", help=KEY_HELP)
    s.add_argument(
        "--model-name",
        help="the `model` clients ask for to be routed (default: rgd); an expert's name pins that expert",
    )
    s.add_argument("--log-bodies", action="store_true", help="log every request body (default: never)")
    s.add_argument(
        "--seed", type=int, default=0, help="seed of the ranking's tie-break (default %(default)s)"
    )
    s.add_argument(
        "--embed-threads",
        "--threads",
        dest="threads",
        metavar="N",
        type=count(1),
        default=DEFAULT_EMBED_THREADS,
        help="CPU threads of the embedder, set before it loads (default: 2, or 1 on a 1-core machine; "
        "measured in docs/SERVING.md); --threads is the same option",
    )
    register_options(s)  # the bounds: one option per field of limits.Limits
