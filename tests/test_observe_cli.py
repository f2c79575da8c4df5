"""`httpx-tokenauth request -v` shows why each token was fetched (SPEC O7).

Against the real authorization server and API of httpx_tokenauth.testing on
127.0.0.1, over TLS with a throwaway CA, as tests/test_cli.py does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from httpx_tokenauth._cli import fetch_line, main
from httpx_tokenauth.testing import LocalAPI, LocalAuthorizationServer, LocalCA

CLIENT_ID = "observe-cli"
SECRET = "observe-cli-secret-0123456789-abcdefghij"


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA()


@pytest.fixture(scope="module")
def server(ca: LocalCA) -> Iterator[LocalAuthorizationServer]:
    with LocalAuthorizationServer(ca) as s:
        s.register_client(CLIENT_ID, secret=SECRET, scope="read")
        yield s


@pytest.fixture(scope="module")
def api(server: LocalAuthorizationServer, ca: LocalCA) -> Iterator[LocalAPI]:
    with LocalAPI(server, ca=ca) as a:
        yield a


@pytest.fixture(autouse=True)
def environment(
    monkeypatch: pytest.MonkeyPatch,
    server: LocalAuthorizationServer,
    api: LocalAPI,
    ca: LocalCA,
    tmp_path: Path,
) -> None:
    """The variables a user would set: token URL, client, secret, the CA to trust."""
    import os

    for name in list(os.environ):
        if name.startswith("HTTPX_TOKENAUTH_"):
            monkeypatch.delenv(name)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    monkeypatch.setenv("HTTPX_TOKENAUTH_TOKEN_URL", server.token_url)
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("HTTPX_TOKENAUTH_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("HTTPX_TOKENAUTH_CA_FILE", str(ca_file))
    server.reset()
    api.reset()


def test_o7_request_verbose_shows_the_reason_of_each_fetch(
    capsys: pytest.CaptureFixture[str], server: LocalAuthorizationServer, api: LocalAPI
) -> None:
    """-v: the cold fetch and, after a 401, the `rejected` one, each a line on stderr."""
    api.revoke_all_issued_before(when=4_000_000_000.0)  # every token: the replay is refused too
    status = main(["request", "GET", f"{api.url}/things", "-v"])
    out, err = capsys.readouterr()
    assert status == 0
    assert out.startswith("HTTP/1.1 401")
    lines = [line for line in err.splitlines() if line.startswith("* token ")]
    assert [line.split("):")[0] for line in lines] == [
        "* token fetched (reason: cold, attempt 1",
        "* token fetched (reason: rejected, attempt 1",
    ]
    assert "* replaying GET " in err
    assert all("success, HTTP 200 in " in line for line in lines)
    assert all(" - expires in " in line for line in lines)
    assert err.index("reason: cold") < err.index("> GET ")  # the token first, then the request
    assert server.token_request_count == 2
    for token in server.issued_tokens():
        assert token not in err
    assert SECRET not in err


def test_o7_without_verbose_no_fetch_is_shown_and_the_logger_is_left_alone(
    capsys: pytest.CaptureFixture[str], api: LocalAPI
) -> None:
    """Without -v stderr stays empty; after -v the library logger is as it was."""
    library = logging.getLogger("httpx_tokenauth")
    before = (library.level, list(library.handlers))
    assert main(["request", "GET", f"{api.url}/things"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["request", "GET", f"{api.url}/things", "-v"]) == 0
    assert "* token fetched (reason: cold" in capsys.readouterr().err
    assert (library.level, list(library.handlers)) == before


def test_o7_a_failed_request_line_shows_status_and_rate_limits() -> None:
    """A throttled token request reads as its reason, outcome, status and rate-limit headers."""
    record = logging.LogRecord("httpx_tokenauth", logging.DEBUG, __file__, 1, "m", None, None)
    record.__dict__.update(
        event="token_request_failed",
        reason="expired",
        attempt=2,
        outcome="UnexpectedTokenResponseError",
        status_code=429,
        duration=0.0421,
        rate_limit_limit=100,
        rate_limit_remaining=0,
        rate_limit_reset=30.0,
        retry_after=12.0,
    )
    assert fetch_line(record) == (
        "token request failed (reason: expired, attempt 2): UnexpectedTokenResponseError, "
        "HTTP 429 in 0.042 s - rate limit 100, remaining 0, resets in 30 s, Retry-After 12 s"
    )


def test_o7_other_records_are_shown_as_their_message() -> None:
    """A retry or a warning is its one-line message."""
    record = logging.LogRecord(
        "httpx_tokenauth", logging.INFO, __file__, 1, "retrying in %.2f s\nnow", (0.5,), None
    )
    record.event = "token_request_retry"
    assert fetch_line(record) == "retrying in 0.50 s now"
