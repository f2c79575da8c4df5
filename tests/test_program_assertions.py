"""The acquisition program with platform-issued assertions, stepped by hand.

Each source read is a ReadAssertion effect the test answers from a script, so
every rule is observed as effects: a read before every attempt (SPEC A1), a
second read of a stale assertion and nothing sent for an expired one (A3), one
re-read and one more attempt after a refusal near expiry, no more (A4).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from httpx_tokenauth import (
    AssertionExpiredError,
    AssertionSourceError,
    ClientAssertion,
    ClientCredentials,
    InvalidClientError,
    InvalidGrantError,
    InvalidScopeError,
    RetryPolicy,
    Token,
    TokenExchangeGrant,
)
from httpx_tokenauth._program import Effect, ReadAssertion, Send, Sleep
from httpx_tokenauth._token import RawResponse
from httpx_tokenauth.testing import LocalIssuer
from test_program import Times, kinds, make, ok, step, unavailable

TOKEN_URL = "https://as.example/token"


def module_source(audience: str) -> str:
    raise AssertionError("the program reads through effects; the test answers them")


def refused(code: str) -> RawResponse:
    body = json.dumps({"error": code}).encode()
    return RawResponse(400, {"content-type": "application/json"}, body)


class Platform:
    """Hands out platform tokens valid for ``lifetime`` seconds from the times it is told."""

    def __init__(self, times: Times) -> None:
        self.times = times
        self.issuer = LocalIssuer("https://k8s.example", clock=times.clock)

    def token(self, *, expires_in: float) -> str:
        now = self.times.clock()
        return self.issuer.mint("system:serviceaccount:ns:svc", TOKEN_URL, issued_at=now - 1,
                                lifetime=expires_in + 1)  # fmt: skip


def federated(times: Times, **kwargs: Any) -> Any:
    provider = ClientCredentials(
        TOKEN_URL, client_id="svc", client_auth=ClientAssertion(module_source)
    )
    return make(times, provider=provider, **kwargs)


Responder = Callable[[Effect[Any]], object]


def answers(reads: list[object], sends: list[object]) -> Responder:
    """Answer ReadAssertion effects from ``reads`` and Send effects from ``sends``, in order."""

    def respond(effect: Effect[Any]) -> object:
        queue = reads if isinstance(effect, ReadAssertion) else sends
        if isinstance(effect, Sleep):
            return None
        answer = queue.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return respond


def sent_assertions(effects: list[Effect[Any]], name: str = "client_assertion") -> list[str]:
    return [dict(e.request.form)[name] for e in effects if isinstance(e, Send)]


# -- A1: a read before every attempt -----------------------------------------------------


def test_a1_every_attempt_reads_the_source_before_it_sends() -> None:
    """A1: 503, 503, 200 is Read, Send, Sleep three times over; each send carries its read."""
    times = Times()
    platform = Platform(times)
    auth = federated(times, retry=RetryPolicy(attempts=3, backoff=0.001, random=lambda: 0.5))
    tokens = [platform.token(expires_in=600 + i) for i in range(3)]
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        answers(list(tokens), [unavailable(), unavailable(), ok()]),
    )
    assert kinds(effects) == ["ReadAssertion", "Send", "Sleep"] * 2 + ["ReadAssertion", "Send"]
    assert sent_assertions(effects) == tokens
    assert isinstance(result, Token)
    read = next(e for e in effects if isinstance(e, ReadAssertion))
    assert read.audience == TOKEN_URL


def test_a1_a_renewal_reads_the_source_again() -> None:
    """A1: the early renewal of a token reads the source anew."""
    times = Times()
    platform = Platform(times)
    auth = federated(times)
    first = platform.token(expires_in=600)
    step(auth._acquisition.acquire(blocking=True), answers([first], [ok("t1", 3600)]))
    times.advance(3600 - 30)
    second = platform.token(expires_in=600)
    effects, result = step(
        auth._acquisition.acquire(blocking=True), answers([second], [ok("t2", 3600)])
    )
    assert kinds(effects) == ["ReadAssertion", "Send"]
    assert sent_assertions(effects) == [second]
    assert isinstance(result, Token)
    assert result.access_token == "t2"


# -- A3: stale assertions are read again; expired ones never sent --------------------------


def test_a3_an_assertion_within_the_skew_is_read_again_and_the_new_one_sent() -> None:
    """A3: 10 s left (inside the 30 s skew): a second read, and its token is the one sent."""
    times = Times()
    platform = Platform(times)
    auth = federated(times)
    stale, new = platform.token(expires_in=10), platform.token(expires_in=600)
    effects, result = step(auth._acquisition.acquire(blocking=True), answers([stale, new], [ok()]))
    assert kinds(effects) == ["ReadAssertion", "ReadAssertion", "Send"]
    assert sent_assertions(effects) == [new]
    assert isinstance(result, Token)


def test_a3_an_assertion_still_expired_after_the_second_read_is_never_sent() -> None:
    """A3: expired twice: AssertionExpiredError naming the source, its exp; no Send."""
    times = Times()
    platform = Platform(times)
    auth = federated(times)
    expired = platform.token(expires_in=-5)
    effects, result = step(
        auth._acquisition.acquire(blocking=True), answers([expired, expired], [])
    )
    assert kinds(effects) == ["ReadAssertion", "ReadAssertion"]
    assert isinstance(result, AssertionExpiredError)
    assert "module_source" in result.source
    assert result.expired_at == pytest.approx(times.wall - 5, abs=1)
    assert expired not in str(result)


def test_a3_a_second_read_still_inside_the_skew_but_valid_is_sent() -> None:
    """A3: the platform has nothing newer and the token is still valid: it is sent, once."""
    times = Times()
    platform = Platform(times)
    auth = federated(times)
    stale = platform.token(expires_in=20)
    effects, _ = step(auth._acquisition.acquire(blocking=True), answers([stale, stale], [ok()]))
    assert kinds(effects) == ["ReadAssertion", "ReadAssertion", "Send"]
    assert sent_assertions(effects) == [stale]


def test_a3_a_fresh_assertion_is_read_once() -> None:
    """A3: more than the skew left: one read, one send."""
    times = Times()
    auth = federated(times)
    effects, _ = step(
        auth._acquisition.acquire(blocking=True),
        answers([Platform(times).token(expires_in=31)], [ok()]),
    )
    assert kinds(effects) == ["ReadAssertion", "Send"]


# -- A4: one re-read and one more attempt after a refusal near expiry, no more -------------


@pytest.mark.parametrize("code", ["invalid_client", "invalid_grant", "invalid_request"])
def test_a4_a_refusal_near_expiry_reads_again_and_tries_once_more(code: str) -> None:
    """A4: 45 s left, refused: Read, Send, Read, Send with the new assertion, which succeeds."""
    times = Times()
    platform = Platform(times)
    auth = federated(times, retry=RetryPolicy(attempts=3, backoff=0.001))
    near, new = platform.token(expires_in=45), platform.token(expires_in=600)
    effects, result = step(
        auth._acquisition.acquire(blocking=True), answers([near, new], [refused(code), ok()])
    )
    assert kinds(effects) == ["ReadAssertion", "Send", "ReadAssertion", "Send"]
    assert sent_assertions(effects) == [near, new]
    assert isinstance(result, Token)


def test_a4_a_second_refusal_is_final() -> None:
    """A4: one more attempt, no more: the second invalid_client reaches the caller."""
    times = Times()
    platform = Platform(times)
    auth = federated(times, retry=RetryPolicy(attempts=3, backoff=0.001))
    near, new = platform.token(expires_in=45), platform.token(expires_in=50)
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        answers([near, new], [refused("invalid_client"), refused("invalid_client")]),
    )
    assert kinds(effects) == ["ReadAssertion", "Send", "ReadAssertion", "Send"]
    assert isinstance(result, InvalidClientError)


def test_a4_a_re_read_that_gives_the_same_assertion_sends_nothing_more() -> None:
    """A4: the source has nothing newer: the refusal stands, after one read more and no send."""
    times = Times()
    platform = Platform(times)
    auth = federated(times)
    near = platform.token(expires_in=45)
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        answers([near, near], [refused("invalid_grant")]),
    )
    assert kinds(effects) == ["ReadAssertion", "Send", "ReadAssertion"]
    assert isinstance(result, InvalidGrantError)


def test_a4_a_refusal_far_from_expiry_is_not_retried() -> None:
    """A4: with ten minutes left, invalid_client is about something else: no re-read."""
    times = Times()
    auth = federated(times)
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        answers([Platform(times).token(expires_in=600)], [refused("invalid_client")]),
    )
    assert kinds(effects) == ["ReadAssertion", "Send"]
    assert isinstance(result, InvalidClientError)


def test_a4_other_refusals_near_expiry_are_not_retried() -> None:
    """A4: invalid_scope is not about the assertion, however near its expiry."""
    times = Times()
    auth = federated(times)
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        answers([Platform(times).token(expires_in=45)], [refused("invalid_scope")]),
    )
    assert kinds(effects) == ["ReadAssertion", "Send"]
    assert isinstance(result, InvalidScopeError)


# -- A6: what a read raises or returns ----------------------------------------------------------


def test_a6_a_read_that_raises_is_an_assertion_source_error_and_nothing_is_sent() -> None:
    """A6: the source's exception becomes the __cause__ of an AssertionSourceError."""
    times = Times()
    auth = federated(times)
    effects, result = step(
        auth._acquisition.acquire(blocking=True), answers([OSError("eyJ-in-message")], [])
    )
    assert kinds(effects) == ["ReadAssertion"]
    assert isinstance(result, AssertionSourceError)
    assert isinstance(result.__cause__, OSError)
    assert "eyJ-in-message" not in str(result)


def test_a6_a_read_that_returns_a_non_string_sends_nothing() -> None:
    """A6: a source answering 42 is an AssertionSourceError, before any request."""
    times = Times()
    effects, result = step(federated(times)._acquisition.acquire(blocking=True), answers([42], []))
    assert kinds(effects) == ["ReadAssertion"]
    assert isinstance(result, AssertionSourceError)
    assert "returned int" in str(result)


# -- A1, A2: a token exchange reads each of its sources -------------------------------------


def subject_source(audience: str) -> str:
    raise AssertionError("answered by the test")


def actor_source(audience: str) -> str:
    raise AssertionError("answered by the test")


def test_a1_a_token_exchange_reads_subject_and_actor_for_every_attempt() -> None:
    """A1, A2: each attempt reads the subject then the actor token, and sends both."""
    times = Times()
    platform = Platform(times)
    grant = TokenExchangeGrant(
        TOKEN_URL,
        subject_token=subject_source,
        subject_token_type="jwt",
        actor_token=actor_source,
        actor_token_type="jwt",
    )
    auth = make(times, provider=grant, retry=RetryPolicy(attempts=2, backoff=0.001))
    tokens = [platform.token(expires_in=600 + i) for i in range(4)]
    effects, result = step(
        auth._acquisition.acquire(blocking=False), answers(list(tokens), [unavailable(), ok()])
    )
    attempt = ["ReadAssertion", "ReadAssertion", "Send"]
    assert kinds(effects) == [*attempt, "Sleep", *attempt]
    assert sent_assertions(effects, "subject_token") == [tokens[0], tokens[2]]
    assert sent_assertions(effects, "actor_token") == [tokens[1], tokens[3]]
    assert isinstance(result, Token)
