"""JWT assertions: the JWT-bearer grant (SPEC J1-J8) and JWT client authentication (K1-K12).

Every assertion the library produces is decoded here with pyjwt and the
matching public key (or the HMAC secret), and its header and claims are
asserted exactly. The sans-I/O tests call ``token_request(now)`` and
``parse_response``; the end-to-end tests run one async body against
httpx.Client (``sync``) and httpx.AsyncClient (``asyncio``, ``trio``), with
MockTransport for both the token endpoint and the API.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from httpx_tokenauth import (
    AssertionSigningError,
    ClientCredentials,
    ClientSecretJWT,
    ConfigurationError,
    InvalidClientError,
    InvalidGrantError,
    InvalidScopeError,
    JWTBearerGrant,
    NonVSCHARWarning,
    PrivateKeyJWT,
    TokenAuth,
    TokenError,
)
from httpx_tokenauth._jwt import default_jti
from httpx_tokenauth._token import RawResponse

TOKEN_URL = "https://as.example/oauth2/token"
ISSUER_ID = "https://as.example"
API_URL = "https://api.example/things"
CLIENT_ID = "svc-client"
ISSUER = "svc@project.iam.example"
SUBJECT = "user@example.com"
NOW = 1_700_000_000
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
HMAC_SECRET = "hmac-client-secret-0123456789-abcdefghijklmnop"  # 46 bytes: HS256 needs 32
PASSWORD = "pem-password-7f3a9c"
BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@functools.cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def client_key_() -> ec.EllipticCurvePrivateKey:
    """The client's own key for private_key_jwt, distinct from the grant's signing key."""
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def counter_jti(prefix: str = "jti") -> Callable[[], str]:
    """A deterministic jti generator: jti-1, jti-2, ..."""
    numbers = itertools.count(1)
    return lambda: f"{prefix}-{next(numbers)}"


def decode(
    assertion: str, key: Any, algorithm: str = "ES256", audience: str = TOKEN_URL
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of ``assertion`` after pyjwt verified its signature with ``key``.

    exp/iat are not checked against the real clock (the tests use fixed times);
    the tests assert them exactly instead.
    """
    claims = jwt.decode(
        assertion,
        key,
        algorithms=[algorithm],
        audience=audience,
        options={"verify_exp": False, "verify_iat": False},
    )
    return jwt.get_unverified_header(assertion), claims


def raw_payload(assertion: str) -> str:
    """The claims JSON exactly as serialized (to see integers stay integers)."""
    segment = assertion.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


def make_grant(**kwargs: Any) -> JWTBearerGrant:
    kwargs.setdefault("issuer", ISSUER)
    kwargs.setdefault("subject", SUBJECT)
    kwargs.setdefault("key", ec_key())
    kwargs.setdefault("algorithm", "ES256")
    kwargs.setdefault("jti", counter_jti())
    return JWTBearerGrant(TOKEN_URL, **kwargs)


def form_of(provider: JWTBearerGrant | ClientCredentials, now: float = NOW) -> dict[str, str]:
    request = provider.token_request(now)
    return dict(request.form)


def json_response(status: int, body: dict[str, Any], **headers: str) -> RawResponse:
    return RawResponse(
        status_code=status,
        headers={"content-type": "application/json", **{k.lower(): v for k, v in headers.items()}},
        body=json.dumps(body).encode(),
    )


# -- G. the JWT-bearer grant, sans-I/O --------------------------------------------------


def test_j1_token_request_is_grant_type_assertion_and_scope() -> None:
    """SPEC J1, T5: a form POST of grant_type=jwt-bearer, one assertion and the scope."""
    request = make_grant(scope="read write").token_request(NOW)
    assert request.method == "POST"
    assert request.url == TOKEN_URL
    assert ("Content-Type", "application/x-www-form-urlencoded") in request.headers
    assert [name for name, _ in request.form] == ["grant_type", "assertion", "scope"]
    form = dict(request.form)
    assert form["grant_type"] == GRANT_TYPE
    assert form["scope"] == "read write"
    assert dict(parse_qsl(request.body.decode())) == form


def test_j2_without_client_authentication_no_client_id_is_sent() -> None:
    """SPEC J2: no client authentication means no client_id, no secret, no header."""
    request = make_grant().token_request(NOW)
    assert [name for name, _ in request.form] == ["grant_type", "assertion"]
    assert not any(name.lower() == "authorization" for name, _ in request.headers)


def test_j2_client_id_alone_names_a_public_client() -> None:
    """SPEC J2: client_id without credentials is sent as a form field (RFC 6749 §3.2.1)."""
    request = make_grant(client_id=CLIENT_ID).token_request(NOW)
    assert [name for name, _ in request.form] == ["grant_type", "assertion", "client_id"]
    assert dict(request.form)["client_id"] == CLIENT_ID


def test_j2_client_secret_authenticates_with_basic() -> None:
    """SPEC J2, B3: client_id and client_secret give client_secret_basic, nothing in the body."""
    request = make_grant(client_id=CLIENT_ID, client_secret="s3cret").token_request(NOW)
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:s3cret".encode()).decode()
    assert ("Authorization", expected) in request.headers
    assert [name for name, _ in request.form] == ["grant_type", "assertion"]


def test_j2_form_order_with_scope_resource_extras_and_private_key_jwt() -> None:
    """Form order: grant_type, assertion, scope, resource, extras, then client auth fields."""
    grant = make_grant(
        scope=["a", "b"],
        resource="https://api.example/",
        extra_params={"vendor": "x"},
        client_id=CLIENT_ID,
        client_auth=PrivateKeyJWT(client_key_(), algorithm="ES256", jti=counter_jti("c")),
    )
    request = grant.token_request(NOW)
    assert [name for name, _ in request.form] == [
        "grant_type",
        "assertion",
        "scope",
        "resource",
        "vendor",
        "client_id",
        "client_assertion_type",
        "client_assertion",
    ]
    form = dict(request.form)
    _, claims = decode(form["assertion"], ec_key().public_key())
    _, client_claims = decode(form["client_assertion"], client_key_().public_key())
    assert (claims["iss"], claims["sub"]) == (ISSUER, SUBJECT)
    assert (client_claims["iss"], client_claims["sub"]) == (CLIENT_ID, CLIENT_ID)


def test_j3_j5_assertion_header_and_claims_are_exact() -> None:
    """SPEC J3, J4, J5: iss, sub, aud = token URL, iat now, exp now + 300, jti; typ JWT."""
    header, claims = decode(form_of(make_grant())["assertion"], ec_key().public_key())
    assert header == {"alg": "ES256", "typ": "JWT"}
    assert claims == {
        "iss": ISSUER,
        "sub": SUBJECT,
        "aud": TOKEN_URL,
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "jti-1",
    }


@pytest.mark.parametrize("audience", [ISSUER_ID, "https://as.example/token/", "urn:example:as"])
def test_j4_audience_is_sent_verbatim(audience: str) -> None:
    """SPEC J4: a configured audience is the aud claim, character for character."""
    grant = make_grant(audience=audience)
    _, claims = decode(form_of(grant)["assertion"], ec_key().public_key(), audience=audience)
    assert claims["aud"] == audience
    assert grant.audience == audience


def test_j4_default_audience_is_the_token_url_with_its_query() -> None:
    """SPEC J4, T4: the default aud is the token URL exactly as given, query included."""
    url = "https://as.example/token?tenant=a"
    grant = JWTBearerGrant(url, issuer=ISSUER, subject=SUBJECT, key=ec_key(), algorithm="ES256")
    _, claims = decode(form_of(grant)["assertion"], ec_key().public_key(), audience=url)
    assert claims["aud"] == url


def test_j5_lifetime_is_configurable() -> None:
    """SPEC J5: lifetime=120 gives exp = iat + 120."""
    _, claims = decode(form_of(make_grant(lifetime=120))["assertion"], ec_key().public_key())
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize("lifetime", [0, -1, 3601, 1.5, True, "60", None])
def test_j5_k7_bad_lifetime_is_refused(lifetime: Any) -> None:
    """SPEC J5, K7: lifetime is whole seconds from 1 to 3600, for the grant and client auth."""
    with pytest.raises(ConfigurationError, match="lifetime"):
        make_grant(lifetime=lifetime)
    with pytest.raises(ConfigurationError, match="lifetime"):
        PrivateKeyJWT(ec_key(), algorithm="ES256", lifetime=lifetime)
    with pytest.raises(ConfigurationError, match="lifetime"):
        ClientSecretJWT(lifetime=lifetime)


def test_j6_numeric_dates_are_json_integers() -> None:
    """SPEC J6: at now = NOW + 0.75, iat and exp are serialized as the integers NOW, NOW+300."""
    assertion = form_of(make_grant(), now=NOW + 0.75)["assertion"]
    payload = json.loads(raw_payload(assertion))
    assert payload["iat"] == NOW
    assert payload["exp"] == NOW + 300
    assert type(payload["iat"]) is int
    assert type(payload["exp"]) is int
    assert f'"iat":{NOW},' in raw_payload(assertion)


def test_j7_x6_assertion_is_signed_compact_base64url() -> None:
    """SPEC J7, X2, X6: three base64url segments without padding, alg never none."""
    assertion = form_of(make_grant())["assertion"]
    segments = assertion.split(".")
    assert len(segments) == 3
    assert all(BASE64URL.fullmatch(segment) for segment in segments)
    assert jwt.get_unverified_header(assertion)["alg"] == "ES256"


def test_j8_each_token_request_mints_a_new_assertion() -> None:
    """SPEC J8, J5: two requests at the same instant still carry different assertions."""
    grant = make_grant()
    first, second = form_of(grant)["assertion"], form_of(grant)["assertion"]
    assert first != second
    _, claims_1 = decode(first, ec_key().public_key())
    _, claims_2 = decode(second, ec_key().public_key())
    assert (claims_1["jti"], claims_2["jti"]) == ("jti-1", "jti-2")


def test_extra_claims_are_added_and_copied() -> None:
    """extra_claims appear in every assertion; changing the dict later changes nothing."""
    extra: dict[str, Any] = {"scope": "read", "ver": 2, "nested": {"a": [1, 2]}}
    grant = make_grant(extra_claims=extra)
    extra["scope"] = "admin"
    _, claims = decode(form_of(grant)["assertion"], ec_key().public_key())
    assert claims == {
        "scope": "read",
        "ver": 2,
        "nested": {"a": [1, 2]},
        "iss": ISSUER,
        "sub": SUBJECT,
        "aud": TOKEN_URL,
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "jti-1",
    }


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"])
def test_extra_claims_may_not_override_computed_claims(claim: str) -> None:
    """extra_claims cannot set the claims the library computes."""
    with pytest.raises(ConfigurationError, match=f"may not set {claim}"):
        make_grant(extra_claims={claim: "x"})


def test_extra_claims_must_be_json() -> None:
    """Non-JSON values in extra_claims are refused at construction, not at signing."""
    with pytest.raises(ConfigurationError, match="JSON values"):
        make_grant(extra_claims={"when": object()})
    with pytest.raises(ConfigurationError, match="JSON values"):
        make_grant(extra_claims={"x": float("nan")})


@pytest.mark.parametrize(
    ("typ", "header"),
    [
        (None, {"alg": "ES256"}),
        ("JWT", {"alg": "ES256", "typ": "JWT"}),
        ("jwt-bearer+jwt", {"alg": "ES256", "typ": "jwt-bearer+jwt"}),
    ],
)
def test_typ_header_is_configurable(typ: str | None, header: dict[str, str]) -> None:
    """typ is 'JWT' by default, any string when set, absent when None."""
    assertion = form_of(make_grant(typ=typ))["assertion"]
    assert decode(assertion, ec_key().public_key())[0] == header


def test_k11_grant_kid_and_rsa_pss() -> None:
    """The grant signs with PS256 and an RSA key, kid header set."""
    grant = make_grant(key=rsa_key(), algorithm="PS256", key_id="sa-key-1")
    header, claims = decode(form_of(grant)["assertion"], rsa_key().public_key(), "PS256")
    assert header == {"alg": "PS256", "kid": "sa-key-1", "typ": "JWT"}
    assert claims["iss"] == ISSUER


def test_j8_invalid_grant_says_the_assertion_was_rejected() -> None:
    """SPEC J8: invalid_grant is an InvalidGrantError saying the assertion was rejected."""
    response = json_response(
        400,
        {
            "error": "invalid_grant",
            "error_description": "Invalid JWT signature.",
            "error_uri": "https://as.example/errors#jwt",
        },
    )
    with pytest.raises(InvalidGrantError) as caught:
        make_grant().parse_response(response, received_at=NOW)
    error = caught.value
    assert type(error) is InvalidGrantError
    assert (error.status_code, error.error) == (400, "invalid_grant")
    assert error.error_description == "Invalid JWT signature."
    assert error.error_uri == "https://as.example/errors#jwt"
    assert str(error).startswith(
        "the authorization server rejected the JWT assertion (invalid_grant: "
        "Invalid JWT signature., HTTP 400)"
    )
    assert str(error).endswith("; see https://as.example/errors#jwt")


def test_other_token_errors_and_success_are_unchanged() -> None:
    """Only invalid_grant is reworded; other errors and tokens parse as for any grant."""
    grant = make_grant()
    with pytest.raises(InvalidScopeError, match=r"^token endpoint refused the request"):
        grant.parse_response(json_response(400, {"error": "invalid_scope"}), received_at=NOW)
    token = grant.parse_response(
        json_response(200, {"access_token": "at", "token_type": "bearer", "expires_in": 60}),
        received_at=NOW,
    )
    assert (token.access_token, token.expires_at) == ("at", NOW + 60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"issuer": ""}, "issuer must be a non-empty string"),
        ({"subject": None}, "subject must be a non-empty string"),
        ({"audience": ""}, "audience must be a non-empty string"),
        ({"key_id": 7}, "key_id must be a non-empty string"),
        ({"client_secret": "s"}, "needs the client's id"),
        ({"client_auth": ClientSecretJWT()}, "needs the client's id"),
        ({"client_id": CLIENT_ID, "client_auth": "basic"}, "client_auth must be"),
        ({"extra_params": {"assertion": "x"}}, "may not set 'assertion'"),
        ({"jti": "fixed"}, "jti must be a callable"),
        ({"extra_claims": ["scope"]}, "extra_claims must be a mapping"),
    ],
)
def test_grant_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    """Wrong grant arguments are ConfigurationErrors at construction, with a fix."""
    with pytest.raises(ConfigurationError, match=message):
        make_grant(**kwargs)


# -- H. JWT client authentication, sans-I/O ----------------------------------------------


def client_credentials(auth: Any, secret: str | None = None, **kwargs: Any) -> ClientCredentials:
    return ClientCredentials(
        TOKEN_URL, client_id=CLIENT_ID, client_secret=secret, client_auth=auth, **kwargs
    )


def test_k1_k2_k7_private_key_jwt_form_header_and_claims() -> None:
    """SPEC K1, K2, K7, K11: the exact form, header and claims of private_key_jwt."""
    auth = PrivateKeyJWT(client_key_(), algorithm="ES256", key_id="k1", jti=counter_jti())
    request = client_credentials(auth).token_request(NOW)
    assert not any(name.lower() == "authorization" for name, _ in request.headers)
    form = list(request.form)
    assert form[:3] == [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_assertion_type", ASSERTION_TYPE),
    ]
    assert [name for name, _ in form] == [
        "grant_type",
        "client_id",
        "client_assertion_type",
        "client_assertion",
    ]
    header, claims = decode(form[3][1], client_key_().public_key())
    assert header == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    assert claims == {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": TOKEN_URL,
        "iat": NOW,
        "exp": NOW + 60,
        "jti": "jti-1",
    }


def test_k4_k5_audience_can_be_the_issuer_and_is_a_string() -> None:
    """SPEC K4, K5: audience= puts the issuer identifier in aud, as a string, never a list."""
    auth = PrivateKeyJWT(client_key_(), algorithm="ES256", audience=ISSUER_ID)
    assertion = form_of(client_credentials(auth))["client_assertion"]
    _, claims = decode(assertion, client_key_().public_key(), audience=ISSUER_ID)
    assert claims["aud"] == ISSUER_ID
    assert json.loads(raw_payload(assertion))["aud"] == ISSUER_ID  # a JSON string
    assert f'"aud":"{ISSUER_ID}"' in raw_payload(assertion)


def test_k6_jti_unique_over_1000_requests() -> None:
    """SPEC K6, J5: with the default generator, 1,000 token requests carry 1,000 jti each."""
    grant = make_grant(
        jti=default_jti,
        client_id=CLIENT_ID,
        client_auth=PrivateKeyJWT(client_key_(), algorithm="ES256"),
    )
    secret_jwt = client_credentials(ClientSecretJWT(), HMAC_SECRET)
    grant_jti, client_jti, hmac_jti = set(), set(), set()
    for _ in range(1000):
        form = form_of(grant)
        grant_jti.add(jwt.decode(form["assertion"], options={"verify_signature": False})["jti"])
        client_jti.add(
            jwt.decode(form["client_assertion"], options={"verify_signature": False})["jti"]
        )
        assertion = form_of(secret_jwt)["client_assertion"]
        hmac_jti.add(jwt.decode(assertion, options={"verify_signature": False})["jti"])
    assert len(grant_jti) == len(client_jti) == len(hmac_jti) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", jti) for jti in grant_jti)


def test_k8_typ_client_authentication_jwt() -> None:
    """SPEC K8: typ='client-authentication+jwt' is the typ header of the client assertion."""
    auth = PrivateKeyJWT(client_key_(), algorithm="ES256", typ="client-authentication+jwt")
    header, _ = decode(
        form_of(client_credentials(auth))["client_assertion"], client_key_().public_key()
    )
    assert header == {"alg": "ES256", "typ": "client-authentication+jwt"}


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_k9_client_secret_jwt_signs_with_the_secret(algorithm: str) -> None:
    """SPEC K1, K2, K9: HMAC over the secret's UTF-8 bytes; the secret itself is never sent."""
    secret = "ü" * 32  # 64 UTF-8 bytes: long enough for HS512
    auth = ClientSecretJWT(algorithm=algorithm, jti=counter_jti())
    with pytest.warns(NonVSCHARWarning):  # ü: outside VSCHAR (B9), still used as UTF-8
        grant = client_credentials(auth, secret)
    request = grant.token_request(NOW)
    assert [name for name, _ in request.form] == [
        "grant_type",
        "client_id",
        "client_assertion_type",
        "client_assertion",
    ]
    assert not any(name.lower() == "authorization" for name, _ in request.headers)
    assert secret not in request.body.decode("utf-8")
    assert "%C3%BC" not in request.body.decode()
    header, claims = decode(dict(request.form)["client_assertion"], secret.encode(), algorithm)
    assert header == {"alg": algorithm, "typ": "JWT"}
    assert claims == {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": TOKEN_URL,
        "iat": NOW,
        "exp": NOW + 60,
        "jti": "jti-1",
    }


def test_b5_private_key_jwt_refuses_a_client_secret() -> None:
    """SPEC B5: private_key_jwt plus a client_secret would be two methods: refused."""
    with pytest.raises(ConfigurationError, match="one method per request"):
        client_credentials(PrivateKeyJWT(client_key_(), algorithm="ES256"), "s3cret")


@pytest.mark.parametrize("secret", [None, ""])
def test_b6_client_secret_jwt_needs_a_secret(secret: str | None) -> None:
    """SPEC B6: client_secret_jwt without a (non-empty) secret is refused at construction."""
    with pytest.raises(ConfigurationError, match="client_secret"):
        client_credentials(ClientSecretJWT(), secret)


def test_k6_one_client_auth_serves_several_clients() -> None:
    """One PrivateKeyJWT bound to two clients signs for each with its own iss and sub."""
    auth = PrivateKeyJWT(client_key_(), algorithm="ES256")
    for client_id in ("alpha", "beta"):
        grant = ClientCredentials(TOKEN_URL, client_id=client_id, client_auth=auth)
        _, claims = decode(form_of(grant)["client_assertion"], client_key_().public_key())
        assert (claims["iss"], claims["sub"]) == (client_id, client_id)


@pytest.mark.parametrize(
    "response",
    [
        json_response(400, {"error": "invalid_client"}),
        json_response(401, {"error": "invalid_client"}, **{"WWW-Authenticate": 'Basic realm="as"'}),
    ],
)
def test_k12_invalid_client_from_400_or_401_is_one_error(response: RawResponse) -> None:
    """SPEC K12, E2: invalid_client as 400 or as 401 with a Basic challenge: InvalidClientError."""
    grant = client_credentials(PrivateKeyJWT(client_key_(), algorithm="ES256"))
    with pytest.raises(InvalidClientError) as caught:
        grant.parse_response(response, received_at=NOW)
    assert (caught.value.error, caught.value.status_code) == (
        "invalid_client",
        response.status_code,
    )


# -- run-time failures: AssertionSigningError -----------------------------------------


@pytest.mark.parametrize(
    ("jti", "message"),
    [
        (lambda: 42, "returned int, not a string"),
        (lambda: "", "empty or repeated"),
        (lambda: "same", "empty or repeated"),
        (lambda: 1 / 0, "generator failed: ZeroDivisionError"),
    ],
)
def test_k6_a_misbehaving_jti_generator_stops_the_request(jti: Any, message: str) -> None:
    """SPEC K6: a jti generator that repeats or fails raises instead of sending a stale jti."""
    grant = make_grant(jti=jti)
    with contextlib.suppress(AssertionSigningError):
        grant.token_request(NOW)  # "same" passes once
    with pytest.raises(AssertionSigningError, match=message):
        grant.token_request(NOW)


@pytest.mark.parametrize("now", [float("nan"), float("inf"), "now", None])
def test_now_that_is_not_a_time_is_refused(now: Any) -> None:
    """A clock returning a non-number or non-finite value cannot mint an assertion."""
    with pytest.raises(AssertionSigningError, match="finite number of seconds"):
        make_grant().token_request(now)


class ExternalKey(ec.EllipticCurvePrivateKey):
    """A key that lives elsewhere (an HSM, a KMS): it signs through the cryptography API."""

    def __init__(self, inner: ec.EllipticCurvePrivateKey, *, broken: bool = False) -> None:
        self._inner = inner
        self._broken = broken

    def sign(self, data: bytes | bytearray | memoryview, signature_algorithm: Any) -> bytes:
        if self._broken:
            raise RuntimeError("HSM unreachable")
        return self._inner.sign(data, signature_algorithm)

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._inner.curve

    @property
    def key_size(self) -> int:
        return self._inner.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> ExternalKey:
        return self

    def __deepcopy__(self, memo: Any) -> ExternalKey:
        return self


def test_external_key_objects_sign() -> None:
    """A cryptography key object backed elsewhere (HSM, KMS) signs verifiable assertions."""
    grant = make_grant(key=ExternalKey(ec_key()))
    _, claims = decode(form_of(grant)["assertion"], ec_key().public_key())
    assert claims["jti"] == "jti-1"


def test_signing_failure_is_an_assertion_signing_error() -> None:
    """A failure inside signing is an AssertionSigningError with the original as __cause__."""
    grant = make_grant(key=ExternalKey(ec_key(), broken=True))
    with pytest.raises(AssertionSigningError, match="with ES256 failed: RuntimeError") as caught:
        grant.token_request(NOW)
    assert isinstance(caught.value, TokenError)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_configuration_is_readable_back() -> None:
    """The grant and the client auth expose what they were configured with."""
    auth = PrivateKeyJWT(client_key_(), algorithm="ES256", key_id="k1", lifetime=30)
    assert (auth.algorithm, auth.key_id, auth.lifetime, auth.method) == (
        "ES256",
        "k1",
        30,
        "private_key_jwt",
    )
    assert ClientSecretJWT().method == "client_secret_jwt"
    grant = make_grant(client_id=CLIENT_ID)
    assert (grant.issuer, grant.subject, grant.audience, grant.client_id) == (
        ISSUER,
        SUBJECT,
        TOKEN_URL,
        CLIENT_ID,
    )
    assert repr(make_grant()).startswith("JWTBearerGrant(")


def test_reprs_name_the_configuration_not_the_key() -> None:
    """reprs show algorithm, key id and client; no key, secret or assertion."""
    auth = PrivateKeyJWT(client_key_(), algorithm="ES256", key_id="k1")
    assert repr(auth) == "PrivateKeyJWT(algorithm='ES256', key_id='k1')"
    assert repr(ClientSecretJWT()) == "ClientSecretJWT(algorithm='HS256')"
    assert (
        repr(ClientSecretJWT(algorithm="HS512", audience=ISSUER_ID))
        == "ClientSecretJWT(algorithm='HS512', audience='https://as.example')"
    )
    grant = make_grant(key_id="sa-1", client_id=CLIENT_ID, client_auth=auth, scope="read")
    assert repr(grant) == (
        "JWTBearerGrant(token_url='https://as.example/oauth2/token', "
        "issuer='svc@project.iam.example', subject='user@example.com', algorithm='ES256', "
        "key_id='sa-1', client_id='svc-client', client_auth=PrivateKeyJWT(algorithm='ES256', "
        "key_id='k1'), scope='read')"
    )
    bound = auth.bind(client_id=CLIENT_ID, client_secret=None, token_url=TOKEN_URL)
    assert repr(bound) == "<private_key_jwt for 'svc-client'>"


def test_import_cost_jwt_and_cryptography_load_on_first_use() -> None:
    """`import httpx_tokenauth` loads neither pyjwt nor cryptography; a JWT feature does."""
    script = (
        "import sys, httpx_tokenauth as h\n"
        "print('jwt' in sys.modules, 'cryptography' in sys.modules)\n"
        "h.ClientCredentials('https://as.example/token', client_id='c',\n"
        "                    client_secret='x' * 32, client_auth=h.ClientSecretJWT())\n"
        "print('jwt' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split("\n") == ["False False", "True", ""]


# -- end to end: TokenAuth with httpx.Client and httpx.AsyncClient -------------------------


@pytest.fixture(params=["sync", "asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return "trio" if flavor == "trio" else "asyncio"


class Clock:
    """The TokenAuth clock, moved by hand."""

    def __init__(self, now: float = NOW + 0.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TokenEndpoint:
    """A token endpoint that verifies every assertion with pyjwt and the public key.

    Records each form and the verified claims; answers t1, t2, ... (one hour)
    unless ``reply`` gives another answer.
    """

    def __init__(
        self,
        reply: Callable[[int], httpx.Response] | None = None,
        *,
        grant_key: tuple[Any, str] | None = None,
        client_key: tuple[Any, str] | None = None,
    ) -> None:
        self.reply = reply
        self.grant_key = grant_key or (ec_key().public_key(), "ES256")
        self.client_key = client_key or (client_key_().public_key(), "ES256")
        self.forms: list[list[tuple[str, str]]] = []
        self.assertions: list[str] = []
        self.claims: list[dict[str, Any]] = []
        self.client_claims: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        pairs = parse_qsl(request.content.decode(), keep_blank_values=True)
        self.forms.append(pairs)
        form = dict(pairs)
        if "assertion" in form:
            self.assertions.append(form["assertion"])
            header, claims = decode(form["assertion"], *self.grant_key)
            assert header == {"alg": self.grant_key[1], "kid": "sa-1", "typ": "JWT"}
            self.claims.append(claims)
        if "client_assertion" in form:
            self.assertions.append(form["client_assertion"])
            header, claims = decode(form["client_assertion"], *self.client_key)
            assert header == {"alg": self.client_key[1], "typ": "JWT"}
            self.client_claims.append(claims)
        n = len(self.forms)
        if self.reply is not None:
            return self.reply(n)
        return httpx.Response(
            200, json={"access_token": f"t{n}", "token_type": "Bearer", "expires_in": 3600}
        )


class Harness:
    """A TokenAuth over the token endpoint, and an API client of the test's flavor."""

    def __init__(self, flavor: str, provider: Any, endpoint: TokenEndpoint) -> None:
        self.flavor = flavor
        self.clock = Clock()
        self.rejected: set[str] = set()  # tokens the API answers with 401 invalid_token
        self.seen: list[str] = []  # the Authorization header of each API request
        self.auth = TokenAuth(
            provider,
            clock=self.clock,
            token_client=httpx.Client(transport=httpx.MockTransport(endpoint)),
            async_token_client=httpx.AsyncClient(transport=httpx.MockTransport(endpoint)),
        )
        transport = httpx.MockTransport(self.api)
        self.client = httpx.Client(auth=self.auth, transport=transport)
        self.aclient = httpx.AsyncClient(auth=self.auth, transport=transport)

    def api(self, request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        self.seen.append(token)
        if token in self.rejected:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200, json={"token": token})

    async def get(self) -> httpx.Response:
        if self.flavor == "sync":
            return self.client.get(API_URL)
        return await self.aclient.get(API_URL)

    async def aclose(self) -> None:
        self.client.close()
        await self.aclient.aclose()
        self.auth.close()


@contextlib.asynccontextmanager
async def harness(flavor: str, provider: Any, endpoint: TokenEndpoint) -> AsyncIterator[Harness]:
    h = Harness(flavor, provider, endpoint)
    try:
        yield h
    finally:
        await h.aclose()


def service_account_grant(**kwargs: Any) -> JWTBearerGrant:
    """A JWT-bearer grant whose client also authenticates with private_key_jwt."""
    return make_grant(
        key_id="sa-1",
        client_id=CLIENT_ID,
        client_auth=PrivateKeyJWT(client_key_(), algorithm="ES256"),
        **kwargs,
    )


@pytest.mark.anyio
async def test_j8_k6_every_token_request_carries_fresh_assertions(flavor: str) -> None:
    """SPEC J8, K6: first fetch, 401 replay and expiry renewal each send new assertions."""
    endpoint = TokenEndpoint()
    async with harness(flavor, service_account_grant(), endpoint) as h:
        h.rejected.add("t1")
        response = await h.get()  # t1 -> 401 invalid_token -> t2 -> replay
        assert (response.status_code, response.json()) == (200, {"token": "t2"})
        assert h.seen == ["t1", "t2"]
        h.clock.now += 3600  # t2 expired: the next request fetches t3
        assert (await h.get()).json() == {"token": "t3"}

    assert len(endpoint.forms) == 3
    assert len(set(endpoint.assertions)) == 6  # 3 grant + 3 client assertions, all different
    assert [c["iat"] for c in endpoint.claims] == [NOW, NOW, NOW + 3600]
    for claims in endpoint.claims:
        assert {k: v for k, v in claims.items() if k != "jti"} == {
            "iss": ISSUER,
            "sub": SUBJECT,
            "aud": TOKEN_URL,
            "iat": claims["iat"],
            "exp": claims["iat"] + 300,
        }
    assert [c["jti"] for c in endpoint.claims] == ["jti-1", "jti-2", "jti-3"]
    for claims in endpoint.client_claims:
        assert (claims["iss"], claims["sub"], claims["aud"]) == (CLIENT_ID, CLIENT_ID, TOKEN_URL)
        assert claims["exp"] - claims["iat"] == 60
    assert len({c["jti"] for c in endpoint.client_claims}) == 3


@pytest.mark.anyio
async def test_k6_1000_token_requests_carry_1000_distinct_jti(flavor: str) -> None:
    """SPEC K6, J5: 1,000 token requests through TokenAuth carry 1,000 distinct jti each."""
    endpoint = TokenEndpoint()
    grant = service_account_grant(jti=default_jti)
    async with harness(flavor, grant, endpoint) as h:
        for _ in range(1000):
            h.clock.now += 3601  # the previous token has expired
            assert (await h.get()).status_code == 200
    assert len(endpoint.forms) == 1000
    assert len({c["jti"] for c in endpoint.claims}) == 1000
    assert len({c["jti"] for c in endpoint.client_claims}) == 1000


@pytest.mark.anyio
async def test_j8_invalid_grant_through_tokenauth_says_assertion_rejected(flavor: str) -> None:
    """SPEC J8: the caller gets InvalidGrantError saying the assertion was rejected."""

    def reply(n: int) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_grant", "error_description": "bad"})

    endpoint = TokenEndpoint(reply)
    async with harness(flavor, service_account_grant(), endpoint) as h:
        with pytest.raises(InvalidGrantError, match="rejected the JWT assertion") as caught:
            await h.get()
        assert len(endpoint.forms) == 1  # invalid_grant is not retried
        h.clock.now += 3600
        with pytest.raises(InvalidGrantError):
            await h.get()
    assert caught.value.error_description == "bad"
    assert h.seen == []
    # However many token requests were made, none resent an assertion.
    assert len({c["jti"] for c in endpoint.claims}) == len(endpoint.forms)


@pytest.mark.anyio
async def test_j8_k6_a_token_request_after_a_failure_carries_new_assertions(flavor: str) -> None:
    """SPEC J8, K6: after a 503 from the token endpoint, the next attempt mints new assertions."""

    def reply(n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(503, headers={"Retry-After": "0"}, text="busy")
        return httpx.Response(
            200, json={"access_token": f"t{n}", "token_type": "Bearer", "expires_in": 3600}
        )

    endpoint = TokenEndpoint(reply)
    async with harness(flavor, service_account_grant(), endpoint) as h:
        try:
            response = await h.get()  # TokenAuth may retry the token request itself
        except TokenError:
            response = await h.get()  # or the caller tries again
    assert response.json() == {"token": "t2"}
    assert len(endpoint.forms) == 2
    assert len(set(endpoint.assertions)) == 4
    assert [c["jti"] for c in endpoint.claims] == ["jti-1", "jti-2"]
    assert len({c["jti"] for c in endpoint.client_claims}) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401])
async def test_k12_invalid_client_through_tokenauth(flavor: str, status: int) -> None:
    """SPEC K12, E2: invalid_client as 400 or 401 reaches the caller once, no refresh loop."""

    def reply(n: int) -> httpx.Response:
        headers = {"WWW-Authenticate": 'Basic realm="as"'} if status == 401 else {}
        return httpx.Response(status, headers=headers, json={"error": "invalid_client"})

    endpoint = TokenEndpoint(reply)
    provider = ClientCredentials(
        TOKEN_URL, client_id=CLIENT_ID, client_auth=PrivateKeyJWT(client_key_(), algorithm="ES256")
    )
    async with harness(flavor, provider, endpoint) as h:
        with pytest.raises(InvalidClientError) as caught:
            await h.get()
    assert caught.value.status_code == status
    assert len(endpoint.forms) == 1
    assert h.seen == []


@pytest.mark.anyio
async def test_secrets_never_appear_in_reprs_messages_or_logs(
    flavor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys, passwords, HMAC secrets and assertions appear in no repr, str, message or log."""
    caplog.set_level(logging.DEBUG)
    key = rsa_key()
    plain_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    encrypted_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    ).decode()
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    short_secret = "short-hmac-secret-q7"

    texts: list[str] = []
    errors: list[Exception] = []
    for attempt in (
        lambda: PrivateKeyJWT(plain_pem, algorithm="ES256"),
        lambda: PrivateKeyJWT(jwk, algorithm="ES256"),
        lambda: PrivateKeyJWT(encrypted_pem, algorithm="RS256", password="wrong-" + PASSWORD),
        lambda: client_credentials(ClientSecretJWT(), short_secret),
        lambda: client_credentials(PrivateKeyJWT(jwk, algorithm="RS256"), HMAC_SECRET),
    ):
        with pytest.raises(ConfigurationError) as caught:
            attempt()
        errors.append(caught.value)

    issued = 0

    def reply(n: int) -> httpx.Response:
        nonlocal issued
        if n == 3:
            return httpx.Response(400, json={"error": "invalid_grant"})
        issued += 1
        return httpx.Response(
            200, json={"access_token": f"t{n}", "token_type": "Bearer", "expires_in": 3600}
        )

    endpoint = TokenEndpoint(
        reply, grant_key=(key.public_key(), "RS256"), client_key=(HMAC_SECRET.encode(), "HS256")
    )
    client_auth = PrivateKeyJWT(encrypted_pem, algorithm="RS256", password=PASSWORD)
    grant = make_grant(
        key=encrypted_pem,
        password=PASSWORD,
        algorithm="RS256",
        key_id="sa-1",
        client_id=CLIENT_ID,
        client_secret=HMAC_SECRET,
        client_auth=ClientSecretJWT(),
    )
    async with harness(flavor, grant, endpoint) as h:
        h.rejected.add("t1")
        assert (await h.get()).status_code == 200  # fetch, 401, fetch, replay
        h.clock.now += 3600
        with pytest.raises(InvalidGrantError) as rejected:
            await h.get()
        errors.append(rejected.value)
        bound = ClientSecretJWT().bind(
            client_id=CLIENT_ID, client_secret=HMAC_SECRET, token_url=TOKEN_URL
        )
        objects: list[object] = [client_auth, grant, h.auth, bound, grant.token_request(NOW)]
        texts += [repr(o) for o in objects] + [str(o) for o in objects]

    assert issued == 2
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    texts.append(caplog.text)
    texts += [repr(vars(record)) for record in caplog.records]
    haystack = "\n".join(texts)

    pem_lines = [line for line in plain_pem.splitlines() if "-----" not in line]
    pem_lines += [line for line in encrypted_pem.splitlines() if "-----" not in line]
    secrets_ = [
        *pem_lines,
        PASSWORD,
        jwk["d"],
        jwk["p"],
        HMAC_SECRET,
        short_secret,
        *endpoint.assertions,
        *(a.split(".")[2] for a in endpoint.assertions),
    ]
    assert len(endpoint.assertions) == 6
    assert caplog.records, "the scenario logged nothing; the log check would prove nothing"
    for secret in secrets_:
        assert secret not in haystack
