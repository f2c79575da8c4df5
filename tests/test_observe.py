"""Observability through real clients (sync, asyncio, trio; httpx, httpx2): SPEC O1-O6.

Why each token was fetched (reason codes in log records and in ``stats()``),
what the counters say after cold starts, renewals, 401s, retries and a shared
store, the rate-limit headers of token responses, the same-token guard and the
warning for tokens fetched far more often than they live.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import pytest

from httpx_tokenauth import (
    ConfigurationError,
    FileTokenStore,
    RateLimit,
    RetryPolicy,
    Token,
    TokenStats,
    UnexpectedTokenResponseError,
    generate_encryption_key,
)

from conftest import CLIENT_SECRET, Env, token_json

pytestmark = pytest.mark.anyio

FETCH_EVENTS = ("token_fetched", "token_request_failed", "token_adopted")


def fetch_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) in FETCH_EVENTS]


def reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.reason for r in fetch_records(caplog)]  # type: ignore[attr-defined]


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


async def get_token(env: Env, auth: Any, **kwargs: Any) -> Token:
    if env.is_sync:
        return await anyio.to_thread.run_sync(lambda: auth.get_token(**kwargs))
    token: Token = await auth.aget_token(**kwargs)
    return token


# -- O1: reason codes ------------------------------------------------------------------


async def test_o1_cold_expired_and_early_fetches_carry_their_reason(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """The first token is `cold`, one past expiry `expired`, one in the renewal window `early`."""
    auth = env.make()
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        await env.request()
        await env.request()  # cached: no record
        env.clock.advance(3600 + 1)
        await env.request()
        env.clock.advance(3600 - 30)
        await env.request()
    assert reasons(caplog) == ["cold", "expired", "early"]
    assert env.api.tokens() == ["t1", "t1", "t2", "t3"]
    stats = auth.stats()
    assert dict(stats.token_requests) == {
        ("cold", "success"): 1,
        ("expired", "success"): 1,
        ("early", "success"): 1,
    }
    assert stats.requests() == 3 == env.auth_server.count


async def test_o1_a_401_fetch_is_rejected_and_counts_one_replay(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A token the API refused is renewed for reason `rejected`; the replay is counted."""
    env.api.accept = lambda token: token != "t1"
    auth = env.make()
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        response = await env.request()
    assert response.status_code == 200
    assert reasons(caplog) == ["cold", "rejected"]
    stats = auth.stats()
    assert stats.requests(reason="rejected", outcome="success") == 1
    assert (stats.replays, stats.replays_refused) == (1, 0)


async def test_o1_invalidate_and_force_carry_their_reasons(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """`invalidate()` makes the next fetch `invalidated`; `get_token(force=True)` is `forced`."""
    auth = env.make()
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        first = await get_token(env, auth)
        auth.invalidate(first)
        second = await get_token(env, auth)
        forced = await get_token(env, auth, force=True)
        after = await get_token(env, auth)
    assert [t.access_token for t in (first, second, forced, after)] == ["t1", "t2", "t3", "t3"]
    assert reasons(caplog) == ["cold", "invalidated", "forced"]
    assert auth.stats().requests(reason="forced") == 1


async def test_o1_force_must_be_a_bool(env: Env) -> None:
    """`get_token(force="yes")` is a ConfigurationError, not a truthy string taken as True."""
    auth = env.make()
    with pytest.raises(ConfigurationError, match="force must be True or False"):
        await get_token(env, auth, force="yes")
    assert env.auth_server.count == 0


async def test_o1_a_token_from_the_shared_store_is_adopted(
    env: Env, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    """A second TokenAuth on the same store logs reason `adopted` and counts a store hit."""
    key = generate_encryption_key()
    first = env.make(store=FileTokenStore(tmp_path, encryption_key=key))
    other = env.auth_cls(
        env.provider(),
        store=FileTokenStore(tmp_path, encryption_key=key),
        clock=env.clock,
        token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
        async_token_client=env.http.AsyncClient(transport=env.transport(env.auth_server.ahandler)),
    )
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        await env.request()
        token = await get_token(env, other)
    other.close()
    assert token.access_token == "t1"
    assert env.auth_server.count == 1
    assert reasons(caplog) == ["cold", "adopted"]
    mine, theirs = first.stats(), other.stats()
    assert (mine.store_hits, mine.requests()) == (0, 1)
    assert mine.store_misses == 2  # nothing shared yet; nothing after taking the lease
    assert (theirs.store_hits, theirs.requests(), theirs.store_failures) == (1, 0, 0)


# -- O2: the counters --------------------------------------------------------------------


async def test_o2_retries_and_failed_requests_are_counted_by_outcome(env: Env) -> None:
    """A 503 then a token: two requests (one failed, one not), one retry, one wait."""

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json=token_json(f"t{n}"))

    env.auth_server.reply = reply
    auth = env.make()
    assert (await env.request()).status_code == 200
    await env.request()  # the hot path counts nothing
    stats = auth.stats()
    assert dict(stats.token_requests) == {
        ("cold", "UnexpectedTokenResponseError"): 1,
        ("cold", "success"): 1,
    }
    assert stats.retries == 1
    assert stats.waits == 1  # its length in seconds is checked exactly by stepping the program


async def test_o2_a_401_the_token_cannot_answer_counts_a_refused_replay(env: Env) -> None:
    """`insufficient_scope` is handed back: one refused replay, no second token request."""
    env.api.accept = lambda token: False
    env.api.challenge = 'Bearer error="insufficient_scope", scope="admin"'
    auth = env.make()
    assert (await env.request()).status_code == 401
    stats = auth.stats()
    assert (stats.replays, stats.replays_refused, stats.requests()) == (0, 1, 1)


async def test_o2_stats_is_an_immutable_snapshot(env: Env) -> None:
    """A snapshot does not change afterwards and cannot be changed."""
    auth = env.make()
    before = auth.stats()
    await env.request()
    after = auth.stats()
    assert isinstance(before, TokenStats)
    assert (before.requests(), after.requests()) == (0, 1)
    with pytest.raises(AttributeError):
        after.retries = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        after.token_requests["cold", "success"] = 9  # type: ignore[index]


# -- O5: rate-limit headers ------------------------------------------------------------


async def test_o5_rate_limit_headers_reach_the_log_record_and_stats(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """X-RateLimit-Remaining / -Reset of a token response are in its record and in stats()."""

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": str(100 - n)}
        headers["X-RateLimit-Reset"] = "30"
        return httpx.Response(200, json=token_json(f"t{n}"), headers=headers)

    env.auth_server.reply = reply
    auth = env.make()
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        await env.request()
    (record,) = events(caplog, "token_fetched")
    assert record.rate_limit_remaining == 99  # type: ignore[attr-defined]
    assert record.rate_limit_limit == 100  # type: ignore[attr-defined]
    assert record.rate_limit_reset == 30.0  # type: ignore[attr-defined]
    assert auth.stats().rate_limit == RateLimit(
        200, env.clock.now, limit=100, remaining=99, reset=30.0
    )


async def test_o5_a_429_with_retry_after_is_surfaced(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A throttled token request shows its Retry-After and status in its record and stats()."""
    env.auth_server.reply = lambda request, n: httpx.Response(
        429, headers={"Retry-After": "120", "X-RateLimit-Remaining": "0"}, text="slow down"
    )
    auth = env.make(retry=RetryPolicy.off())
    with (
        caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"),
        pytest.raises(UnexpectedTokenResponseError),
    ):
        await env.request()
    (record,) = events(caplog, "token_request_failed")
    assert record.reason == "cold"  # type: ignore[attr-defined]
    assert record.status_code == 429  # type: ignore[attr-defined]
    assert record.retry_after == 120.0  # type: ignore[attr-defined]
    assert record.rate_limit_remaining == 0  # type: ignore[attr-defined]
    limits = auth.stats().rate_limit
    assert limits is not None
    assert (limits.status_code, limits.retry_after, limits.remaining) == (429, 120.0, 0)
    assert auth.stats().requests(outcome="UnexpectedTokenResponseError") == 1


# -- O4: the same-token guard ----------------------------------------------------------


async def test_o4_a_renewal_that_brings_back_the_same_token_does_not_loop(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A server handing out the same token until it expires: renewed near expiry, warned once."""
    issued_at = env.clock.now

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        remaining = 3600 - (env.clock.now - issued_at)
        if remaining > 0:  # the same token, with what is left of its lifetime
            return httpx.Response(200, json=token_json("same", expires_in=remaining))
        return httpx.Response(200, json=token_json(f"new-{n}"))

    env.auth_server.reply = reply
    auth = env.make()
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        await env.request()
        env.clock.advance(3600 - 50)  # the renewal window: renew, get "same" back
        for _ in range(5):
            await env.request()
        env.clock.advance(20)  # still 30 s before expiry: no renewal
        await env.request()
        assert env.auth_server.count == 2
        env.clock.advance(26)  # the last 5 s: one more try, "same" again
        for _ in range(3):
            await env.request()
        assert env.auth_server.count == 3
        env.clock.advance(5)  # expired: a new token
        await env.request()
    assert env.auth_server.count == 4
    assert set(env.api.tokens()[:-1]) == {"same"}
    assert env.api.tokens()[-1] == "new-4"
    assert len(events(caplog, "same_token")) == 1
    assert auth.stats().same_token_renewals == 2
    assert reasons(caplog) == ["cold", "early", "early", "expired"]


# -- O6: far more tokens than their lifetime implies --------------------------------------


async def test_o6_tokens_fetched_far_more_often_than_they_live_are_warned_about(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Twelve one-hour tokens in a moment (each invalidated at once): one warning, at the 11th."""
    auth = env.make()
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        for _ in range(12):
            auth.invalidate(await get_token(env, auth))
    assert env.auth_server.count == 12
    (warning,) = events(caplog, "token_rate_high")
    assert warning.count == 11  # type: ignore[attr-defined]
    assert warning.lifetime == 3600  # type: ignore[attr-defined]
    assert "11 tokens fetched from https://as.example/token" in warning.getMessage()
    assert auth.stats().requests(reason="invalidated") == 11


# -- secrets -----------------------------------------------------------------------------


async def test_o1_o5_no_secret_in_fetch_records_or_stats(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Reason-carrying records and the stats snapshot hold no client secret and no token."""
    env.auth_server.reply = lambda request, n: httpx.Response(
        200,
        json=token_json(f"tok-secret-{n}", refresh_token="rt-secret"),
        headers={"X-RateLimit-Remaining": "7"},
    )
    env.api.accept = lambda token: token != "tok-secret-1"
    auth = env.make()
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        await env.request()
    texts = [repr(auth.stats()), str(auth.stats())]
    texts += [repr(r.__dict__) for r in caplog.records] + [r.getMessage() for r in caplog.records]
    for text in texts:
        for secret in (CLIENT_SECRET, "tok-secret-1", "tok-secret-2", "rt-secret"):
            assert secret not in text, (secret, text)
