"""httpx2 support: one set of drivers serves both libraries, each with its own types.

The behaviour itself is covered by the client-level suite, which runs every
test against httpx and httpx2 (the ``lib`` fixture); these tests cover what is
specific to having two libraries.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest

# httpx2 needs Python 3.11+; CI runs 3.11 with it installed (conftest refuses to
# run there without it), so this skip only happens on 3.10.
httpx2 = pytest.importorskip("httpx2", reason="httpx2 needs Python 3.11+")

import httpx_tokenauth  # noqa: E402
from httpx_tokenauth import ClientCredentials, ConfigurationError, Token  # noqa: E402
from httpx_tokenauth.httpx2 import TokenAuth as Httpx2TokenAuth  # noqa: E402

PROVIDER = ClientCredentials("https://as.example/token", client_id="c", client_secret="s")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_each_token_auth_is_its_librarys_auth() -> None:
    """httpx_tokenauth.TokenAuth is an httpx.Auth; the httpx2 one is an httpx2.Auth."""
    assert isinstance(httpx_tokenauth.TokenAuth(PROVIDER), httpx.Auth)
    assert not isinstance(httpx_tokenauth.TokenAuth(PROVIDER), httpx2.Auth)
    assert isinstance(Httpx2TokenAuth(PROVIDER), httpx2.Auth)
    assert not isinstance(Httpx2TokenAuth(PROVIDER), httpx.Auth)


def test_token_clients_must_be_of_the_same_library() -> None:
    """An httpx.Client as the httpx2 TokenAuth's token client is refused, naming the right type."""
    with pytest.raises(ConfigurationError, match=r"httpx2\.Client, got httpx\.Client"):
        Httpx2TokenAuth(PROVIDER, token_client=httpx.Client())
    with pytest.raises(ConfigurationError, match=r"httpx\.AsyncClient, got httpx2\.AsyncClient"):
        httpx_tokenauth.TokenAuth(PROVIDER, async_token_client=httpx2.AsyncClient())


def test_both_libraries_side_by_side_share_one_provider() -> None:
    """One process, one provider: an httpx client and an httpx2 client each get tokens."""
    calls: list[str] = []

    class Provider:
        def fetch_token(self) -> Token:
            calls.append("fetch")
            return Token(f"tok-{len(calls)}")

    provider = Provider()
    echo = "authorization"
    with (
        httpx.Client(
            auth=httpx_tokenauth.TokenAuth(provider),
            transport=httpx.MockTransport(lambda r: httpx.Response(200, text=r.headers[echo])),
        ) as one,
        httpx2.Client(
            auth=Httpx2TokenAuth(provider),
            transport=httpx2.MockTransport(lambda r: httpx2.Response(200, text=r.headers[echo])),
        ) as two,
    ):
        assert one.get("https://api.example/").text == "Bearer tok-1"
        assert two.get("https://api.example/").text == "Bearer tok-2"
        assert one.get("https://api.example/").text == "Bearer tok-1"


def test_import_works_without_httpx2_installed() -> None:
    """Without httpx2 the package imports; httpx_tokenauth.httpx2 says how to install it."""
    result = run(
        """
        import sys
        sys.modules["httpx2"] = None  # as if not installed
        import httpx_tokenauth
        print("core ok", httpx_tokenauth.TokenAuth.__mro__[-2].__module__)
        try:
            import httpx_tokenauth.httpx2
        except ImportError as exc:
            print("error:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "core ok" in result.stdout
    assert "pip install 'httpx-tokenauth[httpx2]'" in result.stdout


def test_importing_the_package_does_not_import_httpx2() -> None:
    """httpx2 is only imported by httpx_tokenauth.httpx2, never by the package itself."""
    result = run("import sys, httpx_tokenauth; print('httpx2' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_alias_httpx_makes_the_default_token_auth_an_httpx2_auth() -> None:
    """After httpx2.alias_httpx(), httpx_tokenauth.TokenAuth works as auth= for httpx2 clients."""
    result = run(
        """
        import httpx2
        httpx2.alias_httpx()
        import httpx
        from httpx_tokenauth import Token, TokenAuth
        from httpx_tokenauth.httpx2 import TokenAuth as Httpx2TokenAuth

        class Provider:
            def fetch_token(self):
                return Token("aliased")

        assert httpx is httpx2
        for cls in (TokenAuth, Httpx2TokenAuth):
            auth = cls(Provider())
            transport = httpx2.MockTransport(
                lambda r: httpx2.Response(200, text=r.headers["authorization"])
            )
            with httpx2.Client(auth=auth, transport=transport) as client:
                print(cls.__module__, client.get("https://api.example/").text)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "httpx_tokenauth._auth Bearer aliased",
        "httpx_tokenauth.httpx2 Bearer aliased",
    ]
