"""SPEC F1, S3: a grant's cache identity covers everything that shapes its token, and
carries no secret in clear."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from httpx_tokenauth import (
    ClientCredentials,
    ClientSecretJWT,
    ClientSecretPost,
    JWTBearerGrant,
    PrivateKeyJWT,
)

URL = "https://as.example/token"
SECRET = "a-client-secret-that-is-long-enough-for-hs256!"


def pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


KEY_A, KEY_B = pem(), pem()

CC_BASE: dict[str, Any] = {"client_id": "svc", "client_secret": SECRET}
CC_VARIANTS: dict[str, dict[str, Any]] = {
    "token_url": {"token_url": "https://as.example/other-token"},
    "client_id": {"client_id": "svc-2"},
    "client_secret": {"client_secret": SECRET + "x"},
    "scope": {"scope": "read"},
    "audience": {"audience": "https://api.example"},
    "resource": {"resource": "https://api.example/"},
    "extra_params": {"extra_params": {"tenant": "t1"}},
    "client_auth_method": {"client_auth": ClientSecretPost()},
    "client_secret_jwt": {"client_auth": ClientSecretJWT(algorithm="HS256")},
    "private_key_jwt": {
        "client_secret": None,
        "client_auth": PrivateKeyJWT(KEY_A, algorithm="ES256"),
    },
}


def cc(**changes: Any) -> ClientCredentials:
    kwargs = {**CC_BASE, **changes}
    url = kwargs.pop("token_url", URL)
    return ClientCredentials(url, **kwargs)


def test_f1_equal_configurations_have_equal_identities() -> None:
    """Two grants built from the same arguments share one identity (they get the same token)."""
    assert cc().cache_identity() == cc().cache_identity()
    assert cc(scope="a b").cache_identity() == cc(scope=["b", "a"]).cache_identity()


@pytest.mark.parametrize("name", sorted(CC_VARIANTS))
def test_f1_changing_one_thing_changes_the_client_credentials_identity(name: str) -> None:
    """Each of token URL, client id, secret, scope, audience, resource, extra parameters and
    client authentication changes the identity on its own."""
    assert cc(**CC_VARIANTS[name]).cache_identity() != cc().cache_identity()


def test_f1_private_key_jwt_identity_follows_the_key() -> None:
    """Two private_key_jwt clients with different keys have different identities."""
    a = cc(client_secret=None, client_auth=PrivateKeyJWT(KEY_A, algorithm="ES256"))
    b = cc(client_secret=None, client_auth=PrivateKeyJWT(KEY_B, algorithm="ES256"))
    same = cc(client_secret=None, client_auth=PrivateKeyJWT(KEY_A, algorithm="ES256"))
    assert a.cache_identity() != b.cache_identity()
    assert a.cache_identity() == same.cache_identity()


JB_BASE: dict[str, Any] = {"issuer": "svc@example", "subject": "user@example", "key": KEY_A}
JB_VARIANTS: dict[str, dict[str, Any]] = {
    "issuer": {"issuer": "other@example"},
    "subject": {"subject": "someone@example"},
    "audience": {"audience": "https://as.example"},
    "key": {"key": KEY_B},
    "scope": {"scope": "read"},
    "resource": {"resource": "https://api.example/"},
    "extra_claims": {"extra_claims": {"tenant": "t1"}},
    "client": {"client_id": "svc", "client_secret": SECRET},
}


def jb(**changes: Any) -> JWTBearerGrant:
    return JWTBearerGrant(URL, algorithm="ES256", **{**JB_BASE, **changes})


@pytest.mark.parametrize("name", sorted(JB_VARIANTS))
def test_f1_changing_one_thing_changes_the_jwt_bearer_identity(name: str) -> None:
    """Issuer, subject, audience, key, scope, resource, claims and client each count."""
    assert jb(**JB_VARIANTS[name]).cache_identity() != jb().cache_identity()
    assert jb().cache_identity() == jb().cache_identity()


def test_f1_grants_of_different_kinds_never_share_an_identity() -> None:
    """A client-credentials grant and a JWT-bearer grant at the same URL stay apart."""
    assert cc().cache_identity() != jb().cache_identity()


def test_identity_carries_no_secret_in_clear() -> None:
    """The identity holds digests of secrets and keys, never the secrets themselves."""
    identities = [
        cc().cache_identity(),
        cc(client_auth=ClientSecretPost()).cache_identity(),
        cc(client_auth=ClientSecretJWT(algorithm="HS256")).cache_identity(),
        jb().cache_identity(),
    ]
    private_body = "".join(KEY_A.strip().splitlines()[1:-1])
    for identity in identities:
        text = "|".join(identity)
        assert SECRET not in text
        assert private_body[:40] not in text
