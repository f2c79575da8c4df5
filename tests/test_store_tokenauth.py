"""TokenAuth with a real shared store (Valkey): the store is never a new point of failure
(SPEC F5), the hot path never touches it (F6), and only identical credentials share an
entry (F1). Through real clients: sync, asyncio and trio; httpx and httpx2."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest

from httpx_tokenauth import RedisTokenStore, generate_encryption_key
from httpx_tokenauth.testing import ValkeyServer

from conftest import CLIENT_ID, CLIENT_SECRET, Env, token_json

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def shared_valkey() -> Iterator[ValkeyServer]:
    with ValkeyServer() as server:
        yield server


@pytest.fixture
def valkey() -> Iterator[ValkeyServer]:
    """A server of this test's own: it may be stopped, paused or flushed."""
    with ValkeyServer() as server:
        yield server


class Stores:
    """Stores made for one test, closed at its end (asyncio clients are per event loop)."""

    def __init__(self) -> None:
        self.made: list[RedisTokenStore] = []
        self.key = generate_encryption_key()

    def __call__(self, server: ValkeyServer, **kwargs: Any) -> RedisTokenStore:
        kwargs.setdefault("timeout", 0.3)
        store = RedisTokenStore.from_url(server.url, encryption_key=self.key, **kwargs)
        self.made.append(store)
        return store


@pytest.fixture
async def stores() -> AsyncIterator[Stores]:
    made = Stores()
    yield made
    for store in made.made:
        await store.aclose()
        store.close()


def store_events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def second_auth(env: Env, store: RedisTokenStore) -> Any:
    """Another TokenAuth with the same credential: another process, as far as the store sees."""
    return env.auth_cls(
        env.provider(),
        store=store,
        clock=env.clock,
        token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
        async_token_client=env.http.AsyncClient(transport=env.transport(env.auth_server.ahandler)),
    )


async def get_token(env: Env, auth: Any) -> Any:
    if env.is_sync:
        return await anyio.to_thread.run_sync(auth.get_token)
    return await auth.aget_token()


async def test_f1_another_process_with_the_same_credential_adopts_the_shared_token(
    env: Env, shared_valkey: ValkeyServer, stores: Stores
) -> None:
    """A second TokenAuth with the same credential and store gets the token without a request."""
    env.make(store=stores(shared_valkey))
    assert (await env.request()).status_code == 200
    other = second_auth(env, stores(shared_valkey))
    token = await get_token(env, other)
    assert token.access_token == "t1"
    assert env.auth_server.count == 1


async def test_f1_a_different_scope_is_a_separate_entry(
    env: Env, shared_valkey: ValkeyServer, stores: Stores
) -> None:
    """A TokenAuth asking for another scope never receives the first one's token (SPEC S3)."""
    env.make(store=stores(shared_valkey))
    await env.request()
    other = env.auth_cls(
        env.provider(scope="admin"),
        store=stores(shared_valkey),
        clock=env.clock,
        token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
        async_token_client=env.http.AsyncClient(transport=env.transport(env.auth_server.ahandler)),
    )
    token = await get_token(env, other)
    assert token.access_token == "t2"
    assert env.auth_server.count == 2
    assert env.auth_server.forms[1]["scope"] == ["admin"]


async def test_f5_a_store_that_is_down_costs_one_request_and_one_warning(
    env: Env, valkey: ValkeyServer, stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    """With the store down, concurrent callers still share one in-process fetch; no caller
    sees an error, and the outage is warned about once, not per request."""
    store = stores(valkey)
    valkey.stop()
    env.make(store=store)
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        responses = await env.gather(12)
        env.api.accept = lambda token: token != "t1"  # the next request renews
        assert (await env.request()).status_code == 200
    assert [r.status_code for r in responses] == [200] * 12
    assert env.auth_server.count == 2
    assert len(store_events(caplog, "store_failed")) == 1


async def test_f5_a_store_that_hangs_is_bounded_by_its_timeout(
    env: Env, valkey: ValkeyServer, stores: Stores
) -> None:
    """A store that stops answering (SIGSTOP) costs at most its timeout: callers get tokens."""
    store = stores(valkey, timeout=0.2)
    env.make(store=store)
    valkey.pause()
    try:
        responses = await env.gather(6)
    finally:
        valkey.resume()
    assert [r.status_code for r in responses] == [200] * 6
    assert env.auth_server.count == 1


async def test_f5_recovery_after_an_outage_is_automatic(
    env: Env, valkey: ValkeyServer, stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    """After the store comes back, the next fetch is shared again, and recovery is logged."""
    store = stores(valkey)
    valkey.stop()
    auth = env.make(store=store)
    with caplog.at_level(logging.INFO, logger="httpx_tokenauth"):
        assert (await env.request()).status_code == 200  # t1, not shared: the store is down
        valkey.start()
        auth.invalidate(auth._cache.token)
        assert (await env.request()).status_code == 200  # t2, shared now
    other = second_auth(env, stores(valkey))
    assert (await get_token(env, other)).access_token == "t2"
    assert env.auth_server.count == 2
    assert len(store_events(caplog, "store_failed")) == 1
    assert len(store_events(caplog, "store_recovered")) == 1


async def test_f5_garbage_in_the_store_is_a_miss(
    env: Env, valkey: ValkeyServer, stores: Stores
) -> None:
    """An entry that does not decrypt (garbage, or another key's) is a miss, never an error."""
    store = stores(valkey)
    auth = env.make(store=store)
    names = auth._acquisition.names
    assert names is not None
    valkey.command("SET", names.entry, "v1.garbage.not-an-entry")
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 1
    other = second_auth(env, stores(valkey))
    assert (await get_token(env, other)).access_token == "t1"  # the garbage was replaced


async def test_f5_an_evicted_entry_is_a_miss(
    env: Env, valkey: ValkeyServer, stores: Stores
) -> None:
    """Keys evicted (here: FLUSHALL) between processes: the next one simply fetches."""
    env.make(store=stores(valkey))
    await env.request()
    valkey.command("FLUSHALL")
    other = second_auth(env, stores(valkey))
    assert (await get_token(env, other)).access_token == "t2"
    assert env.auth_server.count == 2


async def test_f6_the_hot_path_never_touches_the_store(
    env: Env, valkey: ValkeyServer, stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    """While the cached token is fresh, requests do not use the store: with it gone, nothing
    fails, nothing is fetched and nothing is warned about."""
    env.make(store=stores(valkey))
    await env.request()
    valkey.stop()
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        responses = [await env.request() for _ in range(50)]
    assert [r.status_code for r in responses] == [200] * 50
    assert env.auth_server.count == 1
    assert store_events(caplog, "store_failed") == []


async def test_f4_the_stored_value_holds_no_token_or_identifier_in_clear(
    env: Env, shared_valkey: ValkeyServer, stores: Stores
) -> None:
    """What TokenAuth writes to Redis: no access token, client id, secret, scope or URL."""
    access_token = "the-access-token-value-9f8e7d6c"
    env.auth_server.reply = lambda request, n: httpx.Response(
        200, json=token_json(access_token, scope="scope-for-reports")
    )
    auth = env.make(
        env.provider(scope="scope-for-reports"),
        store=stores(shared_valkey),
        token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
        async_token_client=env.http.AsyncClient(transport=env.transport(env.auth_server.ahandler)),
    )
    await env.request()
    names = auth._acquisition.names
    assert names is not None
    raw = shared_valkey.command("GET", names.entry)
    assert isinstance(raw, (bytes, str))
    text = raw.decode() if isinstance(raw, bytes) else raw
    for clear in (access_token, CLIENT_ID, CLIENT_SECRET, "scope-for-reports", "as.example"):
        assert clear not in text
        assert clear not in names.entry
    assert CLIENT_SECRET not in repr(auth)


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_f5_sync_callers_holding_every_worker_thread_do_not_stall_the_store(
    env: Env, tmp_path: Any
) -> None:
    """Sync callers filling anyio's thread pool while a task's fetch needs a thread for the
    file store do not stall it: store operations use threads of their own."""
    from httpx_tokenauth import FileTokenStore

    auth = env.make(store=FileTokenStore(tmp_path, encryption_key=generate_encryption_key()))
    sync_client = env.http.Client(auth=auth, transport=env.transport(env.api.handler))
    threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
    go = __import__("threading").Event()
    statuses: list[int] = []

    def blocking_call() -> int:
        go.wait(10)  # hold a pool thread until the task's fetch is under way
        return int(sync_client.get("https://api.example/things").status_code)

    async def sync_caller() -> None:
        statuses.append(await anyio.to_thread.run_sync(blocking_call, abandon_on_cancel=True))

    async def task_caller() -> None:
        statuses.append((await env.request()).status_code)

    with anyio.fail_after(10):  # a deadlock guard, not a timing
        async with anyio.create_task_group() as tg:
            for _ in range(threads):
                tg.start_soon(sync_caller)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(task_caller)
            await anyio.wait_all_tasks_blocked()
            go.set()
    sync_client.close()
    assert statuses == [200] * (threads + 1)
    assert env.auth_server.count == 1
