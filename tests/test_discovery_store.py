"""Discovery with a fleet store: an issuer's metadata is fetched once and shared (SPEC M6).

Every TokenAuth below has token clients of its own, so its in-process metadata
cache is its own: as far as metadata goes, each is another process. They
share a real store (a Valkey server, or a FileTokenStore directory). The
authorization server is test_discovery's ``Servers``, which records every
request it received. Runs for sync/asyncio/trio x httpx/httpx2.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from httpx_tokenauth import (
    FileTokenStore,
    RedisTokenStore,
    RetryPolicy,
    TokenStore,
    generate_encryption_key,
)
from httpx_tokenauth._discovery import (
    MAX_MAX_AGE,
    from_shared,
    shared_metadata,
    shared_metadata_identity,
)
from httpx_tokenauth._store import GetDocument, PutDocument
from httpx_tokenauth.testing import ValkeyServer
from test_discovery import ENDPOINT, ISSUER, SECRET, WELL_KNOWN, Servers, as_doc, grant

from conftest import Env

pytestmark = pytest.mark.anyio

MOVED = ISSUER + "/v2/token"


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyServer]:
    with ValkeyServer() as server:
        yield server


class Fleet:
    """Stores on one backend (one per simulated process), and TokenAuths that use them."""

    def __init__(self, env: Env, servers: Servers, build: Callable[..., TokenStore]) -> None:
        self.env, self.servers, self.build = env, servers, build
        self.key = generate_encryption_key()
        self.stores: list[TokenStore] = []

    def store(self, **options: Any) -> TokenStore:
        options.setdefault("encryption_key", self.key)
        store = self.build(**options)
        self.stores.append(store)
        return store

    def process(self, store: TokenStore | None = None, **grant_options: Any) -> Any:
        """A TokenAuth as another process would have it: own token clients, own caches."""
        env = self.env
        return env.auth_cls(
            grant(**grant_options),
            store=store or self.store(),
            clock=env.clock,
            retry=RetryPolicy.off(),
            token_client=env.http.Client(transport=env.transport(self.servers.handler)),
            async_token_client=env.http.AsyncClient(transport=env.transport(self.servers.ahandler)),
        )

    async def token(self, auth: Any) -> str:
        if self.env.is_sync:
            token = await anyio.to_thread.run_sync(auth.get_token)
        else:
            token = await auth.aget_token()
        return str(token.access_token)

    async def aclose(self) -> None:
        for store in self.stores:
            await store.aclose()
            store.close()


@pytest.fixture(params=["valkey", "file"])
async def fleet(request: pytest.FixtureRequest, env: Env, tmp_path: Path) -> AsyncIterator[Fleet]:
    servers = Servers()
    servers.metadata()
    if request.param == "valkey":
        server: ValkeyServer = request.getfixturevalue("valkey")
        server.command("FLUSHALL")

        def build(**options: Any) -> TokenStore:
            return RedisTokenStore.from_url(server.url, timeout=2.0, **options)

    else:

        def build(**options: Any) -> TokenStore:
            return FileTokenStore(tmp_path / "store", **options)

    made = Fleet(env, servers, build)
    try:
        yield made
    finally:
        await made.aclose()


async def test_m6_a_process_with_no_metadata_of_its_own_reads_it_from_the_store(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """The first process fetches the metadata and shares it; the next ones (another scope,
    so another token) use it with no metadata request, and send to its token endpoint."""
    assert await fleet.token(fleet.process()) == "t1"
    with caplog.at_level(logging.INFO, logger="httpx_tokenauth"):
        assert await fleet.token(fleet.process(scope="read")) == "t2"
        assert await fleet.token(fleet.process(scope="write")) == "t3"
    assert fleet.servers.gets() == [WELL_KNOWN]
    assert fleet.servers.posts() == [ENDPOINT, ENDPOINT, ENDPOINT]
    adopted = [r for r in caplog.records if getattr(r, "event", None) == "metadata_adopted"]
    assert len(adopted) == 2
    assert SECRET not in caplog.text


async def test_m6_a_plaintext_store_shares_tokens_but_not_metadata(fleet: Fleet) -> None:
    """Without encryption anyone who can write to the store could name a token endpoint of
    their own; so each process fetches the metadata itself."""
    plain = fleet.store(encryption_key=None)
    assert await fleet.token(fleet.process(plain)) == "t1"
    assert await fleet.token(fleet.process(fleet.store(encryption_key=None), scope="read")) == "t2"
    assert fleet.servers.gets() == [WELL_KNOWN, WELL_KNOWN]


async def test_m6_a_moved_endpoint_is_looked_up_past_the_shared_document_and_shared_again(
    fleet: Fleet,
) -> None:
    """The shared document names an endpoint that now answers 404: the process that finds
    out does not take that document again, fetches the metadata, uses the new endpoint, and
    shares the new document; the next process goes straight there."""
    servers = fleet.servers
    assert await fleet.token(fleet.process()) == "t1"
    servers.endpoints[ENDPOINT] = lambda n: httpx.Response(404, text="gone")
    servers.metadata(as_doc(endpoint=MOVED))  # moved; the shared document names the old one
    assert await fleet.token(fleet.process(scope="read")) == "t3"
    assert await fleet.token(fleet.process(scope="write")) == "t4"
    assert servers.gets() == [WELL_KNOWN, WELL_KNOWN]
    assert servers.posts() == [ENDPOINT, ENDPOINT, MOVED, MOVED]


async def test_m6_a_store_that_failed_is_not_asked_for_metadata_as_well(env: Env) -> None:
    """With the store down, the token read fails once and the fetch goes ahead in-process:
    the metadata is fetched without waiting on the store again (one store failure in all)."""
    with ValkeyServer() as own:
        store = RedisTokenStore.from_url(own.url, encryption_key=generate_encryption_key())
        own.stop()
        servers = Servers()
        servers.metadata()
        fleet = Fleet(env, servers, lambda **o: store)
        auth = fleet.process(store)
        assert await fleet.token(auth) == "t1"
        await fleet.aclose()
    assert servers.gets() == [WELL_KNOWN]
    assert auth.stats().store_failures == 1


async def test_m6_what_is_shared_is_what_was_fetched_and_checked_like_it(fleet: Fleet) -> None:
    """The stored document reads back to the same metadata; a document planted under the
    issuer's name by a holder of the key is checked as if fetched: another issuer, an http
    token endpoint, a location that is not the issuer's, or a stale one is not used."""
    store = fleet.store()
    auth = fleet.process(store)
    assert await fleet.token(auth) == "t1"
    names = store.document_names(shared_metadata_identity(ISSUER, False))
    text = store.execute(GetDocument(names))
    assert text is not None
    entry = json.loads(text)
    assert entry["document"] == as_doc()
    assert entry["url"] == WELL_KNOWN

    planted = [
        {**entry, "document": as_doc(issuer="https://evil.example")},
        {**entry, "document": as_doc(endpoint="http://as.example/tenant/token")},
        {**entry, "url": "https://evil.example/.well-known/oauth-authorization-server"},
        {**entry, "fresh_until": fleet.env.clock() - 1},
    ]
    for n, bad in enumerate(planted):
        store.execute(PutDocument(names, json.dumps(bad), ttl_ms=60_000))
        assert await fleet.token(fleet.process(scope=f"s{n}")) == f"t{n + 2}"
    assert fleet.servers.gets() == [WELL_KNOWN] * 5
    assert fleet.servers.posts() == [ENDPOINT] * 5


def test_m6_shared_metadata_carries_its_freshness_within_bounds() -> None:
    """A shared document is fresh for what is left of the writer's max-age, never longer
    than the bounds allow; malformed entries are misses."""
    raw = json.dumps(
        {"url": WELL_KNOWN, "max_age": 120.0, "fresh_until": 1_000.0, "document": as_doc()}
    )
    found = from_shared(raw, issuer=ISSUER, allow_insecure_http=False, now=900.0)
    assert found is not None
    metadata, remaining = found
    assert (metadata.token_endpoint, metadata.max_age, remaining) == (ENDPOINT, 120.0, 100.0)
    text = shared_metadata(metadata, fresh_until=2_000.0)
    assert text is not None
    again = from_shared(text, issuer=ISSUER, allow_insecure_http=False, now=1_990.0)
    assert again is not None
    assert again[1] == 10.0
    forever = json.dumps(
        {"url": WELL_KNOWN, "max_age": 1e9, "fresh_until": 1e12, "document": as_doc()}
    )
    capped = from_shared(forever, issuer=ISSUER, allow_insecure_http=False, now=0.0)
    assert capped is not None
    assert capped[1] == MAX_MAX_AGE
    for bad in ["", "[]", "{", json.dumps({"url": WELL_KNOWN}), raw.replace("120.0", "true")]:
        assert from_shared(bad, issuer=ISSUER, allow_insecure_http=False, now=0.0) is None
    assert from_shared(raw, issuer=ISSUER + "/", allow_insecure_http=False, now=0.0) is None
