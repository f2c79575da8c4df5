"""Shared test harness: a fake token endpoint, a fake API, and one client driver per flavor.

Every TokenAuth test runs as one async test body against three flavors:
``sync`` (httpx.Client, each call in a worker thread so threads really run
concurrently), ``asyncio`` and ``trio`` (httpx.AsyncClient), and against two
HTTP libraries: httpx and httpx2 (``lib``). Test handlers are written with
httpx types; for httpx2 the harness translates their responses and errors at
the transport boundary, so one test body serves both. The fake servers
are httpx.MockTransport handlers; concurrency is made real with gates that
hold a handler until the expected number of callers has arrived, never with
sleeps.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
import pytest
from hypothesis import settings

from httpx_tokenauth import ClientCredentials, RetryPolicy, TokenAuth

TOKEN_URL = "https://as.example/token"
API_URL = "https://api.example/things"
CLIENT_ID = "svc-client"
CLIENT_SECRET = "s3cr3t-client-secret-value"
# Fuzzing: thousands of examples in CI; HYPOTHESIS_PROFILE=deep for a long run.
settings.register_profile("ci", max_examples=2000, deadline=None, database=None)
settings.register_profile("deep", max_examples=50_000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
#: Examples for one fuzz test (tests that pay for a client per example take a share).
FUZZ_EXAMPLES: int = settings.default.max_examples

#: The default policy's shape with millisecond backoff, so retrying tests stay fast.
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.004)
WAIT = 10.0  # seconds a gate waits before the test fails (a deadlock guard, not a timing)


def clean_cli_environment(
    monkeypatch: pytest.MonkeyPatch, *, token_url: str, ca_file: str, client_id: str | None = None
) -> None:
    """No HTTPX_TOKENAUTH_* variable but those pointing the CLI at the test servers."""
    for name in list(os.environ):
        if name.startswith("HTTPX_TOKENAUTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPX_TOKENAUTH_TOKEN_URL", token_url)
    if client_id is not None:
        monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_ID", client_id)
    monkeypatch.setenv("HTTPX_TOKENAUTH_CA_FILE", ca_file)


def answer_from_fork(child: Callable[[], bytes]) -> bytes:
    """Fork: the child runs ``child`` and sends back what it returns (or the name of what it
    raised); the parent gets that, or b"" if nothing came within WAIT (the child is then
    killed). The child never returns into the test."""
    import select
    import warnings

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read_end)
            try:
                os.write(write_end, child())
            except BaseException as exc:
                os.write(write_end, type(exc).__name__.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    answer = b""
    try:
        ready, _, _ = select.select([read_end], [], [], WAIT)
        answer = os.read(read_end, 4096) if ready else b""
    finally:
        os.close(read_end)
        if not answer:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    return answer


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Gate:
    """Holds callers until it is opened, or until ``target`` callers have arrived.

    ``arrive()`` counts a caller; ``wait()`` / ``await await_()`` block until open.
    ``entered`` tells the test that some handler is now waiting at the gate.
    Thread-safe for the sync flavor; loop-safe for the async ones.
    """

    def __init__(self, flavor: str, target: int | None = None) -> None:
        self.flavor = flavor
        self.target = target
        self.arrived = 0
        self._lock = threading.Lock()
        self._open_t = threading.Event()
        self._entered_t = threading.Event()
        self._loop_thread: int | None = None
        self._open_a: anyio.Event | None = None
        self._entered_a: anyio.Event | None = None

    def _events(self) -> tuple[anyio.Event, anyio.Event]:
        if self._open_a is None or self._entered_a is None:
            self._open_a, self._entered_a = anyio.Event(), anyio.Event()
            self._loop_thread = threading.get_ident()
        return self._open_a, self._entered_a

    def arrive(self) -> None:
        with self._lock:
            self.arrived += 1
            reached = self.target is not None and self.arrived >= self.target
        if reached:
            self.open()

    def open(self) -> None:
        if self.flavor == "sync":
            self._open_t.set()
            return
        opened = self._events()[0]
        if threading.get_ident() == self._loop_thread:
            opened.set()
        else:  # a worker thread arrived last: wake the loop through anyio's portal
            anyio.from_thread.run_sync(opened.set)

    def wait(self) -> None:
        self._entered_t.set()
        if not self._open_t.wait(WAIT):
            raise AssertionError("gate never opened")

    async def await_(self) -> None:
        opened, entered = self._events()
        entered.set()
        with anyio.fail_after(WAIT):
            await opened.wait()

    async def entered(self) -> None:
        """Wait until a handler is held at the gate."""
        if self.flavor == "sync":
            ok = await anyio.to_thread.run_sync(self._entered_t.wait, WAIT)
            assert ok, "no handler reached the gate"
        else:
            with anyio.fail_after(WAIT):
                await self._events()[1].wait()


def token_json(access_token: str, expires_in: Any = 3600, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", **extra}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return body


@dataclass
class FakeAuthServer:
    """A token endpoint. Issues t1, t2, ... unless ``reply`` says otherwise; records requests."""

    flavor: str
    expires_in: Any = 3600
    reply: Callable[[httpx.Request, int], httpx.Response] | None = None
    gate: Gate | None = None
    gate_first_only: bool = False  # hold only the first token request at the gate
    requests: list[httpx.Request] = field(default_factory=list)
    forms: list[dict[str, list[str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def count(self) -> int:
        return len(self.requests)

    def _record(self, request: httpx.Request) -> int:
        from urllib.parse import parse_qs

        with self._lock:
            self.requests.append(request)
            self.forms.append(parse_qs(request.content.decode()))
            return len(self.requests)

    def _answer(self, request: httpx.Request, n: int) -> httpx.Response:
        if self.reply is not None:
            return self.reply(request, n)
        return httpx.Response(200, json=token_json(f"t{n}", self.expires_in))

    def handler(self, request: httpx.Request) -> httpx.Response:
        n = self._record(request)
        if self.gate is not None and (n == 1 or not self.gate_first_only):
            self.gate.wait()
        return self._answer(request, n)

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        n = self._record(request)
        if self.gate is not None and (n == 1 or not self.gate_first_only):
            await self.gate.await_()
        return self._answer(request, n)


@dataclass
class FakeAPI:
    """A resource server. Accepts tokens ``accept`` approves; else 401 with ``challenge``."""

    flavor: str
    accept: Callable[[str], bool] = lambda token: True
    challenge: str | None = 'Bearer error="invalid_token"'
    reply: Callable[[httpx.Request], httpx.Response] | None = None
    reject_gate: Gate | None = None
    hold_rejections: int | None = None  # hold only the first N rejections (None: all)
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tokens(self) -> list[str | None]:
        """The bearer token each request carried when it arrived, in order of arrival.

        (Recorded on arrival: httpx replays the same Request object, so its
        headers later show the replay's token.)
        """
        return [v.removeprefix("Bearer ") if v else None for v in self.authorization]

    def _hold(self) -> bool:
        """Whether this rejection waits at reject_gate."""
        with self._lock:
            if self.reject_gate is None:
                return False
            if self.hold_rejections is None:
                return True
            self.hold_rejections -= 1
            return self.hold_rejections >= 0

    def _answer(self, request: httpx.Request) -> tuple[httpx.Response, bool]:
        with self._lock:
            self.requests.append(request)
            self.authorization.append(request.headers.get("authorization"))
        if self.reply is not None:
            return self.reply(request), False
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        if token and self.accept(token):
            return httpx.Response(200, json={"token": token}), False
        headers = {"WWW-Authenticate": self.challenge} if self.challenge else {}
        return httpx.Response(401, headers=headers, json={"detail": "no entry"}), True

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        response, rejected = self._answer(request)
        with self._lock:
            self.bodies.append(body)
        if rejected and self._hold():
            assert self.reject_gate is not None
            self.reject_gate.arrive()
            self.reject_gate.wait()
        return response

    async def ahandler(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        response, rejected = self._answer(request)
        with self._lock:
            self.bodies.append(body)
        if rejected and self._hold():
            assert self.reject_gate is not None
            self.reject_gate.arrive()
            await self.reject_gate.await_()
        return response


class Env:
    """One flavor's client, fake servers and TokenAuth, behind one async interface."""

    def __init__(self, flavor: str, lib: str = "httpx") -> None:
        self.flavor = flavor
        self.lib = lib
        self.http: Any = importlib.import_module(lib)
        self.auth_cls: Any = TokenAuth if lib == "httpx" else _httpx2_token_auth()
        self.clock = Clock()
        self.auth_server = FakeAuthServer(flavor)
        self.api = FakeAPI(flavor)
        self.limiter = anyio.CapacityLimiter(256)
        self._closers: list[Callable[[], Awaitable[None] | None]] = []
        self.auth: TokenAuth | None = None
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None

    @property
    def is_sync(self) -> bool:
        return self.flavor == "sync"

    def gate(self, target: int | None = None) -> Gate:
        return Gate(self.flavor, target)

    def provider(self, **kwargs: Any) -> ClientCredentials:
        kwargs.setdefault("client_id", CLIENT_ID)
        kwargs.setdefault("client_secret", CLIENT_SECRET)
        return ClientCredentials(TOKEN_URL, **kwargs)

    def transport(self, handler: Callable[[Any], Any]) -> Any:
        """A MockTransport of this lib around a handler written with httpx types."""
        if self.lib == "httpx":
            return httpx.MockTransport(handler)
        http = self.http

        def translate(response: httpx.Response) -> Any:
            if not isinstance(response, httpx.Response):
                return response
            if hasattr(response, "_content"):
                return http.Response(
                    response.status_code, headers=response.headers.raw, content=response.content
                )
            inner = response.stream

            class Stream(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[misc,name-defined]
                def __iter__(self) -> Iterator[bytes]:
                    yield from inner  # type: ignore[misc]

                async def __aiter__(self) -> AsyncIterator[bytes]:
                    async for chunk in inner:  # type: ignore[union-attr]
                        yield chunk

            return http.Response(
                response.status_code, headers=response.headers.raw, stream=Stream()
            )

        def error(exc: httpx.HTTPError, request: Any) -> Exception:
            return getattr(http, type(exc).__name__)(str(exc), request=request)

        if inspect.iscoroutinefunction(handler):

            async def ahandle(request: Any) -> Any:
                try:
                    return translate(await handler(request))
                except httpx.HTTPError as exc:
                    raise error(exc, request) from exc

            return http.MockTransport(ahandle)

        def handle(request: Any) -> Any:
            try:
                return translate(handler(request))
            except httpx.HTTPError as exc:
                raise error(exc, request) from exc

        return http.MockTransport(handle)

    def make(self, provider: Any = None, *, event_hooks: Any = None, **kwargs: Any) -> TokenAuth:
        """Build the TokenAuth and the API client of this flavor."""
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("retry", FAST_RETRY)
        if provider is None:
            provider = self.provider()
            kwargs.setdefault(
                "token_client",
                self.http.Client(transport=self.transport(self.auth_server.handler)),
            )
            kwargs.setdefault(
                "async_token_client",
                self.http.AsyncClient(transport=self.transport(self.auth_server.ahandler)),
            )
        self.auth = self.auth_cls(provider, **kwargs)
        hooks = event_hooks or {}
        if self.is_sync:
            self._client = self.http.Client(
                auth=self.auth,
                transport=self.transport(self.api.handler),
                event_hooks=hooks,
            )
        else:
            self._aclient = self.http.AsyncClient(
                auth=self.auth,
                transport=self.transport(self.api.ahandler),
                event_hooks=hooks,
            )
        return self.auth

    async def request(
        self,
        method: str = "GET",
        url: str = API_URL,
        *,
        before: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request through the client; ``before`` runs in the calling thread or task."""
        if self.auth is None:
            self.make()
        if self.is_sync:
            assert self._client is not None

            def call() -> httpx.Response:
                if before:
                    before()
                assert self._client is not None
                return self._client.request(method, url, **kwargs)

            return await anyio.to_thread.run_sync(call, limiter=self.limiter)
        assert self._aclient is not None
        if before:
            before()
        return await self._aclient.request(method, url, **kwargs)

    async def gather(self, n: int, **kwargs: Any) -> list[httpx.Response]:
        """``n`` concurrent requests (threads for sync, tasks for async); all responses."""
        results: list[httpx.Response | None] = [None] * n

        async def one(i: int) -> None:
            results[i] = await self.request(**kwargs)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._aclient is not None:
            await self._aclient.aclose()
        if self.auth is not None:
            self.auth.close()


@pytest.fixture(params=["sync", "asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# httpx2 needs Python 3.11+; where it cannot be installed the suite runs on httpx
# alone. CI installs it, and there its absence is an error, not a quiet skip.
LIBS = ["httpx"] + (["httpx2"] if importlib.util.find_spec("httpx2") else [])
if os.environ.get("CI") and "httpx2" not in LIBS and sys.version_info >= (3, 11):
    raise RuntimeError("CI must test httpx2: install the project with its test extra")


@pytest.fixture(params=LIBS)
def lib(request: pytest.FixtureRequest) -> str:
    """The HTTP library under test: httpx, or httpx2 through httpx_tokenauth.httpx2."""
    return str(request.param)


def _httpx2_token_auth() -> Any:
    from httpx_tokenauth.httpx2 import TokenAuth as Httpx2TokenAuth

    return Httpx2TokenAuth


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return "trio" if flavor == "trio" else "asyncio"


@pytest.fixture
async def env(flavor: str, lib: str) -> AsyncIterator[Env]:
    e = Env(flavor, lib)
    try:
        yield e
    finally:
        await e.aclose()


def body_of(flavor: str, chunks: list[bytes]) -> Any:
    """A one-shot streaming body for the flavor: a generator or an async generator."""
    if flavor == "sync":

        def gen() -> Iterator[bytes]:
            yield from chunks

        return gen()

    async def agen() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return agen()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()
