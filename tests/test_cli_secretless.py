"""The command line's secretless options, against the real authorization server on 127.0.0.1.

``--client-assertion-file PATH`` authenticates with a platform's JWT read from a
file; ``--grant token_exchange`` with ``--subject-token-file`` and
``--subject-token-type`` (and the actor pair) trades one (RFC 8693). main(argv)
runs in-process; assertions are on its exit status, its output and what the
server recorded. SPEC A1, A2, A3, A6.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from httpx_tokenauth._cli import build_provider, main, parser
from httpx_tokenauth.testing import (
    FEDERATED_JWT,
    TOKEN_EXCHANGE,
    LocalAPI,
    LocalAuthorizationServer,
    LocalCA,
    LocalIssuer,
)

from conftest import clean_cli_environment

CLIENT_ID = "cli-federated"
SUBJECT = "system:serviceaccount:ops:cli"
AUDIENCE = "api://AzureADTokenExchange"
TYPES = "urn:ietf:params:oauth:token-type:"


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture(scope="module")
def platform() -> LocalIssuer:
    return LocalIssuer("https://oidc.ops.example")


@pytest.fixture(scope="module")
def server(ca: LocalCA, platform: LocalIssuer) -> Iterator[LocalAuthorizationServer]:
    with LocalAuthorizationServer(ca) as s:
        s.register_client(CLIENT_ID, scope="read write")
        s.trust_issuer(
            platform.issuer, platform.jwks, audience=AUDIENCE, client_id=CLIENT_ID, subject=SUBJECT
        )
        yield s


@pytest.fixture(scope="module")
def api(server: LocalAuthorizationServer, ca: LocalCA) -> Iterator[LocalAPI]:
    with LocalAPI(server, ca=ca) as a:
        yield a


@pytest.fixture
def files(tmp_path: Path, ca: LocalCA, platform: LocalIssuer) -> dict[str, Path]:
    paths = {
        "ca": tmp_path / "ca.pem",
        "client": tmp_path / "client-token",
        "subject": tmp_path / "subject.jwt",
        "actor": tmp_path / "actor.jwt",
        "empty": tmp_path / "empty",
        "opaque": tmp_path / "opaque",
        "expired": tmp_path / "expired.jwt",
    }
    paths["ca"].write_bytes(ca.cert_pem)
    paths["key"] = tmp_path / "key.pem"
    paths["key"].write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    platform.write(paths["client"], SUBJECT, AUDIENCE)
    platform.write(paths["subject"], "user-7", AUDIENCE)
    platform.write(paths["actor"], "ops-bot", AUDIENCE)
    paths["empty"].write_text("")
    paths["opaque"].write_text("opaque-value-never-printed")
    platform.write(paths["expired"], SUBJECT, AUDIENCE, issued_at=time.time() - 900, lifetime=600)
    return paths


@pytest.fixture(autouse=True)
def environment(
    monkeypatch: pytest.MonkeyPatch,
    server: LocalAuthorizationServer,
    api: LocalAPI,
    files: dict[str, Path],
) -> None:
    """A clean environment pointing at the test server and trusting the test CA."""
    clean_cli_environment(monkeypatch, token_url=server.token_url, ca_file=str(files["ca"]))
    server.reset()
    api.reset()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    assert err.startswith("httpx-tokenauth: error: "), err
    assert err.count("\n") == 1, err
    return err


def test_a1_client_assertion_file_authenticates_with_the_platform_token(
    capsys: pytest.CaptureFixture[str],
    server: LocalAuthorizationServer,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A1: --client-assertion-file (or its variable) gets a token with no secret: the server
    saw a federated client assertion; only the access token is printed."""
    status, out, err = run(
        capsys, "token", "--client-id", CLIENT_ID, "--client-assertion-file", str(files["client"])
    )
    assert (status, err) == (0, "")
    assert out == server.issued_tokens()[-1] + "\n"
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_ASSERTION_FILE", str(files["client"]))
    status, _, err = run(capsys, "token", "--client-id", CLIENT_ID, "--auth", "client_assertion")
    assert (status, err) == (0, "")
    records = [(r.auth_method, r.client_id, r.subject) for r in server.token_requests]
    assert records == [(FEDERATED_JWT, CLIENT_ID, SUBJECT)] * 2
    assert files["client"].read_text() not in out


def test_a1_request_with_a_client_assertion_file_calls_the_api(
    capsys: pytest.CaptureFixture[str], api: LocalAPI, files: dict[str, Path]
) -> None:
    """A1: 'request' takes the same option and reaches the API with the token."""
    status, out, err = run(
        capsys,
        "request", "GET", f"{api.url}/things",
        "--client-id", CLIENT_ID,
        "--client-assertion-file", str(files["client"]),
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert out.startswith("HTTP/1.1 200 OK\n")
    assert [r.status_code for r in api.requests] == [200]


def test_a2_token_exchange_from_the_command_line(
    capsys: pytest.CaptureFixture[str], server: LocalAuthorizationServer, files: dict[str, Path]
) -> None:
    """A2: --grant token_exchange with subject and actor files and types; --json shows the
    issued_token_type."""
    status, out, err = run(
        capsys,
        "token",
        "--grant", "token_exchange",
        "--subject-token-file", str(files["subject"]),
        "--subject-token-type", "jwt",
        "--actor-token-file", str(files["actor"]),
        "--actor-token-type", f"{TYPES}jwt",
        "--requested-token-type", "access_token",
        "--audience", server.audience,
        "--json",
    )  # fmt: skip
    assert (status, err) == (0, "")
    info = json.loads(out)
    assert info["issued_token_type"] == TYPES + "access_token"
    assert info["unverified_claims"]["sub"] == "user-7"
    assert info["unverified_claims"]["act"] == {"sub": "ops-bot"}
    (record,) = server.token_requests
    assert (record.grant_type, record.subject, record.actor) == (
        TOKEN_EXCHANGE,
        "user-7",
        "ops-bot",
    )
    for name in ("subject", "actor"):
        assert files[name].read_text() not in out


def test_m1_token_exchange_with_issuer_reads_the_metadata_then_exchanges(
    capsys: pytest.CaptureFixture[str],
    server: LocalAuthorizationServer,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--issuer works for --grant token_exchange too: the metadata names the endpoint."""
    monkeypatch.delenv("HTTPX_TOKENAUTH_TOKEN_URL")
    status, out, err = run(
        capsys,
        "token",
        "--issuer", server.issuer,
        "--grant", "token_exchange",
        "--subject-token-file", str(files["subject"]),
        "--subject-token-type", "jwt",
        "--audience", server.audience,
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert out.strip() == server.issued_tokens()[0]
    assert server.metadata_requests == ["/.well-known/oauth-authorization-server"]
    (record,) = server.token_requests
    assert (record.grant_type, record.subject) == (TOKEN_EXCHANGE, "user-7")


def test_a2_token_exchange_types_and_files_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    server: LocalAuthorizationServer,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A2: HTTPX_TOKENAUTH_GRANT, _SUBJECT_TOKEN_FILE and _SUBJECT_TOKEN_TYPE do the same."""
    monkeypatch.setenv("HTTPX_TOKENAUTH_GRANT", "token_exchange")
    monkeypatch.setenv("HTTPX_TOKENAUTH_SUBJECT_TOKEN_FILE", str(files["subject"]))
    monkeypatch.setenv("HTTPX_TOKENAUTH_SUBJECT_TOKEN_TYPE", f"{TYPES}jwt")
    status, _, err = run(capsys, "token")
    assert (status, err) == (0, "")
    assert [r.subject for r in server.token_requests] == ["user-7"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--client-id", CLIENT_ID, "--client-assertion-file", "{missing}"], "does not exist"),
        (["--client-id", CLIENT_ID, "--client-assertion-file", "{empty}"], "is empty"),
        (["--client-id", CLIENT_ID, "--client-assertion-file", "{opaque}"], "does not hold a JWT"),
        (["--client-id", CLIENT_ID, "--client-assertion-file", "{expired}"], "expired"),
        (
            ["--grant", "token_exchange", "--subject-token-file", "{opaque}",
             "--subject-token-type", "id_token"],
            "does not hold a JWT",
        ),
    ],
)  # fmt: skip
def test_a6_unusable_token_files_are_exit_1_naming_the_option_and_never_the_content(
    capsys: pytest.CaptureFixture[str],
    server: LocalAuthorizationServer,
    files: dict[str, Path],
    argv: list[str],
    message: str,
) -> None:
    """A6, A3: a missing, empty, non-JWT or expired file: one line, exit 1, the path named,
    the content never printed, nothing sent."""
    paths = {k: str(v) for k, v in files.items()} | {"missing": str(files["ca"]) + ".absent"}
    argv = [a.format(**paths) for a in argv]
    status, out, err = run(capsys, "token", *argv)
    assert (status, out) == (1, "")
    assert message in one_line(err)
    assert "opaque-value-never-printed" not in err
    assert files["expired"].read_text() not in err
    assert argv[argv.index("--client-assertion-file" if "--client-id" in argv else
                           "--subject-token-file") + 1] in err  # fmt: skip
    assert server.token_request_count == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--auth", "client_assertion"], "reads the platform's JWT from --client-assertion-file"),
        (["--client-assertion-file", "{client}", "--auth", "basic"], "drop one of them"),
        (["--client-assertion-file", "{client}", "--client-secret-env", "HOME"],
         "pass --auth to say which"),
        (["--client-assertion-file", "{client}", "--assertion-audience", "x"],
         "--assertion-audience goes with"),
        (["--grant", "token_exchange"], "needs the token to exchange"),
        (["--grant", "token_exchange", "--subject-token-file", "{subject}"],
         "needs --subject-token-type"),
        (["--grant", "token_exchange", "--subject-token-file", "{subject}",
          "--subject-token-type", "bogus"], "'bogus' is not a token type"),
        (["--grant", "token_exchange", "--subject-token-file", "{subject}",
          "--subject-token-type", "jwt", "--actor-token-file", "{actor}"], "go together"),
        (["--grant", "token_exchange", "--subject-token-file", "{subject}",
          "--subject-token-type", "jwt", "--param", "subject_token=x"],
         "use --subject-token-file instead"),
        (["--grant", "token_exchange", "--subject-token-file", "{subject}",
          "--subject-token-type", "jwt", "--claim", "a=b"], "--claim is for the jwt_bearer"),
        (["--grant", "token_exchange", "--subject-token-file", "{subject}",
          "--subject-token-type", "jwt", "--key-file", "{key}"], "drop --key-file"),
        (["--client-id", CLIENT_ID, "--client-assertion-file", "{client}", "--key-file", "{key}"],
         "both --key-file and --client-assertion-file"),
        (["--grant", "token_exchange", "--subject-token-file", "{subject}",
          "--subject-token-type", "jwt", "--auth", "post", "--client-secret-env", "HOME"],
         "needs --client-id"),
    ],
)  # fmt: skip
def test_a6_options_that_do_not_fit_together_are_exit_2(
    capsys: pytest.CaptureFixture[str],
    server: LocalAuthorizationServer,
    files: dict[str, Path],
    argv: list[str],
    message: str,
) -> None:
    """A6: each wrong combination is one line, exit 2, advice in the command line's terms."""
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    status, out, err = run(capsys, "token", *argv)
    assert (status, out) == (2, "")
    assert message in one_line(err)
    assert server.token_request_count == 0


def test_a6_a_token_file_path_with_a_line_ending_is_exit_2(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A6: a path variable read with its newline is refused, naming the variable."""
    monkeypatch.setenv("HTTPX_TOKENAUTH_SUBJECT_TOKEN_FILE", f"{files['subject']}\n")
    status, _, err = run(
        capsys, "token", "--grant", "token_exchange", "--subject-token-type", "jwt"
    )
    assert status == 2
    assert "HTTPX_TOKENAUTH_SUBJECT_TOKEN_FILE" in one_line(err)
    assert "surrounding whitespace" in err


def test_a1_the_jwt_bearer_grant_may_authenticate_its_client_with_a_platform_token(
    files: dict[str, Path],
) -> None:
    """A1: --grant jwt_bearer signs its assertion with --key-file, and the client
    authenticates with the file's JWT: both assertions are in the request."""
    args = parser().parse_args(
        [
            "token", "--grant", "jwt_bearer", "--assertion-issuer", "svc", "--subject", "alice",
            "--key-file", str(files["key"]), "--client-id", CLIENT_ID,
            "--client-assertion-file", str(files["client"]),
        ]
    )  # fmt: skip
    fields = dict(build_provider(args).token_request(time.time()).form)
    assert fields["client_assertion"] == files["client"].read_text()
    assert fields["assertion"].count(".") == 2
    assert fields["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
