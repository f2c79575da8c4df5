"""What a TokenAuth counts about its tokens, and the snapshot ``auth.stats()`` returns. No I/O.

Nothing here runs on the hot path: a request that finds a fresh token in the
cache counts nothing. The counts are kept where something slow happens
anyway (a token request, a store operation, a 401), by the program
(``_program``) and the 401 rule (``_auth``), under a lock of their own held
for a few instructions. Durations come from the program's monotonic clock,
so stepping tests see exact numbers. When OpenTelemetry was asked for, the
same events also go to its instruments and spans (``_otel``).

Reason codes (SPEC O1): why a token was fetched.

=============== =====================================================
``cold``        no token yet
``expired``     the cached token has expired
``early``       the cached token is in its renewal window
``rejected``    a 401 from the API dropped the token
``invalidated`` ``auth.invalidate(token)`` dropped it
``forced``      ``auth.get_token(force=True)`` (or ``aget_token``) asked
``adopted``     the token came from the shared store: another process's
=============== =====================================================
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._token import RateLimit

if TYPE_CHECKING:
    from ._otel import Telemetry
    from ._snapshot import TokenStats

__all__ = [
    "ADOPTED",
    "CANCELLED",
    "COLD",
    "EARLY",
    "EXPIRED",
    "FORCED",
    "INVALIDATED",
    "RATE_FACTOR",
    "REASONS",
    "REJECTED",
    "SUCCESS",
    "Attempt",
    "Recorder",
    "outcome_of",
]

COLD = "cold"
EXPIRED = "expired"
EARLY = "early"
REJECTED = "rejected"
INVALIDATED = "invalidated"
FORCED = "forced"
ADOPTED = "adopted"
REASONS = (COLD, EXPIRED, EARLY, REJECTED, INVALIDATED, FORCED, ADOPTED)

#: The outcome of a token request that brought a token.
SUCCESS = "success"
#: The outcome of a token request its caller abandoned (cancelled, interrupted).
CANCELLED = "cancelled"

#: "Far above the rate the token lifetimes imply" (SPEC O6): more than this many
#: tokens fetched within one token lifetime, where one (two for short tokens,
#: renewed at half their lifetime) is what caching should cost.
RATE_FACTOR = 10


def outcome_of(exc: BaseException) -> str:
    """How a token request ended in ``exc``: the error's class name, or ``cancelled``."""
    return type(exc).__name__ if isinstance(exc, Exception) else CANCELLED


class Attempt:
    """One token request in progress: why, which attempt, since when, and its span if any."""

    __slots__ = ("number", "reason", "span", "started")

    def __init__(self, reason: str, number: int, started: float, span: Any) -> None:
        self.reason = reason
        self.number = number
        self.started = started
        self.span = span


class Recorder:
    """The counters behind ``TokenAuth.stats()``, and the OpenTelemetry instruments if asked."""

    __slots__ = (
        "__weakref__",
        "_counts",
        "_fetched_at",
        "_lock",
        "_quiet_until",
        "_rate_limit",
        "_requests",
        "_wait_seconds",
        "telemetry",
    )

    def __init__(self, telemetry: Telemetry | None = None) -> None:
        self.telemetry = telemetry
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._counts: Counter[str] = Counter()
        self._wait_seconds = 0.0
        self._rate_limit: RateLimit | None = None
        self._fetched_at: deque[float] = deque(maxlen=RATE_FACTOR + 1)
        self._quiet_until = -math.inf

    def reset_after_fork(self) -> None:
        """In a forked child: a lock the parent held at the fork is not ours to wait for."""
        self._lock = threading.Lock()

    # -- token requests -----------------------------------------------------------------

    def begin(self, reason: str, number: int, mono: float) -> Attempt:
        """A token request starts (attempt ``number``, at monotonic ``mono``)."""
        span = None if self.telemetry is None else self.telemetry.start_span(reason, number)
        return Attempt(reason, number, mono, span)

    def end(
        self,
        attempt: Attempt,
        outcome: str,
        mono: float,
        *,
        status: int | None = None,
        rate_limit: RateLimit | None = None,
    ) -> float:
        """The request ended with ``outcome`` at monotonic ``mono``; returns its duration."""
        seconds = max(0.0, mono - attempt.started)
        with self._lock:
            self._requests[attempt.reason, outcome] += 1
            if rate_limit is not None:
                self._rate_limit = rate_limit
        if self.telemetry is not None:
            self.telemetry.request(attempt, outcome, seconds, status, rate_limit)
        return seconds

    def fetched(self, mono: float, lifetime: float | None) -> tuple[int, float] | None:
        """A token was fetched: (count, seconds) if tokens come far too often (SPEC O6).

        More than RATE_FACTOR tokens within one ``lifetime`` of the newest:
        returns how many in how long, at most once per lifetime; else None.
        """
        with self._lock:
            times = self._fetched_at
            times.append(mono)
            if lifetime is None or len(times) <= RATE_FACTOR or mono < self._quiet_until:
                return None
            span = mono - times[0]
            if span >= lifetime:
                return None
            self._quiet_until = mono + lifetime
            return len(times), span

    def _count(self, name: str, seconds: float = 0.0) -> None:
        with self._lock:
            self._counts[name] += 1
            self._wait_seconds += seconds

    def retry(self, reason: str) -> None:
        self._count("retries")
        if self.telemetry is not None:
            self.telemetry.retry(reason)

    def same_token(self) -> None:
        self._count("same_token_renewals")

    # -- around the token: the shared store, 401s, callers waiting ------------------------

    def store(self, outcome: str) -> None:
        """A store look-up found a token (``hit``) or nothing usable (``miss``), or an op failed."""
        self._count(f"store_{outcome}")
        if self.telemetry is not None:
            self.telemetry.store(outcome)

    def replay(self, replayed: bool) -> None:
        self._count("replays" if replayed else "replays_refused")
        if self.telemetry is not None:
            self.telemetry.replay(replayed)

    def waited(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self._count("waits", seconds)
        if self.telemetry is not None:
            self.telemetry.waited(seconds)

    def snapshot(self) -> TokenStats:
        from ._snapshot import TokenStats  # noqa: PLC0415 - built only when asked for

        with self._lock:
            counts = self._counts
            return TokenStats(
                token_requests=MappingProxyType(dict(self._requests)),
                retries=counts["retries"],
                replays=counts["replays"],
                replays_refused=counts["replays_refused"],
                store_hits=counts["store_hit"],
                store_misses=counts["store_miss"],
                store_failures=counts["store_failure"],
                waits=counts["waits"],
                wait_seconds=self._wait_seconds,
                same_token_renewals=counts["same_token_renewals"],
                rate_limit=self._rate_limit,
            )
