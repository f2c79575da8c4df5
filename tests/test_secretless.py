"""Secretless credentials through TokenAuth: sync, asyncio and trio; httpx and httpx2.

A platform token file, a function and GitHub Actions OIDC as the source of a
client assertion or of a token exchange's subject token, against the
harness's MockTransport token endpoint and API (the GitHub token service is a
real HTTP server on 127.0.0.1). Assertions are on what the token endpoint
received, how many requests it got, what the caller got, and what the logs
hold. SPEC A1 (read fresh for each request), A3 (never sent expired), A4 (one
re-read and one more attempt after a refusal near expiry), A5 (N_A), A6 (bad
sources), A7 (shared store identity).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from httpx_tokenauth import (
    AssertionExpiredError,
    AssertionSourceError,
    ClientAssertion,
    ClientCredentials,
    ConfigurationError,
    FileAssertion,
    FileTokenStore,
    GitHubActionsOIDC,
    InvalidClientError,
    TokenExchangeGrant,
    generate_encryption_key,
)
from httpx_tokenauth.testing import LocalIssuer

from conftest import CLIENT_ID, TOKEN_URL, Env, token_json

pytestmark = pytest.mark.anyio

SUBJECT = "system:serviceaccount:billing:api"
AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TYPES = "urn:ietf:params:oauth:token-type:"


class Platform:
    """Kubernetes, as far as a pod sees it: a token file rewritten with new JWTs."""

    def __init__(self, env: Env, path: Path) -> None:
        self.env = env
        self.path = path
        self.issuer = LocalIssuer("https://oidc.aks.example/tenant", clock=env.clock)
        self.written: list[str] = []

    def rotate(self, *, expires_in: float = 600) -> str:
        now = self.env.clock()
        token = self.issuer.write(
            self.path, SUBJECT, AUDIENCE, issued_at=now - 1, lifetime=expires_in + 1
        )
        self.written.append(token)
        return token


@pytest.fixture
def platform(env: Env, tmp_path: Path) -> Platform:
    platform = Platform(env, tmp_path / "azure-identity-token")
    platform.rotate()
    return platform


def connect(env: Env, provider: Any, **kwargs: Any) -> Any:
    """TokenAuth for ``provider`` on the harness's token endpoint and API."""
    return env.make(
        provider,
        token_client=env.http.Client(transport=env.transport(env.auth_server.handler)),
        async_token_client=env.http.AsyncClient(transport=env.transport(env.auth_server.ahandler)),
        **kwargs,
    )


def federated(source: Any) -> ClientCredentials:
    return ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_auth=ClientAssertion(source))


def sent(env: Env, name: str = "client_assertion") -> list[str]:
    return [form[name][0] for form in env.auth_server.forms]


async def get_token(env: Env) -> Any:
    assert env.auth is not None
    if env.is_sync:
        return await anyio.to_thread.run_sync(env.auth.get_token)
    return await env.auth.aget_token()


# -- A1: read fresh for every token request -------------------------------------------------


async def test_a1_each_token_request_carries_the_token_the_platform_wrote_last(
    env: Env, platform: Platform
) -> None:
    """A1: the first fetch, a renewal at expiry and the renewal after a 401 each send the file's
    current token, with client_id and the jwt-bearer assertion type."""
    connect(env, federated(FileAssertion(platform.path)))
    assert (await env.request()).status_code == 200
    env.clock.advance(3600)  # the access token expired: renewed with the rotated file
    platform.rotate()
    assert (await env.request()).status_code == 200
    platform.rotate()
    env.api.accept = lambda token: token != "t2"  # revoked: a 401, renewal, one replay
    assert (await env.request()).status_code == 200
    assert sent(env) == platform.written
    assert {form["client_assertion_type"][0] for form in env.auth_server.forms} == {ASSERTION_TYPE}
    assert {form["client_id"][0] for form in env.auth_server.forms} == {CLIENT_ID}
    assert env.api.tokens() == ["t1", "t2", "t2", "t3"]


async def test_a1_a_rotated_file_is_not_read_while_the_access_token_is_fresh(
    env: Env, platform: Platform
) -> None:
    """A1: the file is read for token requests only; the hot path reads nothing."""
    connect(env, federated(FileAssertion(platform.path)))
    await env.request()
    platform.path.unlink()  # a missing file would fail any read
    assert [(await env.request()).status_code for _ in range(3)] == [200, 200, 200]
    assert env.auth_server.count == 1


# -- A3: an expired assertion is never sent ----------------------------------------------


async def test_a3_an_expired_platform_token_is_never_sent(env: Env, platform: Platform) -> None:
    """A3: the platform stopped rotating: AssertionExpiredError names the path, no request."""
    connect(env, federated(FileAssertion(platform.path)))
    env.clock.advance(601)
    with pytest.raises(AssertionExpiredError) as info:
        await env.request()
    assert str(platform.path) in info.value.source
    assert platform.written[0] not in str(info.value)
    assert env.auth_server.count == 0
    assert env.api.requests == []


async def test_a3_a_token_about_to_expire_is_read_again_and_the_rotated_one_sent(
    env: Env, tmp_path: Path
) -> None:
    """A3: a function giving a token with 10 s left is asked again; its next answer is sent."""
    issuer = LocalIssuer("https://spiffe.example", clock=env.clock)
    answers = [
        issuer.mint("spiffe://example.org/billing", TOKEN_URL, lifetime=10),
        issuer.mint("spiffe://example.org/billing", TOKEN_URL, lifetime=300),
    ]
    asked: list[str] = []

    def jwt_svid(audience: str) -> str:
        asked.append(audience)
        return answers[len(asked) - 1]

    connect(env, federated(jwt_svid))
    assert (await env.request()).status_code == 200
    assert asked == [TOKEN_URL, TOKEN_URL]
    assert sent(env) == [answers[1]]


# -- A4: one re-read and one more attempt after a refusal near expiry ---------------------


def refuse_and_rotate(platform: Platform, times: int) -> Any:
    """A token endpoint that refuses the first ``times`` requests with invalid_client while the
    platform rotates the file right after our read (the race A4 is for)."""

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        if n <= times:
            platform.rotate()
            return httpx.Response(400, json={"error": "invalid_client"})
        return httpx.Response(200, json=token_json(f"t{n}"))

    return reply


async def test_a4_a_refusal_near_expiry_is_followed_by_one_attempt_with_the_new_token(
    env: Env, platform: Platform
) -> None:
    """A4: 45 s left and refused: the rotated file is read and sent once more, successfully."""
    platform.rotate(expires_in=45)
    env.auth_server.reply = refuse_and_rotate(platform, times=1)
    connect(env, federated(FileAssertion(platform.path)))
    assert (await env.request()).status_code == 200
    assert env.auth_server.count == 2
    assert sent(env) == platform.written[1:3]


async def test_a4_the_second_refusal_reaches_the_caller(env: Env, platform: Platform) -> None:
    """A4: no more than one more attempt: two refusals, InvalidClientError, two requests."""
    platform.rotate(expires_in=45)
    env.auth_server.reply = refuse_and_rotate(platform, times=10)
    connect(env, federated(FileAssertion(platform.path)))
    with pytest.raises(InvalidClientError):
        await env.request()
    assert env.auth_server.count == 2


# -- sources: functions, sync and async ------------------------------------------------------


async def test_a1_a_sync_function_runs_off_the_callers_event_loop(env: Env) -> None:
    """A1: a blocking function is called in a worker thread under async, and in the calling
    thread under sync: never on the thread running the event loop."""
    issuer = LocalIssuer("https://ci.example", clock=env.clock)
    threads: list[int] = []

    def token(audience: str) -> str:
        threads.append(threading.get_ident())
        return issuer.mint("svc", audience)

    connect(env, federated(token))
    assert (await env.request()).status_code == 200
    assert threads
    assert threading.get_ident() not in threads


async def test_a1_an_async_function_is_awaited_and_refused_under_a_sync_client(env: Env) -> None:
    """A1, A6: async clients await it; a sync client cannot, and says so before any request."""
    issuer = LocalIssuer("https://ci.example", clock=env.clock)

    async def token(audience: str) -> str:
        await anyio.sleep(0)
        return issuer.mint("svc", audience)

    connect(env, federated(token))
    if env.is_sync:
        with pytest.raises(ConfigurationError, match="is async: use this credential with an"):
            await env.request()
        assert env.auth_server.count == 0
    else:
        assert (await env.request()).status_code == 200
        assert len(sent(env)) == 1


@pytest.mark.parametrize("result", [RuntimeError("boom eyJ-secret"), 42, "", "not-a-jwt"])
async def test_a6_a_function_that_fails_or_returns_no_jwt_sends_nothing(
    env: Env, result: object
) -> None:
    """A6: a function that raises or returns a non-string, an empty string or no JWT: an
    AssertionSourceError naming the function; no token request; its text never quoted."""

    def token(audience: str) -> Any:
        if isinstance(result, BaseException):
            raise result
        return result

    connect(env, federated(token))
    with pytest.raises(AssertionSourceError) as info:
        await env.request()
    assert "test_a6_a_function_that_fails_or_returns_no_jwt_sends_nothing" in info.value.source
    assert "eyJ-secret" not in str(info.value)
    assert env.auth_server.count == 0


# -- token exchange (RFC 8693) through TokenAuth -------------------------------------------


def exchanged(request: httpx.Request, n: int) -> httpx.Response:
    return httpx.Response(
        200,
        json={**token_json(f"x{n}"), "issued_token_type": TYPES + "access_token"},
    )


async def test_a2_a_token_exchange_trades_the_file_and_keeps_issued_token_type(
    env: Env, platform: Platform
) -> None:
    """A2: subject_token read from the file for each request, its type, the audience; the
    token the API gets is the exchanged one, issued_token_type kept."""
    env.auth_server.reply = exchanged
    grant = TokenExchangeGrant(
        TOKEN_URL,
        subject_token=FileAssertion(platform.path),
        subject_token_type="jwt",
        audience="https://billing.example",
    )
    connect(env, grant)
    assert (await env.request()).status_code == 200
    env.clock.advance(3600)
    platform.rotate()
    assert (await env.request()).status_code == 200
    assert sent(env, "subject_token") == platform.written
    form = env.auth_server.forms[0]
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:token-exchange"]
    assert form["subject_token_type"] == [TYPES + "jwt"]
    assert form["audience"] == ["https://billing.example"]
    assert "client_id" not in form
    assert env.api.tokens() == ["x1", "x2"]
    assert (await get_token(env)).issued_token_type == TYPES + "access_token"


async def test_a5_an_n_a_token_is_handed_out_by_get_token_but_never_sent_as_bearer(
    env: Env, platform: Platform
) -> None:
    """A5: an exchange for an ID token (N_A): get_token returns it; an API request through the
    TokenAuth is a ConfigurationError and reaches no API."""

    def id_token(request: httpx.Request, n: int) -> httpx.Response:
        body = {"access_token": "an-id-token", "token_type": "N_A", "expires_in": 300}
        return httpx.Response(200, json={**body, "issued_token_type": TYPES + "id_token"})

    env.auth_server.reply = id_token
    grant = TokenExchangeGrant(
        TOKEN_URL,
        subject_token=FileAssertion(platform.path),
        subject_token_type="jwt",
        requested_token_type="id_token",
    )
    connect(env, grant)
    token = await get_token(env)
    assert (token.token_type, token.access_token) == ("N_A", "an-id-token")
    with pytest.raises(ConfigurationError, match="not an access token"):
        await env.request()
    assert env.api.requests == []
    assert env.auth_server.count == 1


# -- A7: a shared store names sources -----------------------------------------------------------


def module_level_token(audience: str) -> str:
    return "unused"


async def test_a7_a_shared_store_refuses_a_source_it_cannot_name(
    env: Env, platform: Platform, tmp_path: Path
) -> None:
    """A7: with a store, a lambda source is a ConfigurationError at construction; a file, a
    module-level function and GitHubActionsOIDC are named and accepted."""
    store = FileTokenStore(tmp_path / "store", encryption_key=generate_encryption_key())
    with pytest.raises(ConfigurationError, match="lambda or a local function"):
        connect(env, federated(lambda audience: "unused"), store=store)
    connect(env, federated(FileAssertion(platform.path)), store=store)
    named = ClientAssertion(module_level_token)
    grant = ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_auth=named)
    assert f"{__name__}.module_level_token" in grant.cache_identity()


# -- secrets ---------------------------------------------------------------------------------


async def test_a6_platform_tokens_appear_in_no_log_repr_or_error(
    env: Env, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """A6: through a stale re-read, an A4 retry and an expiry error, no platform token is in a
    log record (message or fields), a repr or an exception."""
    platform.rotate(expires_in=45)
    env.auth_server.reply = refuse_and_rotate(platform, times=1)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        auth = connect(env, federated(FileAssertion(platform.path)))
        await env.request()
        env.clock.advance(10_000)
        env.auth_server.reply = None
        with pytest.raises(AssertionExpiredError) as info:
            await env.request()
        texts += [str(info.value), repr(info.value)]
    texts += [repr(auth), repr(auth._provider), repr(env.auth_server.reply)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(r.__dict__) for r in caplog.records if r.name.startswith("httpx_tokenauth")]
    assert any(getattr(r, "event", None) == "assertion_reread" for r in caplog.records)
    for token in platform.written:
        for text in texts:
            assert token not in text


# -- GitHub Actions OIDC against a real HTTP server on 127.0.0.1 --------------------------

REQUEST_TOKEN = "ghs-request-token-0123456789"


class GitHubTokenService:
    """The runner's token service: GET with audience=, bearer request token, {"value": jwt}."""

    def __init__(self) -> None:
        self.issuer = LocalIssuer("https://token.actions.githubusercontent.com")
        self.status = 200
        self.body: bytes | None = None  # an answer of 200 with this body instead
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []
        self.issued: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                service.requests.append((parts.path, query, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"bearer {REQUEST_TOKEN}":
                    self._send(401, {"message": "bad credentials"})
                elif service.status != 200:
                    self._send(service.status, {"message": "nope"})
                elif service.body is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(service.body)))
                    self.end_headers()
                    self.wfile.write(service.body)
                else:
                    token = service.issuer.mint("repo:acme/billing:ref:refs/heads/main",
                                                query["audience"][0])  # fmt: skip
                    service.issued.append(token)
                    self._send(200, {"count": 1, "value": token})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/_apis/distributedtask/token?api-version=2.0"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def github_service() -> Iterator[GitHubTokenService]:
    service = GitHubTokenService()
    yield service
    service.close()


@pytest.fixture
def github(
    github_service: GitHubTokenService, monkeypatch: pytest.MonkeyPatch
) -> GitHubTokenService:
    """The runner's environment: the two variables 'permissions: id-token: write' sets."""
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", github_service.url)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
    github_service.requests.clear()
    github_service.issued.clear()
    github_service.status = 200
    github_service.body = None
    return github_service


async def test_a1_github_actions_oidc_asks_for_a_token_for_each_request(
    env: Env, github: GitHubTokenService
) -> None:
    """A1: each token request GETs a new OIDC token for the audience, with the bearer request
    token; the token endpoint receives exactly what the service issued."""
    connect(env, federated(GitHubActionsOIDC(audience=AUDIENCE)))
    assert (await env.request()).status_code == 200
    env.clock.advance(3600)
    assert (await env.request()).status_code == 200
    assert sent(env) == github.issued
    assert len(github.issued) == 2
    for path, query, authorization in github.requests:
        assert path == "/_apis/distributedtask/token"
        assert query == {"api-version": ["2.0"], "audience": [AUDIENCE]}
        assert authorization == f"bearer {REQUEST_TOKEN}"


async def test_a1_github_actions_oidc_without_audience_asks_for_the_token_url(
    env: Env, github: GitHubTokenService
) -> None:
    """A1: with no audience of its own, the source asks for the one the credential names."""
    connect(env, federated(GitHubActionsOIDC()))
    await env.request()
    assert [query["audience"] for _, query, _ in github.requests] == [[TOKEN_URL]]


async def test_a6_a_github_refusal_is_a_typed_error_and_nothing_is_sent(
    env: Env, github: GitHubTokenService
) -> None:
    """A6: the token service answering 403 is an AssertionSourceError with advice; the request
    token is never in it; no token request is made."""
    github.status = 403
    connect(env, federated(GitHubActionsOIDC(audience=AUDIENCE)))
    with pytest.raises(AssertionSourceError) as info:
        await env.request()
    assert "HTTP 403" in str(info.value)
    assert "id-token: write" in str(info.value)
    assert REQUEST_TOKEN not in str(info.value)
    assert env.auth_server.count == 0


async def test_a1_github_actions_oidc_uses_the_clients_it_is_given(
    env: Env, github: GitHubTokenService
) -> None:
    """A1: client= / async_client= carry the request to the token service (a proxy, a CA)."""
    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append(request.url.host)

    async def ahook(request: httpx.Request) -> None:
        seen.append(request.url.host)

    with httpx.Client(event_hooks={"request": [hook]}) as client:
        async with httpx.AsyncClient(event_hooks={"request": [ahook]}) as async_client:
            source = GitHubActionsOIDC(audience=AUDIENCE, client=client, async_client=async_client)
            connect(env, federated(source))
            assert (await env.request()).status_code == 200
    assert seen == ["127.0.0.1"]


def test_a6_github_actions_oidc_outside_a_job_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A6: without the runner's variables (or with a plain-http remote URL) construction fails
    with a message naming the variable and the workflow permission."""
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL", raising=False)
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", raising=False)
    with pytest.raises(AssertionSourceError, match="ACTIONS_ID_TOKEN_REQUEST_URL is not set"):
        GitHubActionsOIDC(audience=AUDIENCE)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "http://runner.example/token")
    with pytest.raises(AssertionSourceError, match="not a URL the token can be asked from"):
        GitHubActionsOIDC(audience=AUDIENCE)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "https://runner.example/token")
    with pytest.raises(AssertionSourceError, match="ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set"):
        GitHubActionsOIDC(audience=AUDIENCE)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
    source = GitHubActionsOIDC(audience=AUDIENCE)
    assert REQUEST_TOKEN not in repr(source)
    assert source.identity(TOKEN_URL) == ("github-actions-oidc", AUDIENCE)
    for bad in ({"audience": ""}, {"client": object()}, {"async_client": httpx.Client()}):
        with pytest.raises(ConfigurationError):
            GitHubActionsOIDC(**bad)


async def read(env: Env, source: GitHubActionsOIDC) -> object:
    """One read of the source the way this flavor's interpreter does it."""
    if env.is_sync:
        return await anyio.to_thread.run_sync(source.read, TOKEN_URL)
    return await source.aread(TOKEN_URL)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>not json</html>", "answered without a token ('value')"),
        (200, b'{"count": 0}', "answered without a token ('value')"),
        (200, b"x" * (300 * 1024), "more than 262144 bytes"),
        (500, None, "answered HTTP 500"),
    ],
)
async def test_a6_github_answers_that_hold_no_token_are_typed_errors(
    env: Env, github: GitHubTokenService, status: int, body: bytes | None, message: str
) -> None:
    """A6: a body that is not JSON, JSON without 'value', an oversized body, a 500: each an
    AssertionSourceError naming the GitHub source, sync and async alike."""
    github.status, github.body = status, body
    with pytest.raises(AssertionSourceError) as info:
        await read(env, GitHubActionsOIDC(audience=AUDIENCE))
    assert message in str(info.value)
    assert info.value.source == f"GitHub Actions OIDC token for audience {AUDIENCE!r}"


async def test_a6_an_unreachable_github_token_service_is_a_typed_error(
    env: Env, github: GitHubTokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A6: a connection refused is an AssertionSourceError with the cause; no request token."""
    import socket

    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"http://127.0.0.1:{port}/token")
    with pytest.raises(AssertionSourceError) as info:
        await read(env, GitHubActionsOIDC())
    assert "ConnectError" in str(info.value)
    assert REQUEST_TOKEN not in str(info.value)
    assert info.value.__cause__ is not None
