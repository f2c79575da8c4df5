"""TokenStats, the snapshot ``auth.stats()`` returns; loaded when first asked for.

Counting happens in ``_stats.Recorder``; this module only holds the value it
hands out, so that ``import httpx_tokenauth`` does not build it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._token import RateLimit

__all__ = ["TokenStats"]


@dataclass(frozen=True, slots=True)
class TokenStats:
    """A snapshot of what a TokenAuth did to get its tokens, since it was made.

    ``token_requests``: requests to the token endpoint (each attempt, retries
    included) or calls of your provider, by ``(reason, outcome)``; ``outcome``
    is ``"success"``, the name of the TokenError that ended it
    (``"UnexpectedTokenResponseError"``, ``"InvalidClientError"``, ...), or
    ``"cancelled"``. A token adopted from a shared store is not a token
    request: it is a ``store_hits``.
    ``retries``: attempts after a failed first one. ``replays``: API requests
    sent again with a new token after a 401; ``replays_refused``: 401s that
    were handed back instead (not about our token, a challenge a new token
    cannot answer, or a body that cannot be sent twice).
    ``store_hits`` / ``store_misses``: shared-store look-ups that found a token
    to adopt / nothing usable; ``store_failures``: store operations that failed.
    ``waits`` / ``wait_seconds``: times a request (or ``get_token``) had no
    fresh cached token and went to get one, and the seconds they spent.
    ``same_token_renewals``: early renewals that brought back the token
    already in use (SPEC O4). ``rate_limit``: what the last token endpoint
    response said about its rate limit, or None.
    """

    token_requests: Mapping[tuple[str, str], int]
    retries: int = 0
    replays: int = 0
    replays_refused: int = 0
    store_hits: int = 0
    store_misses: int = 0
    store_failures: int = 0
    waits: int = 0
    wait_seconds: float = 0.0
    same_token_renewals: int = 0
    rate_limit: RateLimit | None = None

    def requests(self, *, reason: str | None = None, outcome: str | None = None) -> int:
        """Token requests, all of them or only those of one ``reason`` and/or ``outcome``."""
        return sum(
            count
            for (r, o), count in self.token_requests.items()
            if (reason is None or r == reason) and (outcome is None or o == outcome)
        )
