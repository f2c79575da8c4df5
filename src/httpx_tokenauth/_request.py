"""The token request in neutral terms, and the parameter rules it follows. No I/O.

A TokenRequest is what any HTTP library needs to send: method, URL, headers
and an ``application/x-www-form-urlencoded`` UTF-8 body (SPEC T5). Its repr
leaves out headers and form, which carry credentials.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from ._errors import ConfigurationError

__all__ = [
    "Form",
    "TokenRequest",
    "normalize_extra_params",
    "normalize_multi",
    "normalize_scope",
]

Form = tuple[tuple[str, str], ...]

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One POST to the token endpoint."""

    url: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    form: Form = field(repr=False)
    method: str = "POST"

    @property
    def body(self) -> bytes:
        """The form, ``application/x-www-form-urlencoded`` in UTF-8 (RFC 6749 Appendix B)."""
        return urlencode(self.form, encoding="utf-8").encode("ascii")


BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "application/x-www-form-urlencoded"),
    ("Accept", "application/json"),
    # SPEC R11: nothing between us and the token endpoint may cache this exchange.
    ("Cache-Control", "no-store"),
)


def normalize_scope(scope: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """SPEC C2, C4: a space-separated string or a list of scope tokens, checked now.

    None means "send no scope". Tokens may not contain spaces, ``"`` or ``\\``
    (RFC 6749 §3.3), may not be empty, and may not repeat.
    """
    if scope is None:
        return None
    if isinstance(scope, str):
        tokens = scope.split(" ")
    elif isinstance(scope, Sequence) and all(isinstance(s, str) for s in scope):
        tokens = list(scope)
    else:
        raise ConfigurationError(
            "scope must be a space-separated string or a list of strings, "
            f"got {type(scope).__name__}"
        )
    if not tokens or tokens == [""]:
        raise ConfigurationError(
            "scope is empty; pass scope=None to let the server apply its default scope"
        )
    for token in tokens:
        if not _SCOPE_TOKEN.fullmatch(token):
            raise ConfigurationError(
                f"scope token {token!r} is not allowed: RFC 6749 §3.3 scope tokens are "
                "non-empty printable ASCII without spaces, '\"' or '\\'; separate tokens "
                "with single spaces or pass a list"
            )
    if len(set(tokens)) != len(tokens):
        dupes = sorted({t for t in tokens if tokens.count(t) > 1})
        raise ConfigurationError(f"scope repeats {', '.join(dupes)}; list each scope once")
    return tuple(tokens)


def normalize_multi(name: str, value: str | Sequence[str] | None) -> tuple[str, ...]:
    """SPEC C3: ``resource`` (RFC 8707) and ``audience`` may be one value or several."""
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, Sequence) or not all(isinstance(v, str) and v for v in values):
        raise ConfigurationError(f"{name} must be a non-empty string or a list of them")
    if not values:
        raise ConfigurationError(f"{name} is an empty list; pass None to send no {name}")
    if len(set(values)) != len(values):
        raise ConfigurationError(f"{name} repeats a value; list each {name} once")
    if name == "resource":
        for v in values:
            try:
                scheme = urlsplit(v).scheme
            except ValueError:
                scheme = ""
            if not scheme or "#" in v:
                raise ConfigurationError(
                    f"resource {v!r} must be an absolute URI without a fragment (RFC 8707 §2)"
                )
    return tuple(values)


def normalize_extra_params(extra: Mapping[str, str] | None, reserved: frozenset[str]) -> Form:
    """SPEC C3: extra token-request parameters, each once, none empty, none of ours."""
    if extra is None:
        return ()
    if not isinstance(extra, Mapping):
        raise ConfigurationError("extra_params must be a mapping of parameter name to string")
    form: list[tuple[str, str]] = []
    for name, value in extra.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError("extra_params names must be non-empty strings")
        if name in reserved:
            raise ConfigurationError(
                f"extra_params may not set {name!r}: the library sets it; use the "
                "matching constructor argument instead"
            )
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"extra_params[{name!r}] must be a non-empty string (RFC 6749 §3.2: "
                "parameters sent without a value must be omitted)"
            )
        form.append((name, value))
    return tuple(form)
