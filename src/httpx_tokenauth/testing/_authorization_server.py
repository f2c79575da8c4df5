"""LocalAuthorizationServer: authlib's OAuth 2.0 authorization server, over TLS on 127.0.0.1.

The OAuth logic is authlib's, not ours: its RFC 6749 AuthorizationServer (the
Flask integration), its client-credentials grant, its RFC 7523 JWT-bearer
grant, and its client authentication (``client_secret_basic`` and
``client_secret_post`` built in, ``client_secret_jwt`` and ``private_key_jwt``
by its ``JWTBearerClientAssertion``). What this module adds is the glue an
authlib application has to write anyway (a client registry, key lookup, a
jti replay cache, a token generator), a werkzeug HTTPS server in a thread,
and a record of every token request served.

Assertions are verified with every JWS algorithm httpx-tokenauth signs with
(ASSERTION_ALGORITHMS). Left to itself, authlib verifies them with joserfc's
"recommended" algorithms only (HS256, RS256, ES256) and refuses the others
as "not recommended"; so the two places where authlib decodes an assertion
are repeated here with a joserfc registry that allows them all.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, TypeAlias

import flask
import jwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import BaseGrant, ClientCredentialsGrant, TokenEndpointMixin
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion, JWTBearerGrant
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwk, jws
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwa import EdDSAAlgorithm, JWSAlgModel
from joserfc.jws import JWSRegistry
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from ._ca import LocalCA

__all__ = [
    "ASSERTION_ALGORITHMS",
    "AUTH_METHODS",
    "CLIENT_CREDENTIALS",
    "FEDERATED_JWT",
    "JWT_BEARER",
    "TOKEN_EXCHANGE",
    "LocalAuthorizationServer",
    "PublicKeyInput",
    "TokenRequestRecord",
]

logger = logging.getLogger("httpx_tokenauth.testing")

CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: RFC 8693 token exchange.
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
#: The client authentication method recorded for a client assertion issued by a trusted
#: external issuer (a platform token: RFC 7521 §4.2 with a federated credential).
FEDERATED_JWT = "federated_jwt"
_CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: RFC 8693 §3 token type identifiers.
_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:"
_ACCESS_TOKEN_TYPE = _TOKEN_TYPE + "access_token"
_JWT_TYPE = _TOKEN_TYPE + "jwt"
_ID_TOKEN_TYPE = _TOKEN_TYPE + "id_token"
#: The client authentication methods the server knows, in the order it tries them.
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt")
#: The JWS algorithms accepted in client assertions (HS* for client_secret_jwt, the
#: others for private_key_jwt) and JWT-bearer assertions: every one httpx-tokenauth
#: signs with. ``none`` never.
ASSERTION_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "HS256",
    "HS384",
    "HS512",
)

#: A client's public key (RSA, EC or Ed25519): PEM, a cryptography key (private keys
#: give their public half), or a JWK dict.
PublicKeyInput: TypeAlias = "str | bytes | Mapping[str, Any] | Any"

#: The longest a held token response waits for ``hold_token_responses`` to end.
HOLD_LIMIT = 30.0
#: Clock skew authlib allows when checking assertion times.
ASSERTION_LEEWAY = 60


class _EdDSA(EdDSAAlgorithm):
    """EdDSA (RFC 8037), without joserfc's warning that RFC 9864 deprecates the name
    in favour of "Ed25519": "EdDSA" is what clients send today (httpx-tokenauth
    and pyjwt among them), and a warning from the server's thread would land in
    the caller's test run (as an error, under ``-W error``)."""

    security_warning = None  # type: ignore[assignment]  # joserfc's model allows None


class _AssertionRegistry(JWSRegistry):
    """joserfc's JWS registry, with the quiet EdDSA."""

    algorithms: dict[str, JWSAlgModel] = {  # noqa: RUF012  (joserfc's own class attribute)
        **JWSRegistry.algorithms,
        "EdDSA": _EdDSA(),
    }


def _assertion_registry() -> JWSRegistry:
    """A registry that allows exactly ASSERTION_ALGORITHMS (not only joserfc's recommended)."""
    return _AssertionRegistry(algorithms=ASSERTION_ALGORITHMS)


@dataclass(frozen=True)
class TokenRequestRecord:
    """One token request the server answered, as the server saw it."""

    #: ``grant_type`` as sent.
    grant_type: str | None
    #: The client the token was issued to (or that authenticated), if any.
    client_id: str | None
    #: The client authentication method authlib accepted; None when the request
    #: carried none (the JWT-bearer grant without client authentication) or failed.
    auth_method: str | None
    status_code: int
    #: The OAuth error code of an error response.
    error: str | None
    #: The scope granted.
    scope: str | None
    #: The subjectAltName values of the TLS client certificate, if one was presented.
    client_cert_identities: tuple[str, ...]
    access_token: str | None = field(default=None, repr=False)
    #: The ``sub`` of a federated client assertion, or of a token exchange's subject token.
    subject: str | None = None
    #: The ``sub`` of a token exchange's actor token.
    actor: str | None = None
    #: A token exchange's ``issued_token_type``.
    issued_token_type: str | None = None
    #: The RFC 8707 ``resource`` values of the request (they become the token's ``aud``).
    resource: tuple[str, ...] = ()


class _Client(ClientMixin):  # type: ignore[misc]
    """authlib's client model: what the server knows about one registered client."""

    def __init__(
        self,
        client_id: str,
        *,
        secret: str | None,
        keys: jwk.KeySet | None,
        auth_methods: frozenset[str],
        grant_types: frozenset[str],
        scope: str,
        subjects: frozenset[str] | None,
    ) -> None:
        self.client_id = client_id
        self.secret = secret
        self.keys = keys
        self.auth_methods = auth_methods
        self.grant_types = grant_types
        self.scope = scope
        self.subjects = subjects

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """No scope asked: everything the client may have. Anything it may not: None,
        which authlib answers with ``invalid_scope``."""
        allowed = self.scope.split()
        if not scope:
            return " ".join(allowed)
        requested = scope.split()
        if not set(requested) <= set(allowed):
            return None
        return " ".join(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and hmac.compare_digest(
            self.secret.encode(), client_secret.encode()
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # FEDERATED_JWT is only ever returned for a client with a federated credential.
        return endpoint == "token" and (method in self.auth_methods or method == FEDERATED_JWT)

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True)
class _User:
    """The resource owner a JWT-bearer assertion names in ``sub``."""

    subject: str

    def get_user_id(self) -> str:
        return self.subject


class _OAuthServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's Flask AuthorizationServer, noting which client authenticated and how."""

    local: LocalAuthorizationServer

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        client = super().authenticate_client(request, methods, endpoint)
        flask.g.auth_method = request.auth_method
        flask.g.client_id = client.client_id
        return client


class _ClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*AUTH_METHODS, FEDERATED_JWT]


class _JWTBearerGrant(JWTBearerGrant):  # type: ignore[misc]
    """authlib's RFC 7523 §2.1 grant. The assertion's ``iss`` is a registered client id.

    authlib's grant does not look at client authentication; RFC 7523 §3.1
    makes it optional, so when the request carries client credentials they
    are checked with authlib's client authentication, like any other grant's.
    """

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*AUTH_METHODS, FEDERATED_JWT]
    LEEWAY = ASSERTION_LEEWAY

    def validate_token_request(self) -> None:
        if _carries_client_credentials(self.request):
            client = self.authenticate_token_endpoint_client()
            if not client.check_grant_type(self.GRANT_TYPE):
                raise UnauthorizedClientError(
                    f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'"
                )
        super().validate_token_request()

    def resolve_issuer_client(self, issuer: str) -> _Client | None:
        local: LocalAuthorizationServer = self.server.local
        return local._client(issuer)

    def resolve_client_public_key(self, client: _Client) -> jwk.KeySet:
        if client.keys is None:
            raise InvalidClientError(description="The client has no registered public key.")
        return client.keys

    def authenticate_user(self, subject: str) -> _User:
        return _User(subject)

    def has_granted_permission(self, client: _Client, user: _User) -> bool:
        return client.subjects is None or user.subject in client.subjects

    def get_audiences(self) -> list[str]:
        local: LocalAuthorizationServer = self.server.local
        return local._audiences()

    def process_assertion_claims(self, assertion: str) -> Any:
        """authlib's, step for step, verifying with every algorithm of ASSERTION_ALGORITHMS."""
        _header, claims = self.extract_assertion(assertion)
        issuer = claims.get("iss")
        if not isinstance(issuer, str):
            raise InvalidGrantError(description="Missing or invalid claim: 'iss'")
        client = self.resolve_issuer_client(issuer)
        if not client:
            raise InvalidGrantError(description="The client does not exist on this server.")
        key = self.resolve_client_public_key(client)
        try:
            token = jose_jwt.decode(assertion, key, registry=_assertion_registry())
        except JoseError as exc:
            raise InvalidGrantError(description=exc.description) from exc
        except ValueError:
            raise InvalidGrantError(description="Invalid JWT assertion") from None
        self.verify_claims(token.claims)
        return token.claims


class _ClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
    """authlib's RFC 7523 §2.2 client authentication, as ``client_secret_jwt`` (HMAC with
    the client secret) or ``private_key_jwt`` (the client's registered public keys).

    Both methods send the same form fields; the assertion's ``alg`` says which
    one it is, so each instance steps aside for the other's assertions.
    """

    def __init__(self, method: str, local: LocalAuthorizationServer) -> None:
        super().__init__(validate_jti=True, leeway=ASSERTION_LEEWAY)
        self.CLIENT_AUTH_METHOD = method
        self._local = local

    def __call__(self, query_client: Any, request: Any) -> Any:
        assertion = request.form.get("client_assertion")
        if assertion and _assertion_alg(assertion).startswith("HS") != self._is_secret_jwt:
            return None
        if assertion and self._local._trusted(_unverified_claims(assertion).get("iss")):
            return None  # an external issuer's: _FederatedAssertion's to check
        return super().__call__(query_client, request)

    @property
    def _is_secret_jwt(self) -> bool:
        return bool(self.CLIENT_AUTH_METHOD == "client_secret_jwt")

    def get_audiences(self) -> list[str]:
        return self._local._audiences()

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        """authlib's, verifying with every algorithm of ASSERTION_ALGORITHMS."""
        try:
            token = jose_jwt.decode(assertion, resolve_key, registry=_assertion_registry())
        except JoseError as exc:
            raise InvalidClientError(description=exc.description) from exc
        self.verify_claims(token.claims)
        return token.claims

    def validate_jti(self, claims: Mapping[str, Any], jti: str) -> bool:
        return self._local._first_use(str(claims["sub"]), jti)

    def resolve_client_public_key(self, client: _Client) -> jwk.Key | jwk.KeySet:
        if self._is_secret_jwt:
            if client.secret is None:
                raise InvalidClientError(description="The client has no client secret.")
            key: jwk.OctKey = jwk.OctKey.import_key(client.secret.encode())
            return key
        if client.keys is None:
            raise InvalidClientError(description="The client has no registered public key.")
        return client.keys


class _FederatedAssertion:
    """Client authentication with a JWT an external issuer signed (RFC 7521 §4.2): what
    Entra ID calls a federated identity credential and Keycloak federated client
    authentication. The assertion's ``iss`` is a trusted issuer, its (``iss``, ``sub``)
    pair is federated to one client, and it is verified with the issuer's JWKS: signature,
    ``aud``, ``exp`` and ``nbf`` (no leeway). Its ``jti`` may repeat: a platform token is
    reused until the platform rotates it."""

    def __init__(self, local: LocalAuthorizationServer) -> None:
        self._local = local

    def __call__(self, query_client: Any, request: Any) -> Any:
        form = request.form
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") != _CLIENT_ASSERTION_TYPE or not assertion:
            return None
        issuer = _unverified_claims(assertion).get("iss")
        trust = self._local._trusted(issuer)
        if trust is None:
            return None
        claims = trust.verify(assertion, self._local, InvalidClientError)
        client_id = self._local._federated_client(str(issuer), str(claims.get("sub")))
        if client_id is None:
            raise InvalidClientError(
                description="No federated credential for this issuer and subject."
            )
        if form.get("client_id") not in (None, client_id):
            raise InvalidClientError(
                description="The assertion's subject is federated to another client."
            )
        client = query_client(client_id)
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        flask.g.subject = claims.get("sub")
        return client


class _InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8693 §2.2.2 / RFC 8707 §2: the audience or resource is not one this server serves."""

    error = "invalid_target"


class _TokenExchangeGrant(BaseGrant, TokenEndpointMixin):  # type: ignore[misc]
    """RFC 8693 §2: a subject token (and optional actor token) from a trusted issuer, or one
    this server issued, exchanged for a token for an audience this server serves.

    Client authentication is optional (§2.1); when the request carries client
    credentials they are checked like any grant's. Invalid subject or actor
    tokens are ``invalid_request`` (§2.2.2); an audience or resource outside
    ``exchange_targets`` is ``invalid_target``. ``requested_token_type`` may be
    access_token (the default) or jwt (both issued as Bearer access tokens), or
    id_token (issued with ``token_type`` N_A: not an access token).
    """

    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [*AUTH_METHODS, FEDERATED_JWT]

    def validate_token_request(self) -> None:
        local: LocalAuthorizationServer = self.server.local
        form = flask.request.form
        client = None
        if _carries_client_credentials(self.request):
            client = self.authenticate_token_endpoint_client()
            if not client.check_grant_type(self.GRANT_TYPE):
                raise UnauthorizedClientError(
                    f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'"
                )
        elif form.get("client_id"):
            client = local._client(str(form["client_id"]))
            if client is None:
                raise InvalidClientError(description="The client does not exist on this server.")
        subject, subject_type = form.get("subject_token"), form.get("subject_token_type")
        if not subject or not subject_type:
            raise InvalidRequestError("Missing 'subject_token' or 'subject_token_type'.")
        self.subject_claims = local._verify_exchanged(subject, subject_type, "subject_token")
        actor, actor_type = form.get("actor_token"), form.get("actor_token_type")
        if bool(actor) != bool(actor_type):
            raise InvalidRequestError("'actor_token' and 'actor_token_type' go together.")
        self.actor_claims = (
            local._verify_exchanged(actor, actor_type, "actor_token")
            if actor and actor_type
            else None
        )
        requested = form.get("requested_token_type") or _ACCESS_TOKEN_TYPE
        if requested not in (_ACCESS_TOKEN_TYPE, _JWT_TYPE, _ID_TOKEN_TYPE):
            raise InvalidRequestError(f"Unsupported requested_token_type: {requested}")
        self.requested_type = requested
        targets = [*form.getlist("audience"), *form.getlist("resource")]
        unknown = [t for t in targets if t not in local.exchange_targets]
        if unknown:
            raise _InvalidTargetError(description=f"Unknown audience or resource: {unknown[0]}")
        self.audience = form.getlist("audience")[0] if form.getlist("audience") else None
        scope = self.request.payload.scope or ""
        if client is not None:
            allowed = client.get_allowed_scope(scope)
            if allowed is None:
                raise InvalidScopeError()
            scope = allowed
        self.scope = scope
        self.request.client = client

    def create_token_response(self) -> tuple[int, dict[str, Any], Any]:
        local: LocalAuthorizationServer = self.server.local
        body = local._exchange(
            client=self.request.client,
            subject=self.subject_claims,
            actor=self.actor_claims,
            requested_type=self.requested_type,
            audience=self.audience,
            scope=self.scope,
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER


@dataclass(frozen=True)
class _Trust:
    """An external issuer this server trusts: its keys and the audience its tokens name."""

    issuer: str
    keys: jwk.KeySet
    audience: str | None

    def verify(self, token: str, local: LocalAuthorizationServer, error: type[Any]) -> Any:
        """The claims of ``token``, verified (signature, iss, aud, exp, nbf); else ``error``."""
        audiences = [self.audience] if self.audience else local._audiences()
        try:
            decoded = jose_jwt.decode(token, self.keys, registry=_assertion_registry())
            jose_jwt.JWTClaimsRegistry(
                leeway=0,
                iss={"essential": True, "value": self.issuer},
                sub={"essential": True},
                aud={"essential": True, "values": audiences},
                exp={"essential": True},
            ).validate(decoded.claims)
        except JoseError as exc:
            raise error(
                description=f"Untrusted token from {self.issuer}: {exc.description}"
            ) from exc
        except ValueError:
            raise error(description="The token is not a signed JWT.") from None
        return decoded.claims


def _unverified_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, NOT verified (to find out who claims to have issued it); {} if none."""
    try:
        claims = json.loads(jws.extract_compact(token.encode()).payload)
    except Exception:
        return {}
    return claims if isinstance(claims, dict) else {}


def _assertion_alg(assertion: str) -> str:
    try:
        return str(jws.extract_compact(assertion.encode()).headers().get("alg", ""))
    except Exception:
        return ""


def _carries_client_credentials(request: Any) -> bool:
    form = request.form
    return bool(
        request.headers.get("Authorization")
        or form.get("client_secret")
        or form.get("client_assertion")
    )


class _RequestHandler(WSGIRequestHandler):
    """werkzeug's handler, logging to our logger at DEBUG instead of stderr."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("authorization server %s: " + message, type, *args)


class _HTTPServer(ThreadedWSGIServer):
    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        # Headers and body go out in separate writes: without this, Nagle's
        # algorithm holds the body back for the client's delayed ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("authorization server %s: " + message, type, *args)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("authorization server: connection error", exc_info=True)


class LocalAuthorizationServer:
    """A real OAuth 2.0 authorization server (authlib) on ``https://127.0.0.1:<free port>``.

    Grants: client credentials (RFC 6749 §4.4), JWT bearer (RFC 7523 §2.1) and
    token exchange (RFC 8693).
    Client authentication: ``client_secret_basic``, ``client_secret_post``,
    ``client_secret_jwt`` (HS256, HS384, HS512) and ``private_key_jwt``.
    Assertions, for ``private_key_jwt`` and the JWT-bearer grant, may be signed
    with RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA
    (ASSERTION_ALGORITHMS: every algorithm httpx-tokenauth signs with), by a
    registered RSA, EC or Ed25519 public key. Assertions must name the token URL
    or the issuer (the server's base URL) as ``aud``; their ``jti`` may be used
    once. The JWT-bearer assertion's ``iss`` is a registered client id.

    Secretless credentials: ``trust_issuer(issuer, jwks, client_id=...,
    subject=...)`` makes it trust JWTs an external issuer signs (a platform:
    Kubernetes, GitHub Actions, SPIFFE; see LocalIssuer) as client assertions
    for that client (``FEDERATED_JWT``), and as subject and actor tokens of
    RFC 8693 token exchanges (``TOKEN_EXCHANGE``), which may ask for an
    ``audience`` or ``resource`` in ``exchange_targets`` and a
    ``requested_token_type`` of access_token, jwt or id_token (issued as
    ``N_A``). Token records then carry the ``subject``, ``actor`` and
    ``issued_token_type``.

    Access tokens are ES256 JWTs (``typ: at+jwt``) with ``iss``, ``sub`` (the
    client id, or the assertion's subject), ``aud`` (``audience``, or the
    RFC 8707 ``resource`` the request named), ``client_id``, ``scope``,
    ``iat`` and ``exp`` (seconds, with fractions) and ``jti``, signed with a
    key made for this server (``public_key``, also served at ``/jwks``), and
    ``expires_in`` is ``token_lifetime``.

    Its metadata (RFC 8414) is served at ``/.well-known/oauth-authorization-server``
    and, the same document, at ``/.well-known/openid-configuration``;
    ``metadata_overrides`` changes fields of it, ``metadata_requests`` lists
    what was fetched.

    The TLS certificate comes from ``ca``. The server asks for an optional
    client certificate and records the identities of any it gets.

    Use it as a context manager (``with LocalAuthorizationServer(ca) as server``)
    or call ``start()`` / ``stop()``; either way it listens before ``start``
    returns. ``token_requests`` lists every token request served.
    """

    def __init__(
        self,
        ca: LocalCA,
        *,
        token_lifetime: int = 3600,
        audience: str = "local-api",
        request_client_cert: bool = True,
    ) -> None:
        self._ca = ca
        self._default_lifetime = _check_lifetime(token_lifetime)
        self._token_lifetime = self._default_lifetime
        self.audience = audience
        self._request_client_cert = request_client_cert
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        self.key_id = secrets.token_hex(8)
        self._clients: dict[str, _Client] = {}
        self._trusts: dict[str, _Trust] = {}
        self._federations: dict[tuple[str, str], str] = {}
        #: The ``audience`` and ``resource`` values a token exchange may ask for
        #: (``invalid_target`` otherwise): this server's access token audience, to begin with.
        self.exchange_targets: set[str] = {audience}
        self._records: list[TokenRequestRecord] = []
        self._metadata_requests: list[str] = []
        #: Fields that replace (or, set to None, remove) those of the metadata documents
        #: served from now on, e.g. ``{"token_endpoint_auth_methods_supported": [...]}``.
        self.metadata_overrides: dict[str, Any] = {}
        self._arrivals = 0
        self._seen_jtis: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._release = threading.Event()
        self._release.set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._app = self._make_app()

    # -- configuration ---------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        public_keys: Mapping[str, PublicKeyInput] | None = None,
        auth_methods: Iterable[str] = AUTH_METHODS,
        grant_types: Iterable[str] = (CLIENT_CREDENTIALS, JWT_BEARER),
        scope: str = "",
        subjects: Iterable[str] | None = None,
    ) -> None:
        """Register (or replace) a client.

        ``secret`` serves ``client_secret_basic``, ``client_secret_post`` and
        ``client_secret_jwt``; ``public_keys`` (key id to public key) serve
        ``private_key_jwt`` and the client's JWT-bearer assertions. A JWT
        whose header has no ``kid`` is checked against the only key, so
        register one key or send ``kid``. ``auth_methods`` and ``grant_types``
        limit what the client may use. ``scope`` is the space-separated scopes
        it may get (all of them when it asks for none). ``subjects`` limits the
        ``sub`` its JWT-bearer assertions may name (None: any).
        """
        methods = frozenset(auth_methods)
        unknown = methods - set(AUTH_METHODS)
        if unknown:
            raise ValueError(f"unknown client authentication methods: {sorted(unknown)}")
        keys = None
        if public_keys:
            keys = jwk.KeySet([_import_public_key(k, kid) for kid, k in public_keys.items()])
        client = _Client(
            client_id,
            secret=secret,
            keys=keys,
            auth_methods=methods,
            grant_types=frozenset(grant_types),
            scope=scope,
            subjects=None if subjects is None else frozenset(subjects),
        )
        with self._lock:
            self._clients[client_id] = client

    def trust_issuer(
        self,
        issuer: str,
        jwks: Mapping[str, Any],
        *,
        audience: str | None = None,
        client_id: str | None = None,
        subject: str | None = None,
    ) -> None:
        """Trust JWTs that ``issuer`` signs with a key of ``jwks`` (a JWKS: ``{"keys": [...]}``).

        They are then accepted as RFC 8693 subject and actor tokens (types jwt,
        id_token or access_token). With ``client_id``, a client assertion from
        ``issuer`` whose ``sub`` is ``subject`` authenticates that registered
        client (a federated credential; ``FEDERATED_JWT`` in the records), the
        way Entra ID and Keycloak trust Kubernetes or GitHub Actions tokens.
        Their ``aud`` must be ``audience`` (default: the token URL or the
        issuer identifier of this server); signature, ``exp`` and ``nbf`` are
        checked with no leeway; the ``jti`` may repeat. Calling it again for an
        issuer replaces its keys and audience and adds the federation.
        """
        keys = jwk.KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
        with self._lock:
            self._trusts[issuer] = _Trust(issuer, keys, audience)
            if client_id is not None:
                if subject is None:
                    raise ValueError("a federated credential names the subject: pass subject=")
                self._federations[(issuer, subject)] = client_id

    @property
    def token_lifetime(self) -> int:
        """``expires_in`` of the tokens issued from now on, in seconds; ``reset()`` restores it."""
        return self._token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        self._token_lifetime = _check_lifetime(seconds)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The key that verifies the access tokens this server issues (ES256)."""
        return self._signing_key.public_key()

    # -- addresses -------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The server's base URL, ``https://127.0.0.1:<port>``: its issuer identifier."""
        if self._base_url is None:
            raise RuntimeError("the authorization server is not running: call start() first")
        return self._base_url

    @property
    def token_url(self) -> str:
        """The token endpoint, ``https://127.0.0.1:<port>/token``."""
        return f"{self.issuer}/token"

    # -- what the server saw ---------------------------------------------------------

    @property
    def token_requests(self) -> list[TokenRequestRecord]:
        """Every token request served since the last ``reset()``, in order."""
        with self._lock:
            return list(self._records)

    @property
    def token_request_count(self) -> int:
        """How many token requests the server has served since the last ``reset()``."""
        with self._lock:
            return len(self._records)

    @property
    def metadata_requests(self) -> list[str]:
        """The paths of the metadata documents served since the last ``reset()``, in order."""
        with self._lock:
            return list(self._metadata_requests)

    def issued_tokens(self) -> list[str]:
        """The access tokens issued since the last ``reset()``, in order."""
        return [r.access_token for r in self.token_requests if r.access_token]

    def wait_for_token_requests(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` token requests have arrived (served or held).

        Raises TimeoutError after ``timeout`` seconds.
        """
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._arrivals >= count, timeout):
                raise TimeoutError(
                    f"{self._arrivals} token request(s) arrived within {timeout} s, "
                    f"expected {count}"
                )

    @contextmanager
    def hold_token_responses(self) -> Iterator[None]:
        """Within this block, token requests are received but not answered.

        For tests that need many callers to be waiting for the same token at
        once. Answers go out when the block ends, at ``release_token_responses()``,
        or after HOLD_LIMIT seconds, whichever comes first.
        """
        self._release.clear()
        try:
            yield
        finally:
            self._release.set()

    def release_token_responses(self) -> None:
        """Answer the token requests held by ``hold_token_responses``, and any that follow."""
        self._release.set()

    def reset(self) -> None:
        """Forget the requests seen and restore ``token_lifetime``; clients stay registered."""
        with self._lock:
            self._records.clear()
            self._metadata_requests.clear()
            self._arrivals = 0
        self._token_lifetime = self._default_lifetime
        self.metadata_overrides = {}
        self._release.set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and serve from a thread; ready on return."""
        if self._httpd is not None:
            raise RuntimeError("the authorization server is already running")
        httpd = _HTTPServer(
            "127.0.0.1",
            0,
            self._app,
            handler=_RequestHandler,
            ssl_context=self._ca.server_context(request_client_cert=self._request_client_cert),
        )
        # The socket is bound and listening now: connections queue until the
        # thread accepts them, so the server is ready without waiting.
        self._httpd = httpd
        self._base_url = f"https://127.0.0.1:{httpd.server_port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"LocalAuthorizationServer:{httpd.server_port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket. Safe to call more than once."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        self._release.set()
        if httpd is None:
            return
        httpd.shutdown()
        if thread is not None:
            thread.join()
        httpd.server_close()

    def __enter__(self) -> LocalAuthorizationServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._base_url if self._httpd is not None else "stopped"
        return f"<LocalAuthorizationServer {where}>"

    # -- the Flask app ---------------------------------------------------------------

    def _make_app(self) -> flask.Flask:
        app = flask.Flask("httpx_tokenauth.testing")
        oauth = _OAuthServer(app, query_client=self._client, save_token=_discard)
        oauth.local = self
        oauth.register_token_generator(
            "default",
            BearerTokenGenerator(self._mint_access_token, expires_generator=self._expires_in),
        )
        oauth.register_grant(_ClientCredentialsGrant)
        oauth.register_grant(_JWTBearerGrant)
        oauth.register_grant(_TokenExchangeGrant)
        for method in ("client_secret_jwt", "private_key_jwt"):
            oauth.register_client_auth_method(method, _ClientAssertion(method, self))
        oauth.register_client_auth_method(FEDERATED_JWT, _FederatedAssertion(self))

        def token() -> flask.Response:
            return self._token_endpoint(oauth)

        def jwks() -> flask.Response:
            return flask.jsonify({"keys": [self._public_jwk()]})

        def metadata() -> flask.Response:
            with self._lock:
                self._metadata_requests.append(flask.request.path)
            return flask.jsonify(self._metadata())

        app.add_url_rule("/token", "token", token, methods=["POST"])
        app.add_url_rule("/jwks", "jwks", jwks, methods=["GET"])
        # RFC 8414 §3 and OpenID Connect Discovery 1.0 §4: the same document at both.
        app.add_url_rule(
            "/.well-known/oauth-authorization-server", "metadata", metadata, methods=["GET"]
        )
        app.add_url_rule("/.well-known/openid-configuration", "openid", metadata, methods=["GET"])
        return app

    def _token_endpoint(self, oauth: _OAuthServer) -> flask.Response:
        with self._arrived:
            self._arrivals += 1
            self._arrived.notify_all()
        self._release.wait(HOLD_LIMIT)
        response: flask.Response = oauth.create_token_response()
        body = response.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        record = TokenRequestRecord(
            grant_type=flask.request.form.get("grant_type"),
            client_id=flask.g.get("client_id"),
            auth_method=flask.g.get("auth_method"),
            status_code=response.status_code,
            error=body.get("error"),
            scope=body.get("scope"),
            client_cert_identities=_client_cert_identities(flask.request.environ),
            access_token=body.get("access_token"),
            subject=flask.g.get("subject"),
            actor=flask.g.get("actor"),
            issued_token_type=body.get("issued_token_type"),
            resource=tuple(flask.request.form.getlist("resource")),
        )
        with self._lock:
            self._records.append(record)
        return response

    def _mint_access_token(
        self, *, client: _Client, grant_type: str, user: _User | None, scope: str
    ) -> str:
        lifetime = self._token_lifetime
        flask.g.lifetime = lifetime
        flask.g.client_id = client.client_id
        now = time.time()
        # RFC 8707 §2: a token requested for resources is for them (its audience).
        resources = flask.request.form.getlist("resource")
        audience: str | list[str] = self.audience
        if resources:
            audience = resources[0] if len(resources) == 1 else resources
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.subject if user is not None else client.client_id,
            "aud": audience,
            "client_id": client.client_id,
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        if scope:
            claims["scope"] = scope
        return jwt.encode(
            claims,
            self._signing_key,
            algorithm="ES256",
            headers={"typ": "at+jwt", "kid": self.key_id},
        )

    def _expires_in(self, client: _Client, grant_type: str) -> int:
        return int(flask.g.get("lifetime", self._token_lifetime))

    def _client(self, client_id: str) -> _Client | None:
        with self._lock:
            return self._clients.get(client_id)

    def _audiences(self) -> list[str]:
        return [self.token_url, self.issuer]

    def _first_use(self, client_id: str, jti: str) -> bool:
        with self._lock:
            if (client_id, jti) in self._seen_jtis:
                return False
            self._seen_jtis.add((client_id, jti))
            return True

    def _trusted(self, issuer: object) -> _Trust | None:
        with self._lock:
            return self._trusts.get(issuer) if isinstance(issuer, str) else None

    def _federated_client(self, issuer: str, subject: str) -> str | None:
        with self._lock:
            return self._federations.get((issuer, subject))

    def _verify_exchanged(self, token: str, token_type: str, field_name: str) -> Any:
        """A subject or actor token's claims: a trusted issuer's JWT, or an access token this
        server issued; ``invalid_request`` otherwise (RFC 8693 §2.2.2)."""
        if token_type not in (_JWT_TYPE, _ID_TOKEN_TYPE, _ACCESS_TOKEN_TYPE):
            raise InvalidRequestError(f"Unsupported {field_name}_type: {token_type}")
        issuer = _unverified_claims(token).get("iss")
        if issuer == self._base_url:
            try:
                return jwt.decode(
                    token, self.public_key, algorithms=["ES256"], audience=self.audience
                )
            except jwt.InvalidTokenError as exc:
                raise InvalidRequestError(f"Invalid {field_name}: {exc}") from None
        trust = self._trusted(issuer)
        if trust is None:
            raise InvalidRequestError(f"The {field_name} is not from a trusted issuer.")
        return trust.verify(token, self, InvalidRequestError)

    def _exchange(
        self,
        *,
        client: _Client | None,
        subject: Mapping[str, Any],
        actor: Mapping[str, Any] | None,
        requested_type: str,
        audience: str | None,
        scope: str,
    ) -> dict[str, Any]:
        """The RFC 8693 §2.2.1 response: a token for ``subject``, acting ``actor`` if any."""
        lifetime = self._token_lifetime
        now = time.time()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject["sub"],
            "aud": audience or self.audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        if client is not None:
            claims["client_id"] = client.client_id
            flask.g.client_id = client.client_id
        if actor is not None:
            claims["act"] = {"sub": actor["sub"]}
            flask.g.actor = actor["sub"]
        if scope:
            claims["scope"] = scope
        flask.g.subject = subject["sub"]
        typ = "at+jwt" if requested_type == _ACCESS_TOKEN_TYPE else "JWT"
        token = jwt.encode(
            claims, self._signing_key, algorithm="ES256", headers={"typ": typ, "kid": self.key_id}
        )
        body: dict[str, Any] = {
            "access_token": token,
            "issued_token_type": requested_type,
            "token_type": "N_A" if requested_type == _ID_TOKEN_TYPE else "Bearer",
            "expires_in": lifetime,
        }
        if scope:
            body["scope"] = scope
        return body

    def _public_jwk(self) -> dict[str, Any]:
        key = _import_public_key(self.public_key, self.key_id)
        return {**key.as_dict(), "alg": "ES256", "use": "sig"}

    def _metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata, with ``metadata_overrides`` applied."""
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "jwks_uri": f"{self.issuer}/jwks",
            "grant_types_supported": [CLIENT_CREDENTIALS, JWT_BEARER, TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        }
        for name, value in dict(self.metadata_overrides).items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return document


def _discard(token: Any, request: Any) -> None:
    """authlib's save_token: the server keeps no token state (tokens are self-contained JWTs)."""


def _check_lifetime(seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise ValueError(f"token_lifetime must be a whole number of seconds >= 1, got {seconds!r}")
    return seconds


_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _import_public_key(key: PublicKeyInput, kid: str) -> jwk.Key:
    """A joserfc public key with ``kid``, from PEM, a cryptography key or a JWK dict."""
    if isinstance(key, Mapping):
        public = {k: v for k, v in key.items() if k not in _PRIVATE_JWK_MEMBERS | {"kid"}}
        return jwk.import_key(public, parameters={"kid": kid})
    loaded: Any = key
    if isinstance(loaded, (str, bytes)):
        data = loaded.encode() if isinstance(loaded, str) else loaded
        try:
            loaded = serialization.load_pem_private_key(data, password=None)
        except ValueError:
            loaded = serialization.load_pem_public_key(data)
    if isinstance(
        loaded, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
    ):
        loaded = loaded.public_key()
    if not isinstance(
        loaded, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)
    ):
        raise TypeError(
            f"unsupported key type {type(loaded).__name__}: use an RSA, EC or Ed25519 key"
        )
    pem = loaded.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    imported: jwk.Key
    if isinstance(loaded, rsa.RSAPublicKey):
        imported = jwk.RSAKey.import_key(pem, parameters={"kid": kid})
    elif isinstance(loaded, ec.EllipticCurvePublicKey):
        imported = jwk.ECKey.import_key(pem, parameters={"kid": kid})
    else:
        imported = jwk.OKPKey.import_key(pem, parameters={"kid": kid})
    return imported


def _client_cert_identities(environ: Mapping[str, Any]) -> tuple[str, ...]:
    sock = environ.get("werkzeug.socket")
    if not isinstance(sock, ssl.SSLSocket):
        return ()
    cert: Any = sock.getpeercert()
    if not cert:
        return ()
    return tuple(str(value) for _kind, value in cert.get("subjectAltName", ()))
