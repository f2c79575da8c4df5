"""httpx-tokenauth: OAuth 2.0 access tokens that take care of themselves, for httpx.

Example::

    import httpx
    from httpx_tokenauth import ClientCredentials, TokenAuth

    auth = TokenAuth(ClientCredentials("https://as.example/token",
                                       client_id="svc", client_secret="..."))
    with httpx.Client(auth=auth) as client:
        client.get("https://api.example/things")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._auth import TokenAuth
from ._client_auth import ClientAuth, ClientSecretBasic, ClientSecretPost
from ._errors import (
    AssertionExpiredError,
    AssertionSigningError,
    AssertionSourceError,
    ConfigurationError,
    InsecureTransportError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    InvalidTokenResponseError,
    NonVSCHARWarning,
    ProviderError,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    TokenTransportError,
    UnauthorizedClientError,
    UnexpectedTokenResponseError,
    UnsupportedGrantTypeError,
    UnsupportedTokenTypeError,
)
from ._providers import AsyncTokenProvider, ClientCredentials, TokenProvider
from ._retry import RetryPolicy
from ._token import RateLimit, Token

if TYPE_CHECKING:
    from ._assertions import AssertionSource, ClientAssertion, FileAssertion, GitHubActionsOIDC
    from ._challenge import BearerChallenge, bearer_challenge
    from ._discovery import (
        DiscoveryError,
        IssuerMismatchError,
        ResourceMismatchError,
        UntrustedAuthorizationServerError,
    )
    from ._dpop import DPoP, DPoPNonceError, DPoPNotBoundError
    from ._exchange import TokenExchangeGrant
    from ._jwt import ClientSecretJWT, JWTBearerGrant, PrivateKeyJWT
    from ._snapshot import TokenStats
    from ._store import TokenStore, generate_encryption_key
    from ._store_file import FileTokenStore
    from ._store_redis import RedisTokenStore

__version__ = "0.1.0"

__all__ = [
    "AssertionExpiredError",
    "AssertionSigningError",
    "AssertionSource",
    "AssertionSourceError",
    "AsyncTokenProvider",
    "BearerChallenge",
    "ClientAssertion",
    "ClientAuth",
    "ClientCredentials",
    "ClientSecretBasic",
    "ClientSecretJWT",
    "ClientSecretPost",
    "ConfigurationError",
    "DPoP",
    "DPoPNonceError",
    "DPoPNotBoundError",
    "DiscoveryError",
    "FileAssertion",
    "FileTokenStore",
    "GitHubActionsOIDC",
    "InsecureTransportError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "InvalidTokenResponseError",
    "IssuerMismatchError",
    "JWTBearerGrant",
    "NonVSCHARWarning",
    "PrivateKeyJWT",
    "ProviderError",
    "RateLimit",
    "RedisTokenStore",
    "ResourceMismatchError",
    "RetryPolicy",
    "Token",
    "TokenAuth",
    "TokenEndpointError",
    "TokenError",
    "TokenExchangeGrant",
    "TokenProvider",
    "TokenResponseError",
    "TokenStats",
    "TokenStore",
    "TokenTransportError",
    "UnauthorizedClientError",
    "UnexpectedTokenResponseError",
    "UnsupportedGrantTypeError",
    "UnsupportedTokenTypeError",
    "UntrustedAuthorizationServerError",
    "bearer_challenge",
    "generate_encryption_key",
]

#: Public names whose modules load when the name is first used (PEP 562), so that
#: ``import httpx_tokenauth`` costs only what ClientCredentials and TokenAuth need.
_LAZY = {
    "AssertionSource": "_assertions",
    "BearerChallenge": "_challenge",
    "ClientAssertion": "_assertions",
    "ClientSecretJWT": "_jwt",
    "DPoP": "_dpop",
    "DPoPNonceError": "_dpop",
    "DPoPNotBoundError": "_dpop",
    "DiscoveryError": "_discovery",
    "FileAssertion": "_assertions",
    "FileTokenStore": "_store_file",
    "GitHubActionsOIDC": "_assertions",
    "IssuerMismatchError": "_discovery",
    "JWTBearerGrant": "_jwt",
    "PrivateKeyJWT": "_jwt",
    "RedisTokenStore": "_store_redis",
    "ResourceMismatchError": "_discovery",
    "TokenExchangeGrant": "_exchange",
    "TokenStats": "_snapshot",
    "TokenStore": "_store",
    "UntrustedAuthorizationServerError": "_discovery",
    "bearer_challenge": "_challenge",
    "generate_encryption_key": "_store",
}

if not TYPE_CHECKING:  # for type checkers the names are the imports above

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module  # noqa: PLC0415

        value = getattr(import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # looked up once: later uses find it like any other name
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})
