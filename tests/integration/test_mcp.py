"""A real MCP client and server: the MCP Python SDK over streamable HTTP, tokens by TokenAuth.

The server is the SDK's MCPServer, protected by bearer tokens from
LocalAuthorizationServer: its TokenVerifier checks the JWT's signature,
issuer and audience, and with ``validate_token_resource`` it accepts only
tokens issued for its own URL (RFC 8707). It publishes protected resource
metadata (RFC 9728) naming the authorization server. The client is the SDK's
``streamable_http_client`` over an ``httpx2.AsyncClient`` whose ``auth`` is
``httpx_tokenauth.httpx2.TokenAuth`` configured with the issuer and nothing
else: the first call finds the resource's metadata, then the issuer's, gets
one token for the resource, and succeeds.

mcp 2 speaks httpx2, which needs Python 3.11+; the test extra installs it there
(and CI must have it, as it must have httpx2).
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from httpx_tokenauth import ClientCredentials
from httpx_tokenauth.testing import LocalAuthorizationServer, LocalCA

from .conftest import CLIENT_ID, CLIENT_SECRET

if importlib.util.find_spec("mcp") is None:  # pragma: no cover - only where mcp cannot install
    if os.environ.get("CI") and sys.version_info >= (3, 11):
        raise RuntimeError("CI must test the MCP client: install the project with its test extra")
    pytest.skip("mcp needs Python 3.11+ (it speaks httpx2)", allow_module_level=True)

import httpx2
import uvicorn
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from httpx_tokenauth.httpx2 import TokenAuth

pytestmark = pytest.mark.anyio

STARTUP = 10.0


#: On trio, the SDK's SSE reader drops httpx2's response streams without closing them, and
#: trio reports each as an async generator collected unfinished. Those are the SDK's (only
#: httpx2's and httpcore2's own generators are let through), whatever the auth does.
SDK_STREAMS_LEFT_OPEN = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object "
    r"(PoolByteStream\.__aiter__|Response\.aiter_bytes|Response\.aiter_text|"
    r"EventSource\.__aiter__) :pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture(params=["asyncio", pytest.param("trio", marks=SDK_STREAMS_LEFT_OPEN)])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Verifier:
    """The MCP server's TokenVerifier: a JWT from the test AS, for ``resource``."""

    def __init__(self, server: LocalAuthorizationServer, resource: str) -> None:
        self.server = server
        self.resource = resource
        self.seen: list[str] = []

    async def verify_token(self, token: str) -> AccessToken | None:
        self.seen.append(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.server.public_key,
                algorithms=["ES256"],
                issuer=self.server.issuer,
                audience=self.resource,
            )
        except jwt.InvalidTokenError:
            return None
        return AccessToken(
            token=token,
            client_id=str(claims["client_id"]),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            resource=self.resource,
        )


class MCPTestServer:
    """The SDK's MCPServer with one tool, under uvicorn over TLS on 127.0.0.1."""

    def __init__(self, authorization_server: LocalAuthorizationServer, ca: LocalCA) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.base = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        self.url = f"{self.base}/mcp"
        self.verifier = Verifier(authorization_server, self.url)
        mcp = MCPServer(
            "tokenauth-test",
            token_verifier=self.verifier,
            auth=AuthSettings(
                issuer_url=authorization_server.issuer,
                resource_server_url=self.url,
                validate_token_resource=True,
                required_scopes=["read"],
            ),
        )

        @mcp.tool()
        def add(a: int, b: int) -> int:
            """Add two numbers."""
            return a + b

        config = uvicorn.Config(
            mcp.streamable_http_app(),
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        config.load()
        config.ssl = ca.server_context()
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> MCPTestServer:
        self.thread.start()
        for _ in range(int(STARTUP / 0.01)):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert self.server.started, "the MCP server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(STARTUP)
        self.sock.close()


@pytest.fixture
def mcp_server(auth_server: LocalAuthorizationServer, ca: LocalCA) -> Iterator[MCPTestServer]:
    with MCPTestServer(auth_server, ca) as server:
        yield server


async def test_m3_an_mcp_client_with_only_the_issuer_pinned_discovers_and_calls_a_tool(
    mcp_server: MCPTestServer, auth_server: LocalAuthorizationServer, trust: ssl.SSLContext
) -> None:
    """The SDK's client, auth=TokenAuth(from_issuer): discovery, one token, a tool call works."""
    grant = ClientCredentials.from_issuer(
        auth_server.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="read"
    )
    async with httpx2.AsyncClient(verify=trust) as token_client:
        auth = TokenAuth(grant, async_token_client=token_client)
        async with (
            httpx2.AsyncClient(auth=auth, verify=trust) as http,
            streamable_http_client(mcp_server.url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool("add", {"a": 2, "b": 3})
            again = await session.call_tool("add", {"a": 40, "b": 2})
    assert not result.is_error
    assert result.structured_content == {"result": 5}
    assert again.structured_content == {"result": 42}
    served = auth_server.token_requests
    assert [(r.grant_type, r.status_code, r.resource) for r in served] == [
        ("client_credentials", 200, (mcp_server.url,))
    ]
    assert auth_server.metadata_requests == ["/.well-known/oauth-authorization-server"]
    (token,) = auth_server.issued_tokens()
    assert set(mcp_server.verifier.seen) == {token}  # every MCP request carried that one token


def test_m3_the_mcp_recipe_runs_as_pasted(
    mcp_server: MCPTestServer, auth_server: LocalAuthorizationServer, tmp_path: Path, ca: LocalCA
) -> None:
    """docs/mcp.md's code, unchanged, in a fresh process: the tool answers, one token."""
    recipe = (Path(__file__).resolve().parents[2] / "docs" / "mcp.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", recipe, re.S)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    env = {
        **os.environ,
        "ISSUER": auth_server.issuer,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "MCP_URL": mcp_server.url,
        "SSL_CERT_FILE": str(ca_file),
    }
    done = subprocess.run(
        [sys.executable, "-c", block],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "{'result': 5}"
    assert [r.resource for r in auth_server.token_requests] == [(mcp_server.url,)]
