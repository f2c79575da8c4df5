"""TokenAuth: the httpx.Auth, with its sync and async drivers.

The drivers own the locks and the token endpoint I/O; every decision (is the
token fresh, does a 401 call for a new token, what the token response means)
is the core's. ``sync_auth_flow`` and ``async_auth_flow`` are mirror images,
as are ``_sync_acquire``/``_async_acquire`` and ``_sync_fetch``/``_async_fetch``.

The drivers live in TokenAuthBase and speak to the HTTP library through an
HTTPLib record; ``TokenAuth`` here binds them to httpx, and
``httpx_tokenauth.httpx2.TokenAuth`` binds the same code to httpx2.
"""

from __future__ import annotations

import enum
import logging
import math
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn
from urllib.parse import urlsplit

import httpx

from ._cache import Need, TokenCache
from ._challenge import decide_after_401
from ._errors import (
    ConfigurationError,
    InsecureTransportError,
    ProviderError,
    TokenError,
    TokenTransportError,
)
from ._providers import AsyncTokenProvider, Grant, TokenProvider
from ._request import TokenRequest
from ._retry import RetryPolicy, RetryState
from ._token import RawResponse, Token
from ._transport import HTTPX, HTTPLib, replayable, send_async, send_sync
from ._url import check_flag, is_loopback_host, redacted_url

if TYPE_CHECKING:
    import asyncio

    import anyio

__all__ = ["TokenAuth", "TokenAuthBase"]

logger = logging.getLogger("httpx_tokenauth")

Provider = Grant | TokenProvider | AsyncTokenProvider

#: Three attempts, 0.5 s then 1 s (upper bounds, jittered), 30 s deadline.
DEFAULT_RETRY = RetryPolicy()


class _After(enum.Enum):
    DONE = "done"  # hand the response back
    RENEW = "renew"  # renew the token, hand the 401 back (body cannot be resent)
    REPLAY = "replay"  # renew the token and send the request once more


class TokenAuthBase:
    """The drivers, for whichever HTTP library ``_lib`` names. See TokenAuth."""

    _lib: ClassVar[HTTPLib]

    def __init__(
        self,
        provider: Provider,
        *,
        leeway: float = 60.0,
        default_lifetime: float | None = None,
        token_client: Any = None,
        async_token_client: Any = None,
        allow_insecure_http: bool = False,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (
            isinstance(provider, Grant)
            or callable(getattr(provider, "fetch_token", None))
            or callable(getattr(provider, "afetch_token", None))
        ):
            raise ConfigurationError(
                "provider must be ClientCredentials(...), JWTBearerGrant(...), or an object "
                f"with fetch_token() and/or async afetch_token(); got {type(provider).__name__}"
            )
        lib = self._lib.name
        if token_client is not None and not isinstance(token_client, self._lib.Client):
            raise ConfigurationError(
                f"token_client must be a {lib}.Client, got {_qualname(token_client)}; pass a "
                f"{lib}.AsyncClient as async_token_client="
            )
        if async_token_client is not None and not isinstance(
            async_token_client, self._lib.AsyncClient
        ):
            raise ConfigurationError(
                f"async_token_client must be a {lib}.AsyncClient, got "
                f"{_qualname(async_token_client)}; pass a {lib}.Client as token_client="
            )
        sample = clock() if callable(clock) else None
        if (
            isinstance(sample, bool)
            or not isinstance(sample, (int, float))
            or not math.isfinite(sample)
        ):
            raise ConfigurationError(
                "clock must be a callable returning the time in seconds since the epoch as a "
                f"number, like time.time (it also dates JWT assertions); got {sample!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a RetryPolicy(...) or None, got {type(retry).__name__}"
            )
        self._provider = provider
        self._retry = retry or RetryPolicy.off()
        self._cache = TokenCache(
            leeway=leeway, default_lifetime=default_lifetime, cooldown=cooldown
        )
        self._leeway = leeway
        self._token_client = token_client
        self._async_token_client = async_token_client
        self._allow_insecure_http = check_flag("allow_insecure_http", allow_insecure_http)
        self._clock = clock
        self._flight: _Flight | None = None  # the fetch in progress, shared by both drivers
        self._flight_guard = threading.Lock()  # held for a few instructions, never across I/O
        self._own_client: Any = None
        self._own_client_lock = threading.Lock()
        self._ssl_context: Any = None
        if isinstance(provider, Grant):
            self._source = redacted_url(provider.token_url)
            self._host: str | None = urlsplit(provider.token_url).hostname
        else:
            self._source = type(provider).__name__
            self._host = None

    # -- the two drivers -------------------------------------------------------------

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any]:
        self._check_url(request)
        token = self._cache.fresh(self._clock()) or self._sync_acquire()
        request.headers["Authorization"] = token.authorization
        can_replay = replayable(self._lib, request)  # before sending: a transport may buffer it
        response = yield request
        if response.status_code != 401:
            return
        after = self._after_401(request, response, token, can_replay)
        if after is _After.DONE:
            return
        try:
            token = self._sync_acquire()
        except TokenError:
            if after is _After.REPLAY:
                raise
            return  # the body cannot be resent: the caller gets the 401 (renewal failed too)
        if after is _After.REPLAY:
            request.headers["Authorization"] = token.authorization
            yield request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        self._check_url(request)
        token = self._cache.fresh(self._clock()) or await self._async_acquire()
        request.headers["Authorization"] = token.authorization
        can_replay = replayable(self._lib, request)  # before sending: a transport may buffer it
        response = yield request
        if response.status_code != 401:
            return
        after = self._after_401(request, response, token, can_replay)
        if after is _After.DONE:
            return
        try:
            token = await self._async_acquire()
        except TokenError:
            if after is _After.REPLAY:
                raise
            return  # the body cannot be resent: the caller gets the 401 (renewal failed too)
        if after is _After.REPLAY:
            request.headers["Authorization"] = token.authorization
            yield request

    def auth_flow(self, request: Any) -> Generator[Any, Any]:
        raise RuntimeError(
            f"TokenAuth runs through {self._lib.name}.Client or {self._lib.name}.AsyncClient "
            "(sync_auth_flow / async_auth_flow); auth_flow is not used"
        )

    # -- the token itself, for other channels (gRPC, websockets, a CLI) -------------------

    def get_token(self) -> Token:
        """The current token, fetched or renewed first if needed, by the same rules.

        For channels other than httpx (gRPC metadata, a websocket header). If
        that channel rejects the token, pass it to ``invalidate`` and call
        ``get_token`` again.
        """
        return self._cache.fresh(self._clock()) or self._sync_acquire()

    async def aget_token(self) -> Token:
        """The async mirror of ``get_token``."""
        return self._cache.fresh(self._clock()) or await self._async_acquire()

    def invalidate(self, token: Token) -> None:
        """Drop ``token`` from the cache if it is still the current one (compare-and-invalidate).

        The next request or ``get_token`` fetches a new token; if another caller
        already replaced it, nothing happens.
        """
        with self._flight_guard:
            self._cache.invalidate(token)

    # -- acquiring a token: one fetch for many callers -------------------------------

    def _sync_acquire(self) -> Token:
        while True:
            need, current, error = self._cache.need(self._clock())
            if (token := _settled(need, current, error)) is not None:
                return token
            flight, mine = self._board()
            if mine:
                return self._sync_fly(flight, renewing=current is not None)
            if need is Need.OPTIONAL and current is not None:
                return current  # someone is renewing; the old token is still valid
            if flight.owner != threading.get_ident():
                flight.done.wait()  # a thread or an event loop elsewhere is fetching
                continue
            # The fetch belongs to an event loop running in this very thread, which
            # this blocking call is holding up: waiting would deadlock, so fetch too.
            return self._store(self._sync_fetch(renewing=False))

    async def _async_acquire(self) -> Token:
        while True:
            need, current, error = self._cache.need(self._clock())
            if (token := _settled(need, current, error)) is not None:
                return token
            flight, mine = self._board(_anyio().Event)
            if mine:
                fly = self._async_fly(flight, renewing=current is not None)
                if not _on_asyncio():
                    return await fly
                # On asyncio the fetch runs as a task of its own, so that a caller's
                # timeout or cancellation cannot abort the fetch others wait for.
                import asyncio  # noqa: PLC0415  (already loaded: we are running on it)

                task = asyncio.ensure_future(fly)
                task.add_done_callback(_retrieve)
                return await asyncio.shield(task)
            if need is Need.OPTIONAL and current is not None:
                return current  # someone is renewing; the old token is still valid
            await _await_landing(flight)

    def _sync_fly(self, flight: _Flight, *, renewing: bool) -> Token:
        """Fetch as the flight's owner, and always land the flight."""
        try:
            if (token := _settled(*self._cache.need(self._clock()))) is not None:
                return token  # renewed (or failed) just before we boarded
            try:
                token = self._sync_fetch(renewing=renewing)
            except TokenError as exc:
                return self._fetch_failed(exc)
            return self._store(token)
        finally:
            self._land(flight)

    async def _async_fly(self, flight: _Flight, *, renewing: bool) -> Token:
        """The async mirror of _sync_fly."""
        try:
            if (token := _settled(*self._cache.need(self._clock()))) is not None:
                return token  # renewed (or failed) just before we boarded
            try:
                token = await self._async_fetch(renewing=renewing)
            except TokenError as exc:
                return self._fetch_failed(exc)
            return self._store(token)
        finally:
            self._land(flight)

    def _store(self, token: Token) -> Token:
        with self._flight_guard:
            return self._cache.store(token, self._clock())

    def _board(self, event: Callable[[], anyio.Event] | None = None) -> tuple[_Flight, bool]:
        """Join the fetch in progress, or start one: (flight, whether it is ours to fly)."""
        with self._flight_guard:
            if self._flight is not None:
                return self._flight, False
            self._flight = _Flight(None if event is None else event())
            return self._flight, True

    def _land(self, flight: _Flight) -> None:
        """The fetch is over (done, failed or cancelled): let every waiter re-check the cache."""
        with self._flight_guard:
            if self._flight is flight:
                self._flight = None
        flight.done.set()
        if flight.landed is not None:
            flight.landed.set()

    # -- fetching a token: bounded retries at the token endpoint ------------------------

    def _sync_fetch(self, *, renewing: bool) -> Token:
        provider = self._provider
        if isinstance(provider, Grant):
            retry = self._retry_for(renewing).start(time.monotonic())
            while True:
                try:
                    request = provider.token_request(self._clock())
                    timeout, capped = self._deadline_timeout(retry)
                    try:
                        raw = send_sync(self._lib, self._sync_client(), request, timeout=timeout)
                    except TokenTransportError as exc:
                        if capped and isinstance(exc.__cause__, self._lib.TimeoutException):
                            raise self._deadline_error(retry) from exc
                        raise
                    token = provider.parse_response(raw, received_at=self._clock())
                    break
                except TokenError as exc:
                    if (delay := self._retry_delay(retry, exc)) is None:
                        raise
                time.sleep(delay)
        elif isinstance(provider, TokenProvider):
            token = self._call_provider(provider.fetch_token)
        else:
            raise ConfigurationError(
                f"{type(provider).__name__} has only async afetch_token(): use this TokenAuth "
                f"with {self._lib.name}.AsyncClient, or give the provider a fetch_token() method"
            )
        return self._fetched(token)

    async def _async_fetch(self, *, renewing: bool) -> Token:
        provider = self._provider
        if isinstance(provider, Grant):
            retry = self._retry_for(renewing).start(time.monotonic())
            while True:
                try:
                    request = provider.token_request(self._clock())
                    with _anyio().move_on_after(retry.remaining(time.monotonic())) as scope:
                        raw = await self._async_send(request)
                    if scope.cancelled_caught:
                        raise self._deadline_error(retry)
                    token = provider.parse_response(raw, received_at=self._clock())
                    break
                except TokenError as exc:
                    if (delay := self._retry_delay(retry, exc)) is None:
                        raise
                await _anyio().sleep(delay)
        elif isinstance(provider, AsyncTokenProvider):
            token = await self._acall_provider(provider.afetch_token)
        else:
            # A sync-only provider runs in a worker thread: the event loop never blocks.
            # The thread comes from a limiter of its own, not the shared pool, which
            # sync callers waiting for this very fetch may be holding.
            anyio = _anyio()
            token = await anyio.to_thread.run_sync(
                self._call_provider, provider.fetch_token, limiter=anyio.CapacityLimiter(1)
            )
        return self._fetched(token)

    def _retry_for(self, renewing: bool) -> RetryPolicy:
        """Full retries when callers need a token; one attempt while the current one is valid.

        An early renewal is made by a caller that could use the valid token: it
        should wait for one attempt at most, and try again later if it fails.
        """
        return _ONE_ATTEMPT if renewing else self._retry

    def _deadline_timeout(self, retry: RetryState) -> tuple[Any, bool]:
        """Per-phase timeouts no longer than what is left of the retry deadline.

        Returns them, and whether the deadline (rather than the client's own
        timeouts) is what limits this attempt.
        """
        remaining = retry.remaining(time.monotonic())
        if remaining <= 0:
            raise self._deadline_error(retry)
        configured = self._sync_client().timeout
        phases: dict[str, float] = {}
        capped = False
        for name in ("connect", "read", "write", "pool"):
            value = getattr(configured, name)
            if value is None or value > remaining:
                value, capped = remaining, True
            phases[name] = value
        return self._lib.Timeout(**phases), capped

    def _deadline_error(self, retry: RetryState) -> TokenTransportError:
        return TokenTransportError(
            f"token request to {self._source} did not finish within the retry deadline "
            f"({retry.policy.deadline:g} s)",
            token_url=self._source,
        )

    async def _async_send(self, request: TokenRequest) -> RawResponse:
        if self._async_token_client is not None:
            return await send_async(self._lib, self._async_token_client, request)
        async with await self._own_async_client() as own:
            return await send_async(self._lib, own, request)

    # -- what both drivers share ----------------------------------------------------------

    def _check_url(self, request: Any) -> None:
        """SPEC T3: bearer tokens go over TLS only; checked before any token is fetched."""
        url = request.url
        if (
            url.scheme != "https"
            and not self._allow_insecure_http
            and not is_loopback_host(url.host)
        ):
            raise InsecureTransportError(
                f"refusing to send a bearer token to {redacted_url(str(url))!r} over plain "
                "http (RFC 6750 §5.3): use https://, or TokenAuth(..., "
                "allow_insecure_http=True) if this really is a trusted network"
            )

    def _after_401(self, request: Any, response: Any, token: Token, can_replay: bool) -> _After:
        """SPEC U6-U8, plus compare-and-invalidate and the one-replay rule."""
        if response.request.headers.get("Authorization") != token.authorization:
            # A redirect took the request to another origin and httpx dropped our
            # header: this 401 is not about our token.
            logger.debug(
                "401 from %s is not about our token (it was not sent there)",
                redacted_url(str(response.request.url)),
                extra={"event": "replay_refused", "reason": "token not sent to that origin"},
            )
            return _After.DONE
        decision = decide_after_401(response.headers.get_list("www-authenticate"))
        if not decision.renew:
            logger.debug(
                "not replaying %s %s: %s",
                request.method,
                redacted_url(str(request.url)),
                decision.reason,
                extra={"event": "replay_refused", "reason": decision.reason},
            )
            return _After.DONE
        self._cache.invalidate(token)
        if not can_replay:
            logger.warning(
                "%s %s got %s; the token will be renewed, but the request body is a "
                "stream that cannot be sent twice, so the 401 is returned to the caller",
                request.method,
                redacted_url(str(request.url)),
                decision.reason,
                extra={"event": "replay_refused", "reason": "body cannot be resent"},
            )
            return _After.RENEW
        logger.debug(
            "replaying %s %s after %s",
            request.method,
            redacted_url(str(request.url)),
            decision.reason,
            extra={"event": "replay", "reason": decision.reason},
        )
        return _After.REPLAY

    def _fetch_failed(self, exc: TokenError) -> Token:
        """Keep a still-valid token through a failed renewal; otherwise raise (and cool down)."""
        if isinstance(exc, ConfigurationError):
            raise exc  # a usage error, not the server's: nothing to cool down from
        now = self._clock()
        with self._flight_guard:
            kept = self._cache.fetch_failed(exc, now)
        if kept is None:
            raise exc
        logger.warning(
            "early token renewal from %s failed (%s); the current token is still valid and "
            "stays in use",
            self._source,
            type(exc).__name__,
            extra={
                "event": "renewal_failed",
                "token_endpoint": self._source,
                "host": self._host,
                "outcome": type(exc).__name__,
                "expires_in": kept.expires_in(now),
            },
        )
        return kept

    def _retry_delay(self, retry: RetryState, exc: TokenError) -> float | None:
        """How long to wait before the next token request, or None to give up."""
        attempt = retry.attempt
        delay = retry.delay(exc, time.monotonic())
        if delay is not None:
            logger.info(
                "token request %d to %s failed (%s); retrying in %.2f s",
                attempt,
                self._source,
                type(exc).__name__,
                delay,
                extra={
                    "event": "token_request_retry",
                    "token_endpoint": self._source,
                    "host": self._host,
                    "attempt": attempt,
                    "outcome": type(exc).__name__,
                    "delay": delay,
                },
            )
        return delay

    def _fetched(self, token: Token) -> Token:
        expires_in = token.expires_in(self._clock())
        logger.debug(
            "token fetched from %s, expires in %s s",
            self._source,
            "unknown" if expires_in is None else round(expires_in),
            extra={
                "event": "token_fetched",
                "token_endpoint": self._source,
                "host": self._host,
                "expires_in": expires_in,
                "scope": " ".join(token.scope) if token.scope else None,
            },
        )
        return token

    def _call_provider(self, fetch: Callable[[], Token]) -> Token:
        try:
            token = fetch()
        except TokenError:
            raise
        except Exception as exc:
            _provider_failed(exc, self._source)
        return self._check_provided(token)

    async def _acall_provider(self, afetch: Callable[[], Any]) -> Token:
        try:
            token = await afetch()
        except TokenError:
            raise
        except Exception as exc:
            _provider_failed(exc, self._source)
        return self._check_provided(token)

    def _check_provided(self, token: object) -> Token:
        if not isinstance(token, Token):
            raise ProviderError(
                f"{self._source} returned {type(token).__name__}, not a Token: return "
                "Token(access_token, expires_at=...)"
            )
        return token

    def _sync_client(self) -> Any:
        if self._token_client is not None:
            return self._token_client
        with self._own_client_lock:
            if self._own_client is None:
                self._own_client = self._lib.new_client()
            return self._own_client

    async def _own_async_client(self) -> Any:
        # One short-lived client per fetch: fetches are rare, and a client tied to
        # no event loop cannot break when the loop changes. The TLS context (the
        # costly part, which reads the CA bundle from disk) is made once, off-loop.
        if self._ssl_context is None:
            anyio = _anyio()
            self._ssl_context = await anyio.to_thread.run_sync(
                self._lib.create_ssl_context, limiter=anyio.CapacityLimiter(1)
            )
        return self._lib.new_async_client(self._ssl_context)

    def close(self) -> None:
        """Close the token client TokenAuth created (a client you passed stays open)."""
        with self._own_client_lock:
            if self._own_client is not None:
                self._own_client.close()
                self._own_client = None

    def __repr__(self) -> str:
        return f"TokenAuth({self._provider!r}, leeway={self._leeway!r})"


class TokenAuth(TokenAuthBase, httpx.Auth):
    """Bearer tokens for ``httpx.Client`` and ``httpx.AsyncClient``, fetched and renewed for you.

    ``provider`` is a grant (ClientCredentials, JWTBearerGrant) or your own
    TokenProvider / AsyncTokenProvider. The first request fetches a token;
    later ones reuse it until ``leeway`` seconds before it expires (clamped to
    half its lifetime); a 401 that says the token is bad renews it and replays
    the request once.

    Token requests go over ``token_client`` / ``async_token_client`` when
    given (an httpx.Client / httpx.AsyncClient, for proxies, mTLS, custom CAs,
    tests), otherwise over a client of
    TokenAuth's own with certificate verification on, a 10-second timeout and
    no redirects. They never go through the client TokenAuth is attached to,
    so token responses never show up in its history or event hooks.

    Bearer tokens are only sent over https, to loopback hosts, or anywhere
    with ``allow_insecure_http=True`` (SPEC T3). ``clock`` returns the current
    time in seconds (``time.time`` by default).
    """

    _lib = HTTPX


def _qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"


class _Flight:
    """One token fetch in progress, which sync and async callers alike wait for.

    ``done`` wakes threads; ``landed`` (an anyio.Event, when the fetch runs on an
    event loop) wakes tasks on that same loop without a thread or a poll.
    """

    __slots__ = ("done", "landed", "owner")

    def __init__(self, landed: anyio.Event | None) -> None:
        self.done = threading.Event()
        self.landed = landed
        self.owner = threading.get_ident()


async def _await_landing(flight: _Flight) -> None:
    """Wait for a fetch to end, without blocking the event loop; cancellable."""
    if flight.landed is not None and flight.owner == threading.get_ident():
        await flight.landed.wait()  # a task on this loop is fetching
        return
    # A thread, or a loop in another thread, is fetching: its events cannot wake
    # this loop, so look at its threading.Event now and then.
    pause = 0.001
    while not flight.done.is_set():
        await _anyio().sleep(pause)
        pause = min(pause * 2, 0.02)


def _settled(need: Need, current: Token | None, error: TokenError | None) -> Token | None:
    """The token to use now, or raise the remembered error; None if a fetch is needed."""
    if need is Need.NONE:
        return current
    if need is Need.FAILED and error is not None:
        raise _fresh(error)
    return None


def _fresh(error: TokenError) -> TokenError:
    """A copy of a remembered error for one more caller.

    Raising the one stored object to every caller would pile all their
    tracebacks onto it, and show each caller the others' exception context.
    """
    copy = type(error).__new__(type(error))
    copy.args = error.args
    copy.__dict__.update(error.__dict__)
    copy.__cause__ = error.__cause__
    copy.__suppress_context__ = True
    return copy


def _anyio() -> ModuleType:
    """anyio, for the async driver only: sync users do not pay for importing it."""
    import anyio.to_thread  # noqa: PLC0415

    return anyio


def _on_asyncio() -> bool:
    """Whether this task runs on asyncio (else trio), without importing asyncio for it."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _retrieve(task: asyncio.Future[Token]) -> None:
    """Mark a detached fetch's outcome as seen: its callers may have gone away."""
    if not task.cancelled():
        task.exception()


_ONE_ATTEMPT = RetryPolicy.off()


def _provider_failed(exc: Exception, source: str) -> NoReturn:
    raise ProviderError(
        f"token provider {source} failed: {type(exc).__name__} (see the exception's __cause__)"
    ) from exc
