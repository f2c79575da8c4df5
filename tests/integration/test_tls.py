"""TLS to the token endpoint, against real servers: trust only when told, mTLS passes through.

The authorization server's certificate comes from a throwaway CA that no
system trust store knows (T2). Each test body runs for httpx.Client (in
threads), and httpx.AsyncClient on asyncio and on trio.
"""

from __future__ import annotations

import pytest

from httpx_tokenauth import TokenError, TokenTransportError
from httpx_tokenauth.testing import LocalAPI, LocalAuthorizationServer, LocalCA

from .conftest import Caller, Keys, client_credentials

pytestmark = pytest.mark.anyio


async def test_token_client_without_the_test_ca_fails_with_a_typed_tls_error(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys
) -> None:
    """T2: TokenAuth's own token client does not trust the test CA: TokenTransportError says why."""
    caller.connect(client_credentials(auth_server, keys), own_token_client=True)

    with pytest.raises(TokenTransportError) as info:
        await caller.request()

    assert isinstance(info.value, TokenError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert info.value.token_url == auth_server.token_url
    assert auth_server.token_request_count == 0
    assert api.requests == []


async def test_token_client_trusting_the_test_ca_gets_a_token(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys, ca: LocalCA
) -> None:
    """T2: with token_client / async_token_client trusting the CA, the same provider works."""
    caller.connect(
        client_credentials(auth_server, keys), **caller.token_client(verify=ca.client_context())
    )
    response = await caller.request()
    assert response.status_code == 200
    assert auth_server.token_request_count == 1
    assert [r.token for r in api.requests] == auth_server.issued_tokens()


async def test_client_certificate_on_the_token_client_reaches_the_server(
    caller: Caller, auth_server: LocalAuthorizationServer, api: LocalAPI, keys: Keys, ca: LocalCA
) -> None:
    """mTLS: a client certificate configured on the token client is presented to the server."""
    mtls = ca.client_context(client_cert="svc@example.org")
    caller.connect(client_credentials(auth_server, keys), **caller.token_client(verify=mtls))

    response = await caller.request()

    assert response.status_code == 200
    assert [r.client_cert_identities for r in auth_server.token_requests] == [("svc@example.org",)]


async def test_no_client_certificate_unless_configured(
    caller: Caller, auth_server: LocalAuthorizationServer, keys: Keys
) -> None:
    """mTLS: a token client without a certificate presents none (the server records none)."""
    caller.connect(client_credentials(auth_server, keys))
    assert (await caller.request()).status_code == 200
    assert [r.client_cert_identities for r in auth_server.token_requests] == [()]
