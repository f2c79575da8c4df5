"""LocalIssuer: a platform that issues short-lived signed JWTs, as Kubernetes or GitHub Actions do.

For tests of secretless credentials: a LocalAuthorizationServer trusts its
JWKS (``server.trust_issuer(issuer.issuer, issuer.jwks, ...)``), and
``issuer.write(path, ...)`` rotates a token file the way kubelet rotates a
projected service-account token (the new file replaces the old in one step).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["LocalIssuer"]


class LocalIssuer:
    """An issuer of signed JWTs (ES256 or RS256) with a JWKS, on no network at all.

    ``issuer`` is the ``iss`` of its tokens (Kubernetes: the cluster's OIDC
    issuer URL; GitHub: ``https://token.actions.githubusercontent.com``).
    ``mint(subject, audience)`` makes a token with ``iss``, ``sub``, ``aud``,
    ``iat`` (``clock()`` or ``issued_at``), ``exp`` ``lifetime`` seconds later,
    a ``jti`` and any extra claims. ``jwks`` is the public key set to give the
    authorization server.
    """

    def __init__(
        self,
        issuer: str = "https://platform.example",
        *,
        algorithm: str = "ES256",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm == "ES256":
            self._key: Any = ec.generate_private_key(ec.SECP256R1())
            public = jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        elif algorithm == "RS256":
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        else:
            raise ValueError(f"LocalIssuer signs with ES256 or RS256, not {algorithm!r}")
        self.issuer = issuer
        self.algorithm = algorithm
        self.key_id = secrets.token_hex(8)
        self._clock = clock
        self._public = {**public, "kid": self.key_id, "alg": algorithm, "use": "sig"}

    @property
    def jwks(self) -> dict[str, Any]:
        """The public keys that verify this issuer's tokens, as a JWKS (RFC 7517 §5)."""
        return {"keys": [dict(self._public)]}

    def mint(
        self,
        subject: str,
        audience: str | list[str],
        *,
        lifetime: float = 600,
        issued_at: float | None = None,
        **claims: Any,
    ) -> str:
        """A token for ``subject``, meant for ``audience``, valid ``lifetime`` seconds."""
        iat = int(self._clock() if issued_at is None else issued_at)
        body = {
            **claims,
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + int(lifetime),
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(
            body,
            self._key,
            algorithm=self.algorithm,
            headers={"kid": self.key_id, "typ": "JWT"},
        )

    def write(
        self,
        path: str | os.PathLike[str],
        subject: str,
        audience: str | list[str],
        *,
        lifetime: float = 600,
        issued_at: float | None = None,
        **claims: Any,
    ) -> str:
        """Mint a token and replace the file at ``path`` with it in one step (as kubelet
        does: readers see the old token or the new one, never half of one); returns it."""
        token = self.mint(subject, audience, lifetime=lifetime, issued_at=issued_at, **claims)
        target = Path(path)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(token)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return token

    def __repr__(self) -> str:
        return f"<LocalIssuer {self.issuer} {self.algorithm}>"
