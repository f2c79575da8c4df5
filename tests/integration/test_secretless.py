"""Secretless end to end: a platform's JWTs against the real authorization server and API.

The authorization server (authlib, httpx_tokenauth.testing) trusts a
LocalIssuer's JWKS: its tokens authenticate a client (a federated credential)
and are exchanged for access tokens (RFC 8693). Each test body runs for
httpx.Client in threads and httpx.AsyncClient on asyncio and trio, on httpx
and httpx2. Assertions are on what the servers recorded and answered.
SPEC A1, A2, A3, A5.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from httpx_tokenauth import (
    AssertionExpiredError,
    ClientAssertion,
    ClientCredentials,
    ConfigurationError,
    FileAssertion,
    InvalidClientError,
    InvalidRequestError,
    InvalidTargetError,
    TokenExchangeGrant,
)
from httpx_tokenauth.testing import (
    FEDERATED_JWT,
    TOKEN_EXCHANGE,
    LocalAPI,
    LocalAuthorizationServer,
    LocalIssuer,
)

from .conftest import ALL_SCOPES, CLIENT_SECRET, Caller

pytestmark = pytest.mark.anyio

FEDERATED_CLIENT = "federated-billing"
EXCHANGER = "exchanger"
SUBJECT = "system:serviceaccount:billing:api"
AUDIENCE = "api://AzureADTokenExchange"
TYPES = "urn:ietf:params:oauth:token-type:"


@pytest.fixture(scope="module")
def platform(auth_server: LocalAuthorizationServer) -> LocalIssuer:
    """A cluster's OIDC issuer the server trusts, federated to FEDERATED_CLIENT for SUBJECT."""
    issuer = LocalIssuer("https://oidc.cluster.example")
    auth_server.register_client(FEDERATED_CLIENT, scope=ALL_SCOPES)
    auth_server.register_client(
        EXCHANGER, secret=CLIENT_SECRET, scope=ALL_SCOPES, grant_types=[TOKEN_EXCHANGE]
    )
    auth_server.trust_issuer(
        issuer.issuer, issuer.jwks, audience=AUDIENCE, client_id=FEDERATED_CLIENT, subject=SUBJECT
    )
    return issuer


@pytest.fixture
def token_file(tmp_path: Path, platform: LocalIssuer) -> Path:
    path = tmp_path / "azure-identity-token"
    platform.write(path, SUBJECT, AUDIENCE)
    return path


def federated(auth_server: LocalAuthorizationServer, path: Path) -> ClientCredentials:
    return ClientCredentials(
        auth_server.token_url,
        client_id=FEDERATED_CLIENT,
        client_auth=ClientAssertion(FileAssertion(path)),
        scope="read",
    )


async def get_token(caller: Caller) -> Any:
    if caller.is_sync:
        return await anyio.to_thread.run_sync(caller.auth.get_token)
    return await caller.auth.aget_token()


# -- federated client authentication --------------------------------------------------------


async def test_a1_a_platform_token_authenticates_the_client_and_its_rotation_is_followed(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, token_file: Path
) -> None:
    """A1: the server accepts the file's JWT as the client's credential; after the platform
    rotates its signing key and the file, a revoked token is renewed with the new file (the old
    assertion would no longer verify)."""
    caller.connect(federated(auth_server, token_file))
    assert (await caller.request()).status_code == 200

    rotated = LocalIssuer("https://oidc.cluster.example")  # a new signing key
    auth_server.trust_issuer(
        rotated.issuer, rotated.jwks, audience=AUDIENCE, client_id=FEDERATED_CLIENT, subject=SUBJECT
    )
    rotated.write(token_file, SUBJECT, AUDIENCE)
    api.revoke_all_issued_before()
    response = await caller.request()
    assert response.status_code == 200
    served = [
        (r.auth_method, r.client_id, r.subject, r.status_code) for r in auth_server.token_requests
    ]
    assert served == [(FEDERATED_JWT, FEDERATED_CLIENT, SUBJECT, 200)] * 2
    assert response.json()["client_id"] == FEDERATED_CLIENT


@pytest.fixture(autouse=True)
def _trust_the_platform(auth_server: LocalAuthorizationServer, platform: LocalIssuer) -> None:
    """Each test starts with the module's platform key trusted (a test may rotate it)."""
    auth_server.trust_issuer(
        platform.issuer,
        platform.jwks,
        audience=AUDIENCE,
        client_id=FEDERATED_CLIENT,
        subject=SUBJECT,
    )


async def test_a3_an_expired_platform_token_is_not_sent_to_the_server(
    caller: Caller, auth_server: LocalAuthorizationServer, token_file: Path, platform: LocalIssuer
) -> None:
    """A3: a file whose JWT expired a minute ago: AssertionExpiredError, no token request."""
    platform.write(token_file, SUBJECT, AUDIENCE, issued_at=time.time() - 700, lifetime=640)
    caller.connect(federated(auth_server, token_file))
    with pytest.raises(AssertionExpiredError):
        await caller.request()
    assert auth_server.token_request_count == 0


async def test_a1_a_token_from_an_untrusted_issuer_is_refused_by_the_server(
    caller: Caller, auth_server: LocalAuthorizationServer, tmp_path: Path
) -> None:
    """A1: a JWT signed by a key the server does not trust is invalid_client, typed."""
    path = tmp_path / "foreign"
    LocalIssuer("https://oidc.cluster.example").write(path, SUBJECT, AUDIENCE)  # unknown key
    caller.connect(federated(auth_server, path))
    with pytest.raises(InvalidClientError):
        await caller.request()
    assert [r.error for r in auth_server.token_requests] == ["invalid_client"]


# -- token exchange -----------------------------------------------------------------------------


def exchange(
    auth_server: LocalAuthorizationServer, path: Path, **kwargs: Any
) -> TokenExchangeGrant:
    return TokenExchangeGrant(
        auth_server.token_url, subject_token=FileAssertion(path), subject_token_type="jwt", **kwargs
    )


@pytest.fixture
def subject_file(
    tmp_path: Path, platform: LocalIssuer, auth_server: LocalAuthorizationServer
) -> Path:
    path = tmp_path / "subject.jwt"
    platform.write(path, "user-42", AUDIENCE)
    return path


async def test_a2_the_server_exchanges_the_platform_token_for_an_access_token(
    caller: Caller, auth_server: LocalAuthorizationServer, subject_file: Path
) -> None:
    """A2: no client authentication; the API sees a token for the subject; issued_token_type
    is kept on the Token."""
    caller.connect(exchange(auth_server, subject_file, audience=auth_server.audience))
    response = await caller.request()
    assert response.status_code == 200
    assert response.json()["sub"] == "user-42"
    (record,) = auth_server.token_requests
    assert (record.grant_type, record.subject, record.issued_token_type) == (
        TOKEN_EXCHANGE,
        "user-42",
        TYPES + "access_token",
    )
    assert (await get_token(caller)).issued_token_type == TYPES + "access_token"


async def test_a2_an_exchange_with_an_actor_and_client_authentication(
    caller: Caller, auth_server: LocalAuthorizationServer, subject_file: Path, tmp_path: Path,
    platform: LocalIssuer,
) -> None:  # fmt: skip
    """A2: the actor pair reaches the server (act claim), and so does client_secret_basic."""
    actor = tmp_path / "actor.jwt"
    platform.write(actor, "deploy-bot", AUDIENCE)
    grant = exchange(
        auth_server,
        subject_file,
        actor_token=FileAssertion(actor),
        actor_token_type="jwt",
        client_id=EXCHANGER,
        client_secret=CLIENT_SECRET,
        scope="read",
    )
    caller.connect(grant)
    assert (await caller.request()).status_code == 200
    (record,) = auth_server.token_requests
    assert (record.client_id, record.auth_method, record.subject, record.actor, record.scope) == (
        EXCHANGER,
        "client_secret_basic",
        "user-42",
        "deploy-bot",
        "read",
    )


async def test_a5_an_id_token_exchange_is_n_a_and_never_sent_to_the_api(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, subject_file: Path
) -> None:
    """A5: the server answers N_A for an ID token: get_token returns it, the API never gets it."""
    caller.connect(exchange(auth_server, subject_file, requested_token_type="id_token"))
    token = await get_token(caller)
    assert (token.token_type, token.issued_token_type) == ("N_A", TYPES + "id_token")
    with pytest.raises(ConfigurationError, match="not an access token"):
        await caller.request()
    assert api.requests == []


async def test_a2_invalid_target_and_an_untrusted_subject_are_typed(
    caller: Caller, auth_server: LocalAuthorizationServer, subject_file: Path, tmp_path: Path
) -> None:
    """A2: an unknown audience is InvalidTargetError; a subject from an unknown issuer is
    invalid_request (RFC 8693 §2.2.2)."""
    caller.connect(exchange(auth_server, subject_file, audience="https://elsewhere.example"))
    with pytest.raises(InvalidTargetError):
        await caller.request()
    foreign = tmp_path / "foreign.jwt"
    LocalIssuer("https://unknown.example").write(foreign, "user-42", auth_server.token_url)
    await caller.aclose()
    caller.connect(exchange(auth_server, foreign))
    with pytest.raises(InvalidRequestError):
        await caller.request()
    assert [r.error for r in auth_server.token_requests] == ["invalid_target", "invalid_request"]
