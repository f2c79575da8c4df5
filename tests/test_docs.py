"""The recipes in docs/ are right: their code runs as pasted, and sends what the text says.

Every ```python block of docs/*.md runs unchanged (as a script, in a namespace
of its own), from a directory holding fake key, certificate and service
account files under the names the recipe reads, with fake secrets in the
environment variables it reads. The recipes name real vendors' token
endpoints, so nothing is sent: the token request the block's ``provider``
would send is built (sans-I/O) and checked against what the recipe promises.
Every `httpx-tokenauth token` command of a recipe, run from the same
directory, must build the same token request as one of its Python blocks.
"""

from __future__ import annotations

import datetime
import json
import re
import shlex
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from httpx_tokenauth import TokenAuth
from httpx_tokenauth._cli import build_provider, parser, unverified_jwt

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: The vendor recipes: the pages with code (docs/ may also hold prose-only pages). The MCP
#: recipe talks to a server and is run end to end by tests/integration/test_mcp.py instead.
RECIPES = sorted(
    p.name
    for p in DOCS.glob("*.md")
    if p.name not in ("README.md", "mcp.md") and "```python" in p.read_text()
)
FAKE_SECRET = "fake-client-secret-for-the-docs-0123456789"
#: Files the recipes read; keys are RSA unless the recipe signs with ES256.
EC_KEY_FILES = {"billing-service.key.pem"}


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def _commands(text: str) -> list[str]:
    """The shell lines of a recipe, continuation lines joined."""
    lines: list[str] = []
    for block in _blocks(text, "sh"):
        lines.extend(block.replace("\\\n", " ").splitlines())
    return [line.strip() for line in lines if line.strip()]


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """Fake key, certificate and service account files under the names the recipes use."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())

    def pem(key: Any) -> bytes:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "billing-service")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(rsa_key, hashes.SHA256())
    )
    for text in (DOCS / r for r in RECIPES):
        for filename in re.findall(r"[\w.-]+\.(?:key\.pem|crt\.pem|json)", text.read_text()):
            if filename.endswith(".key.pem"):
                key = ec_key if filename in EC_KEY_FILES else rsa_key
                (tmp_path / filename).write_bytes(pem(key))
            elif filename.endswith(".crt.pem"):
                (tmp_path / filename).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    account = {
        "type": "service_account",
        "client_email": "reports@my-project.iam.gserviceaccount.com",
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem(rsa_key).decode(),
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    (tmp_path / "google-service-account.json").write_text(json.dumps(account))
    return tmp_path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HTTPX_TOKENAUTH_"):
            monkeypatch.delenv(name)


def sent(provider: Any) -> dict[str, Any]:
    """What the provider's token request carries, assertions decoded, times left out."""
    request = provider.token_request(time.time())
    form: list[tuple[str, Any]] = []
    for name, value in parse_qsl(request.body.decode(), keep_blank_values=True):
        if name not in ("assertion", "client_assertion"):
            form.append((name, value))
            continue
        decoded = unverified_jwt(value)
        assert decoded is not None
        header, claims = decoded
        claims = {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}
        form.append((name, {"header": header, "claims": claims}))
    headers = dict(request.headers)
    return {"url": request.url, "authorization": headers.get("Authorization"), "form": form}


def run_python_blocks(
    recipe: str, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """Run each Python block of a recipe as pasted, from the directory holding its files,
    with its secrets' variables set; what each block's provider sends."""
    monkeypatch.chdir(secrets_dir)
    results = []
    for block in _blocks((DOCS / recipe).read_text(), "python"):
        for name in re.findall(r'os\.environ\["(\w+)"\]', block):
            monkeypatch.setenv(name, FAKE_SECRET)
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(block, recipe, "exec"), namespace)  # noqa: S102 - our own docs
        assert isinstance(namespace["auth"], TokenAuth)
        results.append(sent(namespace["provider"]))
    return results


def form(result: dict[str, Any]) -> dict[str, Any]:
    return dict(result["form"])


# -- each recipe says what it sends --------------------------------------------------------


def test_entra_id(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entra ID: PS256 assertion with x5t#S256, aud = v2.0 token URL; the secret in the body."""
    certificate, secret = run_python_blocks("entra-id.md", secrets_dir, monkeypatch)
    token_url = (
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token"
    )
    assertion = form(certificate)["client_assertion"]
    assert certificate["url"] == token_url
    assert set(assertion["header"]) == {"alg", "typ", "x5t#S256"}
    assert assertion["header"]["alg"] == "PS256"
    client_id = "11111111-1111-1111-1111-111111111111"
    assert assertion["claims"] == {"iss": client_id, "sub": client_id, "aud": token_url}
    assert form(certificate)["scope"] == "https://graph.microsoft.com/.default"
    assert certificate["authorization"] is None
    assert form(secret)["client_secret"] == FAKE_SECRET
    assert secret["authorization"] is None


def test_okta(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Okta: Basic by default; private_key_jwt with kid and aud = the full token URL."""
    secret, key = run_python_blocks("okta.md", secrets_dir, monkeypatch)
    token_url = "https://your-org.okta.com/oauth2/default/v1/token"
    assert secret["authorization"].startswith("Basic ")
    assert form(secret) == {"grant_type": "client_credentials", "scope": "invoices:read"}
    assertion = form(key)["client_assertion"]
    assert assertion["header"] == {"alg": "RS256", "typ": "JWT", "kid": "okta-service-2025"}
    assert assertion["claims"]["aud"] == token_url


def test_auth0(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auth0: audience form parameter; the assertion's aud is the tenant URL with a slash."""
    secret, key = run_python_blocks("auth0.md", secrets_dir, monkeypatch)
    assert form(secret)["audience"] == "https://api.example.com"
    assert form(secret)["client_secret"] == FAKE_SECRET
    assert form(key)["audience"] == "https://api.example.com"
    assert form(key)["client_assertion"]["claims"]["aud"] == "https://your-tenant.us.auth0.com/"


def test_keycloak(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keycloak: Basic; Signed JWT (ES256) and HS256, both with aud = the realm issuer."""
    secret, signed, hmac = run_python_blocks("keycloak.md", secrets_dir, monkeypatch)
    realm = "https://sso.example.com/realms/billing"
    assert secret["url"] == f"{realm}/protocol/openid-connect/token"
    assert secret["authorization"].startswith("Basic ")
    assert "scope" not in form(secret)
    assert form(signed)["client_assertion"]["header"]["alg"] == "ES256"
    assert form(signed)["client_assertion"]["claims"]["aud"] == realm
    assert form(hmac)["client_assertion"]["header"]["alg"] == "HS256"
    assert form(hmac)["client_assertion"]["claims"]["aud"] == realm


def test_google(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Google: JWT bearer, scope as a claim (not a form field), kid = private_key_id."""
    (grant,) = run_python_blocks("google.md", secrets_dir, monkeypatch)
    email = "reports@my-project.iam.gserviceaccount.com"
    fields = form(grant)
    assert set(fields) == {"grant_type", "assertion"}
    assert fields["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert fields["assertion"]["header"] == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": "0123456789abcdef0123456789abcdef01234567",
    }
    assert fields["assertion"]["claims"] == {
        "iss": email,
        "sub": email,
        "aud": "https://oauth2.googleapis.com/token",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
    }
    assert grant["authorization"] is None


# -- the shell commands match the code ----------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES)
def test_shell_commands_send_what_the_python_code_sends(
    recipe: str, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `httpx-tokenauth token` command builds the token request of a Python block."""
    expected = run_python_blocks(recipe, secrets_dir, monkeypatch)
    checked = 0
    for line in _commands((DOCS / recipe).read_text()):
        words = shlex.split(line)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            monkeypatch.setenv(name, value)
            continue
        while words and re.fullmatch(r"\w+=.*", words[0]):  # NAME=value httpx-tokenauth ...
            monkeypatch.setenv(words.pop(0).split("=")[0], FAKE_SECRET)
        if words[:2] != ["httpx-tokenauth", "token"]:
            continue  # openssl, curl: not ours
        provider = build_provider(parser().parse_args(["token", *words[2:]]))
        assert sent(provider) in expected, line
        checked += 1
    assert checked >= 1


def test_every_docs_block_uses_only_names_it_defines() -> None:
    """No Python block of docs/ needs a name from outside it (imports and all are there)."""
    from test_readme import undefined_names

    for page in sorted(DOCS.glob("*.md")):
        for block in _blocks(page.read_text(), "python"):
            assert undefined_names(block) == set(), (page.name, block[:60])
