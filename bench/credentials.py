"""11. Many credentials in one process: the cost of each additional TokenAuth.

A service holding 1,000 tenants' credentials makes 1,000 TokenAuth, each of
which fetches its own token. Each child interpreter here does exactly that
against a real authorization server (``LocalAuthorizationServer``) over TLS on
127.0.0.1: TokenAuth(ClientCredentials(...)) with no ``token_client=``, so
every instance uses the token client TokenAuth makes itself (the process's
shared TLS context, and for sync clients its shared connection pool), then
``get_token()`` / ``await aget_token()``, keeping every instance alive as a
service would. The child trusts the test CA through ``SSL_CERT_FILE``, a
bundle of certifi's CA certificates plus the test CA, so that a TLS context
costs what it costs with the real bundle.

Per additional credential: (value after the last credential - value after the
first) / (count - 1), for wall time, resident memory (``/proc/self/statm``,
after ``gc.collect()``) and the traced Python heap (``tracemalloc``, in a run
of its own so tracing does not slow the timed run). The first credential,
which makes the shared TLS context, is left out of the slope.

Compared, in the same run:

* baseline: the same token requests one after another through one
  ``httpx.Client()`` / ``httpx.AsyncClient()``, no TokenAuth (the round trips
  alone); the time a credential adds is its slope minus this one;
* pre-sharing behaviour, reproduced: each TokenAuth given its own
  ``httpx.Client()`` / ``httpx.AsyncClient()`` as its token client, which makes
  its own TLS context and pool, as every TokenAuth did before the sharing (run
  with fewer instances, the slope is the same).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import Row, Section, iqr, median, rotations, verdict

TIME_TARGET_MS = 0.5
MEMORY_TARGET_KB = 30.0
SECRET = "a-tenant-client-secret-of-32-bytes-or-more"
VARIANTS = ("baseline", "shared", "own client")


def _rss() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: peak RSS, in KiB on Linux/BSD
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _client_id(i: int) -> str:
    return f"tenant-{i:04d}"


# -- the child: N credentials, one token each -----------------------------------------------


class _Checkpoints:
    def __init__(self, traced: bool) -> None:
        self.traced = traced
        self.points: list[dict[str, float]] = []
        self.start = time.perf_counter()

    def mark(self, count: int) -> None:
        paused = time.perf_counter()
        gc.collect()
        memory = tracemalloc.get_traced_memory()[0] if self.traced else _rss()
        self.points.append({"count": count, "seconds": paused - self.start, "memory": memory})
        self.start += time.perf_counter() - paused  # the collection and sampling are not timed


class _Maker:
    """Adds credentials of one variant: a TokenAuth that fetched its token (or, for the
    baseline, one token request through the one client), kept alive."""

    def __init__(self, variant: str, url: str, first: int) -> None:
        import httpx  # noqa: PLC0415

        self.httpx = httpx
        self.variant = variant
        self.url = url
        self.next = first
        self.kept: list[Any] = []
        self.client: Any = None

    def _provider(self) -> Any:
        from httpx_tokenauth import ClientCredentials  # noqa: PLC0415

        i, self.next = self.next, self.next + 1
        return ClientCredentials(self.url, client_id=_client_id(i), client_secret=SECRET)

    def _form(self) -> dict[str, Any]:
        i, self.next = self.next, self.next + 1
        return {"data": {"grant_type": "client_credentials"}, "auth": (_client_id(i), SECRET)}

    def _keep(self, response: Any) -> None:
        if response.status_code != 200:
            raise RuntimeError(f"token request: {response.status_code}")
        self.kept.append(response.json()["access_token"])

    def add(self) -> None:
        from httpx_tokenauth import TokenAuth  # noqa: PLC0415

        if self.variant == "baseline":
            self.client = self.client or self.httpx.Client()
            self._keep(self.client.post(self.url, **self._form()))
            return
        own = {"token_client": self.httpx.Client()} if self.variant == "own client" else {}
        auth = TokenAuth(self._provider(), **own)
        auth.get_token()
        self.kept.append(auth)

    async def aadd(self) -> None:
        from httpx_tokenauth import TokenAuth  # noqa: PLC0415

        if self.variant == "baseline":
            self.client = self.client or self.httpx.AsyncClient()
            self._keep(await self.client.post(self.url, **self._form()))
            return
        own = (
            {"async_token_client": self.httpx.AsyncClient()} if self.variant == "own client" else {}
        )
        auth = TokenAuth(self._provider(), **own)
        await auth.aget_token()
        self.kept.append(auth)


def _sync_child(variant: str, url: str, count: int, marks: _Checkpoints) -> list[Any]:
    maker = _Maker(variant, url, 0)
    for i in range(count):
        maker.add()
        if i + 1 in (1, count):
            marks.mark(i + 1)
    return maker.kept


async def _async_child(variant: str, url: str, count: int, marks: _Checkpoints) -> list[Any]:
    maker = _Maker(variant, url, 0)
    for i in range(count):
        await maker.aadd()
        if i + 1 in (1, count):
            marks.mark(i + 1)
    return maker.kept


def paired(flavor: str, url: str, counts: dict[str, int], blocks: int) -> dict[str, Any]:
    """Time per credential, block by block, the variants interleaved in one interpreter.

    Each block adds counts[variant] / blocks credentials of every variant, in
    rotated order, so that the machine's drift hits every variant alike; the
    per-block difference to the baseline is what a credential adds.
    """
    import httpx  # noqa: F401, PLC0415

    import httpx_tokenauth  # noqa: F401, PLC0415

    spacing = 10_000  # client ids: each variant draws from its own range
    makers = {v: _Maker(v, url, k * spacing) for k, v in enumerate(VARIANTS)}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}

    async def async_batch(maker: _Maker, n: int) -> None:
        for _ in range(n):
            await maker.aadd()

    def batch(maker: _Maker, n: int) -> float:
        gc.collect()
        start = time.perf_counter()
        if flavor == "sync":
            for _ in range(n):
                maker.add()
        else:
            loop.run_until_complete(async_batch(maker, n))
        return (time.perf_counter() - start) / n

    loop = asyncio.new_event_loop()
    try:
        for maker in makers.values():  # the shared TLS context, the baseline's connection
            batch(maker, 1)
        for order in rotations(list(VARIANTS), blocks):
            for variant in order:
                times[variant].append(batch(makers[variant], max(counts[variant] // blocks, 1)))
    finally:
        loop.close()
    return {"per_block_seconds": times}


def child(variant: str, flavor: str, url: str, count: int, traced: bool) -> dict[str, Any]:
    import httpx  # noqa: F401, PLC0415  (imports are not the first credential's cost)

    import httpx_tokenauth  # noqa: F401, PLC0415

    if traced:
        tracemalloc.start()
    marks = _Checkpoints(traced)
    if flavor == "sync":
        kept = _sync_child(variant, url, count, marks)
    else:
        kept = asyncio.run(_async_child(variant, url, count, marks))
    first, last = marks.points[0], marks.points[-1]
    extra = max(count - 1, 1)
    return {
        "count": count,
        "kept": len(kept),
        "points": marks.points,
        "seconds_per_credential": (last["seconds"] - first["seconds"]) / extra,
        "bytes_per_credential": (last["memory"] - first["memory"]) / extra,
        "first_seconds": first["seconds"],
    }


# -- the parent -----------------------------------------------------------------------------


@contextlib.contextmanager
def _ca_bundle(ca_pem: bytes) -> Iterator[str]:
    """certifi's bundle plus the test CA, as one file (what SSL_CERT_FILE names)."""
    import certifi  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="bench-credentials-") as tmp:
        bundle = Path(tmp) / "bundle.pem"
        bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca_pem)
        yield str(bundle)


def _spawn(bundle: str, args: list[str]) -> dict[str, Any]:
    """Run this file in a new interpreter that trusts ``bundle``; its JSON answer."""
    command = [sys.executable, __file__, *args]
    env = {**os.environ, "SSL_CERT_FILE": bundle}
    env.pop("SSL_CERT_DIR", None)
    done = subprocess.run(  # noqa: S603  (our own interpreter and script)
        command, capture_output=True, text=True, env=env, check=False, timeout=900
    )
    if done.returncode:
        raise RuntimeError(f"credentials child {args} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _memory_child(
    bundle: str, variant: str, flavor: str, url: str, *, count: int, traced: bool
) -> dict[str, Any]:
    args = ["--child", variant, "--flavor", flavor, "--url", url, "--count", str(count)]
    return _spawn(bundle, [*args, "--traced"] if traced else args)


def _paired_child(
    bundle: str, flavor: str, url: str, counts: dict[str, int], blocks: int
) -> dict[str, Any]:
    args = ["--paired", "--flavor", flavor, "--url", url, "--blocks", str(blocks)]
    return _spawn(bundle, [*args, "--counts", json.dumps(counts)])


def _available() -> str | None:
    try:
        import certifi  # noqa: F401, PLC0415

        import httpx_tokenauth.testing  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"n/a ({exc.name} not installed: pip install -e '.[bench]')"
    return None


def _measure(quick: bool) -> dict[str, Any]:
    from httpx_tokenauth.testing import LocalAuthorizationServer, LocalCA  # noqa: PLC0415

    counts = {"baseline": 20, "shared": 20, "own client": 5} if quick else {
        "baseline": 1000, "shared": 1000, "own client": 200,
    }  # fmt: skip
    blocks = 5 if quick else 20
    ca = LocalCA()
    data: dict[str, Any] = {"counts": counts, "blocks": blocks}
    with LocalAuthorizationServer(ca) as server, _ca_bundle(ca.cert_pem) as bundle:
        for k in range(len(VARIANTS)):  # the paired child's ranges, the memory children's
            for i in range(max(counts.values()) + 1):
                server.register_client(_client_id(k * 10_000 + i), secret=SECRET)
        url = server.token_url
        for flavor in ("sync", "async"):
            data[flavor] = {
                "paired": _paired_child(bundle, flavor, url, counts, blocks),
                "rss": {
                    v: _memory_child(bundle, v, flavor, url, count=counts[v], traced=False)
                    for v in VARIANTS
                },
                "traced": {
                    v: _memory_child(bundle, v, flavor, url, count=counts[v], traced=True)
                    for v in VARIANTS
                },
            }
        data["token_requests"] = server.token_request_count
    return data


def _summary(data: dict[str, Any], flavor: str) -> dict[str, dict[str, float]]:
    blocks = data[flavor]["paired"]["per_block_seconds"]
    base = blocks["baseline"]
    out: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        mine = blocks[variant]
        extra = [(m - b) * 1000 for m, b in zip(mine, base, strict=True)]
        lo, hi = iqr(extra)
        out[variant] = {
            "ms": median([m * 1000 for m in mine]),
            "extra_ms": median(extra),
            "extra_p25": lo,
            "extra_p75": hi,
            "rss_kb": data[flavor]["rss"][variant]["bytes_per_credential"] / 1024,
            "traced_kb": data[flavor]["traced"][variant]["bytes_per_credential"] / 1024,
            "unpaired_ms": data[flavor]["rss"][variant]["seconds_per_credential"] * 1000,
        }
    return out


def run(*, quick: bool) -> Section:
    why = _available()
    if why is not None:
        rows = [Row(key=k, measurement="Per-credential cost", ours=why) for k in ("11a", "11b")]
        return Section(title="11. Per-credential cost", rows=rows, notes=[why])
    data = _measure(quick)
    counts = data["counts"]
    rows: list[Row] = []
    details: list[list[str]] = []
    summaries = {flavor: _summary(data, flavor) for flavor in ("sync", "async")}
    for key, flavor, label in (("11a", "sync", "get_token()"), ("11b", "async", "aget_token()")):
        s = summaries[flavor]
        ours, own = s["shared"], s["own client"]
        ok = ours["extra_ms"] <= TIME_TARGET_MS and ours["rss_kb"] <= MEMORY_TARGET_KB
        client = "httpx.Client" if flavor == "sync" else "httpx.AsyncClient"
        rows.append(
            Row(
                key=key,
                measurement=f"Per additional credential, {counts['shared']:,} TokenAuth each "
                f"fetching one token ({label}, no token_client=, TLS on loopback): time "
                "beyond the token round trip, memory",
                ours=f"{ours['extra_ms']:+.2f} ms (IQR {ours['extra_p25']:+.2f} to "
                f"{ours['extra_p75']:+.2f}; {ours['ms']:.2f} ms with the round trip), "
                f"{ours['rss_kb']:.1f} KB RSS, {ours['traced_kb']:.1f} KB traced",
                baseline=f"round trip alone, one {client}: {s['baseline']['ms']:.2f} ms; "
                f"pre-sharing, reproduced (own {client}() each, {counts['own client']}): "
                f"{own['extra_ms']:+.2f} ms, {own['rss_kb']:.0f} KB RSS",
                authlib="not measured",
                httpx_auth="not measured",
                target=f"≤ {TIME_TARGET_MS} ms, ≤ {MEMORY_TARGET_KB:.0f} KB",
                result=verdict(ok),
            )
        )
        for variant in VARIANTS:
            v = s[variant]
            details.append(
                [
                    flavor,
                    variant,
                    str(counts[variant]),
                    f"{v['ms']:.3f}",
                    f"{v['extra_ms']:+.3f} ({v['extra_p25']:+.3f} to {v['extra_p75']:+.3f})",
                    f"{v['unpaired_ms']:.3f}",
                    f"{v['rss_kb']:.1f}",
                    f"{v['traced_kb']:.1f}",
                ]
            )
    return Section(
        title="11. Per-credential cost",
        rows=rows,
        details_header=[
            "flavor",
            "variant",
            "credentials",
            "ms per credential (paired, median of blocks)",
            "minus the baseline's (IQR)",
            "ms per additional (memory run)",
            "RSS KB per additional",
            "traced KB per additional",
        ],
        details=details,
        notes=[
            "shared: TokenAuth(ClientCredentials(...)) with no token_client, as shipped; "
            "own client: each TokenAuth given its own httpx.Client() / httpx.AsyncClient() "
            "as token client (its own TLS context and pool: the behaviour before the "
            "sharing, reproduced with fewer instances); baseline: the same token requests "
            "through one client, no TokenAuth.",
            "TLS on loopback: the child trusts the test CA through SSL_CERT_FILE, a bundle "
            "of certifi's CA certificates plus the test CA, which httpx's default TLS context "
            "(the one TokenAuth's own clients use) honours.",
            f"Time: one child interpreter per flavor adds the credentials of every variant "
            f"in {data['blocks']} blocks, variants in rotated order; a credential's extra "
            "time is the median over blocks of (variant - baseline) per credential. Memory: "
            "one child per variant, (value after the last credential - after the first) / "
            "(count - 1), RSS after gc.collect(), and the traced heap in another child with "
            "tracemalloc on. The first credential (which makes the shared TLS context) is "
            "left out.",
        ],
        data=data,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--paired", action="store_true")
    parser.add_argument("--flavor", choices=["sync", "async"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--counts", type=json.loads, default={})
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--traced", action="store_true")
    args = parser.parse_args()
    if args.paired:
        answer = paired(args.flavor, args.url, args.counts, args.blocks)
    else:
        answer = child(args.child, args.flavor, args.url, args.count, args.traced)
    print(json.dumps(answer))
