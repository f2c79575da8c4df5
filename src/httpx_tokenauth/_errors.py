"""The exception tree. Every exception the library raises derives from TokenError.

Messages say what went wrong and how to fix it. They never carry a secret: no
client secret, private key, access token, assertion or raw response body.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "AssertionExpiredError",
    "AssertionSigningError",
    "AssertionSourceError",
    "ConfigurationError",
    "InsecureTransportError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "InvalidTokenResponseError",
    "NonVSCHARWarning",
    "ProviderError",
    "TokenEndpointError",
    "TokenError",
    "TokenResponseError",
    "TokenTransportError",
    "UnauthorizedClientError",
    "UnexpectedTokenResponseError",
    "UnsupportedGrantTypeError",
    "UnsupportedTokenTypeError",
    "printable",
]

#: Unicode categories that server-sent text may not bring into a message: controls
#: (CR, LF, NUL, ESC, the C1 range), format characters (zero-width and bidirectional
#: controls, which can make a log line read as something else), line and paragraph
#: separators, and lone surrogates.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

#: The most characters of server-sent text one message quotes.
SERVER_TEXT_LIMIT = 200


def printable(text: str, limit: int = SERVER_TEXT_LIMIT) -> str:
    """Server-sent ``text`` made fit for an exception message or a log line.

    Each run of control, format or separator characters becomes one space,
    and the result is cut to ``limit`` characters, an ellipsis marking the
    cut. The structured fields of an exception keep the text as sent.
    """
    out: list[str] = []
    for char in text:
        if unicodedata.category(char) in _HIDDEN:
            if out and out[-1] != " ":
                out.append(" ")
            continue
        if len(out) >= limit:
            return "".join(out[: limit - 1]).rstrip() + "…"
        out.append(char)
    return "".join(out).strip()


class TokenError(Exception):
    """Root of every exception httpx-tokenauth raises."""


class ConfigurationError(TokenError):
    """An argument is wrong. Raised at construction wherever that is possible."""


class InsecureTransportError(ConfigurationError):
    """A secret would travel over plain HTTP (SPEC T1, T3).

    Raised for an ``http://`` token URL, or for a request to an ``http://`` API,
    unless the host is loopback or ``allow_insecure_http=True`` was passed.
    """


class ProviderError(TokenError):
    """A user-written token provider failed or returned something that is not a Token.

    The provider's own exception is the ``__cause__``.
    """


class TokenTransportError(TokenError):
    """The token endpoint could not be reached: connection, TLS, or timeout.

    The httpx exception is the ``__cause__``; ``token_url`` names the endpoint
    (without its query string).
    """

    def __init__(self, message: str, *, token_url: str) -> None:
        super().__init__(message)
        self.token_url = token_url


class TokenResponseError(TokenError):
    """The token endpoint answered, but not with a usable token.

    ``status_code`` is the HTTP status of that answer. ``retry_after`` is the
    wait in seconds its ``Retry-After`` header asked for, or None.
    """

    retry_after: float | None = None

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class UnexpectedTokenResponseError(TokenResponseError):
    """The answer is not an OAuth 2.0 response at all (SPEC E5, T6).

    An HTML error page from a proxy, an empty body, a redirect, a body over the
    size cap. ``content_type`` is the response's Content-Type, if any.
    """

    def __init__(self, message: str, *, status_code: int, content_type: str | None) -> None:
        super().__init__(message, status_code=status_code)
        self.content_type = content_type


class InvalidTokenResponseError(TokenResponseError):
    """A successful answer that breaks RFC 6749 §5.1 (SPEC R1, R6).

    For example: no ``access_token``, a ``token_type`` that is not a string, an
    ``expires_in`` that is negative or not a number, JSON that is not an object.
    """


class UnsupportedTokenTypeError(InvalidTokenResponseError):
    """The token endpoint issued a token type other than Bearer (SPEC R3).

    ``token_type`` is the type the server named.
    """

    def __init__(self, message: str, *, status_code: int, token_type: str) -> None:
        super().__init__(message, status_code=status_code)
        self.token_type = token_type


class TokenEndpointError(TokenResponseError):
    """The token endpoint answered with an OAuth 2.0 error (RFC 6749 §5.2, SPEC E1).

    ``error`` is the code exactly as sent (unknown codes are kept as they are);
    ``error_description`` and ``error_uri`` are the optional fields, or None.
    Known codes raise the matching subclass.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error: str,
        error_description: str | None = None,
        error_uri: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.error = error
        self.error_description = error_description
        self.error_uri = error_uri


class InvalidRequestError(TokenEndpointError):
    """``invalid_request``: the token request is malformed."""


class InvalidClientError(TokenEndpointError):
    """``invalid_client``: client authentication failed (wrong id, secret or key)."""


class InvalidGrantError(TokenEndpointError):
    """``invalid_grant``: the grant or assertion was rejected."""


class UnauthorizedClientError(TokenEndpointError):
    """``unauthorized_client``: this client may not use this grant type."""


class UnsupportedGrantTypeError(TokenEndpointError):
    """``unsupported_grant_type``: the server does not support this grant type."""


class InvalidScopeError(TokenEndpointError):
    """``invalid_scope``: a requested scope is unknown, malformed or not allowed."""


ERROR_CLASSES: dict[str, type[TokenEndpointError]] = {
    "invalid_request": InvalidRequestError,
    "invalid_client": InvalidClientError,
    "invalid_grant": InvalidGrantError,
    "unauthorized_client": UnauthorizedClientError,
    "unsupported_grant_type": UnsupportedGrantTypeError,
    "invalid_scope": InvalidScopeError,
}


class AssertionSigningError(TokenError):
    """A JWT assertion could not be signed when a token request was built.

    Keys, algorithms and claims are checked at construction, so this means
    something changed or broke at run time: the clock returned a time that is
    not a number, the ``jti`` generator returned something unusable, or the
    signing library failed (its exception, if any, is the ``__cause__``). The
    message never carries the key or the assertion.
    """


class InvalidTargetError(TokenEndpointError):
    """``invalid_target``: the requested ``audience`` or ``resource`` is unknown or not allowed
    (RFC 8693 §2.2.2, RFC 8707 §2). Raised for token exchanges (TokenExchangeGrant)."""


class AssertionSourceError(TokenError):
    """An externally issued assertion could not be read, or what was read is unusable.

    A platform token file that is missing, unreadable, empty or not a JWT; a
    callable that raised (its exception is the ``__cause__``) or returned
    something other than a string; the GitHub Actions token service failing.
    ``source`` names where the assertion comes from (a file's path, a
    callable's qualified name, the GitHub audience), never what it holds.
    Raised at construction where the problem can be known then (a file that
    is already missing), else when a token request is about to be made: no
    request is sent with it.
    """

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(message)
        self.source = source


class AssertionExpiredError(AssertionSourceError):
    """The assertion a source gives has expired, and reading it again gave no newer one.

    Nothing was sent. ``expired_at`` is the assertion's ``exp`` (seconds since
    the epoch); ``source`` names the source. Usually the platform stopped
    rotating it (kubelet, the SPIFFE agent, a sidecar), or this machine's clock
    is wrong.
    """

    def __init__(self, message: str, *, source: str, expired_at: float) -> None:
        super().__init__(message, source=source)
        self.expired_at = expired_at


class NonVSCHARWarning(TokenError, UserWarning):  # noqa: N818 - a warning, named so
    """A client id or secret has characters outside RFC 6749's VSCHAR (SPEC B9).

    RFC 6749 Appendix A.1/A.2 define ``client-id`` and ``client-secret`` as
    printable ASCII (%x20-7E). Such values are still accepted and sent
    correctly encoded (SPEC B1), but a server that enforces the grammar will
    refuse them whatever the client does. Warned at construction; the message
    never carries the secret. It is a TokenError too, so that with warnings
    turned into errors the one exception root still holds.
    """
