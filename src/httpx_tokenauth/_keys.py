"""Signing keys for JWT assertions: loading them and pairing them with an algorithm. No I/O.

A key is parsed once, when the JWT class is constructed, into a cryptography
key object; minting an assertion then only signs. Every rule of SPEC X1-X4,
K9 and K10 is checked here, at construction, with a message that says what is
wrong and how to fix it. Messages describe a key (its type and size), never
its contents; password and secret never appear in them.

cryptography and pyjwt are imported inside the functions, never at module
import: ``import httpx_tokenauth`` does not pay for them (issue 3, point 8).
"""

# ruff: noqa: PLC0415  (the imports inside functions are the point: they are lazy)

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from typing import TypeAlias

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    #: A private key this library signs with.
    SigningKey: TypeAlias = RSAPrivateKey | EllipticCurvePrivateKey | Ed25519PrivateKey
    #: What ``key=`` accepts: PEM or DER text or bytes, a JWK (dict or JSON text), a key object.
    KeyInput: TypeAlias = str | bytes | Mapping[str, Any] | SigningKey
    #: What ``certificate=`` accepts: PEM or DER text or bytes, or a certificate object.
    CertificateInput: TypeAlias = str | bytes | x509.Certificate

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_RSA_ALGORITHM",
    "HMAC_ALGORITHMS",
    "MIN_RSA_BITS",
    "KeyConfigurationError",
    "certificate_thumbprint",
    "check_algorithm",
    "hmac_key",
    "infer_algorithm",
    "load_signing_key",
]


class KeyConfigurationError(ConfigurationError):
    """A ConfigurationError about a signing key, its algorithm, password or certificate,
    whose advice is written for the Python API.

    ``problem`` is what is wrong, without that advice; ``reason`` names the
    rule that refused it (stable: ``"password_needed"``, ``"shared_secret_algorithm"``,
    ...) and ``suggestions`` the algorithms that would fit, if any. The command
    line reads them to give the same advice in terms of its own options.
    """

    def __init__(
        self, problem: str, advice: str, *, reason: str, suggestions: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"{problem}: {advice}" if advice else problem)
        self.problem = problem
        self.reason = reason
        self.suggestions = suggestions


#: Algorithm -> key family, for the private-key algorithms (RFC 7518 §3.3-3.5, RFC 8037).
ASYMMETRIC_ALGORITHMS: Mapping[str, str] = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
}

#: HMAC algorithm -> the shortest secret it accepts, in bytes (RFC 7518 §3.2, SPEC K10).
HMAC_ALGORITHMS: Mapping[str, int] = {"HS256": 32, "HS384": 48, "HS512": 64}

#: SPEC X3: RSA keys below this are refused (RFC 7518 §3.3).
MIN_RSA_BITS = 2048

# SPEC X4: the one curve each ECDSA algorithm is defined for (RFC 7518 §3.4).
_EC_CURVES: Mapping[str, tuple[str, str]] = {
    "ES256": ("secp256r1", "P-256"),
    "ES384": ("secp384r1", "P-384"),
    "ES512": ("secp521r1", "P-521"),
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def check_algorithm(algorithm: object, *, hmac: bool) -> str:
    """SPEC J7, X1, X2: a known algorithm of the right kind; ``none`` never.

    ``hmac=True`` is ClientSecretJWT (HS256/384/512 only); otherwise the
    private-key algorithms.
    """
    if not isinstance(algorithm, str) or not algorithm:
        raise ConfigurationError(
            f"algorithm must be a string such as 'ES256', got {type(algorithm).__name__}"
        )
    if algorithm.lower() == "none":
        raise ConfigurationError(
            "algorithm 'none' makes an unsigned JWT, which no server may accept "
            "(RFC 8725 §3.1); choose a signing algorithm such as 'ES256' or 'RS256'"
        )
    allowed = HMAC_ALGORITHMS if hmac else ASYMMETRIC_ALGORITHMS
    if algorithm in allowed:
        return algorithm
    if not hmac and algorithm in HMAC_ALGORITHMS:
        raise KeyConfigurationError(
            f"{algorithm} signs with a shared secret, not a private key",
            f"use ClientSecretJWT(algorithm={algorithm!r}) with client_secret=..., or a "
            "private-key algorithm such as 'ES256', 'PS256' or 'RS256'",
            reason="shared_secret_algorithm",
        )
    if hmac and algorithm in ASYMMETRIC_ALGORITHMS:
        raise KeyConfigurationError(
            f"{algorithm} signs with a private key, not the client secret",
            f"use PrivateKeyJWT(key, algorithm={algorithm!r}), or 'HS256', 'HS384' or "
            "'HS512' with ClientSecretJWT",
            reason="private_key_algorithm",
        )
    hint = ""
    for known in (*ASYMMETRIC_ALGORITHMS, *HMAC_ALGORITHMS):
        if known.lower() == algorithm.lower():
            hint = f" (algorithm names are case-sensitive: did you mean {known!r}?)"
    raise ConfigurationError(
        f"unsupported algorithm {algorithm[:40]!r}{hint}; supported: {', '.join(allowed)}"
    )


#: The algorithm a key implies when none is given (SPEC X9): one per EC curve,
#: EdDSA for Ed25519, and RS256 for RSA, the one RSA algorithm every server
#: that takes RSA accepts (PS256 must be asked for).
DEFAULT_RSA_ALGORITHM = "RS256"
_CURVE_ALGORITHMS = {curve: algorithm for algorithm, (curve, _) in _EC_CURVES.items()}


def load_signing_key(
    key: object, *, algorithm: str | None, password: str | bytes | None
) -> tuple[SigningKey, str, str | None]:
    """Parse ``key`` once and check it against ``algorithm`` (SPEC X1, X3, X4, X9).

    Returns the cryptography private key object, the algorithm, and, for a
    JWK, its ``kid`` (or None). Accepts PEM (PKCS#8, PKCS#1, SEC1, encrypted
    with ``password``) or DER as str or bytes, a private JWK as a dict or
    JSON text, or a cryptography private key object. Public keys,
    certificates and keys that do not fit the algorithm are refused.

    ``algorithm=None`` takes the algorithm from the key (``infer_algorithm``):
    a JWK's ``alg`` member, else ES256/ES384/ES512 by curve, EdDSA for
    Ed25519, and RS256 for RSA.
    """
    if algorithm is not None:
        algorithm = check_algorithm(algorithm, hmac=False)
    kid: str | None = None
    if isinstance(key, os.PathLike):
        raise ConfigurationError(
            "key must be the key itself, not a path: read the file first, e.g. "
            "key=pathlib.Path('key.pem').read_bytes()"
        )
    if password is not None and not isinstance(password, (str, bytes)):
        raise ConfigurationError(f"password must be str or bytes, got {type(password).__name__}")
    if isinstance(key, str) and key.lstrip().startswith("{"):
        try:
            key = json.loads(key)
        except ValueError:
            raise KeyConfigurationError(
                "key looks like a JWK but is not valid JSON",
                "pass the JWK as a dict, or the key as PEM text",
                reason="jwk_not_json",
            ) from None
    if isinstance(key, Mapping):
        if password is not None:
            raise KeyConfigurationError(
                "a password applies to an encrypted PEM key, not to a JWK",
                "drop password=",
                reason="password_not_needed",
            )
        loaded, kid, jwk_alg = _from_jwk(key, algorithm)
        if algorithm is None and jwk_alg is not None:
            algorithm = check_algorithm(jwk_alg, hmac=False)
    elif isinstance(key, (str, bytes, bytearray)):
        data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        loaded = _from_bytes(data, password)
    else:
        loaded = key
    if algorithm is None:
        algorithm = infer_algorithm(loaded)
    return _check_pairing(loaded, algorithm), algorithm, kid


def infer_algorithm(key: object) -> str:
    """The algorithm for a private key when none was named (SPEC X9).

    ES256, ES384 or ES512 for a P-256, P-384 or P-521 key (each curve has one),
    EdDSA for Ed25519, RS256 for RSA (DEFAULT_RSA_ALGORITHM: RSA keys also sign
    PS256/384/512 and RS384/512, which must be named). Anything else is refused
    with the reason.
    """
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    _check_kind(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return DEFAULT_RSA_ALGORITHM
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = _CURVE_ALGORITHMS.get(key.curve.name)
        if algorithm is not None:
            return algorithm
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ConfigurationError(
        f"key is {_describe(key)}, which none of the supported algorithms signs with: "
        "use an RSA key (2048 bits or more), an EC key on P-256, P-384 or P-521, or an "
        "Ed25519 key"
    )


def _from_bytes(data: bytes, password: str | bytes | None) -> object:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if not data.strip():
        raise KeyConfigurationError(
            "key is empty", "pass the private key as PEM text or bytes", reason="key_empty"
        )
    pem = b"-----BEGIN" in data
    if pem and b"PRIVATE KEY-----" not in data:
        if b"PUBLIC KEY-----" in data or b"CERTIFICATE-----" in data:
            raise ConfigurationError(
                "key is a public key or a certificate; signing needs the private key "
                "(a PEM that starts with '-----BEGIN PRIVATE KEY-----' or similar)"
            )
        raise ConfigurationError(
            "key is a PEM block that holds no private key; pass the private key PEM "
            "(PKCS#8, PKCS#1 'RSA PRIVATE KEY' or SEC1 'EC PRIVATE KEY')"
        )
    if b"OPENSSH PRIVATE KEY-----" in data:
        raise ConfigurationError(
            "key is in the OpenSSH format, which is not supported: convert it to PKCS#8 "
            "with 'ssh-keygen -p -m PKCS8 -f <file>'"
        )
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        if pem:
            return serialization.load_pem_private_key(data, password=secret)
        return serialization.load_der_private_key(data, password=secret)
    except TypeError:
        if password is None:
            raise KeyConfigurationError(
                "the private key is encrypted",
                "pass its password as password=...",
                reason="password_needed",
            ) from None
        raise KeyConfigurationError(
            "a password was given, but the private key is not encrypted",
            "drop password=",
            reason="password_not_needed",
        ) from None
    except ValueError:
        if password is not None:
            raise KeyConfigurationError(
                "could not decrypt the private key: the password is wrong or the key damaged",
                "",
                reason="password_wrong",
            ) from None
        raise KeyConfigurationError(
            "key could not be read as a private key",
            "pass PEM text (PKCS#8, PKCS#1 or SEC1), DER bytes, a private JWK or a "
            "cryptography private key object (for a key file, pass its contents: "
            "key=pathlib.Path('key.pem').read_bytes())",
            reason="key_unreadable",
        ) from None
    except UnsupportedAlgorithm:
        message = "key uses a key type or encryption that cryptography does not support"
    raise ConfigurationError(message)


def _from_jwk(
    jwk: Mapping[str, Any], algorithm: str | None
) -> tuple[object, str | None, str | None]:
    """The key of a private JWK, its ``kid`` and its ``alg`` (either may be None)."""
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    kty = jwk.get("kty")
    if kty == "oct":
        raise KeyConfigurationError(
            "the JWK is a shared secret (kty 'oct'), not a private key",
            "PrivateKeyJWT and JWTBearerGrant sign with a private key; for a shared secret "
            "use ClientSecretJWT with client_secret=",
            reason="jwk_shared_secret",
        )
    readers: dict[str, Callable[[dict[str, Any]], object]] = {
        "RSA": RSAAlgorithm.from_jwk,
        "EC": ECAlgorithm.from_jwk,
        "OKP": OKPAlgorithm.from_jwk,
    }
    if kty not in readers:
        raise ConfigurationError(
            "the JWK has no supported 'kty'; expected 'RSA', 'EC' or 'OKP' (RFC 7517 §4.1)"
        )
    jwk_alg = jwk.get("alg")
    if jwk_alg is not None and not isinstance(jwk_alg, str):
        raise ConfigurationError("the JWK 'alg' must be a string such as 'ES256'")
    if jwk_alg is not None and algorithm is not None and jwk_alg != algorithm:
        raise KeyConfigurationError(
            f"the JWK is for algorithm {jwk_alg[:20]!r}, not {algorithm!r}, and a key is used "
            "with exactly one algorithm (RFC 8725 §3.1)",
            f"drop algorithm={algorithm!r} (the JWK's own is used), or pass a JWK for it",
            reason="jwk_algorithm",
            suggestions=(jwk_alg[:20],),
        )
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ConfigurationError(
            f"the JWK is marked use={str(use)[:20]!r}; a signing key must be 'sig' or unmarked"
        )
    if "d" not in jwk:
        raise ConfigurationError(
            "the JWK is a public key (it has no 'd' member); signing needs the private JWK"
        )
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise ConfigurationError("the JWK 'kid' must be a non-empty string")
    try:
        loaded = readers[kty](dict(jwk))
    except Exception:  # pyjwt raises InvalidKeyError, ValueError, KeyError...
        raise ConfigurationError(
            f"the JWK is not a valid {kty} private key: check its members against "
            "RFC 7518 §6 (a JWK exported by a JOSE library or your cloud's console works)"
        ) from None
    return loaded, kid, jwk_alg


def _check_kind(key: object) -> None:
    """A private key object, not a public key, a certificate or something else."""
    kind = _kind(key)
    if kind == "other":
        raise ConfigurationError(
            "key must be PEM or DER text or bytes, a private JWK (dict or JSON text) or a "
            f"cryptography private key object, got {type(key).__name__}"
        )
    if kind == "public":
        raise ConfigurationError(f"key is {_describe(key)}; signing needs the private key")


def _check_pairing(key: object, algorithm: str) -> SigningKey:
    """SPEC X1, X3, X4: a private key of the family and size the algorithm is defined for."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    _check_kind(key)
    family = ASYMMETRIC_ALGORITHMS[algorithm]
    if family == "RSA":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise _mismatch(key, algorithm, "an RSA private key")
        if key.key_size < MIN_RSA_BITS:
            raise ConfigurationError(
                f"the RSA key has {key.key_size} bits; RSA keys under {MIN_RSA_BITS} bits "
                "are refused (RFC 7518 §3.3): generate a 2048-bit or larger key, or an "
                "EC key for ES256"
            )
        return key
    if family == "EC":
        curve, curve_name = _EC_CURVES[algorithm]
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != curve:
            raise _mismatch(key, algorithm, f"a {curve_name} EC private key")
        return key
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise _mismatch(key, algorithm, "an Ed25519 private key")
    return key


def _mismatch(key: object, algorithm: str, wanted: str) -> ConfigurationError:
    """SPEC X1: one key, one algorithm; say which algorithm this key is for, if any."""
    better = _algorithms_for(key)
    fix = f"use {' or '.join(better)} with this key, or" if better else "pass"
    return KeyConfigurationError(
        f"{algorithm} needs {wanted}, but key is {_describe(key)}",
        f"{fix} a key that fits {algorithm}",
        reason="key_algorithm_mismatch",
        suggestions=tuple(better),
    )


def _algorithms_for(key: object) -> list[str]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return ["RS256", "PS256"] if key.key_size >= MIN_RSA_BITS else []
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [a for a, (curve, _) in _EC_CURVES.items() if curve == key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ["EdDSA"]
    return []


def _kind(key: object) -> str:
    """'private', 'public' (a public key or a certificate) or 'other'."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import (
        dsa,
        ec,
        ed448,
        ed25519,
        rsa,
        x448,
        x25519,
    )

    private = (
        rsa.RSAPrivateKey,
        ec.EllipticCurvePrivateKey,
        ed25519.Ed25519PrivateKey,
        ed448.Ed448PrivateKey,
        dsa.DSAPrivateKey,
        x25519.X25519PrivateKey,
        x448.X448PrivateKey,
    )
    public = (
        x509.Certificate,
        rsa.RSAPublicKey,
        ec.EllipticCurvePublicKey,
        ed25519.Ed25519PublicKey,
        ed448.Ed448PublicKey,
        dsa.DSAPublicKey,
        x25519.X25519PublicKey,
        x448.X448PublicKey,
    )
    if isinstance(key, private):
        return "private"
    if isinstance(key, public):
        return "public"
    return "other"


def _describe(key: object) -> str:
    """What kind of key this is, for messages: type and size, never the contents."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, x509.Certificate):
        return "an X.509 certificate"
    kind = f"{_kind(key)} key"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"a {key.key_size}-bit RSA {kind}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"a {_CURVE_NAMES.get(key.curve.name, key.curve.name)} EC {kind}"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return f"an Ed25519 {kind}"
    if isinstance(key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)):
        return f"an Ed448 {kind} (EdDSA here means Ed25519)"
    return f"a {type(key).__name__} (not a signing key)"


def hmac_key(secret: str, algorithm: str) -> bytes:
    """SPEC K9, K10: the UTF-8 bytes of the client secret, as long as the hash at least."""
    key = secret.encode("utf-8")
    minimum = HMAC_ALGORITHMS[algorithm]
    if len(key) < minimum:
        raise KeyConfigurationError(
            f"{algorithm} needs a client secret of at least {minimum} bytes (RFC 7518 §3.2) "
            "and this one is shorter",
            "ask the authorization server for a longer secret, or use PrivateKeyJWT",
            reason="secret_too_short",
        )
    return key


def certificate_thumbprint(certificate: object, key: SigningKey) -> str:
    """SPEC K11: the ``x5t#S256`` header, base64url(SHA-256(DER certificate)) (RFC 7515 §4.1.8).

    The certificate must be the one for ``key``: a mismatch is refused here,
    rather than as a puzzling ``invalid_client`` from the server.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    if isinstance(certificate, x509.Certificate):
        cert = certificate
    elif isinstance(certificate, (str, bytes, bytearray)):
        data = certificate.encode("utf-8") if isinstance(certificate, str) else bytes(certificate)
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                cert = x509.load_pem_x509_certificate(data)
            else:
                cert = x509.load_der_x509_certificate(data)
        except ValueError:
            raise KeyConfigurationError(
                "certificate could not be read",
                "pass the X.509 certificate as PEM ('-----BEGIN CERTIFICATE-----') or DER",
                reason="certificate_unreadable",
            ) from None
    else:
        raise ConfigurationError(
            "certificate must be PEM or DER text or bytes, or a cryptography "
            f"x509.Certificate, got {type(certificate).__name__}"
        )
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise KeyConfigurationError(
            "certificate is not the certificate of key: its public key is a different key",
            "pass the certificate issued for this private key",
            reason="certificate_mismatch",
        )
    digest = cert.fingerprint(hashes.SHA256())
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
