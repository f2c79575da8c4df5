"""2. Token requests under a herd: how many token requests N simultaneous callers cause.

Three moments: a cold start (no token yet), an expiry (every caller finds the
cached token expired), and a 401 storm (the API rejects the cached token; every
rejection is held until all N requests have been rejected, so they all arrive
at once). Callers are released together from a barrier: 1,000 asyncio tasks
on one httpx.AsyncClient, or 64 threads on one httpx.Client. The mock token
endpoint holds each answer (20 ms) so the herd really overlaps, and counts
the requests. Counts are exact, not timings: one run per cell.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import asdict, dataclass

from _common import Endpoint, Row, Section, peers, verdict
from _drivers import DRIVERS, Driver

SCENARIOS = ("cold start", "expiry", "401 storm")
LIBRARIES = ("ours", "authlib", "httpx-auth")


def _outcome(response_or_error: object) -> str:
    status = getattr(response_or_error, "status_code", None)
    return str(status) if status is not None else type(response_or_error).__name__


def _herd_threads(driver: Driver, n: int) -> Counter[str]:
    barrier = threading.Barrier(n, timeout=30)
    outcomes: list[str] = ["not run"] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = _outcome(driver.get())
        except Exception as exc:
            outcomes[i] = type(exc).__name__

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Counter(outcomes)


async def _herd_tasks(driver: Driver, n: int) -> Counter[str]:
    released = asyncio.Event()
    arrived = 0
    outcomes: list[str] = ["not run"] * n

    async def one(i: int) -> None:
        nonlocal arrived
        arrived += 1
        if arrived == n:
            released.set()
        await released.wait()
        try:
            outcomes[i] = _outcome(await driver.aget())
        except Exception as exc:
            outcomes[i] = type(exc).__name__

    await asyncio.gather(*(one(i) for i in range(n)))
    return Counter(outcomes)


def _prepare(endpoint: Endpoint, driver: Driver, scenario: str, n: int) -> None:
    """After the warm-up: bring the cached token into the scenario's state."""
    if scenario == "expiry":
        driver.expire()
    endpoint.reset_counts()
    if scenario == "401 storm":
        endpoint.reject = {"t1"}
        endpoint.reject_gate = n


def _run_sync(lib: str, scenario: str, n: int, hold: float) -> HerdResult:
    endpoint = Endpoint(hold=hold)
    driver = DRIVERS[lib](endpoint, "sync")
    try:
        if scenario != "cold start":
            driver.warm()
        _prepare(endpoint, driver, scenario, n)
        outcomes = _herd_threads(driver, n)
    finally:
        driver.close()
    return _result(endpoint, outcomes)


async def _run_async(lib: str, scenario: str, n: int, hold: float) -> HerdResult:
    endpoint = Endpoint(hold=hold)
    driver = DRIVERS[lib](endpoint, "async")
    try:
        if scenario != "cold start":
            await driver.awarm()
        _prepare(endpoint, driver, scenario, n)
        outcomes = await _herd_tasks(driver, n)
    finally:
        await driver.aclose()
    return _result(endpoint, outcomes)


@dataclass
class HerdResult:
    token_requests: int
    outcomes: dict[str, int]  # status code (or exception name) -> callers
    loop_blocking_fetches: int


def _result(endpoint: Endpoint, outcomes: Counter[str]) -> HerdResult:
    return HerdResult(endpoint.token_requests, dict(outcomes), endpoint.loop_blocking_fetches)


def _cell(result: HerdResult) -> str:
    text = str(result.token_requests)
    failed = {k: v for k, v in result.outcomes.items() if k != "200"}
    if failed:
        text += " (" + ", ".join(f"{v}x {k}" for k, v in sorted(failed.items())) + " to callers)"
    if result.loop_blocking_fetches:
        text += (
            " (fetched with a sync client on the event loop thread: "
            f"{result.loop_blocking_fetches}x)"
        )
    return text


def run(*, quick: bool) -> Section:
    tasks, threads, hold = (100, 8, 0.005) if quick else (1000, 64, 0.02)
    p = peers()
    rows: list[Row] = []
    details: list[list[str]] = []
    data: dict[str, object] = {"tasks": tasks, "threads": threads, "hold_s": hold}
    keys = iter("abcdef")
    for scenario in SCENARIOS:
        for mode, n in (("async", tasks), ("sync", threads)):
            cells: dict[str, str] = {}
            ours_ok = False
            for lib in LIBRARIES:
                missing = p.missing(lib) if lib != "ours" else None
                if missing is not None:
                    cells[lib] = missing
                    continue
                unsupported = DRIVERS[lib].cold_start_unsupported
                if scenario == "cold start" and unsupported:
                    cells[lib] = unsupported
                    continue
                if mode == "sync":
                    result = _run_sync(lib, scenario, n, hold)
                else:
                    result = asyncio.run(_run_async(lib, scenario, n, hold))
                data[f"{scenario}/{mode}/{lib}"] = asdict(result)
                cells[lib] = _cell(result)
                if lib == "ours":
                    ours_ok = result.token_requests == 1 and result.outcomes == {"200": n}
                details.append([scenario, mode, str(n), lib, cells[lib]])
            who = f"{n:,} async tasks" if mode == "async" else f"{n} threads"
            rows.append(
                Row(
                    key=f"2{next(keys)}",
                    measurement=f"Token requests, {scenario}, {who}",
                    ours=cells["ours"],
                    authlib=cells["authlib"],
                    httpx_auth=cells["httpx-auth"],
                    target="exactly 1, all 200",
                    result=verdict(ours_ok),
                )
            )
    return Section(
        title="2. Token requests under a herd",
        rows=rows,
        details_header=["scenario", "mode", "callers", "library", "token requests (outcomes)"],
        details=details,
        notes=[
            f"Token endpoint answers held {hold * 1000:.0f} ms; callers released together "
            "from a barrier; 401 storm: every rejection held until all callers were rejected.",
            "Expiry: httpx-tokenauth's injected clock moves past expiry; the peers read "
            "time.time(), so their cached token's expiry is set in the past instead.",
            "A count in parentheses is what callers got instead of a 200 response.",
        ],
        data=data,
    )
