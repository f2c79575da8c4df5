"""1. Cached-token overhead: what one request costs with a fresh token in the cache.

Every variant makes the same full ``client.get()`` through the same
``httpx.MockTransport`` handler, so the ratio is of the end-to-end request
cost (httpx's client, the auth flow, the mock transport), not of the auth
flow alone. The baseline is an ``httpx.Auth`` whose ``auth_flow`` sets a
static ``Authorization`` header. Variants run in rotated order, round after
round, in one process; the ratio of a round is taken against the baseline of
the same round, and the table shows the median over rounds.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from _common import (
    API_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_URL,
    Row,
    Section,
    StaticHeader,
    clear_httpx_auth_cache,
    fast_handler,
    iqr,
    median,
    peers,
    rotations,
    verdict,
)

from httpx_tokenauth import ClientCredentials, TokenAuth

TARGET = 1.05

SyncGet = Callable[[], httpx.Response]
AsyncGet = Callable[[], Awaitable[httpx.Response]]


def _transport() -> httpx.MockTransport:
    return httpx.MockTransport(fast_handler)


def _provider() -> ClientCredentials:
    return ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def _check(response: httpx.Response, name: str) -> None:
    sent = response.request.headers.get("authorization")
    if response.status_code != 200 or sent != "Bearer t1":
        raise RuntimeError(f"{name}: unexpected {response.status_code}, sent {sent!r}")


def _sync_variants(closers: list[Callable[[], Any]]) -> dict[str, SyncGet]:
    p = peers()
    clients: dict[str, httpx.Client] = {
        "baseline": httpx.Client(auth=StaticHeader(), transport=_transport()),
        "ours": httpx.Client(
            auth=TokenAuth(_provider(), token_client=httpx.Client(transport=_transport())),
            transport=_transport(),
        ),
    }
    if p.authlib is not None:
        client = p.authlib.OAuth2Client(
            CLIENT_ID,
            CLIENT_SECRET,
            token_endpoint=TOKEN_URL,
            grant_type="client_credentials",
            transport=_transport(),
        )
        client.fetch_token()  # authlib needs a token before the first request
        clients["authlib"] = client
    if p.httpx_auth is not None:
        clear_httpx_auth_cache()
        auth = p.httpx_auth.OAuth2ClientCredentials(
            TOKEN_URL, CLIENT_ID, CLIENT_SECRET, client=httpx.Client(transport=_transport())
        )
        clients["httpx-auth"] = httpx.Client(auth=auth, transport=_transport())
    gets: dict[str, SyncGet] = {}
    for name, client in clients.items():
        _check(client.get(API_URL), name)
        gets[name] = _bind_sync(client)
        closers.append(client.close)
    return gets


def _bind_sync(client: httpx.Client) -> SyncGet:
    def get() -> httpx.Response:
        return client.get(API_URL)

    return get


def _bind_async(client: httpx.AsyncClient) -> AsyncGet:
    async def get() -> httpx.Response:
        return await client.get(API_URL)

    return get


async def _async_variants(closers: list[Callable[[], Any]]) -> dict[str, AsyncGet]:
    p = peers()
    clients: dict[str, httpx.AsyncClient] = {
        "baseline": httpx.AsyncClient(auth=StaticHeader(), transport=_transport()),
        "ours": httpx.AsyncClient(
            auth=TokenAuth(
                _provider(), async_token_client=httpx.AsyncClient(transport=_transport())
            ),
            transport=_transport(),
        ),
    }
    if p.authlib is not None:
        client = p.authlib.AsyncOAuth2Client(
            CLIENT_ID,
            CLIENT_SECRET,
            token_endpoint=TOKEN_URL,
            grant_type="client_credentials",
            transport=_transport(),
        )
        await client.fetch_token()
        clients["authlib"] = client
    if p.httpx_auth is not None:
        clear_httpx_auth_cache()
        auth = p.httpx_auth.OAuth2ClientCredentials(
            TOKEN_URL, CLIENT_ID, CLIENT_SECRET, client=httpx.Client(transport=_transport())
        )
        clients["httpx-auth"] = httpx.AsyncClient(auth=auth, transport=_transport())
    gets: dict[str, AsyncGet] = {}
    for name, client in clients.items():
        _check(await client.get(API_URL), name)
        gets[name] = _bind_async(client)
        closers.append(client.aclose)
    return gets


def _batch_sync(get: SyncGet, n: int) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(n):
        get()
    return (time.perf_counter_ns() - start) / n


async def _batch_async(get: AsyncGet, n: int) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(n):
        await get()
    return (time.perf_counter_ns() - start) / n


def _measure_sync(n: int, rounds: int) -> dict[str, list[float]]:
    closers: list[Callable[[], Any]] = []
    gets = _sync_variants(closers)
    try:
        for get in gets.values():  # warm-up, discarded
            _batch_sync(get, max(n // 4, 10))
        times: dict[str, list[float]] = {name: [] for name in gets}
        for order in rotations(list(gets), rounds):
            for name in order:
                times[name].append(_batch_sync(gets[name], n))
        return times
    finally:
        for close in closers:
            close()
        clear_httpx_auth_cache()


async def _measure_async(n: int, rounds: int) -> dict[str, list[float]]:
    closers: list[Callable[[], Any]] = []
    gets = await _async_variants(closers)
    try:
        for get in gets.values():
            await _batch_async(get, max(n // 4, 10))
        times: dict[str, list[float]] = {name: [] for name in gets}
        for order in rotations(list(gets), rounds):
            for name in order:
                times[name].append(await _batch_async(gets[name], n))
        return times
    finally:
        for close in closers:
            await close()
        clear_httpx_auth_cache()


def _summarize(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    base = times["baseline"]
    out: dict[str, dict[str, float]] = {}
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        extra = [v - b for v, b in zip(values, base, strict=True)]
        lo, hi = iqr(values)
        rlo, rhi = iqr(ratios)
        out[name] = {
            "ns_median": median(values),
            "ns_p25": lo,
            "ns_p75": hi,
            "ratio_median": median(ratios),
            "ratio_p25": rlo,
            "ratio_p75": rhi,
            "extra_ns_median": median(extra),
        }
    return out


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['ratio_median']:.3f}x ({stats['extra_ns_median'] / 1000:+.1f} µs)"


def run(*, quick: bool) -> Section:
    n, rounds = (100, 2) if quick else (200, 150)
    results = {
        "sync": _summarize(_measure_sync(n, rounds)),
        "async": _summarize(asyncio.run(_measure_async(n, rounds))),
    }
    p = peers()
    rows: list[Row] = []
    details: list[list[str]] = []
    for key, flavor, label in (
        ("1a", "sync", "httpx.Client"),
        ("1b", "async", "httpx.AsyncClient"),
    ):
        stats = results[flavor]
        ours = stats["ours"]
        rows.append(
            Row(
                key=key,
                measurement=f"Cached-token overhead, {label} (ratio to static header, "
                "end-to-end get())",
                ours=_cell(ours),
                baseline=f"1x = {stats['baseline']['ns_median'] / 1000:.1f} µs/request",
                authlib=_cell(stats["authlib"])
                if "authlib" in stats
                else str(p.missing("authlib")),
                httpx_auth=_cell(stats["httpx-auth"])
                if "httpx-auth" in stats
                else str(p.missing("httpx-auth")),
                target=f"≤ {TARGET:.2f}x",
                result=verdict(ours["ratio_median"] <= TARGET),
            )
        )
        for name, s in stats.items():
            details.append(
                [
                    flavor,
                    name,
                    f"{s['ns_median'] / 1000:.2f}",
                    f"{s['ns_p25'] / 1000:.2f}-{s['ns_p75'] / 1000:.2f}",
                    f"{s['ratio_median']:.3f}",
                    f"{s['ratio_p25']:.3f}-{s['ratio_p75']:.3f}",
                    f"{s['extra_ns_median'] / 1000:+.2f}",
                ]
            )
    return Section(
        title="1. Cached-token overhead",
        rows=rows,
        details_header=[
            "flavor",
            "variant",
            "µs/request (median)",
            "IQR",
            "ratio (median)",
            "ratio IQR",
            "extra µs/request",
        ],
        details=details,
        notes=[
            f"{rounds} rounds x {n} sequential requests per variant, variants in rotated "
            "order; ratio = variant / baseline of the same round, median over rounds.",
            "Each request is a full client.get() through the same httpx.MockTransport "
            "handler: the ratio is of end-to-end request cost, not of the auth flow alone.",
        ],
        data={"n": n, "rounds": rounds, **results},
    )
