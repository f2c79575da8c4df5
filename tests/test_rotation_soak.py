"""A 48-hour rotation soak on an injected clock: no expired assertion is ever sent (SPEC A1, A3).

A simulated platform (kubelet) rewrites the token file with a new 10-minute JWT
every 5 minutes; the token endpoint verifies each client assertion's
signature and refuses it once its ``exp`` has passed by the same clock, and
issues 24-hour access tokens; the API revokes the current token at random
(seeded). Requests arrive at random intervals for 48 simulated hours, with no
real waiting. A client that read the file once, or cached what it read, would
send an expired assertion at its first renewal; this one must send none, and
every API request must succeed, after at most the one replay.
"""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from httpx_tokenauth import ClientAssertion, ClientCredentials, FileAssertion
from httpx_tokenauth.testing import LocalIssuer

from conftest import CLIENT_ID, TOKEN_URL, Env, token_json

pytestmark = pytest.mark.anyio

SEED = 2024
HOURS = 48
ROTATION = 300.0  # kubelet rewrites the file every 5 minutes
ASSERTION_LIFETIME = 600  # with a 10-minute token
ACCESS_LIFETIME = 24 * 3600  # the authorization server issues 24-hour tokens
REVOCATION_CHANCE = 0.004  # per request, the API revokes the token in use
AUDIENCE = "api://AzureADTokenExchange"
SUBJECT = "system:serviceaccount:billing:api"


class Soak:
    """The platform, the token endpoint's checks and the API's revocations, on one clock."""

    def __init__(self, env: Env, path: Path) -> None:
        self.env = env
        self.path = path
        self.issuer = LocalIssuer("https://oidc.aks.example/tenant", clock=env.clock)
        self.key = jwt.PyJWK(self.issuer.jwks["keys"][0])
        self.next_rotation = env.clock()
        self.expired_sent = 0
        self.assertions_checked = 0
        self.issued: list[str] = []
        self.revoked: set[str] = set()

    def platform(self) -> None:
        """Rewrite the file at every 5-minute mark the clock has passed (the last one wins)."""
        now = self.env.clock()
        if self.next_rotation > now:
            return
        while self.next_rotation + ROTATION <= now:
            self.next_rotation += ROTATION
        self.issuer.write(
            self.path, SUBJECT, AUDIENCE, issued_at=self.next_rotation, lifetime=ASSERTION_LIFETIME
        )
        self.next_rotation += ROTATION

    def token_endpoint(self, request: httpx.Request, n: int) -> httpx.Response:
        """Verify the client assertion by our clock: an expired one is counted and refused."""
        assertion = parse_qs(request.content.decode())["client_assertion"][0]
        claims = jwt.decode(
            assertion,
            self.key,
            algorithms=["ES256"],
            audience=AUDIENCE,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
        self.assertions_checked += 1
        now = self.env.clock()
        if not claims["nbf"] <= now < claims["exp"]:
            self.expired_sent += 1
            return httpx.Response(400, json={"error": "invalid_client"})
        token = f"access-{n}"
        self.issued.append(token)
        return httpx.Response(200, json=token_json(token, ACCESS_LIFETIME))


async def test_a1_a3_48_hours_of_rotation_send_no_expired_assertion(
    env: Env, tmp_path: Path
) -> None:
    """A1, A3: over 48 simulated hours, 0 expired assertions are sent, every API request gets
    200 after at most one replay, and renewals and revocations really happened."""
    rng = random.Random(SEED)
    soak = Soak(env, tmp_path / "azure-identity-token")
    soak.platform()
    env.auth_server.reply = soak.token_endpoint
    env.api.accept = lambda token: token not in soak.revoked
    provider = ClientCredentials(
        TOKEN_URL, client_id=CLIENT_ID, client_auth=ClientAssertion(FileAssertion(soak.path))
    )
    env.make(
        provider,
        token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
        async_token_client=env.http.AsyncClient(transport=env.transport(env.auth_server.ahandler)),
    )
    end = env.clock() + HOURS * 3600
    requests = revocations = 0
    while env.clock() < end:
        env.clock.advance(rng.uniform(5, 240))
        soak.platform()
        if soak.issued and rng.random() < REVOCATION_CHANCE:
            soak.revoked.add(soak.issued[-1])
            revocations += 1
        before = len(env.api.requests)
        response = await env.request()
        assert response.status_code == 200, (env.clock(), response.status_code)
        assert len(env.api.requests) - before <= 2  # the request, and at most one replay
        requests += 1

    assert soak.expired_sent == 0
    assert soak.assertions_checked == env.auth_server.count == len(soak.issued)
    # The seed gives both kinds of renewal: after a revocation, and at the 24-hour expiry.
    assert requests > 1000
    assert revocations >= 2
    renewals_at_expiry = env.auth_server.count - 1 - revocations
    assert renewals_at_expiry >= 1
