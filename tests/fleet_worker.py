"""One process of a simulated fleet, for tests/test_fleet.py and bench/fleet.py.

Started with multiprocessing's "spawn" context: a fresh interpreter that builds
its own TokenAuth (with the shared store under test, or none), then runs one
phase of concurrent API calls each time the parent releases the barrier, and
reports what its callers got. The parent moves the fleet's clock (a shared
offset added to time.time()) and counts the token requests the authorization
server received.
"""

from __future__ import annotations

import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from httpx_tokenauth import (
    ClientCredentials,
    FileTokenStore,
    RedisTokenStore,
    RetryPolicy,
    TokenAuth,
    TokenStore,
)


def build_store(cfg: dict[str, Any]) -> TokenStore | None:
    kind = cfg["store"]
    if kind == "redis":
        return RedisTokenStore.from_url(cfg["redis_url"], encryption_key=cfg["key"])
    if kind == "file":
        return FileTokenStore(cfg["directory"], encryption_key=cfg["key"])
    return None


def run(cfg: dict[str, Any], barrier: Any, offset: Any, out: Any) -> None:
    """Serve phases until the parent sends no more: each is one burst of callers."""
    verify = ssl.create_default_context(cadata=cfg["ca_pem"])

    def clock() -> float:
        return time.time() + offset.value

    if cfg.get("issuer"):  # configured by issuer: the token endpoint comes from metadata
        grant = ClientCredentials.from_issuer(
            cfg["issuer"],
            client_id=cfg["client_id"],
            client_secret=cfg["client_secret"],
            resource_discovery=False,
        )
    else:
        grant = ClientCredentials(
            cfg["token_url"], client_id=cfg["client_id"], client_secret=cfg["client_secret"]
        )
    auth = TokenAuth(
        grant,
        token_client=httpx.Client(verify=verify, timeout=30),
        async_token_client=httpx.AsyncClient(verify=verify, timeout=30),
        store=build_store(cfg),
        clock=clock,
        retry=RetryPolicy(deadline=cfg.get("deadline", 30.0)),
    )
    if cfg["mode"] == "threads":
        _threads(auth, cfg, verify, barrier, out)
    else:
        import asyncio

        asyncio.run(_tasks(auth, cfg, verify, barrier, out))


def _threads(auth: TokenAuth, cfg: dict[str, Any], verify: Any, barrier: Any, out: Any) -> None:
    callers = cfg["callers"]
    with ThreadPoolExecutor(callers) as pool:
        for _phase in range(cfg["phases"]):
            barrier.wait()
            go = threading.Barrier(callers)
            started = time.perf_counter()
            # A client per phase: no connection sits idle past the server's keep-alive.
            with httpx.Client(
                auth=auth, verify=verify, base_url=cfg["api_url"], timeout=30
            ) as client:

                def one(_: int, go: threading.Barrier = go, client: httpx.Client = client) -> int:
                    go.wait()
                    return client.get("/things").status_code

                statuses = list(pool.map(one, range(callers)))
            out.put((statuses, time.perf_counter() - started))
            barrier.wait()


async def _tasks(auth: TokenAuth, cfg: dict[str, Any], verify: Any, barrier: Any, out: Any) -> None:
    import asyncio

    callers = cfg["callers"]
    limits = httpx.Limits(max_connections=callers)
    for _phase in range(cfg["phases"]):
        await asyncio.to_thread(barrier.wait)
        started = time.perf_counter()
        async with httpx.AsyncClient(
            auth=auth, verify=verify, base_url=cfg["api_url"], timeout=30, limits=limits
        ) as client:
            responses = await asyncio.gather(*(client.get("/things") for _ in range(callers)))
        out.put(([r.status_code for r in responses], time.perf_counter() - started))
        await asyncio.to_thread(barrier.wait)
