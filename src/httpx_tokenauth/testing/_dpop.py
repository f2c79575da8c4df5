"""DPoPVerifier: what a resource or authorization server checks in a DPoP proof (RFC 9449 §4.3).

Used by the tests' fake servers (MockTransport handlers) and by
``DPoPResourceServer``; independent of the client code it checks, except for the
RFC 7638 thumbprint and the §4.3 URL normalization, which are the RFC's own
definitions.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt

from .._dpop import normalize_htu, thumbprint

__all__ = ["DPoPProofError", "DPoPResourceServer", "DPoPVerifier"]

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
_ALGORITHMS = frozenset(
    {"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)


class DPoPProofError(Exception):
    """A proof failed a check. ``error`` is ``invalid_dpop_proof`` or ``use_dpop_nonce``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DPoPVerifier:
    """Checks proofs: header, signature, ``htm``, ``htu``, ``iat``, ``jti`` reuse, ``ath``,
    the token's ``cnf.jkt``, and (when ``require_nonce``) the server's current nonce.

    ``nonce`` is the value to hand out in ``DPoP-Nonce``; ``rotate_nonce()``
    makes a new one. ``proofs`` records every proof that passed (claims and
    header), in order. Thread-safe.
    """

    def __init__(
        self,
        *,
        require_nonce: bool = False,
        clock: Callable[[], float] = time.time,
        max_age: float = 300.0,
    ) -> None:
        self.require_nonce = require_nonce
        self.clock = clock
        self.max_age = max_age
        self.nonce = secrets.token_urlsafe(12)
        self.proofs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def rotate_nonce(self) -> str:
        self.nonce = secrets.token_urlsafe(12)
        return self.nonce

    def verify(
        self,
        proof: str | None,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        jkt: str | None = None,
    ) -> dict[str, Any]:
        """The proof's claims, or DPoPProofError saying which check failed."""
        if not proof:
            raise DPoPProofError("invalid_dpop_proof", "no DPoP header")
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError as exc:
            raise DPoPProofError("invalid_dpop_proof", f"not a JWS: {exc}") from None
        if header.get("typ") != "dpop+jwt":
            raise DPoPProofError("invalid_dpop_proof", "typ is not dpop+jwt")
        alg = header.get("alg")
        if alg not in _ALGORITHMS:
            raise DPoPProofError("invalid_dpop_proof", f"alg {alg!r} is not asymmetric")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise DPoPProofError("invalid_dpop_proof", "no jwk header")
        if _PRIVATE_MEMBERS & set(jwk):
            raise DPoPProofError("invalid_dpop_proof", "the jwk header holds a private key")
        try:
            key = jwt.PyJWK.from_dict(jwk, algorithm=alg).key
            claims = jwt.decode(
                proof, key, algorithms=[alg], options={"verify_aud": False, "verify_iat": False}
            )
        except jwt.PyJWTError as exc:
            raise DPoPProofError("invalid_dpop_proof", f"signature: {exc}") from None
        self._check_claims(claims, method=method, url=url)
        if access_token is not None:
            ath = _b64(hashlib.sha256(access_token.encode("ascii")).digest())
            if claims.get("ath") != ath:
                raise DPoPProofError("invalid_dpop_proof", "ath does not match the token")
        elif "ath" in claims:
            raise DPoPProofError("invalid_dpop_proof", "ath on a token request")
        if jkt is not None and thumbprint(jwk) != jkt:
            raise DPoPProofError("invalid_token", "the token is bound to another key")
        if self.require_nonce and claims.get("nonce") != self.nonce:
            raise DPoPProofError("use_dpop_nonce", "a current nonce is required")
        with self._lock:
            jti = claims["jti"]
            if jti in self._seen:
                raise DPoPProofError("invalid_dpop_proof", "jti was used before")
            self._seen.add(jti)
            self.proofs.append((header, claims))
        return claims

    def _check_claims(self, claims: Mapping[str, Any], *, method: str, url: str) -> None:
        for name in ("jti", "htm", "htu", "iat"):
            if name not in claims:
                raise DPoPProofError("invalid_dpop_proof", f"no {name} claim")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise DPoPProofError("invalid_dpop_proof", "jti is not a string")
        if claims["htm"] != method:
            raise DPoPProofError("invalid_dpop_proof", f"htm {claims['htm']!r} != {method!r}")
        if claims["htu"] != normalize_htu(url)[1]:
            raise DPoPProofError("invalid_dpop_proof", f"htu {claims['htu']!r} does not match")
        iat = claims["iat"]
        if not isinstance(iat, int) or abs(self.clock() - iat) > self.max_age:
            raise DPoPProofError("invalid_dpop_proof", "iat is not recent")


class DPoPResourceServer:
    """An API that accepts only DPoP-bound JWT access tokens of one issuer (RFC 9449 §7).

    ``handle`` is a request handler for ``httpx.MockTransport``: it checks the
    access token (signature against ``jwks``, ``iss``, ``aud``, ``exp``), the
    proof (``verifier``: signature, ``htm``, ``htu``, ``iat``, ``jti``, ``ath``,
    nonce) and that the proof's key is the token's ``cnf.jkt``. Every answer
    carries ``DPoP-Nonce``; rejections carry ``WWW-Authenticate: DPoP``.
    ``statuses`` records each answer's status and error code, in order.
    """

    def __init__(
        self,
        *,
        jwks: Mapping[str, Any],
        issuer: str,
        audience: str,
        require_nonce: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = jwt.PyJWKSet.from_dict(dict(jwks))
        self.issuer = issuer
        self.audience = audience
        self.verifier = DPoPVerifier(require_nonce=require_nonce, clock=clock)
        self.statuses: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        scheme, _, access_token = (request.headers.get("authorization") or "").partition(" ")
        try:
            claims = self._check(request, scheme, access_token)
        except DPoPProofError as exc:
            with self._lock:
                self.statuses.append((401, exc.error))
            challenge = f'DPoP error="{exc.error}", algs="ES256 EdDSA"'
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": challenge, "DPoP-Nonce": self.verifier.nonce},
                json={"error": exc.error},
            )
        with self._lock:
            self.statuses.append((200, None))
        return httpx.Response(
            200, headers={"DPoP-Nonce": self.verifier.nonce}, json={"sub": claims.get("sub")}
        )

    def _check(self, request: httpx.Request, scheme: str, access_token: str) -> dict[str, Any]:
        if scheme != "DPoP" or not access_token:
            raise DPoPProofError("invalid_token", "a DPoP-bound token is required")
        claims = self._token_claims(access_token)
        jkt = (claims.get("cnf") or {}).get("jkt")
        if not isinstance(jkt, str):
            raise DPoPProofError("invalid_token", "the token is not DPoP-bound")
        self.verifier.verify(
            request.headers.get("dpop"),
            method=request.method,
            url=str(request.url),
            access_token=access_token,
            jkt=jkt,
        )
        return claims

    def _token_claims(self, access_token: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(access_token).get("kid")
            key = next(k for k in self.keys.keys if kid is None or k.key_id == kid)
            claims: dict[str, Any] = jwt.decode(
                access_token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
            )
        except (jwt.PyJWTError, StopIteration) as exc:
            raise DPoPProofError("invalid_token", f"access token: {exc}") from None
        return claims
