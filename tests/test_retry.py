"""The retry policy as plain functions: which failures are retried, and how long to wait."""

from __future__ import annotations

import pytest

from httpx_tokenauth import (
    ConfigurationError,
    InvalidClientError,
    InvalidTokenResponseError,
    RetryPolicy,
    TokenEndpointError,
    TokenTransportError,
    UnexpectedTokenResponseError,
)
from httpx_tokenauth._retry import parse_retry_after

NOW = 1_700_000_000.0


def unexpected(status: int, retry_after: float | None = None) -> UnexpectedTokenResponseError:
    exc = UnexpectedTokenResponseError("x", status_code=status, content_type=None)
    exc.retry_after = retry_after
    return exc


def endpoint(status: int, code: str) -> TokenEndpointError:
    return TokenEndpointError("x", status_code=status, error=code)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TokenTransportError("x", token_url="https://as/t"), True),
        *[(unexpected(s), True) for s in (408, 429, 500, 502, 503, 504)],
        *[(unexpected(s), False) for s in (200, 302, 400, 401, 403, 404, 501)],
        (endpoint(503, "temporarily_unavailable"), True),
        (endpoint(429, "slow_down"), True),
        (endpoint(400, "temporarily_unavailable"), False),
        (InvalidClientError("x", status_code=503, error="invalid_client"), False),
        (endpoint(500, "invalid_grant"), False),
        (endpoint(500, "server_error"), False),
        (InvalidTokenResponseError("x", status_code=200), False),
    ],
)
def test_what_is_retried(error: Exception, retried: bool) -> None:
    """Transport errors, 408/429/5xx without an OAuth code, and 'later' codes only."""
    state = RetryPolicy(attempts=2, random=lambda: 0.5).start(NOW)
    assert (state.delay(error, NOW) is not None) is retried  # type: ignore[arg-type]


def test_full_jitter_doubles_the_bound_up_to_the_cap() -> None:
    """Delay = bound x random(), bound = backoff x 2^(n-1) capped at max_backoff."""
    policy = RetryPolicy(
        attempts=6, backoff=0.5, max_backoff=3.0, deadline=86_400, random=lambda: 0.5
    )
    state = policy.start(NOW)
    delays = [state.delay(unexpected(503), NOW) for _ in range(6)]
    assert delays == [0.25, 0.5, 1.0, 1.5, 1.5, None]


def test_jitter_draws_below_the_bound() -> None:
    """random() = 0 gives no wait; close to 1 gives just under the bound."""
    assert RetryPolicy(random=lambda: 0.0).start(NOW).delay(unexpected(503), NOW) == 0.0
    delay = RetryPolicy(random=lambda: 0.999).start(NOW).delay(unexpected(503), NOW)
    assert delay is not None
    assert 0.49 < delay < 0.5


def test_retry_after_raises_the_delay_up_to_its_cap() -> None:
    """Retry-After is a floor on the delay, itself capped by retry_after_cap."""
    policy = RetryPolicy(attempts=3, retry_after_cap=10, deadline=100, random=lambda: 0.1)
    assert policy.start(NOW).delay(unexpected(429, retry_after=7), NOW) == 7
    assert policy.start(NOW).delay(unexpected(429, retry_after=70), NOW) == 10


def test_deadline_stops_retries_that_would_overrun_it() -> None:
    """A delay that would end past started + deadline means give up now."""
    policy = RetryPolicy(attempts=10, retry_after_cap=60, deadline=30, random=lambda: 0.0)
    state = policy.start(NOW)
    assert state.delay(unexpected(503, retry_after=20), NOW + 5) == 20
    assert state.delay(unexpected(503, retry_after=20), NOW + 25) is None


def test_off_means_one_attempt() -> None:
    """RetryPolicy.off() never retries."""
    assert RetryPolicy.off().start(NOW).delay(unexpected(503), NOW) is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("Tue, 14 Nov 2023 22:13:40 GMT", 20.0),  # NOW + 20 s
        ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
        ("Tue, 14 Nov 2023 22:13:40", None),  # no zone: not an HTTP date
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; anything else is ignored."""
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": 1.5},
        {"attempts": True},
        {"backoff": -1},
        {"max_backoff": float("inf")},
        {"deadline": "30"},
        {"retry_after_cap": float("nan")},
        {"random": 0.5},
    ],
)
def test_bad_policies_are_refused_at_construction(kwargs: dict[str, object]) -> None:
    """Every RetryPolicy argument is checked when the policy is made."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("header", ["¹", "٣", "\uff11\uff12"])
def test_parse_retry_after_ignores_non_ascii_digits(header: str) -> None:
    """Only ASCII digits are delay-seconds (found by fuzzing: '¹'.isdigit() is True)."""
    assert parse_retry_after(header, NOW) is None
