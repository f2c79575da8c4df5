"""What ``import httpx_tokenauth`` loads: the core now, each optional feature on first use.

Every check runs in a new interpreter, because this test process has long
imported everything. What is asserted is what ``sys.modules`` holds, never how
long anything took.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import httpx_tokenauth

#: Modules of features a plain ClientCredentials + TokenAuth user does not use:
#: client assertions, the 401 rules, discovery, DPoP, token exchange, JWT methods,
#: key loading, the shared stores, OpenTelemetry, the stats snapshot and the CLI.
FEATURE_MODULES = [
    f"httpx_tokenauth.{name}"
    for name in (
        "_assertions",
        "_challenge",
        "_cli",
        "_discovery",
        "_dpop",
        "_exchange",
        "_jwt",
        "_keys",
        "_otel",
        "_snapshot",
        "_store",
        "_store_file",
        "_store_redis",
    )
]


def run(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter; its stdout is one JSON value."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def loaded_after(code: str) -> list[str]:
    """Which FEATURE_MODULES are loaded once ``code`` has run in a new interpreter."""
    result = run(
        textwrap.dedent(code)
        + textwrap.dedent(
            f"""
            import json, sys
            print(json.dumps([m for m in {FEATURE_MODULES!r} if m in sys.modules]))
            """
        )
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_package_loads_no_feature_module() -> None:
    """`import httpx_tokenauth` loads none of the optional features' modules."""
    assert loaded_after("import httpx_tokenauth\n") == []


def test_a_plain_client_credentials_user_loads_no_feature_module() -> None:
    """ClientCredentials + TokenAuth, sync and async, a token fetched and used: none loaded."""
    code = """
    import asyncio
    import httpx
    from httpx_tokenauth import ClientCredentials, TokenAuth

    token_requests = []

    def handler(request):
        if request.url.path == "/token":
            token_requests.append(request)
            return httpx.Response(200, json={"access_token": "tok", "token_type": "Bearer"})
        assert request.headers["authorization"] == "Bearer tok"
        return httpx.Response(200, text="ok")

    auth = TokenAuth(
        ClientCredentials("https://as.example/token", client_id="c", client_secret="s"),
        token_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(handler)) as client:
        assert client.get("https://api.example/things").text == "ok"
    assert len(token_requests) == 1

    async def main():
        auth = TokenAuth(
            ClientCredentials("https://as.example/token", client_id="c", client_secret="s"),
            async_token_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        )
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(handler)) as client:
            assert (await client.get("https://api.example/things")).text == "ok"

    asyncio.run(main())
    assert len(token_requests) == 2
    """
    assert loaded_after(code) == []


def test_a_rejected_token_loads_the_401_rules_and_is_replayed() -> None:
    """A 401 loads the challenge rules when it comes: the token is renewed and the request
    replayed, and nothing else is loaded."""
    code = """
    import httpx
    from httpx_tokenauth import ClientCredentials, TokenAuth

    issued, seen = [], []

    def handler(request):
        if request.url.path == "/token":
            issued.append(f"tok-{len(issued) + 1}")
            return httpx.Response(200, json={"access_token": issued[-1], "token_type": "Bearer"})
        seen.append(request.headers["authorization"])
        if len(seen) == 1:
            return httpx.Response(401, headers={"www-authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200, text="ok")

    auth = TokenAuth(
        ClientCredentials("https://as.example/token", client_id="c", client_secret="s"),
        token_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(handler)) as client:
        assert client.get("https://api.example/things").text == "ok"
    assert seen == ["Bearer tok-1", "Bearer tok-2"], seen
    """
    assert loaded_after(code) == ["httpx_tokenauth._challenge"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("from httpx_tokenauth import DPoP", ["_dpop", "_keys"]),
        ("from httpx_tokenauth import ClientAssertion", ["_assertions"]),
        ("from httpx_tokenauth import PrivateKeyJWT", ["_jwt", "_keys"]),
        ("from httpx_tokenauth import FileTokenStore", ["_store", "_store_file"]),
        ("from httpx_tokenauth import RedisTokenStore", ["_store", "_store_redis"]),
        ("from httpx_tokenauth import generate_encryption_key", ["_store"]),
        ("from httpx_tokenauth import DiscoveryError", ["_discovery"]),
        ("from httpx_tokenauth import BearerChallenge", ["_challenge"]),
        ("from httpx_tokenauth import TokenStats", ["_snapshot"]),
        (
            "from httpx_tokenauth import ClientCredentials, TokenAuth\n"
            "TokenAuth(ClientCredentials('https://as.example/t', client_id='c',"
            " client_secret='s')).stats()",
            ["_snapshot"],
        ),
        (
            "from httpx_tokenauth import ClientCredentials\n"
            "ClientCredentials.from_issuer('https://as.example', client_id='c', client_secret='s')",
            ["_discovery"],
        ),
    ],
)
def test_a_feature_loads_its_modules_when_first_used(code: str, expected: list[str]) -> None:
    """Using one feature loads its own modules, and not those of the other features."""
    assert loaded_after(code + "\n") == [f"httpx_tokenauth.{m}" for m in expected]


def test_every_exported_name_resolves_in_a_new_interpreter() -> None:
    """Each name in __all__ imports with `from httpx_tokenauth import X` and reads as an
    attribute in a new interpreter, as the very object its own module defines."""
    result = run(
        f"""
        import importlib, json
        import httpx_tokenauth
        failures = []
        for name in {sorted(httpx_tokenauth.__all__)!r}:
            try:
                imported = getattr(__import__("httpx_tokenauth", fromlist=[name]), name)
                value = httpx_tokenauth.__dict__[name]
                defined = getattr(importlib.import_module(value.__module__), name)
                if not imported is value is defined:
                    failures.append([name, "not the same object"])
            except Exception as exc:
                failures.append([name, repr(exc)])
        print(json.dumps(failures))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_dir_lists_every_exported_name_before_it_is_used() -> None:
    """dir(httpx_tokenauth) names all of __all__ in a new interpreter, lazy names included."""
    result = run(
        "import json, httpx_tokenauth\n"
        "print(json.dumps(sorted(set(httpx_tokenauth.__all__) - set(dir(httpx_tokenauth)))))\n"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_an_unknown_name_is_an_attribute_error_that_names_it() -> None:
    """A name the package does not have raises AttributeError (ImportError from `from`)."""
    with pytest.raises(AttributeError, match="'httpx_tokenauth' has no attribute 'TokenAuthh'"):
        httpx_tokenauth.TokenAuthh  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError, match="TokenAuthh"):
        from httpx_tokenauth import TokenAuthh  # type: ignore[attr-defined]  # noqa: F401
