"""10. The hot path with a shared store: cached-token overhead with ``store=`` vs without.

The overhead benchmark's method (1.), for TokenAuth with a RedisTokenStore (a
real valkey-server from ``ValkeyServer``) and with a FileTokenStore, against
the same TokenAuth without a store: the same full ``client.get()`` through
the same ``httpx.MockTransport`` handler, variants in rotated order round
after round, each round's ratio against the no-store variant of the same
round, the median over rounds. While the token is fresh the store must not be
touched at all (SPEC F6); the benchmark counts what reached each store during
the timed requests: the commands Valkey executed (``INFO commandstats``) and
the operations the file store was asked for.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from _common import API_URL, Row, Section, StaticHeader, iqr, median, rotations, verdict
from overhead import (
    AsyncGet,
    SyncGet,
    _batch_async,
    _batch_sync,
    _bind_async,
    _bind_sync,
    _check,
    _provider,
    _transport,
)

from httpx_tokenauth import FileTokenStore, TokenAuth, TokenStore, generate_encryption_key

TARGET = 1.02
T = TypeVar("T")

#: Redis commands a TokenAuth sends to its store (read, write, lock, unlock, delete-if).
_STORE_COMMANDS = ("get", "set", "eval", "evalsha", "del")


class CountingFileStore(FileTokenStore):
    """A FileTokenStore that counts the operations it is asked to carry out."""

    def __init__(self, directory: str, *, encryption_key: str) -> None:
        super().__init__(directory, encryption_key=encryption_key)
        self.operations = 0

    def execute(self, op: Any) -> Any:
        self.operations += 1
        return super().execute(op)

    async def aexecute(self, op: Any) -> Any:
        self.operations += 1
        return await super().aexecute(op)


def _available() -> str | None:
    try:
        import redis  # noqa: F401, PLC0415

        from httpx_tokenauth.testing import find_valkey_server  # noqa: PLC0415
    except ImportError as exc:
        return f"n/a ({exc.name} not installed: pip install -e '.[bench]')"
    if find_valkey_server() is None:
        return "n/a (no valkey-server binary)"
    return None


def _store_calls(valkey: Any) -> int:
    """How many store commands Valkey has executed so far (INFO commandstats)."""
    info = valkey.command("INFO", "commandstats")
    text = info.decode() if isinstance(info, bytes) else str(info)
    total = 0
    for name, calls in re.findall(r"cmdstat_(\w+):calls=(\d+)", text):
        if name in _STORE_COMMANDS:
            total += int(calls)
    return total


def _stores(valkey: Any, directory: str) -> dict[str, TokenStore]:
    from httpx_tokenauth import RedisTokenStore  # noqa: PLC0415

    return {
        "redis": RedisTokenStore.from_url(valkey.url, encryption_key=generate_encryption_key()),
        "file": CountingFileStore(directory, encryption_key=generate_encryption_key()),
    }


def _sync_clients(stores: dict[str, TokenStore]) -> dict[str, httpx.Client]:
    clients = {"baseline": httpx.Client(auth=StaticHeader(), transport=_transport())}
    for name, store in {"no store": None, **stores}.items():
        auth = TokenAuth(
            _provider(), token_client=httpx.Client(transport=_transport()), store=store
        )
        clients[name] = httpx.Client(auth=auth, transport=_transport())
    return clients


def _async_clients(stores: dict[str, TokenStore]) -> dict[str, httpx.AsyncClient]:
    clients = {"baseline": httpx.AsyncClient(auth=StaticHeader(), transport=_transport())}
    for name, store in {"no store": None, **stores}.items():
        auth = TokenAuth(
            _provider(), async_token_client=httpx.AsyncClient(transport=_transport()), store=store
        )
        clients[name] = httpx.AsyncClient(auth=auth, transport=_transport())
    return clients


def _rounds(names: list[str], rounds: int, batch: Callable[[str], T]) -> dict[str, list[T]]:
    times: dict[str, list[T]] = {name: [] for name in names}
    for order in rotations(names, rounds):
        for name in order:
            times[name].append(batch(name))
    return times


def _measure_sync(
    valkey: Any, stores: dict[str, TokenStore], n: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    clients = _sync_clients(stores)
    try:
        gets: dict[str, SyncGet] = {}
        for name, client in clients.items():
            response = client.get(API_URL)  # the first fetches the token and stores it
            _check(response, name)
            gets[name] = _bind_sync(client)
        for get in gets.values():
            _batch_sync(get, max(n // 4, 10))
        before = _touches(valkey, stores)
        times = _rounds(list(gets), rounds, lambda name: _batch_sync(gets[name], n))
        return times, _touched(valkey, stores, before)
    finally:
        for client in clients.values():
            client.close()


async def _measure_async(
    valkey: Any, stores: dict[str, TokenStore], n: int, rounds: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    clients = _async_clients(stores)
    try:
        gets: dict[str, AsyncGet] = {}
        for name, client in clients.items():
            _check(await client.get(API_URL), name)
            gets[name] = _bind_async(client)
        for get in gets.values():
            await _batch_async(get, max(n // 4, 10))
        before = _touches(valkey, stores)
        times: dict[str, list[float]] = {name: [] for name in gets}
        for order in rotations(list(gets), rounds):
            for name in order:
                times[name].append(await _batch_async(gets[name], n))
        return times, _touched(valkey, stores, before)
    finally:
        for client in clients.values():
            await client.aclose()
        for store in stores.values():
            await store.aclose()


def _touches(valkey: Any, stores: dict[str, TokenStore]) -> dict[str, int]:
    file_store = stores["file"]
    operations = file_store.operations if isinstance(file_store, CountingFileStore) else -1
    return {"redis": _store_calls(valkey), "file": operations}


def _touched(valkey: Any, stores: dict[str, TokenStore], before: dict[str, int]) -> dict[str, int]:
    after = _touches(valkey, stores)
    return {k: after[k] - before[k] for k in before}


def _summarize(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    base = times["no store"]
    static = times["baseline"]
    out: dict[str, dict[str, float]] = {}
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        lo, hi = iqr(ratios)
        out[name] = {
            "ns_median": median(values),
            "ratio_to_no_store": median(ratios),
            "ratio_p25": lo,
            "ratio_p75": hi,
            "extra_ns_median": median([v - b for v, b in zip(values, base, strict=True)]),
            "ratio_to_static": median([v / s for v, s in zip(values, static, strict=True)]),
        }
    return out


def _cell(stats: dict[str, float]) -> str:
    return (
        f"{stats['ratio_to_no_store']:.3f}x ({stats['extra_ns_median'] / 1000:+.1f} µs, "
        f"IQR {stats['ratio_p25']:.3f}-{stats['ratio_p75']:.3f})"
    )


def run(*, quick: bool) -> Section:
    why = _available()
    if why is not None:
        rows = [Row(key=k, measurement="Hot path with a store", ours=why) for k in ("10a", "10b")]
        return Section(title="10. Hot path with a store", rows=rows, notes=[why])
    from httpx_tokenauth.testing import ValkeyServer  # noqa: PLC0415

    n, rounds = (100, 2) if quick else (200, 150)
    with ValkeyServer() as valkey, tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        stores = _stores(valkey, tmp)
        try:
            sync_times, sync_touched = _measure_sync(valkey, stores, n, rounds)
            async_times, async_touched = asyncio.run(_measure_async(valkey, stores, n, rounds))
        finally:
            for store in stores.values():
                store.close()
    results = {"sync": _summarize(sync_times), "async": _summarize(async_times)}
    touched = {"sync": sync_touched, "async": async_touched}
    rows: list[Row] = []
    details: list[list[str]] = []
    for key, flavor, label in (
        ("10a", "sync", "httpx.Client"),
        ("10b", "async", "httpx.AsyncClient"),
    ):
        stats = results[flavor]
        worst = max(stats["redis"]["ratio_to_no_store"], stats["file"]["ratio_to_no_store"])
        untouched = touched[flavor]["redis"] == 0 and touched[flavor]["file"] == 0
        rows.append(
            Row(
                key=key,
                measurement=f"Cached-token overhead with store= vs without, {label} "
                "(end-to-end get()); store operations during the timed requests",
                ours=f"Redis store: {_cell(stats['redis'])}, {touched[flavor]['redis']} "
                f"commands; file store: {_cell(stats['file'])}, "
                f"{touched[flavor]['file']} operations",
                baseline=f"1x = no store, {stats['no store']['ns_median'] / 1000:.1f} µs/request",
                authlib="n/a (no shared store)",
                httpx_auth="n/a (no shared store)",
                target=f"≤ {TARGET:.2f}x, 0 store operations",
                result=verdict(worst <= TARGET and untouched),
            )
        )
        for name, s in stats.items():
            details.append(
                [
                    flavor,
                    name,
                    f"{s['ns_median'] / 1000:.2f}",
                    f"{s['ratio_to_no_store']:.3f}",
                    f"{s['ratio_p25']:.3f}-{s['ratio_p75']:.3f}",
                    f"{s['extra_ns_median'] / 1000:+.2f}",
                    f"{s['ratio_to_static']:.3f}",
                ]
            )
    return Section(
        title="10. Hot path with a store",
        rows=rows,
        details_header=[
            "flavor",
            "variant",
            "µs/request (median)",
            "ratio to no store (median)",
            "ratio IQR",
            "extra µs/request",
            "ratio to static header",
        ],
        details=details,
        notes=[
            f"{rounds} rounds x {n} sequential requests per variant, variants in rotated "
            "order; ratio = variant / no-store TokenAuth of the same round, median over rounds.",
            "Each TokenAuth's first request fetched the token (from the mock endpoint) and "
            "wrote it to its store; the timed requests then find it fresh in the process's "
            "own cache. Store operations are counted over all the timed requests: Valkey's "
            "INFO commandstats (GET, SET, EVAL, DEL) and a FileTokenStore subclass that "
            "counts execute()/aexecute() calls.",
        ],
        data={"n": n, "rounds": rounds, **results, "store_operations": touched},
    )
