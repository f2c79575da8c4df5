"""DPoP (RFC 9449, SPEC D1-D3) through TokenAuth: proofs on token and API requests, nonces per
origin, the 401 rules, unbound tokens, and the thumbprint in the shared store's key. Every test
body runs for sync/asyncio/trio x httpx/httpx2 against fake servers that verify each proof."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from httpx_tokenauth import (
    ClientCredentials,
    DPoP,
    DPoPNonceError,
    DPoPNotBoundError,
    FileTokenStore,
    PrivateKeyJWT,
    UnsupportedTokenTypeError,
    generate_encryption_key,
)
from httpx_tokenauth._dpop import thumbprint
from httpx_tokenauth.testing import DPoPProofError, DPoPVerifier

from conftest import API_URL, CLIENT_ID, TOKEN_URL, Env, body_of, token_json

pytestmark = pytest.mark.anyio


class DPoPServers:
    """A token endpoint and an API that check every proof; tokens are bound to the proof's key."""

    def __init__(self, env: Env, *, as_nonce: bool = False, api_nonce: bool = False) -> None:
        self.env = env
        self.as_verifier = DPoPVerifier(require_nonce=as_nonce, clock=env.clock)
        self.api_verifier = DPoPVerifier(require_nonce=api_nonce, clock=env.clock)
        self.bound: dict[str, str] = {}  # access token -> jkt
        self.token_type = "DPoP"
        self.api_nonce_on_success = False
        self.rotate_api_nonce_on_demand = False
        self.rejected_tokens: set[str] = set()
        self.as_errors: list[str] = []
        self.api_errors: list[str] = []
        self._lock = threading.Lock()
        env.auth_server.reply = self.token
        env.api.reply = self.api

    def token(self, request: httpx.Request, n: int) -> httpx.Response:
        nonce = {"DPoP-Nonce": self.as_verifier.nonce}
        try:
            self.as_verifier.verify(
                request.headers.get("dpop"), method="POST", url=str(request.url)
            )
        except DPoPProofError as exc:
            self.as_errors.append(exc.error)
            return httpx.Response(400, headers=nonce, json={"error": exc.error})
        header = jwt.get_unverified_header(request.headers["dpop"])
        access_token = f"t{n}"
        with self._lock:
            self.bound[access_token] = thumbprint(header["jwk"])
        body = token_json(access_token, token_type=self.token_type)
        return httpx.Response(200, headers=nonce, json=body)

    def api(self, request: httpx.Request) -> httpx.Response:
        scheme, _, access_token = (request.headers.get("authorization") or "").partition(" ")
        nonce = {"DPoP-Nonce": self.api_verifier.nonce}
        if scheme != "DPoP" or access_token not in self.bound:
            return httpx.Response(401, headers={"WWW-Authenticate": "DPoP"})
        if access_token in self.rejected_tokens:
            challenge = 'DPoP error="invalid_token", algs="ES256 EdDSA"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        try:
            self.api_verifier.verify(
                request.headers.get("dpop"),
                method=request.method,
                url=str(request.url),
                access_token=access_token,
                jkt=self.bound[access_token],
            )
        except DPoPProofError as exc:
            self.api_errors.append(exc.error)
            if exc.error == "use_dpop_nonce" and self.rotate_api_nonce_on_demand:
                self.api_verifier.rotate_nonce()  # what it hands out is stale at once
            challenge = f'DPoP error="{exc.error}"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge, **nonce})
        headers = nonce if self.api_nonce_on_success else {}
        return httpx.Response(200, headers=headers, json={"token": access_token})


def claims_of(proof: str) -> dict[str, Any]:
    return jwt.decode(proof, options={"verify_signature": False})


def proofs(requests: list[httpx.Request]) -> list[dict[str, Any]]:
    return [claims_of(r.headers["dpop"]) for r in requests]


async def test_d1_token_and_api_requests_carry_proofs_the_servers_verify(env: Env) -> None:
    """The token request has a proof without ath; each API request a new one bound to the token."""
    servers = DPoPServers(env)
    env.make(dpop=DPoP())
    first = await env.request()
    second = await env.request("POST", API_URL + "?page=2#frag", json={"a": 1})
    assert [first.status_code, second.status_code] == [200, 200]
    assert env.auth_server.count == 1
    assert servers.as_errors == servers.api_errors == []
    assert env.api.authorization == ["DPoP t1", "DPoP t1"]
    token_proof = claims_of(env.auth_server.requests[0].headers["dpop"])
    assert token_proof["htm"] == "POST"
    assert token_proof["htu"] == TOKEN_URL
    assert "ath" not in token_proof
    api_proofs = [claims for _, claims in servers.api_verifier.proofs]
    assert [p["htm"] for p in api_proofs] == ["GET", "POST"]
    assert [p["htu"] for p in api_proofs] == [API_URL, API_URL]  # no query, no fragment
    assert len({p["jti"] for p in [token_proof, *api_proofs]}) == 3
    assert all(p["iat"] == int(env.clock.now) for p in api_proofs)


async def test_d1_the_key_is_stable_across_renewals_and_the_jwk_is_public(env: Env) -> None:
    """A renewed token is bound to the same generated key; the jwk header has no private part."""
    servers = DPoPServers(env)
    auth = env.make(dpop=DPoP())
    await env.request()
    servers.rejected_tokens.add("t1")
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 2
    assert servers.bound["t1"] == servers.bound["t2"]
    headers = [header for header, _ in servers.as_verifier.proofs]
    assert all(set(h["jwk"]) == {"kty", "crv", "x", "y"} for h in headers)
    assert all(h["typ"] == "dpop+jwt" and h["alg"] == "ES256" for h in headers)
    assert "PRIVATE" not in repr(auth)


async def test_d2_token_endpoint_nonce_demand_is_one_retry_with_a_new_assertion(
    env: Env,
) -> None:
    """AS 400 use_dpop_nonce: one immediate retry with the nonce, a new proof, a new assertion."""
    servers = DPoPServers(env, as_nonce=True)
    key = ec.generate_private_key(ec.SECP256R1())
    provider = ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_auth=PrivateKeyJWT(key))
    env.make(
        provider,
        dpop=DPoP(),
        token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
        async_token_client=env.http.AsyncClient(transport=env.transport(env.auth_server.ahandler)),
    )
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 2
    assert servers.as_errors == ["use_dpop_nonce"]
    first, second = proofs(env.auth_server.requests)
    assert "nonce" not in first
    assert second["nonce"] == servers.as_verifier.nonce
    assertions = [f["client_assertion"][0] for f in env.auth_server.forms]
    assert assertions[0] != assertions[1]
    # The AS nonce is the AS origin's: the API request carries none.
    assert "nonce" not in servers.api_verifier.proofs[0][1]


async def test_d2_api_nonce_demand_replays_once_with_the_same_token(env: Env) -> None:
    """API 401 DPoP use_dpop_nonce: one replay with the nonce and the same token, no renewal."""
    servers = DPoPServers(env, api_nonce=True)
    env.make(dpop=DPoP())
    response = await env.request()
    assert response.status_code == 200
    assert env.auth_server.count == 1
    assert env.api.authorization == ["DPoP t1", "DPoP t1"]
    assert servers.api_errors == ["use_dpop_nonce"]
    assert servers.api_verifier.proofs[0][1]["nonce"] == servers.api_verifier.nonce
    # Learned for that origin: the next request carries it at once.
    assert (await env.request()).status_code == 200
    assert len(env.api.requests) == 3
    # The token endpoint never saw the API's nonce.
    assert all("nonce" not in c for _, c in servers.as_verifier.proofs)


async def test_d2_nonces_are_learned_from_successful_responses_too(env: Env) -> None:
    """A DPoP-Nonce on a 200 is used by the next proof to that origin, so no 401 is needed."""
    servers = DPoPServers(env)
    servers.api_nonce_on_success = True
    env.make(dpop=DPoP())
    await env.request()
    servers.api_verifier.require_nonce = True
    assert (await env.request()).status_code == 200
    assert len(env.api.requests) == 2
    assert servers.api_errors == []


async def test_d2_a_repeated_nonce_demand_is_a_typed_error_not_a_loop(env: Env) -> None:
    """An API that rejects every nonce it hands out: one replay, then DPoPNonceError."""
    servers = DPoPServers(env, api_nonce=True)
    servers.rotate_api_nonce_on_demand = True
    env.make(dpop=DPoP())
    with pytest.raises(DPoPNonceError) as caught:
        await env.request()
    assert caught.value.origin == "https://api.example"
    assert caught.value.status_code == 401
    assert len(env.api.requests) == 2
    assert env.auth_server.count == 1
    assert "t1" not in str(caught.value)


async def test_d2_token_endpoint_repeated_nonce_demand_is_a_typed_error(env: Env) -> None:
    """An AS that demands a new nonce every time: two token requests, then DPoPNonceError."""
    servers = DPoPServers(env, as_nonce=True)
    original = servers.token

    def rotating(request: httpx.Request, n: int) -> httpx.Response:
        response = original(request, n)
        servers.as_verifier.rotate_nonce()
        return response

    env.auth_server.reply = rotating
    env.make(dpop=DPoP())
    with pytest.raises(DPoPNonceError) as caught:
        await env.request()
    assert caught.value.origin == "https://as.example"
    assert caught.value.status_code == 400
    assert env.auth_server.count == 2
    assert env.api.requests == []


async def test_d2_invalid_token_renews_and_replays_once(env: Env) -> None:
    """API 401 DPoP invalid_token: a new token and one replay; a second 401 goes to the caller."""
    servers = DPoPServers(env)
    env.make(dpop=DPoP())
    servers.rejected_tokens.update({"t1", "t2"})
    response = await env.request()
    assert response.status_code == 401
    assert env.api.authorization == ["DPoP t1", "DPoP t2"]
    assert env.auth_server.count == 2


async def test_d2_nonce_replay_and_renewal_replay_are_counted_apart(env: Env) -> None:
    """A nonce demand, then invalid_token: one nonce replay plus one renewal replay, no more."""
    servers = DPoPServers(env, api_nonce=True)
    env.make(dpop=DPoP())
    await env.request()  # learns the nonce
    servers.api_verifier.rotate_nonce()  # the next request's nonce is stale
    servers.rejected_tokens.add("t1")
    calls: list[int] = []
    original = servers.api

    def stale_then_reject(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:  # the stale nonce is refused before the token is checked
            servers.rejected_tokens.discard("t1")
            response = original(request)
            servers.rejected_tokens.add("t1")
            return response
        return original(request)

    env.api.reply = stale_then_reject
    response = await env.request()
    assert response.status_code == 200
    assert env.api.authorization[2:] == ["DPoP t1", "DPoP t1", "DPoP t2"]
    assert env.auth_server.count == 2


async def test_d2_a_stream_body_is_not_replayed_for_a_nonce(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A one-shot body: the nonce demand goes back to the caller as the 401, with a warning."""
    DPoPServers(env, api_nonce=True)
    env.make(dpop=DPoP())
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        response = await env.request("POST", content=body_of(env.flavor, [b"a", b"b"]))
    assert response.status_code == 401
    assert len(env.api.requests) == 1
    assert any("cannot be sent twice" in r.getMessage() for r in caplog.records)


async def test_d2_a_bearer_token_is_refused_unless_allowed(env: Env) -> None:
    """A server that ignores DPoP: DPoPNotBoundError; with allow_bearer, plain Bearer, no proof."""
    servers = DPoPServers(env)
    servers.token_type = "Bearer"
    env.make(dpop=DPoP())
    with pytest.raises(DPoPNotBoundError) as caught:
        await env.request()
    assert "allow_bearer" in str(caught.value)
    assert env.api.requests == []


async def test_d2_allow_bearer_sends_a_bearer_token_without_a_proof(env: Env) -> None:
    """DPoP(allow_bearer=True) with a server that ignores DPoP: Authorization Bearer, no DPoP."""
    servers = DPoPServers(env)
    servers.token_type = "Bearer"
    env.api.reply = None  # the plain bearer API of the harness
    env.make(dpop=DPoP(allow_bearer=True))
    assert (await env.request()).status_code == 200
    assert env.api.authorization == ["Bearer t1"]
    assert "dpop" not in env.api.requests[0].headers
    assert "dpop" in env.auth_server.requests[0].headers


async def test_r3_a_dpop_token_without_dpop_is_still_refused(env: Env) -> None:
    """Without dpop=, a token_type of DPoP is an unsupported type that names the option."""
    env.auth_server.reply = lambda request, n: httpx.Response(
        200, json=token_json("t1", token_type="DPoP")
    )
    env.make()
    with pytest.raises(UnsupportedTokenTypeError) as caught:
        await env.request()
    assert "dpop=DPoP()" in str(caught.value)


async def test_d3_the_store_shares_a_dpop_token_only_with_the_same_key(
    env: Env, tmp_path: Any
) -> None:
    """Same key: a second TokenAuth adopts the stored token; another key: a token of its own."""
    DPoPServers(env)
    store = FileTokenStore(tmp_path, encryption_key=generate_encryption_key())
    key = ec.generate_private_key(ec.SECP256R1())
    env.make(dpop=DPoP(key), store=store)
    await env.request()

    def other(dpop: DPoP) -> Any:
        return env.auth_cls(
            env.provider(),
            store=store,
            clock=env.clock,
            dpop=dpop,
            token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
            async_token_client=env.http.AsyncClient(
                transport=env.transport(env.auth_server.ahandler)
            ),
        )

    async def get(auth: Any) -> Any:
        if env.is_sync:
            return await anyio.to_thread.run_sync(auth.get_token)
        return await auth.aget_token()

    same = await get(other(DPoP(key)))
    assert (same.access_token, same.token_type) == ("t1", "DPoP")
    assert env.auth_server.count == 1
    different = await get(other(DPoP()))
    assert different.access_token == "t2"
    assert env.auth_server.count == 2
