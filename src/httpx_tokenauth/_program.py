"""Every rule of getting a token, written once, as a program of effects. No I/O.

``Acquisition.acquire`` is a generator, the way httpx writes an auth scheme as
``auth_flow``: it yields an *effect* (send this token request, sleep this long,
wait for the fetch in flight, call the user's provider) and receives the
result, or has the exception thrown into it. The interpreters in
``_interpret.py`` execute effects with blocking calls or awaits and contain no
rule; everything that decides lives here:

* the cache and the refresh decision (``_cache.TokenCache.need``),
* single flight: one fetch for every thread and task of a TokenAuth,
* retries, backoff and the deadline of one acquisition (``_retry``),
* keeping a valid token through a failed early renewal, and the cool-down,
* why each token is fetched (the reason codes of ``_stats``), what each token
  request cost and how it ended, and the same-token guard (SPEC O1-O6).

Tests drive it by stepping it (``tests/test_program.py``): scripted results in,
effects out, no network, no sleeps, no threads.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

from ._cache import Need, TokenCache
from ._errors import ConfigurationError, ProviderError, TokenError, TokenTransportError
from ._providers import AsyncTokenProvider, Grant, TokenProvider
from ._request import TokenRequest
from ._retry import RetryPolicy, RetryState
from ._stats import (
    ADOPTED,
    COLD,
    EARLY,
    EXPIRED,
    INVALIDATED,
    SUCCESS,
    Attempt,
    Recorder,
    outcome_of,
)
from ._store import (
    DeleteIf,
    EntryNames,
    Get,
    Lock,
    Put,
    StoreOperation,
    StoreUnavailable,
    TokenStore,
    Unlock,
    new_fence,
)
from ._token import RateLimit, RawResponse, Token, parse_rate_limit

__all__ = [
    "WAIT_MARGIN",
    "Acquisition",
    "CallProvider",
    "Detach",
    "Effect",
    "Flight",
    "Program",
    "Send",
    "Sleep",
    "StoreCall",
    "Wait",
    "perform",
    "reset_after_fork",
]

logger = logging.getLogger("httpx_tokenauth")

T = TypeVar("T")

#: How much longer than the retry deadline a caller waits for someone else's
#: fetch before it concludes that fetch is stranded and fetches itself.
WAIT_MARGIN = 1.0

#: Polling a shared store for another process's fetch: first pause, and the most.
POLL_FIRST = 0.02
POLL_MAX = 0.5

#: An entry for a token with no known expiry lives this long in a shared store.
NO_EXPIRY_TTL = 24 * 3600.0

#: An early renewal that brought back the token already in use is tried once more
#: this many seconds before expiry (at most its renewal window), then not before
#: the token expires (SPEC O4).
SAME_TOKEN_WINDOW = 5.0


# -- effects: what the program asks the interpreters to do ---------------------------------


class Effect(Generic[T]):
    """Something the program needs done; ``T`` is what the interpreter sends back."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Send(Effect[RawResponse]):
    """POST ``request`` to the token endpoint; give up at ``deadline_at`` (monotonic).

    Back: the RawResponse. Thrown in: a TokenTransportError (a
    ``DeadlineExceededError`` when the deadline ended it).
    """

    request: TokenRequest
    deadline_at: float


@dataclass(frozen=True, slots=True)
class Sleep(Effect[None]):
    """Pause this caller for ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Wait(Effect[bool]):
    """Wait until ``flight`` lands or the monotonic time ``until``. Back: whether it landed."""

    flight: Flight
    until: float


@dataclass(frozen=True, slots=True)
class CallProvider(Effect[object]):
    """Call the user's provider: ``fetch()`` (awaited when ``is_async``). Back: what it returned.

    A sync provider called from async code runs in a worker thread.
    """

    fetch: Callable[[], Any]
    is_async: bool


@dataclass(frozen=True, slots=True)
class Detach(Effect[T]):
    """Run ``program`` so that this caller's cancellation cannot abort it (others wait on it).

    On asyncio it runs as a task of its own; elsewhere, in line.
    """

    program: Program[T]


@dataclass(frozen=True, slots=True)
class StoreCall(Effect[object]):
    """Carry out ``op`` on the shared ``store``. Back: its raw result (``op.result`` types it).

    Thrown in: StoreUnavailable, which the program treats as a miss (SPEC F5).
    """

    store: TokenStore
    op: StoreOperation[Any]


Program = Generator[Effect[Any], object, T]


class _Down(enum.Enum):
    """What a store operation gives when the store failed: carry on without it."""

    DOWN = "down"


DOWN = _Down.DOWN


def perform(effect: Effect[T]) -> Generator[Effect[Any], object, T]:
    """``result = yield from perform(effect)``: the one place an effect's result is typed."""
    return cast(T, (yield effect))


# -- single flight --------------------------------------------------------------------------


class Flight:
    """One token fetch in progress, which sync and async callers alike wait for.

    ``done`` wakes threads; ``wakers`` are set by tasks on the owner's own
    thread (its event loop) to be woken without polling. ``token`` is what the
    fetch obtained, handed to its waiters even if, by their clock, it has
    already expired.
    """

    __slots__ = ("done", "owner", "started", "token", "wakers")

    def __init__(self, started: float) -> None:
        self.done = threading.Event()
        self.owner = threading.get_ident()
        self.started = started
        self.token: Token | None = None
        self.wakers: list[Callable[[], object]] = []


# -- the program --------------------------------------------------------------------------


class Acquisition:
    """The token of one TokenAuth: its cache, its fetch in flight, and how to get a new one."""

    def __init__(
        self,
        provider: Grant | TokenProvider | AsyncTokenProvider,
        *,
        cache: TokenCache,
        retry: RetryPolicy,
        clock: Callable[[], float],
        source: str,
        host: str | None,
        lib_name: str,
        store: TokenStore | None = None,
        names: EntryNames | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.provider = provider
        self.recorder = Recorder() if recorder is None else recorder
        self.dropped: str | None = None  # why the cached token was dropped, until a new one
        self.same_token_warned = False
        self.store = store
        self.names = names
        self.rejected: Token | None = None  # the token a 401 took out of the cache
        self.store_outage = False  # warned about a store failure, not yet recovered
        self.cache = cache
        self.retry = retry
        self.clock = clock
        self.monotonic: Callable[[], float] = time.monotonic
        self.source = source
        self.host = host
        self.lib_name = lib_name
        self.flight: Flight | None = None
        self.guard = threading.Lock()  # held for a few instructions, never across I/O
        reset_after_fork(self)
        reset_after_fork(self.recorder)

    # -- acquiring: one fetch for many callers ------------------------------------------

    def acquire(self, *, blocking: bool) -> Program[Token]:
        """A usable token: the cached one, one a fetch in flight brings, or a new one.

        ``blocking`` says the caller is a thread (sync interpreter) rather than
        a task.
        """
        while True:
            need, current, error = self.cache.need(self.now(), self.monotonic())
            if (token := _settled(need, current, error)) is not None:
                return token
            flight, mine = self._board()
            if mine:
                renewing = current is not None
                return (yield from perform(Detach(self._fly(flight, renewing, blocking))))
            if need is Need.OPTIONAL and current is not None:
                return current  # someone is renewing; the old token is still valid
            if blocking and flight.owner == threading.get_ident():
                # The fetch belongs to an event loop running in this very thread, which
                # this blocking call is holding up: waiting would deadlock, so fetch too.
                reason = self._reason(need)
                return self._store(
                    (yield from self._fetch(renewing=False, blocking=True, reason=reason))
                )
            landed = yield from perform(Wait(flight, flight.started + self.wait_bound()))
            if not landed:
                self._strand(flight)
                continue
            if (token := flight.token) is not None and self.cache.token is token:
                return token  # fetched for us: ours even if it is already past its expiry
            # The fetch failed, or its token was rejected since: look again.

    def acquire_observed(self, *, blocking: bool) -> Program[Token]:
        """``acquire``, with the time the caller spends in it counted (``waits``)."""
        started = self.monotonic()
        try:
            return (yield from self.acquire(blocking=blocking))
        finally:
            self.recorder.waited(self.monotonic() - started)

    def _reason(self, need: Need) -> str:
        """Why a token is fetched now (SPEC O1), from what the cache said it needs."""
        if need is Need.OPTIONAL:
            return EARLY
        if self.cache.token is not None:
            return EXPIRED  # the cache keeps an expired entry until it is replaced
        return self.dropped or COLD

    def wait_bound(self) -> float:
        """How long a caller waits for another caller's fetch before fetching itself.

        The fetch's own deadline plus a margin; with a shared store, also the
        time it may spend waiting for another process's lease.
        """
        bound = self.retry.deadline + WAIT_MARGIN
        return bound + self.lease_seconds() if self.store is not None else bound

    def lease_seconds(self) -> float:
        """How long a process holds the shared lease at most: one fetch, deadline included."""
        return self.retry.deadline + WAIT_MARGIN

    def _fly(self, flight: Flight, renewing: bool, blocking: bool) -> Program[Token]:
        """Fetch as the flight's owner, and always land the flight."""
        try:
            need, current, error = self.cache.need(self.now(), self.monotonic())
            settled = _settled(need, current, error)
            if settled is not None:
                return settled  # renewed (or failed) just before we boarded
            reason = self._reason(need)
            try:
                token = yield from self._obtain(renewing=renewing, blocking=blocking, reason=reason)
            except _RenewingElsewhere as elsewhere:
                return self._defer(elsewhere.current)
            except TokenError as exc:
                return self._fetch_failed(exc)
            if (
                need is Need.OPTIONAL
                and current is not None
                and token is not current
                and token.access_token == current.access_token
            ):
                flight.token = self._same_token(token)
                return flight.token
            flight.token = self._store(token)
            return flight.token
        finally:
            self._land(flight)

    def _board(self) -> tuple[Flight, bool]:
        """Join the fetch in progress, or start one: (flight, whether it is ours to fly)."""
        with self.guard:
            if self.flight is not None:
                return self.flight, False
            self.flight = Flight(self.monotonic())
            return self.flight, True

    def _land(self, flight: Flight) -> None:
        """The fetch is over (done, failed or cancelled): let every waiter re-check the cache."""
        with self.guard:
            if self.flight is flight:
                self.flight = None
            flight.done.set()
            wakers, flight.wakers = flight.wakers, []
        for wake in wakers:
            wake()

    def _strand(self, flight: Flight) -> None:
        """A fetch that never landed (its loop stopped, its provider hangs): stop waiting for it."""
        with self.guard:
            if self.flight is not flight:
                return
            self.flight = None
        logger.warning(
            "the token fetch in progress for %s did not finish within %.1f s of the retry "
            "deadline; fetching again (was its event loop stopped?)",
            self.source,
            self.retry.deadline + WAIT_MARGIN,
            extra={"event": "fetch_stranded", "token_endpoint": self.source, "host": self.host},
        )

    def register_waker(self, flight: Flight, wake: Callable[[], object]) -> bool:
        """For interpreters: call ``wake`` when ``flight`` lands. False if it already has."""
        with self.guard:
            if flight.done.is_set():
                return False
            flight.wakers.append(wake)
            return True

    def _store(self, token: Token) -> Token:
        with self.guard:
            self.dropped = None
            return self.cache.store(token, self.now())

    def _same_token(self, token: Token) -> Token:
        """An early renewal brought back the token in use: renew again only near expiry (O4).

        Some servers hand out the same token until it expires; renewing on every
        request meanwhile would be a loop. Warned about once per TokenAuth.
        """
        now = self.now()
        with self.guard:
            self.dropped = None
            self.cache.hold(token, now, SAME_TOKEN_WINDOW)
            warn, self.same_token_warned = not self.same_token_warned, True
        self.recorder.same_token()
        if warn:
            logger.warning(
                "early token renewal from %s brought back the access token already in use; "
                "renewing it again only in its last %g s, or once it has expired (does the "
                "server hand out the same token until it expires?)",
                self.source,
                SAME_TOKEN_WINDOW,
                extra={
                    "event": "same_token",
                    "token_endpoint": self.source,
                    "host": self.host,
                    "reason": EARLY,
                    "expires_in": token.expires_in(now),
                },
            )
        return token

    def invalidate(self, token: Token, reason: str = INVALIDATED) -> bool:
        """Drop ``token`` if it is still the cached one; ``reason`` is why (SPEC O1)."""
        with self.guard:
            dropped = self.cache.invalidate(token)
            if dropped:
                self.rejected = token  # for the shared store's compare-and-delete
                self.dropped = reason
            return dropped

    def force(self, reason: str) -> None:
        """Drop the cached token, valid or not: the next acquisition fetches (for ``reason``)."""
        with self.guard:
            token = self.cache.token
            if token is not None and self.cache.invalidate(token):
                self.rejected = token  # not to be adopted again from a shared store
            self.dropped = reason

    def reset_after_fork(self) -> None:
        """In a forked child: no fetch is in flight here, whatever the parent was doing."""
        self.flight = None
        self.guard = threading.Lock()

    # -- the shared store: one fetch for the fleet (SPEC F1-F6) --------------------------

    def _obtain(self, *, renewing: bool, blocking: bool, reason: str = COLD) -> Program[Token]:
        """A new token: another process's from the shared store, or one we fetch.

        Without a store this is a fetch. With one: adopt a usable entry; else
        take the lease and fetch (then share what we got); else wait for the
        lease holder's entry, polling with backoff, and fetch ourselves if it
        does not come within the lease. Any store failure is a miss: we fetch
        in-process. Early renewal that finds the lease taken keeps the
        current token (``_RenewingElsewhere``).
        """
        store, names = self.store, self.names
        if store is None or names is None:
            return (yield from self._fetch(renewing=renewing, blocking=blocking, reason=reason))
        rejected, self.rejected = self.rejected, None
        current = self.cache.token if renewing else None
        shared = yield from self._shared(store, Get(names))
        if (
            adopted := (yield from self._adopt(store, names, shared, rejected, current))
        ) is not None:
            return adopted
        fence, lease = new_fence(), self.lease_seconds()
        until, pause = self.monotonic() + lease, POLL_FIRST
        while True:
            got = yield from self._shared(store, Lock(names, fence, max(1, int(lease * 1000))))
            if got is True:
                return (
                    yield from self._fetch_holding(
                        store, names, fence, renewing, blocking, reason=reason
                    )
                )
            if got is DOWN or self.monotonic() >= until:
                return (yield from self._fetch(renewing=renewing, blocking=blocking, reason=reason))
            if current is not None:
                raise _RenewingElsewhere(current)
            yield from perform(Sleep(pause))
            pause = min(pause * 2, POLL_MAX)
            shared = yield from self._shared(store, Get(names))
            if shared is DOWN:
                return (yield from self._fetch(renewing=renewing, blocking=blocking, reason=reason))
            if (
                adopted := (yield from self._adopt(store, names, shared, rejected, None))
            ) is not None:
                return adopted

    def _fetch_holding(
        self,
        store: TokenStore,
        names: EntryNames,
        fence: str,
        renewing: bool,
        blocking: bool,
        *,
        reason: str = COLD,
    ) -> Program[Token]:
        """Holding the lease: look once more, fetch, share the token, release the lease."""
        current = self.cache.token if renewing else None
        shared = yield from self._shared(store, Get(names))
        if isinstance(shared, Token) and self._usable(shared, None, current):
            yield from self._shared(store, Unlock(names, fence))
            return self._adopted(shared)
        if shared is not DOWN:
            self.recorder.store("miss")
        try:
            token = yield from self._fetch(renewing=renewing, blocking=blocking, reason=reason)
        except TokenError:
            yield from self._shared(store, Unlock(names, fence))  # failures are never stored
            raise
        lifetime = NO_EXPIRY_TTL if token.expires_at is None else token.expires_at - self.now()
        if lifetime > 0:
            yield from self._shared(store, Put(names, token, max(1, int(lifetime * 1000))))
        yield from self._shared(store, Unlock(names, fence))
        return token

    def _adopt(
        self,
        store: TokenStore,
        names: EntryNames,
        shared: Token | _Down | None,
        rejected: Token | None,
        current: Token | None,
    ) -> Program[Token | None]:
        """The shared token if we may use it; a rejected one is compare-and-deleted (SPEC F3)."""
        if shared is DOWN:
            return None
        if not isinstance(shared, Token):
            self.recorder.store("miss")
            return None
        if rejected is not None and shared.access_token == rejected.access_token:
            self.recorder.store("miss")
            yield from self._shared(store, DeleteIf(names, rejected))
            return None
        if self._usable(shared, rejected, current):
            return self._adopted(shared)
        self.recorder.store("miss")
        return None

    def _usable(self, shared: Token, rejected: Token | None, current: Token | None) -> bool:
        """Not expired, not the rejected one, and (when renewing) newer than ours."""
        if rejected is not None and shared.access_token == rejected.access_token:
            return False
        if shared.expires_at is not None and shared.expires_at <= self.now():
            return False
        if current is None:
            return True
        if shared.access_token == current.access_token:
            return False
        if current.expires_at is None:
            return True
        return shared.expires_at is None or shared.expires_at > current.expires_at

    def _adopted(self, token: Token) -> Token:
        self.recorder.store("hit")
        expires_in = token.expires_in(self.now())
        logger.debug(
            "token adopted from the shared store for %s (reason: adopted), expires in %s s",
            self.source,
            "unknown" if expires_in is None else round(expires_in),
            extra={
                "event": "token_adopted",
                "token_endpoint": self.source,
                "host": self.host,
                "reason": ADOPTED,
                "expires_in": expires_in,
            },
        )
        return token

    def _defer(self, current: Token) -> Token:
        """Another process holds the lease for an early renewal: keep ours, look again later."""
        with self.guard:
            self.cache.defer(self.now(), self.monotonic())
        return current

    def _shared(self, store: TokenStore, op: StoreOperation[T]) -> Program[T | _Down]:
        """One store operation; a failure is DOWN, warned about once per outage (SPEC F5)."""
        try:
            result = op.result((yield from perform(StoreCall(store, op))))
        except StoreUnavailable as exc:
            self.recorder.store("failure")
            if not self.store_outage:
                self.store_outage = True
                logger.warning(
                    "token store %r failed (%s); fetching tokens in-process until it answers again",
                    store,
                    exc,
                    extra={"event": "store_failed", "token_endpoint": self.source},
                )
            return DOWN
        if self.store_outage:
            self.store_outage = False
            logger.info(
                "token store %r answers again",
                store,
                extra={"event": "store_recovered", "token_endpoint": self.source},
            )
        return result

    # -- fetching: bounded retries at the token endpoint ----------------------------------

    def _fetch(self, *, renewing: bool, blocking: bool, reason: str = COLD) -> Program[Token]:
        provider = self.provider
        if not isinstance(provider, Grant):
            attempt = self.recorder.begin(reason, 1, self.monotonic())
            try:
                result = yield from self._call_provider(provider, blocking)
                token = _check_provided(result, self.source)
            except BaseException as exc:
                self._request_failed(attempt, exc, None)
                raise
            return self._fetched(token, attempt, None)
        policy = self.policy_for(renewing)
        retry = policy.start(self.monotonic())
        deadline_at = retry.started + policy.deadline
        while True:
            if self.monotonic() >= deadline_at:
                raise self._deadline_error(policy)
            try:
                request = provider.token_request(self.now())
                return (
                    yield from self._send(provider, request, deadline_at, reason, retry.attempt)
                )
            except _DEADLINE as exc:  # never retried: the time is up
                raise self._deadline_error(policy) from exc
            except TokenError as exc:
                if (delay := self._retry_delay(retry, exc, reason)) is None:
                    raise
            yield from perform(Sleep(delay))

    def _send(
        self, grant: Grant, request: TokenRequest, deadline_at: float, reason: str, number: int
    ) -> Program[Token]:
        """One token request, observed: its outcome, duration, rate limits (SPEC O2, O3, O5)."""
        attempt = self.recorder.begin(reason, number, self.monotonic())
        raw: RawResponse | None = None
        try:
            raw = yield from perform(Send(request, deadline_at))
            token = grant.parse_response(raw, received_at=self.now())
        except BaseException as exc:
            self._request_failed(attempt, exc, raw)
            raise
        return self._fetched(token, attempt, raw)

    def _request_failed(
        self, attempt: Attempt, exc: BaseException, raw: RawResponse | None
    ) -> None:
        """Count, time and log a token request that failed (or was abandoned)."""
        outcome = outcome_of(exc)
        limits = self._rate_limit(raw)
        seconds = self.recorder.end(
            attempt,
            outcome,
            self.monotonic(),
            status=None if raw is None else raw.status_code,
            rate_limit=limits,
        )
        logger.debug(
            "token request %d to %s (reason: %s) failed: %s",
            attempt.number,
            self.source,
            attempt.reason,
            outcome,
            extra={
                "event": "token_request_failed",
                "token_endpoint": self.source,
                "host": self.host,
                "reason": attempt.reason,
                "attempt": attempt.number,
                "outcome": outcome,
                "status_code": None if raw is None else raw.status_code,
                "duration": seconds,
                **_limit_fields(limits),
            },
        )

    def _rate_limit(self, raw: RawResponse | None) -> RateLimit | None:
        if raw is None:
            return None
        try:
            return parse_rate_limit(raw, received_at=self.now())
        except TokenError:
            return None  # a clock that broke: the request's own outcome says what matters

    def _call_provider(
        self, provider: TokenProvider | AsyncTokenProvider, blocking: bool
    ) -> Program[object]:
        if isinstance(provider, AsyncTokenProvider) and not blocking:
            effect = CallProvider(provider.afetch_token, is_async=True)
        elif isinstance(provider, TokenProvider):
            effect = CallProvider(provider.fetch_token, is_async=False)
        else:
            raise ConfigurationError(
                f"{type(provider).__name__} has only async afetch_token(): use this TokenAuth "
                f"with {self.lib_name}.AsyncClient, or give the provider a fetch_token() method"
            )
        try:
            return (yield from perform(effect))
        except TokenError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"token provider {self.source} failed: {type(exc).__name__} (see the "
                "exception's __cause__)"
            ) from exc

    def policy_for(self, renewing: bool) -> RetryPolicy:
        """Full retries when callers need a token; one attempt while the current one is valid.

        An early renewal is made by a caller that could use the valid token: it
        should wait for one attempt at most (within the same deadline), and try
        again later if it fails.
        """
        return dataclasses.replace(self.retry, attempts=1) if renewing else self.retry

    def now(self) -> float:
        """The user's clock, checked: a clock that breaks later gives a typed error, not a crash."""
        try:
            value = self.clock()
        except Exception as exc:
            raise ConfigurationError(
                f"the clock passed to TokenAuth raised {type(exc).__name__}; it must return "
                "the time in seconds since the epoch, like time.time"
            ) from exc
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise ConfigurationError(
                "the clock passed to TokenAuth returned "
                f"{type(value).__name__} {str(value)[:40]!r}; it must return the time in "
                "seconds since the epoch as a finite number, like time.time"
            )
        return float(value)

    def _deadline_error(self, policy: RetryPolicy) -> TokenTransportError:
        return TokenTransportError(
            f"token request to {self.source} did not finish within the retry deadline "
            f"({policy.deadline:g} s)",
            token_url=self.source,
        )

    def _fetch_failed(self, exc: TokenError) -> Token:
        """Keep a still-valid token through a failed renewal; otherwise raise (and cool down)."""
        if isinstance(exc, ConfigurationError):
            raise exc  # a usage error, not the server's: nothing to cool down from
        now = self.now()
        with self.guard:
            kept = self.cache.fetch_failed(exc, now, self.monotonic())
        if kept is None:
            raise exc
        logger.warning(
            "early token renewal from %s failed (%s); the current token is still valid and "
            "stays in use",
            self.source,
            type(exc).__name__,
            extra={
                "event": "renewal_failed",
                "token_endpoint": self.source,
                "host": self.host,
                "reason": EARLY,
                "outcome": type(exc).__name__,
                "expires_in": kept.expires_in(now),
            },
        )
        return kept

    def _retry_delay(self, retry: RetryState, exc: TokenError, reason: str = COLD) -> float | None:
        """How long to wait before the next token request, or None to give up."""
        attempt = retry.attempt
        delay = retry.delay(exc, self.monotonic())
        if delay is not None:
            self.recorder.retry(reason)
            logger.info(
                "token request %d to %s failed (%s); retrying in %.2f s",
                attempt,
                self.source,
                type(exc).__name__,
                delay,
                extra={
                    "event": "token_request_retry",
                    "token_endpoint": self.source,
                    "host": self.host,
                    "reason": reason,
                    "attempt": attempt,
                    "outcome": type(exc).__name__,
                    "delay": delay,
                },
            )
        return delay

    def _fetched(self, token: Token, attempt: Attempt, raw: RawResponse | None) -> Token:
        """Count, time and log a token request that brought ``token``."""
        mono = self.monotonic()
        limits = self._rate_limit(raw)
        status = None if raw is None else raw.status_code
        seconds = self.recorder.end(attempt, SUCCESS, mono, status=status, rate_limit=limits)
        expires_in = token.expires_in(self.now())
        logger.debug(
            "token fetched from %s (reason: %s), expires in %s s",
            self.source,
            attempt.reason,
            "unknown" if expires_in is None else round(expires_in),
            extra={
                "event": "token_fetched",
                "token_endpoint": self.source,
                "host": self.host,
                "expires_in": expires_in,
                "scope": " ".join(token.scope) if token.scope else None,
                "reason": attempt.reason,
                "attempt": attempt.number,
                "outcome": SUCCESS,
                "status_code": status,
                "duration": seconds,
                **_limit_fields(limits),
            },
        )
        self._check_rate(token, mono)
        return token

    def _check_rate(self, token: Token, mono: float) -> None:
        """Warn when tokens come far more often than their lifetime implies (SPEC O6)."""
        lifetime = None
        if token.expires_at is not None and token.received_at is not None:
            lifetime = token.expires_at - token.received_at
        too_many = self.recorder.fetched(mono, lifetime)
        if too_many is None or lifetime is None:
            return
        count, seconds = too_many
        logger.warning(
            "%d tokens fetched from %s in %.0f s, though each lives %.0f s: are tokens "
            "rejected, invalidated or forced that often? (auth.stats() counts token "
            "requests by reason)",
            count,
            self.source,
            seconds,
            lifetime,
            extra={
                "event": "token_rate_high",
                "token_endpoint": self.source,
                "host": self.host,
                "count": count,
                "seconds": seconds,
                "lifetime": lifetime,
            },
        )


class _RenewingElsewhere(Exception):  # noqa: N818 - a signal inside the program, never raised out
    """Early renewal found another process holding the lease: keep ``current`` for now."""

    def __init__(self, current: Token) -> None:
        super().__init__("another process is renewing")
        self.current = current


def _limit_fields(limits: RateLimit | None) -> dict[str, object]:
    """A token response's rate-limit headers as log record fields (SPEC O5)."""
    if limits is None:
        return {}
    return {
        "retry_after": limits.retry_after,
        "rate_limit_limit": limits.limit,
        "rate_limit_remaining": limits.remaining,
        "rate_limit_reset": limits.reset,
    }


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


def _check_provided(token: object, source: str) -> Token:
    if not isinstance(token, Token):
        raise ProviderError(
            f"{source} returned {type(token).__name__}, not a Token: return "
            "Token(access_token, expires_at=...)"
        )
    return token


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _deadline_type() -> type[TokenTransportError]:
    from ._transport import DeadlineExceededError  # noqa: PLC0415  (no import cycle at load)

    return DeadlineExceededError


_DEADLINE = _deadline_type()


class _ForkReset(Protocol):
    def reset_after_fork(self) -> None: ...


#: Everything holding per-process state (flights, locks, connections), so that a
#: forked child starts clean instead of waiting for a fetch its parent is making.
_LIVE: weakref.WeakSet[_ForkReset] = weakref.WeakSet()


def reset_after_fork(obj: _ForkReset) -> None:
    """Have ``obj.reset_after_fork()`` called in every child forked from now on."""
    _LIVE.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_LIVE):
        obj.reset_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
