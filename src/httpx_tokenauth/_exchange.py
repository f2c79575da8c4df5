"""OAuth 2.0 Token Exchange (RFC 8693): a token the platform issued, traded for one to use. No I/O.

``TokenExchangeGrant`` is a Grant whose request carries a ``subject_token``
(and optionally an ``actor_token``) read from a source, the same sources a
ClientAssertion takes: a FileAssertion, a GitHubActionsOIDC, a function. The
acquisition program reads them fresh for every attempt (SPEC A1) and hands
the values to ``token_request_with``; the answer's ``issued_token_type`` is
kept on the Token (SPEC A2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._assertions import AssertionNeed, AssertionSource, as_source, needs_of, read_now
from ._client_auth import ClientAuth, identity_of
from ._errors import ConfigurationError, InvalidTargetError, TokenEndpointError
from ._jwt import _client_auth_for
from ._providers import (
    RESERVED_PARAMS,
    Grant,
    auth_identity,
    completed,
    discovered_identity,
    form_identity,
)
from ._request import Form, TokenRequest, normalize_extra_params, normalize_multi
from ._token import RawResponse, Token, parse_token_response
from ._url import redacted_url

if TYPE_CHECKING:
    from ._discovery import ServerMetadata

__all__ = ["TOKEN_EXCHANGE_GRANT_TYPE", "TOKEN_TYPES", "TokenExchangeGrant", "token_type_uri"]

TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"

#: RFC 8693 §3: the token type identifiers, by the short names accepted for them.
TOKEN_TYPES = {
    name: f"urn:ietf:params:oauth:token-type:{name}"
    for name in ("access_token", "refresh_token", "id_token", "saml1", "saml2", "jwt")
}
#: Token types that are JWTs by definition: their ``exp`` must be there to be checked.
_JWT_TYPES = frozenset({TOKEN_TYPES["jwt"], TOKEN_TYPES["id_token"]})

#: Parameters a token exchange sets itself; extra_params may not.
_EXCHANGE_PARAMS = RESERVED_PARAMS | {
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
}

Source = AssertionSource | Callable[[str], Any]


def token_type_uri(name: str, value: object) -> str:
    """A token type: one of RFC 8693 §3's short names (``jwt``), or a URI, kept verbatim."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"{name} must be a token type such as 'urn:ietf:params:oauth:token-type:jwt' (or "
            f"its short name 'jwt'), got {type(value).__name__}"
        )
    if value in TOKEN_TYPES:
        return TOKEN_TYPES[value]
    if ":" not in value or value != value.strip() or any(c.isspace() for c in value):
        raise ConfigurationError(
            f"{name} {value[:60]!r} is not a token type: use a URI such as "
            "'urn:ietf:params:oauth:token-type:jwt', or one of RFC 8693's short names: "
            f"{', '.join(TOKEN_TYPES)}"
        )
    return value


class TokenExchangeGrant(Grant):
    """OAuth 2.0 Token Exchange (RFC 8693 §2.1): trade a token you hold for one to use.

    Each token request sends ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``,
    ``subject_token`` read from ``subject_token`` (a FileAssertion, a
    GitHubActionsOIDC, or a sync or async function given the audience) for
    that request, and ``subject_token_type``; ``actor_token`` and
    ``actor_token_type`` when given (both or neither); and, when given,
    ``requested_token_type``, ``audience`` and ``resource`` (each may repeat),
    ``scope`` and ``extra_params``. Token types are URIs, or RFC 8693 §3's
    short names: ``jwt``, ``id_token``, ``access_token``, ``refresh_token``,
    ``saml1``, ``saml2``.

    A subject or actor token of type ``jwt`` or ``id_token`` must be a JWT
    whose ``exp`` is read (unverified) before each request: one expired or
    within 30 s of it is read again, and one still expired is never sent
    (AssertionExpiredError names the source). Tokens of other types are sent
    as they are, their ``exp`` checked when they are JWTs. Sources are told the
    token URL as the audience (GitHubActionsOIDC and functions may use it).

    Client authentication is optional (RFC 8693 §2.1), as for JWTBearerGrant:
    none by default; ``client_id`` with ``client_secret`` uses
    ClientSecretBasic; or ``client_auth=`` (PrivateKeyJWT, ClientAssertion,
    ...) with ``client_id``; ``client_id`` alone is sent as a form field.

    The answer's ``issued_token_type`` is kept on the Token. Its
    ``token_type`` is Bearer, or ``N_A`` for a token that is not an access
    token (RFC 8693 §2.2.1), which ``get_token()`` returns and TokenAuth never
    sends as a bearer token. ``invalid_target`` raises InvalidTargetError.

    With a shared token store, the cache identity names each source (a file's
    path, a function's qualified name, the GitHub audience), never a token:
    processes sharing a store must read the same subject from the same source.
    """

    __slots__ = (
        "_actor",
        "_actor_type",
        "_audience",
        "_authenticator",
        "_client_auth",
        "_client_id",
        "_form",
        "_requested_type",
        "_resource",
        "_subject",
        "_subject_type",
    )

    def __init__(
        self,
        token_url: str,
        *,
        subject_token: Source,
        subject_token_type: str,
        actor_token: Source | None = None,
        actor_token_type: str | None = None,
        requested_token_type: str | None = None,
        audience: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        scope: str | Sequence[str] | None = None,
        extra_params: Mapping[str, str] | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        super().__init__(token_url, scope=scope, allow_insecure_http=allow_insecure_http)
        self._subject_type = token_type_uri("subject_token_type", subject_token_type)
        self._subject = AssertionNeed(
            "subject_token",
            as_source(subject_token, "subject_token"),
            self._token_url,
            jwt_required=self._subject_type in _JWT_TYPES,
        )
        if (actor_token is None) != (actor_token_type is None):
            raise ConfigurationError(
                "actor_token and actor_token_type go together (RFC 8693 §2.1): pass both, "
                "or neither"
            )
        self._actor: AssertionNeed | None = None
        self._actor_type: str | None = None
        if actor_token is not None:
            self._actor_type = token_type_uri("actor_token_type", actor_token_type)
            self._actor = AssertionNeed(
                "actor_token",
                as_source(actor_token, "actor_token"),
                self._token_url,
                jwt_required=self._actor_type in _JWT_TYPES,
            )
        self._requested_type = (
            None
            if requested_token_type is None
            else token_type_uri("requested_token_type", requested_token_type)
        )
        self._audience = normalize_multi("audience", audience)
        self._resource = normalize_multi("resource", resource)
        self._client_id, self._client_auth, self._authenticator = _client_auth_for(
            client_id, client_secret, client_auth, self._token_url
        )
        for need in self._own_needs():
            need.source.check(jwt_required=need.jwt_required)
        self._form: Form = (
            *(
                ()
                if self._requested_type is None
                else (("requested_token_type", self._requested_type),)
            ),
            *(("audience", a) for a in self._audience),
            *(("resource", r) for r in self._resource),
            *self._scope_form(),
            *normalize_extra_params(extra_params, _EXCHANGE_PARAMS),
        )

    @classmethod
    def from_issuer(
        cls,
        issuer: str,
        /,
        *,
        subject_token: Source,
        subject_token_type: str,
        actor_token: Source | None = None,
        actor_token_type: str | None = None,
        requested_token_type: str | None = None,
        audience: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        scope: str | Sequence[str] | None = None,
        extra_params: Mapping[str, str] | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
        allow_insecure_http: bool = False,
        allowed_issuers: str | Sequence[str] | None = None,
        resource_discovery: bool = True,
    ) -> TokenExchangeGrant:
        """The token exchange at the authorization server whose issuer identifier is ``issuer``.

        Every keyword is the constructor's, checked now, with no I/O. TokenAuth
        reads the metadata on first need: the token endpoint, and the client
        authentication as in ``ClientCredentials.from_issuer`` (with only a
        ``client_secret``, the strongest method the server lists). The subject
        and actor token sources are told the issuer as the audience (the
        constructor tells them the token URL, which is not known yet): the
        configured one, or another allowed one a protected resource named.
        ``allowed_issuers`` and ``resource_discovery`` are as there.
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
        grant = cls(
            discovered.issuer,  # stands in for the token URL until the metadata names it
            subject_token=subject_token,
            subject_token_type=subject_token_type,
            actor_token=actor_token,
            actor_token_type=actor_token_type,
            requested_token_type=requested_token_type,
            audience=audience,
            resource=resource,
            scope=scope,
            extra_params=extra_params,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            allow_insecure_http=discovered.allow_insecure_http,
        )
        grant._discovered = discovered
        return grant

    def _resolve(self, metadata: ServerMetadata, resource: str | None) -> TokenExchangeGrant:
        new = completed(self, metadata, resource, self._client_id)
        if resource is not None:
            new._resource = (resource,)
        # Sources are told the issuer in use: another allowed one, if a protected resource
        # named it, is the one its metadata came from.
        new._subject = replace(self._subject, audience=metadata.issuer)
        if self._actor is not None:
            new._actor = replace(self._actor, audience=metadata.issuer)
        return new

    @property
    def subject_token_type(self) -> str:
        return self._subject_type

    @property
    def actor_token_type(self) -> str | None:
        return self._actor_type

    @property
    def requested_token_type(self) -> str | None:
        return self._requested_type

    @property
    def client_id(self) -> str | None:
        return self._client_id

    def _own_needs(self) -> tuple[AssertionNeed, ...]:
        return (self._subject,) if self._actor is None else (self._subject, self._actor)

    def assertion_sources(self) -> tuple[AssertionNeed, ...]:
        """The subject token, the actor token if any, and a ClientAssertion's source if any."""
        return (*self._own_needs(), *needs_of(self._authenticator))

    def cache_identity(self) -> tuple[str, ...]:
        """SPEC F1: everything sent, each source by name; never a token. Configured by
        issuer: the issuer (and the others allowed) in place of the token URL."""
        actor: tuple[str, ...] = ()
        if self._actor is not None:
            actor = (f"actor_token_type={self._actor_type}", *self._source_identity(self._actor))
        discovered = self._discovered
        return (
            TOKEN_EXCHANGE_GRANT_TYPE,
            *((self._token_url,) if discovered is None else discovered_identity(discovered)),
            f"subject_token_type={self._subject_type}",
            *self._source_identity(self._subject),
            *actor,
            *form_identity(self._form),
            *(
                identity_of(self._authenticator)
                if discovered is None
                else auth_identity(discovered, self._client_id, self._authenticator)
            ),
        )

    @staticmethod
    def _source_identity(need: AssertionNeed) -> tuple[str, ...]:
        return (need.name, *need.source.identity(need.audience))

    def token_request(self, now: float) -> TokenRequest:
        """The request at ``now``, each source read once, blocking (a request built by hand:
        TokenAuth reads them through its program and calls ``token_request_with``)."""
        return self.token_request_with(now, read_now(self.assertion_sources(), now))

    def token_request_with(self, now: float, assertions: Mapping[str, str]) -> TokenRequest:
        """SPEC A2: the subject (and actor) token read for this request, and its type."""
        grant: Form = (
            ("grant_type", TOKEN_EXCHANGE_GRANT_TYPE),
            ("subject_token", assertions["subject_token"]),
            ("subject_token_type", self._subject_type),
        )
        if self._actor is not None and self._actor_type is not None:
            grant += (
                ("actor_token", assertions["actor_token"]),
                ("actor_token_type", self._actor_type),
            )
        return self._build(grant + self._form, self._authenticator, now, assertions)

    def parse_response(
        self, response: RawResponse, *, received_at: float, dpop: bool = False
    ) -> Token:
        """RFC 8693 §2.2: ``issued_token_type`` kept, ``N_A`` understood, ``invalid_target``
        typed (InvalidTargetError); ``dpop`` as for Grant.parse_response."""
        try:
            return parse_token_response(
                response,
                received_at=received_at,
                requested_scope=self._scope,
                token_exchange=True,
                dpop=dpop,
            )
        except TokenEndpointError as exc:
            if exc.error != "invalid_target" or isinstance(exc, InvalidTargetError):
                raise
            target = InvalidTargetError(
                f"{exc} (the audience or resource asked for: "
                f"{', '.join((*self._audience, *self._resource)) or 'none given'})",
                status_code=exc.status_code,
                error=exc.error,
                error_description=exc.error_description,
                error_uri=exc.error_uri,
            )
            target.retry_after = exc.retry_after
            raise target from None

    def __repr__(self) -> str:
        where = (
            f"token_url={redacted_url(self._token_url)!r}"
            if self._discovered is None
            else f"issuer={self._discovered.issuer!r}"
        )
        parts = [
            where,
            f"subject_token={self._subject.source!r}",
            f"subject_token_type={self._subject_type!r}",
        ]
        if self._actor is not None:
            parts.append(f"actor_token={self._actor.source!r}")
            parts.append(f"actor_token_type={self._actor_type!r}")
        if self._requested_type is not None:
            parts.append(f"requested_token_type={self._requested_type!r}")
        if self._audience:
            parts.append(f"audience={list(self._audience)!r}")
        if self._resource:
            parts.append(f"resource={list(self._resource)!r}")
        if self._scope:
            parts.append(f"scope={' '.join(self._scope)!r}")
        if self._client_id is not None:
            parts.append(f"client_id={self._client_id!r}")
        if self._discovered is not None and self._discovered.client_auth is None:
            if self._discovered.client_secret is not None:
                parts.append("client_auth=<from the metadata>")
        elif self._client_auth is not None:
            parts.append(f"client_auth={self._client_auth!r}")
        return f"TokenExchangeGrant({', '.join(parts)})"
