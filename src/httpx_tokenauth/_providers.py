"""Where tokens come from: the provider protocols and the token-endpoint grants.

Two kinds of provider plug into TokenAuth:

* a **grant** (ClientCredentials, JWTBearerGrant) is sans-I/O: it builds the
  token request and parses the answer; TokenAuth sends it over its own client.
  (``grant.fetch_token()`` / ``await grant.afetch_token()``, for trying a
  credential alone, hand the grant to a short-lived TokenAuth: TokenAuth
  still tells a grant from a TokenProvider and sends its requests itself.)
* a **TokenProvider** / **AsyncTokenProvider** is anything with
  ``fetch_token()`` / ``async afetch_token()`` returning a Token: a file, a
  secrets store, another library. TokenAuth calls it when it needs a token
  and applies the same caching, locking and 401 rules.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, TypeVar, runtime_checkable

from ._client_auth import (
    Authenticator,
    ClientAuth,
    ClientSecretBasic,
    bind_again,
    check_client_id,
    digest,
    identity_of,
)
from ._errors import ConfigurationError
from ._request import (
    BASE_HEADERS,
    Form,
    TokenRequest,
    normalize_extra_params,
    normalize_multi,
    normalize_scope,
)
from ._token import RawResponse, Token, parse_token_response
from ._url import check_flag, check_token_url, redacted_url

if TYPE_CHECKING:
    from ._assertions import AssertionAuthenticator, AssertionNeed
    from ._auth import TokenAuthBase
    from ._discovery import Discovered, ServerMetadata

G = TypeVar("G", bound="Grant")

__all__ = ["AsyncTokenProvider", "ClientCredentials", "Grant", "TokenProvider"]

RESERVED_PARAMS = frozenset(
    {
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "assertion",
        "resource",
        "audience",
    }
)


@runtime_checkable
class TokenProvider(Protocol):
    """A source of tokens for synchronous clients.

    ``fetch_token`` is called only when TokenAuth needs a new token (at first
    use, near expiry, after a 401), never concurrently for one TokenAuth. It
    returns a Token; an exception it raises reaches the caller as a
    ProviderError with the original as ``__cause__``. With an AsyncClient a
    provider that only has ``fetch_token`` runs in a worker thread, so the
    event loop is never blocked.
    """

    def fetch_token(self) -> Token:
        """Return a new token."""
        ...


@runtime_checkable
class AsyncTokenProvider(Protocol):
    """A source of tokens for asynchronous clients: ``async def afetch_token() -> Token``."""

    async def afetch_token(self) -> Token:
        """Return a new token."""
        ...


def form_identity(form: Form) -> tuple[str, ...]:
    """The form's parameters as ``name=value``, sorted, with scope tokens sorted too."""
    fields = [
        f"{name}={' '.join(sorted(value.split(' '))) if name == 'scope' else value}"
        for name, value in form
    ]
    return tuple(sorted(fields))


class Grant(abc.ABC):
    """A sans-I/O OAuth 2.0 grant: builds token requests, parses token responses.

    A grant made with ``from_issuer`` knows its authorization server's issuer,
    not its token endpoint: TokenAuth reads the issuer's metadata on first
    need and completes the grant from it (``_resolve``).
    """

    __slots__ = ("_allow_insecure_http", "_discovered", "_scope", "_token_url")

    def __init__(
        self,
        token_url: str,
        *,
        scope: str | Sequence[str] | None,
        allow_insecure_http: bool,
    ) -> None:
        allow_insecure_http = check_flag("allow_insecure_http", allow_insecure_http)
        self._token_url = check_token_url(token_url, allow_insecure_http=allow_insecure_http)
        self._allow_insecure_http = check_flag("allow_insecure_http", allow_insecure_http)
        self._scope = normalize_scope(scope)
        self._discovered: Discovered | None = None

    @property
    def token_url(self) -> str:
        """The token endpoint; for a grant made by ``from_issuer``, the issuer (the endpoint
        is read from its metadata by each TokenAuth)."""
        return self._token_url

    @property
    def as_issuer(self) -> str | None:
        """The authorization server's issuer for a grant made by ``from_issuer``, else None."""
        return None if self._discovered is None else self._discovered.issuer

    def _resolve(self, metadata: ServerMetadata, resource: str | None) -> Grant:
        """This grant completed from its issuer's ``metadata``: the token endpoint, the
        client authentication and the JWT audiences it decides, and ``resource`` (RFC 8707)
        learned from the protected resource, unless one was configured."""
        raise NotImplementedError(f"{type(self).__name__} cannot be configured by issuer")

    def _copy(self: G) -> G:
        """A shallow copy, slots and all, for ``_resolve`` to complete."""
        new = object.__new__(type(self))
        for cls in type(self).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if name != "__weakref__" and hasattr(self, name):
                    object.__setattr__(new, name, getattr(self, name))
        if hasattr(self, "__dict__"):
            new.__dict__.update(self.__dict__)
        return new

    @property
    def scope(self) -> tuple[str, ...] | None:
        return self._scope

    def cache_identity(self) -> tuple[str, ...]:
        """Everything that shapes the token this grant obtains (SPEC F1, S3).

        Two grants share a cached token in a shared store only when their
        identities are equal. Secrets appear only as digests; the store hashes
        the whole identity again under its own key.
        """
        raise NotImplementedError(f"{type(self).__name__} has no cache identity")

    @abc.abstractmethod
    def token_request(self, now: float) -> TokenRequest:
        """The request to send at ``now``. JWT grants mint a fresh assertion each call."""

    def assertion_sources(self) -> tuple[AssertionNeed, ...]:
        """The externally issued assertions each token request carries (SPEC A1): none here.

        A grant that names some (a ClientAssertion, a token exchange's subject
        token) is not asked for ``token_request``: TokenAuth's program reads
        each source for every attempt, checks it, and calls
        ``token_request_with`` with what it read.
        """
        return ()

    def token_request_with(self, now: float, assertions: Mapping[str, str]) -> TokenRequest:
        """The request to send at ``now`` with ``assertions`` (form field name to the value
        read for it, one per ``assertion_sources()``); ``token_request`` for other grants."""
        return self.token_request(now)

    def parse_response(
        self, response: RawResponse, *, received_at: float, dpop: bool = False
    ) -> Token:
        """The Token in the answer, or a TokenError subclass (SPEC R1-R11, E1-E5).

        ``dpop``: the request carried a DPoP proof, so a ``DPoP`` token is accepted.
        """
        return parse_token_response(
            response, received_at=received_at, requested_scope=self._scope, dpop=dpop
        )

    # -- trying the grant alone: one token, from a REPL or a script -------------------

    def fetch_token(self, *, token_client: Any = None) -> Token:
        """Get one token now, without an API client: to try a credential in a REPL.

        The request goes through a short-lived TokenAuth, with the same rules as
        every token request (TLS verified, no redirects, retries, a typed error
        for every failure), over a client of its own that is closed before this
        returns, or over ``token_client`` (an httpx or httpx2 ``Client``, for a
        proxy, a private CA or mTLS), which stays open. Nothing is cached: a
        service should keep one ``TokenAuth(grant)`` instead, which reuses and
        renews its token.
        """
        auth = self._token_auth(token_client)(self, token_client=token_client)
        try:
            return auth.get_token()
        finally:
            auth.close()

    async def afetch_token(self, *, async_token_client: Any = None) -> Token:
        """The async mirror of ``fetch_token`` (asyncio or trio); ``async_token_client``
        is an httpx or httpx2 ``AsyncClient``."""
        auth = self._token_auth(async_token_client)(self, async_token_client=async_token_client)
        try:
            return await auth.aget_token()
        finally:
            auth.close()

    @staticmethod
    def _token_auth(client: Any) -> type[TokenAuthBase]:
        """TokenAuth for the HTTP library of ``client``: httpx unless it is an httpx2 client."""
        if client is not None and type(client).__module__.partition(".")[0] == "httpx2":
            from .httpx2 import TokenAuth as Httpx2TokenAuth  # noqa: PLC0415

            return Httpx2TokenAuth
        from ._auth import TokenAuth  # noqa: PLC0415  (_auth imports this module)

        return TokenAuth

    def _scope_form(self) -> Form:
        return (("scope", " ".join(self._scope)),) if self._scope else ()

    def _build(
        self,
        grant_form: Form,
        authenticator: Authenticator | None,
        now: float,
        assertions: Mapping[str, str] | None = None,
    ) -> TokenRequest:
        if assertions is not None and _reads_assertions(authenticator):
            headers, auth_form = authenticator.authenticate_with(now, assertions)
        else:
            headers, auth_form = authenticator.authenticate(now) if authenticator else ((), ())
        return TokenRequest(
            url=self._token_url,
            headers=BASE_HEADERS + headers,
            form=grant_form + auth_form,
        )


class ClientCredentials(Grant):
    """The OAuth 2.0 client credentials grant (RFC 6749 §4.4).

    ``client_auth`` defaults to ClientSecretBasic when ``client_secret`` is
    given (SPEC B3); without a secret, pass a method that needs none, such as
    PrivateKeyJWT (SPEC B7). ``scope`` is a space-separated string or a list;
    ``audience`` and ``resource`` (RFC 8707) may be one value or several.
    ``extra_params`` adds vendor parameters; they may not override ours.
    Everything is checked here, at construction.
    """

    __slots__ = ("_audience", "_authenticator", "_client_auth", "_client_id", "_form", "_resource")

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
        scope: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        extra_params: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        super().__init__(token_url, scope=scope, allow_insecure_http=allow_insecure_http)
        self._client_id = check_client_id(client_id)
        if client_auth is None:
            if client_secret is None:
                raise ConfigurationError(
                    "the client credentials grant needs client authentication (RFC 6749 "
                    "§4.4): pass client_secret=..., client_auth=PrivateKeyJWT(...), or "
                    "client_auth=ClientAssertion(FileAssertion(path)) for a platform token"
                )
            client_auth = ClientSecretBasic()
        if not isinstance(client_auth, ClientAuth):
            raise ConfigurationError(
                "client_auth must be ClientSecretBasic(), ClientSecretPost(), "
                "ClientSecretJWT(...), PrivateKeyJWT(...) or ClientAssertion(...), got "
                f"{type(client_auth).__name__}"
            )
        self._client_auth = client_auth
        self._authenticator = client_auth.bind(
            client_id=self._client_id, client_secret=client_secret, token_url=self._token_url
        )
        self._audience = normalize_multi("audience", audience)
        self._resource = normalize_multi("resource", resource)
        self._form: Form = (
            ("grant_type", "client_credentials"),
            *self._scope_form(),
            *(("audience", a) for a in self._audience),
            *(("resource", r) for r in self._resource),
            *normalize_extra_params(extra_params, RESERVED_PARAMS),
        )

    @classmethod
    def from_issuer(
        cls,
        issuer: str,
        /,
        *,
        client_id: str,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
        scope: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        extra_params: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
        allowed_issuers: str | Sequence[str] | None = None,
        resource_discovery: bool = True,
    ) -> ClientCredentials:
        """The grant for the authorization server whose issuer identifier is ``issuer``.

        No I/O here: every argument is checked now, as by the constructor
        (same keywords), and TokenAuth reads the issuer's metadata (RFC 8414,
        OpenID Discovery) on first need. The metadata decides the token
        endpoint and, unless ``client_auth`` is given, the client
        authentication: with a secret, the strongest the server lists
        (``client_secret_jwt``, ``client_secret_basic``, ``client_secret_post``);
        JWT client assertions are addressed to the issuer unless they name
        another ``audience``.

        ``allowed_issuers``: other authorization servers these credentials may
        be sent to when a protected resource names one (RFC 9728); by default
        only ``issuer``. ``resource_discovery``: before the first token, look
        for the API's protected resource metadata at its well-known location
        (RFC 9728 §3.1), to learn its ``resource`` identifier (RFC 8707).
        """
        from ._discovery import discovered_for  # noqa: PLC0415

        discovered = discovered_for(
            issuer,
            allowed_issuers=allowed_issuers,
            allow_insecure_http=allow_insecure_http,
            resource_discovery=resource_discovery,
            client_secret=client_secret,
            client_auth=client_auth,
            resource_given=resource is not None,
        )
        # The issuer stands in for the token URL until the metadata names it.
        grant = cls(
            discovered.issuer,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            scope=scope,
            audience=audience,
            resource=resource,
            extra_params=extra_params,
            allow_insecure_http=discovered.allow_insecure_http,
        )
        grant._discovered = discovered
        return grant

    @property
    def client_id(self) -> str:
        return self._client_id

    def cache_identity(self) -> tuple[str, ...]:
        if self._discovered is not None:
            return (
                "client_credentials",
                *discovered_identity(self._discovered),
                *form_identity(self._form),
                *auth_identity(self._discovered, self._client_id, self._authenticator),
            )
        return (
            "client_credentials",
            self._token_url,
            *form_identity(self._form),
            *identity_of(self._authenticator),
        )

    def _resolve(self, metadata: ServerMetadata, resource: str | None) -> ClientCredentials:
        new = completed(self, metadata, resource, self._client_id)
        if resource is not None:
            new._resource = (resource,)
        return new

    def token_request(self, now: float) -> TokenRequest:
        return self._build(self._form, self._authenticator, now)

    def assertion_sources(self) -> tuple[AssertionNeed, ...]:
        """A ClientAssertion's source (SPEC A1); none for the other methods."""
        return assertion_needs(self._authenticator)

    def token_request_with(self, now: float, assertions: Mapping[str, str]) -> TokenRequest:
        return self._build(self._form, self._authenticator, now, assertions)

    def __repr__(self) -> str:
        parts = [
            f"token_url={redacted_url(self._token_url)!r}",
            f"client_id={self._client_id!r}",
            f"client_auth={self._client_auth!r}",
        ]
        if self._discovered is not None:
            parts[0] = f"issuer={self._discovered.issuer!r}"
            if self._discovered.client_auth is None:
                parts[2] = "client_auth=<from the metadata>"
        if self._scope:
            parts.append(f"scope={' '.join(self._scope)!r}")
        if self._audience:
            parts.append(f"audience={list(self._audience)!r}")
        if self._resource:
            parts.append(f"resource={list(self._resource)!r}")
        return f"ClientCredentials({', '.join(parts)})"


def _reads_assertions(authenticator: object) -> TypeGuard[AssertionAuthenticator]:
    """Whether ``authenticator`` is a bound ClientAssertion, which reads an assertion per request.

    Only ``_assertions`` makes those: while nothing has loaded it, none exists,
    and a plain client secret does not load it to find that out.
    """
    if "httpx_tokenauth._assertions" not in sys.modules:
        return False
    from ._assertions import AssertionAuthenticator  # noqa: PLC0415

    return isinstance(authenticator, AssertionAuthenticator)


def assertion_needs(authenticator: object) -> tuple[AssertionNeed, ...]:
    """The assertions ``authenticator`` needs read for each request (none for most)."""
    return authenticator.assertion_needs if _reads_assertions(authenticator) else ()


# -- what grants made by from_issuer share -------------------------------------------------


def discovered_identity(discovered: Discovered) -> tuple[str, ...]:
    """SPEC F1 for a grant made by issuer: the issuer and the other allowed ones, no I/O."""
    return (
        f"issuer={discovered.issuer}",
        *(f"allowed={a}" for a in discovered.allowed_issuers[1:]),
    )


def auth_identity(
    discovered: Discovered, client_id: str | None, authenticator: object
) -> tuple[str, ...]:
    """Who the client says it is: the configured method, or ``auto`` and the secret's digest
    when the metadata chooses it (the same configuration chooses the same method)."""
    if discovered.client_auth is None and discovered.client_secret is not None:
        return ("auto", client_id or "", digest(discovered.client_secret))
    return identity_of(authenticator)


def discovered_client_auth(discovered: Discovered, metadata: ServerMetadata) -> ClientAuth | None:
    """SPEC M4: the client authentication the metadata decides.

    The user's method, its JWT addressed to the issuer and its algorithm
    chosen from the server's list unless the user named them; with only a
    secret, the strongest method it allows; None when there is nothing to
    authenticate with (the JWT-bearer grant's public client).
    """
    from ._discovery import choose_secret_method  # noqa: PLC0415

    if discovered.client_auth is not None:
        adapt = getattr(discovered.client_auth, "_for_server", None)
        if callable(adapt):
            adapted: ClientAuth = adapt(metadata, discovered.client_secret)
            return adapted
        return discovered.client_auth
    if discovered.client_secret is None:
        return None
    return choose_secret_method(metadata, discovered.client_secret, metadata.issuer)


def completed(grant: G, metadata: ServerMetadata, resource: str | None, client_id: str | None) -> G:
    """A copy of ``grant`` (made by from_issuer) completed with ``metadata``: its token
    endpoint, the client authentication the metadata decides (SPEC M4) when there is a
    client to authenticate, and the ``resource`` learned (SPEC M3) in its form."""
    discovered = grant._discovered
    assert discovered is not None  # noqa: S101 - only grants made by from_issuer get here
    new: Any = grant._copy()
    new._discovered = None
    new._token_url = metadata.token_endpoint
    client_auth = discovered_client_auth(discovered, metadata)
    if client_auth is not None and client_id is not None:
        new._client_auth = client_auth
        new._authenticator = bind_again(
            client_auth,
            client_id=client_id,
            client_secret=discovered.client_secret,
            token_url=metadata.token_endpoint,
        )
    if resource is not None:
        new._form = with_resource(new._form, resource)
    done: G = new
    return done


def with_resource(form: Form, resource: str) -> Form:
    """The form with ``resource`` (RFC 8707) in place of any it had."""
    head = [p for p in form if p[0] in ("grant_type", "scope", "audience")]
    tail = [p for p in form if p[0] not in ("grant_type", "scope", "audience", "resource")]
    return (*head, ("resource", resource), *tail)
