"""The token cache and its refresh policy, stepped with explicit times (no clock, no sleeps).

DESIGN "Refresh early, but never absurdly" and "Compare-and-invalidate on 401";
SPEC R4/R5 for how expiry is used.
"""

from __future__ import annotations

import math

import pytest

from httpx_tokenauth import ConfigurationError, Token, TokenEndpointError
from httpx_tokenauth._cache import MAX_RETRY, MIN_RETRY, Need, TokenCache

NOW = 1_000_000.0


def _token(lifetime: float | None, *, received_at: float | None = NOW, value: str = "tok") -> Token:
    """A token obtained at ``received_at`` that lives ``lifetime`` seconds (None: no expiry)."""
    start = NOW if received_at is None else received_at
    expires_at = None if lifetime is None else start + lifetime
    return Token(value, expires_at=expires_at, received_at=received_at)


def _cache(leeway: float = 60, default_lifetime: float | None = None) -> TokenCache:
    return TokenCache(leeway=leeway, default_lifetime=default_lifetime)


# --- Empty cache, store --------------------------------------------------------------------------


def test_empty_cache_requires_a_token() -> None:
    """An empty cache has no fresh token and says a token is REQUIRED."""
    cache = _cache()
    assert cache.token is None
    assert cache.fresh(NOW) is None
    assert cache.need(NOW) == (Need.REQUIRED, None, None)


def test_store_returns_and_keeps_the_same_token_object() -> None:
    """store() returns the token it was given, and the cache hands out that very object."""
    cache = _cache()
    token = _token(3600)
    assert cache.store(token, NOW) is token
    assert cache.token is token
    assert cache.fresh(NOW) is token
    assert cache.need(NOW) == (Need.NONE, token, None)


# --- Leeway and the half-lifetime clamp ----------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "need", "fresh"),
    [
        (0.0, Need.NONE, True),
        (3539.5, Need.NONE, True),
        (3540.0, Need.OPTIONAL, False),
        (3599.5, Need.OPTIONAL, False),
        (3600.0, Need.REQUIRED, False),
        (10_000.0, Need.REQUIRED, False),
    ],
)
def test_leeway_opens_early_renewal_window_before_expiry(
    offset: float, need: Need, fresh: bool
) -> None:
    """A 3600 s token, 60 s leeway: fresh until 3540 s, OPTIONAL until 3600 s, then REQUIRED."""
    cache = _cache(leeway=60)
    token = cache.store(_token(3600), NOW)
    assert cache.fresh(NOW + offset) is (token if fresh else None)
    expected_token = None if need is Need.REQUIRED else token
    assert cache.need(NOW + offset) == (need, expected_token, None)


@pytest.mark.parametrize(
    ("lifetime", "leeway", "refresh_after"),
    [
        (30.0, 60.0, 15.0),
        (100.0, 60.0, 50.0),
        (120.0, 60.0, 60.0),
        (200.0, 60.0, 140.0),
        (2.0, 60.0, 1.0),
        (3600.0, 0.0, 3600.0),
    ],
)
def test_renewal_window_is_clamped_to_half_the_lifetime(
    lifetime: float, leeway: float, refresh_after: float
) -> None:
    """The early window is min(leeway, lifetime / 2): a 30 s token is not renewed on every call."""
    cache = _cache(leeway=leeway)
    token = cache.store(_token(lifetime), NOW)
    assert cache.fresh(NOW + refresh_after - 0.25) is token
    assert cache.fresh(NOW + refresh_after) is None
    expected = Need.REQUIRED if refresh_after == lifetime else Need.OPTIONAL
    assert cache.need(NOW + refresh_after)[0] is expected
    assert cache.need(NOW + lifetime) == (Need.REQUIRED, None, None)


def test_zero_leeway_never_offers_early_renewal() -> None:
    """With leeway 0 the token is fresh right up to expiry and REQUIRED from then on."""
    cache = _cache(leeway=0)
    token = cache.store(_token(100), NOW)
    assert cache.need(NOW + 99.75) == (Need.NONE, token, None)
    assert cache.need(NOW + 100) == (Need.REQUIRED, None, None)


def test_window_counts_from_received_at_not_store_time() -> None:
    """R4: the lifetime runs from when the response was received, even if stored later."""
    cache = _cache(leeway=60)
    token = cache.store(_token(3600, received_at=NOW - 100), NOW)
    assert cache.fresh(NOW + 3439.5) is token
    assert cache.need(NOW + 3440) == (Need.OPTIONAL, token, None)
    assert cache.need(NOW + 3500) == (Need.REQUIRED, None, None)


def test_half_lifetime_clamp_uses_the_lifetime_from_received_at() -> None:
    """R4: a 30 s token received 10 s before it is stored renews at half of 30 s, not of 20 s."""
    cache = _cache(leeway=60)
    token = cache.store(_token(30, received_at=NOW - 10), NOW)
    assert cache.fresh(NOW + 4.5) is token
    assert cache.need(NOW + 5) == (Need.OPTIONAL, token, None)
    assert cache.need(NOW + 20) == (Need.REQUIRED, None, None)


def test_window_counts_from_store_time_without_received_at() -> None:
    """A token with no received_at has its lifetime (for the clamp) counted from store time."""
    cache = _cache(leeway=60)
    token = cache.store(Token("tok", expires_at=NOW + 30), NOW)
    assert cache.fresh(NOW + 14.5) is token
    assert cache.need(NOW + 15) == (Need.OPTIONAL, token, None)


def test_token_already_expired_when_stored_is_required_at_once() -> None:
    """A token whose expiry is already past when stored is never handed out."""
    cache = _cache(leeway=60)
    cache.store(_token(10, received_at=NOW - 20), NOW)
    assert cache.fresh(NOW) is None
    assert cache.need(NOW) == (Need.REQUIRED, None, None)


# --- No expires_in, default_lifetime -------------------------------------------------------------


def test_r5_token_without_expiry_used_until_invalidated() -> None:
    """R5: a token with no expires_in stays fresh forever, until a 401 invalidates it."""
    cache = _cache(leeway=60)
    token = cache.store(_token(None), NOW)
    for later in (NOW, NOW + 3600, NOW + 10**9):
        assert cache.fresh(later) is token
        assert cache.need(later) == (Need.NONE, token, None)
    assert cache.invalidate(token) is True
    assert cache.need(NOW + 1) == (Need.REQUIRED, None, None)


def test_r5_default_lifetime_applies_to_tokens_without_expiry() -> None:
    """R5: with default_lifetime=600 a token without expiry renews at 540 s and expires at 600 s."""
    cache = _cache(leeway=60, default_lifetime=600)
    token = cache.store(_token(None), NOW)
    assert cache.fresh(NOW + 539.5) is token
    assert cache.need(NOW + 540) == (Need.OPTIONAL, token, None)
    assert cache.need(NOW + 600) == (Need.REQUIRED, None, None)
    assert token.expires_at is None


def test_r5_default_lifetime_is_clamped_like_a_real_one() -> None:
    """R5: a default lifetime of 100 s with 60 s leeway renews at half-life, 50 s."""
    cache = _cache(leeway=60, default_lifetime=100)
    token = cache.store(_token(None), NOW)
    assert cache.fresh(NOW + 49.5) is token
    assert cache.need(NOW + 50) == (Need.OPTIONAL, token, None)
    assert cache.need(NOW + 100) == (Need.REQUIRED, None, None)


def test_default_lifetime_ignored_when_the_server_gave_expires_in() -> None:
    """A server-given expiry wins over default_lifetime, longer or shorter."""
    cache = _cache(leeway=60, default_lifetime=600)
    token = cache.store(_token(3600), NOW)
    assert cache.need(NOW + 3000) == (Need.NONE, token, None)
    short = cache.store(_token(100, value="short"), NOW)
    assert cache.need(NOW + 100) == (Need.REQUIRED, None, None)
    assert cache.need(NOW + 49.5) == (Need.NONE, short, None)


# --- Compare-and-invalidate ----------------------------------------------------------------------


def test_invalidate_drops_only_the_token_that_was_used() -> None:
    """A 401 for the cached token drops it; a second invalidate of the same token is a no-op."""
    cache = _cache()
    token = cache.store(_token(3600), NOW)
    assert cache.invalidate(token) is True
    assert cache.token is None
    assert cache.need(NOW) == (Need.REQUIRED, None, None)
    assert cache.invalidate(token) is False


def test_invalidate_of_a_replaced_token_keeps_the_new_one() -> None:
    """Compare-and-invalidate: a 401 for an older token leaves the renewed token in place."""
    cache = _cache()
    old = cache.store(_token(3600, value="old"), NOW)
    new = cache.store(_token(3600, value="new"), NOW + 1)
    assert cache.invalidate(old) is False
    assert cache.token is new
    assert cache.fresh(NOW + 2) is new


def test_invalidate_compares_identity_not_value() -> None:
    """Compare-and-invalidate: an equal-looking but different Token object does not match."""
    cache = _cache()
    token = cache.store(_token(3600), NOW)
    lookalike = Token(token.access_token, expires_at=token.expires_at, received_at=NOW)
    assert cache.invalidate(lookalike) is False
    assert cache.token is token


def test_invalidate_on_empty_cache_is_false() -> None:
    """Invalidating with nothing cached drops nothing and says so."""
    assert _cache().invalidate(_token(3600)) is False


# --- fetch_failed: early renewal failures (retry window) ----------------------------------------

ERROR = TokenEndpointError("token endpoint refused", status_code=400, error="server_error")


@pytest.mark.parametrize(
    ("lifetime", "leeway", "failed_at", "retry_after"),
    [
        (3600.0, 60.0, 3550.0, 5.0),  # 10 % of the 50 s left
        (3600.0, 60.0, 3595.0, MIN_RETRY),  # 10 % of 5 s is below the minimum
        (4000.0, 2000.0, 3000.0, MAX_RETRY),  # 10 % of 1000 s is above the maximum
    ],
)
def test_failed_early_renewal_defers_the_next_attempt(
    lifetime: float, leeway: float, failed_at: float, retry_after: float
) -> None:
    """After a failed early renewal the old token is used (NONE) until retry time, then OPTIONAL."""
    cache = _cache(leeway=leeway)
    token = cache.store(_token(lifetime), NOW)
    assert cache.need(NOW + failed_at) == (Need.OPTIONAL, token, None)
    assert cache.fetch_failed(ERROR, NOW + failed_at) is token
    assert cache.token is token
    assert cache.need(NOW + failed_at) == (Need.NONE, token, None)
    assert cache.need(NOW + failed_at + retry_after - 0.25) == (Need.NONE, token, None)
    assert cache.need(NOW + failed_at + retry_after) == (Need.OPTIONAL, token, None)


def test_failed_early_renewal_never_extends_past_expiry() -> None:
    """A retry window that reaches past expiry does not keep an expired token in use."""
    cache = _cache(leeway=60)
    token = cache.store(_token(3600), NOW)
    assert cache.fetch_failed(ERROR, NOW + 3599.5) is token  # retry at +3600.5, expiry +3600
    assert cache.need(NOW + 3599.75) == (Need.NONE, token, None)
    assert cache.need(NOW + 3600) == (Need.REQUIRED, None, None)


def test_failed_early_renewal_again_pushes_the_retry_further() -> None:
    """A second failure at the retry time schedules the next attempt from then."""
    cache = _cache(leeway=60)
    token = cache.store(_token(3600), NOW)
    cache.fetch_failed(ERROR, NOW + 3550)  # retry at +3555
    cache.fetch_failed(ERROR, NOW + 3555)  # 45 s left: retry at +3559.5
    assert cache.need(NOW + 3559) == (Need.NONE, token, None)
    assert cache.need(NOW + 3559.5) == (Need.OPTIONAL, token, None)


def test_store_after_failed_renewal_starts_afresh() -> None:
    """A newly stored token has no leftover retry delay and a fresh window of its own."""
    cache = _cache(leeway=60)
    cache.store(_token(3600, value="old"), NOW)
    cache.fetch_failed(ERROR, NOW + 3550)
    new = cache.store(_token(100, received_at=NOW + 3551, value="new"), NOW + 3551)
    assert cache.need(NOW + 3551 + 50) == (Need.OPTIONAL, new, None)


# --- fetch_failed without a usable token: the cool-down ------------------------------------------


@pytest.mark.parametrize("state", ["empty", "expired", "invalidated"])
def test_failed_fetch_without_token_is_remembered_for_the_cooldown(state: str) -> None:
    """With no valid token, need() is FAILED with the fetch's error until the cool-down ends."""
    cache = TokenCache(leeway=60, default_lifetime=None, cooldown=5)
    if state == "expired":
        cache.store(_token(100, received_at=NOW - 200), NOW - 200)
    elif state == "invalidated":
        assert cache.invalidate(cache.store(_token(3600), NOW)) is True
    assert cache.fetch_failed(ERROR, NOW) is None
    assert cache.fresh(NOW) is None
    assert cache.need(NOW) == (Need.FAILED, None, ERROR)
    assert cache.need(NOW + 4.75) == (Need.FAILED, None, ERROR)
    assert cache.need(NOW + 5) == (Need.REQUIRED, None, None)


def test_failed_fetch_cooldown_defaults_to_five_seconds() -> None:
    """The cool-down after a failed fetch with no token defaults to 5 s."""
    cache = _cache()
    assert cache.fetch_failed(ERROR, NOW) is None
    assert cache.need(NOW + 4.75) == (Need.FAILED, None, ERROR)
    assert cache.need(NOW + 5) == (Need.REQUIRED, None, None)


def test_zero_cooldown_never_reports_failed() -> None:
    """With cooldown=0 a failed fetch is not remembered: the next caller fetches again."""
    cache = TokenCache(leeway=60, default_lifetime=None, cooldown=0)
    assert cache.fetch_failed(ERROR, NOW) is None
    assert cache.need(NOW) == (Need.REQUIRED, None, None)


def test_store_clears_a_remembered_failure() -> None:
    """A token stored during the cool-down is used at once; the old error is forgotten."""
    cache = TokenCache(leeway=60, default_lifetime=None, cooldown=30)
    cache.fetch_failed(ERROR, NOW)
    token = cache.store(_token(3600, received_at=NOW + 1), NOW + 1)
    assert cache.need(NOW + 2) == (Need.NONE, token, None)
    assert cache.invalidate(token) is True
    assert cache.need(NOW + 3) == (Need.REQUIRED, None, None)


def test_failed_renewal_with_valid_token_sets_no_cooldown() -> None:
    """A failure while a valid token is held never turns into FAILED, even after expiry."""
    cache = TokenCache(leeway=60, default_lifetime=None, cooldown=30)
    token = cache.store(_token(3600), NOW)
    assert cache.fetch_failed(ERROR, NOW + 3590) is token
    assert cache.need(NOW + 3600) == (Need.REQUIRED, None, None)


# --- Argument validation -------------------------------------------------------------------------


@pytest.mark.parametrize("leeway", [0, 0.0, 1, 60, 59.5, 10**6])
def test_valid_leeway_accepted(leeway: float) -> None:
    """A leeway of zero or more finite seconds is accepted."""
    cache = TokenCache(leeway=leeway, default_lifetime=None)
    assert cache.need(NOW) == (Need.REQUIRED, None, None)


@pytest.mark.parametrize(
    "leeway",
    [-1, -0.5, math.nan, math.inf, -math.inf, True, "60", None, pytest.param(10**400, id="1e400")],
)
def test_bad_leeway_refused(leeway: object) -> None:
    """A negative, non-finite, boolean, non-numeric or overflowing leeway is refused."""
    with pytest.raises(ConfigurationError) as exc_info:
        TokenCache(leeway=leeway, default_lifetime=None)  # type: ignore[arg-type]
    assert exc_info.type is ConfigurationError


@pytest.mark.parametrize(
    "default_lifetime",
    [0, 0.0, -1, math.nan, math.inf, False, "600", pytest.param(10**400, id="1e400")],
)
def test_bad_default_lifetime_refused(default_lifetime: object) -> None:
    """A default_lifetime that is not a finite number above zero is a ConfigurationError."""
    with pytest.raises(ConfigurationError) as exc_info:
        TokenCache(leeway=60, default_lifetime=default_lifetime)  # type: ignore[arg-type]
    assert exc_info.type is ConfigurationError


@pytest.mark.parametrize(
    "cooldown", [-1, math.nan, math.inf, True, "5", None, pytest.param(10**400, id="1e400")]
)
def test_bad_cooldown_refused(cooldown: object) -> None:
    """A cool-down that is not a finite number of zero or more seconds is a ConfigurationError."""
    with pytest.raises(ConfigurationError) as exc_info:
        TokenCache(leeway=60, default_lifetime=None, cooldown=cooldown)  # type: ignore[arg-type]
    assert exc_info.type is ConfigurationError


def test_cache_configuration_is_keyword_only() -> None:
    """TokenCache takes its settings by keyword only, so leeway and lifetime cannot be swapped."""
    with pytest.raises(TypeError):
        TokenCache(60, None)  # type: ignore[misc]
