"""When the token endpoint or the API misbehaves: retries, no stampedes, a fault matrix.

Each behaviour runs against httpx.Client (threads), and httpx.AsyncClient on
asyncio and trio, through the harness in conftest.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from httpx_tokenauth import (
    ClientCredentials,
    InvalidGrantError,
    InvalidTokenResponseError,
    RetryPolicy,
    Token,
    TokenAuth,
    TokenEndpointError,
    TokenError,
    TokenTransportError,
    UnexpectedTokenResponseError,
    UnsupportedTokenTypeError,
)

from conftest import API_URL, CLIENT_SECRET, TOKEN_URL, WAIT, Env, body_of, token_json

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.004)


def status(code: int, **kwargs: Any) -> Callable[[httpx.Request, int], httpx.Response]:
    return lambda request, n: httpx.Response(code, **kwargs)


def failing_then_ok(
    failures: int, code: int = 503
) -> Callable[[httpx.Request, int], httpx.Response]:
    def reply(request: httpx.Request, n: int) -> httpx.Response:
        if n <= failures:
            return httpx.Response(code, text="<html>busy</html>")
        return httpx.Response(200, json=token_json(f"t{n}"))

    return reply


# -- bounded retries ------------------------------------------------------------------


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
async def test_passing_failures_are_retried_until_success(env: Env, code: int) -> None:
    """408/429/5xx answers are retried with backoff; the caller just gets its response."""
    env.auth_server.reply = failing_then_ok(2, code)
    env.make(retry=FAST)
    response = await env.request()
    assert response.status_code == 200
    assert env.auth_server.count == 3
    assert env.api.tokens() == ["t3"]


async def test_transport_errors_are_retried(env: Env) -> None:
    """A refused connection is retried; the attempts after it succeed."""

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=token_json("after-retry"))

    env.auth_server.reply = reply
    env.make(retry=FAST)
    response = await env.request()
    assert response.status_code == 200
    assert env.auth_server.count == 2


async def test_retries_are_bounded_by_attempts(env: Env) -> None:
    """A server that stays down gets exactly `attempts` requests, then the typed error."""
    env.auth_server.reply = status(503, text="down")
    env.make(retry=RetryPolicy(attempts=4, backoff=0.001))
    with pytest.raises(UnexpectedTokenResponseError) as info:
        await env.request()
    assert info.value.status_code == 503
    assert env.auth_server.count == 4
    assert env.api.requests == []


async def test_retries_can_be_turned_off(env: Env) -> None:
    """RetryPolicy.off() makes one attempt only."""
    env.auth_server.reply = status(503)
    env.make(retry=RetryPolicy.off())
    with pytest.raises(UnexpectedTokenResponseError):
        await env.request()
    assert env.auth_server.count == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, "invalid_client"),
        (400, "invalid_client"),
        (400, "invalid_grant"),
        (400, "invalid_scope"),
        (400, "unauthorized_client"),
        (400, "unsupported_grant_type"),
        (400, "invalid_request"),
        (400, "invalid_target"),
        (503, "invalid_client"),
    ],
)
async def test_oauth_errors_are_never_retried(env: Env, code: int, error: str) -> None:
    """RFC 6749 §5.2 errors are final, even with a 5xx status: one request, typed error."""
    env.auth_server.reply = status(code, json={"error": error})
    env.make(retry=FAST)
    with pytest.raises(TokenEndpointError) as info:
        await env.request()
    assert info.value.error == error
    assert env.auth_server.count == 1


async def test_temporarily_unavailable_with_503_is_retried(env: Env) -> None:
    """A 503 carrying `temporarily_unavailable` means "later", so it is retried."""

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(503, json={"error": "temporarily_unavailable"})
        return httpx.Response(200, json=token_json("ok"))

    env.auth_server.reply = reply
    env.make(retry=FAST)
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 2


async def test_retry_after_beyond_the_deadline_gives_up_at_once(env: Env) -> None:
    """Retry-After is honoured: a wait longer than the deadline means no second attempt."""
    env.auth_server.reply = status(429, headers={"Retry-After": "120"})
    env.make(retry=RetryPolicy(attempts=5, backoff=0.001, retry_after_cap=300, deadline=60))
    with pytest.raises(UnexpectedTokenResponseError) as info:
        await env.request()
    assert info.value.status_code == 429
    assert info.value.retry_after == 120
    assert env.auth_server.count == 1


async def test_retry_after_within_the_cap_is_waited_for(env: Env) -> None:
    """A Retry-After within the cap and the deadline leads to a retry."""
    env.auth_server.reply = lambda request, n: (
        httpx.Response(503, headers={"Retry-After": "0"})
        if n == 1
        else httpx.Response(200, json=token_json("later"))
    )
    env.make(retry=FAST)
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 2


async def test_each_retry_is_a_new_request_body(env: Env) -> None:
    """Every attempt is built anew (JWT methods mint a fresh assertion per attempt)."""
    env.auth_server.reply = failing_then_ok(2)
    env.make(retry=FAST)
    await env.request()
    assert len({id(r) for r in env.auth_server.requests}) == 3
    assert env.auth_server.forms == [{"grant_type": ["client_credentials"]}] * 3


# -- no stampede while the server is down ---------------------------------------------------


async def test_down_server_gets_one_acquisitions_attempts_from_a_herd(env: Env) -> None:
    """500 tasks (or 32 threads) against a 503 endpoint: `attempts` requests, one error for all."""
    n = 32 if env.is_sync else 500
    gate = env.gate(target=n)
    env.auth_server.gate, env.auth_server.gate_first_only = gate, True
    env.auth_server.reply = status(503, text="down")
    env.make(retry=FAST)
    errors: list[BaseException] = []

    def record() -> None:
        gate.arrive()

    async def one() -> None:
        try:
            await env.request(before=record)
        except TokenError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    assert env.auth_server.count == 3
    assert len(errors) == n
    assert {type(e) for e in errors} == {UnexpectedTokenResponseError}
    assert {str(e) for e in errors} == {str(errors[0])}
    assert env.api.requests == []


async def test_cool_down_answers_without_a_request_then_service_resumes(env: Env) -> None:
    """Within the cool-down callers get the error at once; after it, the next caller retries."""
    env.auth_server.reply = status(503)
    env.make(retry=RetryPolicy.off(), cooldown=5.0)
    with pytest.raises(UnexpectedTokenResponseError):
        await env.request()
    env.clock.advance(4.9)
    with pytest.raises(UnexpectedTokenResponseError):
        await env.request()
    assert env.auth_server.count == 1
    env.auth_server.reply = None  # the server recovers
    env.clock.advance(0.2)
    response = await env.request()
    assert response.status_code == 200
    assert env.auth_server.count == 2


async def test_failed_renewal_keeps_valid_token_and_retries_later(env: Env) -> None:
    """Early renewal failing keeps the token; renewal is tried again later, then succeeds."""
    env.make(retry=RetryPolicy.off())
    await env.request()
    env.auth_server.reply = status(500)
    env.clock.advance(3600 - 50)  # early window, 50 s left
    assert (await env.request()).status_code == 200
    assert (await env.request()).status_code == 200  # within the retry pause: no request
    assert env.auth_server.count == 2
    env.auth_server.reply = None
    env.clock.advance(6)  # past the pause (a tenth of the remaining lifetime)
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 3
    assert env.api.tokens() == ["t1", "t1", "t1", "t3"]


# -- fault matrix ---------------------------------------------------------------------


def raise_exc(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request, int], Any]:
    def reply(request: httpx.Request, n: int) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return reply


def json_bytes(body: bytes, code: int = 200) -> Callable[[httpx.Request, int], httpx.Response]:
    return lambda request, n: httpx.Response(
        code, content=body, headers={"Content-Type": "application/json"}
    )


TOKEN = "token"  # the outcome "a usable token"

FAULTS: list[tuple[str, Callable[[httpx.Request, int], httpx.Response], object]] = [
    ("connect-timeout", raise_exc(httpx.ConnectTimeout), TokenTransportError),
    ("read-timeout", raise_exc(httpx.ReadTimeout), TokenTransportError),
    ("connection-reset", raise_exc(httpx.ReadError), TokenTransportError),
    ("html-502", status(502, html="<h1>Bad Gateway</h1>"), UnexpectedTokenResponseError),
    ("html-200", status(200, html="<h1>Login</h1>"), UnexpectedTokenResponseError),
    ("empty-body", status(200), UnexpectedTokenResponseError),
    ("truncated-json", json_bytes(b'{"access_token": "abc", "tok'), UnexpectedTokenResponseError),
    ("json-array", json_bytes(b'["access_token"]'), InvalidTokenResponseError),
    ("json-string", json_bytes(b'"token"'), InvalidTokenResponseError),
    ("json-null", json_bytes(b"null"), InvalidTokenResponseError),
    ("missing-access-token", status(200, json={"token_type": "Bearer"}), InvalidTokenResponseError),
    ("missing-token-type", status(200, json={"access_token": "a"}), InvalidTokenResponseError),
    ("access-token-number", status(200, json=token_json(123)), InvalidTokenResponseError),  # type: ignore[arg-type]
    ("expires-negative", status(200, json=token_json("a", -5)), InvalidTokenResponseError),
    ("expires-zero", status(200, json=token_json("a", 0)), InvalidTokenResponseError),
    ("expires-huge", status(200, json=token_json("a", 10**30)), TOKEN),
    ("expires-non-numeric", status(200, json=token_json("a", "soon")), InvalidTokenResponseError),
    ("expires-string", status(200, json=token_json("a", "3600")), TOKEN),
    ("expires-bool", status(200, json=token_json("a", True)), InvalidTokenResponseError),
    (
        "token-type-mac",
        status(200, json={**token_json("a"), "token_type": "mac"}),
        UnsupportedTokenTypeError,
    ),
    (
        "redirect",
        status(302, headers={"Location": "https://x.example/"}),
        UnexpectedTokenResponseError,
    ),
    (
        "over-size-cap",
        json_bytes(b'{"a": "' + b"x" * (1 << 20) + b'"}'),
        UnexpectedTokenResponseError,
    ),
    ("200-with-error", status(200, json={"error": "invalid_grant"}), InvalidGrantError),
    ("200-unknown-error", status(200, json={"error": "use_dpop_nonce"}), TokenEndpointError),
    ("400-not-json", status(400, text="Bad Request"), UnexpectedTokenResponseError),
]


@pytest.mark.parametrize(("name", "reply", "outcome"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_fault_matrix(env: Env, name: str, reply: Any, outcome: object) -> None:
    """Each token-endpoint fault ends in a usable token or its TokenError subclass; nothing else."""
    env.auth_server.reply = reply
    env.make(retry=RetryPolicy.off())
    if outcome is TOKEN:
        response = await env.request()
        assert response.status_code == 200
        assert env.api.authorization == ["Bearer a"]
        return
    assert isinstance(outcome, type)
    with pytest.raises(TokenError) as info:
        await env.request()
    assert type(info.value) is outcome
    assert env.api.requests == []  # never a request without a token


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/token"
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        sock.close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on (bound, then closed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/token"


@pytest.mark.parametrize("which", ["refused", "never-answers"])
async def test_real_socket_faults(
    env: Env, which: str, silent_server: str, closed_port_url: str
) -> None:
    """A refused connection and a server that never answers are TokenTransportErrors."""
    url = closed_port_url if which == "refused" else silent_server
    timeout = env.http.Timeout(0.3)
    env.make(
        ClientCredentials(url, client_id="c", client_secret=CLIENT_SECRET),
        token_client=env.http.Client(timeout=timeout),
        async_token_client=env.http.AsyncClient(timeout=timeout),
        retry=RetryPolicy.off(),
    )
    with pytest.raises(TokenTransportError) as info:
        await env.request()
    assert isinstance(info.value.__cause__, env.http.TransportError)
    if which == "never-answers":
        assert "timed out" in str(info.value)
    assert env.api.requests == []


# -- resource server faults ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "replays"),
    [
        (
            [
                ("WWW-Authenticate", 'Basic realm="x"'),
                ("WWW-Authenticate", 'Bearer error="invalid_token"'),
            ],
            True,
        ),
        ([("WWW-Authenticate", 'Basic realm="x"'), ("WWW-Authenticate", "Negotiate")], False),
        ([("WWW-Authenticate", "!!! ,, ===")], False),
        ([("WWW-Authenticate", '"only-a-string", === ,')], True),
        (
            [("WWW-Authenticate", 'Bearer error="invalid_token'), ("WWW-Authenticate", "Bearer")],
            True,
        ),
        (
            [
                (
                    "WWW-Authenticate",
                    'Bearer error="insufficient_scope", Bearer error="invalid_token"',
                )
            ],
            False,
        ),
    ],
    ids=[
        "basic+bearer-headers",
        "no-bearer",
        "odd-scheme-token",
        "no-scheme-at-all",
        "unterminated-quote",
        "first-bearer-wins",
    ],
)
async def test_challenge_faults(env: Env, headers: list[tuple[str, str]], replays: bool) -> None:
    """Repeated, mixed and garbage WWW-Authenticate headers are decided per U5-U8."""
    env.make()
    env.api.reply = lambda request: httpx.Response(401, headers=headers)
    response = await env.request()
    assert response.status_code == 401
    assert len(env.api.requests) == (2 if replays else 1)
    assert env.auth_server.count == (2 if replays else 1)


# -- concurrency edge cases ---------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_cancelled_renewer_does_not_wedge_the_others(env: Env) -> None:
    """A caller cancelled (say, by its timeout) while it fetches does not wedge the others.

    On asyncio the fetch runs as a task of its own and carries on for the
    waiters: one token request. Trio has no detached tasks, so the cancel
    aborts that fetch and the next waiter fetches: two token requests.
    """
    gate = env.gate()
    env.auth_server.gate, env.auth_server.gate_first_only = gate, True
    env.make()
    results: list[httpx.Response] = []

    async def waiter() -> None:
        results.append(await env.request())

    holder_scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_run_in, holder_scope, env)
        await gate.entered()  # the holder's fetch is in flight
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()  # the waiter waits for that fetch
        holder_scope.cancel()
        await anyio.wait_all_tasks_blocked()
        gate.open()
    assert holder_scope.cancelled_caught
    assert [r.status_code for r in results] == [200]
    if env.flavor == "asyncio":
        assert env.auth_server.count == 1
        assert env.api.tokens() == ["t1"]
    else:
        assert env.auth_server.count == 2
        assert env.api.tokens() == ["t2"]


async def _run_in(scope: anyio.CancelScope, env: Env) -> None:
    with scope:
        await env.request()


def test_one_auth_across_two_event_loops() -> None:
    """The same TokenAuth works in two successive asyncio.run() loops, with contention."""
    clock = [0.0]

    class Provider:
        calls = 0

        async def afetch_token(self) -> Token:
            Provider.calls += 1
            await asyncio.sleep(0)  # let the other tasks pile up on the renewal lock
            return Token(f"loop-{Provider.calls}", expires_at=clock[0] + 10)

    auth = TokenAuth(Provider(), clock=lambda: clock[0])
    api = httpx.MockTransport(lambda r: httpx.Response(200, text=r.headers["authorization"]))

    async def main() -> set[str]:
        async with httpx.AsyncClient(auth=auth, transport=api) as client:
            responses = await asyncio.gather(*(client.get(API_URL) for _ in range(20)))
            return {r.text for r in responses}

    assert asyncio.run(main()) == {"Bearer loop-1"}
    clock[0] += 60  # expired: the second loop must take the renewal lock again
    assert asyncio.run(main()) == {"Bearer loop-2"}
    assert Provider.calls == 2


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_one_auth_shared_by_sync_and_async_clients(flavor: str) -> None:
    """One TokenAuth on an httpx.Client and an httpx.AsyncClient shares one token."""
    env = Env("sync")
    auth = TokenAuth(
        env.provider(),
        token_client=httpx.Client(transport=httpx.MockTransport(env.auth_server.handler)),
        async_token_client=httpx.AsyncClient(
            transport=httpx.MockTransport(env.auth_server.ahandler)
        ),
    )
    env.api.accept = lambda token: token != "t1" or env.auth_server.count == 1
    sync_client = httpx.Client(auth=auth, transport=httpx.MockTransport(env.api.handler))
    async with httpx.AsyncClient(
        auth=auth, transport=httpx.MockTransport(env.api.ahandler)
    ) as async_client:
        assert (await anyio.to_thread.run_sync(sync_client.get, API_URL)).status_code == 200
        assert (await async_client.get(API_URL)).status_code == 200
        assert env.auth_server.count == 1  # the async client reused the sync client's token
        env.api.accept = lambda token: token != "t1"  # t1 revoked
        assert (await async_client.get(API_URL)).status_code == 200
        assert (await anyio.to_thread.run_sync(sync_client.get, API_URL)).status_code == 200
    sync_client.close()
    assert env.auth_server.count == 2
    assert env.api.tokens() == ["t1", "t1", "t1", "t2", "t2"]


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_threads_wait_for_a_fetch_running_on_the_event_loop(env: Env) -> None:
    """A task is fetching; 16 threads on a sync client of the same TokenAuth wait for it."""
    gate = env.gate(target=16)  # the task's fetch is held until every thread has started
    env.auth_server.gate = gate
    auth = env.make()
    sync_client = env.http.Client(auth=auth, transport=env.transport(env.api.handler))

    def in_thread() -> int:
        gate.arrive()
        return int(sync_client.get(API_URL).status_code)

    statuses: list[int] = []

    async def thread() -> None:
        statuses.append(await anyio.to_thread.run_sync(in_thread, limiter=env.limiter))

    async def task() -> None:
        statuses.append((await env.request()).status_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(task)
        await gate.entered()  # the task is fetching, held at the token endpoint
        for _ in range(16):
            tg.start_soon(thread)
    sync_client.close()
    assert statuses == [200] * 17
    assert env.auth_server.count == 1
    assert env.api.tokens() == ["t1"] * 17


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_sync_call_on_the_loop_thread_does_not_deadlock(env: Env) -> None:
    """A blocking client call made on the event loop's own thread while a task fetches
    does not wait for that task (which it is holding up): it fetches for itself."""
    gate = env.gate()
    env.auth_server.gate, env.auth_server.gate_first_only = gate, True
    auth = env.make()
    sync_client = env.http.Client(auth=auth, transport=env.transport(env.api.handler))
    async with anyio.create_task_group() as tg:
        tg.start_soon(env.request)
        await gate.entered()  # a task on this loop is fetching (held)
        response = sync_client.get(API_URL)  # blocks this loop's thread: must not wait
        assert response.status_code == 200
        gate.open()
    sync_client.close()
    assert env.auth_server.count == 2


# -- found in review: each proved first, then fixed --------------------------------------


async def test_early_renewal_makes_one_attempt_not_a_retry_cycle(env: Env) -> None:
    """While the token is valid, the renewing caller waits for one attempt only."""
    env.make(retry=RetryPolicy(attempts=5, backoff=0.001))
    await env.request()
    env.auth_server.reply = status(503)
    env.clock.advance(3600 - 30)
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 2  # one attempt, not five


async def test_errors_in_the_cool_down_are_fresh_copies(env: Env) -> None:
    """Each caller in the cool-down gets its own copy of the error, not one shared object."""
    env.auth_server.reply = status(400, json={"error": "invalid_client"})
    env.make()
    caught: list[BaseException] = []
    for _ in range(3):
        with pytest.raises(TokenEndpointError) as info:
            await env.request()
        caught.append(info.value)
    assert env.auth_server.count == 1
    assert len({id(e) for e in caught}) == 3
    assert {(type(e), str(e), e.status_code) for e in caught} == {  # type: ignore[attr-defined]
        (type(caught[0]), str(caught[0]), 400)
    }
    assert caught[2].__traceback__ is not None
    assert len(list(_frames(caught[2].__traceback__))) < 40  # tracebacks do not pile up


def _frames(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


async def test_failed_renewal_after_401_with_a_streaming_body_returns_the_401(env: Env) -> None:
    """A one-shot body cannot be replayed; if renewing fails too, the caller still gets the 401."""
    env.make(retry=RetryPolicy.off())
    await env.request()
    env.api.accept = lambda token: token != "t1"
    env.auth_server.reply = status(400, json={"error": "invalid_client"})
    response = await env.request("POST", content=body_of(env.flavor, [b"once"]))
    assert response.status_code == 401


async def test_a_non_http_error_from_the_token_client_is_a_token_error(env: Env) -> None:
    """Whatever the token client raises (here: it was closed) reaches callers as a TokenError."""
    token_client = env.http.Client()
    async_token_client = env.http.AsyncClient()
    token_client.close()
    await async_token_client.aclose()
    env.make(env.provider(), token_client=token_client, async_token_client=async_token_client)
    with pytest.raises(TokenTransportError) as info:
        await env.request()
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_retry_deadline_bounds_an_attempt_that_hangs(env: Env, silent_server: str) -> None:
    """A token endpoint that never answers is given up on at the retry deadline (0.3 s here),
    not after the token client's own 30-second timeout."""
    env.make(
        ClientCredentials(silent_server, client_id="c", client_secret=CLIENT_SECRET),
        token_client=env.http.Client(timeout=30),
        async_token_client=env.http.AsyncClient(timeout=30),
        retry=RetryPolicy(attempts=3, backoff=0.001, deadline=0.3),
    )
    with pytest.raises(TokenTransportError, match="retry deadline"):
        await env.request()


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_sync_callers_holding_every_worker_thread_do_not_starve_the_fetch(
    env: Env,
) -> None:
    """Sync callers filling anyio's thread pool while a task's fetch needs a worker thread
    (a sync-only provider) do not deadlock it: the fetch uses a thread of its own."""

    class SyncProvider:
        calls = 0

        def fetch_token(self) -> Token:
            SyncProvider.calls += 1
            return Token("from-a-private-thread")

    auth = env.make(SyncProvider())
    sync_client = env.http.Client(auth=auth, transport=env.transport(env.api.handler))
    threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
    go = threading.Event()
    statuses: list[int] = []

    def blocking_call() -> int:
        go.wait(WAIT)  # hold a pool thread until the task's fetch is under way
        return int(sync_client.get(API_URL).status_code)

    async def sync_caller() -> None:
        # abandon_on_cancel: were the deadlock back, the guard below could still end the test
        statuses.append(await anyio.to_thread.run_sync(blocking_call, abandon_on_cancel=True))

    async def task_caller() -> None:
        statuses.append((await env.request()).status_code)

    with anyio.fail_after(WAIT):  # a deadlock guard, not a timing
        async with anyio.create_task_group() as tg:
            for _ in range(threads):
                tg.start_soon(sync_caller)  # every pool thread, held at `go`
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(task_caller)  # boards the fetch; needs a thread for the provider
            await anyio.wait_all_tasks_blocked()
            go.set()  # the sync callers now find that fetch in flight and wait for it
    sync_client.close()
    assert statuses == [200] * (threads + 1)
    assert SyncProvider.calls == 1


# -- observability -------------------------------------------------------------------------


async def test_log_events_are_structured_and_secret_free(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Fetch, failed renewal, retry, replay and refusal are logged with fields, never secrets."""
    env.auth_server.reply = lambda request, n: httpx.Response(
        200, json=token_json(f"secret-token-{n}")
    )
    env.make(retry=FAST)
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        await env.request()  # token_fetched t1
        env.api.accept = lambda token: token != "secret-token-1"
        await env.request()  # replay with secret-token-2
        env.auth_server.reply = failing_then_ok(10**6)
        env.clock.advance(3600 - 30)
        await env.request()  # early renewal fails (one attempt), secret-token-2 kept
        env.api.reply = lambda request: httpx.Response(
            401, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
        )
        await env.request()  # replay refused
        env.clock.advance(60)  # expired: now a token is needed, with full retries
        with pytest.raises(UnexpectedTokenResponseError):
            await env.request()
    records = [r for r in caplog.records if r.name == "httpx_tokenauth"]
    events = [getattr(r, "event", None) for r in records]
    for expected in (
        "token_fetched",
        "replay",
        "token_request_retry",
        "renewal_failed",
        "replay_refused",
    ):
        assert expected in events, (expected, events)
    fetched = next(r for r in records if getattr(r, "event", None) == "token_fetched")
    assert fetched.token_endpoint == TOKEN_URL
    assert fetched.host == "as.example"
    assert fetched.expires_in == 3600
    retry = next(r for r in records if getattr(r, "event", None) == "token_request_retry")
    assert retry.attempt == 1
    assert retry.outcome == "UnexpectedTokenResponseError"
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        assert "secret-token-" not in text, text
        assert CLIENT_SECRET not in text, text
