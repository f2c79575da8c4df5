"""SPEC U9: APIs that answer a rejected token with a bare 403 (django-oauth-toolkit's
protected views do) can opt in to renewing on it; off by default, one replay at most."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from httpx_tokenauth import ConfigurationError, TokenAuth

from conftest import Env

pytestmark = pytest.mark.anyio


def bare_403_for(rejected: set[str]) -> Any:
    """An API that answers 403 with no WWW-Authenticate to the tokens in ``rejected``."""

    def reply(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token in rejected:
            return httpx.Response(403, json={"detail": "You do not have permission"})
        return httpx.Response(200, json={"token": token})

    return reply


async def test_u9_a_bare_403_is_returned_as_it_is_by_default(env: Env) -> None:
    """Without the opt-in, a 403 never renews the token (SPEC U7): the caller gets it."""
    env.api.reply = bare_403_for({"t1"})
    env.make()
    response = await env.request()
    assert response.status_code == 403
    assert env.auth_server.count == 1
    assert env.api.tokens() == ["t1"]


async def test_u9_with_the_opt_in_a_bare_403_renews_and_replays_once(env: Env) -> None:
    """rejection_statuses=(401, 403): a revoked token's 403 gets a new token and one replay."""
    env.api.reply = bare_403_for({"t1"})
    env.make(rejection_statuses=(401, 403))
    response = await env.request()
    assert response.status_code == 200
    assert env.auth_server.count == 2
    assert env.api.tokens() == ["t1", "t2"]


async def test_u9_a_second_403_goes_back_to_the_caller(env: Env) -> None:
    """The opt-in replays once at most: a 403 for the new token too is the caller's."""
    env.api.reply = bare_403_for({"t1", "t2", "t3"})
    env.make(rejection_statuses=(401, 403))
    response = await env.request()
    assert response.status_code == 403
    assert env.auth_server.count == 2
    assert env.api.tokens() == ["t1", "t2"]


async def test_u9_insufficient_scope_is_never_a_rejection(env: Env) -> None:
    """A 403 that says insufficient_scope is about the scope, not the token: no renewal."""

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            403, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="admin"'}
        )

    env.api.reply = reply
    env.make(rejection_statuses=(401, 403))
    response = await env.request()
    assert response.status_code == 403
    assert env.auth_server.count == 1


@pytest.mark.parametrize(
    ("statuses", "match"),
    [
        ((403,), "must include 401"),
        ((401, 500), "only 4xx"),
        ((401, "403"), "only 4xx"),
        ((401, True), "only 4xx"),
        ("401", "a collection"),
        (401, "a collection"),
    ],
)
def test_u9_rejection_statuses_that_cannot_work_are_refused(statuses: Any, match: str) -> None:
    """Only 4xx statuses, 401 always among them; a typed error says what to pass."""
    from httpx_tokenauth import ClientCredentials

    from conftest import CLIENT_SECRET

    provider = ClientCredentials(
        "https://as.example/token", client_id="c", client_secret=CLIENT_SECRET
    )
    with pytest.raises(ConfigurationError, match=match):
        TokenAuth(provider, rejection_statuses=statuses)
