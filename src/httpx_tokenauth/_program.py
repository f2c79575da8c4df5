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
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, cast

from ._cache import Need, TokenCache
from ._errors import (
    ConfigurationError,
    ProviderError,
    TokenEndpointError,
    TokenError,
    TokenTransportError,
)
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
from ._token import RateLimit, RawResponse, Token, parse_rate_limit

if TYPE_CHECKING:
    # Assertions, DPoP, the shared store and discovery load with the features that use
    # them (a ClientAssertion, DPoP(...), a TokenStore, from_issuer), not with this module.
    from ._assertions import Assertion, AssertionNeed, AssertionSource
    from ._discovery import DiscoveryState, ResourceMetadata, ServerMetadata
    from ._dpop import Prover
    from ._store import EntryNames, StoreOp, TokenStore

__all__ = [
    "WAIT_MARGIN",
    "Acquisition",
    "AnyEffect",
    "CallProvider",
    "Detach",
    "Effect",
    "FetchDocument",
    "Flight",
    "Program",
    "ReadAssertion",
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

#: Refusals that may mean an externally issued assertion expired on the way (SPEC A4):
#: ``invalid_client`` for a client assertion (RFC 7523 §3.2), ``invalid_grant`` as
#: servers answer for a subject token, ``invalid_request`` as RFC 8693 §2.2.2 says to.
REREAD_AFTER = frozenset({"invalid_client", "invalid_grant", "invalid_request"})

#: An early renewal that brought back the token already in use is tried once more
#: this many seconds before expiry (at most its renewal window), then not before
#: the token expires (SPEC O4).
SAME_TOKEN_WINDOW = 5.0


# -- effects: what the program asks the interpreters to do ---------------------------------


class Effect(Generic[T]):
    """Something the program needs done; ``T`` is what the interpreter sends back.

    Effects are frozen dataclasses made with ``eq=False``: each is a request
    handed over once, never compared or hashed, and the equality methods
    would only add to the import time.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True, eq=False)
class Send(Effect[RawResponse]):
    """POST ``request`` to the token endpoint; give up at ``deadline_at`` (monotonic).

    Back: the RawResponse. Thrown in: a TokenTransportError (a
    ``DeadlineExceededError`` when the deadline ended it).
    """

    request: TokenRequest
    deadline_at: float


@dataclass(frozen=True, slots=True, eq=False)
class Sleep(Effect[None]):
    """Pause this caller for ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True, eq=False)
class Wait(Effect[bool]):
    """Wait until ``flight`` lands or the monotonic time ``until``. Back: whether it landed."""

    flight: Flight
    until: float


@dataclass(frozen=True, slots=True, eq=False)
class CallProvider(Effect[object]):
    """Call the user's provider: ``fetch()`` (awaited when ``is_async``). Back: what it returned.

    A sync provider called from async code runs in a worker thread.
    """

    fetch: Callable[[], object]
    is_async: bool


@dataclass(frozen=True, slots=True, eq=False)
class Detach(Effect[Token]):
    """Run ``program`` so that this caller's cancellation cannot abort it (others wait on it).

    On asyncio it runs as a task of its own; elsewhere, in line.
    """

    program: Program[Token]


@dataclass(frozen=True, slots=True, eq=False)
class StoreCall(Effect[object]):
    """Carry out ``op`` on the shared ``store``. Back: its raw result (``op.result`` types it).

    Thrown in: StoreUnavailable, which the program treats as a miss (SPEC F5).
    """

    store: TokenStore
    op: StoreOp
    shielded: bool = False  # run even while the caller is being cancelled (a lease release)


@dataclass(frozen=True, slots=True, eq=False)
class ReadAssertion(Effect[object]):
    """Read the externally issued assertion ``source`` holds now, for ``audience`` (SPEC A1).

    Back: what the source gave, which the program checks. Thrown in: what the
    read raised. The sync interpreter calls ``source.read(audience)``, the
    async one awaits ``source.aread(audience)`` (a blocking read runs in a
    worker thread there; an async function is awaited).
    """

    source: AssertionSource
    audience: str


@dataclass(frozen=True, slots=True, eq=False)
class FetchDocument(Effect[RawResponse]):
    """GET a metadata document at ``url`` over the token client; give up at ``deadline_at``.

    The same client, TLS settings, timeouts, size cap and bounded decoding as
    a token request, and no redirects. Back: the RawResponse. Thrown in: a
    TokenTransportError.
    """

    url: str
    deadline_at: float


#: Every effect the program can yield; the interpreters handle each one.
AnyEffect = Send | Sleep | Wait | CallProvider | Detach | StoreCall | FetchDocument | ReadAssertion

Program = Generator[AnyEffect, object, T]


class _Down(enum.Enum):
    """What a store operation gives when the store failed: carry on without it."""

    DOWN = "down"


DOWN = _Down.DOWN


def perform(effect: Effect[T]) -> Generator[AnyEffect, object, T]:
    """``result = yield from perform(effect)``: the one place an effect's result is typed.

    The interpreter sends back what ``effect`` produces, which its class declares.
    """
    return cast(T, (yield cast(AnyEffect, effect)))


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
        dpop: Prover | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.provider = provider
        self.dpop = dpop
        self.recorder = Recorder() if recorder is None else recorder
        self.dropped: str | None = None  # why the cached token was dropped, until a new one
        self.same_token_warned = False
        self.store = store
        self.names = names
        self.rejected: Token | None = None  # the token a 401 took out of the cache
        self.cache = cache
        self.retry = retry
        self.clock = clock
        self.monotonic: Callable[[], float] = time.monotonic
        self.source = source
        self.host = host
        self.lib_name = lib_name
        self.flight: Flight | None = None
        self.guard = threading.Lock()  # held for a few instructions, never across I/O
        #: For a grant made by from_issuer: what discovery has learned (set by TokenAuth).
        self.discovery: DiscoveryState | None = None
        #: With a shared store: the identity the entry names are made from (SPEC F1).
        self.identity: tuple[str, ...] = ()
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
                if self.discovery is not None:
                    yield from self._learn_resource(self.discovery)
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
            "the token fetch in progress for %s did not finish within %.1f s; fetching "
            "again (was its event loop stopped, or does its provider hang?)",
            self.source,
            self.wait_bound(),
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
        from ._store import Get, Lock, new_fence  # noqa: PLC0415  (only with a shared store)

        with self.guard:
            rejected, self.rejected = self.rejected, None
        current = self.cache.token if renewing else None
        shared = yield from self._shared(store, Get(names))
        if shared is DOWN:  # the store is failing: do not wait on it a second time for a lease
            return (yield from self._fetch(renewing=renewing, blocking=blocking, reason=reason))
        if (
            adopted := (yield from self._adopt(store, names, shared, rejected, current))
        ) is not None:
            return adopted
        fence, lease = new_fence(), self.lease_seconds()
        until: float | None = None  # from the first refusal: a holder's lease ends by then
        pause = POLL_FIRST
        while True:
            got = yield from self._shared(store, Lock(names, fence, max(1, int(lease * 1000))))
            if got is True:
                return (
                    yield from self._fetch_holding(
                        store,
                        names,
                        fence,
                        renewing=renewing,
                        blocking=blocking,
                        rejected=rejected,
                        reason=reason,
                    )
                )
            if until is None:
                until = self.monotonic() + lease + POLL_MAX
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
        *,
        renewing: bool,
        blocking: bool,
        rejected: Token | None,
        reason: str = COLD,
    ) -> Program[Token]:
        """Holding the lease: look once more, fetch, share the token, release the lease."""
        from ._store import Get, Put, Unlock  # noqa: PLC0415

        current = self.cache.token if renewing else None
        shared = yield from self._shared(store, Get(names))
        if isinstance(shared, Token) and self._usable(shared, rejected, current):
            yield from self._shared(store, Unlock(names, fence))
            return self._adopted(shared)
        if shared is not DOWN:
            self.recorder.store("miss")
        try:
            token = yield from self._fetch(renewing=renewing, blocking=blocking, reason=reason)
        except TokenError:
            yield from self._shared(store, Unlock(names, fence))  # failures are never stored
            raise
        except GeneratorExit:
            raise
        except BaseException:
            # Cancelled or interrupted: hand the lease back rather than make the fleet
            # wait it out (the unlock itself is shielded from the cancellation).
            yield from self._shared(store, Unlock(names, fence), shielded=True)
            raise
        expiry = self.cache.expiry_of(token)
        lifetime = NO_EXPIRY_TTL if expiry is None else expiry - self.now()
        if lifetime > 0:
            yield from self._shared(store, Put(names, token, max(1, int(lifetime * 1000))))
        yield from self._shared(store, Unlock(names, fence))
        return token

    def _adopt(
        self,
        store: TokenStore,
        names: EntryNames,
        shared: object,
        rejected: Token | None,
        current: Token | None,
    ) -> Program[Token | None]:
        """The shared token if we may use it; a rejected one is compare-and-deleted (SPEC F3)."""
        from ._store import DeleteIf  # noqa: PLC0415

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
        expiry = self.cache.expiry_of(shared)
        if expiry is not None and expiry <= self.now():
            return False
        if current is None:
            return True
        if shared.access_token == current.access_token:
            return False
        current_expiry = self.cache.expiry_of(current)
        if current_expiry is None:
            return True
        return expiry is None or expiry > current_expiry

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

    def _shared(
        self, store: TokenStore, op: StoreOp, *, shielded: bool = False
    ) -> Program[Token | bool | str | _Down | None]:
        """One store operation; a failure is DOWN, warned about once per outage (SPEC F5)."""
        from ._store import StoreUnavailable  # noqa: PLC0415

        try:
            result = op.result((yield from perform(StoreCall(store, op, shielded))))
        except StoreUnavailable as exc:
            self.recorder.store("failure")
            if not store.outage:
                store.outage = True
                logger.warning(
                    "token store %r failed (%s); fetching tokens in-process until it answers again",
                    store,
                    exc,
                    extra={"event": "store_failed", "token_endpoint": self.source},
                )
            return DOWN
        if store.outage:
            store.outage = False
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
        nonce_retried = False  # SPEC D2: one use_dpop_nonce retry per attempt
        moved = False  # the endpoint was looked up again in this acquisition
        while True:
            if self.monotonic() >= deadline_at:
                raise self._deadline_error(policy)
            grant = provider
            try:
                if self.discovery is not None:
                    grant = yield from self._discovered_grant(self.discovery, deadline_at)
                if grant.assertion_sources():
                    return (
                        yield from self._attempt_with_assertions(
                            grant, deadline_at, reason, retry.attempt
                        )
                    )
                request = grant.token_request(self.now())
                if self.dpop is not None:
                    request = self._with_proof(request, self.dpop)
                return (yield from self._send(grant, request, deadline_at, reason, retry.attempt))
            except _DEADLINE as exc:  # never retried: the time is up
                raise self._deadline_error(policy) from exc
            except TokenError as exc:
                if self.dpop is not None and _demands_nonce(exc):
                    if nonce_retried or self.dpop.nonce_for(grant.token_url) is None:
                        raise self._nonce_error(grant, exc, nonce_retried) from exc
                    nonce_retried = True
                    continue  # at once: a new proof with the nonce, a new client assertion
                if self.discovery is not None and grant is not provider and not moved:
                    moved = True
                    if (yield from self._endpoint_moved(self.discovery, grant, exc, deadline_at)):
                        continue  # the metadata names a new token endpoint: try it at once
                if (delay := self._retry_delay(retry, exc, reason)) is None:
                    raise
            nonce_retried = False
            yield from perform(Sleep(delay))

    # -- externally issued assertions: read for every attempt (SPEC A1, A3, A4) ------------

    def _attempt_with_assertions(
        self, grant: Grant, deadline_at: float, reason: str, number: int
    ) -> Program[Token]:
        """One attempt of a grant whose request carries assertions the platform issued.

        Every source is read now (A1), and a stale assertion once more (A3). A
        refusal that may be an assertion expiring on the way (REREAD_AFTER, one
        of them with at most NEAR_EXPIRY left) reads them all again and, if
        that gives something new, sends one more request; no more (A4). Each
        request gets its own DPoP proof (if on) and is observed like any other.
        """
        needs = grant.assertion_sources()
        read = yield from self._read_assertions(needs)
        request = self._assertion_request(grant, read)
        try:
            return (yield from self._send(grant, request, deadline_at, reason, number))
        except TokenEndpointError as exc:
            now = self.now()
            if exc.error not in REREAD_AFTER or not any(a.near_expiry(now) for a in read.values()):
                raise
            again = yield from self._read_assertions(needs)
            if _values(again) == _values(read):
                raise  # nothing new to send: the refusal stands
            logger.info(
                "token request to %s refused (%s) with an assertion about to expire; sending "
                "it once more with the assertion read again",
                self.source,
                exc.error,
                extra={
                    "event": "assertion_reread",
                    "token_endpoint": self.source,
                    "host": self.host,
                    "outcome": type(exc).__name__,
                },
            )
        request = self._assertion_request(grant, again)
        return (yield from self._send(grant, request, deadline_at, reason, number))

    def _assertion_request(self, grant: Grant, read: dict[str, Assertion]) -> TokenRequest:
        request = grant.token_request_with(self.now(), _values(read))
        if self.dpop is not None:
            request = self._with_proof(request, self.dpop)
        return request

    def _read_assertions(self, needs: tuple[AssertionNeed, ...]) -> Program[dict[str, Assertion]]:
        read: dict[str, Assertion] = {}
        for need in needs:
            read[need.name] = yield from self._read_fresh(need)
        return read

    def _read_fresh(self, need: AssertionNeed) -> Program[Assertion]:
        """SPEC A3: an assertion with more than ASSERTION_SKEW left, or the one a second read
        gives; never one that has expired (AssertionExpiredError, nothing sent)."""
        first = yield from self._read_one(need)
        if first.fresh(self.now()):
            return first
        logger.debug(
            "the assertion from %s expires within the skew; reading it again",
            first.source,
            extra={"event": "assertion_stale", "token_endpoint": self.source, "host": self.host},
        )
        second = yield from self._read_one(need)
        now = self.now()
        if second.expired(now):
            from ._assertions import expired_error  # noqa: PLC0415

            raise expired_error(second, now)
        if not second.fresh(now):
            logger.warning(
                "the assertion from %s expires in %.0f s and reading it again gave no newer "
                "one; sending it (is the platform still rotating it?)",
                second.source,
                (second.expires_at or now) - now,
                extra={
                    "event": "assertion_stale",
                    "token_endpoint": self.source,
                    "host": self.host,
                    "expires_in": (second.expires_at or now) - now,
                },
            )
        return second

    def _read_one(self, need: AssertionNeed) -> Program[Assertion]:
        from ._assertions import check_assertion, read_failed  # noqa: PLC0415

        try:
            value = yield from perform(ReadAssertion(need.source, need.audience))
        except TokenError:
            raise
        except Exception as exc:
            raise read_failed(exc, need.source.name) from exc
        return check_assertion(value, source=need.source.name, jwt_required=need.jwt_required)

    def _send(
        self, grant: Grant, request: TokenRequest, deadline_at: float, reason: str, number: int
    ) -> Program[Token]:
        """One token request, observed: its outcome, duration, rate limits (SPEC O2, O3, O5)."""
        attempt = self.recorder.begin(reason, number, self.monotonic())
        raw: RawResponse | None = None
        try:
            raw = yield from perform(Send(request, deadline_at))
            if self.dpop is None:
                token = grant.parse_response(raw, received_at=self.now())
            else:
                token = self._bound(grant, raw, self.dpop)
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

    def _with_proof(self, request: TokenRequest, dpop: Prover) -> TokenRequest:
        """SPEC D1: the token request with a fresh proof (and the AS's nonce, if known)."""
        proof = dpop.proof(request.method, request.url, self.now())
        return dataclasses.replace(request, headers=(*request.headers, ("DPoP", proof)))

    def _bound(self, provider: Grant, raw: RawResponse, dpop: Prover) -> Token:
        """SPEC D2: learn the AS nonce (from every answer); refuse an unbound token."""
        from ._dpop import DPoPNotBoundError  # noqa: PLC0415

        dpop.learn(provider.token_url, raw.headers.get("dpop-nonce"))
        token = provider.parse_response(raw, received_at=self.now(), dpop=True)
        if token.token_type != "DPoP" and not dpop.allow_bearer:
            raise DPoPNotBoundError(
                f"the authorization server at {self.source} ignored the DPoP proof and issued "
                f"a {token.token_type} token, which is not bound to the key; refusing it. Enable "
                "DPoP for this client on the server, or pass DPoP(allow_bearer=True) to use "
                "unbound tokens",
                status_code=raw.status_code,
            )
        return token

    def _nonce_error(self, provider: Grant, exc: TokenError, retried: bool) -> TokenError:
        from ._dpop import nonce_demand_error, normalize_htu  # noqa: PLC0415

        status = getattr(exc, "status_code", None) or 400
        return nonce_demand_error(normalize_htu(provider.token_url)[0], status, had_nonce=retried)

    # -- discovery: the token endpoint from the issuer's metadata (SPEC M1-M4) ------------

    def _discovered_grant(self, state: DiscoveryState, deadline_at: float) -> Program[Grant]:
        """The grant completed from the issuer's metadata: cached, or fetched on first need."""
        metadata = yield from self._server_metadata(state, deadline_at)
        supported = metadata.dpop_signing_alg_values_supported
        if self.dpop is not None and supported and self.dpop.algorithm not in supported:
            raise ConfigurationError(
                f"the authorization server {state.issuer} accepts DPoP proofs signed with "
                f"{', '.join(supported)}, not {self.dpop.algorithm}: pass "
                f"DPoP(algorithm={supported[0]!r}) (or a key for one of those)"
            )
        return state.resolved(metadata)

    def _server_metadata(
        self, state: DiscoveryState, deadline_at: float, gone: str | None = None
    ) -> Program[ServerMetadata]:
        """The issuer's metadata: fresh from the cache, or fetched (keeping the last good one).

        With a fleet store that shares documents, a miss looks there next, and
        what this process fetches it shares (SPEC M6). A document from the
        store is kept apart (``state.adopted``, this TokenAuth's alone): the
        process's cache holds only documents fetched here, so a TokenAuth for
        another credential never follows what a store entry says. ``gone`` is
        a token endpoint that stopped answering: a document naming it is not
        taken from the store.

        A refresh that fails for any reason (unreachable, an error status, a
        document that fails its checks) leaves the last good document in use,
        looked at again a minute later; only with no document yet does the
        failure reach the caller.
        """
        key = state.key
        cached, fresh = state.cache.get(key, self.monotonic())
        if cached is not None and fresh:
            return cached
        last, last_cache = cached, state.cache
        if self._document_store() is not None:
            adopted, adopted_fresh = state.adopted.get(key, self.monotonic())
            if adopted is not None and adopted.token_endpoint != gone:
                if adopted_fresh:
                    return adopted
                if last is None:
                    last, last_cache = adopted, state.adopted
            shared = yield from self._shared_metadata(state, gone)
            if shared is not None:
                return shared
        try:
            metadata = yield from self._fetch_server_metadata(state.issuer, deadline_at, state)
        except TokenError as exc:
            if last is None or isinstance(exc, _DEADLINE):
                raise
            last_cache.keep(key, self.monotonic())
            logger.warning(
                "refreshing the metadata of %s failed (%s); the last good document stays in use",
                state.issuer,
                type(exc).__name__,
                extra={
                    "event": "metadata_refresh_failed",
                    "token_endpoint": last.token_endpoint,
                    "outcome": type(exc).__name__,
                },
            )
            return last
        state.cache.put(key, metadata, self.monotonic())
        logger.info(
            "metadata of %s: token endpoint %s",
            state.issuer,
            redacted(metadata.token_endpoint),
            extra={
                "event": "metadata_fetched",
                "token_endpoint": redacted(metadata.token_endpoint),
                "issuer": state.issuer,
                "max_age": metadata.max_age,
            },
        )
        yield from self._share_metadata(state, metadata)
        return metadata

    def _document_store(self) -> TokenStore | None:
        """The fleet store, if it shares metadata and is not failing right now."""
        store = self.store
        if store is None or store.outage or not store.shares_documents or not self.identity:
            return None
        return store

    def _document_names(self, store: TokenStore, state: DiscoveryState) -> EntryNames:
        """Where this credential's copy of the issuer's metadata lives in the store.

        Named by the credential's whole identity as well as the issuer: only
        processes that hold this credential (its secret or key) can name the
        entry, so one that holds only the store key cannot point another
        client's credentials at an endpoint of its choosing.
        """
        from ._discovery import shared_metadata_identity  # noqa: PLC0415

        return store.document_names((*shared_metadata_identity(*state.key), *self.identity))

    def _shared_metadata(
        self, state: DiscoveryState, gone: str | None
    ) -> Program[ServerMetadata | None]:
        """The issuer's metadata as another process shared it, checked as if fetched."""
        from ._discovery import from_shared  # noqa: PLC0415
        from ._store import GetDocument  # noqa: PLC0415

        store = self._document_store()
        if store is None:
            return None
        text = yield from self._shared(store, GetDocument(self._document_names(store, state)))
        if not isinstance(text, str):
            return None
        found = from_shared(
            text,
            issuer=state.issuer,
            allow_insecure_http=state.discovered.allow_insecure_http,
            now=self.now(),
        )
        if found is None or found[0].token_endpoint == gone:
            return None
        metadata, remaining = found
        state.adopted.put(state.key, metadata, self.monotonic(), fresh_for=remaining)
        logger.info(
            "metadata of %s from the shared store: token endpoint %s",
            state.issuer,
            redacted(metadata.token_endpoint),
            extra={
                "event": "metadata_adopted",
                "token_endpoint": redacted(metadata.token_endpoint),
                "issuer": state.issuer,
                "max_age": remaining,
            },
        )
        return metadata

    def _share_metadata(self, state: DiscoveryState, metadata: ServerMetadata) -> Program[None]:
        """Put fetched metadata in the fleet store for as long as it is fresh (not while the
        store is failing: a hung store is not waited on twice)."""
        from ._discovery import shared_metadata  # noqa: PLC0415
        from ._store import PutDocument  # noqa: PLC0415

        store = self._document_store()
        if store is None:
            return
        text = shared_metadata(metadata, self.now() + metadata.max_age)
        if text is None:
            return
        ttl_ms = max(1, int(metadata.max_age * 1000))
        names = self._document_names(store, state)
        yield from self._shared(store, PutDocument(names, text, ttl_ms))

    def _fetch_server_metadata(
        self, issuer: str, deadline_at: float, state: DiscoveryState
    ) -> Program[ServerMetadata]:
        """Try each well-known location in turn (RFC 8414 §3.1, OpenID Discovery §4)."""
        from ._discovery import (  # noqa: PLC0415  (only grants made by issuer get here)
            NOT_HERE,
            DiscoveryError,
            metadata_urls,
            parse_server_metadata,
        )

        urls = metadata_urls(issuer)
        for url in urls:
            raw = yield from self._document(url, deadline_at)
            if raw.status_code in NOT_HERE:
                continue
            return parse_server_metadata(
                raw,
                issuer=issuer,
                url=url,
                allow_insecure_http=state.discovered.allow_insecure_http,
            )
        raise DiscoveryError(
            f"found no authorization server metadata for {issuer!r}: tried "
            f"{', '.join(redacted(u) for u in urls)}. Is the issuer right (exactly as the "
            "server names it)?",
            url=redacted(urls[0]),
            status_code=404,
        )

    def _document(self, url: str, deadline_at: float) -> Program[RawResponse]:
        """One metadata GET; a body the transport refused (too large, undecodable) is a
        DiscoveryError, like any other document that cannot be used."""
        from ._discovery import DiscoveryError  # noqa: PLC0415
        from ._errors import UnexpectedTokenResponseError  # noqa: PLC0415

        try:
            return (yield from perform(FetchDocument(url, deadline_at)))
        except DiscoveryError:
            raise
        except UnexpectedTokenResponseError as exc:
            raise DiscoveryError(
                f"{exc} ({redacted(url)})",
                url=redacted(url),
                status_code=exc.status_code,
                content_type=exc.content_type,
            ) from None

    def _endpoint_moved(
        self, state: DiscoveryState, grant: Grant, exc: TokenError, deadline_at: float
    ) -> Program[bool]:
        """The token endpoint stopped answering (refused, 404): look it up again.

        True when the fresh metadata names another endpoint, to be tried at
        once; False to go on by the retry rules (same endpoint, or the refresh
        failed and the last good document stays).
        """
        from ._discovery import endpoint_gone  # noqa: PLC0415

        if not endpoint_gone(exc):
            return False
        state.cache.expire(state.key)
        state.adopted.expire(state.key)
        metadata = yield from self._server_metadata(state, deadline_at, gone=grant.token_url)
        moved = metadata.token_endpoint != grant.token_url
        if moved:
            logger.info(
                "token endpoint %s stopped answering (%s); the metadata of %s now names %s",
                redacted(grant.token_url),
                type(exc).__name__,
                state.issuer,
                redacted(metadata.token_endpoint),
                extra={
                    "event": "token_endpoint_moved",
                    "token_endpoint": redacted(metadata.token_endpoint),
                    "outcome": type(exc).__name__,
                },
            )
        return moved

    # -- RFC 9728: what the protected resource says (SPEC M2, M3) -------------------------

    def _learn_resource(self, state: DiscoveryState) -> Program[None]:
        """Before fetching: read the protected resource metadata that is pending, once each.

        The first API request's well-known location (once per TokenAuth), and
        any ``resource_metadata`` a 401 named. A document that names only
        authorization servers the user did not allow stops here, with
        nothing sent anywhere.
        """
        probe, challenges = state.take()
        if not probe and not challenges:
            return
        deadline_at = self.monotonic() + self.retry.deadline
        if probe is not None:
            yield from self._probe_resource(state, probe, deadline_at)
        for metadata_url, request_url in challenges:
            yield from self._challenged_resource(state, metadata_url, request_url, deadline_at)

    def _probe_resource(
        self, state: DiscoveryState, request_url: str, deadline_at: float
    ) -> Program[None]:
        """RFC 9728 §3.1: look for the API's metadata at its well-known locations.

        Not there, not reachable, not a metadata document, or for another
        resource: carry on without it (most APIs publish none). A document
        that is there is used like one a challenge named.
        """
        from ._discovery import (  # noqa: PLC0415
            NOT_HERE,
            DiscoveryError,
            UntrustedAuthorizationServerError,
            parse_resource_metadata,
            resource_metadata_urls,
        )

        for url, identifier in resource_metadata_urls(request_url):
            try:
                raw = yield from self._document(url, deadline_at)
                if raw.status_code in NOT_HERE:
                    continue
                metadata = parse_resource_metadata(
                    raw,
                    url=url,
                    request_url=request_url,
                    identifier=identifier,
                    allow_insecure_http=state.discovered.allow_insecure_http,
                )
                self._use_resource(state, metadata)
            except UntrustedAuthorizationServerError:
                raise
            except (DiscoveryError, TokenTransportError) as exc:
                logger.debug(
                    "no usable protected resource metadata at %s (%s)",
                    redacted(url),
                    type(exc).__name__,
                    extra={"event": "resource_metadata_absent", "outcome": type(exc).__name__},
                )
                if isinstance(exc, TokenTransportError):
                    return  # the API's host is not reachable this way: do not try again
                continue
            return

    def _challenged_resource(
        self, state: DiscoveryState, metadata_url: str, request_url: str, deadline_at: float
    ) -> Program[None]:
        """RFC 9728 §5: the metadata a 401 named, fetched once; its checks apply every time."""
        from ._discovery import (  # noqa: PLC0415
            DiscoveryError,
            ResourceMetadata,
            parse_resource_metadata,
        )

        if metadata_url in state.outcomes:
            outcome = state.outcomes[metadata_url]
            if isinstance(outcome, DiscoveryError):
                raise _fresh(outcome)
            if isinstance(outcome, ResourceMetadata):
                self._use_resource(state, outcome, metadata_url)
            return
        outcome_: ResourceMetadata | DiscoveryError | None = None
        try:
            _check_metadata_url(metadata_url, state.discovered.allow_insecure_http)
            raw = yield from self._document(metadata_url, deadline_at)
            outcome_ = parse_resource_metadata(
                raw,
                url=metadata_url,
                request_url=request_url,
                allow_insecure_http=state.discovered.allow_insecure_http,
            )
            self._use_resource(state, outcome_, metadata_url)
        except DiscoveryError as exc:
            state.outcomes[metadata_url] = exc
            raise
        except TokenTransportError as exc:
            logger.warning(
                "the protected resource metadata %s named by a 401 could not be fetched (%s); "
                "going on with %s",
                redacted(metadata_url),
                type(exc).__name__,
                state.issuer,
                extra={"event": "resource_metadata_failed", "outcome": type(exc).__name__},
            )
        state.outcomes[metadata_url] = outcome_

    def _use_resource(
        self, state: DiscoveryState, metadata: ResourceMetadata, named_by: str | None = None
    ) -> None:
        """Adopt what a checked document says: the issuer to use (if allowed) and the resource."""
        from ._discovery import UntrustedAuthorizationServerError, choose_issuer  # noqa: PLC0415

        try:
            issuer = choose_issuer(
                metadata,
                configured=state.discovered.issuer,
                allowed=state.discovered.allowed_issuers,
            )
        except UntrustedAuthorizationServerError as exc:
            if named_by is not None:
                state.outcomes[named_by] = exc
            raise
        changed = (issuer, metadata.resource) != (state.issuer, state.resource)
        state.issuer, state.resource = issuer, metadata.resource
        if changed and self.store is not None and self.identity:
            self.names = self.store.entry_names(
                (*self.identity, f"as={issuer}", f"prm_resource={metadata.resource}")
            )
        logger.info(
            "protected resource %s: tokens from %s, resource=%s",
            redacted(metadata.url),
            issuer,
            metadata.resource,
            extra={"event": "resource_metadata", "issuer": issuer, "resource": metadata.resource},
        )

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


def _values(read: dict[str, Assertion]) -> dict[str, str]:
    return {name: assertion.value for name, assertion in read.items()}


def _demands_nonce(exc: TokenError) -> bool:
    """The token endpoint answered ``error=use_dpop_nonce`` (RFC 9449 §8)."""
    from ._dpop import USE_DPOP_NONCE  # noqa: PLC0415  (only with DPoP)

    return isinstance(exc, TokenEndpointError) and exc.error == USE_DPOP_NONCE


def _check_provided(token: object, source: str) -> Token:
    if not isinstance(token, Token):
        raise ProviderError(
            f"{source} returned {type(token).__name__}, not a Token: return "
            "Token(access_token, expires_at=...)"
        )
    return token


def redacted(url: str) -> str:
    from ._url import redacted_url  # noqa: PLC0415

    return redacted_url(url)


def _check_metadata_url(url: str, allow_insecure_http: bool) -> None:
    """A metadata URL a server named: https (loopback aside), or nothing is fetched."""
    from ._discovery import DiscoveryError  # noqa: PLC0415
    from ._url import check_token_url  # noqa: PLC0415

    try:
        check_token_url(url, allow_insecure_http=allow_insecure_http)
    except ConfigurationError:
        raise DiscoveryError(
            f"the 401 names protected resource metadata at {redacted(url)!r}, which is not an "
            "https URL this client fetches (plain http, a fragment, credentials in it): not "
            "fetched",
            url=redacted(url),
        ) from None


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
