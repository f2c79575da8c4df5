"""End to end: TokenAuth against a real authorization server (authlib) and a real API.

Both servers run over TLS on 127.0.0.1 (see conftest). Each test body runs
for httpx.Client (in threads), and httpx.AsyncClient on asyncio and on trio.
Assertions are on what the servers observed: the token requests the
authorization server served, the requests and tokens the API saw, and the
status codes; never on timings.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import anyio
import anyio.to_thread
import httpx
import jwt
import pytest

from httpx_tokenauth import (
    ClientAuth,
    ClientCredentials,
    ClientSecretBasic,
    ClientSecretPost,
    InvalidClientError,
    InvalidGrantError,
    InvalidScopeError,
    NonVSCHARWarning,
    PrivateKeyJWT,
    TokenAuth,
    bearer_challenge,
)
from httpx_tokenauth.testing import JWT_BEARER, LocalAPI, LocalAuthorizationServer

from .conftest import (
    CLIENT_AUTHS,
    CLIENT_ID,
    CLIENT_SECRET,
    SUBJECT,
    Caller,
    Keys,
    client_credentials,
    jwt_bearer,
)

pytestmark = pytest.mark.anyio


def claims(token: str) -> dict[str, Any]:
    """The claims of an access token the test server issued (the API verifies them)."""
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


# -- every provider x client authentication --------------------------------------------

PROVIDERS = [
    *(("client_credentials", method) for method in CLIENT_AUTHS),
    ("jwt_bearer", None),
    *(("jwt_bearer", method) for method in CLIENT_AUTHS),
]


@pytest.mark.parametrize(
    ("grant", "method"), PROVIDERS, ids=[f"{g}-{m or 'no_client_auth'}" for g, m in PROVIDERS]
)
async def test_every_provider_and_client_auth_gets_a_token_and_calls_the_api(
    caller: Caller,
    auth_server: LocalAuthorizationServer,
    keys: Keys,
    grant: str,
    method: str | None,
) -> None:
    """Each grant x client authentication is accepted by authlib, and re-minted when renewed."""
    api = caller.api
    if grant == "client_credentials":
        assert method is not None
        provider = client_credentials(auth_server, keys, method)
    else:
        provider = jwt_bearer(auth_server, keys, method)
    caller.connect(provider)

    first = await caller.request()
    api.revoke_all_issued_before()  # forces a second token request with new assertions
    second = await caller.request()

    assert [first.status_code, second.status_code] == [200, 200]
    served = auth_server.token_requests
    expected_grant = "client_credentials" if grant == "client_credentials" else JWT_BEARER
    expected_method = method.split(":")[0] if method else None
    assert [(r.grant_type, r.auth_method, r.status_code) for r in served] == [
        (expected_grant, expected_method, 200)
    ] * 2
    t1, t2 = auth_server.issued_tokens()
    assert [r.token for r in api.requests] == [t1, t1, t2]
    assert claims(t1)["client_id"] == CLIENT_ID
    assert first.json()["sub"] == (CLIENT_ID if grant == "client_credentials" else SUBJECT)


# -- reuse, revocation, replay -----------------------------------------------------------


async def test_one_token_serves_many_requests(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """Five API calls cost one token request; each carries the token the server issued (U1)."""
    caller.connect(client_credentials(auth_server, keys))
    responses = [await caller.request() for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert auth_server.token_request_count == 1
    assert [r.token for r in api.requests] == auth_server.issued_tokens() * 5


async def test_revocation_costs_one_token_request_and_one_replay(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """A revoked token: 401 invalid_token, one new token, the request replayed once, same body."""
    caller.connect(client_credentials(auth_server, keys))
    assert (await caller.request()).status_code == 200
    api.revoke_all_issued_before()

    response = await caller.request("POST", "/things", json={"n": 1})

    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert auth_server.token_request_count == 2
    t1, t2 = auth_server.issued_tokens()
    seen = [(r.method, r.status_code, r.error, r.token) for r in api.requests]
    assert seen == [
        ("GET", 200, None, t1),
        ("POST", 401, "invalid_token", t1),
        ("POST", 200, None, t2),
    ]
    assert api.requests[1].body == api.requests[2].body == b'{"n":1}'


async def test_revocation_under_concurrency_costs_one_token_request(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """20 requests rejected for the same revoked token cause one token request between them."""
    caller.connect(client_credentials(auth_server, keys))
    assert (await caller.request()).status_code == 200
    api.revoke_all_issued_before()

    responses = await caller.gather(20)

    assert [r.status_code for r in responses] == [200] * 20
    assert auth_server.token_request_count == 2
    t1, t2 = auth_server.issued_tokens()
    after = api.requests[1:]
    assert {r.token for r in after if r.status_code == 401} == {t1}
    assert [r.token for r in after if r.status_code == 200] == [t2] * 20
    assert all(r.error == "invalid_token" for r in after if r.status_code == 401)


async def test_second_401_is_returned_not_replayed_again(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """U6: when the fresh token is rejected too, the caller gets that 401; one replay only."""
    caller.connect(client_credentials(auth_server, keys))
    assert (await caller.request()).status_code == 200
    # Revoke everything up to a moment after the next token will have been issued.
    api.revoke_all_issued_before(time.time() + 3600)

    response = await caller.request()

    assert response.status_code == 401
    assert bearer_challenge(response) is not None
    assert auth_server.token_request_count == 2
    assert [r.status_code for r in api.requests] == [200, 401, 401]


# -- renewal before expiry ------------------------------------------------------------------


async def test_two_second_token_is_renewed_before_it_expires(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """A 2 s token is replaced before its exp: the API never answers 401 (real time passes)."""
    auth_server.token_lifetime = 2
    caller.connect(client_credentials(auth_server, keys))
    assert (await caller.request()).status_code == 200
    first_exp = float(claims(auth_server.issued_tokens()[0])["exp"])

    # Keep calling until the first token has been expired for a while (bounded:
    # this is the one test whose subject is real expiry).
    deadline = time.monotonic() + 10
    while time.time() < first_exp + 0.3 and time.monotonic() < deadline:
        await caller.request()
        await anyio.sleep(0.02)

    assert time.time() >= first_exp + 0.3, "the loop ran out of time"
    assert [r for r in api.requests if r.status_code != 200] == []
    issued = auth_server.issued_tokens()
    assert len(issued) >= 2
    # The second token was issued while the first was still valid.
    assert float(claims(issued[1])["iat"]) < first_exp
    assert {r.token for r in api.requests} <= set(issued)


# -- one fetch for many callers -----------------------------------------------------------


async def test_cold_start_storm_costs_one_token_request(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """100 concurrent tasks (or 16 threads) waiting for the first token cause one token request."""
    caller.connect(client_credentials(auth_server, keys))
    n = 16 if caller.is_sync else 100
    # Threads leave a barrier together; tasks are started together.
    barrier = threading.Barrier(n + 1, timeout=10) if caller.is_sync else None

    async def all_waiting() -> None:
        # The first token request is held at the server until every caller has
        # set off and every task is blocked (on the renewal lock, or on the fetch).
        if barrier is not None:
            await anyio.to_thread.run_sync(barrier.wait)
        await anyio.to_thread.run_sync(auth_server.wait_for_token_requests, 1)
        await anyio.wait_all_tasks_blocked()
        auth_server.release_token_responses()

    with auth_server.hold_token_responses():
        responses = await caller.gather(
            n, started=all_waiting, before=barrier.wait if barrier is not None else None
        )

    assert [r.status_code for r in responses] == [200] * n
    assert auth_server.token_request_count == 1
    assert [r.token for r in api.requests] == auth_server.issued_tokens() * n


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_threads_and_tasks_sharing_one_auth_cause_one_token_request(
    flavor: str,
    auth_server: LocalAuthorizationServer,
    api: LocalAPI,
    keys: Keys,
    trust: ssl.SSLContext,
) -> None:
    """One TokenAuth used by 16 threads (Client) and 100 tasks (AsyncClient) at once: one fetch."""
    async with httpx.AsyncClient(verify=trust) as async_token_client:
        with httpx.Client(verify=trust) as token_client:
            auth = TokenAuth(
                client_credentials(auth_server, keys),
                token_client=token_client,
                async_token_client=async_token_client,
            )
            with (
                httpx.Client(auth=auth, verify=trust, base_url=api.url) as sync_client,
                auth_server.hold_token_responses(),
            ):
                async with httpx.AsyncClient(
                    auth=auth,
                    verify=trust,
                    base_url=api.url,
                ) as async_client:
                    statuses: list[int] = []
                    limiter = anyio.CapacityLimiter(16)

                    async def in_thread() -> None:
                        response = await anyio.to_thread.run_sync(
                            sync_client.get, "/things", limiter=limiter
                        )
                        statuses.append(response.status_code)

                    async def in_task() -> None:
                        statuses.append((await async_client.get("/things")).status_code)

                    async with anyio.create_task_group() as tg:
                        for _ in range(16):
                            tg.start_soon(in_thread)
                        # A thread is fetching the token (held at the server) ...
                        await anyio.to_thread.run_sync(auth_server.wait_for_token_requests, 1)
                        for _ in range(100):
                            tg.start_soon(in_task)
                        # ... when the tasks arrive; let every one of them block.
                        await anyio.wait_all_tasks_blocked()
                        auth_server.release_token_responses()
            auth.close()

    assert statuses == [200] * 116
    assert auth_server.token_request_count == 1
    assert len(api.requests) == 116


# -- what is not retried -------------------------------------------------------------------


async def test_insufficient_scope_is_returned_not_retried(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """U7: 403 insufficient_scope goes back to the caller: no new token, no replay."""
    caller.connect(client_credentials(auth_server, keys, scope="read"))

    response = await caller.request("GET", "/admin/reports")
    after = await caller.request("GET", "/things")

    assert response.status_code == 403
    assert response.history == []
    challenge = bearer_challenge(response)
    assert challenge is not None
    assert challenge.error == "insufficient_scope"
    assert challenge.scope == ("admin",)
    assert after.status_code == 200
    assert auth_server.token_request_count == 1
    assert [(r.path, r.status_code, r.error) for r in api.requests] == [
        ("/admin/reports", 403, "insufficient_scope"),
        ("/things", 200, None),
    ]
    assert api.requests[0].token == api.requests[1].token


async def test_granted_scope_opens_the_scoped_path(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """C1/C2: the scopes asked for are granted by the server and honoured by the API."""
    caller.connect(client_credentials(auth_server, keys, scope=["read", "admin"]))
    response = await caller.request("GET", "/admin/reports")
    assert response.status_code == 200
    assert response.json()["scope"] == "read admin"
    assert [r.scope for r in auth_server.token_requests] == ["read admin"]


# -- token endpoint errors from a real server ----------------------------------------------


@pytest.mark.parametrize("client_auth", [ClientSecretBasic(), ClientSecretPost()], ids=repr)
async def test_wrong_secret_is_invalid_client(
    caller: Caller,
    auth_server: LocalAuthorizationServer,
    api: LocalAPI,
    client_auth: ClientAuth,
) -> None:
    """E2/K12: authlib's 401 invalid_client (with a Basic challenge) is InvalidClientError."""
    wrong = CLIENT_SECRET + "-wrong"
    caller.connect(
        ClientCredentials(
            auth_server.token_url, client_id=CLIENT_ID, client_secret=wrong, client_auth=client_auth
        )
    )
    with pytest.raises(InvalidClientError) as info:
        await caller.request()
    assert info.value.status_code == 401
    assert wrong not in str(info.value)
    assert [(r.status_code, r.error) for r in auth_server.token_requests] == [
        (401, "invalid_client")
    ]
    assert api.requests == []


async def test_private_key_jwt_with_an_unknown_key_is_invalid_client(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """K12: a client assertion the server cannot verify is InvalidClientError, not a retry."""
    caller.connect(
        ClientCredentials(
            auth_server.token_url,
            client_id=CLIENT_ID,
            client_auth=PrivateKeyJWT(keys.unregistered, algorithm="ES256", key_id="ec-1"),
        )
    )
    with pytest.raises(InvalidClientError):
        await caller.request()
    assert [r.error for r in auth_server.token_requests] == ["invalid_client"]
    assert api.requests == []


async def test_jwt_bearer_assertion_with_an_unknown_key_is_invalid_grant(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """J8: authlib rejects an assertion signed by a key it does not hold: InvalidGrantError."""
    caller.connect(jwt_bearer(auth_server, keys, key=keys.unregistered))
    with pytest.raises(InvalidGrantError, match="rejected the JWT assertion"):
        await caller.request()
    assert [r.error for r in auth_server.token_requests] == ["invalid_grant"]
    assert api.requests == []


async def test_scope_the_client_may_not_have_is_invalid_scope(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """E3: authlib's invalid_scope for a scope the client was not granted is InvalidScopeError."""
    caller.connect(client_credentials(auth_server, keys, scope="read delete-everything"))
    with pytest.raises(InvalidScopeError):
        await caller.request()
    assert [r.error for r in auth_server.token_requests] == ["invalid_scope"]
    assert api.requests == []


async def test_basic_credentials_with_reserved_characters_reach_the_server_intact(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI
) -> None:
    """B1: id and secret with :, %, +, & and non-ASCII survive form-encoding + base64 at authlib."""
    # No space: authlib decodes Basic credentials with unquote(), not unquote_plus(),
    # so a space (sent as "+", as RFC 6749 Appendix B says) would come back as "+".
    client_id = "client:%&+-_.!~*'()"
    secret = "p+q:r%s=é/ß-" + "x" * 24
    auth_server.register_client(client_id, secret=secret, scope="read")
    with pytest.warns(NonVSCHARWarning):  # é, ß: outside VSCHAR (B9), still sent intact
        grant = ClientCredentials(auth_server.token_url, client_id=client_id, client_secret=secret)
    caller.connect(grant)
    response = await caller.request()
    assert response.status_code == 200
    assert response.json()["client_id"] == client_id
    assert [(r.client_id, r.auth_method) for r in auth_server.token_requests] == [
        (client_id, "client_secret_basic")
    ]
