"""The token cache and its refresh policy. No I/O, no locks, no clock reads.

Time is always passed in. The drivers read the cache without a lock on the hot
path: the current entry is one immutable object swapped in a single
assignment, so a reader sees either the old entry or the new one, never a mix.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ._errors import ConfigurationError
from ._token import Token, is_finite

__all__ = ["Need", "TokenCache"]

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


@dataclass(frozen=True, slots=True)
class _Entry:
    token: Token
    refresh_at: float  # start of the early-renewal window (inf: no expiry known)
    expires_at: float  # inf: no expiry known
    retry_at: float = -math.inf  # no early renewal attempt before this


class TokenCache:
    """One token, when to renew it, and compare-and-invalidate.

    ``leeway``: renew this many seconds before expiry, clamped to half the
    token's lifetime so short-lived tokens are not fetched on every request.
    ``default_lifetime``: lifetime assumed when the server gives no
    ``expires_in``; None (the default) means use the token until a 401.
    """

    __slots__ = ("_default_lifetime", "_entry", "_leeway")

    def __init__(self, *, leeway: float, default_lifetime: float | None) -> None:
        self._leeway = _seconds("leeway", leeway, allow_zero=True)
        self._default_lifetime = (
            None
            if default_lifetime is None
            else _seconds("default_lifetime", default_lifetime, allow_zero=False)
        )
        self._entry: _Entry | None = None

    @property
    def token(self) -> Token | None:
        entry = self._entry
        return None if entry is None else entry.token

    def fresh(self, now: float) -> Token | None:
        """The token if it is fresh at ``now`` (the hot path), else None."""
        entry = self._entry
        if entry is not None and now < entry.refresh_at:
            return entry.token
        return None

    def need(self, now: float) -> tuple[Need, Token | None]:
        """Whether a new token is needed at ``now``, and the token usable meanwhile."""
        entry = self._entry
        if entry is None or now >= entry.expires_at:
            return Need.REQUIRED, None
        if now < entry.refresh_at or now < entry.retry_at:
            return Need.NONE, entry.token
        return Need.OPTIONAL, entry.token

    def store(self, token: Token, now: float) -> Token:
        """Cache a newly obtained token and compute its renewal window."""
        start = token.received_at if token.received_at is not None else now
        expires_at = token.expires_at
        if expires_at is None and self._default_lifetime is not None:
            expires_at = start + self._default_lifetime
        if expires_at is None:
            self._entry = _Entry(token, math.inf, math.inf)
        else:
            window = min(self._leeway, max(expires_at - start, 0.0) / 2)
            self._entry = _Entry(token, expires_at - window, expires_at)
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

    def renewal_failed(self, now: float) -> None:
        """An early renewal failed: keep the token, try again a little later."""
        entry = self._entry
        if entry is None:
            return
        delay = min(MAX_RETRY, max(MIN_RETRY, (entry.expires_at - now) * RETRY_SHARE))
        self._entry = _Entry(entry.token, entry.refresh_at, entry.expires_at, now + delay)


def _seconds(name: str, value: float, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ConfigurationError(f"{name} must be {bound} seconds, got {value!r}")
    return float(value)
