"""URL rules for the token endpoint and the API (SPEC T1, T3, T4). No I/O."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

from ._errors import ConfigurationError, InsecureTransportError

__all__ = ["check_flag", "check_token_url", "is_loopback_host", "redacted_url"]

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")  # space, C0, DEL, C1
#: Unicode categories refused in a token URL: spaces, separators and invisible format
#: characters (zero-width spaces, bidirectional controls, the byte-order mark).
_INVISIBLE = frozenset({"Zs", "Zl", "Zp", "Cf"})


def check_flag(name: str, value: object) -> bool:
    """A switch must be a real bool: the string "false" is truthy and would turn it on."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


@lru_cache(maxsize=256)
def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (and names under .localhost)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token_url(url: str, *, allow_insecure_http: bool) -> str:
    """Validate a token endpoint URL and return it unchanged.

    Absolute http(s) with a host and a real port; a query is kept (T4); a
    fragment is refused (T4); plain http only for loopback hosts or with the
    explicit opt-in (T1). No whitespace or invisible characters, and no '@'
    (SPEC T10): a user name or password never goes in the URL, and no message
    about it ever quotes one (T9).
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(
            f"token_url must be a non-empty string such as 'https://as.example/token', "
            f"got {type(url).__name__}"
        )
    if _FORBIDDEN.search(url):
        raise ConfigurationError(
            "token_url contains a space or a control character (a line ending read from a "
            "file?): strip it"
        )
    if any(c.isspace() or unicodedata.category(c) in _INVISIBLE for c in url):
        raise ConfigurationError(
            "token_url contains Unicode whitespace or an invisible character (such as "
            "U+00A0 NO-BREAK SPACE or U+200B ZERO WIDTH SPACE, often pasted with the URL): "
            "remove it"
        )
    if "@" in url:
        raise ConfigurationError(
            f"token_url {redacted_url(url)!r} has an '@': a user name or password never goes "
            "in the URL (pass client_id= and client_secret=, or client_auth=); if the '@' "
            "belongs to the path or query, write it as %40"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"token_url is not a valid URL: {_parse_problem(exc)}, "
            "as in 'https://as.example:8443/oauth2/token'"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        raise ConfigurationError(
            f"token_url {redacted_url(url)!r} must be an absolute https:// URL with a host, "
            "such as 'https://as.example/oauth2/token'"
        )
    if port == 0:
        raise ConfigurationError(
            f"token_url {redacted_url(url)!r} has port 0, which no server listens on: give "
            "the endpoint's real port, or none for the scheme's default"
        )
    if "#" in url:
        raise ConfigurationError(
            f"token_url {redacted_url(url)!r} has a fragment; RFC 6749 §3.2 forbids one "
            "in the token endpoint URL: remove everything from '#'"
        )
    if scheme == "http" and not allow_insecure_http and not is_loopback_host(host):
        raise InsecureTransportError(
            f"token_url {redacted_url(url)!r} uses plain http; client credentials and tokens "
            "must travel over TLS (RFC 6749 §3.2). Use https://, or pass "
            "allow_insecure_http=True if this really is a trusted network"
        )
    return url


def _parse_problem(exc: ValueError) -> str:
    """What urlsplit refused, in our words: its own text may quote a password."""
    text = str(exc)
    if "Port" in text or "port" in text:
        return "its port is not a number from 1 to 65535"
    if "IPv6" in text:
        return "its [IPv6] host is not well formed"
    return "it cannot be parsed"


def redacted_url(url: str) -> str:
    """The URL without userinfo, query or fragment: safe for messages and logs.

    An '@' where urlsplit does not end the userinfo can make the URL
    ambiguous: a password holding '/', '?' or '#' ends the authority early,
    and its pieces would show as the port, path or host. Then everything
    before the last '@' is left out (shown as ``…@``), whatever the parse
    made of it, so no part of a password is ever shown (SPEC T9).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if "@" in url and (parts is None or _ambiguous(url, parts)):
        return _after_last_at(url)
    if parts is None:
        return "<invalid URL>"
    if not parts.scheme and not parts.netloc:
        return parts.path  # not an absolute URL (a message is about to say so)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    shown_port = f":{port}" if port else ""
    return f"{parts.scheme}://{host}{shown_port}{parts.path}"


def _ambiguous(url: str, parts: SplitResult) -> bool:
    """Whether an '@' outside the authority could end a userinfo that was cut short.

    An '@' in the path always could; one in the query or fragment could when a
    ':' (a password's start) comes before it, outside an [IPv6] literal. An
    ordinary ``?email=a@b.example`` is not ambiguous.
    """
    if "@" not in parts.path + parts.query + parts.fragment:
        return False  # any userinfo is in the authority, where .hostname leaves it out
    if not parts.netloc or "@" in parts.path:
        return True
    region = url[url.find("//") + 2 : url.rindex("@")]
    return ":" in _IPV6_LITERAL.sub("", region)


_IPV6_LITERAL = re.compile(r"\[[^\]]*\]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def _after_last_at(url: str) -> str:
    head, _, tail = url.rpartition("@")
    match = _SCHEME.match(head)
    scheme = match.group(1) if match else "x"
    shown = redacted_url(f"{scheme}://{tail}")  # no '@' left: not ambiguous
    if shown == "<invalid URL>":
        return shown
    where = shown.partition("://")[2]
    return f"{scheme}://…@{where}" if match else f"…@{where}"
