"""Signing keys: every accepted form loads, every bad pairing is refused at construction.

SPEC X1-X4, K9-K11 and issue 3 point 5. A key "loads" when an assertion
minted with it verifies, in the test, with pyjwt and the matching public key.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import pathlib
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from httpx_tokenauth import (
    ClientCredentials,
    ClientSecretJWT,
    ConfigurationError,
    JWTBearerGrant,
    NonVSCHARWarning,
    PrivateKeyJWT,
)

TOKEN_URL = "https://as.example/token"
CLIENT_ID = "svc-client"
NOW = 1_700_000_000
PASSWORD = "correct horse battery staple"

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL  # PKCS#1 for RSA, SEC1 for EC
PLAIN = serialization.NoEncryption()


@functools.cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(curve: str) -> ec.EllipticCurvePrivateKey:
    curves: dict[str, ec.EllipticCurve] = {
        "P-256": ec.SECP256R1(),
        "P-384": ec.SECP384R1(),
        "P-521": ec.SECP521R1(),
        "secp256k1": ec.SECP256K1(),
    }
    return ec.generate_private_key(curves[curve])


@functools.cache
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def pem(key: Any, fmt: serialization.PrivateFormat = PKCS8, password: str | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else PLAIN
    )
    return str(key.private_bytes(PEM, fmt, encryption).decode())


def public_pem(key: Any) -> str:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return str(key.public_key().public_bytes(PEM, spki).decode())


def private_jwk(key: Any, **members: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
    return {**jwk, **members}


def certificate(key: Any) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_ID)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    signing_hash = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key, signing_hash)
    )


def client_assertion(auth: PrivateKeyJWT | ClientSecretJWT, secret: str | None = None) -> str:
    """The client_assertion one token request made at NOW carries."""
    grant = ClientCredentials(
        TOKEN_URL, client_id=CLIENT_ID, client_secret=secret, client_auth=auth
    )
    return dict(grant.token_request(NOW).form)["client_assertion"]


def verified(assertion: str, key: Any, algorithm: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, after pyjwt checked the signature with ``key``."""
    claims = jwt.decode(
        assertion,
        key,
        algorithms=[algorithm],
        audience=TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    return jwt.get_unverified_header(assertion), claims


# -- every accepted form of key ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("PKCS#8 PEM text", pem),
        ("PKCS#8 PEM bytes", lambda k: pem(k).encode()),
        ("PKCS#1 PEM", lambda k: pem(k, TRADITIONAL)),
        ("encrypted PKCS#8 PEM", lambda k: pem(k, password=PASSWORD)),
        ("DER bytes", lambda k: k.private_bytes(DER, PKCS8, PLAIN)),
        ("key object", lambda k: k),
        ("JWK dict", private_jwk),
        ("JWK JSON text", lambda k: json.dumps(private_jwk(k))),
    ],
)
def test_rsa_key_forms_all_sign_verifiably(name: str, make: Any) -> None:
    """An RSA key given in any accepted form signs assertions its public key verifies."""
    key = rsa_key()
    password = PASSWORD if "encrypted" in name else None
    auth = PrivateKeyJWT(make(key), algorithm="RS256", password=password)
    header, claims = verified(client_assertion(auth), key.public_key(), "RS256")
    assert header["alg"] == "RS256"
    assert claims["iss"] == CLIENT_ID


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("SEC1 PEM", lambda k: pem(k, TRADITIONAL)),
        ("encrypted SEC1 PEM", lambda k: pem(k, TRADITIONAL, password=PASSWORD)),
        ("PKCS#8 PEM", pem),
        ("JWK dict", private_jwk),
        ("key object", lambda k: k),
    ],
)
def test_ec_key_forms_all_sign_verifiably(name: str, make: Any) -> None:
    """A P-256 key given as SEC1, PKCS#8, encrypted PEM, JWK or object signs verifiably."""
    key = ec_key("P-256")
    password = PASSWORD.encode() if "encrypted" in name else None
    auth = PrivateKeyJWT(make(key), algorithm="ES256", password=password)
    header, _ = verified(client_assertion(auth), key.public_key(), "ES256")
    assert header["alg"] == "ES256"


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ("RS256", rsa_key),
        ("RS384", rsa_key),
        ("RS512", rsa_key),
        ("PS256", rsa_key),
        ("PS384", rsa_key),
        ("PS512", rsa_key),
        ("ES256", lambda: ec_key("P-256")),
        ("ES384", lambda: ec_key("P-384")),
        ("ES512", lambda: ec_key("P-521")),
        ("EdDSA", ed_key),
    ],
)
def test_x4_every_algorithm_signs_with_its_key(algorithm: str, key: Any) -> None:
    """SPEC X4: each private-key algorithm signs with its key type; pyjwt verifies it."""
    private = key()
    auth = PrivateKeyJWT(pem(private), algorithm=algorithm)
    header, _ = verified(client_assertion(auth), private.public_key(), algorithm)
    assert header["alg"] == algorithm


def test_k11_jwk_kid_becomes_the_kid_header() -> None:
    """A JWK's own kid is the kid header when key_id is not given."""
    key = ec_key("P-256")
    auth = PrivateKeyJWT(private_jwk(key, kid="jwk-7", alg="ES256", use="sig"), algorithm="ES256")
    header, _ = verified(client_assertion(auth), key.public_key(), "ES256")
    assert header == {"alg": "ES256", "kid": "jwk-7", "typ": "JWT"}
    assert auth.key_id == "jwk-7"


def test_key_id_that_contradicts_the_jwk_kid_is_refused() -> None:
    """key_id and the JWK's kid must agree; the server knows the key by one of them."""
    with pytest.raises(ConfigurationError, match="differs from the JWK's kid"):
        PrivateKeyJWT(private_jwk(ec_key("P-256"), kid="a"), algorithm="ES256", key_id="b")


# -- keys refused at construction -----------------------------------------------------


def test_x1_encrypted_pem_without_password_is_refused() -> None:
    """An encrypted PEM without password= says to pass the password."""
    with pytest.raises(ConfigurationError, match="encrypted: pass its password"):
        PrivateKeyJWT(pem(ec_key("P-256"), password=PASSWORD), algorithm="ES256")


def test_x1_wrong_password_is_refused() -> None:
    """A wrong password is a ConfigurationError, not a cryptography ValueError."""
    with pytest.raises(ConfigurationError, match="password is wrong"):
        PrivateKeyJWT(pem(ec_key("P-256"), password=PASSWORD), algorithm="ES256", password="nope")


def test_x1_password_for_a_plain_key_is_refused() -> None:
    """password= with an unencrypted key is refused rather than ignored."""
    with pytest.raises(ConfigurationError, match="not encrypted"):
        PrivateKeyJWT(pem(ec_key("P-256")), algorithm="ES256", password=PASSWORD)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("public PEM", public_pem),
        ("public key object", lambda k: k.public_key()),
        ("certificate PEM", lambda k: certificate(k).public_bytes(PEM).decode()),
        ("certificate object", certificate),
        ("public JWK", lambda k: {kk: v for kk, v in private_jwk(k).items() if kk != "d"}),
    ],
)
def test_x1_public_key_is_refused(name: str, make: Any) -> None:
    """A public key or certificate where the private key is needed is refused, by name."""
    with pytest.raises(ConfigurationError, match="private"):
        PrivateKeyJWT(make(ec_key("P-256")), algorithm="ES256")


@pytest.mark.parametrize(
    ("algorithm", "key", "message"),
    [
        ("ES256", rsa_key, "ES256 needs a P-256 EC private key, but key is a 2048-bit"),
        (
            "ES256",
            lambda: ec_key("P-384"),
            "ES256 needs a P-256 EC private key, but key is a P-384",
        ),
        ("ES384", lambda: ec_key("P-256"), "use ES256 with this key"),
        ("ES512", lambda: ec_key("P-384"), "use ES384 with this key"),
        ("ES256", lambda: ec_key("P-521"), "use ES512 with this key"),
        ("ES256", lambda: ec_key("secp256k1"), "secp256k1 EC private key"),
        ("RS256", lambda: ec_key("P-256"), "RS256 needs an RSA private key"),
        ("PS256", ed_key, "use EdDSA with this key"),
        ("EdDSA", lambda: ec_key("P-256"), "EdDSA needs an Ed25519 private key"),
        ("EdDSA", ed448.Ed448PrivateKey.generate, "Ed448"),
    ],
)
def test_x1_x4_key_that_does_not_fit_the_algorithm_is_refused(
    algorithm: str, key: Any, message: str
) -> None:
    """SPEC X1, X4: one key, one algorithm; the message names the key and a fix."""
    with pytest.raises(ConfigurationError, match=message):
        PrivateKeyJWT(key(), algorithm=algorithm)


def test_x1_rsa_key_with_hs256_is_refused() -> None:
    """SPEC X1: an RSA key with HS256 is refused and pointed at ClientSecretJWT."""
    with pytest.raises(ConfigurationError, match=r"ClientSecretJWT\(algorithm='HS256'\)"):
        PrivateKeyJWT(pem(rsa_key()), algorithm="HS256")
    with pytest.raises(ConfigurationError, match="shared secret"):
        JWTBearerGrant(TOKEN_URL, issuer="i", subject="s", key=pem(rsa_key()), algorithm="HS256")


def test_x1_client_secret_jwt_refuses_private_key_algorithms() -> None:
    """ClientSecretJWT only signs with HS256/384/512; RS256 points at PrivateKeyJWT."""
    with pytest.raises(ConfigurationError, match="PrivateKeyJWT"):
        ClientSecretJWT(algorithm="RS256")


def test_x1_jwk_for_another_algorithm_is_refused() -> None:
    """A JWK whose alg names another algorithm is refused."""
    with pytest.raises(ConfigurationError, match="exactly one algorithm"):
        PrivateKeyJWT(private_jwk(rsa_key(), alg="RS256"), algorithm="PS256")


def test_x1_jwk_for_encryption_is_refused() -> None:
    """A JWK marked use=enc is not a signing key."""
    with pytest.raises(ConfigurationError, match="use='enc'"):
        PrivateKeyJWT(private_jwk(ec_key("P-256"), use="enc"), algorithm="ES256")


def test_x1_symmetric_jwk_is_refused() -> None:
    """An 'oct' JWK is a shared secret: PrivateKeyJWT refuses it and names ClientSecretJWT."""
    with pytest.raises(ConfigurationError, match="ClientSecretJWT"):
        PrivateKeyJWT({"kty": "oct", "k": "c2VjcmV0"}, algorithm="ES256")


def test_broken_jwk_is_a_configuration_error() -> None:
    """A JWK missing members is a ConfigurationError, whatever pyjwt raised inside."""
    jwk = private_jwk(ec_key("P-256"))
    del jwk["x"]
    with pytest.raises(ConfigurationError, match="not a valid EC private key"):
        PrivateKeyJWT(jwk, algorithm="ES256")


def test_x3_rsa_under_2048_bits_is_refused() -> None:
    """SPEC X3: a 1024-bit RSA key is refused for RS256 and PS256."""
    small = rsa_key(1024)
    for algorithm in ("RS256", "PS256"):
        with pytest.raises(ConfigurationError, match="1024 bits"):
            PrivateKeyJWT(small, algorithm=algorithm)


@pytest.mark.parametrize("algorithm", ["none", "None", "NONE"])
def test_x2_alg_none_is_refused_everywhere(algorithm: str) -> None:
    """SPEC X2, J7: alg none is refused by all three classes, whatever its case."""
    with pytest.raises(ConfigurationError, match="unsigned JWT"):
        PrivateKeyJWT(ec_key("P-256"), algorithm=algorithm)
    with pytest.raises(ConfigurationError, match="unsigned JWT"):
        ClientSecretJWT(algorithm=algorithm)
    with pytest.raises(ConfigurationError, match="unsigned JWT"):
        JWTBearerGrant(TOKEN_URL, issuer="i", subject="s", key=ec_key("P-256"), algorithm=algorithm)


@pytest.mark.parametrize(
    ("algorithm", "message"),
    [
        ("ES256K", "unsupported algorithm 'ES256K'"),
        ("RS1", "unsupported algorithm 'RS1'"),
        ("es256", "did you mean 'ES256'"),
        ("", "must be a string"),
        (1, "must be a string"),
    ],
)
def test_unknown_algorithm_is_refused(algorithm: Any, message: str) -> None:
    """An unknown algorithm is refused with the supported list (and a case hint)."""
    with pytest.raises(ConfigurationError, match=message):
        PrivateKeyJWT(ec_key("P-256"), algorithm=algorithm)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (pathlib.Path("key.pem"), "not a path"),
        ("", "empty"),
        ("key.pem", "could not be read as a private key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "ssh"),
        ("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "holds no private key"),
        ("{not json", "not valid JSON"),
        ({"kty": "XYZ"}, "no supported 'kty'"),
        (12345, "got int"),
    ],
)
def test_unreadable_key_is_a_configuration_error(key: Any, message: str) -> None:
    """Paths, junk, OpenSSH keys and other types are refused with a hint."""
    with pytest.raises(ConfigurationError, match=message):
        PrivateKeyJWT(key, algorithm="ES256")


# -- client_secret_jwt secrets (K9, K10) ---------------------------------------------


@pytest.mark.parametrize(("algorithm", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_k10_short_hmac_secret_is_refused(algorithm: str, minimum: int) -> None:
    """SPEC K10: a secret one byte shorter than the hash is refused; exactly as long works."""
    auth = ClientSecretJWT(algorithm=algorithm)
    with pytest.raises(ConfigurationError, match=f"at least {minimum} bytes"):
        ClientCredentials(
            TOKEN_URL, client_id=CLIENT_ID, client_secret="x" * (minimum - 1), client_auth=auth
        )
    secret = "x" * minimum
    header, _ = verified(client_assertion(auth, secret), secret.encode(), algorithm)
    assert header["alg"] == algorithm


def test_k9_k10_secret_length_counts_utf8_bytes() -> None:
    """SPEC K9: the HMAC key is the UTF-8 bytes of the secret, so 16 'é' are 32 bytes."""
    secret = "é" * 16
    auth = ClientSecretJWT()
    with pytest.warns(NonVSCHARWarning):  # é: outside VSCHAR (B9), still used as UTF-8
        assertion = client_assertion(auth, secret)
    _, claims = verified(assertion, secret.encode("utf-8"), "HS256")
    assert claims["sub"] == CLIENT_ID


# -- x5t#S256 from a certificate (K11) -------------------------------------------------


@pytest.mark.parametrize("form", ["PEM text", "DER bytes", "object"])
def test_k11_x5t_s256_is_the_certificate_thumbprint(form: str) -> None:
    """SPEC K11: x5t#S256 is base64url(SHA-256(DER certificate)), from PEM, DER or object."""
    key = ec_key("P-256")
    cert = certificate(key)
    der = cert.public_bytes(DER)
    given: dict[str, Any] = {"PEM text": cert.public_bytes(PEM).decode(), "DER bytes": der}
    given["object"] = cert
    auth = PrivateKeyJWT(key, algorithm="ES256", key_id="k1", certificate=given[form])
    header, _ = verified(client_assertion(auth), key.public_key(), "ES256")
    thumbprint = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert header == {"alg": "ES256", "kid": "k1", "typ": "JWT", "x5t#S256": thumbprint}


def test_k11_certificate_of_another_key_is_refused() -> None:
    """A certificate whose public key is not the signing key's is refused at construction."""
    with pytest.raises(ConfigurationError, match="not the certificate of key"):
        PrivateKeyJWT(ec_key("P-256"), algorithm="ES256", certificate=certificate(ed_key()))


def test_k11_unreadable_certificate_is_refused() -> None:
    """A certificate that is not PEM or DER is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="certificate could not be read"):
        PrivateKeyJWT(ec_key("P-256"), algorithm="ES256", certificate=b"not a certificate")


def test_k11_certificate_of_the_wrong_type_is_refused() -> None:
    """certificate= takes PEM, DER or a cryptography certificate, nothing else."""
    with pytest.raises(ConfigurationError, match="certificate must be PEM or DER"):
        PrivateKeyJWT(ec_key("P-256"), algorithm="ES256", certificate=123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "password", "message"),
    [
        (lambda: private_jwk(ec_key("P-256")), "pw", "not to a JWK"),
        (lambda: pem(ec_key("P-256")), 1234, "password must be str or bytes"),
        (lambda: private_jwk(ec_key("P-256"), kid=""), None, "'kid' must be a non-empty string"),
    ],
)
def test_key_arguments_that_do_not_fit_together_are_refused(
    key: Any, password: Any, message: str
) -> None:
    """A password for a JWK, a password that is not text, an empty JWK kid: refused."""
    with pytest.raises(ConfigurationError, match=message):
        PrivateKeyJWT(key(), algorithm="ES256", password=password)
