"""What every benchmark shares: the mock endpoints, the peers, statistics and result rows.

Nothing here sends a byte over a network: the token endpoint and the API are
``httpx.MockTransport`` handlers in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import httpx

TOKEN_URL = "https://as.example/oauth2/token"
TOKEN_PATH = "/oauth2/token"
API_URL = "https://api.example/things"
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret-0123456789abcdef"
CHALLENGE = 'Bearer error="invalid_token"'


# -- results --------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the summary table. Cells are already formatted text."""

    key: str
    measurement: str
    ours: str
    baseline: str = "—"
    authlib: str = "—"
    httpx_auth: str = "—"
    target: str = "—"
    result: str = "—"  # "met", "MISSED", or "—" where there is no target


@dataclass
class Section:
    """What one benchmark module returns: summary rows and a details table."""

    title: str
    rows: list[Row]
    details_header: list[str] = field(default_factory=list)
    details: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers, for --json


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- statistics -----------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def iqr(values: Sequence[float]) -> tuple[float, float]:
    return quantile(values, 0.25), quantile(values, 0.75)


def rotations(items: Sequence[str], rounds: int) -> list[list[str]]:
    """A different starting variant each round, so no variant always runs first or last."""
    n = len(items)
    return [[items[(r + i) % n] for i in range(n)] for r in range(rounds)]


# -- a clock the benchmark moves -----------------------------------------------------------


class FakeClock:
    """Injected as TokenAuth(clock=...): expiry and renewal windows without waiting."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the mock token endpoint and API ------------------------------------------------------


def caller_id() -> object:
    """The task (inside an event loop) or else the thread making the current call."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task if task is not None else threading.get_ident()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def token_body(access_token: str, expires_in: int) -> dict[str, Any]:
    return {"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in}


def fast_handler(request: httpx.Request) -> httpx.Response:
    """The overhead benchmark's transport: a token at the token path, 200 everywhere else."""
    if request.url.path == TOKEN_PATH:
        return httpx.Response(200, json=token_body("t1", 3600))
    return httpx.Response(200, content=b"ok")


class Endpoint:
    """A token endpoint and an API behind one handler, with counters and holds.

    The token endpoint issues t1, t2, ... and holds each answer ``hold``
    seconds (``time.sleep`` in the sync handler, ``asyncio.sleep`` in the
    async one), so a herd really overlaps. The API answers 401 to tokens in
    ``reject``; with ``reject_gate`` set, each rejection waits until that
    many requests have been rejected, so a 401 storm arrives all at once.
    """

    def __init__(
        self, *, hold: float = 0.0, expires_in: int = 3600, api_yield: bool = False
    ) -> None:
        self.hold = hold
        #: The API yields once per request (sleep(0)), as a real network wait
        #: would, so that concurrent callers interleave.
        self.api_yield = api_yield
        self.expires_in = expires_in
        self.token_requests = 0
        self.issued = 0  # never reset: token names stay unique (t1, t2, ...)
        self.api_requests = 0
        self.reject: set[str] = set()
        self.reject_gate: int | None = None
        self.rejected = 0
        #: (caller, start ns, end ns) of each token request.
        self.fetches: list[tuple[object, int, int]] = []
        #: Token requests made with a sync client on a thread running an event loop.
        self.loop_blocking_fetches = 0
        self._lock = threading.Lock()
        self._gate_t = threading.Event()
        self._gate_a: asyncio.Event | None = None

    def reset_counts(self) -> None:
        with self._lock:
            self.token_requests = 0
            self.api_requests = 0
            self.rejected = 0
            self.fetches.clear()
            self.loop_blocking_fetches = 0
            self._gate_t = threading.Event()
            self._gate_a = None

    # token endpoint

    def _issue(self) -> tuple[str, int]:
        with self._lock:
            self.token_requests += 1
            self.issued += 1
            return f"t{self.issued}", time.perf_counter_ns()

    def _token_response(self, name: str, start: int) -> httpx.Response:
        with self._lock:
            self.fetches.append((caller_id(), start, time.perf_counter_ns()))
        return httpx.Response(200, json=token_body(name, self.expires_in))

    # API

    def _api(self, request: httpx.Request) -> tuple[httpx.Response, bool]:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            self.api_requests += 1
            if token and token not in self.reject:
                return httpx.Response(200, content=b"ok"), False
            self.rejected += 1
            reached = self.reject_gate is not None and self.rejected >= self.reject_gate
        if reached:
            self._gate_t.set()
            if self._gate_a is not None:
                self._gate_a.set()
        return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE}), True

    def sync_handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            name, start = self._issue()
            if _loop_running():
                with self._lock:
                    self.loop_blocking_fetches += 1
            if self.hold:
                time.sleep(self.hold)
            return self._token_response(name, start)
        if self.api_yield:
            time.sleep(0)
        response, rejected = self._api(request)
        if rejected and self.reject_gate is not None:
            self._gate_t.wait(10.0)  # a deadlock guard, not a timing
        return response

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            name, start = self._issue()
            if self.hold:
                await asyncio.sleep(self.hold)
            return self._token_response(name, start)
        if self.api_yield:
            await asyncio.sleep(0)
        if self._gate_a is None:
            self._gate_a = asyncio.Event()
            if self.reject_gate is not None and self.rejected >= self.reject_gate:
                self._gate_a.set()
        response, rejected = self._api(request)
        if rejected and self.reject_gate is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._gate_a.wait(), 10.0)
        return response


class StaticHeader(httpx.Auth):
    """The baseline: the least an httpx.Auth can do, the canonical way (``auth_flow``)."""

    def __init__(self, value: str = "Bearer t1") -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = self._value
        yield request


# -- the peers ------------------------------------------------------------------------------


@dataclass
class Peers:
    """The peer libraries, when installed: modules, versions, or why they are missing."""

    authlib: ModuleType | None
    authlib_version: str | None
    authlib_error: str | None
    httpx_auth: ModuleType | None
    httpx_auth_version: str | None
    httpx_auth_error: str | None

    def missing(self, name: str) -> str | None:
        """None if the peer is usable, else the text its cells show."""
        if name == "authlib":
            return None if self.authlib is not None else self.authlib_error
        return None if self.httpx_auth is not None else self.httpx_auth_error


_PEERS: Peers | None = None


def _import_authlib() -> tuple[ModuleType | None, str | None, str | None]:
    try:
        version = metadata.version("authlib")
        deprecate = importlib.import_module("authlib.deprecate")
    except ImportError:
        return None, None, "not installed"
    warnings.filterwarnings("ignore", category=deprecate.AuthlibDeprecationWarning)
    # authlib >= 1.9.7 builds its httpx clients on httpx2 when httpx2 is importable,
    # and on httpx otherwise. The comparison is only fair on one HTTP stack, with one
    # MockTransport and one baseline, so authlib is imported with httpx2 hidden.
    hidden = "httpx2" not in sys.modules
    if hidden:
        sys.modules["httpx2"] = None  # type: ignore[assignment]
    try:
        module = importlib.import_module("authlib.integrations.httpx_client")
    except ImportError:
        return None, version, "not installed (authlib.integrations.httpx_client)"
    finally:
        if hidden:
            del sys.modules["httpx2"]
    if not issubclass(module.OAuth2Client, httpx.Client):
        return None, version, "n/a (its client is not an httpx.Client here)"
    return module, version, None


def _import_httpx_auth() -> tuple[ModuleType | None, str | None, str | None]:
    try:
        return importlib.import_module("httpx_auth"), metadata.version("httpx-auth"), None
    except ImportError:
        return None, None, "not installed"


def peers() -> Peers:
    """Import the peers once. authlib is made to run on httpx (not httpx2), see above."""
    global _PEERS  # noqa: PLW0603  (a process-wide memo of an import)
    if _PEERS is None:
        _PEERS = Peers(*_import_authlib(), *_import_httpx_auth())
    return _PEERS


def authlib_module() -> ModuleType:
    """authlib.integrations.httpx_client (only called where authlib is installed)."""
    mod = peers().authlib
    if mod is None:
        raise RuntimeError("authlib is not installed")
    return mod


def httpx_auth_module() -> ModuleType:
    """httpx_auth (only called where httpx-auth is installed)."""
    mod = peers().httpx_auth
    if mod is None:
        raise RuntimeError("httpx-auth is not installed")
    return mod


def clear_httpx_auth_cache() -> None:
    """httpx-auth keeps tokens in one process-global cache (OAuth2.token_cache): empty it."""
    mod = peers().httpx_auth
    if mod is not None:
        mod.OAuth2.token_cache.clear()


def httpx_auth_set_expiry(auth: Any, expiry: float) -> None:
    """Move httpx-auth's cached token's expiry (its cache holds (token, expiry, refresh))."""
    cache = httpx_auth_module().OAuth2.token_cache
    with cache._forbid_concurrent_cache_access:
        entry = cache.tokens[auth.state]
        cache.tokens[auth.state] = (entry[0], expiry, *entry[2:])
