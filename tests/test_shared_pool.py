"""Many credentials in one process: the token clients TokenAuth makes share one TLS context
and one connection pool (for async clients, one per event loop), and closing one TokenAuth
leaves the others working."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import ssl
import threading
import uuid
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from httpx_tokenauth import ClientCredentials, TokenAuth

from conftest import answer_from_fork

WAIT = 10.0  # seconds: a deadlock guard, not a timing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.context is None:
            return sock, address
        try:  # the handshake, here; a failed one drops the connection uncounted
            return self.context.wrap_socket(sock, server_side=True), address
        except OSError:
            sock.close()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (a cancelled request) is no error here."""


class KeepAliveTokenServer:
    """A token endpoint on loopback (https with a certificate from ``ca``, else plain
    http) that keeps connections open and counts those opened and closed by the client.
    Every answer sets a cookie; ``cookies`` lists the Cookie header of each request.
    Within ``hold()``, requests are received but not answered."""

    def __init__(self, ca: Any = None) -> None:
        self.connections = 0
        self.closed = 0
        self.arrived = 0
        self.requests = 0
        self.cookies: list[str | None] = []
        self._changed = threading.Condition()
        self._release = threading.Event()
        self._release.set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                owner._count("connections")

            def finish(self) -> None:
                with contextlib.suppress(OSError):
                    super().finish()
                owner._count("closed")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with owner._changed:
                    owner.cookies.append(self.headers.get("Cookie"))
                owner._count("arrived")
                owner._release.wait(WAIT)
                n = owner._count("requests")
                body = json.dumps({"access_token": f"t{n}", "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Set-Cookie", f"session=s{n}; Path=/")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        scheme = "http"
        if ca is not None:
            self._httpd.context = ca.server_context()
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _count(self, name: str) -> int:
        with self._changed:
            value = getattr(self, name) + 1
            setattr(self, name, value)
            self._changed.notify_all()
        return value

    def wait_for(self, name: str, count: int) -> int:
        """Wait until the ``name`` count reaches ``count`` (a deadlock guard); its value."""
        with self._changed:
            self._changed.wait_for(lambda: getattr(self, name) >= count, WAIT)
            value: int = getattr(self, name)
            return value

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self._release.clear()
        try:
            yield
        finally:
            self._release.set()

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def server() -> Iterator[KeepAliveTokenServer]:
    s = KeepAliveTokenServer()
    yield s
    s.close()


def make(server: KeepAliveTokenServer, client_id: str) -> TokenAuth:
    return TokenAuth(
        ClientCredentials(
            server.url, client_id=client_id, client_secret="a-secret-for-" + client_id
        )
    )


def test_credentials_share_one_connection_to_their_token_endpoint(
    server: KeepAliveTokenServer,
) -> None:
    """Three TokenAuth for three credentials fetch over one kept-alive connection: the pool
    (and the TLS context behind it) is made once per process, not once per credential."""
    auths = [make(server, f"tenant-{i}") for i in range(3)]
    tokens = [auth.get_token().access_token for auth in auths]
    assert tokens == ["t1", "t2", "t3"]
    assert server.connections == 1
    for auth in auths:
        auth.close()


def test_closing_one_tokenauth_leaves_the_shared_pool_to_the_others(
    server: KeepAliveTokenServer,
) -> None:
    """close() ends what that TokenAuth made; the other credentials still get tokens."""
    first, second = make(server, "a"), make(server, "b")
    first.get_token()
    first.close()
    assert second.get_token().access_token == "t2"
    second.close()


def test_cookies_stay_per_credential(server: KeepAliveTokenServer) -> None:
    """The pool is shared, the cookie jar is not: each TokenAuth's own client keeps its own."""
    first, second = make(server, "a"), make(server, "b")
    first._client().cookies.set("session", "of-a")
    assert "session" not in second._client().cookies
    first.close()
    second.close()


def test_a_changed_ssl_cert_file_is_honoured_by_later_token_clients(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared TLS context follows SSL_CERT_FILE as it was when a client is made: a
    process that points it at its CA after the first TokenAuth still gets verified TLS."""
    from httpx_tokenauth.testing import LocalAuthorizationServer, LocalCA

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    early = TokenAuth(
        ClientCredentials("https://as.example/token", client_id="c", client_secret="s" * 32)
    )
    early._client()  # made with the default trust store
    ca = LocalCA()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    secret = "a-client-secret-of-32-bytes-or-more"
    with LocalAuthorizationServer(ca) as server:
        server.register_client("svc", secret=secret)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        later = TokenAuth(
            ClientCredentials(server.token_url, client_id="svc", client_secret=secret)
        )
        assert later.get_token().access_token == server.issued_tokens()[0]
        later.close()
    early.close()


class RecordingProxy:
    """A loopback HTTP proxy that records the first line of what it is asked, then refuses."""

    def __init__(self) -> None:

        self.lines: list[str] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(4)
        self._sock.settimeout(5)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n" not in data:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                data += chunk
            self.lines.append(data.split(b"\r\n", 1)[0].decode())
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)


def test_the_own_sync_client_goes_through_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY is honoured by the sync token client TokenAuth makes, as by httpx's own
    clients (a shared pool must not silently bypass a proxy)."""
    from httpx_tokenauth import RetryPolicy, TokenTransportError

    proxy = RecordingProxy()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    auth = TokenAuth(
        ClientCredentials("https://as.example/token", client_id="c", client_secret="s" * 32),
        retry=RetryPolicy.off(),
    )
    try:
        with pytest.raises(TokenTransportError):
            auth.get_token()
    finally:
        auth.close()
        proxy.close()
    assert proxy.lines == ["CONNECT as.example:443 HTTP/1.1"]


# -- async: one client and pool per event loop --------------------------------------------
#
# Over TLS (a LocalCA certificate), trusted through SSL_CERT_FILE as a service would trust
# its CA. (LocalAuthorizationServer closes every connection after its answer, so the
# sharing of connections is counted on the keep-alive server above.)

BACKENDS = ["asyncio", "trio"]
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


@pytest.fixture(scope="module")
def ca() -> Any:
    from httpx_tokenauth.testing import LocalCA

    return LocalCA()


@pytest.fixture
def tls_server(ca: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The keep-alive server over https; SSL_CERT_FILE trusts its CA; no proxy configured."""
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.cert_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    s = KeepAliveTokenServer(ca)
    yield s
    s.close()


def auth_class(lib: str) -> Any:
    return (
        TokenAuth if lib == "httpx" else importlib.import_module(f"httpx_tokenauth.{lib}").TokenAuth
    )


def tenant(server: KeepAliveTokenServer, lib: str, **kwargs: Any) -> Any:
    """A TokenAuth for a new tenant, with no token client: the one TokenAuth makes."""
    client_id = f"tenant-{uuid.uuid4().hex[:8]}"
    provider = ClientCredentials(server.url, client_id=client_id, client_secret="s" * 32)
    return auth_class(lib)(provider, **kwargs)


def values(tokens: list[Any]) -> list[str]:
    return [t.access_token for t in tokens]


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_credentials_on_one_event_loop_share_one_connection(
    backend: str, lib: str, tls_server: KeepAliveTokenServer
) -> None:
    """Five TokenAuth fetching their tokens with aget_token() on one event loop open one TLS
    connection to the token endpoint between them, as sync ones do: the async token client
    TokenAuth makes is that loop's, shared."""
    auths = [tenant(tls_server, lib) for _ in range(5)]

    async def main() -> list[Any]:
        return [await auth.aget_token() for auth in auths]

    assert values(anyio.run(main, backend=backend)) == ["t1", "t2", "t3", "t4", "t5"]
    assert tls_server.connections == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_event_loop_gets_a_pool_of_its_own_closed_when_it_ends(
    backend: str, lib: str, tls_server: KeepAliveTokenServer
) -> None:
    """A second event loop fetches over a connection of its own (one of the first loop's
    would not work there), also for TokenAuth that fetched on the first; and as each loop
    ends, its pool's connection is closed, not left open."""
    first, second = tenant(tls_server, lib), tenant(tls_server, lib)

    async def fetch() -> list[Any]:
        return [await first.aget_token(force=True), await second.aget_token(force=True)]

    assert values(anyio.run(fetch, backend=backend)) == ["t1", "t2"]
    assert tls_server.connections == 1
    assert tls_server.wait_for("closed", 1) == 1  # the loop ended: its connection closed
    assert values(anyio.run(fetch, backend=backend)) == ["t3", "t4"]
    assert tls_server.connections == 2
    assert tls_server.wait_for("closed", 2) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_event_loops_in_two_threads_fetch_side_by_side(
    backend: str, tls_server: KeepAliveTokenServer
) -> None:
    """Two threads, each running an event loop with TokenAuth of its own, fetch at the same
    time (the server holds its answers until both asked): each loop gets its tokens over
    its own connection."""
    pairs = [[tenant(tls_server, "httpx"), tenant(tls_server, "httpx")] for _ in range(2)]
    tokens: list[Any] = []
    failures: list[BaseException] = []

    async def fetch(pair: list[Any]) -> None:
        for auth in pair:
            tokens.append(await auth.aget_token())

    def run(pair: list[Any]) -> None:
        try:
            anyio.run(fetch, pair, backend=backend)
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(pair,), daemon=True) for pair in pairs]
    with tls_server.hold():
        for thread in threads:
            thread.start()
        tls_server.wait_for("arrived", 2)  # both loops are waiting for an answer
    for thread in threads:
        thread.join(WAIT)
    assert failures == []
    assert sorted(values(tokens)) == ["t1", "t2", "t3", "t4"]
    assert tls_server.connections == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_request_cut_off_by_its_deadline_leaves_the_pool_to_the_others(
    backend: str, lib: str, tls_server: KeepAliveTokenServer
) -> None:
    """A token request cancelled by the retry deadline while the server holds its answer
    fails with a TokenTransportError saying so; then the other TokenAuth on that loop, and
    the first, get their tokens over the loop's pool (over one new connection: the cut-off
    one is given up)."""
    from httpx_tokenauth import RetryPolicy, TokenTransportError

    late = tenant(tls_server, lib, retry=RetryPolicy(attempts=1, deadline=0.2), cooldown=0)
    others = [tenant(tls_server, lib) for _ in range(3)]

    async def main() -> tuple[BaseException | None, list[Any]]:
        failure = None
        with tls_server.hold():
            try:
                await late.aget_token()
            except TokenTransportError as exc:
                failure = exc
        return failure, [await auth.aget_token() for auth in [*others, late]]

    failure, tokens = anyio.run(main, backend=backend)
    assert isinstance(failure, TokenTransportError)
    assert "did not finish within the retry deadline" in str(failure)
    assert len(set(values(tokens))) == 4
    assert tls_server.connections == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cancelled_caller_leaves_the_pool_to_the_others(
    backend: str, lib: str, tls_server: KeepAliveTokenServer
) -> None:
    """A caller cancelled while its token request waits for the server's answer does not
    break its loop's pool: other TokenAuth fetch over it right after, and the cancelled
    one's TokenAuth later."""
    held, other, after = (tenant(tls_server, lib) for _ in range(3))

    async def main() -> list[Any]:
        with tls_server.hold():
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()

                async def caller() -> None:
                    with scope:
                        await held.aget_token()

                tg.start_soon(caller)
                await anyio.to_thread.run_sync(tls_server.wait_for, "arrived", 1)
                scope.cancel()
        # asyncio: the fetch goes on for its other callers (it runs detached); trio: it ended
        return [await other.aget_token(), await after.aget_token(), await held.aget_token()]

    tokens = anyio.run(main, backend=backend)
    assert len(set(values(tokens))) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_credentials_sharing_a_loop_do_not_share_cookies(
    backend: str, lib: str, tls_server: KeepAliveTokenServer
) -> None:
    """The loop's token client is shared, cookies are not: a cookie one token endpoint
    answer sets is sent neither with another credential's token request nor with the next
    of the same credential (as with a new client per fetch)."""
    first, second = tenant(tls_server, lib), tenant(tls_server, lib)

    async def main() -> list[Any]:
        return [
            await first.aget_token(),
            await second.aget_token(),
            await first.aget_token(force=True),
        ]

    assert values(anyio.run(main, backend=backend)) == ["t1", "t2", "t3"]
    assert tls_server.cookies == [None, None, None]
    assert tls_server.connections == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_changed_ssl_cert_file_gets_a_pool_of_its_own_on_the_same_loop(
    backend: str,
    tls_server: KeepAliveTokenServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SSL_CERT_FILE pointed mid-loop at a bundle without the test CA is honoured at once:
    the next fetch verifies against it and fails (the verified idle connection of the
    earlier pool is not reused); pointed back, the earlier pool's connection serves again."""
    from httpx_tokenauth import RetryPolicy, TokenTransportError
    from httpx_tokenauth.testing import LocalCA

    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(LocalCA().cert_pem)
    trusted = os.environ["SSL_CERT_FILE"]

    async def main() -> tuple[Any, BaseException | None, Any]:
        first = await tenant(tls_server, "httpx").aget_token()
        monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))
        failure = None
        try:
            await tenant(tls_server, "httpx", retry=RetryPolicy.off()).aget_token()
        except TokenTransportError as exc:
            failure = exc
        monkeypatch.setenv("SSL_CERT_FILE", trusted)
        return first, failure, await tenant(tls_server, "httpx").aget_token()

    first, failure, again = anyio.run(main, backend=backend)
    assert isinstance(failure, TokenTransportError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(failure)
    assert values([first, again]) == ["t1", "t2"]
    assert tls_server.connections == 1  # the refused handshake is not counted


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_own_async_client_goes_through_the_environments_proxy(
    backend: str, lib: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY is honoured by the async token clients TokenAuth makes, as by httpx's own
    clients: with a proxy configured, the loop's shared client is not used."""
    from httpx_tokenauth import RetryPolicy, TokenTransportError

    proxy = RecordingProxy()
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    auth = auth_class(lib)(
        ClientCredentials("https://as.example/token", client_id="c", client_secret="s" * 32),
        retry=RetryPolicy.off(),
    )

    async def main() -> None:
        with pytest.raises(TokenTransportError):
            await auth.aget_token()

    try:
        anyio.run(main, backend=backend)
    finally:
        proxy.close()
    assert proxy.lines == ["CONNECT as.example:443 HTTP/1.1"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_forked_child_fetches_over_a_pool_of_its_own(
    backend: str, tls_server: KeepAliveTokenServer
) -> None:
    """A child forked while an event loop in another thread holds an open pool fetches over
    a connection of its own, with a new TokenAuth and an inherited one; the parent's loop
    then still fetches over its connection, which the child neither used nor closed."""
    import anyio.from_thread

    inherited, parent_later, child_new = (tenant(tls_server, "httpx") for _ in range(3))
    with anyio.from_thread.start_blocking_portal(backend) as portal:
        before = portal.call(inherited.aget_token)

        async def child() -> bytes:
            new = await child_new.aget_token()
            old = await inherited.aget_token(force=True)
            return f"{new.access_token} {old.access_token}".encode()

        answer = answer_from_fork(lambda: anyio.run(child, backend=backend))
        later = portal.call(parent_later.aget_token)
    assert before.access_token == "t1"
    assert answer.decode().split() == ["t2", "t3"]
    assert later.access_token == "t4"
    assert tls_server.connections == 2  # the parent's (used again after the fork), the child's


def test_an_asyncio_loop_closed_without_shutting_down_is_not_kept_alive_by_its_pool(
    tls_server: KeepAliveTokenServer,
) -> None:
    """A loop run with run_until_complete() and closed without shutdown_asyncgens() cannot
    close its pool; the pool is dropped when the next one is made, so the loop can be
    collected (its idle connection is left to the garbage collector, as that of any
    unclosed httpx.AsyncClient is)."""
    import asyncio
    import gc
    import weakref

    auth = tenant(tls_server, "httpx")
    loop = asyncio.new_event_loop()
    token = loop.run_until_complete(auth.aget_token())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the old loop's unclosed connection
        again = asyncio.run(auth.aget_token(force=True))  # makes the new loop's pool
        gc.collect()
    assert gone() is None
    assert values([token, again]) == ["t1", "t2"]
