"""JWT assertions (RFC 7523): the JWT-bearer grant and JWT client authentication. No I/O.

* JWTBearerGrant (RFC 7523 §2.1, SPEC J1-J8) is a Grant: the token request
  carries ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and an
  ``assertion`` signed with the caller's private key.
* PrivateKeyJWT and ClientSecretJWT (RFC 7523 §2.2, OIDC Core §9, SPEC
  K1-K12) are ClientAuth methods: the request carries a ``client_assertion``
  signed with the client's private key or its client secret.

Keys are parsed and checked once, at construction (see _keys). Each token
request mints a new assertion from the ``now`` it is built at: a fresh
``iat``, an ``exp`` one lifetime later, and a new ``jti``, so no assertion is
ever sent twice, not on a retry and not on a refresh (SPEC J5, J8, K6).

pyjwt and cryptography are imported when a JWT class is constructed, not when
this module is: ``import httpx_tokenauth`` stays light.
"""

from __future__ import annotations

import copy
import json
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._client_auth import (
    Authenticator,
    ClientAuth,
    ClientSecretBasic,
    Credentials,
    check_client_id,
    check_secret,
    digest,
    identity_of,
)
from ._errors import AssertionSigningError, ConfigurationError, InvalidGrantError
from ._keys import (
    HMAC_ALGORITHMS,
    KeyConfigurationError,
    certificate_thumbprint,
    check_algorithm,
    hmac_key,
    load_signing_key,
)
from ._providers import (
    RESERVED_PARAMS,
    Grant,
    assertion_needs,
    auth_identity,
    completed,
    discovered_identity,
    form_identity,
)
from ._request import Form, TokenRequest, normalize_extra_params, normalize_multi
from ._token import RawResponse, Token
from ._url import redacted_url

if TYPE_CHECKING:
    from ._assertions import AssertionNeed
    from ._discovery import ServerMetadata
    from ._keys import CertificateInput, KeyInput, SigningKey

#: Private-key algorithms in the order one is chosen from a server's list when the key
#: fits several (an RSA key): RS256 first, as when no list is known (SPEC X9).
_PREFERENCE = (
    "RS256",
    "PS256",
    "RS384",
    "PS384",
    "RS512",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "DEFAULT_CLIENT_AUTH_LIFETIME",
    "DEFAULT_GRANT_LIFETIME",
    "JWT_BEARER_GRANT_TYPE",
    "MAX_LIFETIME",
    "RESERVED_CLAIMS",
    "ClientSecretJWT",
    "JWTBearerGrant",
    "PrivateKeyJWT",
    "default_jti",
]

JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: SPEC J5: a grant assertion lives five minutes unless told otherwise.
DEFAULT_GRANT_LIFETIME = 300
#: SPEC K7: a client assertion lives one minute unless told otherwise.
DEFAULT_CLIENT_AUTH_LIFETIME = 60
#: Longest lifetime accepted: an assertion is single-use, and servers such as
#: Google refuse ``exp`` more than an hour after ``iat``.
MAX_LIFETIME = 3600

#: Claims the library computes for each assertion; extra_claims may not set them.
RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti"})


def default_jti() -> str:
    """The default ``jti``: 128 random bits from the OS CSPRNG, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


class _Signer:
    """Mints assertions with one key and one algorithm. Holds the key; never shows it."""

    __slots__ = (
        "_algorithm",
        "_encode",
        "_extra",
        "_headers",
        "_jti",
        "_key",
        "_last_jti",
        "_lifetime",
    )

    def __init__(
        self,
        key: SigningKey | bytes,
        *,
        algorithm: str,
        headers: dict[str, str | None],
        lifetime: int,
        jti: Callable[[], str],
        extra_claims: Mapping[str, Any],
    ) -> None:
        import jwt  # noqa: PLC0415  (lazy: see the module docstring)

        self._encode = jwt.encode
        self._key = key
        self._algorithm = algorithm
        self._headers = headers
        self._lifetime = lifetime
        self._jti = jti
        self._last_jti: str | None = None
        self._extra = extra_claims

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def identity(self) -> tuple[str, ...]:
        """Algorithm, headers, extra claims and a digest of the (public) key: no secret."""
        key = self._key
        if isinstance(key, bytes):
            key_digest = digest(key)
        else:
            from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

            public = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            key_digest = digest(public)
        return (
            self._algorithm,
            key_digest,
            json.dumps(self._headers, sort_keys=True),
            json.dumps(self._extra, sort_keys=True, default=str),
        )

    def mint(self, now: float, *, issuer: str, subject: str, audience: str) -> str:
        """A new assertion: ``iat`` = ``now`` in whole seconds, ``exp`` one lifetime later."""
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise AssertionSigningError(
                f"cannot mint an assertion at time {now!r}: the clock must return a finite "
                "number of seconds, like time.time()"
            )
        try:
            jti = self._jti()
        except Exception as exc:
            raise AssertionSigningError(f"the jti generator failed: {type(exc).__name__}") from exc
        if not isinstance(jti, str):
            raise AssertionSigningError(
                f"the jti generator returned {type(jti).__name__}, not a string"
            )
        if not jti or jti == self._last_jti:
            raise AssertionSigningError(
                "the jti generator returned an empty or repeated value; it must return a "
                "new non-empty string on every call (RFC 7519 §4.1.7)"
            )
        self._last_jti = jti
        iat = math.floor(now)
        claims = {
            **self._extra,
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": iat,
            "exp": iat + self._lifetime,
            "jti": jti,
        }
        try:
            return self._encode(
                claims, self._key, algorithm=self._algorithm, headers=dict(self._headers)
            )
        except Exception as exc:
            raise AssertionSigningError(
                f"signing the assertion with {self._algorithm} failed: {type(exc).__name__}"
            ) from exc

    def __repr__(self) -> str:
        return f"<{self._algorithm} signer>"


class _ClientAssertion:
    """A bound JWT client authentication: a new client assertion for every request (K6)."""

    __slots__ = ("_audience", "_client_id", "_method", "_signer")

    def __init__(self, signer: _Signer, *, method: str, client_id: str, audience: str) -> None:
        self._signer = signer
        self._method = method
        self._client_id = client_id
        self._audience = audience

    @property
    def identity(self) -> tuple[str, ...]:
        return (self._method, self._client_id, self._audience, *self._signer.identity)

    def authenticate(self, now: float) -> Credentials:
        """SPEC K1, K2: ``iss`` = ``sub`` = client_id; ``client_id`` is sent alongside."""
        assertion = self._signer.mint(
            now, issuer=self._client_id, subject=self._client_id, audience=self._audience
        )
        return (), (
            ("client_id", self._client_id),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
        )

    def __repr__(self) -> str:
        return f"<{self._method} for {self._client_id!r}>"


class _PublicClient:
    """RFC 6749 §3.2.1: an unauthenticated client names itself with ``client_id``."""

    __slots__ = ("_form", "identity")

    def __init__(self, client_id: str) -> None:
        self._form: Form = (("client_id", client_id),)
        self.identity = ("public-client", client_id)

    def authenticate(self, now: float) -> Credentials:
        return (), self._form

    def __repr__(self) -> str:
        return "<client_id only>"


class _JWTClientAuth(ClientAuth):
    """What PrivateKeyJWT and ClientSecretJWT share: claims, headers, lifetime, jti."""

    def __init__(
        self,
        *,
        algorithm: str,
        key_id: str | None,
        lifetime: int,
        audience: str | None,
        typ: str | None,
        jti: Callable[[], str],
        x5t_s256: str | None = None,
        algorithm_given: bool = True,
    ) -> None:
        self._algorithm = algorithm
        self._algorithm_given = algorithm_given
        self._x5t_s256 = x5t_s256
        self._key_id = _check_optional_str("key_id", key_id)
        self._lifetime = _check_lifetime(lifetime)
        self._audience = _check_optional_str("audience", audience)
        self._typ = _check_optional_str("typ", typ)
        self._jti = _check_jti(jti)

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def key_id(self) -> str | None:
        return self._key_id

    @property
    def lifetime(self) -> int:
        return self._lifetime

    def _for_server(self, metadata: ServerMetadata, client_secret: str | None) -> _JWTClientAuth:
        """SPEC M4: this method as the server's metadata completes it.

        The assertion's ``aud`` is the issuer unless ``audience`` was given
        (draft-ietf-oauth-rfc7523bis), and its algorithm is one the server
        lists in ``token_endpoint_auth_signing_alg_values_supported`` unless
        ``algorithm`` was given.
        """
        new = copy.copy(self)
        if self._audience is None:
            new._audience = metadata.issuer
        listed = metadata.token_endpoint_auth_signing_alg_values_supported
        if (
            not self._algorithm_given
            and listed is not None
            and not _listed(self._algorithm, listed)
        ):
            fits = self._fitting(client_secret)
            chosen = next((a for a in fits if _listed(a, listed)), None)
            if chosen is None:
                from ._discovery import DiscoveryError  # noqa: PLC0415

                what = "secret" if self.method == "client_secret_jwt" else "key"
                raise DiscoveryError(
                    f"the token endpoint takes {self.method} assertions signed with "
                    f"{', '.join(listed[:10]) or 'no algorithm'} (metadata "
                    f"{metadata.url}), and this {what} "
                    f"signs with {', '.join(fits) or 'none of them'}: pass algorithm= one the "
                    "server takes, or another key",
                    url=metadata.url,
                )
            new._algorithm = chosen
        return new

    def _fitting(self, client_secret: str | None) -> list[str]:
        """The algorithms this method can sign with, in order of preference."""
        raise NotImplementedError  # pragma: no cover - both subclasses define it

    def _bound(self, key: SigningKey | bytes, client_id: str, token_url: str) -> Authenticator:
        signer = _Signer(
            key,
            algorithm=self._algorithm,
            headers=_headers(self._typ, self._key_id, self._x5t_s256),
            lifetime=self._lifetime,
            jti=self._jti,
            extra_claims={},
        )
        return _ClientAssertion(
            signer,
            method=self.method,
            client_id=client_id,
            audience=self._audience if self._audience is not None else token_url,
        )

    def __repr__(self) -> str:
        parts = [f"algorithm={self._algorithm!r}"]
        if self._key_id is not None:
            parts.append(f"key_id={self._key_id!r}")
        if self._audience is not None:
            parts.append(f"audience={self._audience!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class PrivateKeyJWT(_JWTClientAuth):
    """``private_key_jwt``: the client signs a JWT with its private key (RFC 7523 §2.2).

    Pass it as ``client_auth=`` to ClientCredentials or JWTBearerGrant, with a
    ``client_id`` and no client secret. Every token request carries a new
    ``client_assertion`` with ``iss`` = ``sub`` = client_id, ``aud`` = the
    token URL (or ``audience``, such as the issuer identifier, as one string),
    ``iat`` now, ``exp`` ``lifetime`` seconds later and a unique ``jti``.

    ``key`` is a private key as PEM (PKCS#8, PKCS#1 or SEC1, encrypted with
    ``password``), DER, a private JWK (a dict or JSON text, whose ``kid`` is
    used when ``key_id`` is not given), or a cryptography private key object.
    It is parsed and checked against ``algorithm`` here, once: RS256/384/512
    and PS256/384/512 need RSA of 2048 bits or more, ES256/384/512 need
    P-256/P-384/P-521, EdDSA needs Ed25519. Without ``algorithm`` the key
    decides where that is unambiguous: a JWK's ``alg``, else ES256, ES384 or
    ES512 for a P-256, P-384 or P-521 key, EdDSA for Ed25519, and RS256 for
    RSA (name PS256 or another RSA algorithm if the server wants it).

    ``key_id`` sets the ``kid`` header; ``certificate`` (PEM, DER or a
    cryptography certificate of this key) sets ``x5t#S256``; ``typ`` is the
    ``typ`` header, ``"JWT"`` by default (``"client-authentication+jwt"`` for
    servers that follow draft-ietf-oauth-rfc7523bis, None to leave it out).
    ``jti`` makes the ``jti`` values; it must return a new string each call.
    """

    method = "private_key_jwt"

    def __init__(
        self,
        key: KeyInput,
        *,
        algorithm: str | None = None,
        key_id: str | None = None,
        password: str | bytes | None = None,
        certificate: CertificateInput | None = None,
        lifetime: int = DEFAULT_CLIENT_AUTH_LIFETIME,
        audience: str | None = None,
        typ: str | None = "JWT",
        jti: Callable[[], str] = default_jti,
    ) -> None:
        given = algorithm is not None or _jwk_names_alg(key)
        self._key, algorithm, jwk_kid = load_signing_key(
            key, algorithm=algorithm, password=password
        )
        x5t_s256 = None if certificate is None else certificate_thumbprint(certificate, self._key)
        super().__init__(
            algorithm=algorithm,
            key_id=_pick_key_id(_check_optional_str("key_id", key_id), jwk_kid),
            lifetime=lifetime,
            audience=audience,
            typ=typ,
            jti=jti,
            x5t_s256=x5t_s256,
            algorithm_given=given,
        )

    def _fitting(self, client_secret: str | None) -> list[str]:
        fits = []
        for algorithm in _PREFERENCE:
            try:
                load_signing_key(self._key, algorithm=algorithm, password=None)
            except ConfigurationError:
                continue
            fits.append(algorithm)
        return fits

    def bind(self, *, client_id: str, client_secret: str | None, token_url: str) -> Authenticator:
        client_id = check_client_id(client_id)
        if client_secret is not None:
            raise ConfigurationError(
                "private_key_jwt authenticates with the private key, and a client_secret was "
                "given too; RFC 6749 §2.3 allows one method per request: drop "
                "client_secret=, or use ClientSecretJWT / ClientSecretBasic instead"
            )
        return self._bound(self._key, client_id, token_url)


class ClientSecretJWT(_JWTClientAuth):
    """``client_secret_jwt``: the client signs a JWT with its client secret (RFC 7523 §2.2).

    Pass it as ``client_auth=`` together with ``client_id`` and
    ``client_secret``. The HMAC key is the UTF-8 bytes of the secret (SPEC K9);
    HS256, HS384 and HS512 need a secret of at least 32, 48 and 64 bytes
    (SPEC K10), checked when the grant is constructed. Claims, ``audience``,
    ``key_id``, ``typ``, ``lifetime`` and ``jti`` work as in PrivateKeyJWT.
    ``algorithm`` is HS256 unless given (for a grant made by ``from_issuer``,
    the strongest the server lists and the secret is long enough for).
    Prefer PrivateKeyJWT where the server supports it: the server then holds
    no secret that can sign for you (RFC 9700 §2.5).
    """

    method = "client_secret_jwt"

    def __init__(
        self,
        *,
        algorithm: str | None = None,
        key_id: str | None = None,
        lifetime: int = DEFAULT_CLIENT_AUTH_LIFETIME,
        audience: str | None = None,
        typ: str | None = "JWT",
        jti: Callable[[], str] = default_jti,
    ) -> None:
        super().__init__(
            algorithm=check_algorithm("HS256" if algorithm is None else algorithm, hmac=True),
            key_id=key_id,
            lifetime=lifetime,
            audience=audience,
            typ=typ,
            jti=jti,
            algorithm_given=algorithm is not None,
        )

    def _fitting(self, client_secret: str | None) -> list[str]:
        length = len((client_secret or "").encode("utf-8"))
        return [a for a in ("HS512", "HS384", "HS256") if length >= HMAC_ALGORITHMS[a]]

    def bind(self, *, client_id: str, client_secret: str | None, token_url: str) -> Authenticator:
        client_id = check_client_id(client_id)
        secret = check_secret(self.method, client_secret)
        return self._bound(hmac_key(secret, self._algorithm), client_id, token_url)


class JWTBearerGrant(Grant):
    """The JWT-bearer authorization grant (RFC 7523 §2.1, SPEC J1-J8).

    Each token request sends ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
    and a new ``assertion`` signed with ``key``: ``iss`` = ``issuer``, ``sub`` =
    ``subject``, ``aud`` = ``audience`` (verbatim; the token URL by default),
    ``iat`` now, ``exp`` ``lifetime`` seconds later (300 by default), a unique
    ``jti``, and ``extra_claims`` (which may not set those). ``key``,
    ``algorithm`` (taken from the key when not given), ``password``,
    ``key_id``, ``certificate``, ``typ`` and ``jti`` are as in PrivateKeyJWT;
    the grant signs with a private key only (no HS256).

    Client authentication is optional (RFC 7523 §3.1). With none, the request
    names no client. ``client_id`` with ``client_secret`` uses
    ClientSecretBasic, or pass ``client_auth=`` (PrivateKeyJWT, ClientSecretJWT,
    ClientSecretPost) with ``client_id``. ``client_id`` alone is sent as a form
    field, as a public client does (RFC 6749 §3.2.1).

    ``scope``, ``resource`` (RFC 8707) and ``extra_params`` are sent as in
    ClientCredentials. A rejected assertion raises InvalidGrantError.
    """

    __slots__ = (
        "_audience",
        "_authenticator",
        "_client_auth",
        "_client_id",
        "_form",
        "_issuer",
        "_key_id",
        "_signer",
        "_subject",
    )

    def __init__(
        self,
        token_url: str,
        *,
        issuer: str,
        subject: str,
        key: KeyInput,
        algorithm: str | None = None,
        audience: str | None = None,
        key_id: str | None = None,
        password: str | bytes | None = None,
        certificate: CertificateInput | None = None,
        lifetime: int = DEFAULT_GRANT_LIFETIME,
        typ: str | None = "JWT",
        extra_claims: Mapping[str, Any] | None = None,
        jti: Callable[[], str] = default_jti,
        scope: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        extra_params: Mapping[str, str] | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        super().__init__(token_url, scope=scope, allow_insecure_http=allow_insecure_http)
        self._issuer = _check_str("issuer", issuer)
        self._subject = _check_str("subject", subject)
        audience = _check_optional_str("audience", audience)
        self._audience = self._token_url if audience is None else audience
        signing_key, algorithm, jwk_kid = load_signing_key(
            key, algorithm=algorithm, password=password
        )
        self._key_id = _pick_key_id(_check_optional_str("key_id", key_id), jwk_kid)
        x5t_s256 = None if certificate is None else certificate_thumbprint(certificate, signing_key)
        self._signer = _Signer(
            signing_key,
            algorithm=algorithm,
            headers=_headers(_check_optional_str("typ", typ), self._key_id, x5t_s256),
            lifetime=_check_lifetime(lifetime),
            jti=_check_jti(jti),
            extra_claims=_check_extra_claims(extra_claims),
        )
        self._client_id, self._client_auth, self._authenticator = _client_auth_for(
            client_id, client_secret, client_auth, self._token_url
        )
        self._form: Form = (
            *self._scope_form(),
            *(("resource", r) for r in normalize_multi("resource", resource)),
            *normalize_extra_params(extra_params, RESERVED_PARAMS),
        )

    @classmethod
    def from_issuer(
        cls,
        as_issuer: str,
        /,
        *,
        issuer: str,
        subject: str,
        key: KeyInput,
        algorithm: str | None = None,
        audience: str | None = None,
        key_id: str | None = None,
        password: str | bytes | None = None,
        certificate: CertificateInput | None = None,
        lifetime: int = DEFAULT_GRANT_LIFETIME,
        typ: str | None = "JWT",
        extra_claims: Mapping[str, Any] | None = None,
        jti: Callable[[], str] = default_jti,
        scope: str | Sequence[str] | None = None,
        resource: str | Sequence[str] | None = None,
        extra_params: Mapping[str, str] | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        client_auth: ClientAuth | None = None,
        allow_insecure_http: bool = False,
        allowed_issuers: str | Sequence[str] | None = None,
        resource_discovery: bool = True,
    ) -> JWTBearerGrant:
        """The grant for the authorization server whose issuer identifier is ``as_issuer``.

        ``issuer=`` stays the assertion's ``iss``; every other keyword is the
        constructor's, checked now, with no I/O. TokenAuth reads the
        metadata on first need: the token endpoint, the assertion's ``aud``
        (``as_issuer``, unless ``audience`` is given), and the client
        authentication as in ``ClientCredentials.from_issuer``.
        ``allowed_issuers`` and ``resource_discovery`` are as there.
        """
        from ._discovery import discovered_for  # noqa: PLC0415

        discovered = discovered_for(
            as_issuer,
            name="as_issuer",
            allowed_issuers=allowed_issuers,
            allow_insecure_http=allow_insecure_http,
            resource_discovery=resource_discovery,
            client_secret=client_secret,
            client_auth=client_auth,
            audience_given=audience is not None,
            resource_given=resource is not None,
        )
        grant = cls(
            discovered.issuer,  # stands in for the token URL until the metadata names it
            issuer=issuer,
            subject=subject,
            key=key,
            algorithm=algorithm,
            audience=audience,
            key_id=key_id,
            password=password,
            certificate=certificate,
            lifetime=lifetime,
            typ=typ,
            extra_claims=extra_claims,
            jti=jti,
            scope=scope,
            resource=resource,
            extra_params=extra_params,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            allow_insecure_http=discovered.allow_insecure_http,
        )
        grant._discovered = discovered
        return grant

    def _resolve(self, metadata: ServerMetadata, resource: str | None) -> JWTBearerGrant:
        discovered = self._discovered
        assert discovered is not None  # noqa: S101 - only grants made by from_issuer get here
        new = completed(self, metadata, resource, self._client_id)
        if not discovered.audience_given:
            new._audience = metadata.issuer
        return new

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def subject(self) -> str:
        return self._subject

    @property
    def audience(self) -> str:
        return self._audience

    @property
    def client_id(self) -> str | None:
        return self._client_id

    def cache_identity(self) -> tuple[str, ...]:
        """SPEC F1: issuer, subject, audience, the signing key and everything sent but the
        assertion itself."""
        if self._discovered is not None:
            return (
                JWT_BEARER_GRANT_TYPE,
                *discovered_identity(self._discovered),
                f"iss={self._issuer}",
                f"sub={self._subject}",
                f"aud={self._audience}",
                *self._signer.identity,
                *form_identity(self._form),
                *auth_identity(self._discovered, self._client_id, self._authenticator),
            )
        return (
            JWT_BEARER_GRANT_TYPE,
            self._token_url,
            f"iss={self._issuer}",
            f"sub={self._subject}",
            f"aud={self._audience}",
            *self._signer.identity,
            *form_identity(self._form),
            *identity_of(self._authenticator),
        )

    def token_request(self, now: float) -> TokenRequest:
        """SPEC J1, J5, J8: a newly minted assertion for the request made at ``now``."""
        assertion = self._signer.mint(
            now, issuer=self._issuer, subject=self._subject, audience=self._audience
        )
        grant: Form = (("grant_type", JWT_BEARER_GRANT_TYPE), ("assertion", assertion))
        return self._build(grant + self._form, self._authenticator, now)

    def assertion_sources(self) -> tuple[AssertionNeed, ...]:
        """A ClientAssertion's source, when the client authenticates with one (SPEC A1)."""
        return assertion_needs(self._authenticator)

    def token_request_with(self, now: float, assertions: Mapping[str, str]) -> TokenRequest:
        """As token_request, the client assertion being the one read for this request."""
        assertion = self._signer.mint(
            now, issuer=self._issuer, subject=self._subject, audience=self._audience
        )
        grant: Form = (("grant_type", JWT_BEARER_GRANT_TYPE), ("assertion", assertion))
        return self._build(grant + self._form, self._authenticator, now, assertions)

    def parse_response(
        self, response: RawResponse, *, received_at: float, dpop: bool = False
    ) -> Token:
        """As Grant.parse_response; ``invalid_grant`` says the assertion was rejected (J8)."""
        try:
            return super().parse_response(response, received_at=received_at, dpop=dpop)
        except InvalidGrantError as exc:
            message = (
                "the authorization server rejected the JWT assertion (invalid_grant"
                f"{': ' + exc.error_description[:500] if exc.error_description else ''}, "
                f"HTTP {exc.status_code}): check the issuer, subject and audience it expects, "
                "that it holds the public key for this key (and key_id), and this machine's clock"
            )
            if exc.error_uri:
                message += f"; see {exc.error_uri[:500]}"
            raise type(exc)(
                message,
                status_code=exc.status_code,
                error=exc.error,
                error_description=exc.error_description,
                error_uri=exc.error_uri,
            ) from None

    def __repr__(self) -> str:
        parts = [
            f"token_url={redacted_url(self._token_url)!r}"
            if self._discovered is None
            else f"as_issuer={self._discovered.issuer!r}",
            f"issuer={self._issuer!r}",
            f"subject={self._subject!r}",
            f"algorithm={self._signer.algorithm!r}",
        ]
        if self._key_id is not None:
            parts.append(f"key_id={self._key_id!r}")
        if self._client_id is not None:
            parts.append(f"client_id={self._client_id!r}")
        if self._client_auth is not None:
            parts.append(f"client_auth={self._client_auth!r}")
        if self._scope:
            parts.append(f"scope={' '.join(self._scope)!r}")
        return f"JWTBearerGrant({', '.join(parts)})"


def _client_auth_for(
    client_id: str | None,
    client_secret: str | None,
    client_auth: ClientAuth | None,
    token_url: str,
) -> tuple[str | None, ClientAuth | None, Authenticator | None]:
    """SPEC J2: client authentication is optional for the grant; never a stray client_id."""
    if client_auth is not None and not isinstance(client_auth, ClientAuth):
        raise ConfigurationError(
            "client_auth must be ClientSecretBasic(), ClientSecretPost(), "
            "ClientSecretJWT(...), PrivateKeyJWT(...) or ClientAssertion(...), got "
            f"{type(client_auth).__name__}"
        )
    if client_id is None:
        if client_auth is not None or client_secret is not None:
            raise ConfigurationError(
                "client authentication needs the client's id: pass client_id=... with "
                "client_secret= or client_auth="
            )
        return None, None, None
    client_id = check_client_id(client_id)
    if client_auth is None and client_secret is None:
        return client_id, None, _PublicClient(client_id)
    if client_auth is None:
        client_auth = ClientSecretBasic()
    authenticator = client_auth.bind(
        client_id=client_id, client_secret=client_secret, token_url=token_url
    )
    return client_id, client_auth, authenticator


def _listed(algorithm: str, listed: Sequence[str]) -> bool:
    """Whether a server's list names ``algorithm`` (EdDSA also as RFC 9864's ``Ed25519``)."""
    return algorithm in listed or (algorithm == "EdDSA" and "Ed25519" in listed)


def _jwk_names_alg(key: object) -> bool:
    """Whether ``key`` is a JWK that names its own ``alg`` (a choice, like ``algorithm=``)."""
    if isinstance(key, str) and key.lstrip().startswith("{"):
        try:
            key = json.loads(key)
        except ValueError:
            return False
    return isinstance(key, Mapping) and isinstance(key.get("alg"), str)


def _headers(typ: str | None, key_id: str | None, x5t_s256: str | None) -> dict[str, str | None]:
    """The JOSE header beyond ``alg``: ``typ`` (None leaves it out), ``kid``, ``x5t#S256``."""
    headers: dict[str, str | None] = {"typ": typ}
    if key_id is not None:
        headers["kid"] = key_id
    if x5t_s256 is not None:
        headers["x5t#S256"] = x5t_s256
    return headers


def _pick_key_id(key_id: str | None, jwk_kid: str | None) -> str | None:
    """``key_id``, or the JWK's own ``kid``; refused when the two disagree."""
    if key_id is not None and jwk_kid is not None and key_id != jwk_kid:
        raise KeyConfigurationError(
            f"key id {key_id!r} differs from the JWK's kid {jwk_kid!r}",
            "pass the key_id the authorization server has registered (or omit key_id to "
            "use the JWK's)",
            reason="key_id_mismatch",
            suggestions=(jwk_kid,),
        )
    return key_id if key_id is not None else jwk_kid


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {type(value).__name__}")
    return value


def _check_optional_str(name: str, value: object) -> str | None:
    return None if value is None else _check_str(name, value)


def _check_lifetime(lifetime: object) -> int:
    """SPEC J5, K7: whole seconds, from 1 to MAX_LIFETIME."""
    if isinstance(lifetime, bool) or not isinstance(lifetime, int):
        raise ConfigurationError(
            f"lifetime must be a whole number of seconds (an int), got {type(lifetime).__name__}"
        )
    if not 0 < lifetime <= MAX_LIFETIME:
        raise ConfigurationError(
            f"lifetime must be between 1 and {MAX_LIFETIME} seconds, got {lifetime}: an "
            "assertion is used once, right away, and should expire soon after (RFC 7523 §3)"
        )
    return lifetime


def _check_jti(jti: object) -> Callable[[], str]:
    if not callable(jti):
        raise ConfigurationError(
            "jti must be a callable that returns a new unique string on each call, "
            "such as lambda: secrets.token_urlsafe(16)"
        )
    return jti


def _check_extra_claims(extra: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Extra claims: JSON, none of the ones the library computes. Copied, so later edits
    by the caller change nothing."""
    if extra is None:
        return {}
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) and k for k in extra):
        raise ConfigurationError("extra_claims must be a mapping of claim name to JSON value")
    clash = sorted(RESERVED_CLAIMS & set(extra))
    if clash:
        raise ConfigurationError(
            f"extra_claims may not set {', '.join(clash)}: the library computes them for "
            "each assertion; use issuer=, subject=, audience= and lifetime= instead"
        )
    try:
        copied: dict[str, Any] = json.loads(json.dumps(dict(extra), allow_nan=False))
    except (TypeError, ValueError):
        raise ConfigurationError(
            "extra_claims must hold only JSON values (str, int, float, bool, None, list, dict)"
        ) from None
    return copied
