"""Many credentials in one process: the token clients TokenAuth makes share one TLS context
and one connection pool, and closing one TokenAuth leaves the others working."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from httpx_tokenauth import ClientCredentials, RetryPolicy, TokenAuth, TokenTransportError

from conftest import WAIT


class KeepAliveTokenServer:
    """A plain-http token endpoint on loopback that keeps connections open and counts them."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                owner.connections += 1

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests += 1
                body = json.dumps(
                    {"access_token": f"t{owner.requests}", "token_type": "Bearer"}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
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
        import socket

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


def test_no_proxy_alone_keeps_the_shared_pool(
    server: KeepAliveTokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY without a proxy (as many containers set it), or a proxy for a scheme httpx
    does not use, names no proxy: the credentials still share one pool and one connection."""
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "localhost,.internal.example")
    monkeypatch.setenv("FTP_PROXY", "http://ftp-proxy.internal.example:3128")  # not httpx's
    auths = [make(server, f"tenant-{i}") for i in range(3)]
    assert [auth.get_token().access_token for auth in auths] == ["t1", "t2", "t3"]
    assert server.connections == 1


class HungServer:
    """A loopback TCP server that accepts connections and never answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/token"
        self.accepted: list[socket.socket] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._changed:
                self.accepted.append(conn)
                self._changed.notify_all()

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.accepted) >= count, WAIT)

    def close(self) -> None:
        self._listener.close()
        with self._changed:
            for conn in self.accepted:
                conn.close()


def test_a_hung_token_endpoint_does_not_hold_up_other_credentials(
    server: KeepAliveTokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """101 fetches hung at one tenant's token endpoint (more than httpx's default pool of
    100 connections) leave the shared pool open to another credential: its token comes at
    once, within a deadline far shorter than the hung ones'."""
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)  # with a proxy, no token client uses the shared pool
    hung = HungServer()
    stuck = [
        TokenAuth(
            ClientCredentials(hung.url, client_id=f"slow-{i}", client_secret="a-slow-secret"),
            retry=RetryPolicy(attempts=1, deadline=60),
        )
        for i in range(101)
    ]
    outcomes: list[BaseException | None] = []

    def fetch(auth: TokenAuth) -> None:
        try:
            auth.get_token()
            outcomes.append(None)
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=fetch, args=(auth,), daemon=True) for auth in stuck]
    for thread in threads:
        thread.start()
    try:
        assert hung.wait_for(101), "the hung fetches did not all connect"
        healthy = TokenAuth(
            ClientCredentials(server.url, client_id="ok", client_secret="a-secret-for-ok"),
            retry=RetryPolicy(attempts=1, deadline=5),
        )
        assert healthy.get_token().access_token == "t1"
    finally:
        hung.close()  # the hung fetches now fail, and their threads end
        for thread in threads:
            thread.join(WAIT)
    assert len(outcomes) == 101
    assert all(isinstance(exc, TokenTransportError) for exc in outcomes)
