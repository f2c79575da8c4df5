"""Client authentication at the token endpoint (RFC 6749 §2.3, SPEC B1-B7). No I/O.

A ClientAuth is a method (basic, post, a JWT); ``bind`` checks it against a
client's id and secret at construction time and returns an Authenticator that
adds the credentials to each token request. Exactly one method applies to a
request (SPEC B5).
"""

from __future__ import annotations

import abc
import base64
import contextvars
import hashlib
import re
import sys
import unicodedata
import warnings
from typing import ClassVar, Protocol
from urllib.parse import quote_plus

from ._errors import ConfigurationError, NonVSCHARWarning
from ._request import Form

__all__ = [
    "Authenticator",
    "ClientAuth",
    "ClientSecretBasic",
    "ClientSecretPost",
    "Credentials",
    "bind_again",
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


#: Set while a grant made by issuer binds its credentials again: they were checked,
#: and warned about, when it was constructed.
_REBINDING: contextvars.ContextVar[bool] = contextvars.ContextVar("rebinding", default=False)


def bind_again(
    client_auth: ClientAuth, *, client_id: str, client_secret: str | None, token_url: str
) -> Authenticator:
    """``client_auth.bind`` for credentials already checked at construction: no second warning."""
    reset = _REBINDING.set(True)
    try:
        return client_auth.bind(
            client_id=client_id, client_secret=client_secret, token_url=token_url
        )
    finally:
        _REBINDING.reset(reset)


def check_client_id(client_id: object) -> str:
    """A client id as RFC 6749 §2.2 means it: checked now, warned about if not VSCHAR (B8, B9)."""
    if not isinstance(client_id, str) or not client_id:
        raise ConfigurationError(
            f"client_id must be a non-empty string, got {type(client_id).__name__}"
        )
    _check_text("client_id", client_id, "A.1")
    return client_id


def check_secret(method: str, client_secret: str | None) -> str:
    """SPEC B6: a secret method needs a real secret; empty is never sent (B8, B9)."""
    if client_secret is None:
        raise ConfigurationError(
            f"{method} needs client_secret=...; pass the secret, or choose a method "
            "that does not use one (PrivateKeyJWT)"
        )
    if not isinstance(client_secret, str) or not client_secret:
        raise ConfigurationError(f"client_secret for {method} must be a non-empty string")
    _check_text("client_secret", client_secret, "A.2")
    return client_secret


def digest(secret: str | bytes) -> str:
    """A SHA-256 of a secret, for cache identities (which a store hashes again, keyed)."""
    data = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hashlib.sha256(data).hexdigest()


def identity_of(authenticator: object) -> tuple[str, ...]:
    """What an authenticator contributes to a cache identity (SPEC F1): who it says we are."""
    identity = getattr(authenticator, "identity", ("no-client-auth",))
    return tuple(identity)


#: Unicode categories no credential may hold: controls (C0, DEL, C1), invisible format
#: characters (zero-width spaces, bidirectional controls, the byte-order mark), line and
#: paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})

#: RFC 6749 Appendix A: VSCHAR = %x20-7E.
_VSCHAR = re.compile(r"[\x20-\x7e]*")


def _check_text(name: str, value: str, appendix: str) -> None:
    """What id and secret have in common. No message quotes the value (it may be a secret)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"{name} contains a character that has no UTF-8 form (a lone surrogate): "
            "check how it was read or decoded"
        ) from None
    if value.isspace():
        raise ConfigurationError(f"{name} is blank (only whitespace): pass the real value")
    if value != value.strip():
        raise ConfigurationError(
            f"{name} has leading or trailing whitespace (a line ending read from a file or "
            "an environment variable?): strip it"
        )
    if any(unicodedata.category(c) in _HIDDEN for c in value):
        raise ConfigurationError(
            f"{name} contains a control or invisible character (a NUL, an escape, a "
            "zero-width space, a byte-order mark...): check how it was read or pasted"
        )
    if not _VSCHAR.fullmatch(value) and not _REBINDING.get():
        warnings.warn(
            NonVSCHARWarning(
                f"{name} has characters outside printable ASCII (RFC 6749 Appendix "
                f"{appendix}: VSCHAR, %x20-7E). It is sent correctly encoded, but a server "
                "that enforces the RFC's grammar will refuse it; prefer an ASCII value"
            ),
            stacklevel=_stack_level_outside_package(),
        )


def _stack_level_outside_package() -> int:
    """The stacklevel that makes a warning point at the first caller outside this package."""
    level = 1
    frame = sys._getframe(1)  # the function that is about to warn
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "httpx_tokenauth."
    ):
        frame = frame.f_back
        level += 1
    return level


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
