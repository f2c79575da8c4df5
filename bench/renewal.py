"""3. Latency in the early-renewal window, for the callers that do not renew.

The token endpoint takes 100 ms. Concurrent callers (20 asyncio tasks, or 4
threads) send requests back to back for an episode of 160 ms. 30 ms in, in a
*window* episode, the cached token enters the library's early-renewal window
(it is still valid): one caller renews, its requests are left out, and the
latency of every other request in flight while that first token request is
outstanding is recorded. In a *fresh* episode the token stays fresh; to keep
the load the same, the first caller to start a request after the 30 ms mark
sleeps 100 ms instead (it stands for the renewer) and the requests in flight
during those 100 ms are recorded. Episodes come in pairs, fresh then window;
the ratio is the median over pairs of the pair's window/fresh ratio, so that
one episode hit by outside noise does not decide the result.

The mock API yields once per request (``asyncio.sleep(0)`` / ``time.sleep(0)``),
as a network wait would, so that the callers interleave.
"""

from __future__ import annotations

import asyncio
import threading
import time

from _common import Endpoint, Row, Section, caller_id, median, peers, quantile, verdict
from _drivers import DRIVERS, Driver

TARGET = 1.2
RENEWAL_S = 0.1
LEAD_S = 0.03  # steady load before the token enters its window
TAIL_S = 0.03
LIBRARIES = ("ours", "authlib", "httpx-auth")

Sample = tuple[object, int, int]  # caller, start ns, end ns


class _Episode:
    """The shared state of one episode: samples, the flip time, the stand-in renewer."""

    def __init__(self, driver: Driver, *, window: bool) -> None:
        self.driver = driver
        self.window = window
        self.samples: list[Sample] = []
        self.flip_ns = 0
        self.stall = False  # fresh episodes: the next caller to start a request sleeps
        self.staller: object = None
        self._lock = threading.Lock()

    def flip(self) -> None:
        self.flip_ns = time.perf_counter_ns()
        if self.window:
            self.driver.into_window()
        else:
            self.stall = True

    def take_stall(self) -> bool:
        with self._lock:
            if not self.stall:
                return False
            self.stall = False
            self.staller = caller_id()
            return True

    def add(self, mine: list[Sample]) -> None:
        with self._lock:
            self.samples.extend(mine)

    def latencies(self) -> list[float]:
        """Latencies (ns) of the requests in flight during the renewal, not the renewer's."""
        if self.window:
            fetches = self.driver.endpoint.fetches
            if not fetches:
                return []
            who, start, end = min(fetches, key=lambda f: f[1])
        else:
            who, start, end = self.staller, self.flip_ns, self.flip_ns + int(RENEWAL_S * 1e9)
        return [
            float(e - s) for (c, s, e) in self.samples if c is not who and s < end and e > start
        ]


def _episode_sync(driver: Driver, callers: int, *, window: bool) -> list[float]:
    episode = _Episode(driver, window=window)
    barrier = threading.Barrier(callers + 1, timeout=30)
    deadline = [0.0]

    def worker() -> None:
        barrier.wait()
        mine: list[Sample] = []
        me = caller_id()
        while time.perf_counter() < deadline[0]:
            if episode.take_stall():
                time.sleep(RENEWAL_S)
            s = time.perf_counter_ns()
            driver.get()
            mine.append((me, s, time.perf_counter_ns()))
        episode.add(mine)

    threads = [threading.Thread(target=worker) for _ in range(callers)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + LEAD_S + RENEWAL_S + TAIL_S
    barrier.wait()
    time.sleep(LEAD_S)
    episode.flip()
    for t in threads:
        t.join()
    return episode.latencies()


async def _episode_async(driver: Driver, callers: int, *, window: bool) -> list[float]:
    episode = _Episode(driver, window=window)
    deadline = time.perf_counter() + LEAD_S + RENEWAL_S + TAIL_S

    async def worker() -> None:
        mine: list[Sample] = []
        me = caller_id()
        while time.perf_counter() < deadline:
            if episode.take_stall():
                await asyncio.sleep(RENEWAL_S)
            s = time.perf_counter_ns()
            await driver.aget()
            mine.append((me, s, time.perf_counter_ns()))
        episode.add(mine)

    async def controller() -> None:
        await asyncio.sleep(LEAD_S)
        episode.flip()

    await asyncio.gather(controller(), *(worker() for _ in range(callers)))
    return episode.latencies()


#: Latencies (ns) of one fresh episode and of the window episode that follows it.
Pair = tuple[list[float], list[float]]


def _run_sync(lib: str, callers: int, pairs: int) -> list[Pair]:
    endpoint = Endpoint(api_yield=True)
    driver = DRIVERS[lib](endpoint, "sync")
    out: list[Pair] = []
    try:
        driver.warm()
        endpoint.hold = RENEWAL_S
        for _ in range(pairs):
            endpoint.reset_counts()
            fresh = _episode_sync(driver, callers, window=False)
            endpoint.reset_counts()
            out.append((fresh, _episode_sync(driver, callers, window=True)))
    finally:
        driver.close()
    return out


async def _run_async(lib: str, callers: int, pairs: int) -> list[Pair]:
    endpoint = Endpoint(api_yield=True)
    driver = DRIVERS[lib](endpoint, "async")
    out: list[Pair] = []
    try:
        await driver.awarm()
        endpoint.hold = RENEWAL_S
        for _ in range(pairs):
            endpoint.reset_counts()
            fresh = await _episode_async(driver, callers, window=False)
            endpoint.reset_counts()
            out.append((fresh, await _episode_async(driver, callers, window=True)))
    finally:
        await driver.aclose()
    return out


def _stats(pairs: list[Pair]) -> dict[str, float]:
    """Pooled percentiles, and ratios as the median over pairs of the pair's ratio.

    The per-pair median keeps one episode hit by outside noise (another process
    taking the CPU for a few ms) from deciding the p99 of the whole run.
    """
    fresh = [x for f, _ in pairs for x in f]
    window = [x for _, w in pairs for x in w]
    stats: dict[str, float] = {"n_fresh": len(fresh), "n_window": len(window)}
    usable = [(f, w) for f, w in pairs if f and w]
    if not usable:
        return stats
    return {
        **stats,
        "fresh_p50": median(fresh),
        "fresh_p99": quantile(fresh, 0.99),
        "window_p50": median(window),
        "window_p99": quantile(window, 0.99),
        "p50_ratio": median([median(w) / median(f) for f, w in usable]),
        "p99_ratio": median([quantile(w, 0.99) / quantile(f, 0.99) for f, w in usable]),
        "pooled_p99_ratio": quantile(window, 0.99) / quantile(fresh, 0.99),
    }


def _cell(s: dict[str, float]) -> str:
    if "p99_ratio" not in s:
        return "no non-renewing request in flight during the renewal"
    return (
        f"p99 {s['p99_ratio']:.2f}x (p50 {s['window_p50'] / 1e6:.2f} ms, "
        f"p99 {s['window_p99'] / 1e6:.2f} ms)"
    )


def run(*, quick: bool) -> Section:
    tasks, threads = (5, 2) if quick else (20, 4)
    # The peers' ratios are tens to hundreds: fewer pairs tell them apart.
    pairs = {"ours": 1, "authlib": 1, "httpx-auth": 1} if quick else {
        "ours": 20, "authlib": 6, "httpx-auth": 6,
    }  # fmt: skip
    p = peers()
    rows: list[Row] = []
    details: list[list[str]] = []
    data: dict[str, object] = {"tasks": tasks, "threads": threads, "pairs": pairs}
    for key, mode, callers in (("3a", "async", tasks), ("3b", "sync", threads)):
        cells: dict[str, str] = {}
        ours: dict[str, float] = {}
        for lib in LIBRARIES:
            missing = p.missing(lib) if lib != "ours" else None
            if missing is not None:
                cells[lib] = missing
                continue
            if mode == "sync":
                latencies = _run_sync(lib, callers, pairs[lib])
            else:
                latencies = asyncio.run(_run_async(lib, callers, pairs[lib]))
            s = _stats(latencies)
            data[f"{mode}/{lib}"] = s
            cells[lib] = _cell(s)
            if lib == "ours":
                ours = s
            if "p99_ratio" in s:
                details.append(
                    [
                        mode,
                        lib,
                        f"{s['fresh_p50'] / 1e6:.3f} / {s['fresh_p99'] / 1e6:.3f}",
                        f"{s['window_p50'] / 1e6:.3f} / {s['window_p99'] / 1e6:.3f}",
                        f"{s['p50_ratio']:.2f} / {s['p99_ratio']:.2f}",
                        f"{s['pooled_p99_ratio']:.2f}",
                        f"{int(s['n_fresh'])} / {int(s['n_window'])}",
                    ]
                )
        who = f"{callers} async tasks" if mode == "async" else f"{callers} threads"
        baseline = (
            f"fresh: p50 {ours['fresh_p50'] / 1e6:.2f} ms, p99 {ours['fresh_p99'] / 1e6:.2f} ms"
            if "fresh_p99" in ours
            else "—"
        )
        rows.append(
            Row(
                key=key,
                measurement=f"Latency of non-renewing callers, early-renewal window, 100 ms "
                f"token endpoint, {who} (vs fresh-token path)",
                ours=cells["ours"],
                baseline=baseline,
                authlib=cells["authlib"],
                httpx_auth=cells["httpx-auth"],
                target=f"p99 ≤ {TARGET}x fresh",
                result=verdict(ours.get("p99_ratio", float("inf")) <= TARGET),
            )
        )
    return Section(
        title="3. Latency in the early-renewal window",
        rows=rows,
        details_header=[
            "mode",
            "library",
            "fresh p50 / p99 ms",
            "window p50 / p99 ms",
            "ratio p50 / p99 (median of pairs)",
            "pooled p99 ratio",
            "requests fresh / window",
        ],
        details=details,
        notes=[
            f"{pairs['ours']} pairs of episodes (fresh, then window) for httpx-tokenauth, "
            f"{pairs['authlib']} for each peer. Percentiles are over all "
            "recorded requests of a kind; a ratio is the median over pairs of that pair's "
            "window / fresh ratio. Each peer is compared with its own fresh path.",
            "The peers' windows: authlib renews 60 s (leeway) before expiry, httpx-auth "
            "30 s (early_expiry) before.",
            "Only the caller that made the first token request is left out; callers that "
            "made further token requests (peers without single-flight) are counted.",
        ],
        data=data,
    )
