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
    IssuerMismatchError,
    RedisTokenStore,
    RetryPolicy,
    TokenAuth,
    TokenStore,
    generate_encryption_key,
)
from httpx_tokenauth._discovery import (
    MAX_MAX_AGE,
    from_shared,
    shared_metadata,
    shared_metadata_identity,
)
from httpx_tokenauth._program import Effect, FetchDocument, Send, StoreCall
from httpx_tokenauth._store import GetDocument, PutDocument
from httpx_tokenauth.testing import ValkeyServer
from test_discovery import (
    ENDPOINT,
    ISSUER,
    SECRET,
    WELL_KNOWN,
    Mono,
    Servers,
    as_doc,
    doc_response,
    grant,
    token_response,
)
from test_program import step

from conftest import Clock, Env

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

    async def token(self, auth: Any, *, force: bool = False) -> str:
        """A token as a caller gets it; ``force``: a new one, as after a renewal elsewhere."""
        if self.env.is_sync:
            token = await anyio.to_thread.run_sync(lambda: auth.get_token(force=force))
        else:
            token = await auth.aget_token(force=force)
        return str(token.access_token)

    async def renewed(self, auth: Any) -> str:
        """The token a process gets when it renews the shared one itself."""
        await self.token(auth)  # adopted from the store, or fetched
        return await self.token(auth, force=True)

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
    """The first process fetches the metadata and shares it with the token; the next ones
    adopt the token, and when they renew it themselves they send to the endpoint the
    shared document names, with no metadata request of their own."""
    first = fleet.process()
    assert await fleet.token(first) == "t1"
    second, third = fleet.process(), fleet.process()
    assert await fleet.token(second) == "t1"  # adopted: no request at all
    with caplog.at_level(logging.INFO, logger="httpx_tokenauth"):
        assert await fleet.renewed(second) == "t2"
        assert await fleet.renewed(third) == "t3"
    assert fleet.servers.gets() == [WELL_KNOWN]
    assert fleet.servers.posts() == [ENDPOINT, ENDPOINT, ENDPOINT]
    adopted = [r for r in caplog.records if getattr(r, "event", None) == "metadata_adopted"]
    assert len(adopted) == 2
    assert SECRET not in caplog.text


async def test_m6_a_plaintext_store_shares_tokens_but_not_metadata(fleet: Fleet) -> None:
    """Without encryption anyone who can write to the store could name a token endpoint of
    their own; so each process fetches the metadata itself."""
    assert await fleet.token(fleet.process(fleet.store(encryption_key=None))) == "t1"
    second = fleet.process(fleet.store(encryption_key=None))
    assert await fleet.renewed(second) == "t2"
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
    assert await fleet.renewed(fleet.process()) == "t3"
    assert await fleet.renewed(fleet.process()) == "t4"
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


async def test_m6_a_store_that_stops_answering_mid_fetch_is_not_waited_on_again(
    env: Env,
) -> None:
    """The store hangs after the token lease was taken: the metadata read times out, the
    fetch goes ahead, and the fetched metadata is not offered to the hung store."""
    with ValkeyServer() as own:
        asked: list[str] = []

        class Observed(RedisTokenStore):
            """The real store; it notes each operation, and the server stops at the first
            metadata read."""

            def _note(self, op: Any) -> None:
                asked.append(type(op).__name__)
                if isinstance(op, GetDocument):
                    own.pause()

            def execute(self, op: Any) -> Any:
                self._note(op)
                return super().execute(op)

            async def aexecute(self, op: Any) -> Any:
                self._note(op)
                return await super().aexecute(op)

        store = Observed.from_url(own.url, encryption_key=generate_encryption_key(), timeout=0.3)
        servers = Servers()
        servers.metadata()
        fleet = Fleet(env, servers, lambda **o: store)
        auth = fleet.process(store)
        try:
            assert await fleet.token(auth) == "t1"
        finally:
            own.resume()
            await fleet.aclose()
    assert servers.gets() == [WELL_KNOWN]
    assert "GetDocument" in asked
    assert "PutDocument" not in asked


async def test_m6_what_is_shared_is_what_was_fetched_and_checked_like_it(fleet: Fleet) -> None:
    """The stored document reads back to the same metadata; one planted under the
    credential's name by a holder of the key is checked as if fetched: another issuer, an
    http token endpoint, a location that is not the issuer's, or a stale one is not used."""
    store = fleet.store()
    auth = fleet.process(store)
    assert await fleet.token(auth) == "t1"
    names = auth._acquisition._document_names(store, auth._acquisition.discovery)
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
        assert await fleet.renewed(fleet.process()) == f"t{n + 2}"
    assert fleet.servers.gets() == [WELL_KNOWN] * 5
    assert fleet.servers.posts() == [ENDPOINT] * 5


async def test_m6_the_store_key_alone_cannot_point_another_clients_credentials_elsewhere(
    fleet: Fleet,
) -> None:
    """A process that holds the store key but another client's credential writes metadata
    naming its own endpoint, under its own name and under the issuer's alone: this client
    never reads it, fetches the metadata itself, and sends its secret only to the real
    endpoint."""
    evil = json.dumps(
        {
            "url": WELL_KNOWN,
            "max_age": 3600.0,
            "fresh_until": fleet.env.clock() + 3600,
            "document": as_doc(endpoint="https://evil.example/token"),
        }
    )
    store = fleet.store()
    mallory = fleet.process(store, client_id="mallory")
    for names in (
        mallory._acquisition._document_names(store, mallory._acquisition.discovery),
        store.document_names(shared_metadata_identity(ISSUER, False)),
    ):
        store.execute(PutDocument(names, evil, ttl_ms=60_000))
    assert await fleet.token(fleet.process()) == "t1"
    assert fleet.servers.gets() == [WELL_KNOWN]
    assert fleet.servers.posts() == [ENDPOINT]


async def test_m6_a_document_from_the_store_stays_with_the_token_auth_that_took_it(
    fleet: Fleet,
) -> None:
    """A TokenAuth that took the metadata from the store keeps it to itself: another one in
    the same process, over the same token client but without the store, reads the
    metadata from the server and follows that."""
    servers = fleet.servers
    servers.endpoints[MOVED] = None
    writer = fleet.process()
    assert await fleet.token(writer) == "t1"
    names = writer._acquisition._document_names(
        writer._acquisition.store, writer._acquisition.discovery
    )
    entry = json.loads(writer._acquisition.store.execute(GetDocument(names)))
    entry["document"] = as_doc(endpoint=MOVED)  # what a fleet member of this client shared
    writer._acquisition.store.execute(PutDocument(names, json.dumps(entry), ttl_ms=60_000))
    env = fleet.env
    token_client = env.http.Client(transport=env.transport(servers.handler))
    async_token_client = env.http.AsyncClient(transport=env.transport(servers.ahandler))
    with_store = env.auth_cls(
        grant(),
        store=fleet.store(),
        clock=env.clock,
        token_client=token_client,
        async_token_client=async_token_client,
    )
    without = env.auth_cls(
        grant(client_id="another-client"),
        clock=env.clock,
        token_client=token_client,
        async_token_client=async_token_client,
    )
    assert await fleet.renewed(with_store) == "t2"
    assert await fleet.token(without) == "t3"
    assert servers.posts() == [ENDPOINT, MOVED, ENDPOINT]
    assert servers.gets() == [WELL_KNOWN, WELL_KNOWN]


async def test_m6_metadata_that_does_not_round_trip_is_used_but_not_shared(
    fleet: Fleet,
) -> None:
    """A document JSON accepts but cannot write back (NaN, a lone surrogate) works as
    before: each process that needs it fetches it; no error reaches a caller."""
    doc = json.dumps(as_doc())[:-1] + ', "x": NaN, "y": "\\ud800"}'
    fleet.servers.serve(WELL_KNOWN, doc.encode())
    assert await fleet.token(fleet.process()) == "t1"
    assert await fleet.renewed(fleet.process()) == "t2"
    assert fleet.servers.gets() == [WELL_KNOWN, WELL_KNOWN]
    assert fleet.servers.posts() == [ENDPOINT, ENDPOINT]


async def test_m6_issuers_that_differ_by_a_slash_or_by_http_mode_keep_separate_documents(
    fleet: Fleet,
) -> None:
    """SPEC M1's exact match holds in the store too: a process configured with a trailing
    '/' reads the document itself and is refused it (not handed the other's); one with
    allow_insecure_http reads and shares a document of its own."""
    servers = fleet.servers
    assert await fleet.renewed(fleet.process()) == "t2"
    with pytest.raises(IssuerMismatchError) as info:
        await fleet.token(fleet.process(issuer=ISSUER + "/"))
    assert (info.value.expected, info.value.found) == (ISSUER + "/", ISSUER)
    assert await fleet.renewed(fleet.process(allow_insecure_http=True)) == "t3"
    assert await fleet.renewed(fleet.process(allow_insecure_http=True)) == "t4"
    assert servers.gets() == [WELL_KNOWN] * 3
    assert servers.posts() == [ENDPOINT] * 4


async def test_m6_a_rotated_key_list_reads_what_the_old_key_shared(fleet: Fleet) -> None:
    """Key rotation (SPEC F8): a process on [new, old] uses metadata shared under old."""
    old = fleet.key
    assert await fleet.token(fleet.process(fleet.store(encryption_key=old))) == "t1"
    rotated = fleet.process(fleet.store(encryption_key=[generate_encryption_key(), old]))
    assert await fleet.renewed(rotated) == "t2"
    assert fleet.servers.gets() == [WELL_KNOWN]


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


def test_m6_a_document_from_the_store_is_fresh_for_what_is_left_of_its_max_age(
    tmp_path: Path,
) -> None:
    """Stepped, with a real FileTokenStore: a document written with max-age=120 and read
    100 s later is used for the 20 s left, then looked for again; stale everywhere by then,
    it is fetched and shared anew."""
    key = generate_encryption_key()
    wall = Clock()

    def process(now: float) -> tuple[Any, Any]:
        clock = Clock(now)
        auth = TokenAuth(
            grant(),
            store=FileTokenStore(tmp_path, encryption_key=key),
            clock=clock,
            retry=RetryPolicy.off(),
            token_client=httpx.Client(),
        )
        mono = Mono()
        auth._acquisition.monotonic = mono
        return auth._acquisition, (clock, mono)

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, FetchDocument):
            return doc_response(as_doc(), **{"cache-control": "max-age=120"})
        if isinstance(effect, StoreCall):
            return effect.store.execute(effect.op)
        assert isinstance(effect, Send)
        return token_response("t")

    def seen(acq: Any) -> list[str]:
        effects, result = step(acq._fetch(renewing=False, blocking=True), respond)
        assert not isinstance(result, BaseException), result
        return [
            type(e.op).__name__ if isinstance(e, StoreCall) else type(e).__name__ for e in effects
        ]

    writer, _ = process(wall())
    assert seen(writer) == ["GetDocument", "FetchDocument", "PutDocument", "Send"]
    reader, (clock, mono) = process(wall() + 100)
    assert seen(reader) == ["GetDocument", "Send"]
    mono.now += 19
    clock.advance(19)
    assert seen(reader) == ["Send"]
    mono.now += 2
    clock.advance(2)
    assert seen(reader) == ["GetDocument", "FetchDocument", "PutDocument", "Send"]
