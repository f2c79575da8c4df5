"""Hardening of the drivers: deadlines that hold, monotonic failure timing, waiters never
stranded (fork, stopped event loops, hanging providers), herds of absurdly short tokens,
and constructor checks. Each through a real TokenAuth and real clients."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from httpx_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    RetryPolicy,
    Token,
    TokenAuth,
    TokenTransportError,
    UnexpectedTokenResponseError,
)

from conftest import CLIENT_SECRET, WAIT, Env, answer_from_fork, token_json

pytestmark = pytest.mark.anyio


class DripServer:
    """A loopback token endpoint: the first ``fast`` answers at once, later ones send their
    headers and then drip the body one byte every ``pause`` seconds."""

    def __init__(self, *, fast: int = 0, pause: float = 0.1, drip_head: bool = False) -> None:
        self.fast = fast
        self.pause = pause
        self.drip_head = drip_head
        self.finished = 0  # answers sent in full
        self.sent = 0  # bytes dripped so far
        self.count = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/token"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.count += 1
            thread = threading.Thread(target=self._answer, args=(conn, self.count), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _answer(self, conn: socket.socket, n: int) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(rest) < length:
                rest += conn.recv(4096)
            body = (
                b'{"access_token": "t%d", "token_type": "Bearer", "expires_in": 3600,'
                b' "pad": "%s"}' % (n, b"x" * 60)
            )
            head = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            )
            if n <= self.fast:
                conn.sendall(head + body)
                return
            if not self.drip_head:
                conn.sendall(head)
            for byte in (head + body) if self.drip_head else body:
                if self._stop.wait(self.pause):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up: what we want
                self.sent += 1
            self.finished += 1

    def close(self) -> None:
        self._stop.set()
        self._accept.join(5)
        for thread in self._threads:
            thread.join(5)
        self._sock.close()


@pytest.fixture
def drip() -> Iterator[DripServer]:
    server = DripServer()
    yield server
    server.close()


def drip_auth(env: Env, server: DripServer, **kwargs: Any) -> TokenAuth:
    return env.make(
        ClientCredentials(server.url, client_id="c", client_secret=CLIENT_SECRET),
        token_client=env.http.Client(timeout=30),
        async_token_client=env.http.AsyncClient(timeout=30),
        **kwargs,
    )


# -- 1. the retry deadline bounds every attempt ----------------------------------------------


async def test_deadline_bounds_an_attempt_whose_body_drips(env: Env, drip: DripServer) -> None:
    """A token endpoint that drips its body byte by byte is given up on at the deadline,
    for the caller and for every caller waiting on that fetch: none gets a token."""
    drip_auth(env, drip, retry=RetryPolicy(attempts=1, deadline=0.6))
    outcomes: list[object] = []

    async def one() -> None:
        try:
            outcomes.append(await env.request())
        except TokenTransportError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
    assert len(outcomes) == 4
    assert all(isinstance(o, TokenTransportError) for o in outcomes), outcomes
    assert all("retry deadline (0.6 s)" in str(o) for o in outcomes)
    assert env.api.requests == []
    assert drip.count == 1


async def test_deadline_bounds_an_attempt_whose_headers_drip(env: Env) -> None:
    """Headers dripped a byte at a time (each byte restarts the read timeout) are given up on
    at the deadline too: no caller waits for the whole answer."""
    server = DripServer(drip_head=True)
    try:
        drip_auth(env, server, retry=RetryPolicy(attempts=1, deadline=0.6))
        with pytest.raises(TokenTransportError, match=r"retry deadline \(0.6 s\)"):
            await env.request()
        # Given up on within the status line and headers (~100 bytes at 10 a second), not
        # after them: the caller did not wait for the answer to arrive.
        assert server.sent < 50
    finally:
        server.close()
    assert env.api.requests == []


async def test_deadline_bounds_the_one_attempt_of_an_early_renewal(env: Env) -> None:
    """An early renewal whose answer drips is abandoned at the configured deadline and the
    still-valid token stays in use."""
    server = DripServer(fast=1)
    try:
        drip_auth(env, server, retry=RetryPolicy(attempts=3, deadline=0.6))
        assert (await env.request()).status_code == 200
        env.clock.advance(3600 - 30)  # in the renewal window
        assert (await env.request()).status_code == 200
    finally:
        server.close()
    assert env.api.tokens() == ["t1", "t1"]
    assert server.count == 2


# -- 3. failure timing on the monotonic clock ------------------------------------------------


async def test_cool_down_does_not_follow_a_wall_clock_stepped_back(env: Env) -> None:
    """After a failed fetch, a wall clock stepped back an hour does not keep callers on the
    remembered error once the cool-down has passed in real time."""
    env.auth_server.reply = lambda request, n: httpx.Response(503, text="down")
    env.make(retry=RetryPolicy.off(), cooldown=0.2)
    with pytest.raises(UnexpectedTokenResponseError):
        await env.request()
    env.auth_server.reply = None  # the server recovers
    env.clock.advance(-3600)  # NTP steps the clock back
    await anyio.sleep(0.3)  # the cool-down passes in real (monotonic) time
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 2


# -- 7. waiters are never stranded -----------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.parametrize("flavor", ["sync"])
async def test_a_child_forked_during_a_fetch_fetches_for_itself(env: Env) -> None:
    """A process forked while another thread's fetch is in flight does not wait for a fetch
    that will never land in the child: get_token() there fetches and returns."""
    gate = env.gate()
    env.auth_server.gate, env.auth_server.gate_first_only = gate, True
    auth = env.make()
    owner = threading.Thread(target=auth.get_token, daemon=True)
    owner.start()
    await gate.entered()  # the owner's fetch is held at the token endpoint

    def in_child() -> bytes:
        return auth.get_token().access_token.encode()

    try:
        answer = answer_from_fork(in_child)
    finally:
        gate.open()
        owner.join(WAIT)
    assert answer == b"t2"  # the child's own request (the parent's was t1)


def test_waiters_are_not_stranded_by_an_event_loop_that_stopped(lib: str) -> None:
    """The task owning a fetch sits on a loop that stopped running; a thread and a task on
    another loop each stop waiting after the deadline plus a margin, and get a token."""
    http: Any = __import__(lib)
    answered: list[str] = []

    async def stuck_handler(request: Any) -> Any:
        answered.append("stuck")
        await asyncio.sleep(3600)  # never reached: its loop stops

    def handler(request: Any) -> Any:
        answered.append("sync")
        return http.Response(200, json=token_json("t-sync"))

    async def other_loop_handler(request: Any) -> Any:
        answered.append("other-loop")
        return http.Response(200, json=token_json("t-loop"))

    auth_cls: Any = TokenAuth if lib == "httpx" else Env("sync", lib).auth_cls
    provider = ClientCredentials(
        "https://as.example/token", client_id="c", client_secret=CLIENT_SECRET
    )
    stuck = auth_cls(
        provider,
        token_client=http.Client(transport=http.MockTransport(handler)),
        async_token_client=http.AsyncClient(transport=http.MockTransport(stuck_handler)),
        retry=RetryPolicy(deadline=0.3),
    )
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(stuck.aget_token(), 0.1))
        assert answered == ["stuck"]
        # The loop is idle now, its fetch task pending forever.
        results: list[str] = []

        def sync_caller() -> None:
            results.append(stuck.get_token().access_token)

        thread = threading.Thread(target=sync_caller, daemon=True)
        thread.start()
        thread.join(WAIT)
        assert results == ["t-sync"]

        # A second TokenAuth whose stuck owner blocks a task on another loop.
        stuck2 = auth_cls(
            provider,
            async_token_client=http.AsyncClient(transport=http.MockTransport(stuck_handler)),
            retry=RetryPolicy(deadline=0.3),
        )
        with pytest.raises(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(stuck2.aget_token(), 0.1))
        stuck2._async_token_client = http.AsyncClient(
            transport=http.MockTransport(other_loop_handler)
        )

        def other_loop() -> None:
            results.append(anyio.run(stuck2.aget_token).access_token)

        thread = threading.Thread(target=other_loop, daemon=True)
        thread.start()
        thread.join(WAIT)
        assert results == ["t-sync", "t-loop"]
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    assert answered == ["stuck", "sync", "stuck", "other-loop"]


def test_waiters_are_not_stranded_by_a_provider_that_never_returns() -> None:
    """Behind a sync provider that hangs, other callers take over after the bound."""
    release = threading.Event()
    calls: list[int] = []

    class Hanging:
        def fetch_token(self) -> Token:
            calls.append(len(calls) + 1)
            if len(calls) == 1:
                release.wait(WAIT)  # hangs until the test lets it go
            return Token(f"p{len(calls)}")

    auth = TokenAuth(Hanging(), retry=RetryPolicy(deadline=0.3))
    first = threading.Thread(target=auth.get_token, daemon=True)
    first.start()
    try:
        deadline = time.monotonic() + WAIT
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        got: list[str] = []
        second = threading.Thread(
            target=lambda: got.append(auth.get_token().access_token), daemon=True
        )
        second.start()
        second.join(WAIT)
        assert got == ["p2"]
    finally:
        release.set()
        first.join(WAIT)
    assert calls == [1, 2]


# -- 8. a herd survives absurdly short tokens -------------------------------------------------


async def test_a_herd_of_callers_shares_one_fetch_of_a_microsecond_token(env: Env) -> None:
    """With expires_in 1e-6, a cold-start herd still makes one token request: each waiter
    is handed the token fetched for it, and the lifetime floor keeps it usable."""
    n = 32 if env.is_sync else 200
    gate = env.gate(target=n)
    env.auth_server.gate, env.auth_server.gate_first_only = gate, True
    env.auth_server.expires_in = 1e-6
    env.make(clock=time.time)  # real time: the token has expired by the time anyone looks
    responses: list[httpx.Response] = []

    async def one() -> None:
        responses.append(await env.request(before=gate.arrive))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    assert [r.status_code for r in responses] == [200] * n
    assert env.auth_server.count == 1
    assert set(env.api.tokens()) == {"t1"}


# -- 9. questionable inputs are refused at construction -------------------------------------


def test_a_provider_class_instead_of_an_instance_is_refused() -> None:
    """TokenAuth(ClientCredentials) (the class) is a ConfigurationError that says what to pass."""
    with pytest.raises(ConfigurationError, match=r"got the class ClientCredentials"):
        TokenAuth(ClientCredentials)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "clock", [time.monotonic, time.perf_counter, time.process_time, time.time_ns]
)
def test_a_clock_that_does_not_count_epoch_seconds_is_refused(clock: Any) -> None:
    """clock=time.monotonic (and friends) cannot date tokens or assertions: refused by name."""
    provider = ClientCredentials("https://as.example/token", client_id="c", client_secret="s")
    with pytest.raises(ConfigurationError, match="clock=time"):
        TokenAuth(provider, clock=clock)


def test_a_clock_in_milliseconds_is_refused() -> None:
    """A clock returning milliseconds since the epoch is refused with a hint."""
    provider = ClientCredentials("https://as.example/token", client_id="c", client_secret="s")
    with pytest.raises(ConfigurationError, match="milliseconds"):
        TokenAuth(provider, clock=lambda: time.time() * 1000)


def _grants() -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from httpx_tokenauth import (
        ClientSecretJWT,
        ClientSecretPost,
        JWTBearerGrant,
        PrivateKeyJWT,
    )

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    url = "https://as.example/token"
    return {
        "basic": ClientCredentials(url, client_id="c", client_secret=CLIENT_SECRET),
        "post": ClientCredentials(
            url, client_id="c", client_secret=CLIENT_SECRET, client_auth=ClientSecretPost()
        ),
        "client_secret_jwt": ClientCredentials(
            url,
            client_id="c",
            client_secret=CLIENT_SECRET + "-padded-to-32-bytes",
            client_auth=ClientSecretJWT(algorithm="HS256"),
        ),
        "private_key_jwt": ClientCredentials(
            url, client_id="c", client_auth=PrivateKeyJWT(pem, algorithm="ES256")
        ),
        "jwt_bearer": JWTBearerGrant(url, issuer="svc", subject="user", key=pem, algorithm="ES256"),
    }


@pytest.mark.parametrize("grant", sorted(_grants()))
@pytest.mark.parametrize("bad", [None, "noon", float("nan")], ids=["None", "str", "nan"])
def test_a_clock_that_breaks_at_request_time_is_typed_for_every_grant(
    grant: str, bad: object
) -> None:
    """A clock that returned a number at construction and a non-number when a token is
    needed gives a ConfigurationError naming the clock, for every grant; never a TypeError."""
    readings = iter([1_700_000_000.0])

    def clock() -> Any:
        return next(readings, bad)

    auth = TokenAuth(_grants()[grant], clock=clock, retry=RetryPolicy.off())
    with pytest.raises(ConfigurationError, match="clock"):
        auth.get_token()


async def test_a_clock_that_breaks_with_a_token_cached_is_a_configuration_error(
    env: Env,
) -> None:
    """Once a token is cached, a clock that starts returning a non-number (or raising) gives
    a ConfigurationError on the next request, not a TypeError from the hot path."""
    readings: list[object] = []

    def clock() -> Any:
        return readings.pop(0) if readings else env.clock()

    env.make(clock=clock)
    assert (await env.request()).status_code == 200
    readings.extend(["noon"] * 10)
    with pytest.raises(ConfigurationError, match="clock"):
        await env.request()


@pytest.mark.parametrize("flavor", ["sync"])
async def test_blocking_token_requests_reuse_a_worker_thread(env: Env) -> None:
    """A blocking token request runs in a worker thread (so the deadline can bound it), and
    the next one reuses that worker instead of starting a thread of its own."""
    threads: list[threading.Thread] = []

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        threads.append(threading.current_thread())
        return httpx.Response(200, json=token_json(f"t{n}"))

    env.auth_server.reply = reply
    first, second = env.make(), env.make()
    assert first.get_token().access_token == "t1"
    assert second.get_token().access_token == "t2"
    assert len(threads) == 2
    assert threads[0] is threads[1]
    assert threading.current_thread() not in threads


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.parametrize("flavor", ["sync"])
async def test_a_child_forked_after_a_fetch_fetches_on_a_worker_of_its_own(env: Env) -> None:
    """The parent's idle worker thread does not exist in a forked child: the child's blocking
    token request starts a worker of its own and gets its token (not a deadline error)."""
    auth = env.make()
    assert auth.get_token().access_token == "t1"  # the parent's worker is now idle

    def in_child() -> bytes:
        return auth.get_token(force=True).access_token.encode()

    assert answer_from_fork(in_child) == b"t2"


@pytest.mark.parametrize("flavor", ["sync"])
async def test_an_idle_worker_thread_ends_and_the_next_request_gets_another(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker left idle past its idle time ends (no thread lingers for a credential that
    fetches once an hour); the next blocking token request starts a worker and succeeds."""
    from httpx_tokenauth import _auth

    monkeypatch.setattr(_auth._WORKERS, "IDLE_SECONDS", 0.05)
    threads: list[threading.Thread] = []

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        threads.append(threading.current_thread())
        return httpx.Response(200, json=token_json(f"t{n}"))

    env.auth_server.reply = reply
    assert env.make().get_token().access_token == "t1"
    threads[0].join(WAIT)
    assert not threads[0].is_alive()
    assert env.make().get_token().access_token == "t2"
    assert threads[1] is not threads[0]
