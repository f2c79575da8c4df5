"""The httpx-tokenauth command line, against a real authorization server and API on 127.0.0.1.

The CLI builds its own clients, so it talks to httpx_tokenauth.testing's servers
over TLS; tests trust the throwaway CA through --ca-file / HTTPX_TOKENAUTH_CA_FILE
like a user would. main(argv) runs in-process: assertions are on its exit
status, stdout, stderr, and on what the servers observed.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from httpx_tokenauth import Token
from httpx_tokenauth._cli import (
    build_provider,
    main,
    parser,
    shorten_header,
    token_info,
    unverified_jwt,
)
from httpx_tokenauth._dpop import public_jwk, thumbprint
from httpx_tokenauth.testing import (
    JWT_BEARER,
    DPoPResourceServer,
    LocalAPI,
    LocalAuthorizationServer,
    LocalCA,
)
from oidc_provider import AUDIENCE as OIDC_AUDIENCE
from oidc_provider import CLIENT_ID as OIDC_CLIENT_ID
from oidc_provider import CLIENT_SECRET as OIDC_CLIENT_SECRET
from oidc_provider import oidc_provider, serve

from conftest import clean_cli_environment

CLIENT_ID = "cli-client"
SECRET = "cli-secret-Zq8+/=:%-0123456789-abcdefghij"  # 32+ bytes: client_secret_jwt works
SA_EMAIL = "reports@project.iam.example"


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


EC_KEY = _pem(ec.generate_private_key(ec.SECP256R1()))
RSA_KEY = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
#: A line from the middle of each private key: it must never be printed.
KEY_MARKERS = [key.splitlines()[2].decode() for key in (EC_KEY, RSA_KEY)]


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture(scope="module")
def files(ca: LocalCA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The files a user would have: CA bundle, secret file, private keys."""
    base = tmp_path_factory.mktemp("cli")
    paths = {
        "ca": base / "ca.pem",
        "secret": base / "secret.txt",
        "ec_key": base / "ec.pem",
        "rsa_key": base / "rsa.pem",
    }
    paths["ca"].write_bytes(ca.cert_pem)
    paths["secret"].write_text(SECRET + "\n")
    paths["ec_key"].write_bytes(EC_KEY)
    paths["rsa_key"].write_bytes(RSA_KEY)
    return paths


@pytest.fixture(scope="module")
def server(ca: LocalCA) -> Iterator[LocalAuthorizationServer]:
    with LocalAuthorizationServer(ca) as s:
        s.register_client(
            CLIENT_ID,
            secret=SECRET,
            public_keys={"ec-1": EC_KEY, "rsa-1": RSA_KEY},
            scope="read write",
        )
        s.register_client(SA_EMAIL, public_keys={"sa-key-1": RSA_KEY}, scope="reports")
        yield s


@pytest.fixture(scope="module")
def api(server: LocalAuthorizationServer, ca: LocalCA) -> Iterator[LocalAPI]:
    with LocalAPI(server, ca=ca) as a:
        yield a


@pytest.fixture(autouse=True)
def env(
    monkeypatch: pytest.MonkeyPatch,
    server: LocalAuthorizationServer,
    api: LocalAPI,
    files: dict[str, Path],
) -> None:
    """A clean environment that points at the test servers and trusts the test CA."""
    clean_cli_environment(
        monkeypatch, token_url=server.token_url, ca_file=str(files["ca"]), client_id=CLIENT_ID
    )
    server.reset()
    api.reset()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv) in-process: exit status, stdout, stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err: str) -> None:
    assert err.startswith("httpx-tokenauth: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        for marker in KEY_MARKERS:
            assert marker not in text


# -- token: output -----------------------------------------------------------------------


def test_token_prints_exactly_the_access_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: Any
) -> None:
    """Plain `token` prints the access token and a newline, nothing else, exit 0."""
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_SECRET", SECRET)

    status, out, err = run(capsys, "token")

    assert status == 0
    assert err == ""
    assert out == server.issued_tokens()[-1] + "\n"
    assert server.token_requests[-1].auth_method == "client_secret_basic"


def test_token_json_shows_metadata_and_unverified_claims_not_the_token(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any
) -> None:
    """--json: type, expiry (ISO 8601), scope, JWT header and claims marked unverified."""
    status, out, err = run(
        capsys, "token", "--json", "--client-secret-file", str(files["secret"]), "--scope", "read"
    )

    assert status == 0, err
    info = json.loads(out)
    token = server.issued_tokens()[-1]
    assert token not in out
    assert info["token_type"] == "Bearer"
    assert 3590 <= info["expires_in"] <= 3600
    assert info["expires_at"].endswith("Z")
    datetime.fromisoformat(info["expires_at"].replace("Z", "+00:00"))
    assert info["scope"] == "read"
    assert info["unverified_header"] == jwt.get_unverified_header(token)
    assert info["unverified_claims"] == jwt.decode(token, options={"verify_signature": False})
    assert "WITHOUT checking its signature" in info["unverified_note"]
    assert "access_token" not in info


def test_token_json_show_token_includes_the_access_token(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any
) -> None:
    """--json --show-token adds the access token, and only then."""
    status, out, _ = run(
        capsys, "token", "--json", "--show-token", "--client-secret-file", str(files["secret"])
    )

    assert status == 0
    assert json.loads(out)["access_token"] == server.issued_tokens()[-1]


def test_token_info_of_an_opaque_token_without_expiry() -> None:
    """An opaque token has no unverified_* fields; unknown expiry is null; extras by name."""
    info = token_info(Token("opaque-value", extra={"refresh_token": "r-secret"}), now=0.0)

    assert info == {
        "token_type": "Bearer",
        "expires_in": None,
        "expires_at": None,
        "scope": None,
        "other_fields": ["refresh_token"],
    }


@pytest.mark.parametrize(
    "value",
    ["opaque", "a.b", "a.b.c", "e30.e30.sig", "bm90IGpzb24.e30.x", "W10.e30.x", "a.b.c.d.e"],
)
def test_unverified_jwt_is_none_for_what_is_not_a_jws(value: str) -> None:
    """Only a three-part token whose header (with alg) and claims are JSON objects decodes."""
    assert unverified_jwt(value) is None


# -- token: where secrets come from --------------------------------------------------------


def test_secret_from_a_named_environment_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: Any
) -> None:
    """--client-secret-env NAME reads the secret from $NAME."""
    monkeypatch.setenv("MY_SECRET", SECRET)

    status, out, err = run(capsys, "token", "--client-secret-env", "MY_SECRET")

    assert (status, err) == (0, "")
    assert out.strip() == server.issued_tokens()[-1]


def test_secret_from_a_file_drops_the_final_newline(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any
) -> None:
    """--client-secret-file reads the secret; the file's trailing newline is not part of it."""
    status, _, err = run(capsys, "token", "--client-secret-file", str(files["secret"]))

    assert (status, err) == (0, "")
    assert server.token_requests[-1].status_code == 200


def test_secret_file_from_the_environment_and_from_stdin(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, Path],
    server: Any,
) -> None:
    """HTTPX_TOKENAUTH_CLIENT_SECRET_FILE names the file; '-' reads standard input."""
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_SECRET_FILE", str(files["secret"]))
    assert run(capsys, "token")[0] == 0
    monkeypatch.delenv("HTTPX_TOKENAUTH_CLIENT_SECRET_FILE")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SECRET.encode() + b"\n")))

    assert run(capsys, "token", "--client-secret-file", "-")[0] == 0
    assert [r.status_code for r in server.token_requests] == [200, 200]


def test_no_option_takes_a_secret_on_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--client-secret VALUE (or a prefix of a real option) is refused, and VALUE not echoed."""
    for argv in (["--client-secret", SECRET], [f"--client-secret={SECRET}"], ["--client", SECRET]):
        status, out, err = run(capsys, "token", *argv)
        assert status == 2
        assert_one_line_error(err)
        assert_no_secrets(out, err)


# -- token: every grant and client authentication -----------------------------------------


@pytest.mark.parametrize(
    ("argv", "auth_method"),
    [
        (["--client-secret-file", "{secret}"], "client_secret_basic"),
        (["--auth", "post", "--client-secret-file", "{secret}"], "client_secret_post"),
        (["--auth", "client_secret_jwt", "--client-secret-file", "{secret}"], "client_secret_jwt"),
        (["--key-file", "{ec_key}", "--key-id", "ec-1"], "private_key_jwt"),
        (
            ["--auth", "private_key_jwt", "--key-file", "{rsa_key}", "--key-id", "rsa-1"],
            "private_key_jwt",
        ),
    ],
    ids=[
        "basic-by-default",
        "post",
        "client_secret_jwt",
        "private_key_jwt-ES256",
        "private_key_jwt-RS256",
    ],
)
def test_every_client_authentication_method(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, Path],
    server: Any,
    argv: list[str],
    auth_method: str,
) -> None:
    """Each --auth method gets a token; the server saw that method; nothing secret printed."""
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]

    status, out, err = run(capsys, "token", *argv)

    assert (status, err) == (0, "")
    record = server.token_requests[-1]
    assert (record.grant_type, record.auth_method) == ("client_credentials", auth_method)
    assert out == server.issued_tokens()[-1] + "\n"
    assert_no_secrets(out, err)


def test_jwt_bearer_grant_with_private_key_jwt_client_authentication(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any
) -> None:
    """--grant jwt_bearer signs an assertion (iss, sub from flags); --auth adds client auth."""
    status, out, err = run(
        capsys,
        "token",
        "--grant", "jwt_bearer",
        "--assertion-issuer", CLIENT_ID,
        "--subject", "alice@example.org",
        "--key-file", str(files["ec_key"]),
        "--key-id", "ec-1",
        "--auth", "private_key_jwt",
        "--json",
    )  # fmt: skip

    assert status == 0, err
    assert json.loads(out)["unverified_claims"]["sub"] == "alice@example.org"
    record = server.token_requests[-1]
    assert (record.grant_type, record.auth_method) == (JWT_BEARER, "private_key_jwt")


def test_google_style_service_account_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    server: Any,
) -> None:
    """--service-account-file: token_uri, client_email as iss and sub, private_key_id as kid."""
    account = {
        "type": "service_account",
        "client_email": SA_EMAIL,
        "private_key_id": "sa-key-1",
        "private_key": RSA_KEY.decode(),
        "token_uri": server.token_url,
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(account))
    monkeypatch.delenv("HTTPX_TOKENAUTH_TOKEN_URL")
    monkeypatch.delenv("HTTPX_TOKENAUTH_CLIENT_ID")

    status, out, err = run(
        capsys, "token", "--service-account-file", str(path), "--claim", "scope=reports", "--json"
    )

    assert status == 0, err
    assert json.loads(out)["unverified_claims"]["sub"] == SA_EMAIL
    record = server.token_requests[-1]
    assert (record.grant_type, record.client_id, record.auth_method) == (JWT_BEARER, SA_EMAIL, None)
    assert_no_secrets(out, err)


# -- failures ----------------------------------------------------------------------------


def test_token_endpoint_error_is_one_line_exit_1_without_the_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """invalid_client: exit 1, one line naming the error, the (wrong) secret never shown."""
    wrong = SECRET[::-1]
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_SECRET", wrong)

    status, out, err = run(capsys, "token")

    assert status == 1
    assert out == ""
    assert_one_line_error(err)
    assert "invalid_client" in err
    assert wrong not in err
    assert_no_secrets(out, err)


def test_invalid_scope_is_exit_1(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    """A scope the client may not have: invalid_scope, exit 1, one line."""
    status, _, err = run(
        capsys, "token", "--client-secret-file", str(files["secret"]), "--scope", "admin"
    )

    assert status == 1
    assert_one_line_error(err)
    assert "invalid_scope" in err


def test_tls_failure_without_ca_file_names_the_certificate_problem(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]
) -> None:
    """Without --ca-file the server's certificate is not trusted: one line says so, exit 1."""
    monkeypatch.delenv("HTTPX_TOKENAUTH_CA_FILE")

    status, out, err = run(
        capsys, "token", "--client-secret-file", str(files["secret"]), "--retries", "0"
    )

    assert (status, out) == (1, "")
    assert_one_line_error(err)
    assert "CERTIFICATE_VERIFY_FAILED" in err
    assert "--ca-file" in err
    assert_no_secrets(err)


def test_unreadable_secret_file_is_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A secret file that does not exist: exit 1, one line naming the file."""
    missing = tmp_path / "nope.txt"

    status, _, err = run(capsys, "token", "--client-secret-file", str(missing))

    assert status == 1
    assert_one_line_error(err)
    assert str(missing) in err


@pytest.mark.parametrize(
    "case",
    [
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        ([], {}, "client authentication"),
        (["--client-secret-env", "UNSET_VARIABLE"], {}, "UNSET_VARIABLE is not set"),
        (["--client-secret-file", "{secret}", "--key-file", "{ec_key}"], {}, "--auth"),
        (["--auth", "private_key_jwt"], {}, "--key-file"),
        (["--auth", "basic"], {}, "needs the client secret"),
        (
            ["--grant", "jwt_bearer", "--key-file", "{ec_key}"],
            {},
            "--assertion-issuer and --subject",
        ),
        (["--param", "no-equals"], {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET}, "NAME=VALUE"),
        (["--show-token"], {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET}, "--json"),
        (
            [],
            {"HTTPX_TOKENAUTH_GRANT": "password", "HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET},
            "GRANT",
        ),
        (
            [],
            {"HTTPX_TOKENAUTH_TOKEN_URL": "", "HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET},
            "--token-url",
        ),
        (
            [],
            {"HTTPX_TOKENAUTH_CLIENT_ID": "", "HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET},
            "--client-id",
        ),
        (
            ["--key-file", "{ec_key}", "--algorithm", "RS256"],
            {},
            "RS256 needs an RSA private key",
        ),
        (
            ["--auth", "client_secret_jwt", "--client-secret-env", "SHORT"],
            {"SHORT": "too-short"},
            "at least 32 bytes",
        ),
        (
            ["--token-url", "http://as.example/token"],
            {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET},
            "plain http",
        ),
    ],
    ids=lambda case: case[2],
)
def test_wrong_command_line_or_configuration_is_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, Path],
    server: Any,
    case: tuple[list[str], dict[str, str], str],
) -> None:
    """Usage and configuration errors: exit 2, one line that says what to change, no request."""
    argv, environ, message = case
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]

    status, out, err = run(capsys, "token", *argv)

    assert (status, out) == (2, "")
    assert_one_line_error(err)
    assert message in err
    assert_no_secrets(err)
    assert server.token_request_count == 0


# -- request -----------------------------------------------------------------------------


def test_request_prints_status_headers_and_body(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any, api: LocalAPI
) -> None:
    """`request GET URL`: the status line, the API's headers, a blank line, the body."""
    status, out, err = run(
        capsys, "request", "GET", f"{api.url}/things", "--client-secret-file", str(files["secret"])
    )

    assert (status, err) == (0, "")
    head, _, body = out.partition("\n\n")
    lines = head.splitlines()
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "content-type: application/json" in lines[1:]
    assert json.loads(body) == {
        "path": "/things",
        "client_id": CLIENT_ID,
        "sub": CLIENT_ID,
        "scope": "read write",
    }
    assert [r.token for r in api.requests] == server.issued_tokens()


def test_request_sends_headers_and_body_and_verbose_shortens_the_token(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, Path],
    server: Any,
    api: LocalAPI,
    tmp_path: Path,
) -> None:
    """-H and --data @file are sent; -v shows the request on stderr, the token cut short."""
    body = tmp_path / "body.json"
    body.write_bytes(b'{"amount": 10}')

    status, out, err = run(
        capsys,
        "request", "POST", f"{api.url}/invoices",
        "-H", "X-Request-Id: 42",
        "--data", f"@{body}",
        "-v",
        "--client-secret-file", str(files["secret"]),
    )  # fmt: skip

    assert status == 0
    assert out.startswith("HTTP/1.1 200 OK\n")
    assert api.requests[-1].body == b'{"amount": 10}'
    assert f"> POST {api.url}/invoices" in err
    assert "> X-Request-Id: 42" in err
    token = server.issued_tokens()[-1]
    assert f"> Authorization: Bearer {token[:8]}... (shortened)" in err
    assert token not in err
    assert token not in out
    assert_no_secrets(out, err)


def test_request_shows_the_replay_and_fail_makes_a_401_exit_1(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any, api: LocalAPI
) -> None:
    """A 401 is replayed once with a new token (two requests shown); --fail exits 1 on it."""
    api.revoke_all_issued_before(when=4_000_000_000.0)  # every token, also the next one

    status, out, err = run(
        capsys,
        "request", "GET", f"{api.url}/things",
        "--fail", "-v",
        "--client-secret-file", str(files["secret"]),
    )  # fmt: skip

    assert status == 1
    assert out.startswith("HTTP/1.1 401 Unauthorized\n")
    assert "www-authenticate: Bearer" in out
    assert err.count("> GET ") == 2
    assert "replayed the request" in err
    assert err.endswith("httpx-tokenauth: error: the API answered 401\n")
    assert server.token_request_count == 2


def test_request_json_body(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], api: LocalAPI
) -> None:
    """--json-body sends JSON with its content type; invalid JSON is a usage error."""
    argv = ["request", "PUT", f"{api.url}/x", "--client-secret-file", str(files["secret"])]

    assert run(capsys, *argv, "--json-body", '{"a": [1, 2]}')[0] == 0
    assert api.requests[-1].body == b'{"a": [1, 2]}'
    status, _, err = run(capsys, *argv, "--json-body", "{oops")
    assert status == 2
    assert_one_line_error(err)


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("https://127.0.0.1:1/things", 1, "Connection refused"),
        ("ftp://127.0.0.1/things", 2, "https://"),
    ],
)
def test_request_failures_are_one_line(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, Path],
    url: str,
    code: int,
    message: str,
) -> None:
    """An unreachable API is exit 1, a URL that is not http(s) exit 2; one line either way."""
    status, out, err = run(
        capsys, "request", "GET", url, "--client-secret-file", str(files["secret"])
    )

    assert (status, out) == (code, "")
    assert_one_line_error(err)
    assert message in err


def test_ca_file_without_certificates_is_exit_1(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    """A --ca-file that holds no CA certificate: exit 1, one line naming the file."""
    status, _, err = run(
        capsys,
        "request", "GET", "https://127.0.0.1:1/things",
        "--client-secret-file", str(files["secret"]),
        "--ca-file", str(files["ec_key"]),  # a PEM file, but a key, not a certificate
    )  # fmt: skip

    assert status == 1
    assert_one_line_error(err)
    assert str(files["ec_key"]) in err
    assert_no_secrets(err)


def test_shorten_header() -> None:
    """Credentials are cut to 8 characters; cookies are hidden; other headers as they are."""
    assert shorten_header("Authorization", "Bearer abcdefghijklmnop") == (
        "Bearer abcdefgh... (shortened)"
    )
    assert shorten_header("Cookie", "session=s3cret") == "[redacted]"
    assert shorten_header("Accept", "*/*") == "*/*"


# -- the program -------------------------------------------------------------------------


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help of each command and --version print to stdout and exit 0."""
    for argv in (["--help"], ["token", "--help"], ["request", "--help"], ["demo", "--help"]):
        status, out, _ = run(capsys, *argv)
        assert status == 0
        assert out.startswith("usage: httpx-tokenauth")
    status, out, _ = run(capsys, "--version")
    assert (status, out) == (0, "httpx-tokenauth 0.1.0\n")


def test_no_command_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command: exit 2 and one line."""
    status, _, err = run(capsys)

    assert status == 2
    assert_one_line_error(err)


def test_python_m_httpx_tokenauth_help() -> None:
    """`python -m httpx_tokenauth --help` works in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-m", "httpx_tokenauth", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: httpx-tokenauth")
    for command in ("token", "request", "demo"):
        assert command in result.stdout


def test_importing_the_library_does_not_load_the_cli() -> None:
    """`import httpx_tokenauth` loads neither the CLI nor the demo."""
    script = (
        "import sys, httpx_tokenauth\n"
        "print(sorted(m for m in ('httpx_tokenauth._cli', 'httpx_tokenauth._demo', "
        "'httpx_tokenauth.testing') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout == "[]\n"


def test_demo_without_the_testing_extra_says_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`demo` without httpx_tokenauth.testing's dependencies: exit 2, one line, the pip command."""
    import httpx_tokenauth

    monkeypatch.delattr(httpx_tokenauth, "testing", raising=False)
    monkeypatch.setitem(sys.modules, "httpx_tokenauth.testing", None)

    status, out, err = run(capsys, "demo")

    assert (status, out) == (2, "")
    assert_one_line_error(err)
    assert "pip install 'httpx-tokenauth[testing]'" in err


# -- TLS files, limits, algorithm guessing ------------------------------------------------


def test_mtls_client_certificate_files_reach_the_server(
    capsys: pytest.CaptureFixture[str],
    server: LocalAuthorizationServer,
    ca: LocalCA,
    tmp_path: Path,
) -> None:
    """--cert/--cert-key present a client certificate that the token endpoint sees."""
    cert, key = ca.write_client_cert("cli-mtls@example.org", tmp_path)
    status, out, err = run(
        capsys, "token", "--client-secret-file", str(files_secret(tmp_path)),
        "--cert", str(cert), "--cert-key", str(key),
    )  # fmt: skip
    assert status == 0, err
    assert out.strip()
    assert server.token_requests[-1].client_cert_identities == ("cli-mtls@example.org",)


def files_secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET + "\n")
    return path


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--cert-key", "k.pem"], 2, "--cert-key goes with --cert"),
        (["--retries", "-1"], 2, "--retries must be 0 or more"),
        (["--timeout", "0"], 2, "--timeout must be more than 0"),
        (["--timeout", "nan"], 2, "--timeout must be more than 0"),
        (["--ca-file", "/nonexistent/ca.pem"], 1, "no such file"),
        (["--cert", "/nonexistent/c.pem"], 1, "cannot use client certificate"),
    ],
)
def test_tls_and_limit_flags_fail_in_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    status: int,
    message: str,
) -> None:
    """Wrong TLS files and limits are one-line errors with the documented exit status."""
    code, out, err = run(
        capsys, "token", "--client-secret-file", str(files_secret(tmp_path)), *argv
    )
    assert code == status
    assert out == ""
    assert_one_line_error(err)
    assert message in err
    assert_no_secrets(out, err)


def test_algorithm_is_guessed_from_a_jwk_key_file(
    capsys: pytest.CaptureFixture[str], server: LocalAuthorizationServer, tmp_path: Path
) -> None:
    """A private JWK file without --algorithm signs with the algorithm its curve implies."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(EC_KEY, None)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    path = tmp_path / "key.jwk"
    path.write_text(json.dumps(jwk))
    status, out, err = run(
        capsys, "token", "--auth", "private_key_jwt", "--key-file", str(path), "--key-id", "ec-1"
    )
    assert status == 0, err
    assert server.token_requests[-1].auth_method == "private_key_jwt"
    assert_no_secrets(out, err)


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("argv", "variables", "status", "message"),
    [
        (["token"], {"HTTPX_TOKENAUTH_AUTH": "bogus"}, 2, "must be one of"),
        (
            ["token", "--auth", "private_key_jwt", "--key-file", "{ec}", "--client-secret-env",
             "HTTPX_TOKENAUTH_CLIENT_SECRET"],
            {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET}, 2, "drop --client-secret",
        ),
        (["token", "--claim", "a=b"], {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET}, 2, "--claim"),
        (["token", "--grant", "jwt_bearer"], {}, 2, "pass --key-file"),
        (["token", "--grant", "jwt_bearer", "--key-file", "{ec}"], {}, 2, "--assertion-issuer and"),
        (
            ["token", "--grant", "jwt_bearer", "--key-file", "{ec}", "--assertion-issuer", "i",
             "--subject", "s", "--audience", "a", "--audience", "b"],
            {}, 2, "one --audience",
        ),
        (
            ["token", "--assertion-audience", "x"],
            {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET}, 2, "--assertion-audience goes with",
        ),
        (
            ["token", "--client-secret-env", "X", "--client-secret-file", "{secret}"],
            {}, 2, "not both",
        ),
        (["token", "--client-secret-file", "{latin1}"], {}, 1, "not UTF-8"),
        (["token", "--client-secret-file", "{empty}"], {}, 1, "is empty"),
        (
            ["token"],
            {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET, "HTTPX_TOKENAUTH_CLIENT_SECRET_FILE": "x"},
            2, "unset one",
        ),
        (["token", "--grant", "jwt_bearer", "--service-account-file", "{notsa}"], {}, 1,
         "not a service account key"),
        (["request", "GET", "https://127.0.0.1/x", "-H", "NoColon"],
         {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET}, 2, "-H wants"),
    ],
)  # fmt: skip
def test_usage_and_input_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    files: dict[str, Path],
    argv: list[str],
    variables: dict[str, str],
    status: int,
    message: str,
) -> None:
    """Each wrong combination of flags, variables and files says what is wrong, in one line."""
    paths = {
        "ec": str(files["ec_key"]),
        "secret": str(files["secret"]),
        "latin1": _write(tmp_path, "latin1.txt", "s\xe9cret".encode("latin-1")),
        "empty": _write(tmp_path, "empty.txt", b""),
        "notsa": _write(tmp_path, "notsa.json", b'{"type": "something else"}'),
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(capsys, *[a.format(**paths) for a in argv])
    assert (code, message in err) == (status, True), err
    assert out == ""
    assert_one_line_error(err)
    assert_no_secrets(out, err)


# -- every refusal in the command line's own terms ------------------------------------------

#: Advice that only makes sense in Python: a constructor argument, a class, a path object.
PYTHON_ADVICE = re.compile(
    r"(?<!--param |--claim )\b(allow_insecure_http|password=|key=|client_secret=|client_id="
    r"|algorithm=|key_id=|audience=|extra_params|extra_claims|pathlib|constructor|pass a list)"
    r"|\b[A-Z][A-Za-z]+\("
)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Key, certificate and service account files, each wrong in one way."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    base = tmp_path_factory.mktemp("bad")
    rsa_key = serialization.load_pem_private_key(RSA_KEY, None)
    ec_key = serialization.load_pem_private_key(EC_KEY, None)
    other = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other")])
    now = datetime.now(timezone.utc)
    other_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(other.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(other, hashes.SHA256())
    )
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key))
    contents: dict[str, bytes] = {
        "encrypted.pem": rsa_key.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"the-key-password"),
        ),
        "malformed.pem": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "empty.pem": b"",
        "openssh.key": b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"
        b"-----END OPENSSH PRIVATE KEY-----\n",
        "public.pem": ec_key.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "small-rsa.pem": _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
        "secp256k1.pem": _pem(ec.generate_private_key(ec.SECP256K1())),
        "broken.jwk": b'{"kty": "EC", oops',
        "oct.jwk": json.dumps({"kty": "oct", "k": "c2VjcmV0"}).encode(),
        "es256.jwk": json.dumps({**ec_jwk, "alg": "ES256", "kid": "jwk-kid"}).encode(),
        "not-a-cert.pem": b"not a certificate",
        "other-cert.pem": other_cert.public_bytes(serialization.Encoding.PEM),
        "rsa.pem": RSA_KEY,
        "ec.pem": EC_KEY,
    }
    paths = {}
    for filename, data in contents.items():
        (base / filename).write_bytes(data)
        paths[filename.replace(".", "_").replace("-", "_")] = str(base / filename)
    for filename, token_uri, key in [
        ("sa-http.json", "http://oauth2.example/token", RSA_KEY.decode()),
        ("sa-badkey.json", "https://oauth2.example/token", "not a key"),
    ]:
        account = {"client_email": "robot@example", "private_key": key, "token_uri": token_uri}
        (base / filename).write_text(json.dumps(account))
        paths[filename.replace(".", "_").replace("-", "_")] = str(base / filename)
    return paths


_SECRET = {"HTTPX_TOKENAUTH_CLIENT_SECRET": SECRET}
_JWT_BEARER = ["--grant", "jwt_bearer", "--assertion-issuer", "i", "--subject", "s"]

#: (argv after `token`, environment, what the message must name), one per refusal.
REFUSALS: list[tuple[list[str], dict[str, str], list[str]]] = [
    # the token endpoint
    (["--token-url", "http://as.example/token"], _SECRET, ["--token-url", "--allow-insecure-http"]),
    ([], {**_SECRET, "HTTPX_TOKENAUTH_TOKEN_URL": "http://as.example/token"},
     ["HTTPX_TOKENAUTH_TOKEN_URL", "--allow-insecure-http"]),
    (["--token-url", "https://svc:pw@as.example/token"], _SECRET, ["--token-url", "--client-id"]),
    (["--token-url", "https://as.example/token#frag"], _SECRET, ["--token-url", "'#'"]),
    (["--token-url", "ftp://as.example/token"], _SECRET, ["--token-url", "https://"]),
    (["--token-url", "https://as.example:99999/token"], _SECRET, ["--token-url"]),
    (["--token-url", "https://[::1/token"], _SECRET, ["--token-url", "not a valid URL"]),
    (["--service-account-file", "{sa_http_json}"], {"HTTPX_TOKENAUTH_TOKEN_URL": ""},
     ["token_uri of --service-account-file", "--allow-insecure-http"]),
    # the signing key and its password
    (["--key-file", "{encrypted_pem}"], {}, ["--key-file", "--key-password-env NAME",
                                             "HTTPX_TOKENAUTH_KEY_PASSWORD"]),
    (["--key-file", "{encrypted_pem}"], {"HTTPX_TOKENAUTH_KEY_PASSWORD": "wrong"},
     ["--key-file", "password is wrong", "HTTPX_TOKENAUTH_KEY_PASSWORD"]),
    (["--key-file", "{encrypted_pem}", "--key-password-env", "PW"], {"PW": "wrong"},
     ["--key-file", "--key-password-env PW"]),
    (["--key-file", "{rsa_pem}", "--key-password-env", "PW"], {"PW": "unneeded"},
     ["--key-file", "not encrypted", "drop --key-password-env"]),
    (["--key-file", "{rsa_pem}"], {"HTTPX_TOKENAUTH_KEY_PASSWORD": "unneeded"},
     ["--key-file", "unset HTTPX_TOKENAUTH_KEY_PASSWORD"]),
    (["--key-file", "{malformed_pem}"], {}, ["--key-file", "PEM (PKCS#8"]),
    (["--key-file", "{empty_pem}"], {}, ["--key-file", "empty"]),
    (["--key-file", "{openssh_key}"], {}, ["--key-file", "ssh-keygen"]),
    (["--key-file", "{public_pem}"], {}, ["--key-file", "private key"]),
    (["--key-file", "{small_rsa_pem}"], {}, ["--key-file", "1024 bits"]),
    (["--key-file", "{secp256k1_pem}"], {}, ["--key-file", "P-256"]),
    ([], {"HTTPX_TOKENAUTH_KEY_FILE": "{malformed_pem}"}, ["HTTPX_TOKENAUTH_KEY_FILE"]),
    (["--key-file", "{broken_jwk}"], {}, ["--key-file", "JSON"]),
    (["--key-file", "{oct_jwk}"], {}, ["--key-file", "--auth client_secret_jwt"]),
    (["--key-file", "{es256_jwk}", "--algorithm", "ES384"], {},
     ["--algorithm", "leave --algorithm out", "ES256"]),
    (["--key-file", "{es256_jwk}"], {"HTTPX_TOKENAUTH_KEY_PASSWORD": "pw"},
     ["--key-file", "unset HTTPX_TOKENAUTH_KEY_PASSWORD"]),
    (["--key-file", "{es256_jwk}", "--key-id", "other-kid"], {}, ["--key-id", "jwk-kid"]),
    (["--key-file", "{ec_pem}", "--key-id", ""], {}, ["--key-id", "empty"]),
    (["--service-account-file", "{sa_badkey_json}"], {"HTTPX_TOKENAUTH_TOKEN_URL": ""},
     ["private_key of --service-account-file"]),
    # the algorithm
    (["--key-file", "{rsa_pem}", "--algorithm", "HS256"], {},
     ["--algorithm", "--auth client_secret_jwt"]),
    ([], {"HTTPX_TOKENAUTH_KEY_FILE": "{rsa_pem}", "HTTPX_TOKENAUTH_ALGORITHM": "HS256"},
     ["HTTPX_TOKENAUTH_ALGORITHM", "--auth client_secret_jwt"]),
    (["--key-file", "{rsa_pem}", "--algorithm", "ES256"], {},
     ["--algorithm", "--algorithm RS256 or PS256"]),
    (["--key-file", "{rsa_pem}", "--algorithm", "RS1"], {}, ["--algorithm", "supported"]),
    (["--key-file", "{rsa_pem}", "--algorithm", "none"], {}, ["--algorithm", "unsigned"]),
    (["--auth", "client_secret_jwt", "--algorithm", "RS256"], _SECRET,
     ["--algorithm", "--auth private_key_jwt"]),
    (["--auth", "client_secret_jwt", "--algorithm", "HS1"], _SECRET, ["--algorithm"]),
    (["--auth", "client_secret_jwt", "--client-secret-env", "SHORT"], {"SHORT": "too-short"},
     ["--client-secret-env SHORT", "32 bytes", "--auth private_key_jwt"]),
    (["--auth", "client_secret_jwt"], {"HTTPX_TOKENAUTH_CLIENT_SECRET": "too-short"},
     ["HTTPX_TOKENAUTH_CLIENT_SECRET", "at least 32 bytes"]),
    (["--auth", "client_secret_jwt", "--key-id", ""], _SECRET, ["--key-id", "empty"]),
    (["--auth", "client_secret_jwt", "--assertion-audience", ""], _SECRET,
     ["--assertion-audience", "empty"]),
    # the certificate
    (["--key-file", "{ec_pem}", "--certificate-file", "{not_a_cert_pem}"], {},
     ["--certificate-file", "PEM or DER"]),
    (["--key-file", "{ec_pem}", "--certificate-file", "{other_cert_pem}"], {},
     ["--certificate-file", "--key-file"]),
    # scope, audience, resource, parameters, claims
    (["--scope", 'in"valid'], _SECRET, ["--scope", "several separated by spaces"]),
    (["--scope", "read read"], _SECRET, ["--scope", "read more than once"]),
    ([], {**_SECRET, "HTTPX_TOKENAUTH_SCOPE": "read bad\\scope"}, ["HTTPX_TOKENAUTH_SCOPE"]),
    (["--audience", "a", "--audience", "a"], _SECRET, ["--audience", "more than once"]),
    (["--resource", "not-a-uri"], _SECRET, ["--resource", "absolute URI"]),
    ([], {**_SECRET, "HTTPX_TOKENAUTH_RESOURCE": "https://a.example https://a.example"},
     ["HTTPX_TOKENAUTH_RESOURCE", "more than once"]),
    (["--param", "scope=admin"], _SECRET, ["--param scope=", "use --scope"]),
    (["--param", "client_secret=x"], _SECRET, ["--param client_secret=", "--client-secret-env"]),
    (["--param", "tenant="], _SECRET, ["--param tenant=", "no value"]),
    (["--param", "a=1", "--param", "a=2"], _SECRET, ["--param a=", "twice"]),
    ([*_JWT_BEARER, "--key-file", "{ec_pem}", "--claim", "iss=x"], {},
     ["--claim iss=", "--assertion-issuer"]),
    ([*_JWT_BEARER, "--key-file", "{ec_pem}", "--claim", "jti=x"], {},
     ["--claim jti=", "drop it"]),
    # the JWT-bearer grant's key goes through the same translation
    ([*_JWT_BEARER, "--key-file", "{encrypted_pem}"], {}, ["--key-file", "--key-password-env"]),
    ([*_JWT_BEARER, "--key-file", "{rsa_pem}", "--algorithm", "HS256"], {},
     ["--algorithm", "--auth client_secret_jwt"]),
    # text the environment could not decode
    ([], {**_SECRET, "HTTPX_TOKENAUTH_CLIENT_ID": "svc\udcff"},
     ["HTTPX_TOKENAUTH_CLIENT_ID", "UTF-8"]),
    ([], {"HTTPX_TOKENAUTH_CLIENT_SECRET": "s\udcffcret"},
     ["HTTPX_TOKENAUTH_CLIENT_SECRET", "UTF-8"]),
    (["--key-file", "{encrypted_pem}"], {"HTTPX_TOKENAUTH_KEY_PASSWORD": "p\udcffw"},
     ["HTTPX_TOKENAUTH_KEY_PASSWORD", "UTF-8"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "variables", "names"), REFUSALS, ids=[" ".join(c[2]) for c in REFUSALS]
)
def test_every_refusal_names_the_cli_option_not_the_python_api(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    bad_files: dict[str, str],
    server: Any,
    argv: list[str],
    variables: dict[str, str],
    names: list[str],
) -> None:
    """Each value the library refuses: exit 2, one line naming the flag or variable that
    fed it and the option that fixes it, no Python advice, no secret, no token request."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(**bad_files))
    argv = [a.format(**bad_files) for a in argv]

    status, out, err = run(capsys, "token", *argv)

    assert (status, out) == (2, ""), err
    assert_one_line_error(err)
    for name in names:
        assert name in err
    assert not PYTHON_ADVICE.search(err), err
    assert "the-key-password" not in err
    assert_no_secrets(err)
    assert server.token_request_count == 0


def test_every_key_refusal_reason_has_cli_advice() -> None:
    """Each reason a KeyConfigurationError can carry is one the CLI rewrites, so a new
    rule in the library cannot reach the command line with Python advice unnoticed."""
    src = Path(__file__).resolve().parent.parent / "src" / "httpx_tokenauth"
    reasons = {
        reason
        for module in ("_keys.py", "_jwt.py")
        for reason in re.findall(r'reason="(\w+)"', (src / module).read_text())
    }
    cli = (src / "_cli.py").read_text()

    assert len(reasons) >= 10
    assert sorted(r for r in reasons if f'"{r}"' not in cli) == []


def test_request_method_that_is_not_a_token_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], api: LocalAPI, server: Any
) -> None:
    """`request "GE T" URL`: exit 2 (the command line is wrong), nothing sent anywhere."""
    status, out, err = run(
        capsys, "request", "GE T", f"{api.url}/x", "--client-secret-file", str(files["secret"])
    )

    assert (status, out) == (2, "")
    assert_one_line_error(err)
    assert "'GE T' is not an HTTP method" in err
    assert server.token_request_count == 0
    assert api.requests == []


def test_request_to_a_plain_http_api_names_allow_insecure_http(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    """A bearer token is not sent to http:// off loopback: exit 2, the flag that allows it."""
    status, out, err = run(
        capsys,
        "request",
        "GET",
        "http://api.example/x",
        "--client-secret-file",
        str(files["secret"]),
    )

    assert (status, out) == (2, "")
    assert_one_line_error(err)
    assert "'http://api.example/x' uses plain http" in err
    assert "--allow-insecure-http" in err
    assert not PYTHON_ADVICE.search(err)


def test_allow_insecure_http_lets_a_test_rig_use_plain_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--allow-insecure-http: an http:// token URL off loopback builds its token request."""
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_SECRET", SECRET)
    argv = ["token", "--token-url", "http://as.test-rig.example/token", "--allow-insecure-http"]

    provider = build_provider(parser().parse_args(argv))

    request = provider.token_request(0.0)
    assert request.url == "http://as.test-rig.example/token"
    assert dict(request.form) == {"grant_type": "client_credentials"}
    assert parser().parse_args(["token"]).allow_insecure_http is False  # off unless given


def test_algorithm_comes_from_the_key_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, bad_files: dict[str, str]
) -> None:
    """Without --algorithm the library's inference decides: ES256 for the P-256 key file,
    RS256 for the RSA one, the JWK's alg for a JWK."""
    for path, expected in [
        (bad_files["ec_pem"], "ES256"),
        (bad_files["rsa_pem"], "RS256"),
        (bad_files["es256_jwk"], "ES256"),
    ]:
        provider = build_provider(parser().parse_args(["token", "--key-file", path]))
        assertion = dict(provider.token_request(1_700_000_000.0).form)["client_assertion"]
        assert jwt.get_unverified_header(assertion)["alg"] == expected


# -- DPoP (SPEC D1-D3): --dpop and --dpop-key-file against oidc-provider -------------------

ED_KEY = _pem(ed25519.Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def oidc() -> Iterator[dict[str, Any]]:
    """panva's oidc-provider (DPoP with nonces required) on 127.0.0.1, for the DPoP flags."""
    with oidc_provider() as server:
        yield server


@pytest.fixture
def dpop_env(
    monkeypatch: pytest.MonkeyPatch, oidc: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    """The environment pointed at oidc-provider, and a DPoP key file (Ed25519)."""
    monkeypatch.setenv("HTTPX_TOKENAUTH_TOKEN_URL", oidc["token_url"])
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_ID", OIDC_CLIENT_ID)
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_SECRET", OIDC_CLIENT_SECRET)
    key_file = tmp_path / "dpop.pem"
    key_file.write_bytes(ED_KEY)
    jkt = thumbprint(public_jwk(serialization.load_pem_private_key(ED_KEY, None)))  # type: ignore[arg-type]
    return {**oidc, "key_file": str(key_file), "jkt": jkt}


def _cnf_jkt(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["cnf"]["jkt"])


def test_d1_token_json_with_dpop_key_file_shows_the_type_and_the_key_thumbprint(
    capsys: pytest.CaptureFixture[str], dpop_env: dict[str, Any]
) -> None:
    """token --dpop-key-file --json: token_type DPoP and dpop_jkt, the key the token is bound to."""
    status, out, err = run(capsys, "token", "--dpop-key-file", dpop_env["key_file"], "--json")
    assert (status, err) == (0, "")
    info = json.loads(out)
    assert info["token_type"] == "DPoP"
    assert info["dpop_jkt"] == dpop_env["jkt"]
    assert info["dpop_algorithm"] == "EdDSA"
    assert info["unverified_claims"]["cnf"] == {"jkt": dpop_env["jkt"]}
    assert "access_token" not in info
    assert ED_KEY.splitlines()[1].decode() not in out


def test_d1_token_with_dpop_prints_the_token_and_says_its_key_is_gone(
    capsys: pytest.CaptureFixture[str], dpop_env: dict[str, Any]
) -> None:
    """token --dpop: the token alone on stdout; stderr names its type, jkt and the lost key."""
    status, out, err = run(capsys, "token", "--dpop")
    assert status == 0
    access_token = out.removesuffix("\n")
    assert "\n" not in access_token
    jkt = _cnf_jkt(access_token)
    assert jkt != dpop_env["jkt"]  # a key generated for this run
    assert err == (
        f"httpx-tokenauth: token_type DPoP, bound to the key with thumbprint (jkt) {jkt}; "
        "the key was generated for this run and is gone: pass --dpop-key-file PATH to keep "
        "using the token\n"
    )


def test_d1_d2_request_with_dpop_is_accepted_by_an_api_that_verifies_every_proof(
    capsys: pytest.CaptureFixture[str], dpop_env: dict[str, Any]
) -> None:
    """request --dpop-key-file: the API's nonce demand is answered once; proof key = cnf.jkt."""
    api = DPoPResourceServer(
        jwks=dpop_env["jwks"], issuer=dpop_env["issuer"], audience=OIDC_AUDIENCE
    )
    with serve(api.handle) as base:
        status, out, err = run(
            capsys,
            "request",
            "POST",
            f"{base}/things?page=2",
            "--json-body",
            '{"n": 1}',
            "--dpop-key-file",
            dpop_env["key_file"],
            "-v",
        )
    assert status == 0, err
    assert out.startswith("HTTP/1.0 200 OK\n") or out.startswith("HTTP/1.1 200 OK\n")
    assert out.endswith('{"sub":"svc-dpop"}\n')
    assert api.statuses == [(401, "use_dpop_nonce"), (200, None)]
    assert len(api.verifier.proofs) == 1  # the first proof carried no nonce: refused
    h2, c2 = api.verifier.proofs[0]
    assert thumbprint(h2["jwk"]) == dpop_env["jkt"]
    assert (c2["htm"], c2["htu"]) == ("POST", f"{base}/things")
    # -v shows both attempts with the token and the proof shortened.
    assert err.count("> Authorization: DPoP ") == 2
    assert err.count("... (proof, shortened)") == 2
    proof_lines = [ln for ln in err.splitlines() if ln.startswith("> DPoP: ")]
    assert all(len(ln) < 40 for ln in proof_lines)


def test_d1_dpop_refusals_name_the_command_line_options(
    capsys: pytest.CaptureFixture[str], dpop_env: dict[str, Any], tmp_path: Path
) -> None:
    """Bad DPoP key files are exit 2 naming --dpop-key-file (or its variable); one line each."""
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw-0123456789"),
        )
    )
    oct_jwk = tmp_path / "oct.json"
    oct_jwk.write_text(json.dumps({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    cases = [
        (["--dpop-key-file", str(encrypted)], f"--dpop-key-file {encrypted}: the key is encrypted"),
        (["--dpop-key-file", str(oct_jwk)], f"--dpop-key-file {oct_jwk}: "),
        (["--dpop-key-file", str(garbage)], f"--dpop-key-file {garbage}: "),
    ]
    for flags, start in cases:
        status, out, err = run(capsys, "token", *flags)
        assert (status, out) == (2, ""), err
        assert_one_line_error(err)
        assert err.startswith(f"httpx-tokenauth: error: {start}"), err
    status, _, err = run(capsys, "token", "--dpop-key-file", str(tmp_path / "missing.pem"))
    assert status == 1
    assert_one_line_error(err)
    assert "cannot read DPoP key file" in err


def test_d1_dpop_key_file_from_the_environment_is_named_by_its_variable(
    capsys: pytest.CaptureFixture[str],
    dpop_env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """HTTPX_TOKENAUTH_DPOP_KEY_FILE turns DPoP on; a bad file there is named by the variable."""
    monkeypatch.setenv("HTTPX_TOKENAUTH_DPOP_KEY_FILE", dpop_env["key_file"])
    status, out, _ = run(capsys, "token")
    assert status == 0
    assert _cnf_jkt(out.strip()) == dpop_env["jkt"]
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a key")
    monkeypatch.setenv("HTTPX_TOKENAUTH_DPOP_KEY_FILE", str(garbage))
    status, _, err = run(capsys, "token")
    assert status == 2
    assert err.startswith(f"httpx-tokenauth: error: HTTPX_TOKENAUTH_DPOP_KEY_FILE ({garbage}): ")


def test_d1_dpop_against_a_server_that_ignores_it_is_exit_1_naming_the_flag(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    """authlib's server issues Bearer tokens: --dpop refuses them, and says to drop --dpop."""
    status, out, err = run(capsys, "token", "--dpop", "--client-secret-file", str(files["secret"]))
    assert (status, out) == (1, "")
    assert_one_line_error(err)
    assert err.startswith("httpx-tokenauth: error: --dpop: the authorization server ignored")
    assert "drop --dpop to use a bearer token" in err
    assert "allow_bearer" not in err
    assert_no_secrets(err)


# -- discovery: --issuer and the discover command (SPEC M1-M4) ---------------------------


def test_m1_token_with_issuer_reads_the_metadata_and_the_strongest_method(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any
) -> None:
    """--issuer in place of --token-url: the metadata names the endpoint and the method."""
    status, out, err = run(
        capsys, "token", "--issuer", server.issuer, "--client-secret-file", str(files["secret"])
    )
    assert (status, err) == (0, "")
    assert out.strip() == server.issued_tokens()[0]
    assert server.metadata_requests == ["/.well-known/oauth-authorization-server"]
    assert [r.auth_method for r in server.token_requests] == ["client_secret_jwt"]


def test_m4_token_with_issuer_keeps_an_explicit_auth(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any
) -> None:
    """--auth post with --issuer: the named method, not the metadata's choice."""
    status, _, err = run(
        capsys,
        "token",
        "--issuer",
        server.issuer,
        "--auth",
        "post",
        "--client-secret-file",
        str(files["secret"]),
    )
    assert (status, err) == (0, "")
    assert [r.auth_method for r in server.token_requests] == ["client_secret_post"]


def test_m1_the_issuer_environment_variable_works_like_the_flag(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, Path],
    server: Any,
) -> None:
    """HTTPX_TOKENAUTH_ISSUER alone (no token URL) configures by issuer."""
    monkeypatch.delenv("HTTPX_TOKENAUTH_TOKEN_URL")
    monkeypatch.setenv("HTTPX_TOKENAUTH_ISSUER", server.issuer)
    status, _, err = run(capsys, "token", "--client-secret-file", str(files["secret"]))
    assert (status, err) == (0, "")
    assert server.metadata_requests == ["/.well-known/oauth-authorization-server"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--issuer", "https://as.example?x=1"], "query or a fragment"),
        (["--issuer", "http://as.example"], "plain http"),
        (["--issuer", "svc@example.iam"], "--assertion-issuer"),
        (["--issuer", "https://as.example", "--token-url", "https://as.example/t"], "give one"),
    ],
)
def test_m1_a_bad_issuer_option_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    """A bad --issuer is refused before any I/O, naming what to change."""
    status, out, err = run(capsys, "token", *argv, "--client-secret-env", "NOPE")
    assert status == 2
    assert out == ""
    assert_one_line_error(err)
    assert says in err


def test_m1_discover_prints_what_was_found_and_what_would_be_used(
    capsys: pytest.CaptureFixture[str], server: Any
) -> None:
    """discover ISSUER: the checked metadata and the endpoint; nothing sent to the endpoint."""
    status, out, err = run(capsys, "discover", server.issuer)
    assert (status, err) == (0, "")
    lines = dict(line.split(None, 1) for line in out.splitlines() if " " in line.strip())
    assert lines["token_endpoint"].strip() == server.token_url
    assert (
        lines["metadata_url"].strip() == f"{server.issuer}/.well-known/oauth-authorization-server"
    )
    assert "client_secret_jwt" in out
    assert "would_use:" in out
    assert server.token_request_count == 0


def test_m4_discover_with_credentials_shows_the_chosen_method_as_json(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], server: Any
) -> None:
    """discover --json with a key: private_key_jwt, its algorithm, aud = issuer; no secret."""
    status, out, err = run(
        capsys, "discover", server.issuer, "--json", "--key-file", str(files["rsa_key"])
    )
    assert (status, err) == (0, "")
    info = json.loads(out)
    assert info["issuer"] == server.issuer
    assert info["token_endpoint"] == server.token_url
    assert info["would_use"] == {
        "token_endpoint": server.token_url,
        "client_authentication": "private_key_jwt",
        "signing_algorithm": "RS256",
        "assertion_audience": server.issuer,
    }
    assert server.token_request_count == 0
    assert_no_secrets(out, err)


def test_m1_discover_a_wrong_issuer_is_one_line_naming_both(
    capsys: pytest.CaptureFixture[str], server: Any
) -> None:
    """The document names another issuer: exit 1, one line with both values."""
    wrong = server.issuer + "/"
    status, out, err = run(capsys, "discover", wrong)
    assert status == 1
    assert out == ""
    assert_one_line_error(err)
    assert f"names {server.issuer!r}, not the configured issuer {wrong!r}" in err
