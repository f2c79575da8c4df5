"""The token cache and its refresh policy. No I/O, no locks, no clock reads.

Time is always passed in: ``now`` from the user's clock (seconds since the
epoch, which token lifetimes are counted in) and, for failure timing, ``mono``
from a monotonic clock. A cool-down or a retry pause ends when either clock
says it has passed, so a wall clock stepped back (NTP, a VM resumed) cannot
keep callers on a remembered error, and a test's injected clock still moves
it forward. The drivers read the cache without a lock on the hot path: the
current entry is one immutable object swapped in a single assignment, so a
reader sees either the old entry or the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass

from ._errors import ConfigurationError, TokenError
from ._token import Token, is_finite

__all__ = ["MIN_LIFETIME", "Need", "TokenCache"]

#: Lifetimes below this many seconds are treated as this long (a token that
#: expires in a microsecond would otherwise be fetched again by every caller).
MIN_LIFETIME = 1.0

#: After a failed early renewal, wait this share of the remaining lifetime
#: (at least MIN_RETRY, at most MAX_RETRY seconds) before trying again.
RETRY_SHARE = 0.1
MIN_RETRY = 1.0
MAX_RETRY = 30.0


class Need(enum.Enum):
    """How badly a caller needs a new token."""

    NONE = "none"  # the cached token is fresh: use it
    OPTIONAL = "optional"  # early-renewal window: renew if nobody is, else use the old one
    REQUIRED = "required"  # no token, or expired: wait for a renewal
    FAILED = "failed"  # no usable token and a fetch just failed: raise its error (cool-down)


@dataclass(frozen=True, slots=True, eq=False)
class _Entry:
    token: Token
    refresh_at: float  # start of the early-renewal window (inf: no expiry known)
    expires_at: float  # inf: no expiry known
    retry_at: float = -math.inf  # no early renewal attempt before this (clock time)
    retry_mono: float = -math.inf  # ... or before this (monotonic time), whichever is first
    held: bool = False  # an early renewal brought this same access token back (hold)


@dataclass(frozen=True, slots=True, eq=False)
class _Failure:
    error: TokenError
    until: float  # clock time the cool-down ends
    until_mono: float  # monotonic time it ends; whichever comes first counts


class TokenCache:
    """One token, when to renew it, and compare-and-invalidate.

    ``leeway``: renew this many seconds before expiry, clamped to half the
    token's lifetime so short-lived tokens are not fetched on every request.
    ``default_lifetime``: lifetime assumed when the server gives no
    ``expires_in``; None (the default) means use the token until a 401.
    """

    __slots__ = ("_cooldown", "_default_lifetime", "_entry", "_failure", "_leeway")

    def __init__(
        self, *, leeway: float, default_lifetime: float | None, cooldown: float = 5.0
    ) -> None:
        self._leeway = _seconds("leeway", leeway, allow_zero=True)
        self._default_lifetime = (
            None
            if default_lifetime is None
            else _seconds("default_lifetime", default_lifetime, allow_zero=False)
        )
        self._cooldown = _seconds("cooldown", cooldown, allow_zero=True)
        self._entry: _Entry | None = None
        self._failure: _Failure | None = None

    @property
    def token(self) -> Token | None:
        entry = self._entry
        return None if entry is None else entry.token

    def expiry_of(self, token: Token) -> float | None:
        """When ``token`` expires by this cache's rules: its own expiry, else received_at
        plus ``default_lifetime``, else None (used until a 401)."""
        if token.expires_at is not None:
            return token.expires_at
        if self._default_lifetime is not None and token.received_at is not None:
            return token.received_at + self._default_lifetime
        return None

    def fresh(self, now: float) -> Token | None:
        """The token if it is fresh at ``now`` (the hot path), else None."""
        entry = self._entry
        if entry is not None and now < entry.refresh_at:
            return entry.token
        return None

    def need(
        self, now: float, mono: float = -math.inf
    ) -> tuple[Need, Token | None, TokenError | None]:
        """Whether a new token is needed at ``now``, the token usable meanwhile, or the error.

        FAILED comes with the error of a fetch that failed less than
        ``cooldown`` seconds ago while no valid token was at hand: every caller
        in that window gets that error without another request. ``mono`` is a
        monotonic time; a cool-down or retry pause is over once ``now`` or
        ``mono`` has passed its end.
        """
        entry = self._entry
        if entry is None or now >= entry.expires_at:
            failure = self._failure
            if failure is not None and now < failure.until and mono < failure.until_mono:
                return Need.FAILED, None, failure.error
            return Need.REQUIRED, None, None
        if now < entry.refresh_at or (now < entry.retry_at and mono < entry.retry_mono):
            return Need.NONE, entry.token, None
        return Need.OPTIONAL, entry.token, None

    def store(self, token: Token, now: float) -> Token:
        """Cache a newly obtained token and compute its renewal window.

        A lifetime shorter than MIN_LIFETIME is treated as MIN_LIFETIME.
        """
        self._failure = None
        start = token.received_at if token.received_at is not None else now
        expires_at = token.expires_at
        if expires_at is None and self._default_lifetime is not None:
            expires_at = start + self._default_lifetime
        if expires_at is not None:
            expires_at = max(expires_at, start + MIN_LIFETIME)
        if expires_at is None:
            self._entry = _Entry(token, math.inf, math.inf)
        else:
            window = min(self._leeway, max(expires_at - start, 0.0) / 2)
            self._entry = _Entry(token, expires_at - window, expires_at)
        return token

    def hold(self, token: Token, now: float, final: float) -> Token:
        """Cache a renewal that brought back the access token already cached.

        The next early renewal waits for the last ``final`` seconds before
        expiry (at most the token's renewal window); if the token is already
        in them, or this is the second time in a row, there is no early
        renewal: the token is renewed once it has expired. Either way a server
        that hands out the same token until it expires costs one or two
        requests more per lifetime, not one per request.
        """
        previous = self._entry
        again = (
            previous is not None
            and previous.held
            and previous.token.access_token == token.access_token
        )
        self.store(token, now)
        entry = self._entry
        if entry is None or not math.isfinite(entry.expires_at):
            return token
        last = entry.expires_at - min(final, entry.expires_at - entry.refresh_at)
        refresh_at = entry.expires_at if again or now >= last else last
        self._entry = dataclasses.replace(entry, refresh_at=refresh_at, held=True)
        return token

    def invalidate(self, token: Token) -> bool:
        """Drop the cached token only if it is ``token`` (compare-and-invalidate).

        Returns whether it was dropped. When a 401 comes back for a token that
        someone has already replaced, the cache is left alone and the caller
        replays with the current token: N concurrent 401s cost one fetch.
        """
        entry = self._entry
        if entry is not None and entry.token is token:
            self._entry = None
            return True
        return False

    def defer(self, now: float, mono: float = math.inf) -> None:
        """Someone else is renewing early: keep the token, look again after the retry pause."""
        entry = self._entry
        if entry is not None and now < entry.expires_at:
            delay = min(MAX_RETRY, max(MIN_RETRY, (entry.expires_at - now) * RETRY_SHARE))
            self._entry = _Entry(
                entry.token,
                entry.refresh_at,
                entry.expires_at,
                now + delay,
                mono + delay,
                entry.held,
            )

    def fetch_failed(self, error: TokenError, now: float, mono: float = math.inf) -> Token | None:
        """A fetch failed at ``now`` (monotonic ``mono``). Returns the token to keep using, or None.

        With a still-valid token: keep it, and try renewing again a little
        later (a tenth of the remaining lifetime, MIN_RETRY to MAX_RETRY s).
        Without one: remember the error for ``cooldown`` seconds (see need).
        """
        entry = self._entry
        if entry is not None and now < entry.expires_at:
            self.defer(now, mono)
            return entry.token
        if self._cooldown > 0:
            self._failure = _Failure(error, now + self._cooldown, mono + self._cooldown)
        return None


def _seconds(name: str, value: float, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ConfigurationError(f"{name} must be {bound} seconds, got {value!r}")
    return float(value)
