"""DPoP (RFC 9449): proofs of possession for sender-constrained tokens. No I/O.

``DPoP`` is the configuration a user passes (``TokenAuth(provider,
dpop=DPoP())``); ``bind()`` gives the ``Prover`` one TokenAuth uses: its key
(the one given, or one generated for that TokenAuth and kept across
renewals), the static parts of every proof (the protected header with the
public JWK, computed once, and the RFC 7638 thumbprint), and the server
nonces it has learned, one per origin (SPEC D1-D3).

A proof is one signature: the header segment is ready, the claims are a
small JSON object, and the signature is made with cryptography directly.
"""

# ruff: noqa: PLC0415  (cryptography is imported lazily, as in _keys)

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._errors import ConfigurationError, InvalidTokenResponseError, TokenError
from ._keys import ASYMMETRIC_ALGORITHMS, check_algorithm, load_signing_key

if TYPE_CHECKING:
    from ._keys import SigningKey

__all__ = [
    "DPoP",
    "DPoPNonceError",
    "DPoPNotBoundError",
    "Prover",
    "normalize_htu",
    "public_jwk",
    "thumbprint",
]

#: The ``error`` a server answers when it wants a (new) nonce in the proof (RFC 9449 §8, §9).
USE_DPOP_NONCE = "use_dpop_nonce"

#: The longest nonce accepted from a server (RFC 9449 §8.1 puts no bound; a header is small).
MAX_NONCE_LENGTH = 512

_HASHES = {"256": "SHA256", "384": "SHA384", "512": "SHA512"}
_EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}


class DPoPNonceError(TokenError):
    """A server demanded a DPoP nonce again right after getting one, or gave none to use.

    ``origin`` is the server's origin (scheme, host and port) and
    ``status_code`` the HTTP status of its answer (400 from an authorization
    server, 401 from an API). The request is not retried again: a server
    that rejects every nonce it hands out would otherwise be asked forever.
    """

    def __init__(self, message: str, *, origin: str, status_code: int) -> None:
        super().__init__(message)
        self.origin = origin
        self.status_code = status_code


class DPoPNotBoundError(InvalidTokenResponseError):
    """The authorization server ignored the DPoP proof and issued a Bearer token.

    The token is not bound to the key, so it would travel as a plain bearer
    token. Refused unless ``DPoP(allow_bearer=True)``.
    """


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value: int, size: int | None = None) -> bytes:
    size = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(size, "big")


def public_jwk(key: SigningKey) -> dict[str, str]:
    """The public JWK of ``key``: only the members RFC 7638 hashes (never a private part)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        return {
            "crv": crv,
            "kty": "EC",
            "x": _b64(_int_bytes(numbers.x, size)),
            "y": _b64(_int_bytes(numbers.y, size)),
        }
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    if isinstance(key, rsa.RSAPrivateKey):
        public = key.public_key().public_numbers()
        return {"e": _b64(_int_bytes(public.e)), "kty": "RSA", "n": _b64(_int_bytes(public.n))}
    raise ConfigurationError(f"DPoP cannot use a {type(key).__name__} key")  # pragma: no cover


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638: base64url SHA-256 of the required members, sorted, without whitespace."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode("utf-8")).digest())


@lru_cache(maxsize=512)
def normalize_htu(url: str) -> tuple[str, str]:
    """RFC 9449 §4.3: (origin, htu) of ``url``: lower-case scheme and host, no default
    port, ``/`` for an empty path, no query and no fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        host = f"{host}:{port}"
    origin = f"{scheme}://{host}"
    return origin, origin + (parts.path or "/")


def access_token_hash(access_token: str) -> str:
    """``ath``: base64url SHA-256 of the ASCII access token (RFC 9449 §4.2)."""
    return _b64(hashlib.sha256(access_token.encode("ascii")).digest())


class DPoP:
    """Sender-constrained tokens (RFC 9449): pass ``TokenAuth(provider, dpop=DPoP())``.

    ``key`` is the private key proofs are signed with: PEM or DER (str or
    bytes), a private JWK (dict or JSON text) or a cryptography key object,
    checked against ``algorithm`` here; without ``algorithm`` it is taken from
    the key as for PrivateKeyJWT (ES256/384/512 by curve, EdDSA for Ed25519,
    RS256 for RSA). Without a key, each TokenAuth generates a key for
    ``algorithm`` (ES256 by default) when it is constructed and keeps it for its life,
    across renewals (so nonces and bound tokens stay valid). Processes that
    should share tokens through a store must be given the same key: the key
    thumbprint is part of the store's entry name (SPEC D3, F1).

    Every token request and every API request then carries a fresh proof;
    tokens are sent as ``Authorization: DPoP <token>``. If the authorization
    server ignores DPoP and issues a Bearer token, TokenAuth refuses it with
    DPoPNotBoundError, unless ``allow_bearer=True``, which uses it as a
    plain bearer token.
    """

    __slots__ = ("_algorithm", "_allow_bearer", "_key")

    def __init__(
        self,
        key: object = None,
        *,
        algorithm: str | None = None,
        allow_bearer: bool = False,
    ) -> None:
        if algorithm is not None or key is None:
            algorithm = check_algorithm("ES256" if algorithm is None else algorithm, hmac=False)
        if not isinstance(allow_bearer, bool):
            raise ConfigurationError(
                f"allow_bearer must be True or False, got {type(allow_bearer).__name__}"
            )
        self._algorithm = algorithm or "ES256"
        self._allow_bearer = allow_bearer
        self._key: SigningKey | None = None
        if key is not None:
            self._key, self._algorithm, _ = load_signing_key(
                key, algorithm=algorithm, password=None
            )

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def allow_bearer(self) -> bool:
        return self._allow_bearer

    def bind(self, *, jti: Callable[[], str] | None = None) -> Prover:
        """The prover of one TokenAuth: this key, or a key generated now for it."""
        key = self._key if self._key is not None else generate_key(self._algorithm)
        return Prover(key, self._algorithm, allow_bearer=self._allow_bearer, jti=jti)

    def __repr__(self) -> str:
        kind = "generated key" if self._key is None else "given key"
        return f"DPoP(algorithm={self._algorithm!r}, {kind})"


def generate_key(algorithm: str) -> SigningKey:
    """A new private key for ``algorithm``: P-256/384/521, Ed25519, or RSA 2048."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if ASYMMETRIC_ALGORITHMS[algorithm] == "EC":
        curves: dict[str, ec.EllipticCurve] = {
            "ES256": ec.SECP256R1(),
            "ES384": ec.SECP384R1(),
            "ES512": ec.SECP521R1(),
        }
        return ec.generate_private_key(curves[algorithm])
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _signer(key: SigningKey, algorithm: str) -> Callable[[bytes], bytes]:
    """One call that signs bytes and returns the JWS signature (raw r||s for ECDSA)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    hash_type = getattr(hashes, _HASHES[algorithm[2:]])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size, ecdsa = _EC_SIZES[algorithm], ec.ECDSA(hash_type())

        def sign_ec(data: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(data, ecdsa))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    if not isinstance(key, rsa.RSAPrivateKey):  # pragma: no cover - load_signing_key checked
        raise ConfigurationError(f"DPoP cannot sign with a {type(key).__name__} key")
    pad: padding.AsymmetricPadding
    if algorithm.startswith("PS"):
        pad = padding.PSS(mgf=padding.MGF1(hash_type()), salt_length=hash_type.digest_size)
    else:
        pad = padding.PKCS1v15()
    rsa_key, rsa_hash = key, hash_type()

    def sign_rsa(data: bytes) -> bytes:
        return rsa_key.sign(data, pad, rsa_hash)

    return sign_rsa


def _default_jti() -> str:
    return secrets.token_urlsafe(16)


class Prover:
    """The DPoP state of one TokenAuth: key, static header, thumbprint, nonces per origin.

    Thread-safe: proofs need no lock; the nonce table takes a short one.
    """

    __slots__ = (
        "_ath",
        "_jti",
        "_lock",
        "_nonces",
        "_prefix",
        "_sign",
        "algorithm",
        "allow_bearer",
        "jkt",
        "jwk",
    )

    def __init__(
        self,
        key: SigningKey,
        algorithm: str,
        *,
        allow_bearer: bool = False,
        jti: Callable[[], str] | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.allow_bearer = allow_bearer
        self.jwk = public_jwk(key)
        self.jkt = thumbprint(self.jwk)
        header = {"typ": "dpop+jwt", "alg": algorithm, "jwk": self.jwk}
        self._prefix = _b64(json.dumps(header, separators=(",", ":")).encode()) + "."
        self._sign = _signer(key, algorithm)
        self._jti = jti or _default_jti
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()
        self._ath: tuple[str, str] = ("", "")

    # -- proofs (SPEC D1) ------------------------------------------------------------------

    def proof(self, method: str, url: str, now: float, *, access_token: str | None = None) -> str:
        """A new proof for ``method url`` at ``now``, with the origin's nonce if one is known.

        ``access_token`` (resource requests only) adds ``ath``.
        """
        origin, htu = normalize_htu(url)
        claims: dict[str, Any] = {"jti": self._jti(), "htm": method, "htu": htu, "iat": int(now)}
        nonce = self._nonces.get(origin)
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            last_token, last_ath = self._ath
            if last_token != access_token:
                last_ath = access_token_hash(access_token)
                self._ath = (access_token, last_ath)
            claims["ath"] = last_ath
        signing_input = self._prefix + _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{signing_input}.{_b64(self._sign(signing_input.encode('ascii')))}"

    # -- nonces (SPEC D2) ------------------------------------------------------------------

    def learn(self, url: str, nonce: str | None) -> bool:
        """Keep ``nonce`` (a ``DPoP-Nonce`` header) for the origin of ``url``; whether it is new."""
        if nonce is None or not nonce or len(nonce) > MAX_NONCE_LENGTH or not nonce.isascii():
            return False
        origin = normalize_htu(url)[0]
        with self._lock:
            if self._nonces.get(origin) == nonce:
                return False
            self._nonces[origin] = nonce
            return True

    def nonce_for(self, url: str) -> str | None:
        """The nonce last learned from the origin of ``url``, or None."""
        return self._nonces.get(normalize_htu(url)[0])

    def __repr__(self) -> str:
        return f"<DPoP prover {self.algorithm} jkt={self.jkt}>"


def nonce_demand_error(origin: str, status_code: int, *, had_nonce: bool) -> DPoPNonceError:
    """The typed error for a nonce demand we do not answer again (SPEC D2)."""
    if had_nonce:
        message = (
            f"{origin} demanded a new DPoP nonce (use_dpop_nonce, HTTP {status_code}) right "
            "after a proof with the nonce it gave; not retrying again. Check the server's "
            "nonce configuration and this machine's clock"
        )
    else:
        message = (
            f"{origin} demanded a DPoP nonce (use_dpop_nonce, HTTP {status_code}) but sent "
            "no DPoP-Nonce header to use"
        )
    return DPoPNonceError(message, origin=origin, status_code=status_code)
