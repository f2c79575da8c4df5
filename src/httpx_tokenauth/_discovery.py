"""Discovery: authorization server metadata and protected resource metadata. No I/O.

* **RFC 8414 / OpenID Connect Discovery 1.0**: a grant made with
  ``from_issuer(issuer, ...)`` learns its token endpoint (and what the server
  accepts) from the issuer's metadata. ``metadata_urls`` gives the
  well-known locations in the order they are tried (RFC 8414 §3.1 path
  insertion first, then OpenID's), ``parse_server_metadata`` checks a
  document: the ``issuer`` it names equals the configured one exactly
  (RFC 8414 §3.3), ``token_endpoint`` is https (loopback aside), and each
  field has the type RFC 8414 §2 gives it.
* **RFC 9728**: a protected resource names its authorization servers in its
  metadata, found at a well-known location of its own or through
  ``WWW-Authenticate: Bearer resource_metadata="..."``. Its ``resource``
  must match the API that was called (§3.3), and its ``authorization_servers``
  are used only if the user allowed them (SPEC M2): a resource server must
  not be able to choose where credentials go.

What to fetch and when (first need, refresh, keeping the last good document)
is the program's (``_program.Acquisition``); this module only computes URLs,
checks documents and chooses client authentication from what a document says.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import unicodedata
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlsplit

from ._errors import (
    ConfigurationError,
    InsecureTransportError,
    UnexpectedTokenResponseError,
    printable,
)
from ._request import TokenRequest
from ._token import RawResponse
from ._url import _FORBIDDEN, _INVISIBLE, check_token_url, is_loopback_host, redacted_url

if TYPE_CHECKING:
    from ._client_auth import ClientAuth
    from ._providers import Grant

__all__ = [
    "DEFAULT_MAX_AGE",
    "MAX_MAX_AGE",
    "MIN_MAX_AGE",
    "DiscoveryError",
    "DiscoveryState",
    "IssuerMismatchError",
    "MetadataCache",
    "ResourceMetadata",
    "ResourceMismatchError",
    "ServerMetadata",
    "UntrustedAuthorizationServerError",
    "check_issuer",
    "choose_secret_method",
    "document_request",
    "metadata_urls",
    "parse_resource_metadata",
    "parse_server_metadata",
    "resource_metadata_of",
    "resource_metadata_urls",
]

OAUTH_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OPENID_WELL_KNOWN = "/.well-known/openid-configuration"
RESOURCE_WELL_KNOWN = "/.well-known/oauth-protected-resource"

#: How long a metadata document is used before it is fetched again, when its
#: ``Cache-Control`` says nothing: one hour.
DEFAULT_MAX_AGE = 3600.0
#: ``max-age`` is honoured within these bounds: a server that says ``no-cache``
#: or ``max-age=0`` is asked again a minute later, not before every token
#: request; one that says a year is asked again after a day.
MIN_MAX_AGE = 60.0
MAX_MAX_AGE = 24 * 3600.0

#: Statuses after which the next well-known location is tried (the document is
#: not at this one). Any other non-200 answer is an error.
NOT_HERE = frozenset({400, 403, 404, 405, 406, 410})

#: RFC 8414 §2: the default when ``token_endpoint_auth_methods_supported`` is absent.
DEFAULT_AUTH_METHODS = ("client_secret_basic",)

#: The HMAC algorithms, strongest first, with the shortest secret each accepts (SPEC K10).
_HMAC_STRONGEST_FIRST = (("HS512", 64), ("HS384", 48), ("HS256", 32))

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?([0-9]{1,12})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:[,=]|$)", re.IGNORECASE)


# -- errors -------------------------------------------------------------------------------


class DiscoveryError(UnexpectedTokenResponseError):
    """A metadata document could not be fetched or used (SPEC M1-M3).

    Not JSON, too large, a redirect, an error status, a required field
    missing or of the wrong type, an endpoint over plain http. ``url`` is the
    document's URL (without query); ``status_code`` and ``content_type`` are
    those of its answer. A subclass of UnexpectedTokenResponseError, so the
    same retry rules apply: a 503 is tried again, a bad document is not.
    Nothing is sent to an endpoint named by a document that failed a check.
    """

    def __init__(
        self, message: str, *, url: str, status_code: int = 200, content_type: str | None = None
    ) -> None:
        super().__init__(message, status_code=status_code, content_type=content_type)
        self.url = url


class IssuerMismatchError(DiscoveryError):
    """The metadata names another issuer than the one configured (RFC 8414 §3.3).

    ``expected`` is the configured issuer, ``found`` what the document says
    (None when it names none). The document is not used.
    """

    def __init__(self, message: str, *, url: str, expected: str, found: str | None) -> None:
        super().__init__(message, url=url)
        self.expected = expected
        self.found = found


class ResourceMismatchError(DiscoveryError):
    """Protected resource metadata for another resource than the one called (RFC 9728 §3.3).

    ``resource`` is what the document says, ``request_url`` the API URL that
    was called (without query). The document is not used.
    """

    def __init__(self, message: str, *, url: str, resource: str | None, request_url: str) -> None:
        super().__init__(message, url=url)
        self.resource = resource
        self.request_url = request_url


class UntrustedAuthorizationServerError(DiscoveryError):
    """A protected resource names only authorization servers the user did not allow (SPEC M2).

    ``authorization_servers`` is what its metadata lists, ``allowed_issuers``
    what ``from_issuer(..., allowed_issuers=)`` allows. None of the listed
    servers was contacted, and no credential was sent anywhere.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        authorization_servers: tuple[str, ...],
        allowed_issuers: tuple[str, ...],
    ) -> None:
        super().__init__(message, url=url)
        self.authorization_servers = authorization_servers
        self.allowed_issuers = allowed_issuers


# -- the issuer and where its metadata lives ----------------------------------------------


def check_issuer(issuer: object, *, allow_insecure_http: bool, name: str = "issuer") -> str:
    """An issuer identifier as RFC 8414 §2 defines it, checked now; returned unchanged.

    An https URL with a host and no query or fragment (plain http only for
    loopback hosts or with ``allow_insecure_http``); no user name or password,
    whitespace or invisible characters. It is compared with the metadata's
    ``issuer`` exactly, character for character (§3.3), so it is not
    normalized: ``https://as.example/`` and ``https://as.example`` differ.
    """
    if not isinstance(issuer, str) or not issuer:
        raise ConfigurationError(
            f"{name} must be a non-empty string such as 'https://as.example', "
            f"got {type(issuer).__name__}"
        )
    if _FORBIDDEN.search(issuer) or any(
        c.isspace() or unicodedata.category(c) in _INVISIBLE for c in issuer
    ):
        raise ConfigurationError(
            f"{name} contains whitespace, a control or an invisible character (a line ending "
            "read from a file, a no-break space pasted with it?): remove it"
        )
    if "@" in issuer:
        raise ConfigurationError(
            f"{name} {redacted_url(issuer)!r} has an '@': an issuer identifier holds no user "
            "name or password"
        )
    if "?" in issuer or "#" in issuer:
        raise ConfigurationError(
            f"{name} {redacted_url(issuer)!r} has a query or a fragment, which an issuer "
            "identifier never has (RFC 8414 §2): give the issuer exactly as the server's "
            "metadata names it, such as 'https://as.example/tenant'"
        )
    try:
        parts = urlsplit(issuer)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigurationError(
            f"{name} is not a valid URL: give it as 'https://as.example' or "
            "'https://as.example/tenant'"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host or port == 0:
        raise ConfigurationError(
            f"{name} {redacted_url(issuer)!r} must be an absolute https:// URL with a host "
            "(and a real port, if any), such as 'https://as.example'"
        )
    if scheme == "http" and not allow_insecure_http and not is_loopback_host(host):
        raise InsecureTransportError(
            f"{name} {redacted_url(issuer)!r} uses plain http; the metadata that says where "
            "credentials go must come over TLS (RFC 8414 §3). Use https://, or pass "
            "allow_insecure_http=True if this really is a trusted network"
        )
    return issuer


def _origin_and_path(url: str) -> tuple[str, str]:
    """``scheme://host[:port]`` and the path without a terminating '/' (RFC 8414 §3.1)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def metadata_urls(issuer: str) -> tuple[str, ...]:
    """Where the issuer's metadata may be, in the order they are tried.

    RFC 8414 §3.1 inserts the well-known path between host and path; OpenID
    Connect Discovery 1.0 §4 appends it to the issuer. For an issuer with a
    path (``https://as.example/tenant``) that gives, in the order the MCP
    authorization specification prescribes::

        https://as.example/.well-known/oauth-authorization-server/tenant
        https://as.example/.well-known/openid-configuration/tenant
        https://as.example/tenant/.well-known/openid-configuration

    and for one without, the first and the last (which then coincide with
    the second).
    """
    origin, path = _origin_and_path(issuer)
    urls = [f"{origin}{OAUTH_WELL_KNOWN}{path}"]
    if path:
        urls.append(f"{origin}{OPENID_WELL_KNOWN}{path}")
    urls.append(f"{origin}{path}{OPENID_WELL_KNOWN}")
    return tuple(dict.fromkeys(urls))


def resource_metadata_urls(request_url: str) -> tuple[tuple[str, str], ...]:
    """Where a protected resource's metadata may be (RFC 9728 §3.1), with its identifier.

    For ``https://api.example/mcp``: the path-inserted location (identifier
    ``https://api.example/mcp``), then the origin's (identifier
    ``https://api.example``). The query and fragment of the request are no
    part of the identifier.
    """
    origin, path = _origin_and_path(request_url)
    out = [(f"{origin}{RESOURCE_WELL_KNOWN}{path}", f"{origin}{path}")]
    if path:
        out.append((f"{origin}{RESOURCE_WELL_KNOWN}", origin))
    return tuple(out)


def document_request(url: str) -> TokenRequest:
    """The GET for a metadata document: JSON wanted, no body, no credentials.

    ``Connection: close``: documents are fetched rarely, often from an API's
    host, and the token client's pool is no place to keep that connection.
    """
    return TokenRequest(
        url=url,
        headers=(("Accept", "application/json"), ("Connection", "close")),
        form=(),
        method="GET",
    )


def resource_metadata_of(www_authenticate: Iterable[str]) -> str | None:
    """The ``resource_metadata`` URL of the first Bearer challenge (RFC 9728 §5.1), if any."""
    from ._challenge import parse_www_authenticate  # noqa: PLC0415  (only on a 401)

    for challenge in parse_www_authenticate(www_authenticate):
        if challenge.scheme.lower() == "bearer":
            value = challenge.params.get("resource_metadata")
            return value or None
    return None


# -- documents ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """What an authorization server's metadata says (RFC 8414 §2), as far as a client cares.

    The ``*_supported`` fields are None when the document leaves them out.
    ``document`` is every field, read-only, as sent. ``max_age`` is how long
    the document may be used (``Cache-Control: max-age`` within bounds).
    """

    issuer: str
    token_endpoint: str
    url: str
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    token_endpoint_auth_signing_alg_values_supported: tuple[str, ...] | None = None
    dpop_signing_alg_values_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    max_age: float = DEFAULT_MAX_AGE
    document: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def auth_methods(self) -> tuple[str, ...]:
        """The client authentication methods the token endpoint accepts (RFC 8414 default
        ``client_secret_basic`` when the document names none)."""
        return self.token_endpoint_auth_methods_supported or DEFAULT_AUTH_METHODS


@dataclass(frozen=True, slots=True)
class ResourceMetadata:
    """What a protected resource's metadata says (RFC 9728 §2)."""

    resource: str
    authorization_servers: tuple[str, ...]
    url: str
    scopes_supported: tuple[str, ...] | None = None


def cache_max_age(headers: Mapping[str, str]) -> float:
    """How long a document may be used, from its ``Cache-Control``, within bounds."""
    value = headers.get("cache-control") or ""
    if _NO_CACHE.search(value):
        return MIN_MAX_AGE
    match = _MAX_AGE.search(value)
    if match is None:
        return DEFAULT_MAX_AGE
    return min(MAX_MAX_AGE, max(MIN_MAX_AGE, float(int(match.group(1)))))


def _json_document(raw: RawResponse, url: str, what: str) -> dict[str, Any]:
    """The JSON object of a 200 answer, or a DiscoveryError saying what it is instead."""
    shown = redacted_url(url)
    content_type = raw.headers.get("content-type")
    status = raw.status_code
    if 300 <= status < 400:
        location = raw.headers.get("location")
        where = f" to {printable(redacted_url(location), 120)!r}" if location else ""
        raise DiscoveryError(
            f"{what} {shown} answered HTTP {status}, a redirect{where}: metadata redirects are "
            "not followed (the document must be at its well-known location, RFC 8414 §3)",
            url=shown,
            status_code=status,
            content_type=content_type,
        )
    if status != 200:
        raise DiscoveryError(
            f"{what} {shown} answered HTTP {status}",
            url=shown,
            status_code=status,
            content_type=content_type,
        )
    try:
        data = json.loads(raw.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        kind = printable(content_type, 60) if content_type else "no Content-Type"
        raise DiscoveryError(
            f"{what} {shown} is not JSON ({kind}): is the URL right, or is a proxy answering?",
            url=shown,
            content_type=content_type,
        ) from None
    if not isinstance(data, dict):
        raise DiscoveryError(
            f"{what} {shown} is JSON {type(data).__name__}, not an object",
            url=shown,
            content_type=content_type,
        )
    return data


def _strings(data: Mapping[str, Any], name: str, url: str, what: str) -> tuple[str, ...] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DiscoveryError(
            f"{what} {url} has {name} of the wrong type: it must be a JSON array of strings",
            url=url,
        )
    return tuple(value)


def parse_server_metadata(
    raw: RawResponse, *, issuer: str, url: str, allow_insecure_http: bool
) -> ServerMetadata:
    """Check an authorization server metadata document for ``issuer`` (SPEC M1).

    Raises DiscoveryError (IssuerMismatchError for another issuer) for
    anything that must not be used; returns the parts a client needs.
    """
    what = "authorization server metadata"
    data = _json_document(raw, url, what)
    shown = redacted_url(url)
    found = data.get("issuer")
    if found != issuer:
        named = f"{printable(found, 120)!r}" if isinstance(found, str) else "no issuer"
        raise IssuerMismatchError(
            f"{what} {shown} names {named}, not the configured issuer {issuer!r}; RFC 8414 "
            "§3.3 requires them to be identical (character for character, trailing '/' "
            "included), so it is not used. Configure the issuer exactly as the server "
            "names it, if that server is the one you mean",
            url=shown,
            expected=issuer,
            found=found if isinstance(found, str) else None,
        )
    endpoint = data.get("token_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise DiscoveryError(
            f"{what} {shown} has no token_endpoint: this server publishes no token endpoint "
            "for the grants this client uses",
            url=shown,
        )
    try:
        check_token_url(endpoint, allow_insecure_http=allow_insecure_http)
    except InsecureTransportError:
        raise DiscoveryError(
            f"{what} {shown} names a token_endpoint over plain http "
            f"({redacted_url(endpoint)!r}); credentials go only over TLS (RFC 6749 §3.2), "
            "so nothing is sent to it",
            url=shown,
        ) from None
    except ConfigurationError as exc:
        raise DiscoveryError(
            f"{what} {shown} names a token_endpoint that cannot be used: {exc}", url=shown
        ) from None
    return ServerMetadata(
        issuer=issuer,
        token_endpoint=endpoint,
        url=url,
        token_endpoint_auth_methods_supported=_strings(
            data, "token_endpoint_auth_methods_supported", shown, what
        ),
        token_endpoint_auth_signing_alg_values_supported=_strings(
            data, "token_endpoint_auth_signing_alg_values_supported", shown, what
        ),
        dpop_signing_alg_values_supported=_strings(
            data, "dpop_signing_alg_values_supported", shown, what
        ),
        grant_types_supported=_strings(data, "grant_types_supported", shown, what),
        max_age=cache_max_age(raw.headers),
        document=MappingProxyType(data),
    )


#: What the fleet store's document entry for an issuer's metadata is named after (SPEC M6).
SHARED_METADATA = "httpx-tokenauth authorization server metadata v1"
#: A shared document longer than this is not shared (fetched documents are capped at 1 MiB).
_MAX_SHARED_CHARS = 2 << 20


def shared_metadata_identity(issuer: str, allow_insecure_http: bool) -> tuple[str, ...]:
    """The start of a shared document's store identity: the issuer, and whether http was
    allowed (the program adds the credential's identity)."""
    return (SHARED_METADATA, issuer, "allow-insecure-http" if allow_insecure_http else "https")


def shared_metadata(metadata: ServerMetadata, fresh_until: float) -> str | None:
    """The text a fleet store keeps for ``metadata``, fresh until ``fresh_until`` (wall
    clock); None when it cannot be shared (too long)."""
    try:
        text = json.dumps(
            {
                "url": metadata.url,
                "max_age": metadata.max_age,
                "fresh_until": fresh_until,
                "document": dict(metadata.document),
            },
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
        text.encode("utf-8")
    except (ValueError, RecursionError):  # NaN, a huge number, a lone surrogate: JSON took
        return None  # them, but they do not round-trip; such a document is not shared
    return text if len(text) <= _MAX_SHARED_CHARS else None


def from_shared(
    text: str, *, issuer: str, allow_insecure_http: bool, now: float
) -> tuple[ServerMetadata, float] | None:
    """The metadata another process shared, and for how many seconds more it is fresh.

    Checked as if fetched now (SPEC M1, with this process's issuer and
    ``allow_insecure_http``), from one of this issuer's well-known URLs; a
    document that is stale, malformed or fails a check is a miss (None).
    """
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict):
        return None
    url, max_age = entry.get("url"), entry.get("max_age")
    fresh_until, document = entry.get("fresh_until"), entry.get("document")
    if (
        url not in metadata_urls(issuer)
        or not isinstance(document, dict)
        or not _seconds(max_age)
        or not _seconds(fresh_until)
    ):
        return None
    remaining = min(float(fresh_until) - now, float(max_age), MAX_MAX_AGE)
    if remaining <= 0:
        return None
    raw = RawResponse(
        200, {"content-type": "application/json"}, json.dumps(document).encode("utf-8")
    )
    try:
        metadata = parse_server_metadata(
            raw, issuer=issuer, url=url, allow_insecure_http=allow_insecure_http
        )
    except DiscoveryError:
        return None
    return replace(metadata, max_age=min(float(max_age), MAX_MAX_AGE)), remaining


def _seconds(value: object) -> TypeGuard[float]:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _under(request_url: str, resource: str) -> bool:
    """RFC 9728 §3.3 for a document named by a challenge: the API called is this resource.

    Same scheme, host and port, and the request's path at or below the
    resource's (``https://api.example/mcp`` covers ``/mcp`` and ``/mcp/x``,
    not ``/mcp2``): how the MCP SDK reads it too.
    """
    try:
        req, res = urlsplit(request_url), urlsplit(resource)
        same_origin = (req.scheme.lower(), req.hostname, req.port or _default_port(req.scheme)) == (
            res.scheme.lower(),
            res.hostname,
            res.port or _default_port(res.scheme),
        )
    except ValueError:
        return False
    if not same_origin or res.query or res.fragment:
        return False
    path, prefix = req.path.rstrip("/") + "/", res.path.rstrip("/") + "/"
    return path.startswith(prefix)


def _default_port(scheme: str) -> int | None:
    return {"https": 443, "http": 80}.get(scheme.lower())


def parse_resource_metadata(
    raw: RawResponse,
    *,
    url: str,
    request_url: str,
    identifier: str | None = None,
    allow_insecure_http: bool = False,
) -> ResourceMetadata:
    """Check a protected resource metadata document (RFC 9728 §3.2, §3.3; SPEC M3).

    ``identifier`` is the resource identifier a well-known URL was built from
    (then ``resource`` must equal it); without it (a URL from a challenge),
    ``resource`` must cover ``request_url``: same origin, path at or below.
    """
    what = "protected resource metadata"
    data = _json_document(raw, url, what)
    shown = redacted_url(url)
    request_shown = redacted_url(request_url)
    resource = data.get("resource")
    if not isinstance(resource, str) or not resource:
        raise ResourceMismatchError(
            f"{what} {shown} has no resource identifier (RFC 9728 §2): it is not used",
            url=shown,
            resource=None,
            request_url=request_shown,
        )
    if identifier is not None:
        matches = _same_resource(resource, identifier)
    else:
        matches = _under(request_url, resource)
    if not matches:
        expected = (
            f"the resource {identifier!r} its URL was made from"
            if identifier is not None
            else f"the API that was called, {request_shown!r}"
        )
        raise ResourceMismatchError(
            f"{what} {shown} is for the resource {printable(resource, 120)!r}, not {expected} "
            "(RFC 9728 §3.3): it is not used",
            url=shown,
            resource=resource,
            request_url=request_shown,
        )
    try:
        check_token_url(resource, allow_insecure_http=allow_insecure_http)
    except ConfigurationError:
        raise ResourceMismatchError(
            f"{what} {shown} names a resource that is not an https URL without a fragment "
            f"({redacted_url(resource)!r}): it is not used",
            url=shown,
            resource=resource,
            request_url=request_shown,
        ) from None
    servers = _strings(data, "authorization_servers", shown, what) or ()
    return ResourceMetadata(
        resource=resource,
        authorization_servers=servers,
        url=url,
        scopes_supported=_strings(data, "scopes_supported", shown, what),
    )


def choose_issuer(metadata: ResourceMetadata, *, configured: str, allowed: tuple[str, ...]) -> str:
    """The authorization server to use for this resource: one the user allowed (SPEC M2).

    The configured issuer if the resource lists it (or lists none), else the
    first listed one that ``allowed`` names. Issuers compare exactly. A list
    with none of them is an UntrustedAuthorizationServerError naming them.
    """
    listed = metadata.authorization_servers
    if not listed or configured in listed:
        return configured
    for issuer in listed:
        if issuer in allowed:
            return issuer
    names = ", ".join(repr(printable(s, 100)) for s in listed[:5])
    more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
    raise UntrustedAuthorizationServerError(
        f"the protected resource's metadata ({redacted_url(metadata.url)}) names the "
        f"authorization server {names}{more}, which this client is not allowed to use "
        f"(allowed: {', '.join(repr(a) for a in allowed)}); nothing was sent to it. If you "
        "trust it with these credentials, add it to from_issuer(..., allowed_issuers=[...])",
        url=redacted_url(metadata.url),
        authorization_servers=listed,
        allowed_issuers=allowed,
    )


# -- what the metadata decides ------------------------------------------------------------


def choose_secret_method(metadata: ServerMetadata, secret: str, issuer: str) -> ClientAuth:
    """SPEC M4: with a client secret and no ``client_auth=``, the strongest method it allows.

    ``client_secret_jwt`` (the secret never travels) with the strongest HMAC
    algorithm the server lists and the secret is long enough for (SPEC K10),
    then ``client_secret_basic``, then ``client_secret_post``, among the
    server's ``token_endpoint_auth_methods_supported``. The JWT's audience is
    the issuer (draft-ietf-oauth-rfc7523bis).
    """
    from ._client_auth import ClientSecretBasic, ClientSecretPost  # noqa: PLC0415

    supported = metadata.auth_methods
    if "client_secret_jwt" in supported:
        algorithms = metadata.token_endpoint_auth_signing_alg_values_supported
        length = len(secret.encode("utf-8"))
        for algorithm, minimum in _HMAC_STRONGEST_FIRST:
            listed = algorithms is None and algorithm == "HS256"
            if (listed or (algorithms is not None and algorithm in algorithms)) and (
                length >= minimum
            ):
                from ._jwt import ClientSecretJWT  # noqa: PLC0415  (loads pyjwt)

                return ClientSecretJWT(algorithm=algorithm, audience=issuer)
    if "client_secret_basic" in supported:
        return ClientSecretBasic()
    if "client_secret_post" in supported:
        return ClientSecretPost()
    url = redacted_url(metadata.url)
    raise DiscoveryError(
        f"the token endpoint accepts {', '.join(supported[:8])} (metadata {url}), and a "
        "client secret allows client_secret_basic, client_secret_post or client_secret_jwt: "
        "pass client_auth=PrivateKeyJWT(...) with the client's key, or client_auth= the "
        "method the client is registered for",
        url=url,
    )


def endpoint_gone(error: BaseException) -> bool:
    """Whether a failed token request says the endpoint is no longer there (SPEC M5).

    The connection was refused, or the endpoint answered 404 or 410: the
    server may have moved its token endpoint, and its metadata may say where.
    """
    status = getattr(error, "status_code", None)
    if status in (404, 410):
        return True
    current: BaseException | None = error
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, ConnectionRefusedError) or type(current).__name__ == "ConnectError":
            return True
        current = current.__cause__ or current.__context__
    return False


# -- caches -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cached:
    metadata: ServerMetadata
    fresh_until: float  # monotonic


class MetadataCache:
    """Authorization server metadata by issuer, for one process or one set of token clients.

    Holds the last good document of each issuer and until when it is fresh
    (monotonic time). A refresh that fails leaves the document in place,
    fresh again for MIN_MAX_AGE, so callers keep working and the next
    attempt is a minute away.
    """

    __slots__ = ("__weakref__", "_entries", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, bool], _Cached] = {}
        _forks.add(self)

    def get(self, key: tuple[str, bool], mono: float) -> tuple[ServerMetadata | None, bool]:
        """The document for ``key`` (issuer, allow_insecure_http), and whether it is fresh."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None, False
        return entry.metadata, mono < entry.fresh_until

    def put(
        self,
        key: tuple[str, bool],
        metadata: ServerMetadata,
        mono: float,
        fresh_for: float | None = None,
    ) -> None:
        """Keep ``metadata``, fresh for ``fresh_for`` seconds (default: its ``max_age``)."""
        seconds = metadata.max_age if fresh_for is None else fresh_for
        with self._lock:
            self._entries[key] = _Cached(metadata, mono + seconds)

    def keep(self, key: tuple[str, bool], mono: float) -> None:
        """A refresh failed: keep the last good document, try again in MIN_MAX_AGE."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.fresh_until = mono + MIN_MAX_AGE

    def expire(self, key: tuple[str, bool]) -> None:
        """The document's endpoint stopped answering: fetch it again at the next need."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.fresh_until = float("-inf")

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


_forks: weakref.WeakSet[Any] = weakref.WeakSet()

#: The process's cache, for every TokenAuth that sends over clients of its own.
PROCESS_CACHE = MetadataCache()
#: Caches for TokenAuths given a token client: one per client, shared by every
#: TokenAuth that uses it (its TLS settings decide what the documents are worth).
_CLIENT_CACHES: weakref.WeakKeyDictionary[Any, MetadataCache] = weakref.WeakKeyDictionary()
_CLIENT_CACHES_LOCK = threading.Lock()


def cache_for(client: object | None) -> MetadataCache:
    """The metadata cache that goes with a token client (None: TokenAuth's own clients)."""
    if client is None:
        return PROCESS_CACHE
    with _CLIENT_CACHES_LOCK:
        try:
            cache = _CLIENT_CACHES.get(client)
        except TypeError:  # pragma: no cover - a client that cannot be weakly referenced
            return MetadataCache()
        if cache is None:
            cache = _CLIENT_CACHES[client] = MetadataCache()
        return cache


def _after_fork_in_child() -> None:
    global _CLIENT_CACHES_LOCK  # noqa: PLW0603
    _CLIENT_CACHES_LOCK = threading.Lock()
    for cache in list(_forks):
        cache.reset_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True, slots=True)
class Discovered:
    """How a grant made by ``from_issuer`` is completed once its metadata is known.

    Held by the grant; the secret is kept because the client authentication
    method is chosen later, from the metadata. Never shown.
    """

    issuer: str
    allowed_issuers: tuple[str, ...]
    allow_insecure_http: bool
    client_secret: str | None = field(default=None, repr=False)
    client_auth: ClientAuth | None = None
    audience_given: bool = False
    resource_given: bool = False
    resource_discovery: bool = True

    def __repr__(self) -> str:
        return f"Discovered(issuer={self.issuer!r})"


def discovered_for(
    issuer: object,
    *,
    name: str = "issuer",
    allowed_issuers: str | Sequence[str] | None,
    allow_insecure_http: object,
    resource_discovery: object,
    client_secret: str | None,
    client_auth: ClientAuth | None,
    audience_given: bool = False,
    resource_given: bool,
) -> Discovered:
    """What a grant's ``from_issuer`` keeps, every argument of discovery checked (no I/O).

    The grant is then built with ``issuer`` standing in for its token URL,
    which the metadata replaces (``Grant._resolve``).
    """
    from ._url import check_flag  # noqa: PLC0415

    allow = check_flag("allow_insecure_http", allow_insecure_http)
    checked = check_issuer(issuer, allow_insecure_http=allow, name=name)
    return Discovered(
        issuer=checked,
        allowed_issuers=check_allowed_issuers(checked, allowed_issuers, allow_insecure_http=allow),
        allow_insecure_http=allow,
        client_secret=client_secret,
        client_auth=client_auth,
        audience_given=audience_given,
        resource_given=resource_given,
        resource_discovery=check_flag("resource_discovery", resource_discovery),
    )


def check_allowed_issuers(
    issuer: str, allowed: str | Sequence[str] | None, *, allow_insecure_http: bool
) -> tuple[str, ...]:
    """``allowed_issuers=``: the configured issuer first, then each other one, checked."""
    if allowed is None:
        return (issuer,)
    values = [allowed] if isinstance(allowed, str) else allowed
    if not isinstance(values, Sequence) or not values:
        raise ConfigurationError(
            "allowed_issuers must be an issuer identifier or a list of them (the configured "
            "issuer is always allowed); leave it out to allow only the configured issuer"
        )
    checked = [
        check_issuer(v, allow_insecure_http=allow_insecure_http, name="allowed_issuers entry")
        for v in values
    ]
    return tuple(dict.fromkeys([issuer, *checked]))


class DiscoveryState:
    """What one TokenAuth has learned about where its tokens come from, and what is pending.

    The authorization server in use (the configured issuer, or another
    allowed one a protected resource named), the ``resource`` learned from
    protected resource metadata, the first API URL (its well-known location
    is looked at once, before the first token), the challenges that named a
    metadata URL, and what came of each such URL (fetched once).
    """

    def __init__(self, grant: Grant, discovered: Discovered, cache: MetadataCache) -> None:
        self.grant = grant
        self.discovered = discovered
        self.cache = cache
        #: Documents taken from a fleet store: this TokenAuth's alone (SPEC M6).
        self.adopted = MetadataCache()
        self.issuer = discovered.issuer
        self.resource: str | None = None
        self.probe_url: str | None = None
        self.probed = not discovered.resource_discovery
        self.challenges: list[tuple[str, str]] = []
        self.outcomes: dict[str, ResourceMetadata | DiscoveryError | None] = {}
        self._resolved: tuple[ServerMetadata, str | None, Grant] | None = None
        self.lock = threading.Lock()
        _forks.add(self)

    def reset_after_fork(self) -> None:
        self.lock = threading.Lock()

    @property
    def key(self) -> tuple[str, bool]:
        return (self.issuer, self.discovered.allow_insecure_http)

    def note_request(self, url: str) -> None:
        """An API request is about to need the first token: look at its resource first."""
        if self.probed or self.probe_url is not None:
            return
        with self.lock:
            if not self.probed and self.probe_url is None:
                self.probe_url = url

    def note_challenge(self, metadata_url: str, request_url: str) -> None:
        """A 401 named protected resource metadata: look at it before the next token."""
        with self.lock:
            if (metadata_url, request_url) not in self.challenges:
                self.challenges.append((metadata_url, request_url))

    def take(self) -> tuple[str | None, list[tuple[str, str]]]:
        """What is pending, taken: the URL to probe (once) and the challenges' URLs."""
        with self.lock:
            probe, self.probe_url = (None if self.probed else self.probe_url), None
            if probe is not None:
                self.probed = True
            challenges, self.challenges = self.challenges, []
        return probe, challenges

    def resolved(self, metadata: ServerMetadata) -> Grant:
        """The grant completed with ``metadata`` (and the learned resource), made once."""
        resource = None if self.discovered.resource_given else self.resource
        done = self._resolved
        if done is not None and done[0] is metadata and done[1] == resource:
            return done[2]
        grant = self.grant._resolve(metadata, resource)
        self._resolved = (metadata, resource, grant)
        return grant
