"""The README's examples run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from httpx_tokenauth import TokenAuth

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(heading: str) -> str:
    """The first ```python block under a README heading."""
    text = README.read_text()
    section = text[text.index(f"## {heading}") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, heading
    return match.group(1)


def load_provider_example(token_file: Path) -> Any:
    code = readme_block("Your own provider").replace("/run/secrets/api-token", str(token_file))
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def api(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"auth": request.headers["authorization"]})


def test_readme_custom_provider_sync(tmp_path: Path) -> None:
    """The README's FileTokenProvider authenticates an httpx.Client."""
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    ns = load_provider_example(token_file)
    assert isinstance(ns["auth"], TokenAuth)
    with httpx.Client(auth=ns["auth"], transport=httpx.MockTransport(api)) as client:
        assert client.get("https://api.example/x").json() == {"auth": "Bearer from-the-file"}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_readme_custom_provider_async(tmp_path: Path, anyio_backend: str) -> None:
    """The README's FileTokenProvider authenticates an httpx.AsyncClient via afetch_token."""
    token_file = tmp_path / "token"
    token_file.write_text("async-from-the-file\n")
    ns = load_provider_example(token_file)
    del ns["FileTokenProvider"].fetch_token  # so only the async form can serve
    async with httpx.AsyncClient(auth=ns["auth"], transport=httpx.MockTransport(api)) as client:
        response = await client.get("https://api.example/x")
    assert response.json() == {"auth": "Bearer async-from-the-file"}


def test_readme_jwt_examples_construct(tmp_path: Path) -> None:
    """The README's JWT-bearer and private_key_jwt examples build working providers."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    account = tmp_path / "service-account.json"
    account.write_text(
        json.dumps(
            {
                "token_uri": "https://as.example/oauth2/token",
                "client_email": "robot@example",
                "private_key": rsa_pem,
                "private_key_id": "k-1",
            }
        )
    )
    ec_pem = tmp_path / "billing-key.pem"
    ec_pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    bearer = readme_block("JWT-bearer grant").replace(
        "/run/secrets/service-account.json", str(account)
    )
    bearer = bearer[: bearer.index("with httpx.Client")]  # no network from tests
    ns: dict[str, Any] = {}
    exec(compile(bearer, "README.md", "exec"), ns)  # noqa: S102 - our own README
    request = ns["auth"]._provider.token_request(1_700_000_000.0)
    assert dict(request.form)["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"

    client_auth = readme_block("private_key_jwt").replace(
        "/run/secrets/billing-key.pem", str(ec_pem)
    )
    ns = {"url": "https://as.example/token", "secret": "x" * 32}
    exec(compile(client_auth, "README.md", "exec"), ns)  # noqa: S102 - our own README
    form = dict(ns["auth"]._provider.token_request(1_700_000_000.0).form)
    assert form["client_assertion_type"] == (
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
