"""The test servers themselves (httpx_tokenauth.testing), probed with plain httpx.

The end-to-end tests are only as good as these servers are strict: the API
must accept the authorization server's tokens and nothing else, and answer
with RFC 6750 challenges; the servers must stop when told.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import textwrap
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import httpx_tokenauth.testing
from httpx_tokenauth.testing import LocalAPI, LocalAuthorizationServer, LocalCA

from .conftest import CLIENT_ID, CLIENT_SECRET


def get_token(server: LocalAuthorizationServer, trust: ssl.SSLContext, **form: str) -> str:
    with httpx.Client(verify=trust) as client:
        response = client.post(
            server.token_url,
            data={"grant_type": "client_credentials", **form},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == server.token_lifetime
    return str(body["access_token"])


def call(
    api: LocalAPI, trust: ssl.SSLContext, path: str = "/x", **kwargs: object
) -> httpx.Response:
    with httpx.Client(verify=trust, base_url=api.url) as client:
        return client.get(path, **kwargs)  # type: ignore[arg-type]


def test_api_accepts_a_token_the_server_issued(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext
) -> None:
    """A token from the authorization server opens the API."""
    token = get_token(auth_server, trust)
    response = call(api, trust, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "path": "/x",
        "client_id": CLIENT_ID,
        "sub": CLIENT_ID,
        "scope": "read write admin",
    }


def test_api_without_a_token_sends_a_challenge_without_error(
    api: LocalAPI, trust: ssl.SSLContext
) -> None:
    """RFC 6750 §3.1: no credentials, 401 with a bare Bearer challenge (no error code)."""
    response = call(api, trust)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="local-api"'


def test_api_rejects_a_token_signed_by_another_key(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext
) -> None:
    """A well-formed token the server did not sign: 401 error="invalid_token"."""
    forged = jwt.encode(
        {
            "iss": auth_server.issuer,
            "aud": auth_server.audience,
            "sub": CLIENT_ID,
            "iat": time.time(),
            "exp": time.time() + 60,
            "jti": "x",
        },
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
    )
    response = call(api, trust, headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert [(r.status_code, r.error) for r in api.requests] == [(401, "invalid_token")]


def test_api_revocation_rejects_earlier_tokens_only(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext
) -> None:
    """revoke_all_issued_before(): tokens issued before are 401, a token issued after is fine."""
    old = get_token(auth_server, trust)
    api.revoke_all_issued_before()
    new = get_token(auth_server, trust)
    statuses = [
        call(api, trust, headers={"Authorization": f"Bearer {t}"}).status_code for t in (old, new)
    ]
    assert statuses == [401, 200]


def test_api_scope_requirement_is_a_403_naming_the_scope(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext
) -> None:
    """require_scope(): a valid token without the scope gets 403 insufficient_scope, scope=..."""
    api.require_scope("/reports", "reports:read")
    token = get_token(auth_server, trust, scope="read")
    headers = {"Authorization": f"Bearer {token}"}
    assert call(api, trust, "/reports/2024", headers=headers).status_code == 403
    assert call(api, trust, "/reportsX", headers=headers).status_code == 200
    challenge = call(api, trust, "/reports", headers=headers).headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="reports:read"' in challenge


def test_api_refuses_a_token_in_the_query(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext
) -> None:
    """RFC 6750 §2: a token in the URL (as well as the header) is 400 invalid_request."""
    token = get_token(auth_server, trust)
    response = call(
        api,
        trust,
        params={"access_token": token},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


def test_server_answers_unknown_grants_with_authlib_errors(
    auth_server: LocalAuthorizationServer, trust: ssl.SSLContext
) -> None:
    """The token endpoint is authlib's: unsupported grant types get RFC 6749 §5.2 errors."""
    with httpx.Client(verify=trust) as client:
        response = client.post(
            auth_server.token_url,
            data={"grant_type": "password", "username": "u", "password": "p"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    assert [r.error for r in auth_server.token_requests] == ["unsupported_grant_type"]


def test_server_publishes_metadata_and_keys(
    auth_server: LocalAuthorizationServer, trust: ssl.SSLContext
) -> None:
    """RFC 8414 metadata names the token endpoint; /jwks verifies the tokens issued."""
    with httpx.Client(verify=trust) as client:
        metadata = client.get(f"{auth_server.issuer}/.well-known/oauth-authorization-server").json()
        jwks = client.get(metadata["jwks_uri"]).json()
    assert metadata["token_endpoint"] == auth_server.token_url
    token = get_token(auth_server, trust)
    key = jwt.PyJWK(jwks["keys"][0])
    assert jwt.get_unverified_header(token)["kid"] == key.key_id
    claims = jwt.decode(token, key, algorithms=["ES256"], audience=auth_server.audience)
    assert claims["client_id"] == CLIENT_ID


def test_servers_listen_on_entry_and_stop_on_exit(ca: LocalCA) -> None:
    """The context managers serve as soon as they are entered and close their ports on exit."""
    trust = ca.client_context()
    with LocalAuthorizationServer(ca) as server, LocalAPI(server, ca=ca) as api:
        urls = (server.issuer + "/jwks", api.url + "/x")
        with httpx.Client(verify=trust) as client:
            assert [client.get(url).status_code for url in urls] == [200, 401]
    with httpx.Client(verify=trust) as client:
        for url in urls:
            with pytest.raises(httpx.ConnectError):
                client.get(url)


def test_the_testing_package_example_runs() -> None:
    """The example in httpx_tokenauth.testing's docstring works as written."""
    doc = httpx_tokenauth.testing.__doc__
    assert doc is not None
    block = doc[doc.index("    import httpx\n") : doc.index("``server.hold_token_responses()``")]
    exec(compile(textwrap.dedent(block), "httpx_tokenauth/testing", "exec"), {})  # noqa: S102


def test_importing_the_library_does_not_import_the_test_servers() -> None:
    """httpx_tokenauth never imports httpx_tokenauth.testing (or authlib, Flask, uvicorn)."""
    code = (
        "import sys, httpx_tokenauth; "
        "heavy = [m for m in ('httpx_tokenauth.testing', 'authlib', 'flask', 'uvicorn', "
        "'starlette', 'trustme') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
