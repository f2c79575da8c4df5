"""TokenAuth through real httpx.Client and httpx.AsyncClient (sync, asyncio, trio).

Each test body runs once per flavor; the fake token endpoint and API are
httpx.MockTransport handlers that record what they received.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import anyio
import httpx
import pytest

from httpx_tokenauth import (
    ClientCredentials,
    InsecureTransportError,
    InvalidClientError,
    Token,
    TokenAuth,
    TokenEndpointError,
    TokenTransportError,
    UnexpectedTokenResponseError,
    bearer_challenge,
)

from conftest import API_URL, CLIENT_SECRET, TOKEN_URL, Env, body_of, token_json

pytestmark = pytest.mark.anyio


# -- fetching and reusing ------------------------------------------------------------


async def test_first_request_fetches_later_requests_reuse(env: Env) -> None:
    """One token request serves many API requests, each carrying `Bearer <token>` (U1)."""
    env.make()
    responses = [await env.request() for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert env.auth_server.count == 1
    assert env.api.tokens() == ["t1"] * 5
    assert env.api.authorization == ["Bearer t1"] * 5


async def test_token_request_is_a_basic_authenticated_form_post(env: Env) -> None:
    """The token endpoint gets POST, form body, client_credentials, Basic auth (T5, C1, B3)."""
    env.make()
    await env.request()
    (sent,) = env.auth_server.requests
    assert sent.method == "POST"
    assert str(sent.url) == TOKEN_URL
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.headers["authorization"].startswith("Basic ")
    assert env.auth_server.forms == [{"grant_type": ["client_credentials"]}]


async def test_token_exchange_stays_out_of_history_and_event_hooks(env: Env) -> None:
    """Token requests use TokenAuth's own client: not in response.history nor the API hooks."""
    seen: list[str] = []

    def hook(obj: httpx.Request | httpx.Response) -> None:
        seen.append(str(obj.url if isinstance(obj, env.http.Request) else obj.request.url))

    async def ahook(obj: httpx.Request | httpx.Response) -> None:
        hook(obj)

    h = hook if env.is_sync else ahook
    env.make(event_hooks={"request": [h], "response": [h]})
    env.api.accept = lambda token: token != "t1"
    response = await env.request()
    assert response.status_code == 200
    assert env.auth_server.count == 2
    assert [str(r.request.url) for r in response.history] == [API_URL]
    assert seen
    assert all(url == API_URL for url in seen)
    for past in response.history:
        assert b"access_token" not in past.content


async def test_bearer_token_is_never_sent_over_plain_http(env: Env) -> None:
    """T3: a request to an http:// API is refused before any token is fetched."""
    env.make()
    with pytest.raises(InsecureTransportError, match="plain http"):
        await env.request(url="http://api.example/things")
    assert env.auth_server.count == 0
    assert env.api.requests == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]/x"])
async def test_plain_http_allowed_to_loopback(env: Env, url: str) -> None:
    """T3: loopback hosts may use plain http (local development, sidecars)."""
    env.make()
    response = await env.request(url=url)
    assert response.status_code == 200
    assert env.api.tokens() == ["t1"]


async def test_plain_http_allowed_with_explicit_opt_in(env: Env) -> None:
    """T3: allow_insecure_http=True lets the token go to an http:// API."""
    env.make(allow_insecure_http=True)
    response = await env.request(url="http://api.internal/x")
    assert response.status_code == 200
    assert env.api.tokens() == ["t1"]


# -- refresh policy ------------------------------------------------------------------


async def test_token_renewed_within_leeway_of_expiry(env: Env) -> None:
    """A 3600 s token is reused until 60 s before expiry, then renewed (leeway)."""
    env.make()
    await env.request()
    env.clock.advance(3600 - 61)
    await env.request()
    assert env.auth_server.count == 1
    env.clock.advance(2)
    await env.request()
    assert env.auth_server.count == 2
    assert env.api.tokens() == ["t1", "t1", "t2"]


async def test_short_token_window_clamped_to_half_its_lifetime(env: Env) -> None:
    """A 10 s token is renewed at 5 s, not fetched on every request."""
    env.auth_server.expires_in = 10
    env.make()
    for _ in range(5):
        await env.request()
        env.clock.advance(0.9)
    assert env.auth_server.count == 1
    env.clock.advance(1)
    await env.request()
    assert env.auth_server.count == 2


async def test_expired_token_is_replaced_before_use(env: Env) -> None:
    """An expired token is never sent: the caller waits for a new one (R4)."""
    env.make()
    await env.request()
    env.clock.advance(7200)
    await env.request()
    assert env.api.tokens() == ["t1", "t2"]


async def test_token_without_expires_in_used_until_401(env: Env) -> None:
    """R5: no expires_in means no invented expiry; a 401 is what replaces it."""
    env.auth_server.expires_in = None
    env.make()
    await env.request()
    env.clock.advance(10 * 365 * 86400)
    await env.request()
    assert env.auth_server.count == 1
    env.api.accept = lambda token: token != "t1"
    response = await env.request()
    assert response.status_code == 200
    assert env.api.tokens() == ["t1", "t1", "t1", "t2"]


async def test_default_lifetime_applies_when_server_omits_expires_in(env: Env) -> None:
    """default_lifetime=300 renews a token without expires_in after 300 s less the window."""
    env.auth_server.expires_in = None
    env.make(default_lifetime=300)
    await env.request()
    env.clock.advance(239)
    await env.request()
    assert env.auth_server.count == 1
    env.clock.advance(2)
    await env.request()
    assert env.auth_server.count == 2


async def test_early_renewal_does_not_make_other_callers_wait(env: Env) -> None:
    """In the early window one caller renews; others keep the valid token without waiting."""
    env.make()
    await env.request()
    env.clock.advance(3600 - 30)  # inside the 60 s window, token still valid
    gate = env.gate()
    env.auth_server.gate = gate
    renewer: list[httpx.Response] = []

    async def renew() -> None:
        renewer.append(await env.request())

    async with anyio.create_task_group() as tg:
        tg.start_soon(renew)
        await gate.entered()  # the renewal is in flight and held
        other = await env.request()  # completes while the renewal is still held
        assert other.status_code == 200
        assert env.api.tokens() == ["t1", "t1"]
        gate.open()
    assert renewer[0].status_code == 200
    assert env.api.tokens() == ["t1", "t1", "t2"]
    assert env.auth_server.count == 2


async def test_failed_early_renewal_keeps_the_valid_token(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that fails while the token is valid keeps it in use and logs a warning."""
    env.make()
    await env.request()
    env.auth_server.reply = lambda request, n: httpx.Response(503, text="down")
    env.clock.advance(3600 - 30)
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        response = await env.request()
    assert response.status_code == 200
    assert env.api.tokens() == ["t1", "t1"]
    assert any(getattr(r, "event", None) == "renewal_failed" for r in caplog.records)
    env.clock.advance(31)  # now expired: the failure is the caller's error
    with pytest.raises(UnexpectedTokenResponseError) as info:
        await env.request()
    assert info.value.status_code == 503


async def test_get_token_serves_other_channels_by_the_same_rules(env: Env) -> None:
    """get_token()/aget_token() return the cached token; invalidate() is compare-and-swap."""
    auth = env.make()

    async def get() -> Token:
        if env.is_sync:
            return await anyio.to_thread.run_sync(auth.get_token)
        return await auth.aget_token()

    first = await get()
    assert first is await get()
    assert first.access_token == "t1"
    assert first.expires_at == env.clock.now + 3600
    auth.invalidate(first)  # e.g. a websocket rejected it
    second = await get()
    assert second.access_token == "t2"
    auth.invalidate(first)  # a stale rejection changes nothing
    assert await get() is second
    assert env.auth_server.count == 2
    response = await env.request()  # the httpx client shares the same cache
    assert response.status_code == 200
    assert env.api.tokens() == ["t2"]


# -- one fetch for many --------------------------------------------------------------


async def test_cold_start_herd_makes_one_token_request(env: Env) -> None:
    """200 tasks (or 32 threads) at cold start cause exactly one token request."""
    n = 32 if env.is_sync else 200
    gate = env.gate(target=n)
    env.auth_server.gate = gate  # the one fetch is held until every caller has started
    env.make()
    responses = await env.gather(n, before=gate.arrive)
    assert gate.arrived == n
    assert env.auth_server.count == 1
    assert [r.status_code for r in responses] == [200] * n
    assert env.api.tokens() == ["t1"] * n


async def test_401_storm_fetches_one_new_token_and_replays_each_once(env: Env) -> None:
    """100 concurrent 401s for the same old token: one new token, each request replayed once."""
    env.make()
    await env.request()  # t1 cached
    env.api.accept = lambda token: token != "t1"  # t1 revoked
    env.api.reject_gate = env.gate(target=100)  # every request is rejected before any replay
    responses = await env.gather(100)
    assert env.auth_server.count == 2
    assert [r.status_code for r in responses] == [200] * 100
    assert all(len(r.history) == 1 and r.history[0].status_code == 401 for r in responses)
    tokens = env.api.tokens()[1:]
    assert sorted(tokens) == ["t1"] * 100 + ["t2"] * 100


async def test_late_401_for_a_replaced_token_costs_no_fetch(env: Env) -> None:
    """Compare-and-invalidate: a 401 for a token already replaced replays with the new one."""
    env.make()
    await env.request()  # t1 cached
    env.api.accept = lambda token: token != "t1"
    gate = env.gate()
    env.api.reject_gate, env.api.hold_rejections = gate, 1  # hold only the first 401
    late: list[httpx.Response] = []

    async def slow() -> None:
        late.append(await env.request())

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        await gate.entered()  # the slow request's 401 for t1 is held
        fast = await env.request()  # gets its 401 for t1, renews to t2, replays
        assert fast.status_code == 200
        gate.open()  # now the slow 401 for t1 arrives, after t2 is cached
    assert late[0].status_code == 200
    assert env.auth_server.count == 2
    assert sorted(env.api.tokens()) == ["t1", "t1", "t1", "t2", "t2"]


# -- 401 handling --------------------------------------------------------------------


async def test_second_401_is_returned_untouched(env: Env) -> None:
    """U6: replay exactly once; a second 401 comes back to the caller as the API sent it."""
    env.make()
    env.api.accept = lambda token: False
    response = await env.request()
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {"detail": "no entry"}
    assert env.api.tokens() == ["t1", "t2"]
    assert env.auth_server.count == 2


@pytest.mark.parametrize(
    "challenge",
    [
        None,
        "Bearer",
        'Bearer realm="api"',
        'Bearer error="invalid_token"',
        "bearer ERROR=invalid_token",
    ],
)
async def test_u6_renew_and_replay_on_bad_token(env: Env, challenge: str | None) -> None:
    """U6: no challenge, a bare Bearer challenge, or invalid_token: new token, one replay."""
    env.make()
    env.api.challenge = challenge
    env.api.accept = lambda token: token != "t1"
    response = await env.request()
    assert response.status_code == 200
    assert env.api.tokens() == ["t1", "t2"]


@pytest.mark.parametrize(
    ("status", "challenge"),
    [
        (403, 'Bearer error="insufficient_scope", scope="write"'),
        (401, 'Bearer error="insufficient_scope", scope="write"'),
        (400, 'Bearer error="invalid_request"'),
        (401, 'Bearer error="invalid_request"'),
        (401, 'Basic realm="api"'),
        (403, None),
    ],
)
async def test_u7_u8_no_refresh_no_replay(env: Env, status: int, challenge: str | None) -> None:
    """U7, U8: 403, insufficient_scope, invalid_request, Basic-only: handed back as is."""
    env.make()
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    env.api.reply = lambda request: httpx.Response(status, headers=headers)
    response = await env.request()
    assert response.status_code == status
    assert len(env.api.requests) == 1
    assert env.auth_server.count == 1
    await env.request()  # the token was not invalidated
    assert env.auth_server.count == 1


async def test_u7_required_scope_is_available_to_the_caller(env: Env) -> None:
    """U7: the scope an insufficient_scope answer requires is readable from the response."""
    env.make()
    env.api.reply = lambda request: httpx.Response(
        403, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="a:read b"'}
    )
    response = await env.request()
    challenge = bearer_challenge(response)
    assert challenge is not None
    assert challenge.error == "insufficient_scope"
    assert challenge.scope == ("a:read", "b")


async def test_401_from_another_origin_is_not_about_our_token(env: Env) -> None:
    """U10: a cross-origin redirect drops the token; that origin's 401 causes no renewal."""

    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.example":
            return httpx.Response(302, headers={"Location": "https://elsewhere.example/x"})
        return httpx.Response(401, headers={"WWW-Authenticate": "Bearer"})

    env.api.reply = reply
    env.make()
    response = await env.request(follow_redirects=True)
    assert response.status_code == 401
    assert [r.url.host for r in env.api.requests] == ["api.example", "elsewhere.example"]
    assert env.api.tokens() == ["t1", None]
    assert env.auth_server.count == 1


# -- request bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"content": b"\x00raw bytes\xff"},
        {"data": {"a": "1", "b": "two words"}},
        {"json": {"k": [1, 2, {"x": None}]}},
        {"files": {"upload": ("f.bin", b"file-bytes" * 100, "application/octet-stream")}},
        {"files": {"upload": ("f.bin", io.BytesIO(b"seekable" * 50))}, "data": {"f": "v"}},
    ],
    ids=["bytes", "form", "json", "multipart", "multipart-file"],
)
async def test_replayed_body_is_byte_identical(env: Env, body: dict[str, object]) -> None:
    """Bytes, form, JSON and multipart bodies are resent byte for byte after a 401."""
    env.make()
    env.api.accept = lambda token: token != "t1"
    response = await env.request("POST", **body)
    assert response.status_code == 200
    first, second = env.api.bodies
    assert first
    assert first == second


async def test_streaming_body_is_not_replayed_but_token_is_renewed(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """A generator body is never buffered or resent: the 401 returns, the token is renewed."""
    env.make()
    env.api.accept = lambda token: token != "t1"
    with caplog.at_level(logging.WARNING, logger="httpx_tokenauth"):
        response = await env.request("POST", content=body_of(env.flavor, [b"one ", b"shot"]))
    assert response.status_code == 401
    assert env.api.bodies == [b"one shot"]
    assert env.auth_server.count == 2
    assert any("cannot be sent twice" in r.getMessage() for r in caplog.records)
    again = await env.request()
    assert again.status_code == 200
    assert env.api.tokens() == ["t1", "t2"]


async def test_streamed_response_is_not_read_by_the_auth(env: Env) -> None:
    """The auth never reads a response body: a streamed 200 is left for the caller to read."""
    consumed: list[bool] = []

    class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            consumed.append(True)
            yield b"x" * 10

        async def __aiter__(self):  # type: ignore[no-untyped-def]
            consumed.append(True)
            yield b"x" * 10

    env.api.reply = lambda request: httpx.Response(200, stream=Body())
    env.make()
    if env.is_sync:
        assert env._client is not None
        client = env._client

        def run() -> None:
            with client.stream("GET", API_URL) as response:
                assert response.status_code == 200
                assert consumed == []
                assert response.read() == b"x" * 10

        await anyio.to_thread.run_sync(run)
    else:
        assert env._aclient is not None
        async with env._aclient.stream("GET", API_URL) as response:
            assert response.status_code == 200
            assert consumed == []
            assert await response.aread() == b"x" * 10
    assert consumed == [True]


# -- the token endpoint misbehaving ---------------------------------------------------


async def test_token_endpoint_error_is_raised_typed(env: Env) -> None:
    """E1/E2: an OAuth error from the token endpoint reaches the caller as a typed error."""
    env.auth_server.reply = lambda request, n: httpx.Response(
        401,
        headers={"WWW-Authenticate": 'Basic realm="as"'},
        json={"error": "invalid_client", "error_description": "unknown client"},
    )
    env.make()
    with pytest.raises(InvalidClientError) as info:
        await env.request()
    assert info.value.status_code == 401
    assert info.value.error_description == "unknown client"
    assert env.api.requests == []
    assert env.auth_server.count == 1


async def test_token_endpoint_redirect_is_not_followed(env: Env) -> None:
    """T6: a 3xx from the token endpoint is an error; the Location is never requested."""
    env.auth_server.reply = lambda request, n: httpx.Response(
        302, headers={"Location": "https://evil.example/token"}
    )
    env.make()
    with pytest.raises(UnexpectedTokenResponseError, match="redirect") as info:
        await env.request()
    assert info.value.status_code == 302
    assert [str(r.url) for r in env.auth_server.requests] == [TOKEN_URL]


async def test_token_endpoint_body_is_capped(env: Env) -> None:
    """T6: a token response over 1 MiB is refused, not read to the end."""
    big = b'{"access_token": "' + b"a" * (2 << 20) + b'", "token_type": "Bearer"}'
    env.auth_server.reply = lambda request, n: httpx.Response(
        200, content=big, headers={"Content-Type": "application/json"}
    )
    env.make()
    with pytest.raises(UnexpectedTokenResponseError, match="larger than") as info:
        await env.request()
    assert info.value.status_code == 200


async def test_transport_failure_is_a_typed_error_with_cause(env: Env) -> None:
    """A connection failure to the token endpoint is TokenTransportError, httpx error as cause."""

    def fail(request: httpx.Request, n: int) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    env.auth_server.reply = fail
    env.make()
    with pytest.raises(TokenTransportError, match=r"as\.example/token") as info:
        await env.request()
    assert isinstance(info.value.__cause__, env.http.ConnectError)
    assert info.value.token_url == TOKEN_URL


async def test_every_waiter_gets_the_error_when_the_fetch_fails(env: Env) -> None:
    """Callers waiting on a failing cold-start fetch each get a typed error, none hangs."""
    env.auth_server.reply = lambda request, n: httpx.Response(400, json={"error": "invalid_client"})
    env.make()
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await env.request()
        except InvalidClientError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one)
    assert len(errors) == 8
    assert env.api.requests == []


# -- secrets -------------------------------------------------------------------------


async def test_secrets_never_in_repr_logs_or_errors(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """U10: client secret and tokens appear in no repr, str, DEBUG log or exception message."""

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        if n <= 2:
            return httpx.Response(200, json=token_json(f"tok-secret-{n}", refresh_token="rt-x"))
        return httpx.Response(400, json={"error": "invalid_grant"})

    env.auth_server.reply = reply
    secrets = [CLIENT_SECRET, "tok-secret-1", "tok-secret-2", "rt-x"]
    env.api.accept = lambda token: token != "tok-secret-1"
    auth = env.make()
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        response = await env.request()
        assert response.status_code == 200
        env.clock.advance(7200)
        with pytest.raises(TokenEndpointError) as info:
            await env.request()
        texts += [str(info.value), repr(info.value)]
    texts += [repr(auth), str(auth), repr(response.history), repr(response.history[0].request)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(r.__dict__) for r in caplog.records if r.name == "httpx_tokenauth"]
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)


# -- custom providers ------------------------------------------------------------------


class FileTokenProvider:
    """The README's provider: reads a token from a file a sidecar keeps fresh."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.calls = 0

    def fetch_token(self) -> Token:
        self.calls += 1
        return Token(Path(self.path).read_text().strip(), expires_at=time.time() + 300)


class AsyncFileTokenProvider(FileTokenProvider):
    """The async form: the same provider with afetch_token()."""

    async def afetch_token(self) -> Token:
        return self.fetch_token()


async def test_custom_provider_reads_token_from_a_file(env: Env, tmp_path: Path) -> None:
    """A user provider with fetch_token()/afetch_token() plugs in and gets the 401 replay."""
    path = tmp_path / "token"
    path.write_text("file-token-1\n")
    provider = FileTokenProvider(str(path)) if env.is_sync else AsyncFileTokenProvider(str(path))
    env.make(provider, clock=time.time)
    assert (await env.request()).status_code == 200
    assert (await env.request()).status_code == 200
    path.write_text("file-token-2\n")  # a sidecar rotates the token...
    env.api.accept = lambda token: token != "file-token-1"  # ...and the API revokes the old one
    response = await env.request()
    assert response.status_code == 200
    assert env.api.tokens() == ["file-token-1", "file-token-1", "file-token-1", "file-token-2"]
    assert provider.calls == 2


@pytest.mark.parametrize("flavor", ["asyncio", "trio"])
async def test_sync_provider_runs_off_the_event_loop(env: Env) -> None:
    """With AsyncClient, a provider with only fetch_token() runs in a worker thread."""
    import threading

    from httpx_tokenauth import Token

    threads: list[int] = []

    class Provider:
        def fetch_token(self) -> Token:
            threads.append(threading.get_ident())
            return Token("from-thread")

    env.make(Provider())
    response = await env.request()
    assert response.status_code == 200
    assert threads
    assert threads[0] != threading.get_ident()


@pytest.mark.parametrize("flavor", ["sync"])
async def test_async_only_provider_with_sync_client_is_a_clear_error(env: Env) -> None:
    """A provider with only afetch_token() used from httpx.Client says what to do."""
    from httpx_tokenauth import ConfigurationError, Token

    class Provider:
        async def afetch_token(self) -> Token:
            return Token("x")

    env.make(Provider())
    with pytest.raises(ConfigurationError, match="AsyncClient"):
        await env.request()


async def test_failing_provider_is_wrapped_with_cause(env: Env) -> None:
    """A provider's own exception reaches the caller as ProviderError, original as cause."""
    from httpx_tokenauth import ProviderError

    class Provider:
        def fetch_token(self) -> object:
            raise OSError("secrets store unreachable")

        async def afetch_token(self) -> object:
            raise OSError("secrets store unreachable")

    env.make(Provider())
    with pytest.raises(ProviderError) as info:
        await env.request()
    assert isinstance(info.value.__cause__, OSError)


async def test_provider_returning_a_non_token_is_refused(env: Env) -> None:
    """A provider that returns a string instead of a Token gets a ProviderError saying so."""
    from httpx_tokenauth import ProviderError

    class Provider:
        def fetch_token(self) -> object:
            return "just-a-string"

        async def afetch_token(self) -> object:
            return "just-a-string"

    env.make(Provider())
    with pytest.raises(ProviderError, match="not a Token"):
        await env.request()


# -- construction ----------------------------------------------------------------------


def test_construction_errors_are_clear() -> None:
    """Bad TokenAuth arguments are refused at construction with a ConfigurationError."""
    from httpx_tokenauth import ConfigurationError

    provider = ClientCredentials(TOKEN_URL, client_id="a", client_secret="b")
    with pytest.raises(ConfigurationError, match="provider must be"):
        TokenAuth(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="async_token_client"):
        TokenAuth(provider, token_client=httpx.AsyncClient())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="token_client"):
        TokenAuth(provider, async_token_client=httpx.Client())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="leeway"):
        TokenAuth(provider, leeway=-1)
    with pytest.raises(ConfigurationError, match="default_lifetime"):
        TokenAuth(provider, default_lifetime=0)
    with pytest.raises(ConfigurationError, match="clock"):
        TokenAuth(provider, clock=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="retry"):
        TokenAuth(provider, retry=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="cooldown"):
        TokenAuth(provider, cooldown=-1)


def test_repr_names_the_provider_without_secrets() -> None:
    """repr(TokenAuth) shows the configuration a person needs, and no secret."""
    auth = TokenAuth(
        ClientCredentials(TOKEN_URL + "?tenant=x", client_id="svc", client_secret="hunter2")
    )
    text = repr(auth)
    assert "ClientCredentials(token_url='https://as.example/token'" in text
    assert "client_id='svc'" in text
    assert "hunter2" not in text
