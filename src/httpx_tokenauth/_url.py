"""URL rules for the token endpoint and the API (SPEC T1, T3, T4). No I/O."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from urllib.parse import urlsplit

from ._errors import ConfigurationError, InsecureTransportError

__all__ = ["check_flag", "check_token_url", "is_loopback_host", "redacted_url"]

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


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

    Absolute http(s) with a host; a query is kept (T4); a fragment is refused
    (T4); plain http only for loopback hosts or with the explicit opt-in (T1).
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
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (validates the port)
    except ValueError as exc:
        raise ConfigurationError(f"token_url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        raise ConfigurationError(
            f"token_url {redacted_url(url)!r} must be an absolute https:// URL with a host, "
            "such as 'https://as.example/oauth2/token'"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"token_url {redacted_url(url)!r} carries a user name or password; client "
            "credentials go in client_id= and client_secret= (or client_auth=), never the URL"
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


def redacted_url(url: str) -> str:
    """The URL without userinfo, query or fragment: safe for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme and not parts.netloc:
        return parts.path  # not an absolute URL (a message is about to say so)
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"
