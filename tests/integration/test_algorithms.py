"""Every signing algorithm, end to end: the test authorization server verifies each one.

httpx_tokenauth.testing's server accepts assertions in every algorithm the
library signs with (ASSERTION_ALGORITHMS), for private_key_jwt and
client_secret_jwt client authentication and for the JWT-bearer grant. Each
test gets a token with one algorithm and calls the API with it; the
assertion's ``alg`` is read from the token request the server received.
Signing is sans-I/O and the same for every driver, so these run on
httpx.Client alone (the flavors are covered by test_end_to_end).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from httpx_tokenauth import (
    ClientCredentials,
    ClientSecretJWT,
    JWTBearerGrant,
    PrivateKeyJWT,
    TokenAuth,
)
from httpx_tokenauth.testing import (
    ASSERTION_ALGORITHMS,
    JWT_BEARER,
    LocalAPI,
    LocalAuthorizationServer,
)

from .conftest import SUBJECT

ASYMMETRIC = [a for a in ASSERTION_ALGORITHMS if not a.startswith("HS")]
HMAC = [a for a in ASSERTION_ALGORITHMS if a.startswith("HS")]
#: 64 bytes: long enough for HS512 (SPEC K10).
SECRET = "algorithms-client-secret-" + "0123456789" * 4


@functools.cache
def private_key(algorithm: str) -> bytes:
    """A PEM private key of the family (and curve) the algorithm is defined for."""
    if algorithm.startswith(("RS", "PS")):
        key: Any = _rsa()
    elif algorithm == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
        key = ec.generate_private_key(curves[algorithm])
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@functools.cache
def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def get_token_and_call_the_api(
    provider: Any, api: LocalAPI, trust: ssl.SSLContext
) -> tuple[httpx.Response, dict[str, list[str]]]:
    """One API call through TokenAuth; the API's response and the token request's form."""
    forms: list[dict[str, list[str]]] = []

    def record(request: httpx.Request) -> None:
        forms.append(parse_qs(request.content.decode()))

    with httpx.Client(verify=trust, event_hooks={"request": [record]}) as token_client:
        auth = TokenAuth(provider, token_client=token_client)
        with httpx.Client(auth=auth, verify=trust, base_url=api.url) as client:
            response = client.get("/things")
    (form,) = forms
    return response, form


def alg(form: dict[str, list[str]], field: str) -> str:
    (assertion,) = form[field]
    return str(jwt.get_unverified_header(assertion)["alg"])


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_private_key_jwt_in_every_algorithm_is_accepted(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext, algorithm: str
) -> None:
    """private_key_jwt signed with each RS/PS/ES/EdDSA algorithm gets a token the API takes."""
    client_id = f"pkjwt-{algorithm}"
    auth_server.register_client(client_id, public_keys={"k1": private_key(algorithm)})
    provider = ClientCredentials(
        auth_server.token_url,
        client_id=client_id,
        client_auth=PrivateKeyJWT(private_key(algorithm), algorithm=algorithm, key_id="k1"),
    )

    response, form = get_token_and_call_the_api(provider, api, trust)

    assert alg(form, "client_assertion") == algorithm
    record = auth_server.token_requests[-1]
    assert (record.status_code, record.auth_method, record.client_id) == (
        200,
        "private_key_jwt",
        client_id,
    )
    assert response.status_code == 200
    assert response.json()["client_id"] == client_id


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_jwt_bearer_assertion_in_every_algorithm_is_accepted(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext, algorithm: str
) -> None:
    """A JWT-bearer assertion signed with each RS/PS/ES/EdDSA algorithm is exchanged."""
    issuer = f"bearer-{algorithm}"
    auth_server.register_client(issuer, public_keys={"k1": private_key(algorithm)})
    provider = JWTBearerGrant(
        auth_server.token_url,
        issuer=issuer,
        subject=SUBJECT,
        key=private_key(algorithm),
        algorithm=algorithm,
        key_id="k1",
    )

    response, form = get_token_and_call_the_api(provider, api, trust)

    assert alg(form, "assertion") == algorithm
    record = auth_server.token_requests[-1]
    assert (record.status_code, record.grant_type) == (200, JWT_BEARER)
    assert response.status_code == 200
    assert response.json()["sub"] == SUBJECT


@pytest.mark.parametrize("algorithm", HMAC)
def test_client_secret_jwt_in_every_hmac_algorithm_is_accepted(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext, algorithm: str
) -> None:
    """client_secret_jwt with HS256, HS384 and HS512 authenticates the client."""
    client_id = f"csjwt-{algorithm}"
    auth_server.register_client(client_id, secret=SECRET)
    provider = ClientCredentials(
        auth_server.token_url,
        client_id=client_id,
        client_secret=SECRET,
        client_auth=ClientSecretJWT(algorithm=algorithm),
    )

    response, form = get_token_and_call_the_api(provider, api, trust)

    assert alg(form, "client_assertion") == algorithm
    record = auth_server.token_requests[-1]
    assert (record.status_code, record.auth_method) == (200, "client_secret_jwt")
    assert response.status_code == 200


def test_inferred_algorithms_are_accepted(
    auth_server: LocalAuthorizationServer, api: LocalAPI, trust: ssl.SSLContext
) -> None:
    """PrivateKeyJWT(key) without algorithm=: ES384 for a P-384 key, EdDSA for Ed25519."""
    for algorithm in ("ES384", "EdDSA"):
        client_id = f"inferred-{algorithm}"
        auth_server.register_client(client_id, public_keys={"k1": private_key(algorithm)})
        provider = ClientCredentials(
            auth_server.token_url,
            client_id=client_id,
            client_auth=PrivateKeyJWT(private_key(algorithm), key_id="k1"),
        )

        response, form = get_token_and_call_the_api(provider, api, trust)

        assert alg(form, "client_assertion") == algorithm
        assert response.status_code == 200


def test_alg_none_and_a_wrong_key_are_still_refused(
    auth_server: LocalAuthorizationServer, trust: ssl.SSLContext
) -> None:
    """The wider list is no looser: an unsigned assertion and a PS256 assertion signed by
    an unregistered key are both invalid_client."""
    auth_server.register_client("strict", public_keys={"k1": private_key("PS256")})
    unsigned = jwt.encode(
        {"iss": "strict", "sub": "strict", "aud": auth_server.token_url, "exp": 4_000_000_000},
        None,
        algorithm="none",
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {
            "iss": "strict",
            "sub": "strict",
            "aud": auth_server.token_url,
            "exp": 4_000_000_000,
            "jti": "forged-1",
        },
        other,
        algorithm="PS256",
        headers={"kid": "k1"},
    )
    with httpx.Client(verify=trust) as client:
        for assertion in (unsigned, forged):
            response = client.post(
                auth_server.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": (
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                    ),
                    "client_assertion": assertion,
                },
            )
            assert response.status_code in (400, 401), response.text
            assert response.json()["error"] == "invalid_client"
