"""TokenAuth's own token client, against real sockets on 127.0.0.1.

No token_client is passed here: these tests show what the client TokenAuth
creates for itself does (SPEC T2, T6): it speaks real HTTP, never follows the
token endpoint's redirects, and verifies certificates.
"""

from __future__ import annotations

import datetime
import importlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from httpx_tokenauth import (
    ClientCredentials,
    TokenAuth,
    TokenTransportError,
    UnexpectedTokenResponseError,
)


class TokenHandler(BaseHTTPRequestHandler):
    """POST /token issues a token; POST /moved redirects to /token."""

    server: LoopbackServer

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        self.server.paths.append(self.path)
        if self.path == "/moved":
            self.send_response(307)
            self.send_header("Location", "/token")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"access_token": "real-socket-token", "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), TokenHandler)
        self.paths: list[str] = []
        self.connections = 0

    def get_request(self) -> Any:
        self.connections += 1  # counted before the TLS handshake, which may fail
        return super().get_request()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def tls_server(server: LoopbackServer, tmp_path: Path) -> LoopbackServer:
    """The same server behind TLS with a self-signed certificate nobody trusts."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Lib:
    """httpx or httpx2, with the matching TokenAuth and a mock API transport."""

    def __init__(self, name: str) -> None:
        self.http: Any = importlib.import_module(name)
        if name == "httpx":
            self.auth_cls: Any = TokenAuth
        else:
            from httpx_tokenauth.httpx2 import TokenAuth as Httpx2TokenAuth

            self.auth_cls = Httpx2TokenAuth

    def api(self) -> Any:
        http = self.http
        return http.MockTransport(
            lambda request: http.Response(200, json={"auth": request.headers["authorization"]})
        )

    def auth_for(self, url: str) -> Any:
        return self.auth_cls(ClientCredentials(url, client_id="svc", client_secret="secret"))


@pytest.fixture
def http(lib: str) -> Lib:
    return Lib(lib)


def base(server: LoopbackServer, scheme: str = "http") -> str:
    host, port = server.server_address[:2]
    return f"{scheme}://{host}:{port}"


def test_own_client_fetches_over_a_real_socket_sync(server: LoopbackServer, http: Lib) -> None:
    """Without token_client, TokenAuth's own (httpx or httpx2) Client reaches the endpoint."""
    auth = http.auth_for(base(server) + "/token")
    with http.http.Client(auth=auth, transport=http.api()) as client:
        assert client.get("https://api.example/").json() == {"auth": "Bearer real-socket-token"}
    auth.close()
    assert server.paths == ["/token"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_own_client_fetches_over_a_real_socket_async(
    server: LoopbackServer, anyio_backend: str, http: Lib
) -> None:
    """Without async_token_client, TokenAuth's own AsyncClient reaches the endpoint."""
    auth = http.auth_for(base(server) + "/token")
    async with http.http.AsyncClient(auth=auth, transport=http.api()) as client:
        response = await client.get("https://api.example/")
    assert response.json() == {"auth": "Bearer real-socket-token"}
    assert server.paths == ["/token"]


def test_t6_own_client_does_not_follow_redirects_sync(server: LoopbackServer, http: Lib) -> None:
    """T6: a 307 from the token endpoint is an error, and /token is never requested."""
    auth = http.auth_for(base(server) + "/moved")
    with (
        http.http.Client(auth=auth, transport=http.api()) as client,
        pytest.raises(UnexpectedTokenResponseError) as info,
    ):
        client.get("https://api.example/")
    auth.close()
    assert info.value.status_code == 307
    assert server.paths == ["/moved"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_t6_own_client_does_not_follow_redirects_async(
    server: LoopbackServer, anyio_backend: str, http: Lib
) -> None:
    """T6: the async own client does not follow the token endpoint's redirect either."""
    auth = http.auth_for(base(server) + "/moved")
    async with http.http.AsyncClient(auth=auth, transport=http.api()) as client:
        with pytest.raises(UnexpectedTokenResponseError) as info:
            await client.get("https://api.example/")
    assert info.value.status_code == 307
    assert server.paths == ["/moved"]


def test_t2_own_client_verifies_certificates_sync(tls_server: LoopbackServer, http: Lib) -> None:
    """T2: an untrusted certificate fails with a TokenTransportError naming the problem."""
    auth = http.auth_for(base(tls_server, "https") + "/token")
    with (
        http.http.Client(auth=auth, transport=http.api()) as client,
        pytest.raises(TokenTransportError, match="CERTIFICATE_VERIFY_FAILED") as info,
    ):
        client.get("https://api.example/")
    auth.close()
    assert isinstance(info.value.__cause__, http.http.ConnectError)
    assert tls_server.paths == []
    assert tls_server.connections == 1  # a certificate failure is not retried


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_t2_own_client_verifies_certificates_async(
    tls_server: LoopbackServer, anyio_backend: str, http: Lib
) -> None:
    """T2: the async own client verifies certificates too."""
    auth = http.auth_for(base(tls_server, "https") + "/token")
    async with http.http.AsyncClient(auth=auth, transport=http.api()) as client:
        with pytest.raises(TokenTransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get("https://api.example/")
    assert tls_server.paths == []
    assert tls_server.connections == 1  # a certificate failure is not retried


def test_trusting_the_ca_through_token_client_works(
    tls_server: LoopbackServer, tmp_path: Path, http: Lib
) -> None:
    """A token_client told to trust the certificate gets the token over TLS."""
    cert = tmp_path / "cert.pem"
    token_client = http.http.Client(verify=ssl.create_default_context(cafile=str(cert)))
    auth = http.auth_cls(
        ClientCredentials(base(tls_server, "https") + "/token", client_id="a", client_secret="b"),
        token_client=token_client,
    )
    with http.http.Client(auth=auth, transport=http.api()) as client:
        assert client.get("https://api.example/").json() == {"auth": "Bearer real-socket-token"}
    token_client.close()
    assert tls_server.paths == ["/token"]


def test_own_client_timeout_is_finite(server: LoopbackServer, http: Lib) -> None:
    """The own client's timeouts are finite (10 s a phase) and redirects are off."""
    auth = http.auth_for(base(server) + "/token")
    with http.http.Client(auth=auth, transport=http.api()) as client:
        client.get("https://api.example/")
    own = auth._client()  # read-only look at the client TokenAuth made
    assert own.timeout == http.http.Timeout(10.0)
    assert own.follow_redirects is False
    auth.close()
