"""SPEC F2, F3: one token request for a whole fleet, against real servers.

Eight processes (multiprocessing "spawn": fresh interpreters, nothing shared but
the store) share one credential through a real Valkey server or one SQLite
file, and call a real API over TLS with tokens from a real authorization
server. Each phase releases every process's callers at once; the server counts
the token requests. The fleet's clock is moved by a shared offset, so expiry
and the renewal window come without waiting.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fleet_worker
from httpx_tokenauth import generate_encryption_key
from httpx_tokenauth.testing import (
    LocalAPI,
    LocalAuthorizationServer,
    LocalCA,
    ValkeyServer,
    find_valkey_server,
)

pytestmark = pytest.mark.skipif(
    find_valkey_server() is None and sys.platform != "linux",
    reason="no valkey-server binary for this platform",
)

PROCESSES = 8
CLIENT_ID = "fleet-svc"
SECRET = "a-fleet-client-secret-of-32-bytes-or-more"
GUARD = 120  # seconds a barrier waits before the test fails (a deadlock guard, not a timing)


class Servers:
    def __init__(self, ca: LocalCA, server: LocalAuthorizationServer, api: LocalAPI) -> None:
        self.ca, self.server, self.api = ca, server, api


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    ca = LocalCA()
    with LocalAuthorizationServer(ca) as server, LocalAPI(server, ca=ca) as api:
        server.register_client(CLIENT_ID, secret=SECRET)
        yield Servers(ca, server, api)


@pytest.fixture(scope="module")
def valkey() -> Iterator[ValkeyServer]:
    with ValkeyServer() as server:
        yield server


class Fleet:
    """PROCESSES worker processes and the barrier that runs them phase by phase."""

    def __init__(self, cfg: dict[str, Any], processes: int = PROCESSES) -> None:
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

    def phase(self) -> list[int]:
        """Release every process's callers once; every status they got."""
        self.barrier.wait(GUARD)  # go
        self.barrier.wait(GUARD)  # all done
        statuses: list[int] = []
        self.elapsed: list[float] = []
        for _ in self.procs:
            got, elapsed = self.out.get(timeout=GUARD)
            statuses.extend(got)
            self.elapsed.append(elapsed)
        return statuses

    def close(self) -> None:
        self.barrier.abort()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def config(servers: Servers, **changes: Any) -> dict[str, Any]:
    return {
        "token_url": servers.server.token_url,
        "api_url": servers.api.url,
        "ca_pem": servers.ca.cert_pem.decode(),
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "key": generate_encryption_key(),
        "phases": 4,
        **changes,
    }


@pytest.mark.parametrize(
    ("store", "mode", "callers"),
    [
        ("redis", "threads", 16),
        ("redis", "tasks", 100),
        ("file", "threads", 16),
        ("file", "tasks", 100),
    ],
)
def test_f2_one_token_request_for_the_fleet_at_cold_start_renewal_expiry_and_401_storm(
    servers: Servers,
    valkey: ValkeyServer,
    tmp_path: Path,
    store: str,
    mode: str,
    callers: int,
) -> None:
    """8 processes x 16 threads (or x 100 tasks): exactly one token request at cold start,
    one for an early renewal (everyone else keeps the valid token), one at expiry, and one
    in a 401 storm where every process is refused the same token; every call succeeds."""
    servers.server.reset()
    servers.api.reset()
    cfg = config(
        servers,
        store=store,
        mode=mode,
        callers=callers,
        redis_url=valkey.url,
        directory=str(tmp_path),
    )
    fleet = Fleet(cfg)
    counts: dict[str, int] = {}
    try:
        for phase in ("cold", "early", "expiry", "storm"):
            if phase == "early":
                fleet.offset.value += 3600 - 30  # inside the 60 s renewal window
            elif phase == "expiry":
                fleet.offset.value += 3600 + 60  # past the renewed token's expiry
            elif phase == "storm":
                servers.api.revoke_all_issued_before()  # the API now refuses that token
            before = servers.server.token_request_count
            statuses = fleet.phase()
            counts[phase] = servers.server.token_request_count - before
            assert statuses == [200] * (PROCESSES * callers), phase
    finally:
        fleet.close()
    assert counts == {"cold": 1, "early": 1, "expiry": 1, "storm": 1}
    # The storm: the revoked token was refused (in every process, callers that came after
    # their process had renewed went straight through), and never twice to one caller.
    rejected = [r for r in servers.api.requests if r.status_code == 401]
    assert PROCESSES <= len(rejected) <= PROCESSES * callers


@pytest.mark.parametrize("store", ["redis", "file"])
def test_m6_a_fleet_configured_by_issuer_reads_the_metadata_once(
    servers: Servers, valkey: ValkeyServer, tmp_path: Path, store: str
) -> None:
    """8 processes x 16 threads, configured by issuer: the metadata is fetched once for the
    whole fleet, though each 401 storm's renewal is made by whichever process takes the
    lease (any of them, most with no metadata of their own): they read it from the store."""
    servers.server.reset()
    servers.api.reset()
    cfg = config(
        servers,
        store=store,
        mode="threads",
        callers=16,
        redis_url=valkey.url,
        directory=str(tmp_path),
        issuer=servers.server.issuer,
    )
    fleet = Fleet(cfg)
    counts: list[int] = []
    try:
        for phase in range(cfg["phases"]):
            if phase:
                servers.api.revoke_all_issued_before()  # every process must renew
            before = servers.server.token_request_count
            statuses = fleet.phase()
            counts.append(servers.server.token_request_count - before)
            assert statuses == [200] * (PROCESSES * 16), phase
    finally:
        fleet.close()
    assert counts == [1, 1, 1, 1]
    assert servers.server.metadata_requests == ["/.well-known/oauth-authorization-server"]


def test_f2_a_lease_holder_killed_mid_fetch_blocks_the_others_only_until_its_lease_ends(
    servers: Servers, valkey: ValkeyServer
) -> None:
    """A process SIGKILLed while it holds the lease and waits for its token: the other
    processes wait for the lease to end (6 s here: the retry deadline plus one), then one of
    them fetches, and every caller gets its answer."""
    servers.server.reset()
    servers.api.reset()
    cfg = config(
        servers, store="redis", mode="threads", callers=1, redis_url=valkey.url, phases=1,
        deadline=5.0,
    )  # fmt: skip
    holder = Fleet(cfg, processes=1)
    try:
        with servers.server.hold_token_responses():
            holder.barrier.wait(GUARD)  # its caller takes the lease and asks for a token
            servers.server.wait_for_token_requests(1, timeout=GUARD)
            holder.procs[0].kill()
            holder.procs[0].join()
    finally:
        holder.close()
    others = Fleet({**cfg, "callers": 4}, processes=3)
    try:
        statuses = others.phase()
    finally:
        others.close()
    assert statuses == [200] * 12
    # One token for all the survivors, fetched once: the dead holder's request is served too
    # if the server could still read it from the broken connection, and nothing else is.
    survivors = {r.token for r in servers.api.requests}
    assert len(survivors) == 1
    assert survivors <= set(servers.server.issued_tokens())
    assert servers.server.token_request_count <= 2
