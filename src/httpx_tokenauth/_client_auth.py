"""Client authentication at the token endpoint (RFC 6749 §2.3, SPEC B1-B7). No I/O.

A ClientAuth is a method (basic, post, a JWT); ``bind`` checks it against a
client's id and secret at construction time and returns an Authenticator that
adds the credentials to each token request. Exactly one method applies to a
request (SPEC B5).
"""

from __future__ import annotations

import abc
import base64
import hashlib
from typing import ClassVar, Protocol
from urllib.parse import quote_plus

from ._errors import ConfigurationError
from ._request import Form

__all__ = [
    "Authenticator",
    "ClientAuth",
    "ClientSecretBasic",
    "ClientSecretPost",
    "Credentials",
    "check_client_id",
    "check_secret",
]

Credentials = tuple[tuple[tuple[str, str], ...], Form]  # (headers, form fields)


class Authenticator(Protocol):
    """Bound client authentication: the headers and form fields for one token request."""

    def authenticate(self, now: float) -> Credentials:
        """Credentials for a request made at ``now``; JWT methods mint a fresh assertion."""
        ...


class ClientAuth(abc.ABC):
    """A client authentication method, passed as ``client_auth=`` to a provider."""

    #: The RFC 7591 / RFC 8414 name of the method, e.g. ``client_secret_basic``.
    method: ClassVar[str]

    @abc.abstractmethod
    def bind(self, *, client_id: str, client_secret: str | None, token_url: str) -> Authenticator:
        """Check this method against the client and return its Authenticator.

        Raises ConfigurationError when the method cannot work with what was
        given (a missing secret, or a secret the method would not use).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not client_id:
        raise ConfigurationError(
            f"client_id must be a non-empty string, got {type(client_id).__name__}"
        )
    _check_utf8("client_id", client_id)
    return client_id


def _check_utf8(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"{name} contains a character that has no UTF-8 form (a lone surrogate): "
            "check how it was read or decoded"
        ) from None


def check_secret(method: str, client_secret: str | None) -> str:
    """SPEC B6: a secret method needs a real secret; empty is never sent."""
    if client_secret is None:
        raise ConfigurationError(
            f"{method} needs client_secret=...; pass the secret, or choose a method "
            "that does not use one (PrivateKeyJWT)"
        )
    if not isinstance(client_secret, str) or not client_secret:
        raise ConfigurationError(f"client_secret for {method} must be a non-empty string")
    _check_utf8("client_secret", client_secret)
    return client_secret


def digest(secret: str | bytes) -> str:
    """A SHA-256 of a secret, for cache identities (which a store hashes again, keyed)."""
    data = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hashlib.sha256(data).hexdigest()


def identity_of(authenticator: object) -> tuple[str, ...]:
    """What an authenticator contributes to a cache identity (SPEC F1): who it says we are."""
    identity = getattr(authenticator, "identity", ("no-client-auth",))
    return tuple(identity)


class _Static:
    """An Authenticator whose credentials never change. Its repr shows none of them."""

    __slots__ = ("_credentials", "identity")

    def __init__(
        self, headers: tuple[tuple[str, str], ...], form: Form, identity: tuple[str, ...] = ()
    ) -> None:
        self._credentials: Credentials = (headers, form)
        self.identity = identity

    def authenticate(self, now: float) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        return "<client credentials>"


class ClientSecretBasic(ClientAuth):
    """``client_secret_basic``: HTTP Basic with the client id and secret (RFC 6749 §2.3.1).

    The default whenever a client secret is given (SPEC B3). Id and secret are
    each form-urlencoded before base64 (SPEC B1), as RFC 6749 Appendix B
    requires and strict servers check; the alphabet is standard base64 (B2).
    """

    method = "client_secret_basic"

    def bind(self, *, client_id: str, client_secret: str | None, token_url: str) -> Authenticator:
        secret = check_secret(self.method, client_secret)
        userpass = f"{quote_plus(client_id, safe='')}:{quote_plus(secret, safe='')}"
        header = "Basic " + base64.b64encode(userpass.encode("ascii")).decode("ascii")
        return _Static((("Authorization", header),), (), (self.method, client_id, digest(secret)))


class ClientSecretPost(ClientAuth):
    """``client_secret_post``: client id and secret as form fields in the body (SPEC B4).

    Never in the URL. RFC 6749 §2.3.1 says servers need not support it, so
    prefer ClientSecretBasic unless the server asks for this.
    """

    method = "client_secret_post"

    def bind(self, *, client_id: str, client_secret: str | None, token_url: str) -> Authenticator:
        secret = check_secret(self.method, client_secret)
        return _Static(
            (),
            (("client_id", client_id), ("client_secret", secret)),
            (self.method, client_id, digest(secret)),
        )
