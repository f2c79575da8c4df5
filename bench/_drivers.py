"""One driver per library, so the herd and renewal benchmarks treat them all alike.

A driver owns a client wired to an ``Endpoint`` (the mock token endpoint and
API) and knows how to bring its library's cached token into each state the
benchmarks need: expired, or inside the early-renewal window. httpx-tokenauth
gets there with an injected clock; the peers read ``time.time()`` themselves,
so their cached token's expiry is moved instead, which is the state their
cache would be in had the time passed.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from _common import (
    API_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_URL,
    Endpoint,
    FakeClock,
    authlib_module,
    clear_httpx_auth_cache,
    httpx_auth_module,
    httpx_auth_set_expiry,
)

from httpx_tokenauth import ClientCredentials, TokenAuth

#: Lifetime of every token the mock endpoint issues.
LIFETIME = 3600
#: httpx-tokenauth's default leeway: renewal starts at 3540 s of a 3600 s token.
OURS_WINDOW = LIFETIME - 50


class Driver:
    """A library's client in one mode: ``sync`` (threads) or ``async`` (tasks)."""

    name = ""
    #: Why a cold-start herd cannot be run, or None when it can.
    cold_start_unsupported: str | None = None

    def __init__(self, endpoint: Endpoint, mode: str) -> None:
        self.endpoint = endpoint
        self.mode = mode
        self.client: Any = None

    @property
    def is_sync(self) -> bool:
        return self.mode == "sync"

    def _transport(self) -> httpx.MockTransport:
        ep = self.endpoint
        return httpx.MockTransport(ep.sync_handler if self.is_sync else ep.async_handler)

    def get(self) -> httpx.Response:
        response: httpx.Response = self.client.get(API_URL)
        return response

    async def aget(self) -> httpx.Response:
        response: httpx.Response = await self.client.get(API_URL)
        return response

    def warm(self) -> None:
        """Obtain a first token (sync mode)."""
        self.get()

    async def awarm(self) -> None:
        await self.aget()

    def expire(self) -> None:
        raise NotImplementedError

    def into_window(self) -> None:
        """Put the cached token in the library's early-renewal window: still valid."""
        raise NotImplementedError

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        await self.client.aclose()


class Ours(Driver):
    name = "ours"

    def __init__(self, endpoint: Endpoint, mode: str) -> None:
        super().__init__(endpoint, mode)
        self.clock = FakeClock()
        provider = ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        if self.is_sync:
            auth = TokenAuth(
                provider,
                token_client=httpx.Client(transport=self._transport()),
                clock=self.clock,
            )
            self.client = httpx.Client(auth=auth, transport=self._transport())
        else:
            auth = TokenAuth(
                provider,
                async_token_client=httpx.AsyncClient(transport=self._transport()),
                clock=self.clock,
            )
            self.client = httpx.AsyncClient(auth=auth, transport=self._transport())

    # The clock does not move during a fetch, so the cached token was always
    # received at the clock's current value.
    def expire(self) -> None:
        self.clock.now += LIFETIME + 1

    def into_window(self) -> None:
        self.clock.now += OURS_WINDOW


class Authlib(Driver):
    """authlib's OAuth2Client / AsyncOAuth2Client with client-credentials auto-renewal."""

    name = "authlib"
    cold_start_unsupported = (
        "n/a (requests raise MissingTokenError until the app calls fetch_token())"
    )

    def __init__(self, endpoint: Endpoint, mode: str) -> None:
        super().__init__(endpoint, mode)
        mod = authlib_module()
        cls = mod.OAuth2Client if self.is_sync else mod.AsyncOAuth2Client
        self.client = cls(
            CLIENT_ID,
            CLIENT_SECRET,
            token_endpoint=TOKEN_URL,
            grant_type="client_credentials",
            transport=self._transport(),
        )

    def warm(self) -> None:
        self.client.fetch_token()

    async def awarm(self) -> None:
        await self.client.fetch_token()

    def expire(self) -> None:
        self.client.token["expires_at"] = int(time.time()) - 10

    def into_window(self) -> None:
        # authlib renews when expires_at - leeway (60 s) is past.
        self.client.token["expires_at"] = int(time.time()) + 30


class HttpxAuth(Driver):
    """httpx-auth's OAuth2ClientCredentials; its token requests use the ``client=`` given."""

    name = "httpx-auth"

    def __init__(self, endpoint: Endpoint, mode: str) -> None:
        super().__init__(endpoint, mode)
        mod = httpx_auth_module()
        clear_httpx_auth_cache()  # its cache is process-global: start cold
        # httpx-auth fetches with a sync httpx.Client, in async mode too.
        token_client = httpx.Client(transport=httpx.MockTransport(endpoint.sync_handler))
        self.token_client = token_client
        self.auth = mod.OAuth2ClientCredentials(
            TOKEN_URL, CLIENT_ID, CLIENT_SECRET, client=token_client
        )
        cls = httpx.Client if self.is_sync else httpx.AsyncClient
        self.client = cls(auth=self.auth, transport=self._transport())

    def expire(self) -> None:
        httpx_auth_set_expiry(self.auth, time.time() - 10)

    def into_window(self) -> None:
        # httpx-auth treats a token as expired 30 s (early_expiry) before it expires.
        httpx_auth_set_expiry(self.auth, time.time() + 10)

    def close(self) -> None:
        super().close()
        self.token_client.close()
        clear_httpx_auth_cache()

    async def aclose(self) -> None:
        await super().aclose()
        self.token_client.close()
        clear_httpx_auth_cache()


DRIVERS: dict[str, type[Driver]] = {"ours": Ours, "authlib": Authlib, "httpx-auth": HttpxAuth}
