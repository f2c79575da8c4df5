"""6. Memory over 100,000 requests with periodic renewals: flat after warm-up?

One httpx.Client with TokenAuth on an httpx.MockTransport, in a child
interpreter of its own (so nothing else the benchmarks did sits in its heap).
Tokens live 300 s and the injected clock moves 0.25 s per request, so the
token is renewed in its early-renewal window about every 960 requests. After
a forced ``gc.collect()``, resident memory (``/proc/self/statm``) is sampled in
one run and the size of the traced heap (``tracemalloc``) in a second run (so
tracing does not inflate the resident size). Growth is the last sample minus
the first sample after warm-up (the first 10% of the requests).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tracemalloc
from array import array
from pathlib import Path
from typing import Any

import httpx
from _common import (
    API_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_URL,
    FakeClock,
    Row,
    Section,
    token_body,
    verdict,
)

from httpx_tokenauth import ClientCredentials, TokenAuth

#: "Flat": growth after warm-up below these. A leak of one small object per
#: renewal (~100 renewals) or of one byte per request would exceed the second.
RSS_TARGET = 1024 * 1024
TRACED_TARGET = 16 * 1024
STEP_S = 0.25
LIFETIME = 300


def _rss() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: peak RSS, in KiB on Linux/BSD
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(requests: int, mode: str) -> dict[str, Any]:
    # A handler that keeps nothing but a count: the benchmark must not grow by itself.
    issued = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            issued[0] += 1
            return httpx.Response(200, json=token_body(f"t{issued[0]}", LIFETIME))
        return httpx.Response(200, content=b"ok")

    clock = FakeClock()
    auth = TokenAuth(
        ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
        token_client=httpx.Client(transport=httpx.MockTransport(handler)),
        clock=clock,
    )
    client = httpx.Client(auth=auth, transport=httpx.MockTransport(handler))
    every = max(requests // 20, 1)
    # Preallocated, so that sampling allocates nothing the samples would then count.
    at = array("q", [0] * (requests // every))
    values = array("q", [0] * (requests // every))
    k = 0
    if mode == "tracemalloc":
        tracemalloc.start()
    for i in range(1, requests + 1):
        response = client.get(API_URL)
        if response.status_code != 200:
            raise RuntimeError(f"request {i}: {response.status_code}")
        clock.now += STEP_S
        if i % every == 0:
            gc.collect()
            at[k] = i
            values[k] = tracemalloc.get_traced_memory()[0] if mode == "tracemalloc" else _rss()
            k += 1
    client.close()
    return {"samples": list(zip(at, values, strict=True)), "token_requests": issued[0]}


def _start(requests: int, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603  (our own interpreter and script)
        [sys.executable, __file__, "--child", mode, "--requests", str(requests)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = child.communicate()
    if child.returncode:
        raise RuntimeError(f"memory child failed with exit code {child.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


def _growth(samples: list[list[int]], requests: int) -> tuple[int, int, int]:
    """(value at warm-up end, growth to the last sample, largest rise above the first)."""
    after = [v for i, v in samples if i >= requests // 10]
    first = after[0]
    return first, after[-1] - first, max(after) - first


def _kib(n: float) -> str:
    return f"{n / 1024:+.1f} KiB"


def run(*, quick: bool) -> Section:
    requests = 3000 if quick else 100_000
    # The two children run side by side (nothing here is a timing).
    children = [_start(requests, "rss"), _start(requests, "tracemalloc")]
    rss, traced = (_finish(c) for c in children)
    rows: list[Row] = []
    details: list[list[str]] = []
    for key, name, result, target in (
        ("6a", "resident memory (RSS)", rss, RSS_TARGET),
        ("6b", "traced Python heap (tracemalloc)", traced, TRACED_TARGET),
    ):
        samples = result["samples"]
        start, growth, peak = _growth(samples, requests)
        rows.append(
            Row(
                key=key,
                measurement=f"Memory over {requests:,} requests with "
                f"{result['token_requests']} renewals: {name}, growth after warm-up",
                ours=f"{_kib(growth)} (at warm-up end: {start / 1024:,.0f} KiB; largest "
                f"rise after it: {_kib(peak)})",
                authlib="not measured",
                httpx_auth="not measured",
                target=f"flat: < {_kib(target)}",
                result=verdict(growth < target),
            )
        )
        details.append(
            [name, *(f"{v / 1024:.0f}" for _, v in samples)],
        )
    header = ["KiB after request", *(f"{i:,}" for i, _ in rss["samples"])]
    return Section(
        title="6. Memory",
        rows=rows,
        details_header=header,
        details=details,
        notes=[
            f"Tokens live {LIFETIME} s, the clock moves {STEP_S} s per request; samples "
            "after gc.collect(); RSS and tracemalloc in two separate child interpreters.",
            f"Flat means a growth after warm-up under {RSS_TARGET // 1024} KiB of RSS (page "
            f"and allocator granularity) and under {TRACED_TARGET // 1024} KiB of traced heap "
            "(a leak of one small object per renewal, or of one byte per request, exceeds it).",
        ],
        data={"requests": requests, "rss": rss, "tracemalloc": traced},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["rss", "tracemalloc"], required=True)
    parser.add_argument("--requests", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(child(args.requests, args.child)))
