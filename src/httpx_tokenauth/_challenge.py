"""WWW-Authenticate parsing (RFC 9110 §11.6.1) and the 401 decision (SPEC U5-U8). No I/O.

The parser never raises: whatever a server sends, it returns the challenges it
could read and skips the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Protocol

from ._errors import printable

__all__ = [
    "BearerChallenge",
    "Challenge",
    "Decision",
    "bearer_challenge",
    "decide_after_401",
    "dpop_nonce_demanded",
    "parse_www_authenticate",
]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"?'  # an unterminated string runs to the end


class _Patterns:
    """The grammar's regular expressions, compiled on first use (not at import)."""

    def __init__(self) -> None:
        self.ows = re.compile(r"[ \t]*")
        self.separators = re.compile(r"[ \t,]*")
        self.scheme = re.compile(_TOKEN)
        self.param = re.compile(rf"({_TOKEN})[ \t]*=[ \t]*({_QUOTED}|{_TOKEN})")
        self.token68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
        self.garbage = re.compile(r"[^,]*")


@cache
def _patterns() -> _Patterns:
    return _Patterns()


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge: the scheme as sent, its parameters (names lower-cased), or a token68."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    token68: str | None = None


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Parse every WWW-Authenticate header value into challenges, in order (SPEC U5)."""
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(_parse_one(value))
    return challenges


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """End of the (possibly empty) match of ``pattern`` at ``pos``."""
    m = pattern.match(text, pos)
    return pos if m is None else m.end()


def _parse_one(text: str) -> list[Challenge]:
    p = _patterns()
    out: list[Challenge] = []
    pos, end = 0, len(text)
    while True:
        pos = _skip(p.separators, text, pos)
        if pos >= end:
            return out
        scheme = p.scheme.match(text, pos)
        if scheme is None or p.param.match(text, pos):
            # Not a scheme (stray character, or a parameter with no scheme before it).
            pos = _skip(p.garbage, text, pos + 1)
            continue
        pos = _skip(p.ows, text, scheme.end())
        params: dict[str, str] = {}
        token68 = None
        if (m := p.token68.match(text, pos)) and not p.param.match(text, pos):
            token68, pos = m.group(), m.end()
        else:
            while m := p.param.match(text, pos):
                name, raw = m.group(1).lower(), m.group(2)
                params.setdefault(name, _unquote(raw))
                pos = _skip(p.separators, text, m.end())
        out.append(Challenge(scheme.group(), MappingProxyType(params), token68))


def _unquote(raw: str) -> str:
    """A token as is; a quoted-string without its quotes and escapes (RFC 9110 §5.6.4)."""
    if not raw.startswith('"'):
        return raw
    chars: list[str] = []
    i = 1
    while i < len(raw) and raw[i] != '"':
        if raw[i] == "\\" and i + 1 < len(raw):
            i += 1
        chars.append(raw[i])
        i += 1
    return "".join(chars)


@dataclass(frozen=True, slots=True)
class BearerChallenge:
    """What a resource server said in its ``WWW-Authenticate: Bearer`` challenge (RFC 6750 §3).

    ``scope`` is the scope the server requires, split on spaces into a tuple
    (SPEC U7), like ``Token.scope``: ``("invoices:read", "invoices:write")``
    for ``scope="invoices:read invoices:write"``, and None when the challenge
    names none. ``" ".join(challenge.scope)`` gives the string as sent.
    """

    error: str | None
    error_description: str | None
    error_uri: str | None
    realm: str | None
    scope: tuple[str, ...] | None
    params: Mapping[str, str]

    @classmethod
    def from_challenge(cls, challenge: Challenge) -> BearerChallenge:
        p = challenge.params
        scope = p.get("scope")
        return cls(
            error=p.get("error"),
            error_description=p.get("error_description"),
            error_uri=p.get("error_uri"),
            realm=p.get("realm"),
            scope=None if scope is None else tuple(scope.split()),
            params=p,
        )


class _HasHeaders(Protocol):
    @property
    def headers(self) -> _MultiHeaders: ...


class _MultiHeaders(Protocol):
    def get_list(self, key: str, split_commas: bool = False) -> list[str]: ...


def bearer_challenge(response: _HasHeaders) -> BearerChallenge | None:
    """The first Bearer challenge of a response, or None.

    Use it on a 401 or 403 that TokenAuth handed back to learn why, for example
    the scope an ``insufficient_scope`` response requires::

        challenge = bearer_challenge(response)
        if challenge and challenge.error == "insufficient_scope" and challenge.scope:
            print("needs", " ".join(challenge.scope))
    """
    for challenge in parse_www_authenticate(response.headers.get_list("www-authenticate")):
        if challenge.scheme.lower() == "bearer":
            return BearerChallenge.from_challenge(challenge)
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a 401: renew the token (and replay) or hand it back, and why."""

    renew: bool
    reason: str


def decide_after_401(www_authenticate: Iterable[str], *, dpop: bool = False) -> Decision:
    """SPEC U6-U8: renew and replay on no challenge, a bare Bearer challenge or invalid_token.

    Hand back on ``insufficient_scope``, ``invalid_request``, any other error
    code, and on challenges that do not offer Bearer at all (``Basic`` only).
    With ``dpop``, a ``DPoP`` challenge counts as a Bearer one (RFC 9449 §7.1).
    """
    challenges = parse_www_authenticate(www_authenticate)
    if not challenges:
        return Decision(renew=True, reason="401 without a challenge")
    schemes = ("bearer", "dpop") if dpop else ("bearer",)
    for challenge in challenges:
        if challenge.scheme.lower() in schemes:
            error = challenge.params.get("error")
            if error is None:
                return Decision(renew=True, reason="401 with a Bearer challenge and no error")
            if error == "invalid_token":
                return Decision(renew=True, reason="401 invalid_token")
            return Decision(
                renew=False, reason=f"401 {printable(error, 40)}: a new token would not help"
            )
    offered = ", ".join(sorted({printable(c.scheme, 20) for c in challenges}))
    return Decision(renew=False, reason=f"401 asks for {offered}, not Bearer")


def dpop_nonce_demanded(www_authenticate: Iterable[str]) -> bool:
    """SPEC D2: whether a 401 says ``DPoP error="use_dpop_nonce"`` (RFC 9449 §9)."""
    return any(
        c.scheme.lower() == "dpop" and c.params.get("error") == "use_dpop_nonce"
        for c in parse_www_authenticate(www_authenticate)
    )
