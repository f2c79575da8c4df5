"""When to try the token endpoint again. No I/O, no clock reads, no sleeping.

The drivers ask ``RetryState.delay(error, now)`` after each failed attempt and
sleep for what it returns, or give up when it returns None.
"""

from __future__ import annotations

import email.utils
import random
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from ._errors import (
    ConfigurationError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    TokenTransportError,
    UnexpectedTokenResponseError,
)

__all__ = [
    "MAX_RETRY_SECONDS",
    "RETRYABLE_STATUS",
    "RetryPolicy",
    "RetryState",
    "parse_retry_after",
]

#: Statuses that say "try again later" rather than "this request is wrong".
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() admits '¹' and '٣'

#: The most ``backoff``, ``max_backoff``, ``retry_after_cap`` and ``deadline`` may be: one
#: day. Longer is never what a caller waiting for a token wants, and values far beyond it
#: overflowed ``time.sleep`` (or slept for ever in async).
MAX_RETRY_SECONDS = 24 * 3600

#: Retries after which the backoff bound stops doubling: 2**64 already exceeds any cap.
_MAX_DOUBLINGS = 64

#: OAuth error codes that mean "later", unlike the RFC 6749 §5.2 ones.
RETRYABLE_CODES = frozenset({"temporarily_unavailable", "slow_down"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How TokenAuth retries a token request that failed for a passing reason.

    Retried: transport errors (connection refused, TLS handshake cut, timeouts;
    not a certificate that fails verification, which would fail every time)
    and HTTP 408, 429, 500, 502, 503, 504 without an RFC 6749 §5.2 error code.
    Never retried: ``invalid_client``, ``invalid_grant`` and every other OAuth
    error code, malformed token responses, redirects, oversized bodies.

    ``attempts``: total tries for one acquisition, the first included (1 turns
    retrying off). ``backoff``: the first delay's upper bound in seconds; each
    retry doubles it, up to ``max_backoff``; the actual delay is drawn
    uniformly below that bound ("full jitter"). ``retry_after_cap``: the most a
    ``Retry-After`` header may make us wait. ``deadline``: the whole
    acquisition, sleeps included, gives up rather than pass this many seconds.
    ``random``: returns a float in [0, 1); injectable for tests. The four
    durations are seconds from 0 to MAX_RETRY_SECONDS (one day), ``deadline``
    more than 0 (SPEC T11).
    """

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    retry_after_cap: float = 30.0
    deadline: float = 30.0
    random: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigurationError(f"attempts must be a whole number, got {self.attempts!r}")
        if self.attempts < 1:
            raise ConfigurationError(
                f"attempts must be 1 or more (1 means no retries), got {self.attempts}"
            )
        for name in ("backoff", "max_backoff", "retry_after_cap", "deadline"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= MAX_RETRY_SECONDS  # False for NaN; no float() overflow
            ):
                raise ConfigurationError(
                    f"{name} must be a number of seconds, zero or more and at most "
                    f"{MAX_RETRY_SECONDS} (one day), got {_shown(value)}"
                )
        if self.deadline == 0:
            raise ConfigurationError(
                "deadline must be more than 0 seconds: with 0, no attempt would ever be made"
            )
        sample = self.random() if callable(self.random) else None
        if not isinstance(sample, float) or not 0.0 <= sample < 1.0:
            raise ConfigurationError(
                "random must be a callable returning a float in [0, 1), like random.random"
            )

    @classmethod
    def off(cls) -> RetryPolicy:
        """One attempt, no retries."""
        return cls(attempts=1)

    def start(self, now: float) -> RetryState:
        """A fresh count of attempts for one acquisition starting at ``now``."""
        return RetryState(self, started=now)


def _shown(value: object) -> str:
    """A refused value for a message: its repr, shortened (10**400 has 401 digits)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def retryable(error: TokenError) -> bool:
    """Whether an attempt that failed with ``error`` is worth repeating."""
    if isinstance(error, TokenTransportError):
        return not _certificate_failure(error)
    if isinstance(error, TokenEndpointError):
        return error.error in RETRYABLE_CODES and error.status_code in RETRYABLE_STATUS
    if isinstance(error, UnexpectedTokenResponseError):
        return error.status_code in RETRYABLE_STATUS
    return False


def _certificate_failure(error: BaseException) -> bool:
    """A failed certificate check: it will fail the same way on every attempt."""
    current: BaseException | None = error
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(slots=True, eq=False)
class RetryState:
    """Attempts made so far for one acquisition."""

    policy: RetryPolicy
    started: float
    attempt: int = 1

    def remaining(self, now: float) -> float:
        """Seconds left before the deadline, at ``now``."""
        return self.started + self.policy.deadline - now

    def delay(self, error: TokenError, now: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up with ``error``."""
        policy = self.policy
        if self.attempt >= policy.attempts or not retryable(error):
            return None
        doublings = min(self.attempt - 1, _MAX_DOUBLINGS)
        bound = min(policy.max_backoff, policy.backoff * 2.0**doublings)
        delay = bound * policy.random()
        retry_after = error.retry_after if isinstance(error, TokenResponseError) else None
        if retry_after is not None:
            delay = max(delay, min(retry_after, policy.retry_after_cap))
        if now + delay - self.started > policy.deadline:
            return None
        self.attempt += 1
        return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date, in seconds from ``now``.

    None when absent or unusable.
    """
    if value is None:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return float(min(int(value[:12]), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
