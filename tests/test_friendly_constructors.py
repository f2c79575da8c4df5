"""Constructors that ask only for what they cannot work out, and grants that can be tried alone.

* SPEC X9 (new): ``PrivateKeyJWT(key)`` and ``JWTBearerGrant(..., key=key)``
  without ``algorithm`` take it from the key where one algorithm fits (EC by
  curve, EdDSA for Ed25519, a JWK's ``alg``) and RS256 for RSA; an explicit
  ``algorithm`` is still checked against the key.
* ``grant.fetch_token()`` / ``await grant.afetch_token()`` get one token with
  a short-lived TokenAuth, for trying a credential in a REPL; ``TokenAuth(grant)``
  still sends the grant's token requests itself.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio.to_thread
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from httpx_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    InvalidClientError,
    JWTBearerGrant,
    PrivateKeyJWT,
    Token,
    TokenTransportError,
)

from conftest import CLIENT_ID, CLIENT_SECRET, TOKEN_URL, Env

NOW = 1_700_000_000.0


@functools.cache
def key(kind: str) -> Any:
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "Ed448":
        return ed448.Ed448PrivateKey.generate()
    curves = {
        "P-256": ec.SECP256R1(),
        "P-384": ec.SECP384R1(),
        "P-521": ec.SECP521R1(),
        "secp256k1": ec.SECP256K1(),
    }
    return ec.generate_private_key(curves[kind])


def pem(private_key: Any) -> bytes:
    return bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def client_assertion(client_auth: PrivateKeyJWT) -> str:
    provider = ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_auth=client_auth)
    return dict(provider.token_request(NOW).form)["client_assertion"]


def grant_assertion(grant: JWTBearerGrant) -> str:
    return dict(grant.token_request(NOW).form)["assertion"]


def verified_alg(assertion: str, private_key: Any) -> str:
    """The assertion's alg, after checking its signature with the key's public half."""
    alg = str(jwt.get_unverified_header(assertion)["alg"])
    jwt.decode(
        assertion,
        private_key.public_key(),
        algorithms=[alg],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    return alg


INFERRED = [
    ("P-256", "ES256"),
    ("P-384", "ES384"),
    ("P-521", "ES512"),
    ("Ed25519", "EdDSA"),
    ("RSA", "RS256"),
]


@pytest.mark.parametrize(("kind", "alg"), INFERRED)
def test_x9_private_key_jwt_takes_the_algorithm_from_the_key(kind: str, alg: str) -> None:
    """PrivateKeyJWT(key): ES256/384/512 by curve, EdDSA for Ed25519, RS256 for RSA."""
    client_auth = PrivateKeyJWT(pem(key(kind)))

    assert client_auth.algorithm == alg
    assert verified_alg(client_assertion(client_auth), key(kind)) == alg
    assert f"algorithm={alg!r}" in repr(client_auth)


@pytest.mark.parametrize(("kind", "alg"), INFERRED)
def test_x9_jwt_bearer_grant_takes_the_algorithm_from_the_key(kind: str, alg: str) -> None:
    """JWTBearerGrant without algorithm= signs with the algorithm its key implies."""
    grant = JWTBearerGrant(TOKEN_URL, issuer="svc", subject="user", key=key(kind))

    assert verified_alg(grant_assertion(grant), key(kind)) == alg
    assert f"algorithm={alg!r}" in repr(grant)


def test_x9_a_jwk_alg_member_decides() -> None:
    """A private JWK's own alg (PS256 on an RSA key) is used when algorithm= is not given."""
    jwk = RSAAlgorithm.to_jwk(key("RSA"), as_dict=True) | {"alg": "PS256", "kid": "k-ps"}

    client_auth = PrivateKeyJWT(jwk)
    assertion = client_assertion(client_auth)

    assert verified_alg(assertion, key("RSA")) == "PS256"
    assert jwt.get_unverified_header(assertion)["kid"] == "k-ps"


def test_x9_a_jwk_without_alg_goes_by_its_curve() -> None:
    """A P-384 JWK (JSON text) without alg signs ES384."""
    jwk = json.dumps(ECAlgorithm.to_jwk(key("P-384"), as_dict=True))

    assert verified_alg(client_assertion(PrivateKeyJWT(jwk)), key("P-384")) == "ES384"


def test_x9_an_explicit_algorithm_wins_and_is_still_checked() -> None:
    """algorithm='PS256' with an RSA key signs PS256; ES256 with an RSA key is refused."""
    assert verified_alg(client_assertion(PrivateKeyJWT(key("RSA"), algorithm="PS256")), key("RSA"))
    assert PrivateKeyJWT(key("RSA"), algorithm="PS256").algorithm == "PS256"
    with pytest.raises(ConfigurationError, match="ES256 needs a P-256 EC private key"):
        PrivateKeyJWT(key("RSA"), algorithm="ES256")


@pytest.mark.parametrize(
    ("private_key", "message"),
    [
        (pem(key("secp256k1")), "none of the supported algorithms signs with"),
        (key("Ed448"), "none of the supported algorithms signs with"),
        (key("P-256").public_key(), "signing needs the private key"),
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024 bits"),  # noqa: S505
        (
            RSAAlgorithm.to_jwk(key("RSA"), as_dict=True) | {"alg": "HS256"},
            "signs with a shared secret",
        ),
    ],
    ids=["secp256k1", "Ed448", "public-key", "rsa-1024", "jwk-alg-HS256"],
)
def test_x9_a_key_no_algorithm_fits_is_refused_at_construction(
    private_key: Any, message: str
) -> None:
    """No algorithm to infer, or only a refused one: ConfigurationError saying why."""
    with pytest.raises(ConfigurationError, match=message):
        PrivateKeyJWT(private_key)
    with pytest.raises(ConfigurationError, match=message):
        JWTBearerGrant(TOKEN_URL, issuer="svc", subject="user", key=private_key)


# -- trying a grant alone ---------------------------------------------------------------


def _token_client(env: Env) -> dict[str, Any]:
    if env.is_sync:
        return {"token_client": env.http.Client(transport=env.transport(env.auth_server.handler))}
    return {
        "async_token_client": env.http.AsyncClient(
            transport=env.transport(env.auth_server.ahandler)
        )
    }


async def fetch(env: Env, grant: ClientCredentials, clients: dict[str, Any]) -> Token:
    """grant.fetch_token() in a worker thread (sync flavor) or await grant.afetch_token()."""
    if env.is_sync:
        return await anyio.to_thread.run_sync(lambda: grant.fetch_token(**clients))
    return await grant.afetch_token(**clients)


@pytest.mark.anyio
async def test_grant_fetch_token_gets_one_token_over_the_given_client(env: Env) -> None:
    """fetch_token() / afetch_token(): one client credentials request, its token returned."""
    grant = env.provider(scope="read")
    clients = _token_client(env)

    token = await fetch(env, grant, clients)

    assert token.access_token == "t1"
    assert env.auth_server.count == 1
    request = env.auth_server.requests[0]
    assert str(request.url) == TOKEN_URL
    assert env.auth_server.forms[0] == {"grant_type": ["client_credentials"], "scope": ["read"]}
    assert request.headers["authorization"].startswith("Basic ")
    (client,) = clients.values()
    assert not client.is_closed  # a client the caller passed stays open
    if env.is_sync:
        client.close()
    else:
        await client.aclose()


@pytest.mark.anyio
async def test_grant_fetch_token_raises_the_typed_error(env: Env) -> None:
    """A refused credential raises InvalidClientError from fetch_token, as from TokenAuth."""
    env.auth_server.reply = lambda request, n: httpx.Response(
        401, json={"error": "invalid_client", "error_description": "bad secret"}
    )
    grant = env.provider()
    clients = _token_client(env)

    with pytest.raises(InvalidClientError) as caught:
        await fetch(env, grant, clients)

    assert caught.value.error_description == "bad secret"
    assert CLIENT_SECRET not in str(caught.value)
    assert env.auth_server.count == 1  # invalid_client is never retried
    for client in clients.values():
        if env.is_sync:
            client.close()
        else:
            await client.aclose()


def test_grant_fetch_token_without_a_client_uses_its_own_and_says_what_failed() -> None:
    """No token_client: TokenAuth's own client is used (and closed); a refused port is
    a TokenTransportError naming the endpoint."""
    grant = ClientCredentials(
        "https://127.0.0.1:1/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )

    with pytest.raises(TokenTransportError) as caught:
        grant.fetch_token()

    assert caught.value.token_url == "https://127.0.0.1:1/token"


@pytest.mark.anyio
async def test_token_auth_still_sends_a_grants_token_request_itself(env: Env) -> None:
    """TokenAuth(grant) sends the token request over its token client (a Grant has
    fetch_token now, but is not treated as a TokenProvider), and the API gets the token."""
    grant = env.provider()
    assert callable(grant.fetch_token)

    env.make(grant, **_token_client(env))
    response = await env.request()

    assert response.json() == {"token": "t1"}
    assert env.auth_server.count == 1
    assert env.auth_server.forms[0]["grant_type"] == ["client_credentials"]
    assert env.api.tokens() == ["t1"]
