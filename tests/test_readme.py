"""The README's examples run as written."""

from __future__ import annotations

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
