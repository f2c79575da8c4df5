"""One process of a simulated fleet, for bench/fleet.py (adapted from tests/fleet_worker.py).

Started with multiprocessing's "spawn" context: a fresh interpreter that builds
its own client for the library under test (httpx-tokenauth with a shared
store or none, authlib's OAuth2Client / AsyncOAuth2Client, httpx-auth's
OAuth2ClientCredentials), then runs one phase of concurrent API calls each
time the parent releases the barrier, and reports what its callers got and
how long they waited. The parent moves the fleet's clock (a shared offset
added to time.time(), for httpx-tokenauth) and counts the token requests the
authorization server received.

Before its first phase, the process opens its API connections (one per
thread; API_CONNECTIONS for the tasks) with requests that carry no token, and
keeps them: a phase measures tokens, not TLS handshakes with the API. Each
call records when its request first left for the API (a request event hook:
the token was ready then) and when the answer came.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx

from httpx_tokenauth import ClientCredentials, FileTokenStore, RedisTokenStore, TokenAuth
from httpx_tokenauth import TokenStore as _TokenStore

#: API connections per process for asyncio tasks (threads: one per thread).
API_CONNECTIONS = 10

#: The slot of the call running in this thread or task: [start, first send].
_CALL: contextvars.ContextVar[list[float]] = contextvars.ContextVar("bench_call")


class _WarningCount(logging.Handler):
    """Counts httpx-tokenauth's warnings (one per store outage, not per request)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _count_warnings() -> _WarningCount:
    handler = _WarningCount()
    log = logging.getLogger("httpx_tokenauth")
    log.addHandler(handler)
    log.propagate = False  # counted, not printed 8 times over the parent's table
    return handler


def build_store(cfg: dict[str, Any], generation: int) -> _TokenStore | None:
    """A fresh store for a cold start: its own prefix (Redis) or directory (file)."""
    kind = cfg["store"]
    if kind == "redis":
        return RedisTokenStore.from_url(
            cfg["redis_url"], encryption_key=cfg["key"], prefix=f"bench-{generation}:"
        )
    if kind == "file":
        directory = os.path.join(cfg["directory"], f"generation-{generation}")
        return FileTokenStore(directory, encryption_key=cfg["key"])
    return None


def _record_send(request: httpx.Request) -> None:
    slot = _CALL.get(None)
    if slot is not None and len(slot) == 1:
        slot.append(time.perf_counter())


async def _arecord_send(request: httpx.Request) -> None:
    _record_send(request)


class _Process:
    """The library under test in this process, and the client its callers share."""

    def __init__(self, cfg: dict[str, Any], offset: Any) -> None:
        self.cfg = cfg
        self.offset = offset
        self.is_async = cfg["mode"] == "tasks"
        self.verify = ssl.create_default_context(cadata=cfg["ca_pem"])
        self.client: Any = None
        self.peer_auth: Any = None
        self.generation = 0
        self.warmed = False

    def clock(self) -> float:
        return time.time() + self.offset.value

    def _limits(self) -> httpx.Limits:
        # Tasks share API_CONNECTIONS connections: with one per task, httpx's async
        # pool costs ~14 ms of CPU per request at 100 concurrent requests (measured
        # with a static header too), which on two cores would swamp what is measured.
        n = API_CONNECTIONS if self.is_async else self.cfg["callers"]
        # Idle API connections are kept between phases (the API keeps them 120 s too).
        return httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=110)

    def _hooks(self) -> dict[str, list[Any]]:
        return {"request": [_arecord_send if self.is_async else _record_send]}

    def _common(self) -> dict[str, Any]:
        return {
            "verify": self.verify,
            "base_url": self.cfg["api_url"],
            "timeout": 60,
            "limits": self._limits(),
            "event_hooks": self._hooks(),
        }

    def new_client(self) -> None:
        """A cold start: a new TokenAuth (with a new store) or a new peer client.

        A new TokenAuth goes on the same API client, so its open connections
        serve the next cold start too: the phase measures tokens, not handshakes.
        """
        cfg, lib = self.cfg, self.cfg["lib"]
        self.generation += 1
        cls = httpx.AsyncClient if self.is_async else httpx.Client
        if lib == "ours":
            # No token_client: the clients TokenAuth makes itself (the process's shared
            # TLS context, which trusts the test CA through SSL_CERT_FILE).
            auth = TokenAuth(
                ClientCredentials(
                    cfg["token_url"], client_id=cfg["client_id"], client_secret=cfg["client_secret"]
                ),
                store=build_store(cfg, self.generation),
                clock=self.clock,
            )
            if self.client is None:
                self.client = cls(auth=auth, **self._common())
            else:
                self.client.auth = auth
        elif lib == "authlib":
            import _common  # noqa: PLC0415  (bench/ is on the spawned child's sys.path)

            mod = _common.authlib_module()
            peer = mod.AsyncOAuth2Client if self.is_async else mod.OAuth2Client
            self.client = peer(
                cfg["client_id"],
                cfg["client_secret"],
                token_endpoint=cfg["token_url"],
                grant_type="client_credentials",
                **self._common(),
            )
        else:
            import _common  # noqa: PLC0415

            mod = _common.httpx_auth_module()
            self.peer_auth = mod.OAuth2ClientCredentials(
                cfg["token_url"],
                cfg["client_id"],
                cfg["client_secret"],
                client=httpx.Client(verify=self.verify, timeout=60),
            )
            self.client = cls(auth=self.peer_auth, **self._common())

    def expire(self) -> None:
        """Peers read time.time(): their cached token's expiry is moved into the past."""
        lib = self.cfg["lib"]
        if lib == "authlib":
            self.client.token["expires_at"] = int(time.time()) - 10
        elif lib == "httpx-auth":
            import _common  # noqa: PLC0415

            _common.httpx_auth_set_expiry(self.peer_auth, time.time() - 10)

    def prepare(self, phase: str) -> bool:
        """Bring this process into the phase's state; whether its API client is new."""
        had = self.client
        if phase == "cold":
            self.new_client()
        elif phase == "expiry":
            self.expire()  # httpx-tokenauth: the parent moves the fleet's clock
        new = self.client is not had or not self.warmed
        self.warmed = True
        return new

    def warm_kwargs(self) -> dict[str, Any]:
        """A request without a token, to open an API connection."""
        if self.cfg["lib"] == "authlib":
            return {"withhold_token": True}
        return {"auth": None}


def _outcome(call: Any) -> str:
    try:
        return str(call().status_code)
    except Exception as exc:  # what the caller got instead of a response
        return type(exc).__name__


def run(cfg: dict[str, Any], barrier: Any, offset: Any, out: Any) -> None:
    """Set up, say ready, then serve phases until the parent sends no more."""
    warnings = _count_warnings()
    proc = _Process(cfg, offset)
    try:
        if proc.is_async:
            asyncio.run(_tasks(proc, cfg, barrier, out, warnings))
        else:
            _threads(proc, cfg, barrier, out, warnings)
    except BaseException:
        barrier.abort()  # the parent fails this fleet now instead of at its deadlock guard
        raise


def _threads(proc: _Process, cfg: dict[str, Any], barrier: Any, out: Any, warnings: Any) -> None:
    callers = cfg["callers"]
    if cfg["phases"][0] != "cold":  # authlib: the app fetches a token before any request
        proc.new_client()
        proc.client.fetch_token()
    barrier.wait()  # ready
    with ThreadPoolExecutor(callers) as pool:
        for phase in cfg["phases"]:
            if proc.prepare(phase):
                warm = proc.warm_kwargs()
                warm_up = partial(_outcome, partial(proc.client.request, "GET", "/warm", **warm))
                list(pool.map(lambda _, warm_up=warm_up: warm_up(), range(callers)))
            client = proc.client
            go = threading.Barrier(callers)

            def one(_: int, go: threading.Barrier = go, client: Any = client) -> tuple[Any, ...]:
                go.wait()
                slot = [time.perf_counter()]
                _CALL.set(slot)
                outcome = _outcome(lambda: client.get("/things"))
                return outcome, slot[0], (slot[1] if len(slot) > 1 else None), time.perf_counter()

            barrier.wait()  # go
            calls = list(pool.map(one, range(callers)))
            out.put(_report(calls, warnings, proc))
            barrier.wait()  # done
    proc.client.close()


async def _tasks(
    proc: _Process, cfg: dict[str, Any], barrier: Any, out: Any, warnings: Any
) -> None:
    callers = cfg["callers"]
    if cfg["phases"][0] != "cold":
        proc.new_client()
        await proc.client.fetch_token()
    await asyncio.to_thread(barrier.wait)  # ready
    for phase in cfg["phases"]:
        if proc.prepare(phase):
            warm = proc.warm_kwargs()
            await asyncio.gather(
                *(proc.client.request("GET", "/warm", **warm) for _ in range(API_CONNECTIONS)),
                return_exceptions=True,  # a connection that failed to open is not the phase's
            )
        client = proc.client

        async def one(client: Any = client) -> tuple[Any, ...]:
            slot = [time.perf_counter()]
            _CALL.set(slot)
            try:
                outcome = str((await client.get("/things")).status_code)
            except Exception as exc:
                outcome = type(exc).__name__
            return outcome, slot[0], (slot[1] if len(slot) > 1 else None), time.perf_counter()

        await asyncio.to_thread(barrier.wait)  # go
        calls = await asyncio.gather(*(one() for _ in range(callers)))
        out.put(_report(calls, warnings, proc))
        await asyncio.to_thread(barrier.wait)  # done
    await proc.client.aclose()


def _report(
    calls: list[tuple[Any, ...]], warnings: _WarningCount, proc: _Process
) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "clients": proc.generation,
        "outcomes": [c[0] for c in calls],
        # seconds from the call's start to its request leaving for the API (token ready)
        "to_token": [c[2] - c[1] for c in calls if c[2] is not None],
        # seconds from the call's start to its answer
        "latency": [c[3] - c[1] for c in calls],
        "warnings": warnings.count,
    }


def probe(cfg: dict[str, Any], samples: int, out: Any) -> None:
    """One token round trip, alone on the machine: a new TLS connection for each sample.

    Through TokenAuth.get_token() with a new token_client each time, so the
    sample is what a cold-start caller's token costs with nobody else asking.
    """
    verify = ssl.create_default_context(cadata=cfg["ca_pem"])
    provider = ClientCredentials(
        cfg["token_url"], client_id=cfg["client_id"], client_secret=cfg["client_secret"]
    )
    cold: list[float] = []
    warm: list[float] = []
    with httpx.Client(verify=verify, timeout=60) as kept:
        TokenAuth(provider, token_client=kept).get_token()  # warms the kept connection
        for _ in range(samples):
            with httpx.Client(verify=verify, timeout=60) as fresh:
                start = time.perf_counter()
                TokenAuth(provider, token_client=fresh).get_token()
                cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            TokenAuth(provider, token_client=kept).get_token()
            warm.append(time.perf_counter() - start)
    out.put({"cold": cold, "warm": warm})
