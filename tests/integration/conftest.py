"""Real servers for the integration suite, started once per session and reset per test.

The authorization server is authlib's (httpx_tokenauth.testing.LocalAuthorizationServer),
the API is Starlette under uvicorn (LocalAPI); both over TLS on 127.0.0.1 with
certificates from a throwaway CA. Each test body runs once per flavor:
``sync`` (httpx.Client, each call in a worker thread so threads really run
concurrently), ``asyncio`` and ``trio`` (httpx.AsyncClient), each with httpx
and with httpx2 (the ``lib`` fixture of the top-level conftest).
"""

from __future__ import annotations

import importlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from httpx_tokenauth import (
    ClientCredentials,
    ClientSecretBasic,
    ClientSecretJWT,
    ClientSecretPost,
    JWTBearerGrant,
    PrivateKeyJWT,
    TokenAuth,
)
from httpx_tokenauth.testing import LocalAPI, LocalAuthorizationServer, LocalCA

CLIENT_ID = "svc"
# 32 bytes or more: client_secret_jwt with HS256 needs it (SPEC K10).
CLIENT_SECRET = "integration-client-secret-0123456789"
SUBJECT = "user@example.org"
ALL_SCOPES = "read write admin"


@dataclass(frozen=True)
class Keys:
    """The client's private keys (PEM) and the key ids the server has them under."""

    rsa: bytes
    ec: bytes
    unregistered: bytes  # a key the server has never seen


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="session")
def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture(scope="session")
def trust(ca: LocalCA) -> ssl.SSLContext:
    """A client TLS context that trusts the test CA."""
    return ca.client_context()


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa=_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ec=_pem(ec.generate_private_key(ec.SECP256R1())),
        unregistered=_pem(ec.generate_private_key(ec.SECP256R1())),
    )


@pytest.fixture(scope="session")
def auth_server(ca: LocalCA, keys: Keys) -> Iterator[LocalAuthorizationServer]:
    with LocalAuthorizationServer(ca) as server:
        server.register_client(
            CLIENT_ID,
            secret=CLIENT_SECRET,
            public_keys={"rsa-1": keys.rsa, "ec-1": keys.ec},
            scope=ALL_SCOPES,
        )
        yield server


@pytest.fixture(scope="session")
def api(auth_server: LocalAuthorizationServer, ca: LocalCA) -> Iterator[LocalAPI]:
    with LocalAPI(auth_server, ca=ca, required_scopes={"/admin": "admin"}) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_servers(auth_server: LocalAuthorizationServer, api: LocalAPI) -> Iterator[None]:
    auth_server.reset()
    api.reset()
    yield
    auth_server.reset()  # lets go of anything a failed test left held


@pytest.fixture(params=["sync", "asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return "trio" if flavor == "trio" else "asyncio"


# -- providers ------------------------------------------------------------------------

#: client authentication methods by name; None: no client authentication.
CLIENT_AUTHS: dict[str, Callable[[Keys], Any] | None] = {
    "client_secret_basic": lambda keys: ClientSecretBasic(),
    "client_secret_post": lambda keys: ClientSecretPost(),
    "client_secret_jwt": lambda keys: ClientSecretJWT(algorithm="HS256"),
    "private_key_jwt:RS256": lambda keys: PrivateKeyJWT(
        keys.rsa, algorithm="RS256", key_id="rsa-1"
    ),
    "private_key_jwt:ES256": lambda keys: PrivateKeyJWT(keys.ec, algorithm="ES256", key_id="ec-1"),
}


def client_credentials(
    server: LocalAuthorizationServer, keys: Keys, method: str = "client_secret_basic", **kwargs: Any
) -> ClientCredentials:
    """A ClientCredentials provider for the registered client, authenticating by ``method``."""
    make = CLIENT_AUTHS[method]
    assert make is not None
    client_auth = make(keys)
    secret = None if method.startswith("private_key_jwt") else CLIENT_SECRET
    return ClientCredentials(
        server.token_url,
        client_id=CLIENT_ID,
        client_secret=secret,
        client_auth=client_auth,
        **kwargs,
    )


def jwt_bearer(
    server: LocalAuthorizationServer, keys: Keys, method: str | None = None, **kwargs: Any
) -> JWTBearerGrant:
    """A JWTBearerGrant whose assertion the registered client signs (ES256), with optional
    client authentication by ``method``."""
    client: dict[str, Any] = {}
    if method is not None:
        make = CLIENT_AUTHS[method]
        assert make is not None
        client = {"client_id": CLIENT_ID, "client_auth": make(keys)}
        if not method.startswith("private_key_jwt"):
            client["client_secret"] = CLIENT_SECRET
    kwargs.setdefault("key", keys.ec)
    kwargs.setdefault("algorithm", "ES256")
    kwargs.setdefault("key_id", "ec-1")
    return JWTBearerGrant(server.token_url, issuer=CLIENT_ID, subject=SUBJECT, **client, **kwargs)


# -- one flavor's client ----------------------------------------------------------------


class Caller:
    """One flavor's API client and TokenAuth, behind one async interface.

    Token requests go over a client that trusts the test CA unless the test
    passes its own ``token_client`` / ``async_token_client`` (or ``None`` to
    let TokenAuth make its own).
    """

    def __init__(
        self, flavor: str, api: LocalAPI, trust: ssl.SSLContext, lib: str = "httpx"
    ) -> None:
        self.flavor = flavor
        self.lib = lib
        self.http: Any = importlib.import_module(lib)
        if lib == "httpx":
            self.auth_cls: Any = TokenAuth
        else:
            from httpx_tokenauth.httpx2 import TokenAuth as Httpx2TokenAuth

            self.auth_cls = Httpx2TokenAuth
        self.api = api
        self.trust = trust
        self.auth: Any = None
        self.limiter = anyio.CapacityLimiter(64)
        self._client: Any = None
        self._aclient: Any = None
        self._token_clients: list[Any] = []

    @property
    def is_sync(self) -> bool:
        return self.flavor == "sync"

    def token_client(self, verify: ssl.SSLContext | None = None) -> dict[str, Any]:
        """``token_client=`` or ``async_token_client=`` for this flavor, trusting ``verify``."""
        verify = verify or self.trust
        if self.is_sync:
            client = self.http.Client(verify=verify)
            self._token_clients.append(client)
            return {"token_client": client}
        client = self.http.AsyncClient(verify=verify)
        self._token_clients.append(client)
        return {"async_token_client": client}

    def connect(self, provider: Any, *, own_token_client: bool = False, **kwargs: Any) -> Any:
        """The TokenAuth and the API client for this flavor."""
        if not own_token_client and not ({"token_client", "async_token_client"} & set(kwargs)):
            kwargs.update(self.token_client())
        self.auth = self.auth_cls(provider, **kwargs)
        if self.is_sync:
            self._client = self.http.Client(
                auth=self.auth, verify=self.trust, base_url=self.api.url
            )
        else:
            self._aclient = self.http.AsyncClient(
                auth=self.auth, verify=self.trust, base_url=self.api.url
            )
        return self.auth

    async def request(
        self,
        method: str = "GET",
        path: str = "/things",
        *,
        before: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request; ``before`` runs first in the calling thread (sync) or task."""
        if self.is_sync:

            def call() -> httpx.Response:
                if before is not None:
                    before()
                assert self._client is not None
                return self._client.request(method, path, **kwargs)

            return await anyio.to_thread.run_sync(call, limiter=self.limiter)
        assert self._aclient is not None
        if before is not None:
            before()
        return await self._aclient.request(method, path, **kwargs)

    async def gather(
        self, n: int, *, started: Callable[[], Any] | None = None, **kwargs: Any
    ) -> list[httpx.Response]:
        """``n`` concurrent requests (threads for sync, tasks for async).

        ``started`` runs (awaited) in the test's task once all ``n`` are under
        way, while they are still running.
        """
        results: list[httpx.Response | None] = [None] * n

        async def one(i: int) -> None:
            results[i] = await self.request(**kwargs)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
            if started is not None:
                await started()
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._aclient is not None:
            await self._aclient.aclose()
        for client in self._token_clients:
            if isinstance(client, self.http.AsyncClient):
                await client.aclose()
            else:
                client.close()
        if self.auth is not None:
            self.auth.close()


@pytest.fixture
async def caller(
    flavor: str, lib: str, api: LocalAPI, trust: ssl.SSLContext
) -> AsyncIterator[Caller]:
    c = Caller(flavor, api, trust, lib)
    try:
        yield c
    finally:
        await c.aclose()
