"""Every Python example in README.md runs as it is pasted, and does what the text says.

Each ```python block is run as it stands (compiled and executed as a script,
``__name__ == "__main__"``, in a namespace of its own: nothing is put in it or
replaced in its text) against httpx_tokenauth.testing's authorization server
and API on 127.0.0.1. Around it is what a reader would have: ``TOKEN_URL``,
``API_URL`` and ``CLIENT_SECRET`` in the environment, ``SSL_CERT_FILE``
naming the test CA (httpx trusts it for the clients the examples make), and
the key files the examples read in the current directory. Then what the
servers saw is checked against what the README says the example does.
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import re
import symtable
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from httpx_tokenauth import RedisTokenStore, TokenAuth, generate_encryption_key
from httpx_tokenauth.testing import (
    FEDERATED_JWT,
    JWT_BEARER,
    TOKEN_EXCHANGE,
    LocalAPI,
    LocalAuthorizationServer,
    LocalCA,
    LocalIssuer,
    ValkeyServer,
)

README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = "readme-client-secret-0123456789-abcdefghij"  # 32+ bytes: HS256 works
SERVICE_ACCOUNT = "reports@project.iam.example"
CACHE_KEY = generate_encryption_key()
#: The Kubernetes service account whose projected token the secretless examples read.
POD_IDENTITY = "system:serviceaccount:billing:api"


@dataclass(frozen=True)
class Block:
    """One ```python block: the heading it sits under, its code, its line in the README."""

    heading: str
    code: str
    line: int

    @property
    def id(self) -> str:
        return f"{self.heading}@{self.line}"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        before = text[: match.start()]
        heading = re.findall(r"^#+ (.+)$", before, re.M)[-1]
        blocks.append(Block(heading, match.group(1), before.count("\n") + 2))
    return blocks


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class Rig:
    server: LocalAuthorizationServer
    api: LocalAPI
    directory: Path
    ca_file: Path
    valkey: ValkeyServer


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The servers, the clients the README names, and the files its examples read."""
    directory = tmp_path_factory.mktemp("readme")
    ca = LocalCA()
    ca_file = directory / "test-ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    billing_key = _pem(ec.generate_private_key(ec.SECP256R1()))
    (directory / "billing-key.pem").write_bytes(billing_key)
    account_key = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    (directory / "api-token").write_text("from-the-sidecar\n")
    with (
        LocalAuthorizationServer(ca) as server,
        LocalAPI(server, ca=ca, required_scopes={"/admin": "admin"}) as api,
        ValkeyServer() as valkey,
    ):
        (directory / "service-account.json").write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "client_email": SERVICE_ACCOUNT,
                    "private_key_id": "sa-key-1",
                    "private_key": account_key.decode(),
                    "token_uri": server.token_url,
                }
            )
        )
        server.register_client(
            "billing-service",
            secret=SECRET,
            public_keys={"billing-2025-01": billing_key},
            scope="invoices:read invoices:write",
        )
        server.register_client(
            "svc", secret=SECRET, scope="things:read invoices:read invoices:write"
        )
        server.register_client(
            SERVICE_ACCOUNT, public_keys={"sa-key-1": account_key}, scope="reports:read"
        )
        platform = LocalIssuer("https://oidc.cluster.example")
        server.trust_issuer(
            platform.issuer, platform.jwks, client_id="billing-service", subject=POD_IDENTITY
        )
        platform.write(directory / "platform-token", POD_IDENTITY, server.token_url, lifetime=3600)
        yield Rig(server, api, directory, ca_file, valkey)


@pytest.fixture
def reader(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Rig:
    """The environment and working directory a reader running the examples has."""
    monkeypatch.setenv("TOKEN_URL", rig.server.token_url)
    monkeypatch.setenv("ISSUER", rig.server.issuer)
    monkeypatch.setenv("API_URL", rig.api.url)
    monkeypatch.setenv("CLIENT_SECRET", SECRET)
    monkeypatch.setenv("SSL_CERT_FILE", str(rig.ca_file))
    monkeypatch.setenv("REDIS_URL", rig.valkey.url)
    monkeypatch.setenv("TOKEN_CACHE_KEY", CACHE_KEY)
    monkeypatch.chdir(rig.directory)
    rig.server.reset()
    rig.api.reset()
    return rig


def run_as_pasted(block: Block) -> dict[str, Any]:
    """Execute the block as a script; its globals afterwards."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)  # noqa: S102
    return namespace


# -- what each example does, by the heading it is under ---------------------------------


def served(rig: Rig) -> list[tuple[Any, ...]]:
    return [
        (r.grant_type, r.client_id, r.auth_method, r.status_code) for r in rig.server.token_requests
    ]


def api_calls(rig: Rig) -> list[tuple[str, int]]:
    return [(r.path, r.status_code) for r in rig.api.requests]


def check_hero(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert served(rig) == [("client_credentials", "billing-service", "client_secret_basic", 200)]
    assert rig.server.token_requests[0].scope == "invoices:read"
    assert api_calls(rig) == [("/invoices", 200)]


def check_quickstart(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert served(rig) == [("client_credentials", "svc", "client_secret_basic", 200)]
    assert api_calls(rig) == [("/things", 200)]


def check_secret_methods(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert served(rig) == [
        ("client_credentials", "svc", "client_secret_basic", 200),
        ("client_credentials", "svc", "client_secret_post", 200),
    ]
    expires_at, scope = out.split(maxsplit=1)
    assert float(expires_at) > time.time()
    assert scope.strip() == str(("things:read", "invoices:read", "invoices:write"))


def check_jwt_bearer(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert served(rig) == [(JWT_BEARER, SERVICE_ACCOUNT, None, 200)]
    assert rig.server.token_requests[0].scope == "reports:read"
    assert api_calls(rig) == [("/reports", 200)]


def check_private_key_jwt(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert served(rig) == [("client_credentials", "billing-service", "private_key_jwt", 200)]
    assert api_calls(rig) == [("/invoices", 200)]
    assert ns["hmac_auth"].get_token().access_token == rig.server.issued_tokens()[-1]
    assert served(rig)[-1] == ("client_credentials", "svc", "client_secret_jwt", 200)


def check_secretless(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert served(rig) == [("client_credentials", "billing-service", FEDERATED_JWT, 200)]
    assert rig.server.token_requests[0].subject == POD_IDENTITY
    assert api_calls(rig) == [("/invoices", 200)]


def check_token_exchange(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert served(rig) == [(TOKEN_EXCHANGE, None, None, 200)] * 2
    assert [r.subject for r in rig.server.token_requests] == [POD_IDENTITY] * 2
    assert out == "urn:ietf:params:oauth:token-type:access_token\n"
    assert api_calls(rig) == [("/invoices", 200)]


def check_scopes(ns: dict[str, Any], rig: Rig, out: str) -> None:
    form = ns["provider"].token_request(time.time()).form
    assert ("scope", "invoices:read invoices:write") in form
    assert ("audience", "https://api.example") in form
    assert [v for k, v in form if k == "resource"] == ["https://a.example", "https://b.example"]
    assert ("tenant", "acme") in form


def check_by_issuer(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert rig.server.metadata_requests == ["/.well-known/oauth-authorization-server"]
    assert served(rig) == [("client_credentials", "svc", "client_secret_jwt", 200)]
    assert api_calls(rig) == [("/things", 200)]


def check_insufficient_scope(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert api_calls(rig) == [("/admin", 403)]
    assert out == "this call needs admin\n"
    assert len(served(rig)) == 1  # no new token for a 403


def check_own_provider(ns: dict[str, Any], rig: Rig, out: str) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"auth": request.headers["authorization"]})

    with httpx.Client(auth=ns["auth"], transport=httpx.MockTransport(api)) as client:
        assert client.get("https://api.example/x").json() == {"auth": "Bearer from-the-sidecar"}


def check_retry(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert isinstance(ns["patient"], TokenAuth)
    assert isinstance(ns["impatient"], TokenAuth)


def check_fleet(ns: dict[str, Any], rig: Rig, out: str) -> None:
    store = ns["store"] if "store" in ns else ns["auth"]._store
    try:
        if "auth" not in ns:  # the example with your own redis-py client builds a store
            assert isinstance(store, RedisTokenStore)
            return
        assert served(rig) == [
            ("client_credentials", "billing-service", "client_secret_basic", 200)
        ]
        if "client" in ns:
            assert api_calls(rig) == [("/invoices", 200)]
        # Another process with the same credential and store: no token request.
        other = TokenAuth(ns["auth"]._provider, store=store)
        assert other.get_token().access_token == rig.server.issued_tokens()[0]
        assert len(served(rig)) == 1
    finally:
        store.close()


def check_dpop(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert out == "{'bound': True} DPoP t1\n"
    # Token endpoint: one proof refused for want of the nonce, then one accepted with it.
    ((_, token_claims),) = ns["token_proofs"].proofs
    assert token_claims["nonce"] == ns["token_proofs"].nonce
    assert "ath" not in token_claims
    ((header, api_claims),) = ns["api_proofs"].proofs
    assert (api_claims["htm"], api_claims["htu"]) == ("GET", "https://api.example/invoices")
    assert "ath" in api_claims
    assert header["jwk"] == ns["bound_to"]["t1"]
    assert not served(rig)  # the example uses its own servers, not the rig's


def check_testing(ns: dict[str, Any], rig: Rig, out: str) -> None:
    assert ns["server"].token_request_count == 2  # its own servers, which it asserted on


CHECKS: dict[str, Callable[[dict[str, Any], Rig, str], None]] = {
    "httpx-tokenauth": check_hero,
    "Quickstart": check_quickstart,
    "Client authentication with a secret": check_secret_methods,
    "JWT-bearer grant: a service account signs its own assertion": check_jwt_bearer,
    "private_key_jwt and client_secret_jwt": check_private_key_jwt,
    "Secretless: the platform's token instead of a secret": check_secretless,
    "Token exchange (RFC 8693)": check_token_exchange,
    "Scopes, audiences and resources": check_scopes,
    "Configure by issuer (discovery)": check_by_issuer,
    "httpx2": check_quickstart,
    "When the API answers 401": check_insufficient_scope,
    "Your own provider": check_own_provider,
    "When things go wrong": check_retry,
    "Many processes, one token": check_fleet,
    "DPoP: tokens bound to a key": check_dpop,
    "Testing your own code against real servers": check_testing,
}
#: httpx2 needs Python 3.11+: where it cannot be installed its example cannot run.
HAS_HTTPX2 = importlib.util.find_spec("httpx2") is not None
BLOCKS = [b for b in readme_blocks() if HAS_HTTPX2 or "import httpx2" not in b.code]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_example_runs_as_pasted(
    block: Block, reader: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    """The block runs unchanged against the local servers and does what the README says."""
    namespace = run_as_pasted(block)
    out = capsys.readouterr().out

    CHECKS[block.heading](namespace, reader, out)


def test_every_readme_example_is_checked() -> None:
    """Each ```python block sits under a heading that has a check, and every check is used:
    a new example cannot go untested, and there are as many as the README shows."""
    headings = {b.heading for b in readme_blocks()}
    assert headings == set(CHECKS)
    assert len(readme_blocks()) >= 12


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_readme_custom_provider_async(reader: Rig, anyio_backend: str) -> None:
    """The README's FileTokenProvider also serves an httpx.AsyncClient, through afetch_token."""
    (block,) = (b for b in readme_blocks() if b.heading == "Your own provider")
    ns = run_as_pasted(block)
    del ns["FileTokenProvider"].fetch_token  # so only the async form can serve

    async def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"auth": request.headers["authorization"]})

    async with httpx.AsyncClient(auth=ns["auth"], transport=httpx.MockTransport(api)) as client:
        response = await client.get("https://api.example/x")
    assert response.json() == {"auth": "Bearer from-the-sidecar"}


def test_readme_examples_need_no_name_from_outside() -> None:
    """No block uses a name it neither defines nor imports (a reader has nothing else)."""
    for block in readme_blocks():
        assert undefined_names(block.code) == set(), block.id


def undefined_names(code: str) -> set[str]:
    """Names the code reads at module level or as globals that it never binds."""
    top = symtable.symtable(code, "README.md", "exec")
    bound = {
        s.get_name()
        for s in top.get_symbols()
        if s.is_assigned() or s.is_imported() or s.is_namespace()
    }
    used: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (table is top or symbol.is_global()):
                used.add(symbol.get_name())
        for child in table.get_children():
            walk(child)

    walk(top)
    return used - bound - set(dir(builtins)) - {"__name__"}
