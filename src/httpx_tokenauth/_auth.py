"""TokenAuth: the httpx.Auth.

The rules of getting a token are one program (``_program.Acquisition``),
run by a blocking interpreter for ``httpx.Client`` and an async one for
``httpx.AsyncClient`` (``_interpret``). What is here is what surrounds one API
request: attach the cached token (the hot path, which runs no program), and
decide what a 401 means (``_challenge.decide_after_401``). This module also
owns the token clients the interpreters send token requests with.

``TokenAuth`` here binds it to httpx; ``httpx_tokenauth.httpx2.TokenAuth``
binds the same code to httpx2 through another HTTPLib record.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Collection, Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import httpx

from ._cache import TokenCache
from ._errors import ConfigurationError, InsecureTransportError, TokenError, TokenTransportError
from ._interpret import run_async, run_sync
from ._program import Acquisition, Program, reset_after_fork
from ._providers import AsyncTokenProvider, Grant, TokenProvider
from ._request import TokenRequest
from ._retry import RetryPolicy
from ._stats import FORCED, REJECTED, Recorder
from ._token import RawResponse, Token
from ._transport import HTTPX, DeadlineExceededError, HTTPLib, replayable, send_async, send_sync
from ._url import check_flag, is_loopback_host, redacted_url

if TYPE_CHECKING:
    # Loaded by the features that need them: the 401 rules on a rejection, discovery for
    # grants made by from_issuer, DPoP with dpop=, the shared store with store=.
    from ._discovery import ServerMetadata
    from ._dpop import DPoP, Prover
    from ._snapshot import TokenStats
    from ._store import TokenStore

__all__ = ["TokenAuth", "TokenAuthBase"]

logger = logging.getLogger("httpx_tokenauth")

Provider = Grant | TokenProvider | AsyncTokenProvider

#: Three attempts, 0.5 s then 1 s (upper bounds, jittered), 30 s deadline.
DEFAULT_RETRY = RetryPolicy()

#: Clocks that do not count seconds since the epoch (token lifetimes and JWT
#: dates are counted in those), refused by name.
_NOT_EPOCH_CLOCKS = {
    time.monotonic: "time.monotonic",
    time.perf_counter: "time.perf_counter",
    time.process_time: "time.process_time",
    time.thread_time: "time.thread_time",
    time.monotonic_ns: "time.monotonic_ns",
    time.perf_counter_ns: "time.perf_counter_ns",
    time.time_ns: "time.time_ns",
}
#: A clock sample above this (the year 5138) is not seconds: milliseconds or nanoseconds?
_MAX_EPOCH_SECONDS = 1e11


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
        store: TokenStore | None = None,
        dpop: DPoP | None = None,
        rejection_statuses: Collection[int] = (401,),
        telemetry: bool = False,
        meter_provider: Any = None,
        tracer_provider: Any = None,
    ) -> None:
        if isinstance(provider, type):
            raise ConfigurationError(
                f"provider must be an instance, got the class {provider.__name__}: "
                f"pass {provider.__name__}(...) with its arguments"
            )
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
        _check_clock(clock)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a RetryPolicy(...) or None, got {type(retry).__name__}"
            )
        self._dpop: Prover | None = _prover(dpop, provider)
        self._provider = provider
        self._cache = TokenCache(
            leeway=leeway, default_lifetime=default_lifetime, cooldown=cooldown
        )
        self._leeway = leeway
        self._token_client = token_client
        self._async_token_client = async_token_client
        self._allow_insecure_http = check_flag("allow_insecure_http", allow_insecure_http)
        self._clock = clock
        self._own_client: Any = None
        self._own_client_lock = threading.Lock()
        if isinstance(provider, Grant):
            self._source = redacted_url(provider.token_url)
            host: str | None = urlsplit(provider.token_url).hostname
        else:
            self._source = type(provider).__name__
            host = None
        self._store = store
        recorder = Recorder(_telemetry(telemetry, meter_provider, tracer_provider, host, provider))
        self._acquisition = Acquisition(
            provider,
            cache=self._cache,
            retry=retry or RetryPolicy.off(),
            clock=clock,
            source=self._source,
            host=host,
            lib_name=lib,
            store=store,
            names=None
            if store is None
            else store.entry_names(_identity(provider, store, self._dpop)),
            dpop=self._dpop,
            recorder=recorder,
        )
        discovered = provider._discovered if isinstance(provider, Grant) else None
        if discovered is not None and isinstance(provider, Grant):
            from ._discovery import DiscoveryState, cache_for  # noqa: PLC0415

            # A grant made by from_issuer: its metadata is cached per issuer, for every
            # TokenAuth sending over the same token client (or over clients of their own).
            cache = cache_for(token_client if token_client is not None else async_token_client)
            self._acquisition.discovery = DiscoveryState(provider, discovered, cache)
            if store is not None:
                self._acquisition.identity = _identity(provider, store)
        self._rejection_statuses = _check_rejection_statuses(rejection_statuses)
        reset_after_fork(self)

    # -- the two drivers -------------------------------------------------------------------
    # The hot path: a fresh cached token is a read and a header; no program runs.

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any]:
        if self._dpop is not None:
            flow, value = self._dpop_flow(request, self._dpop, True), None
            while (step := _next(flow, value)) is not None:
                value = run_sync(self, step.program) if isinstance(step, _Run) else (yield step)
            return
        token = self._fresh_for(request) or run_sync(self, self._acquire(True))
        can_replay = self._attach(request, token)
        response = yield request
        if response.status_code in self._rejection_statuses:
            again = run_sync(self, self._after_401(request, response, token, can_replay, True))
            if again is not None:
                self._attach(request, again)
                yield request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        if self._dpop is not None:
            flow, value = self._dpop_flow(request, self._dpop, False), None
            while (step := _next(flow, value)) is not None:
                if isinstance(step, _Run):
                    value = await run_async(self, step.program)
                else:
                    value = yield step
            return
        token = self._fresh_for(request)
        if token is None:
            token = await run_async(self, self._acquire(False))
        can_replay = self._attach(request, token)
        response = yield request
        if response.status_code in self._rejection_statuses:
            again = await run_async(self, self._after_401(request, response, token, can_replay))
            if again is not None:
                self._attach(request, again)
                yield request

    def auth_flow(self, request: Any) -> Generator[Any, Any]:
        raise RuntimeError(
            f"TokenAuth runs through {self._lib.name}.Client or {self._lib.name}.AsyncClient "
            "(sync_auth_flow / async_auth_flow); auth_flow is not used"
        )

    # -- the token itself, for other channels (gRPC, websockets, a CLI) -------------------

    def get_token(self, *, force: bool = False) -> Token:
        """The current token, fetched or renewed first if needed, by the same rules.

        For channels other than httpx (gRPC metadata, a websocket header). If
        that channel rejects the token, pass it to ``invalidate`` and call
        ``get_token`` again. ``force=True`` drops the cached token, valid or
        not, and fetches a new one (reason ``forced``): callers that need a
        token meanwhile wait for that fetch, and if it fails, there is no
        token until the next fetch succeeds.
        """
        if force is not False and check_flag("force", force):
            self._acquisition.force(FORCED)
            return run_sync(self, self._acquire(True))
        return self._cached() or run_sync(self, self._acquire(True))

    async def aget_token(self, *, force: bool = False) -> Token:
        """The async mirror of ``get_token``."""
        if force is not False and check_flag("force", force):
            self._acquisition.force(FORCED)
            return await run_async(self, self._acquire(False))
        token = self._cached()
        return token if token is not None else await run_async(self, self._acquire(False))

    def stats(self) -> TokenStats:
        """What this TokenAuth did to get its tokens so far, as an immutable snapshot.

        Token requests by reason and outcome, retries, replays after a 401 and
        refused ones, shared-store hits, misses and failures, the time requests
        spent waiting for a token, and the last rate-limit headers of the token
        endpoint. Requests served from the cache are not counted (they cost
        nothing to serve, and nothing to count).
        """
        return self._acquisition.recorder.snapshot()

    def invalidate(self, token: Token) -> None:
        """Drop ``token`` from the cache if it is still the current one (compare-and-invalidate).

        The next request or ``get_token`` fetches a new token; if another caller
        already replaced it, nothing happens.
        """
        self._acquisition.invalidate(token)

    def _discover(self) -> tuple[ServerMetadata, Grant]:
        """The issuer's metadata, checked, and the grant it completes (``discover`` in the CLI).

        Nothing is sent to the token endpoint.
        """
        state = self._acquisition.discovery
        if state is None:
            raise ConfigurationError("this TokenAuth's grant was not made with from_issuer()")
        deadline_at = time.monotonic() + self._acquisition.retry.deadline
        metadata = run_sync(self, self._acquisition._server_metadata(state, deadline_at))
        return metadata, state.resolved(metadata)

    # -- what both drivers share: the rules around one API request -------------------------

    def _fresh_for(self, request: Any) -> Token | None:
        """SPEC T3 (checked before any token is fetched), then the cached token if fresh."""
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
        token = self._cached()
        if token is None and self._acquisition.discovery is not None:
            self._acquisition.discovery.note_request(str(url))  # RFC 9728 §3.1, once
        return token

    def _cached(self) -> Token | None:
        """The cached token if it is fresh. A clock that breaks reads as "not fresh": the
        program's checked clock read then says what is wrong, as a ConfigurationError."""
        try:
            return self._cache.fresh(self._clock())
        except Exception:
            return None

    def _attach(self, request: Any, token: Token) -> bool:
        """Put the token on the request; whether its body could be sent again."""
        request.headers["Authorization"] = token.authorization
        return replayable(self._lib, request)  # before sending: a transport may buffer it

    def _acquire(self, blocking: bool) -> Program[Token]:
        return self._acquisition.acquire_observed(blocking=blocking)

    def _after_401(
        self, request: Any, response: Any, token: Token, can_replay: bool, blocking: bool = False
    ) -> Program[Token | None]:
        """SPEC U6-U8: the token to replay with, or None to hand the 401 back.

        Compare-and-invalidate, and the one-replay rule: a body that cannot be
        resent still gets the token renewed, but the caller gets the 401.
        """
        if not self._renews(request, response, token, can_replay):
            return None
        try:
            renewed = yield from self._acquire(blocking)
        except TokenError:
            if can_replay:
                raise
            return None  # the body cannot be resent: the caller gets the 401 (renewal failed too)
        if can_replay:
            self._acquisition.recorder.replay(True)
        return renewed if can_replay else None

    # -- DPoP (SPEC D1, D2): a proof on every request, the nonce and renewal replays -----

    def _dpop_flow(self, request: Any, dpop: Prover, blocking: bool) -> Generator[Any, Any, None]:
        """One API request with DPoP, for both drivers: yields the request to send (and
        gets the response) or a ``_Run`` of a program (and gets its result).

        A 401 ``DPoP error="use_dpop_nonce"`` replays once with the nonce and the same
        token; a 401 that calls for a new token renews and replays once (SPEC U6); a
        second nonce demand is a DPoPNonceError.
        """
        from ._challenge import dpop_nonce_demanded  # noqa: PLC0415
        from ._dpop import nonce_demand_error, normalize_htu  # noqa: PLC0415

        token = self._fresh_for(request)
        if token is None:
            token = yield _Run(self._acquire(blocking))
        can_replay = self._attach_dpop(request, token, dpop)
        response = yield request
        nonce_replayed = renewed = False
        while True:
            learned = dpop.learn(str(response.request.url), response.headers.get("dpop-nonce"))
            if response.status_code not in self._rejection_statuses:
                return
            sent = response.request.headers.get("Authorization") == token.authorization
            challenges = response.headers.get_list("www-authenticate")
            if sent and token.token_type == "DPoP" and dpop_nonce_demanded(challenges):
                if nonce_replayed or not (learned or dpop.nonce_for(str(request.url))):
                    origin = normalize_htu(str(response.request.url))[0]
                    raise nonce_demand_error(origin, 401, had_nonce=nonce_replayed)
                if not can_replay:
                    logger.warning(
                        "%s %s asks for a DPoP nonce, but the request body is a stream that "
                        "cannot be sent twice, so the 401 is returned to the caller",
                        request.method,
                        redacted_url(str(request.url)),
                        extra={"event": "replay_refused", "reason": "body cannot be resent"},
                    )
                    return
                nonce_replayed = True
            elif renewed:
                return
            else:
                renewed = True
                again = yield _Run(self._after_401(request, response, token, can_replay, blocking))
                if again is None:
                    return
                token = again
            self._attach_dpop(request, token, dpop)
            response = yield request

    def _attach_dpop(self, request: Any, token: Token, dpop: Prover) -> bool:
        """The token and a fresh proof bound to it (``ath``); a Bearer token goes alone."""
        request.headers["Authorization"] = token.authorization
        if token.token_type == "DPoP":
            request.headers["DPoP"] = dpop.proof(
                request.method, str(request.url), self._clock(), access_token=token.access_token
            )
        elif "DPoP" in request.headers:
            del request.headers["DPoP"]
        return replayable(self._lib, request)

    def _renews(self, request: Any, response: Any, token: Token, can_replay: bool) -> bool:
        """Whether this 401 is about our token and calls for a new one (and drop it if so)."""
        if response.request.headers.get("Authorization") != token.authorization:
            # A redirect took the request to another origin and httpx dropped our
            # header: this 401 is not about our token.
            self._acquisition.recorder.replay(False)
            logger.debug(
                "401 from %s is not about our token (it was not sent there)",
                redacted_url(str(response.request.url)),
                extra={"event": "replay_refused", "reason": "token not sent to that origin"},
            )
            return False
        from ._challenge import decide_after_401  # noqa: PLC0415  (only on a rejection)

        challenges = response.headers.get_list("www-authenticate")
        decision = decide_after_401(challenges, dpop=self._dpop is not None)
        discovery = self._acquisition.discovery
        if decision.renew and discovery is not None:
            from ._discovery import resource_metadata_of  # noqa: PLC0415

            metadata_url = resource_metadata_of(challenges)
            if metadata_url is not None:  # RFC 9728 §5.1: read it before the next token
                discovery.note_challenge(metadata_url, str(request.url))
        if not decision.renew:
            self._acquisition.recorder.replay(False)
            logger.debug(
                "not replaying %s %s: %s",
                request.method,
                redacted_url(str(request.url)),
                decision.reason,
                extra={"event": "replay_refused", "reason": decision.reason},
            )
            return False
        self._acquisition.invalidate(token, REJECTED)
        if not can_replay:
            self._acquisition.recorder.replay(False)
            logger.warning(
                "%s %s got %s; the token will be renewed, but the request body is a "
                "stream that cannot be sent twice, so the 401 is returned to the caller",
                request.method,
                redacted_url(str(request.url)),
                decision.reason,
                extra={"event": "replay_refused", "reason": "body cannot be resent"},
            )
        else:
            logger.debug(
                "replaying %s %s after %s",
                request.method,
                redacted_url(str(request.url)),
                decision.reason,
                extra={"event": "replay", "reason": decision.reason},
            )
        return True

    # -- the token endpoint I/O, for the interpreters ----------------------------------------

    def _send_sync(self, request: TokenRequest, deadline_at: float) -> RawResponse:
        """One token request, every phase bounded by what is left before ``deadline_at``."""
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(self._deadline_message(), token_url=self._source)
        configured = self._client().timeout
        phases: dict[str, float] = {}
        capped = False
        for name in ("connect", "read", "write", "pool"):
            value = getattr(configured, name)
            if value is None or value > remaining:
                value, capped = remaining, True
            phases[name] = value
        client, timeout = self._client(), self._lib.Timeout(**phases)
        try:
            return _within(
                remaining,
                lambda: send_sync(
                    self._lib, client, request, timeout=timeout, deadline_at=deadline_at
                ),
                DeadlineExceededError(self._deadline_message(), token_url=self._source),
            )
        except TokenTransportError as exc:
            if capped and isinstance(exc.__cause__, self._lib.TimeoutException):
                raise DeadlineExceededError(
                    self._deadline_message(), token_url=self._source
                ) from exc
            raise

    async def _send_async(self, request: TokenRequest, deadline_at: float) -> RawResponse:
        """The async mirror: the deadline cancels the request wherever it is."""
        anyio = _anyio()
        with anyio.move_on_after(deadline_at - time.monotonic()):
            if self._async_token_client is not None:
                return await send_async(self._lib, self._async_token_client, request)
            async with await self._own_async_client() as own:
                return await send_async(self._lib, own, request)
        raise DeadlineExceededError(self._deadline_message(), token_url=self._source)

    def _deadline_message(self) -> str:
        return f"token request to {self._source} did not finish within the retry deadline"

    def _client(self) -> Any:
        if self._token_client is not None:
            return self._token_client
        with self._own_client_lock:
            if self._own_client is None:
                self._own_client = self._lib.new_client()
            return self._own_client

    async def _own_async_client(self) -> Any:
        # One short-lived client per fetch: fetches are rare, and a client tied to
        # no event loop cannot break when the loop changes. The TLS context (the
        # costly part, which reads the CA bundle from disk) is the process's
        # shared one, made off-loop the first time.
        if not self._lib.has_ssl_context():
            anyio = _anyio()
            await anyio.to_thread.run_sync(self._lib.ssl_context, limiter=anyio.CapacityLimiter(1))
        return self._lib.new_async_client()

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's connections are not ours to use (or close)."""
        self._own_client = None
        self._own_client_lock = threading.Lock()

    def close(self) -> None:
        """Close the token client TokenAuth created (a client you passed stays open)."""
        with self._own_client_lock:
            if self._own_client is not None:
                self._own_client.close()
                self._own_client = None

    def __repr__(self) -> str:
        store = "" if self._store is None else f", store={self._store!r}"
        dpop = "" if self._dpop is None else f", dpop={self._dpop!r}"
        return f"TokenAuth({self._provider!r}, leeway={self._leeway!r}{store}{dpop})"


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

    ``stats()`` says what getting tokens has cost so far, and every token
    request is logged with the reason it was made. ``telemetry=True`` also
    reports OpenTelemetry metrics and a span per token request through the
    globally configured providers; ``meter_provider=`` / ``tracer_provider=``
    pass others (both need ``opentelemetry-api``: the ``otel`` extra).

    Bearer tokens are only sent over https, to loopback hosts, or anywhere
    with ``allow_insecure_http=True`` (SPEC T3). ``clock`` returns the current
    time in seconds (``time.time`` by default).

    ``rejection_statuses`` are the API statuses that say the token was
    rejected: 401 only by default; ``(401, 403)`` for APIs that answer a
    revoked token with a bare 403 (django-oauth-toolkit).

    ``store`` (a RedisTokenStore or FileTokenStore) shares tokens between
    processes: every process with the same credential and store makes one
    token request between them. The in-process cache stays in front of it.
    """

    _lib = HTTPX


def _qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"


def _anyio() -> ModuleType:
    """anyio, for the async driver only: sync users do not pay for importing it."""
    import anyio.to_thread  # noqa: PLC0415

    return anyio


class _Run:
    """A step of the DPoP flow: run this program and send back its result."""

    __slots__ = ("program",)

    def __init__(self, program: Program[Any]) -> None:
        self.program = program


def _next(flow: Generator[Any, Any, None], value: Any) -> Any:
    """The flow's next step, or None once it is done."""
    try:
        return flow.send(value)
    except StopIteration:
        return None


def _prover(dpop: object, provider: Provider) -> Prover | None:
    """SPEC D1: the DPoP prover of this TokenAuth (its key generated now, if none was given)."""
    if dpop is None:
        return None
    from ._dpop import DPoP  # noqa: PLC0415  (only when dpop= is given)

    if not isinstance(dpop, DPoP):
        raise ConfigurationError(f"dpop must be DPoP(...) or None, got {type(dpop).__name__}")
    if not isinstance(provider, Grant):
        raise ConfigurationError(
            "dpop= needs a grant (ClientCredentials or JWTBearerGrant), whose token requests "
            f"TokenAuth sends with a proof; {type(provider).__name__} fetches its own tokens"
        )
    return dpop.bind()


#: Grant names for telemetry attributes; other providers are named by their class.
_GRANTS = {"ClientCredentials": "client_credentials", "JWTBearerGrant": "jwt_bearer"}


def _telemetry(
    telemetry: object,
    meter_provider: object,
    tracer_provider: object,
    host: str | None,
    provider: Provider,
) -> Any:
    """The OpenTelemetry instruments asked for (SPEC O3), or None; nothing imported if not."""
    if telemetry is False and meter_provider is None and tracer_provider is None:
        return None
    from ._otel import telemetry_for  # noqa: PLC0415  (only when telemetry is asked for)

    name = type(provider).__name__
    return telemetry_for(
        telemetry, meter_provider, tracer_provider, host=host, grant=_GRANTS.get(name, name)
    )


def _identity(provider: Provider, store: object, dpop: Prover | None = None) -> tuple[str, ...]:
    """What shapes the provider's tokens, for the shared store's entry name (SPEC F1)."""
    from ._store import TokenStore  # noqa: PLC0415  (only when store= is given)

    if not isinstance(store, TokenStore):
        raise ConfigurationError(
            f"store must be a RedisTokenStore(...) or FileTokenStore(...), got "
            f"{type(store).__name__}"
        )
    identity = getattr(provider, "cache_identity", None)
    value = identity() if callable(identity) else None
    if not isinstance(value, tuple) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(
            f"a shared store needs to know what shapes the tokens of {type(provider).__name__}: "
            "give it a cache_identity() method returning a non-empty tuple of strings that "
            "differs whenever the tokens would (token URL, client, scope, audience, ...)"
        )
    # SPEC D3: a DPoP token is bound to its key, so processes share it only with that key.
    return value if dpop is None else (*value, f"dpop_jkt={dpop.jkt}")


def _check_clock(clock: object) -> None:
    name = _NOT_EPOCH_CLOCKS.get(clock) if callable(clock) else None
    if name is not None:
        raise ConfigurationError(
            f"clock={name} does not count seconds since the epoch, which token lifetimes "
            "and JWT dates are counted in: pass clock=time.time (failure timing already uses "
            "the monotonic clock)"
        )
    sample = clock() if callable(clock) else None
    if (
        isinstance(sample, bool)
        or not isinstance(sample, (int, float))
        or not _finite(sample)
        or sample > _MAX_EPOCH_SECONDS
    ):
        hint = " (milliseconds or nanoseconds?)" if isinstance(sample, (int, float)) else ""
        raise ConfigurationError(
            "clock must be a callable returning the time in seconds since the epoch as a "
            f"number, like time.time (it also dates JWT assertions); got {sample!r}{hint}"
        )


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _within(seconds: float, call: Callable[[], RawResponse], late: Exception) -> RawResponse:
    """``call()`` in a worker thread, waited for at most ``seconds``; else raise ``late``.

    httpx's timeouts restart on every byte, so a server that drips its headers
    would hold a blocking caller (and everyone waiting on its fetch) far past
    the retry deadline. The abandoned attempt ends by its own timeouts.
    """
    outcome: list[RawResponse] = []
    failure: list[BaseException] = []
    done = threading.Event()
    context = contextvars.copy_context()  # tracing context and the like, as in this thread

    def attempt() -> None:
        try:
            outcome.append(context.run(call))
        except BaseException as exc:
            failure.append(exc)

    _WORKERS.run(attempt, done)
    if not done.wait(max(0.0, seconds) + _GRACE):
        raise late
    if failure:
        raise failure[0]
    return outcome[0]


class _Workers:
    """Daemon threads for blocking token requests, kept for reuse.

    Starting a thread for every request cost more than the request's own work
    in Python (BENCHMARKS.md row 11a), so a finished worker waits for the next
    job, and one idle for IDLE_SECONDS ends. A request abandoned at its
    deadline keeps its worker until its own timeouts end it; the next job
    then gets another worker. Daemon threads: a stuck request never holds up
    the interpreter's exit.
    """

    IDLE_SECONDS = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[Any] = []  # the job queues of workers waiting for a job

    def run(self, job: Callable[[], None], done: threading.Event) -> None:
        """Run ``job`` on a worker, then set ``done`` (once the worker is free again, so
        that the caller's next request finds it)."""
        with self._lock:
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            import queue  # noqa: PLC0415 - the first blocking token request needs it

            jobs = queue.SimpleQueue()
            threading.Thread(
                target=self._serve,
                args=(jobs,),
                name="httpx-tokenauth token request",
                daemon=True,
            ).start()
        jobs.put((job, done))

    def _serve(self, jobs: Any) -> None:
        import queue  # noqa: PLC0415

        while True:
            try:
                job = jobs.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if jobs in self._idle:
                        self._idle.remove(jobs)
                        return
                continue  # handed a job just now: it is on its way
            work, done = job
            del job
            try:
                work()
            except BaseException:  # the job's own errors are its caller's; this ends the worker
                done.set()
                raise
            del work
            with self._lock:
                self._idle.append(jobs)  # free before the caller wakes: its next job finds it
            done.set()

    def reset_after_fork(self) -> None:
        """In a forked child the parent's workers do not exist: start afresh."""
        self._lock = threading.Lock()
        self._idle = []


_WORKERS = _Workers()
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_WORKERS.reset_after_fork)


#: How long past the deadline a blocking token request may finish on its own (the
#: per-phase timeouts already end at the deadline; this covers their granularity).
_GRACE = 0.05


def _check_rejection_statuses(statuses: object) -> frozenset[int]:
    """The API statuses that say "this token was rejected": 401, and what the user adds.

    Some servers answer a revoked token with a bare 403 (django-oauth-toolkit's
    protected views do); ``rejection_statuses=(401, 403)`` makes such a 403 renew
    the token and replay once, by the same rules as a 401 (SPEC U9).
    """
    if isinstance(statuses, (str, bytes)) or not isinstance(statuses, Collection):
        raise ConfigurationError(
            f"rejection_statuses must be a collection of HTTP statuses such as (401, 403), "
            f"got {type(statuses).__name__}"
        )
    chosen = set()
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 499:
            raise ConfigurationError(
                f"rejection_statuses holds {status!r}: only 4xx statuses can say a token was "
                "rejected, e.g. rejection_statuses=(401, 403)"
            )
        chosen.add(status)
    if 401 not in chosen:
        raise ConfigurationError(
            "rejection_statuses must include 401, which always means the token was rejected "
            "(RFC 6750 §3.1): e.g. rejection_statuses=(401, 403)"
        )
    return frozenset(chosen)
