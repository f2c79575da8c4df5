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

from ._assertions import AssertionSource, ClientAssertion, FileAssertion, GitHubActionsOIDC
from ._auth import TokenAuth
from ._challenge import BearerChallenge, bearer_challenge
from ._client_auth import ClientAuth, ClientSecretBasic, ClientSecretPost
from ._discovery import (
    DiscoveryError,
    IssuerMismatchError,
    ResourceMismatchError,
    UntrustedAuthorizationServerError,
)
from ._dpop import DPoP, DPoPNonceError, DPoPNotBoundError
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
from ._exchange import TokenExchangeGrant
from ._jwt import ClientSecretJWT, JWTBearerGrant, PrivateKeyJWT
from ._providers import AsyncTokenProvider, ClientCredentials, TokenProvider
from ._retry import RetryPolicy
from ._stats import TokenStats
from ._store import TokenStore, generate_encryption_key
from ._store_file import FileTokenStore
from ._store_redis import RedisTokenStore
from ._token import RateLimit, Token

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
