"""The recipes in docs/ are right: their code runs as pasted, and sends what the text says.

Every ```python block of docs/*.md runs unchanged (as a script, in a namespace
of its own), from a directory holding fake key, certificate and service
account files under the names the recipe reads, with fake secrets in the
environment variables it reads. The recipes name real vendors' token
endpoints, so nothing is sent: the token request the block's ``provider``
would send is built (sans-I/O) and checked against what the recipe promises.
Platform tokens (a projected service-account token, a GitHub Actions OIDC
token) are never fetched either: each variable ``*_FILE`` a recipe reads
names a fake JWT file, the runner's GitHub variables are set to a fake URL,
and the request is built with a fake token for each assertion the provider
reads, decoded like the assertions the library signs.
Every `httpx-tokenauth token` command of a recipe, run from the same
directory, must build the same token request as one of its Python blocks.
"""

from __future__ import annotations

import datetime
import json
import os
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
from httpx_tokenauth.testing import LocalIssuer

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
#: Values of the environment variables recipes read that are not secrets (the rest get
#: FAKE_SECRET; those ending in _FILE name a fake platform token file).
DOC_ENV = {
    "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
}
#: The platform that "issues" the fake tokens of recipe files.
PLATFORM = LocalIssuer("https://platform.example")
#: Fields that carry an assertion, decoded (times left out) rather than compared verbatim.
ASSERTION_FIELDS = ("assertion", "client_assertion", "subject_token", "actor_token")


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
        for filename in re.findall(r"[\w.-]+\.(?:key\.pem|crt\.pem|json|jwt)", text.read_text()):
            if filename.endswith(".jwt"):
                (tmp_path / filename).write_text(PLATFORM.mint("ci", "api://docs"))
            elif filename.endswith(".key.pem"):
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
    for name in list(os.environ):
        if name.startswith("HTTPX_TOKENAUTH_"):
            monkeypatch.delenv(name)


def fake_platform_token(name: str) -> str:
    """The token a recipe's source would give for the field ``name``, the same every time."""
    return PLATFORM.mint(f"fake {name}", "api://docs", issued_at=2_000_000_000, lifetime=3600)


def sent(provider: Any) -> dict[str, Any]:
    """What the provider's token request carries, assertions decoded, times left out.

    Assertions a platform issues (files, GitHub Actions OIDC) are not read: each is the same
    fake token for its field, so the Python block and the shell command can be compared."""
    needs = provider.assertion_sources()
    if needs:
        fakes = {need.name: fake_platform_token(need.name) for need in needs}
        request = provider.token_request_with(time.time(), fakes)
    else:
        request = provider.token_request(time.time())
    form: list[tuple[str, Any]] = []
    for name, value in parse_qsl(request.body.decode(), keep_blank_values=True):
        if name not in ASSERTION_FIELDS:
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
    monkeypatch.setenv(
        "ACTIONS_ID_TOKEN_REQUEST_URL", "https://runner.example/token?api-version=2.0"
    )
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "fake-request-token")
    results = []
    for block in _blocks((DOCS / recipe).read_text(), "python"):
        for name in re.findall(r"os\.environ\[[\"'](\w+)[\"']\]", block):
            if name.endswith("_FILE"):
                path = secrets_dir / f"{name.lower()}.jwt"
                path.write_text(PLATFORM.mint("workload", "api://docs"))
                monkeypatch.setenv(name, str(path))
            else:
                monkeypatch.setenv(name, DOC_ENV.get(name, FAKE_SECRET))
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


def sources(recipe: str, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The assertion sources of each block's provider, by field name."""
    monkeypatch.chdir(secrets_dir)
    found = []
    for block in _blocks((DOCS / recipe).read_text(), "python"):
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(block, recipe, "exec"), namespace)  # noqa: S102 - our own docs
        found.append({n.name: n.source for n in namespace["provider"].assertion_sources()})
    return found


CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_TYPES = "urn:ietf:params:oauth:token-type:"


def test_entra_workload_identity(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AKS: the client credentials grant, the projected token file as the client assertion,
    client_id and tenant from the webhook's variables, no secret."""
    from httpx_tokenauth import FileAssertion

    (result,) = run_python_blocks("entra-workload-identity.md", secrets_dir, monkeypatch)
    tenant, client = DOC_ENV["AZURE_TENANT_ID"], DOC_ENV["AZURE_CLIENT_ID"]
    assert result["url"] == f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    fields = form(result)
    assert set(fields) == {
        "grant_type", "scope", "client_id", "client_assertion_type", "client_assertion"
    }  # fmt: skip
    assert (fields["client_id"], fields["client_assertion_type"]) == (client, CLIENT_ASSERTION_TYPE)
    assert fields["scope"] == "https://management.azure.com/.default"
    assert result["authorization"] is None
    (found,) = sources("entra-workload-identity.md", secrets_dir, monkeypatch)
    assert isinstance(found["client_assertion"], FileAssertion)
    assert found["client_assertion"].path == os.environ["AZURE_FEDERATED_TOKEN_FILE"]


def test_github_actions_entra(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GitHub Actions: the job's OIDC token for api://AzureADTokenExchange as the assertion."""
    from httpx_tokenauth import GitHubActionsOIDC

    (result,) = run_python_blocks("github-actions-entra.md", secrets_dir, monkeypatch)
    fields = form(result)
    assert fields["grant_type"] == "client_credentials"
    assert fields["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assert fields["client_id"] == DOC_ENV["AZURE_CLIENT_ID"]
    (found,) = sources("github-actions-entra.md", secrets_dir, monkeypatch)
    source = found["client_assertion"]
    assert isinstance(source, GitHubActionsOIDC)
    assert source.audience == "api://AzureADTokenExchange"


def test_keycloak_federated(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keycloak federated: client credentials with the projected token file, client_id sent."""
    (result,) = run_python_blocks("keycloak-federated.md", secrets_dir, monkeypatch)
    assert result["url"] == "https://sso.example.com/realms/billing/protocol/openid-connect/token"
    fields = form(result)
    assert set(fields) == {"grant_type", "client_id", "client_assertion_type", "client_assertion"}
    assert fields["client_id"] == "billing-service"


def test_google_workload_identity(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Google STS: an RFC 8693 exchange of the file's JWT, the provider as audience, no client
    authentication."""
    (result,) = run_python_blocks("google-workload-identity.md", secrets_dir, monkeypatch)
    assert result["url"] == "https://sts.googleapis.com/v1/token"
    assert result["authorization"] is None
    fields = form(result)
    assert set(fields) == {
        "grant_type", "subject_token", "subject_token_type", "requested_token_type",
        "audience", "scope",
    }  # fmt: skip
    assert fields["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert fields["subject_token_type"] == TOKEN_TYPES + "jwt"
    assert fields["requested_token_type"] == TOKEN_TYPES + "access_token"
    assert fields["audience"] == (
        "//iam.googleapis.com/projects/123456789/locations/global/"
        "workloadIdentityPools/billing-pool/providers/billing-cluster"
    )
    assert fields["scope"] == "https://www.googleapis.com/auth/cloud-platform"


def test_spiffe(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPIFFE: the JWT-SVID file as the client assertion of client credentials, with scope."""
    (result,) = run_python_blocks("spiffe.md", secrets_dir, monkeypatch)
    fields = form(result)
    assert fields["client_id"] == "billing-api"
    assert fields["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assert fields["scope"] == "invoices:read"


# -- the shell commands match the code ----------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES)
def test_shell_commands_send_what_the_python_code_sends(
    recipe: str, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `httpx-tokenauth token` command builds the token request of a Python block."""
    expected = run_python_blocks(recipe, secrets_dir, monkeypatch)
    checked = 0
    for line in _commands((DOCS / recipe).read_text()):
        words = [os.path.expandvars(word) for word in shlex.split(line)]  # "$AZURE_CLIENT_ID"
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
