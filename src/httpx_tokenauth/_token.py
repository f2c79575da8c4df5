"""The Token value object and the RFC 6749 §5 token response parser. No I/O.

``parse_token_response`` is a pure function of (status, headers, body, time
of receipt, requested scope): it returns a Token or raises a TokenError
subclass, and nothing else can escape it (SPEC R1-R11, E1-E5). Server text
quoted in a message is stripped of control characters and cut short (E6).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._errors import (
    ERROR_CLASSES,
    ConfigurationError,
    InvalidTokenResponseError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    UnexpectedTokenResponseError,
    UnsupportedTokenTypeError,
    printable,
)
from ._retry import parse_retry_after

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "MAX_EXPIRES_IN",
    "MAX_RESPONSE_BYTES",
    "NOT_APPLICABLE",
    "RateLimit",
    "RawResponse",
    "Token",
    "parse_rate_limit",
    "parse_token_response",
]

#: Token endpoint bodies larger than this are refused (SPEC T6; Go's oauth2 uses 1 MiB).
MAX_RESPONSE_BYTES = 1 << 20

#: ``expires_in`` above this (ten years) is clamped to it (SPEC R6): a longer
#: lifetime is indistinguishable from "never" and only risks arithmetic overflow.
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600

_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_NUMERIC = re.compile(r"[ \t]*[0-9]{1,12}(\.[0-9]{1,6})?[ \t]*")  # ASCII digits only
_EMPTY: Mapping[str, Any] = MappingProxyType({})
#: Token types a Token may have, by their lower-case form (RFC 6749 §5.1: case-insensitive).
_TOKEN_TYPES = {"bearer": "Bearer", "dpop": "DPoP"}

#: RFC 8693 §2.2.1: the ``token_type`` of an issued token that is not an access token.
NOT_APPLICABLE = "N_A"
#: RFC 8693 §3: the token type identifier of an OAuth 2.0 access token.
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def is_finite(value: float) -> bool:
    """``math.isfinite``, but False (not OverflowError) for an int too large for a float."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True, eq=False, slots=True)
class Token:
    """An access token and what is known about it.

    ``access_token`` is opaque and never decoded (SPEC R10); it is left out of
    ``repr`` and ``str``. ``expires_at`` is an absolute time in the clock's
    seconds (``time.time()`` by default), or None when the server gave no
    ``expires_in`` (SPEC R5). ``received_at`` is when the token was obtained.
    ``scope`` is the granted scope, or the requested one when the server did
    not name it (RFC 6749 §5.1). ``extra`` holds every other response field,
    unchanged (SPEC R8); it is left out of ``repr`` because it may hold a
    refresh or ID token. A Token pickles and deep-copies, ``extra`` included.

    ``issued_token_type`` is what a token exchange (RFC 8693 §2.2.1) says it
    issued, such as ``urn:ietf:params:oauth:token-type:access_token``, or None.
    ``token_type`` is ``"Bearer"``, or ``"N_A"`` for a token an exchange issued
    that is not an access token (an ID token, a JWT for another system): such a
    token is for ``get_token()``, and using it as an ``Authorization: Bearer``
    header (``authorization``, TokenAuth on an API client) is a
    ConfigurationError saying so (SPEC A5).

    A custom TokenProvider builds one directly::

        Token("eyJ...", expires_at=time.time() + 3600)
    """

    access_token: str = field(repr=False)
    token_type: str = "Bearer"
    expires_at: float | None = None
    received_at: float | None = None
    scope: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)
    issued_token_type: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not _TOKEN_CHARS.fullmatch(self.access_token):
            raise ConfigurationError(
                "Token.access_token must be a non-empty string of visible ASCII characters "
                "(no spaces or control characters), as it is sent in an Authorization header"
            )
        if self.issued_token_type is not None and (
            not isinstance(self.issued_token_type, str) or not self.issued_token_type
        ):
            raise ConfigurationError("Token.issued_token_type must be a non-empty string or None")
        if isinstance(self.token_type, str) and self.token_type.upper() == NOT_APPLICABLE:
            if self.issued_token_type in (None, ACCESS_TOKEN_TYPE):
                raise ConfigurationError(
                    "Token.token_type 'N_A' (RFC 8693 §2.2.1) is for a token that is not an "
                    "access token: give its issued_token_type (such as "
                    "'urn:ietf:params:oauth:token-type:id_token'), or use 'Bearer'"
                )
            object.__setattr__(self, "token_type", NOT_APPLICABLE)
        elif (
            token_type := _TOKEN_TYPES.get(
                self.token_type.lower() if isinstance(self.token_type, str) else ""
            )
        ) is None:
            raise ConfigurationError(
                f"Token.token_type must be 'Bearer' or 'DPoP', got {self.token_type!r}: "
                "only bearer tokens (RFC 6750) and DPoP-bound tokens (RFC 9449) are supported"
            )
        else:
            object.__setattr__(self, "token_type", token_type)
        for name in ("expires_at", "received_at"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not is_finite(value)
            ):
                raise ConfigurationError(
                    f"Token.{name} must be a finite number of seconds or None, got {value!r}"
                )
        if self.scope is not None:
            if not isinstance(self.scope, (tuple, list)) or not all(
                isinstance(s, str) for s in self.scope
            ):
                raise ConfigurationError("Token.scope must be a tuple of strings or None")
            object.__setattr__(self, "scope", tuple(self.scope))
        if not isinstance(self.extra, Mapping):
            raise ConfigurationError("Token.extra must be a mapping")

    @property
    def authorization(self) -> str:
        """The Authorization header value: ``Bearer <access_token>`` (SPEC U1, R2), or
        ``DPoP <access_token>`` for a DPoP-bound token (RFC 9449 §7.1).

        A ConfigurationError for an ``N_A`` token, which is not an access token.
        """
        if self.token_type == NOT_APPLICABLE:
            raise ConfigurationError(
                f"the token exchange issued {self.issued_token_type} with token_type N_A: it is "
                "not an access token and is never sent as 'Authorization: Bearer' (RFC 8693 "
                "§2.2.1). Get it with get_token() for the system it is meant for, or ask for "
                "requested_token_type='urn:ietf:params:oauth:token-type:access_token' to call "
                "an API with it"
            )
        return f"{self.token_type} {self.access_token}"

    def expires_in(self, now: float) -> float | None:
        """Seconds left at ``now``, or None when the expiry is unknown."""
        return None if self.expires_at is None else self.expires_at - now

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickling and (deep) copying (SPEC R12): every field, ``extra`` read-only if it was.

        A read-only mapping (``MappingProxyType``) cannot be pickled itself, so
        its contents travel as a dict and are wrapped again on arrival.
        """
        extra = self.extra
        readonly = isinstance(extra, MappingProxyType)
        fields = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "received_at": self.received_at,
            "scope": self.scope,
            "extra": dict(extra) if readonly else extra,
            "issued_token_type": self.issued_token_type,
        }
        return (_restore, (fields, readonly))


def _restore(fields: dict[str, Any], readonly: bool) -> Token:
    """A Token again, from what ``Token.__reduce__`` saved."""
    if readonly:
        fields = {**fields, "extra": MappingProxyType(dict(fields["extra"]))}
    return Token(**fields)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A token endpoint answer in neutral terms: what any HTTP library can supply.

    ``headers`` maps lower-case names to values. The body is already capped.
    """

    status_code: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


#: A rate-limit reset above this many seconds is a point in time (seconds since the
#: epoch, as GitHub's ``X-RateLimit-Reset`` is), not a delay: about the year 2001.
_EPOCH_RESET = 1e9

_COUNT = re.compile(r"[ \t]*([0-9]{1,12})(?:\.[0-9]{1,6})?[ \t]*")
#: The first list member's parameters in the structured ``RateLimit`` and
#: ``RateLimit-Policy`` fields (draft-ietf-httpapi-ratelimit-headers-08 and later).
_PARAM = re.compile(r";[ \t]*([a-z]+)[ \t]*=[ \t]*([0-9]{1,12})")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """What one token endpoint response said about its rate limit, success or failure.

    ``limit`` and ``remaining`` count requests, ``reset`` is the seconds until
    the limit's window resets, ``retry_after`` the seconds ``Retry-After`` asked
    for; each is None when the response did not say (or said something
    unreadable). Read from ``Retry-After``, ``X-RateLimit-Limit`` /
    ``-Remaining`` / ``-Reset`` (a reset past 10^9 is taken as an epoch time, as
    GitHub sends it), ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (the
    draft-ietf-httpapi-ratelimit-headers field names up to draft 07) and the
    structured ``RateLimit: "policy";r=R;t=T`` with ``RateLimit-Policy: ...;q=Q``
    (draft 08 on). ``status_code`` is the response's status, ``received_at``
    when it arrived (the TokenAuth clock's seconds).
    """

    status_code: int
    received_at: float
    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    retry_after: float | None = None


def parse_rate_limit(response: RawResponse, *, received_at: float) -> RateLimit | None:
    """The rate-limit headers of a token endpoint response; None when it sent none."""
    headers = response.headers
    retry_after = parse_retry_after(headers.get("retry-after"), received_at)
    structured = _params(headers.get("ratelimit"))
    policy = _params(headers.get("ratelimit-policy"))
    limit = _count(headers.get("x-ratelimit-limit") or headers.get("ratelimit-limit"))
    remaining = _count(headers.get("x-ratelimit-remaining") or headers.get("ratelimit-remaining"))
    reset = _reset(headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset"), received_at)
    if limit is None:
        limit = policy.get("q")
    if remaining is None:
        remaining = structured.get("r")
    if reset is None and "t" in structured:
        reset = float(structured["t"])
    if limit is None and remaining is None and reset is None and retry_after is None:
        return None
    return RateLimit(
        response.status_code,
        received_at,
        limit=limit,
        remaining=remaining,
        reset=reset,
        retry_after=retry_after,
    )


def _first(value: str | None) -> str | None:
    """The first member of a header list (``100, 100;w=60`` is read as ``100``)."""
    if value is None:
        return None
    return value.split(",", 1)[0].split(";", 1)[0]


def _count(value: str | None) -> int | None:
    match = _COUNT.fullmatch(_first(value) or "")
    return int(match.group(1)) if match else None


def _reset(value: str | None, received_at: float) -> float | None:
    text = _first(value)
    if text is None or not _NUMERIC.fullmatch(text):
        return None
    seconds = float(text)
    return max(0.0, seconds - received_at) if seconds > _EPOCH_RESET else seconds


def _params(value: str | None) -> dict[str, int]:
    """``r``, ``t``, ``q``, ... of the first member of a structured rate-limit field."""
    if value is None:
        return {}
    return {name: int(number) for name, number in _PARAM.findall(value.split(",", 1)[0])}


def parse_token_response(
    response: RawResponse,
    *,
    received_at: float,
    requested_scope: tuple[str, ...] | None = None,
    token_exchange: bool = False,
    dpop: bool = False,
) -> Token:
    """Turn a token endpoint answer into a Token, or raise a TokenError subclass.

    An error carries the response's ``Retry-After`` as ``retry_after`` seconds.
    ``token_exchange``: the answer to an RFC 8693 exchange, whose
    ``issued_token_type`` is kept on the Token and whose ``token_type`` may be
    ``N_A`` for a token that is not an access token (SPEC A2, A5).
    ``dpop`` says a DPoP proof was sent, so a ``DPoP`` token type is accepted.
    """
    try:
        return _parse(response, received_at, requested_scope, token_exchange, dpop)
    except TokenResponseError as exc:
        exc.retry_after = parse_retry_after(response.headers.get("retry-after"), received_at)
        raise


def _parse(
    response: RawResponse,
    received_at: float,
    requested_scope: tuple[str, ...] | None,
    token_exchange: bool = False,
    dpop: bool = False,
) -> Token:
    status = response.status_code
    content_type = response.headers.get("content-type")
    shown_type = printable(content_type, 80) if content_type else "none"
    data = _json_object(response, content_type)

    if data is not None and "error" in data:
        raise _endpoint_error(data, status, content_type)
    if not 200 <= status < 300:
        hint = ""
        if 300 <= status < 400:
            hint = " (redirects from the token endpoint are not followed: check the token URL)"
        elif status == 401:
            hint = " (check the client id and credentials)"
        raise UnexpectedTokenResponseError(
            f"token endpoint answered HTTP {status} without an OAuth 2.0 error object"
            f"{hint}; content type {shown_type}",
            status_code=status,
            content_type=content_type,
        )
    if data is None:
        raise UnexpectedTokenResponseError(
            f"token endpoint answered HTTP {status} with a body that is not JSON "
            f"(content type {shown_type}, {len(response.body)} bytes)",
            status_code=status,
            content_type=content_type,
        )
    if token_exchange:
        return _exchanged_token_from(data, status, received_at, requested_scope, dpop)
    return _token_from(data, status, received_at, requested_scope, dpop)


def _json_object(response: RawResponse, content_type: str | None) -> dict[str, Any] | None:
    """The body as a JSON object; None if it is not JSON; an error if JSON but not an object."""
    try:
        data = json.loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        if not 200 <= response.status_code < 300:
            return None
        raise InvalidTokenResponseError(
            f"token endpoint answered HTTP {response.status_code} with JSON that is "
            f"not an object ({type(data).__name__}); RFC 6749 §5.1 requires an object",
            status_code=response.status_code,
        )
    return data


def _endpoint_error(data: dict[str, Any], status: int, content_type: str | None) -> TokenError:
    code = data.get("error")
    description = data.get("error_description")
    uri = data.get("error_uri")
    if not isinstance(code, str) or not code:
        return UnexpectedTokenResponseError(
            f"token endpoint answered HTTP {status} with an 'error' field that is not a "
            "non-empty string",
            status_code=status,
            content_type=content_type,
        )
    description = description if isinstance(description, str) else None
    uri = uri if isinstance(uri, str) else None
    cls = ERROR_CLASSES.get(code, TokenEndpointError)
    # SPEC E6: server text is cleaned and cut for the message; the fields keep it as sent.
    message = f"token endpoint refused the request: {printable(code, 80)}"
    if description and (shown := printable(description)):
        message += f": {shown}"
    message += f" (HTTP {status})"
    if uri and (shown := printable(uri)):
        message += f"; see {shown}"
    return cls(
        message, status_code=status, error=code, error_description=description, error_uri=uri
    )


def _token_from(
    data: dict[str, Any],
    status: int,
    received_at: float,
    requested_scope: tuple[str, ...] | None,
    dpop: bool = False,
) -> Token:
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise InvalidTokenResponseError(
            "token response has no 'access_token' string (RFC 6749 §5.1)", status_code=status
        )
    if not _TOKEN_CHARS.fullmatch(access_token):
        raise InvalidTokenResponseError(
            "token response 'access_token' contains spaces, control or non-ASCII characters "
            "and cannot be sent in an Authorization header",
            status_code=status,
        )
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or not token_type:
        raise InvalidTokenResponseError(
            "token response has no 'token_type' string (RFC 6749 §5.1)", status_code=status
        )
    kind = token_type.lower()
    if kind != "bearer" and not (dpop and kind == "dpop"):
        hint = " (pass TokenAuth(..., dpop=DPoP()) to use DPoP)" if kind == "dpop" else ""
        raise UnsupportedTokenTypeError(
            f"token endpoint issued a {printable(token_type, 40)!r} token; only Bearer tokens "
            f"(RFC 6750) are supported{hint}",
            status_code=status,
            token_type=token_type,
        )
    expires_in = _expires_in(data.get("expires_in"), status)
    scope = _granted_scope(data.get("scope"), status, requested_scope)
    extra = {
        k: v
        for k, v in data.items()
        if k not in ("access_token", "token_type", "expires_in", "scope")
    }
    return Token(
        access_token,
        token_type=_TOKEN_TYPES[kind],
        expires_at=None if expires_in is None else received_at + expires_in,
        received_at=received_at,
        scope=scope,
        extra=MappingProxyType(extra),
    )


def _exchanged_token_from(
    data: dict[str, Any],
    status: int,
    received_at: float,
    requested_scope: tuple[str, ...] | None,
    dpop: bool = False,
) -> Token:
    """RFC 8693 §2.2.1: ``issued_token_type`` onto the Token; ``N_A`` only for a token that
    is not an access token (SPEC A2, A5)."""
    issued = data.get("issued_token_type")
    if issued is not None and (not isinstance(issued, str) or not _TOKEN_CHARS.fullmatch(issued)):
        raise InvalidTokenResponseError(
            "token exchange response 'issued_token_type' must be a token type URI "
            "(RFC 8693 §2.2.1)",
            status_code=status,
        )
    rest = {k: v for k, v in data.items() if k != "issued_token_type"}
    token_type = data.get("token_type")
    if isinstance(token_type, str) and token_type.upper() == NOT_APPLICABLE:
        if issued in (None, ACCESS_TOKEN_TYPE):
            raise UnsupportedTokenTypeError(
                f"the token exchange answered token_type N_A for "
                f"{'an access token' if issued else 'a token of unnamed type'}: N_A (RFC 8693 "
                "§2.2.1) says the issued token is not an access token, so it cannot be sent "
                "as 'Authorization: Bearer'. Check requested_token_type, or the server",
                status_code=status,
                token_type=token_type,
            )
        bearer = _token_from({**rest, "token_type": "Bearer"}, status, received_at, requested_scope)
        return dataclasses.replace(bearer, token_type=NOT_APPLICABLE, issued_token_type=issued)
    token = _token_from(rest, status, received_at, requested_scope, dpop)
    return dataclasses.replace(token, issued_token_type=issued) if issued else token


def _expires_in(value: object, status: int) -> float | None:
    """SPEC R5, R6: absent is None; numbers and numeric strings are seconds.

    Rule: the value must be a finite number greater than zero, given as a JSON
    number or a string of decimal digits (Azure AD v1 sends ``"3599"``).
    Booleans, negative numbers, zero, NaN, infinity and other strings are an
    InvalidTokenResponseError. Values above MAX_EXPIRES_IN are clamped to it.
    """
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        # JSON integers have no size limit: clamp before float() can overflow.
        number = float(max(-1, min(value, MAX_EXPIRES_IN)))
    elif isinstance(value, float) or (isinstance(value, str) and _NUMERIC.fullmatch(value)):
        number = float(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise InvalidTokenResponseError(
            f"token response 'expires_in' must be a positive number of seconds, "
            f"got {printable(str(value)[:200], 40)!r}",
            status_code=status,
        )
    return min(number, float(MAX_EXPIRES_IN))


def _granted_scope(
    value: object, status: int, requested: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    if value is None:
        return requested
    if not isinstance(value, str):
        raise InvalidTokenResponseError(
            "token response 'scope' must be a space-separated string (RFC 6749 §3.3)",
            status_code=status,
        )
    return tuple(value.split())
