"""Observability rules stepped by hand (SPEC O1-O6): no network, no sleeps, no threads.

The acquisition program decides the reason of each fetch and counts what each
token request cost; the cache holds a token that an early renewal brought back
unchanged; the rate-limit headers are read by a pure function. Durations come
from the program's monotonic clock, which the tests move, so they are exact.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from httpx_tokenauth import (
    FileTokenStore,
    RateLimit,
    RetryPolicy,
    Token,
    TokenTransportError,
    generate_encryption_key,
)
from httpx_tokenauth._cache import Need, TokenCache
from httpx_tokenauth._program import SAME_TOKEN_WINDOW, Detach, Effect, Send, Sleep, StoreCall
from httpx_tokenauth._stats import RATE_FACTOR, Recorder
from httpx_tokenauth._store import StoreUnavailable
from httpx_tokenauth._token import RawResponse, parse_rate_limit
from httpx_tokenauth._transport import DeadlineExceededError
from test_program import Times, make, ok, script, step, unavailable

NOW = 1_700_000_000.0


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


# -- O1: the program decides the reason ------------------------------------------------


def test_o1_each_need_gives_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    """cold, expired, early, rejected, invalidated, forced: one fetch each, in that order."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        step(acq.acquire(blocking=True), script(ok("t1")))
        times.advance(3601)
        step(acq.acquire(blocking=True), script(ok("t2")))
        times.advance(3600 - 30)
        _, t3 = step(acq.acquire(blocking=True), script(ok("t3")))
        assert isinstance(t3, Token)
        acq.invalidate(t3, "rejected")
        _, t4 = step(acq.acquire(blocking=True), script(ok("t4")))
        assert isinstance(t4, Token)
        acq.invalidate(t4)
        step(acq.acquire(blocking=True), script(ok("t5")))
        acq.force("forced")
        _, t6 = step(acq.acquire(blocking=True), script(ok("t6")))
    fetched = records(caplog, "token_fetched")
    assert [r.reason for r in fetched] == [  # type: ignore[attr-defined]
        "cold", "expired", "early", "rejected", "invalidated", "forced",
    ]  # fmt: skip
    assert [r.outcome for r in fetched] == ["success"] * 6  # type: ignore[attr-defined]
    assert isinstance(t6, Token)
    assert t6.access_token == "t6"
    counted = acq.recorder.snapshot().token_requests
    assert sorted(counted) == sorted((r, "success") for r in (
        "cold", "expired", "early", "rejected", "invalidated", "forced",
    ))  # fmt: skip


def test_o1_a_compare_and_invalidate_that_misses_changes_no_reason() -> None:
    """Invalidating a token already replaced drops nothing: the next fetch keeps its own reason."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    _, t1 = step(acq.acquire(blocking=True), script(ok("t1")))
    assert isinstance(t1, Token)
    assert acq.invalidate(Token("someone-elses"), "rejected") is False
    times.advance(3601)
    step(acq.acquire(blocking=True), script(ok("t2")))
    assert set(acq.recorder.snapshot().token_requests) == {
        ("cold", "success"),
        ("expired", "success"),
    }


def test_o1_the_reason_stays_with_every_attempt_and_retry() -> None:
    """A rejected token's renewal that needs a retry: both attempts and the retry say `rejected`."""
    times = Times()
    auth = make(times, retry=RetryPolicy(attempts=3, backoff=0.001, random=lambda: 0.5))
    acq = auth._acquisition
    _, t1 = step(acq.acquire(blocking=True), script(ok("t1")))
    assert isinstance(t1, Token)
    acq.invalidate(t1, "rejected")
    step(acq.acquire(blocking=True), script(unavailable(), ok("t2")))
    stats = acq.recorder.snapshot()
    assert dict(stats.token_requests) == {
        ("cold", "success"): 1,
        ("rejected", "UnexpectedTokenResponseError"): 1,
        ("rejected", "success"): 1,
    }
    assert stats.retries == 1


# -- O2: what each request cost ------------------------------------------------------------


def test_o2_durations_and_waits_come_from_the_programs_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request that takes 0.25 s, a 0.5 s pause, one that takes 0.25 s: the caller waited 1 s."""
    times = Times()
    auth = make(times, retry=RetryPolicy(attempts=2, backoff=1.0, random=lambda: 0.5))
    answers = [unavailable(), ok("t1")]

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, Sleep):
            times.advance(effect.seconds)
            return None
        assert isinstance(effect, Send)
        times.advance(0.25)
        return answers.pop(0)

    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        _, result = step(auth._acquisition.acquire_observed(blocking=True), respond)
    assert isinstance(result, Token)
    (failed,) = records(caplog, "token_request_failed")
    (fetched,) = records(caplog, "token_fetched")
    assert (failed.attempt, failed.duration, failed.status_code) == (1, 0.25, 503)  # type: ignore[attr-defined]
    assert (fetched.attempt, fetched.duration, fetched.status_code) == (2, 0.25, 200)  # type: ignore[attr-defined]
    stats = auth.stats()
    assert (stats.waits, stats.wait_seconds, stats.retries) == (1, 1.0, 1)


def test_o2_a_request_abandoned_by_its_caller_is_counted_cancelled() -> None:
    """Cancellation thrown in at the Send ends the request as `cancelled`; the flight lands."""

    class Cancelled(BaseException):
        pass

    times = Times()
    auth = make(times)
    program = auth._acquisition.acquire(blocking=False)
    detach = next(program)
    assert isinstance(detach, Detach)
    fetch = detach.program
    assert isinstance(next(fetch), Send)
    with pytest.raises(Cancelled):
        fetch.throw(Cancelled())
    program.close()
    assert dict(auth.stats().token_requests) == {("cold", "cancelled"): 1}
    assert auth._acquisition.flight is None


def test_o2_a_deadline_that_ends_the_request_is_its_outcome() -> None:
    """A Send cut by the deadline is counted as DeadlineExceededError; the caller gets it typed."""
    times = Times()
    auth = make(times, retry=RetryPolicy(attempts=3, deadline=1.5))
    ended = DeadlineExceededError("ended", token_url="https://as.example/token")
    _, result = step(auth._acquisition.acquire(blocking=True), script(ended))
    assert isinstance(result, TokenTransportError)
    assert dict(auth.stats().token_requests) == {("cold", "DeadlineExceededError"): 1}


def test_o2_store_hits_misses_and_failures(tmp_path: Any) -> None:
    """A shared token adopted is a hit, nothing shared a miss, a failed operation a failure."""
    store = FileTokenStore(tmp_path, encryption_key=generate_encryption_key())
    times = Times()
    auth = make(times, store=store, cooldown=0.0)
    acq = auth._acquisition
    shared = Token("fleet-1", expires_at=times.wall + 3600, received_at=times.wall)
    down = StoreUnavailable("down")
    answers: list[object] = [None, True, None, ok("t1"), None, True, shared, down, ok("t2")]

    def respond(effect: Effect[Any]) -> object:
        assert isinstance(effect, (Send, StoreCall))
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    _, first = step(acq.acquire(blocking=True), respond)  # Get, Lock, Get, Send, Put, Unlock
    assert isinstance(first, Token)
    acq.invalidate(first)
    _, second = step(acq.acquire(blocking=True), respond)  # Get: adopted
    assert second is shared
    acq.invalidate(shared)
    _, third = step(acq.acquire(blocking=True), respond)  # Get down, so no lease: Send
    assert isinstance(third, Token)
    stats = auth.stats()
    assert (stats.store_hits, stats.store_misses, stats.store_failures) == (1, 2, 1)
    assert stats.requests() == 2


# -- O4: the same-token guard ----------------------------------------------------------


def test_o4_same_token_renewal_waits_for_the_final_window_then_for_expiry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Same token back: no renewal until 5 s before expiry; same again: none until expired."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    step(acq.acquire(blocking=True), script(ok("same", 3600)))
    times.advance(3600 - 60)
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        effects, _ = step(acq.acquire(blocking=True), script(ok("same", 60)))
        assert len(effects) == 1
        assert acq.cache.fresh(times.wall) is not None
        times.advance(60 - SAME_TOKEN_WINDOW - 0.001)
        effects, _ = step(acq.acquire(blocking=True), script())
        assert effects == []  # still held back
        times.advance(0.002)  # in the last 5 s: one more try
        effects, _ = step(acq.acquire(blocking=True), script(ok("same", 5)))
        assert len(effects) == 1
        times.advance(SAME_TOKEN_WINDOW - 0.01)
        effects, _ = step(acq.acquire(blocking=True), script())
        assert effects == []  # held until it expires
        times.advance(0.02)
        effects, result = step(acq.acquire(blocking=True), script(ok("fresh")))
    assert len(effects) == 1
    assert isinstance(result, Token)
    assert result.access_token == "fresh"
    assert len(records(caplog, "same_token")) == 1
    assert auth.stats().same_token_renewals == 2


def test_o4_a_new_token_after_a_same_token_renewal_renews_normally() -> None:
    """The guard lasts for one token: its successor gets the usual renewal window."""
    times = Times()
    auth = make(times)
    acq = auth._acquisition
    step(acq.acquire(blocking=True), script(ok("same", 3600)))
    times.advance(3600 - 60)
    step(acq.acquire(blocking=True), script(ok("same", 60)))
    times.advance(61)
    step(acq.acquire(blocking=True), script(ok("next", 3600)))
    times.advance(3600 - 59)
    need, _, _ = acq.cache.need(times.wall, times.mono)
    assert need is Need.OPTIONAL


def test_o4_hold_in_the_final_window_waits_for_expiry() -> None:
    """A same-token renewal that lands inside the final window renews no more before expiry."""
    cache = TokenCache(leeway=60.0, default_lifetime=None)
    cache.store(Token("same", expires_at=NOW + 10, received_at=NOW - 3590), NOW)
    held = Token("same", expires_at=NOW + 3, received_at=NOW - 3597)  # 3 s of 3600 left
    cache.hold(held, NOW, SAME_TOKEN_WINDOW)
    assert cache.need(NOW + 2.9)[0] is Need.NONE
    assert cache.need(NOW + 3)[0] is Need.REQUIRED


def test_o4_hold_of_a_token_without_expiry_is_a_plain_store() -> None:
    """No expiry, no renewal window: holding it just caches it."""
    cache = TokenCache(leeway=60.0, default_lifetime=None)
    token = Token("same")
    assert cache.hold(token, NOW, SAME_TOKEN_WINDOW) is token
    assert cache.fresh(NOW + 10**6) is token


# -- O6: the rate meter -------------------------------------------------------------------


def test_o6_more_than_ten_tokens_in_one_lifetime_is_reported_once_per_lifetime() -> None:
    """The 11th token within a lifetime is reported; the next one within that lifetime is not."""
    recorder = Recorder()
    reports = [recorder.fetched(float(i), 100.0) for i in range(RATE_FACTOR + 2)]
    assert reports[:RATE_FACTOR] == [None] * RATE_FACTOR
    assert reports[RATE_FACTOR] == (RATE_FACTOR + 1, float(RATE_FACTOR))
    assert reports[RATE_FACTOR + 1] is None  # quiet for a lifetime
    later = [recorder.fetched(200.0 + i, 100.0) for i in range(RATE_FACTOR + 1)]
    assert later[-1] == (RATE_FACTOR + 1, float(RATE_FACTOR))


def test_o6_tokens_spread_over_their_lifetime_are_never_reported() -> None:
    """Eleven tokens, each 10% of a lifetime apart: the oldest is a lifetime old, no report."""
    recorder = Recorder()
    assert all(recorder.fetched(10.0 * i, 100.0) is None for i in range(50))
    assert all(recorder.fetched(1000.0 + i, None) is None for i in range(50))  # no lifetime


# -- O5: rate-limit headers --------------------------------------------------------------


def response(status: int = 200, **headers: str) -> RawResponse:
    return RawResponse(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, b"")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        (
            {"x_ratelimit_limit": "100", "x_ratelimit_remaining": "7", "x_ratelimit_reset": "30"},
            RateLimit(200, NOW, limit=100, remaining=7, reset=30.0),
        ),
        (  # an epoch reset, as GitHub sends it
            {"x_ratelimit_remaining": "0", "x_ratelimit_reset": str(int(NOW) + 45)},
            RateLimit(200, NOW, remaining=0, reset=45.0),
        ),
        (  # draft-ietf-httpapi-ratelimit-headers up to 07, with a policy list
            {
                "ratelimit_limit": "100, 100;w=60",
                "ratelimit_remaining": "50",
                "ratelimit_reset": "9",
            },
            RateLimit(200, NOW, limit=100, remaining=50, reset=9.0),
        ),
        (  # draft 08 on: structured fields
            {"ratelimit": '"default";r=3;t=12', "ratelimit_policy": '"default";q=60;w=60'},
            RateLimit(200, NOW, limit=60, remaining=3, reset=12.0),
        ),
        ({"retry_after": "120"}, RateLimit(200, NOW, retry_after=120.0)),
        (  # unreadable values are left out, not guessed
            {"x_ratelimit_remaining": "lots", "x_ratelimit_reset": "-3", "retry_after": "soon"},
            None,
        ),
    ],
)
def test_o5_rate_limit_headers_are_read(
    headers: dict[str, str], expected: RateLimit | None
) -> None:
    """Retry-After, X-RateLimit-*, RateLimit-* and the structured RateLimit field are read."""
    assert parse_rate_limit(response(**headers), received_at=NOW) == expected


def test_o5_a_failed_token_response_keeps_its_status() -> None:
    """The status of a throttled answer travels with its limits."""
    limits = parse_rate_limit(response(429, retry_after="2"), received_at=NOW)
    assert limits == RateLimit(429, NOW, retry_after=2.0)
