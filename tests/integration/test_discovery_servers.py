"""Discovery against the real servers: authlib's metadata and a protected resource (RFC 9728).

The authorization server publishes RFC 8414 metadata (and the same document
as OpenID configuration); the second API publishes protected resource
metadata, names it in its 401s, and accepts only tokens issued for its
``resource`` (RFC 8707). Every flavor, httpx and httpx2.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import jwt
import pytest

from httpx_tokenauth import (
    ClientCredentials,
    PrivateKeyJWT,
    UntrustedAuthorizationServerError,
)
from httpx_tokenauth.testing import LocalAPI, LocalAuthorizationServer, LocalCA

from .conftest import CLIENT_ID, CLIENT_SECRET, Caller, Keys

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def resource_api(auth_server: LocalAuthorizationServer, ca: LocalCA) -> Iterator[LocalAPI]:
    with LocalAPI(auth_server, ca=ca, resource_metadata=True) as server:
        yield server


@pytest.fixture
async def rs_caller(
    flavor: str, lib: str, resource_api: LocalAPI, trust: ssl.SSLContext
) -> Iterator[Caller]:
    resource_api.reset()
    resource_api.authorization_servers = None
    c = Caller(flavor, resource_api, trust, lib)
    try:
        yield c
    finally:
        await c.aclose()


def claims(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_m1_by_issuer_alone_the_metadata_gives_endpoint_and_method(
    caller: Caller, auth_server: LocalAuthorizationServer
) -> None:
    """Only the issuer: one metadata fetch, client_secret_jwt (the strongest) accepted."""
    caller.connect(
        ClientCredentials.from_issuer(
            auth_server.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            resource_discovery=False,
        )
    )
    assert [(await caller.request()).status_code for _ in range(3)] == [200] * 3
    assert auth_server.metadata_requests == ["/.well-known/oauth-authorization-server"]
    assert [(r.auth_method, r.status_code) for r in auth_server.token_requests] == [
        ("client_secret_jwt", 200)
    ]


async def test_m4_private_key_jwt_by_issuer_is_addressed_to_the_issuer(
    caller: Caller, auth_server: LocalAuthorizationServer, keys: Keys
) -> None:
    """A key: private_key_jwt, RS256 from the server's list, accepted with aud = issuer."""
    auth_server.metadata_overrides = {"token_endpoint_auth_signing_alg_values_supported": ["RS256"]}
    caller.connect(
        ClientCredentials.from_issuer(
            auth_server.issuer,
            client_id=CLIENT_ID,
            client_auth=PrivateKeyJWT(keys.rsa, key_id="rsa-1"),
            resource_discovery=False,
        )
    )
    assert (await caller.request()).status_code == 200
    assert [r.auth_method for r in auth_server.token_requests] == ["private_key_jwt"]


async def test_m3_the_protected_resource_is_found_before_the_first_token(
    rs_caller: Caller, auth_server: LocalAuthorizationServer, resource_api: LocalAPI
) -> None:
    """RFC 9728 §3.1 then RFC 8707: one token, for the API's resource, and it is accepted."""
    rs_caller.connect(
        ClientCredentials.from_issuer(
            auth_server.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
    )
    assert (await rs_caller.request()).status_code == 200
    assert (await rs_caller.request()).status_code == 200
    assert [r.resource for r in auth_server.token_requests] == [(resource_api.url,)]
    (token,) = auth_server.issued_tokens()
    assert claims(token)["aud"] == resource_api.url
    assert resource_api.resource_metadata_requests == 1
    assert [r.status_code for r in resource_api.requests] == [200, 200]


async def test_m3_a_401_that_names_the_metadata_gets_a_token_for_the_resource(
    rs_caller: Caller, auth_server: LocalAuthorizationServer, resource_api: LocalAPI
) -> None:
    """RFC 9728 §5: the first token is refused, the challenge's metadata read, one replay."""
    rs_caller.connect(
        ClientCredentials.from_issuer(
            auth_server.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            resource_discovery=False,
        )
    )
    assert (await rs_caller.request()).status_code == 200
    assert [r.resource for r in auth_server.token_requests] == [(), (resource_api.url,)]
    assert [r.status_code for r in resource_api.requests] == [401, 200]
    assert resource_api.resource_metadata_requests == 1


async def test_m2_a_resource_naming_another_server_gets_no_credentials(
    rs_caller: Caller, auth_server: LocalAuthorizationServer, resource_api: LocalAPI
) -> None:
    """The resource names an AS not allowed: typed error, no token request at all."""
    resource_api.authorization_servers = ["https://127.0.0.1:9"]
    rs_caller.connect(
        ClientCredentials.from_issuer(
            auth_server.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
    )
    with pytest.raises(UntrustedAuthorizationServerError) as info:
        await rs_caller.request()
    assert info.value.authorization_servers == ("https://127.0.0.1:9",)
    assert auth_server.token_request_count == 0
    assert auth_server.metadata_requests == []
    assert resource_api.requests == []
