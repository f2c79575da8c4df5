"""Discovery: grants configured by issuer (RFC 8414, OpenID Discovery) and protected
resource metadata (RFC 9728), observed as the requests the servers received.

SPEC M1 (issuer, https, size, no redirects), M2 (only allowed authorization
servers), M3 (the resource), M4 (what the metadata decides), M5 (caching and
refresh). Tests through TokenAuth run for sync/asyncio/trio x httpx/httpx2 with
the ``env`` harness; the token client's MockTransport plays the authorization
server and the protected resource's metadata endpoint.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from httpx_tokenauth import (
    ClientAssertion,
    ClientCredentials,
    ClientSecretJWT,
    ClientSecretPost,
    ConfigurationError,
    DiscoveryError,
    FileTokenStore,
    InsecureTransportError,
    IssuerMismatchError,
    JWTBearerGrant,
    PrivateKeyJWT,
    ResourceMismatchError,
    RetryPolicy,
    TokenAuth,
    TokenError,
    TokenExchangeGrant,
    UntrustedAuthorizationServerError,
    generate_encryption_key,
)
from httpx_tokenauth._discovery import (
    MAX_MAX_AGE,
    MIN_MAX_AGE,
    cache_max_age,
    check_issuer,
    metadata_urls,
    resource_metadata_urls,
)
from httpx_tokenauth._program import Effect, FetchDocument, Send
from httpx_tokenauth._token import MAX_RESPONSE_BYTES, RawResponse
from test_program import step

from conftest import CLIENT_ID, Env, token_json

ISSUER = "https://as.example/tenant"
WELL_KNOWN = "https://as.example/.well-known/oauth-authorization-server/tenant"
OPENID = "https://as.example/tenant/.well-known/openid-configuration"
ENDPOINT = "https://as.example/tenant/oauth2/token"
API = "https://api.example/mcp"
PRM = "https://api.example/.well-known/oauth-protected-resource/mcp"
PRM_ROOT = "https://api.example/.well-known/oauth-protected-resource"
SECRET = "a-client-secret-that-is-long-enough-for-hs256-0123456789"  # 56 bytes
OTHER = "https://other.example"
OTHER_ENDPOINT = "https://other.example/token"


def as_doc(issuer: str = ISSUER, endpoint: str = ENDPOINT, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"issuer": issuer, "token_endpoint": endpoint}
    doc.update(extra)
    return doc


class Servers:
    """The authorization server(s) and the protected resource's metadata, behind one handler.

    ``routes`` maps a GET URL to its answer; POSTs to a token endpoint get
    t1, t2, ... Every request is recorded, so a test sees exactly where each
    one went.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[], httpx.Response]] = {}
        self.endpoints: dict[str, Callable[[int], httpx.Response] | None] = {}
        self.seen: list[tuple[str, str]] = []
        self.forms: list[dict[str, list[str]]] = []
        self.headers: list[dict[str, str]] = []
        self.token_forms: dict[str, dict[str, list[str]]] = {}
        self._lock = threading.Lock()

    def serve(self, url: str, body: Any, status: int = 200, **headers: str) -> None:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"content-type": "application/json", **headers}
        self.routes[url] = lambda: httpx.Response(status, headers=hdrs, content=content)

    def metadata(self, doc: dict[str, Any] | None = None, url: str = WELL_KNOWN, **headers: str):
        doc = doc or as_doc()
        self.serve(url, doc, **headers)
        self.endpoints.setdefault(doc["token_endpoint"], None)

    def gets(self, url: str | None = None) -> list[str]:
        return [u for m, u in self.seen if m == "GET" and (url is None or u == url)]

    def posts(self, url: str | None = None) -> list[str]:
        return [u for m, u in self.seen if m == "POST" and (url is None or u == url)]

    def handler(self, request: Any) -> httpx.Response:
        url = str(request.url)
        with self._lock:
            self.seen.append((request.method, url))
            n = len(self.posts())
        if request.method == "GET":
            route = self.routes.get(url)
            return route() if route else httpx.Response(404, text="not found")
        form = parse_qs(request.content.decode())
        with self._lock:
            self.forms.append(form)
            self.headers.append(dict(request.headers))
        if url not in self.endpoints:
            raise httpx.ConnectError("connection refused", request=request)
        answer = self.endpoints[url]
        if answer is not None:
            return answer(n)
        with self._lock:
            self.token_forms[f"t{n}"] = form
        return httpx.Response(200, json=token_json(f"t{n}"))

    async def ahandler(self, request: Any) -> httpx.Response:
        return self.handler(request)


def make(env: Env, servers: Servers, provider: Any, **kwargs: Any) -> TokenAuth:
    kwargs.setdefault("token_client", env.http.Client(transport=env.transport(servers.handler)))
    kwargs.setdefault(
        "async_token_client", env.http.AsyncClient(transport=env.transport(servers.ahandler))
    )
    return env.make(provider, **kwargs)


def grant(**kwargs: Any) -> ClientCredentials:
    kwargs.setdefault("client_id", CLIENT_ID)
    if not isinstance(kwargs.get("client_auth"), PrivateKeyJWT):
        kwargs.setdefault("client_secret", SECRET)
    kwargs.setdefault("resource_discovery", False)
    return ClientCredentials.from_issuer(kwargs.pop("issuer", ISSUER), **kwargs)


def claims_of(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(assertion), jwt.decode(
        assertion, options={"verify_signature": False}
    )


# -- configure by issuer: construction, locations, the metadata's checks (M1) --------------


def test_m1_from_issuer_checks_every_argument_at_construction() -> None:
    """from_issuer refuses what the constructor refuses, with no I/O and no client."""
    with pytest.raises(ConfigurationError, match="client authentication"):
        ClientCredentials.from_issuer(ISSUER, client_id="svc")
    with pytest.raises(ConfigurationError, match="scope"):
        ClientCredentials.from_issuer(ISSUER, client_id="svc", client_secret=SECRET, scope="a b a")
    with pytest.raises(ConfigurationError, match="key"):
        JWTBearerGrant.from_issuer(ISSUER, issuer="svc", subject="u", key="not a key")


@pytest.mark.parametrize(
    ("issuer", "error", "says"),
    [
        ("https://as.example/tenant?x=1", ConfigurationError, "query or a fragment"),
        ("https://as.example/tenant#frag", ConfigurationError, "query or a fragment"),
        ("https://as.example/tenant?", ConfigurationError, "query or a fragment"),
        ("http://as.example", InsecureTransportError, "plain http"),
        ("as.example", ConfigurationError, "absolute https"),
        ("https://user:pw@as.example", ConfigurationError, "'@'"),
        ("https://as.example/ten ant", ConfigurationError, "whitespace"),
        ("https://as.example\u200b", ConfigurationError, "invisible"),
        ("", ConfigurationError, "non-empty"),
    ],
)
def test_m1_an_issuer_with_a_query_fragment_or_plain_http_is_refused(
    issuer: str, error: type[Exception], says: str
) -> None:
    """RFC 8414 §2: an issuer is an https URL without query or fragment, refused at once."""
    with pytest.raises(error, match=says) as info:
        ClientCredentials.from_issuer(issuer, client_id="svc", client_secret=SECRET)
    assert "pw" not in str(info.value)


def test_m1_loopback_issuers_may_use_http() -> None:
    """Plain http is allowed for loopback issuers, as for token URLs (SPEC T1)."""
    assert check_issuer("http://127.0.0.1:8080", allow_insecure_http=False)
    assert check_issuer("http://as.test", allow_insecure_http=True) == "http://as.test"


def test_m1_allowed_issuers_are_checked_too() -> None:
    """Every allowed issuer is checked like the configured one; the configured one is first."""
    with pytest.raises(ConfigurationError, match="allowed_issuers entry"):
        grant(allowed_issuers=["https://ok.example", "https://bad.example?q"])
    with pytest.raises(ConfigurationError, match="allowed_issuers must be"):
        grant(allowed_issuers=[])
    g = grant(allowed_issuers=OTHER)
    assert g._discovered is not None
    assert g._discovered.allowed_issuers == (ISSUER, OTHER)


def test_m1_well_known_locations_insert_the_path_first() -> None:
    """RFC 8414 §3.1 path insertion, then OpenID Discovery's, in the MCP order."""
    assert metadata_urls("https://as.example/tenant/") == (
        WELL_KNOWN,
        "https://as.example/.well-known/openid-configuration/tenant",
        OPENID,
    )
    assert metadata_urls("https://as.example") == (
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    )
    assert resource_metadata_urls("https://api.example/mcp/?q=1") == (
        (PRM, API),
        (PRM_ROOT, "https://api.example"),
    )


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 3600.0),
        ("max-age=600", 600.0),
        ("public, max-age=7200, must-revalidate", 7200.0),
        ("max-age=0", MIN_MAX_AGE),
        ("no-cache", MIN_MAX_AGE),
        ("no-store", MIN_MAX_AGE),
        ("max-age=999999999", MAX_MAX_AGE),
        ("max-age=banana", 3600.0),
    ],
)
def test_m5_max_age_is_honoured_within_bounds(header: str | None, seconds: float) -> None:
    """Cache-Control max-age decides how long a document is used, between 1 min and 1 day."""
    assert cache_max_age({} if header is None else {"cache-control": header}) == seconds


def test_f1_cache_identity_is_by_issuer_and_configuration_without_io() -> None:
    """SPEC F1: the identity needs no metadata; it differs by issuer, client and secret."""
    same = grant().cache_identity()
    assert same == grant().cache_identity()
    assert f"issuer={ISSUER}" in same
    assert grant(issuer=OTHER).cache_identity() != same
    assert grant(client_secret=SECRET + "x").cache_identity() != same
    assert grant(allowed_issuers=OTHER).cache_identity() != same
    assert SECRET not in " ".join(same)


def test_m1_repr_shows_the_issuer_and_no_secret() -> None:
    """The grant's repr names the issuer, says the method comes from the metadata, hides secrets."""
    text = repr(grant())
    assert ISSUER in text
    assert "from the metadata" in text
    assert SECRET not in text
    bearer = JWTBearerGrant.from_issuer(
        ISSUER, issuer="svc@x", subject="u", key=ec.generate_private_key(ec.SECP256R1())
    )
    assert f"as_issuer={ISSUER!r}" in repr(bearer)


# -- through TokenAuth ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_m1_first_request_reads_the_metadata_then_fetches_from_its_endpoint(
    env: Env,
) -> None:
    """The first request fetches the metadata once, then one token from the named endpoint."""
    servers = Servers()
    servers.metadata(as_doc(token_endpoint_auth_methods_supported=["client_secret_basic"]))
    make(env, servers, grant())
    for _ in range(3):
        assert (await env.request()).status_code == 200
    assert servers.gets() == [WELL_KNOWN]
    assert servers.posts() == [ENDPOINT]
    assert env.api.tokens() == ["t1", "t1", "t1"]
    assert servers.headers[0]["authorization"].startswith("Basic ")


@pytest.mark.anyio
async def test_m1_a_token_exchange_configured_by_issuer_exchanges_at_the_named_endpoint(
    env: Env,
) -> None:
    """TokenExchangeGrant.from_issuer: the metadata names the endpoint and the client
    authentication; the subject token is read for the request, told the issuer as audience."""
    servers = Servers()
    servers.metadata(as_doc(token_endpoint_auth_methods_supported=["client_secret_post"]))
    audiences: list[str] = []

    def subject(audience: str) -> str:
        audiences.append(audience)
        return "the-platform-token"

    exchange = TokenExchangeGrant.from_issuer(
        ISSUER,
        subject_token=subject,
        subject_token_type="access_token",
        audience="https://api.example",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        resource_discovery=False,
    )
    make(env, servers, exchange)
    assert (await env.request()).status_code == 200
    assert servers.gets() == [WELL_KNOWN]
    assert servers.posts() == [ENDPOINT]
    form = servers.forms[0]
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:token-exchange"]
    assert form["subject_token"] == ["the-platform-token"]
    assert form["subject_token_type"] == ["urn:ietf:params:oauth:token-type:access_token"]
    assert form["audience"] == ["https://api.example"]
    assert (form["client_id"], form["client_secret"]) == ([CLIENT_ID], [SECRET])
    assert "authorization" not in servers.headers[0]
    assert audiences == [ISSUER]
    assert SECRET not in repr(exchange)
    assert f"issuer={ISSUER!r}" in repr(exchange)
    assert "client_auth=<from the metadata>" in repr(exchange)


@pytest.mark.anyio
@pytest.mark.parametrize("given", [None, "api://AzureADTokenExchange"])
async def test_m4_a_client_assertion_source_is_told_the_issuer_unless_given_an_audience(
    env: Env, given: str | None
) -> None:
    """ClientAssertion with a grant made by issuer: its source is asked for an assertion
    addressed to the issuer, as JWT client authentication is, unless audience= says else."""
    servers = Servers()
    servers.metadata()
    asked: list[str] = []
    assertion = jwt.encode(
        {"iss": "https://oidc.ops.example", "sub": "svc", "exp": int(time.time()) + 600},
        "a-platform-signing-key-of-32-bytes!!",
        algorithm="HS256",
    )

    def read(audience: str) -> str:
        asked.append(audience)
        return assertion

    make(
        env,
        servers,
        ClientCredentials.from_issuer(
            ISSUER,
            client_id=CLIENT_ID,
            client_auth=ClientAssertion(read, audience=given),
            resource_discovery=False,
        ),
    )
    assert (await env.request()).status_code == 200
    assert servers.posts() == [ENDPOINT]
    assert servers.forms[0]["client_assertion"] == [assertion]
    assert asked == [given or ISSUER]


@pytest.mark.parametrize("cls", [ClientCredentials, JWTBearerGrant, TokenExchangeGrant])
def test_m1_every_grant_has_from_issuer_with_its_constructors_keywords(cls: Any) -> None:
    """from_issuer takes the issuer first and every keyword of the constructor, with the same
    defaults, plus allowed_issuers and resource_discovery."""
    constructor = inspect.signature(cls.__init__).parameters
    made_by_issuer = inspect.signature(cls.from_issuer).parameters
    keywords = {n: p.default for n, p in constructor.items() if p.kind is p.KEYWORD_ONLY}
    by_issuer = {n: p.default for n, p in made_by_issuer.items() if p.kind is p.KEYWORD_ONLY}
    assert set(by_issuer) - set(keywords) == {"allowed_issuers", "resource_discovery"}
    assert {n: by_issuer[n] for n in keywords} == keywords
    assert next(iter(made_by_issuer.values())).kind is inspect.Parameter.POSITIONAL_ONLY


@pytest.mark.anyio
async def test_m1_openid_configuration_is_the_fallback(env: Env) -> None:
    """No RFC 8414 document: the OpenID Discovery locations are tried in turn."""
    servers = Servers()
    servers.metadata(url=OPENID)
    make(env, servers, grant())
    assert (await env.request()).status_code == 200
    assert servers.gets() == [
        WELL_KNOWN,
        "https://as.example/.well-known/openid-configuration/tenant",
        OPENID,
    ]
    assert servers.posts() == [ENDPOINT]


@pytest.mark.anyio
async def test_m1_another_issuer_in_the_metadata_is_refused_naming_both(env: Env) -> None:
    """RFC 8414 §3.3: the document's issuer must be the configured one, exactly."""
    servers = Servers()
    servers.metadata(as_doc(issuer=ISSUER + "/"))
    make(env, servers, grant())
    with pytest.raises(IssuerMismatchError) as info:
        await env.request()
    assert info.value.expected == ISSUER
    assert info.value.found == ISSUER + "/"
    assert repr(ISSUER) in str(info.value)
    assert repr(ISSUER + "/") in str(info.value)
    assert servers.posts() == []  # nothing was sent to the endpoint it named


def _too_large() -> bytes:
    return b'{"issuer": "' + b"x" * MAX_RESPONSE_BYTES + b'"}'


BAD_DOCUMENTS: dict[str, tuple[Any, int, dict[str, str], str]] = {
    "not json": (b"<html>login</html>", 200, {"content-type": "text/html"}, "not JSON"),
    "json array": ([ISSUER], 200, {}, "not an object"),
    "too large": (_too_large(), 200, {}, "larger than"),
    "no token_endpoint": ({"issuer": ISSUER}, 200, {}, "no token_endpoint"),
    "http endpoint": (as_doc(endpoint="http://as.example/token"), 200, {}, "plain http"),
    "endpoint with fragment": (as_doc(endpoint=ENDPOINT + "#x"), 200, {}, "cannot be used"),
    "auth methods not a list": (
        as_doc(token_endpoint_auth_methods_supported="client_secret_basic"),
        200,
        {},
        "wrong type",
    ),
    "redirect": (b"", 302, {"location": "https://evil.example/meta"}, "redirect"),
    "server error": (b"oops", 500, {"content-type": "text/plain"}, "HTTP 500"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(BAD_DOCUMENTS))
async def test_m1_a_document_that_fails_its_checks_is_a_typed_error_and_nothing_is_sent(
    env: Env, kind: str
) -> None:
    """Not JSON, too large, no endpoint, an http endpoint, a redirect: DiscoveryError, no POST."""
    body, status, headers, says = BAD_DOCUMENTS[kind]
    servers = Servers()
    servers.serve(WELL_KNOWN, body, status, **headers)
    make(env, servers, grant(), retry=RetryPolicy.off())
    with pytest.raises(DiscoveryError, match=says) as info:
        await env.request()
    assert info.value.status_code == status
    assert servers.posts() == []
    assert all(urlsplit(u).hostname == "as.example" for u in servers.gets())  # no redirect


@pytest.mark.anyio
async def test_m1_no_metadata_anywhere_names_every_location(env: Env) -> None:
    """Every well-known location answers 404: one error that lists them all."""
    servers = Servers()
    make(env, servers, grant())
    with pytest.raises(DiscoveryError, match="found no authorization server metadata") as info:
        await env.request()
    assert WELL_KNOWN in str(info.value)
    assert OPENID in str(info.value)
    assert len(servers.gets()) == 3
    assert servers.posts() == []


@pytest.mark.anyio
async def test_m1_a_passing_failure_of_the_metadata_is_retried(env: Env) -> None:
    """A 503 from the metadata endpoint is retried like one from the token endpoint."""
    servers = Servers()
    answers = iter([httpx.Response(503, text="busy")])
    doc = json.dumps(as_doc()).encode()
    servers.routes[WELL_KNOWN] = lambda: next(
        answers, httpx.Response(200, content=doc, headers={"content-type": "application/json"})
    )
    servers.endpoints[ENDPOINT] = None
    make(env, servers, grant())
    assert (await env.request()).status_code == 200
    assert servers.gets() == [WELL_KNOWN, WELL_KNOWN]
    assert servers.posts() == [ENDPOINT]


# -- what the metadata decides (M4) --------------------------------------------------------


@pytest.mark.anyio
async def test_m4_a_secret_uses_the_strongest_method_the_server_lists(env: Env) -> None:
    """client_secret_jwt over basic/post, with the strongest HMAC the secret allows, aud=issuer."""
    servers = Servers()
    servers.metadata(
        as_doc(
            token_endpoint_auth_methods_supported=[
                "client_secret_basic",
                "client_secret_post",
                "client_secret_jwt",
            ],
            token_endpoint_auth_signing_alg_values_supported=["HS256", "HS384", "HS512"],
        )
    )
    make(env, servers, grant())
    assert (await env.request()).status_code == 200
    form, headers = servers.forms[0], servers.headers[0]
    assert "authorization" not in headers
    assert "client_secret" not in form
    header, claims = claims_of(form["client_assertion"][0])
    assert header["alg"] == "HS384"  # 56 bytes: enough for HS384, not for HS512
    assert claims["aud"] == ISSUER
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    jwt.decode(
        form["client_assertion"][0],
        SECRET,
        algorithms=["HS384"],
        audience=ISSUER,
        options={"verify_exp": False},
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("methods", "expect"),
    [
        (None, "basic"),
        (["client_secret_basic", "client_secret_post"], "basic"),
        (["client_secret_post", "private_key_jwt"], "post"),
        (["client_secret_jwt", "client_secret_post"], "post"),  # HS512 only, secret too short
    ],
)
async def test_m4_a_secret_falls_back_to_what_the_server_accepts(
    env: Env, methods: list[str] | None, expect: str
) -> None:
    """Without client_secret_jwt (or an HMAC the secret is long enough for): basic, then post."""
    servers = Servers()
    extra: dict[str, Any] = {"token_endpoint_auth_signing_alg_values_supported": ["HS512"]}
    if methods is not None:
        extra["token_endpoint_auth_methods_supported"] = methods
    servers.metadata(as_doc(**extra))
    make(env, servers, grant())
    assert (await env.request()).status_code == 200
    form, headers = servers.forms[0], servers.headers[0]
    if expect == "basic":
        assert headers["authorization"].startswith("Basic ")
        assert "client_secret" not in form
    else:
        assert "authorization" not in headers
        assert form["client_secret"] == [SECRET]


@pytest.mark.anyio
async def test_m4_a_secret_the_server_takes_no_method_for_is_a_typed_error(env: Env) -> None:
    """A server that lists only private_key_jwt: the error says so, and no secret is sent."""
    servers = Servers()
    servers.metadata(as_doc(token_endpoint_auth_methods_supported=["private_key_jwt"]))
    make(env, servers, grant())
    with pytest.raises(DiscoveryError, match="private_key_jwt") as info:
        await env.request()
    assert SECRET not in str(info.value)
    assert servers.posts() == []


@pytest.mark.anyio
async def test_m4_the_users_method_is_kept_and_its_jwt_addressed_to_the_issuer(env: Env) -> None:
    """client_auth= given: that method, its algorithm from the server's list, aud = issuer."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    servers = Servers()
    servers.metadata(
        as_doc(
            token_endpoint_auth_methods_supported=["client_secret_basic", "private_key_jwt"],
            token_endpoint_auth_signing_alg_values_supported=["PS256", "ES256"],
        )
    )
    make(env, servers, grant(client_auth=PrivateKeyJWT(key, key_id="k1")))
    assert (await env.request()).status_code == 200
    header, claims = claims_of(servers.forms[0]["client_assertion"][0])
    assert header["alg"] == "PS256"  # RS256 is not listed; the RSA key also signs PS256
    assert header["kid"] == "k1"
    assert claims["aud"] == ISSUER
    public = key.public_key()
    jwt.decode(
        servers.forms[0]["client_assertion"][0],
        public,
        ["PS256"],
        audience=ISSUER,
        options={"verify_exp": False},
    )


@pytest.mark.anyio
async def test_m4_what_the_user_named_is_never_overridden(env: Env) -> None:
    """An explicit method, algorithm and audience stay as given, whatever the server lists."""
    servers = Servers()
    servers.metadata(
        as_doc(
            token_endpoint_auth_methods_supported=["client_secret_jwt", "client_secret_post"],
            token_endpoint_auth_signing_alg_values_supported=["HS512"],
        )
    )
    make(
        env,
        servers,
        grant(client_auth=ClientSecretJWT(algorithm="HS256", audience="urn:as")),
    )
    assert (await env.request()).status_code == 200
    header, claims = claims_of(servers.forms[0]["client_assertion"][0])
    assert (header["alg"], claims["aud"]) == ("HS256", "urn:as")
    servers2 = Servers()
    servers2.metadata(as_doc(token_endpoint_auth_methods_supported=["client_secret_jwt"]))
    env.auth = None
    make(env, servers2, grant(client_auth=ClientSecretPost()))
    assert (await env.request()).status_code == 200
    assert servers2.forms[0]["client_secret"] == [SECRET]


@pytest.mark.anyio
async def test_m4_a_key_no_listed_algorithm_fits_is_a_typed_error(env: Env) -> None:
    """A P-256 key against a server that lists only RSA algorithms: named, nothing sent."""
    servers = Servers()
    servers.metadata(as_doc(token_endpoint_auth_signing_alg_values_supported=["RS256", "PS256"]))
    key = ec.generate_private_key(ec.SECP256R1())
    make(env, servers, grant(client_auth=PrivateKeyJWT(key)))
    with pytest.raises(DiscoveryError, match="RS256, PS256") as info:
        await env.request()
    assert "ES256" in str(info.value)
    assert servers.posts() == []


@pytest.mark.anyio
async def test_m4_a_dpop_algorithm_the_server_does_not_list_is_a_typed_error(env: Env) -> None:
    """With DPoP on, metadata listing other proof algorithms stops before any token request,
    naming what the server accepts and how to choose it."""
    from httpx_tokenauth import ConfigurationError, DPoP

    servers = Servers()
    servers.metadata(as_doc(dpop_signing_alg_values_supported=["EdDSA"]))
    make(env, servers, grant(), dpop=DPoP())
    with pytest.raises(ConfigurationError, match=r"EdDSA, not ES256.*DPoP\(algorithm='EdDSA'\)"):
        await env.request()
    assert servers.posts() == []


@pytest.mark.anyio
async def test_m4_jwt_bearer_assertion_is_addressed_to_the_issuer(env: Env) -> None:
    """JWTBearerGrant.from_issuer: issuer= is the assertion's iss, its aud the AS issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    servers = Servers()
    servers.metadata()
    provider = JWTBearerGrant.from_issuer(
        ISSUER, issuer="svc@example", subject="user@example", key=key, resource_discovery=False
    )
    make(env, servers, provider)
    assert (await env.request()).status_code == 200
    form = servers.forms[0]
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    _, claims = claims_of(form["assertion"][0])
    assert (claims["iss"], claims["sub"], claims["aud"]) == ("svc@example", "user@example", ISSUER)
    assert "client_id" not in form


# -- caching and refresh (M5) --------------------------------------------------------------


@pytest.mark.anyio
async def test_m5_metadata_is_cached_per_issuer_for_token_auths_sharing_a_client(
    env: Env,
) -> None:
    """Two TokenAuths for one issuer over one token client read the metadata once."""
    servers = Servers()
    servers.metadata()
    token_client = env.http.Client(transport=env.transport(servers.handler))
    async_client = env.http.AsyncClient(transport=env.transport(servers.ahandler))
    for _ in range(2):
        make(env, servers, grant(), token_client=token_client, async_token_client=async_client)
        assert (await env.request()).status_code == 200
    assert servers.gets() == [WELL_KNOWN]
    assert servers.posts() == [ENDPOINT, ENDPOINT]


@pytest.mark.anyio
async def test_m5_a_token_endpoint_answering_404_is_looked_up_again(env: Env) -> None:
    """The endpoint moved: 404, the metadata is read again, the new endpoint is used at once."""
    servers = Servers()
    servers.metadata()
    servers.endpoints[ENDPOINT] = lambda n: httpx.Response(404, text="gone")
    make(env, servers, grant(), retry=RetryPolicy.off())
    moved = ISSUER + "/v2/token"

    def move() -> None:
        servers.metadata(as_doc(endpoint=moved))

    servers.routes[WELL_KNOWN] = _then(servers.routes[WELL_KNOWN], move, servers)
    assert (await env.request()).status_code == 200
    assert servers.posts() == [ENDPOINT, moved]
    assert servers.gets() == [WELL_KNOWN, WELL_KNOWN]


def _then(
    route: Callable[[], httpx.Response], after: Callable[[], None], servers: Servers
) -> Callable[[], httpx.Response]:
    """A route that answers once, then runs ``after`` (which may replace it)."""

    def answer() -> httpx.Response:
        response = route()
        after()
        return response

    return answer


@pytest.mark.anyio
async def test_m5_connection_refused_is_looked_up_again_and_same_endpoint_is_retried(
    env: Env,
) -> None:
    """Refused: the metadata is read again; naming the same endpoint, the retry rules go on."""
    servers = Servers()
    servers.metadata()
    calls = iter([None])

    def flaky(n: int) -> httpx.Response:
        if next(calls, "ok") is None:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json=token_json(f"t{n}"))

    servers.endpoints[ENDPOINT] = flaky
    make(env, servers, grant())
    assert (await env.request()).status_code == 200
    assert servers.posts() == [ENDPOINT, ENDPOINT]
    assert servers.gets() == [WELL_KNOWN, WELL_KNOWN]


# -- RFC 9728: protected resource metadata (M2, M3) ----------------------------------------


def prm(resource: str = API, servers_: list[str] | None = None) -> dict[str, Any]:
    return {"resource": resource, "authorization_servers": servers_ or [ISSUER]}


def api_wants_resource(env: Env, servers: Servers, resource: str = API) -> None:
    """The API accepts only tokens requested with resource=...; else 401 naming its metadata."""
    env.api.accept = lambda token: servers.token_forms.get(token, {}).get("resource") == [resource]
    env.api.challenge = f'Bearer error="invalid_token", resource_metadata="{PRM}"'


@pytest.mark.anyio
async def test_m3_a_401_naming_resource_metadata_adds_its_resource_and_replays_once(
    env: Env,
) -> None:
    """RFC 9728 §5: the 401's metadata is read once, its resource sent (RFC 8707), one replay."""
    servers = Servers()
    servers.metadata()
    servers.serve(PRM, prm())
    api_wants_resource(env, servers)
    make(env, servers, grant(), retry=RetryPolicy.off())
    assert (await env.request(url=API)).status_code == 200
    assert (await env.request(url=API + "/tools")).status_code == 200
    assert servers.gets(PRM) == [PRM]
    assert [f.get("resource") for f in servers.forms] == [None, [API]]
    assert env.api.tokens() == ["t1", "t2", "t2"]


@pytest.mark.anyio
async def test_m3_before_the_first_token_the_well_known_resource_metadata_is_read(
    env: Env,
) -> None:
    """RFC 9728 §3.1: with resource discovery on, the first token already has the resource."""
    servers = Servers()
    servers.metadata()
    servers.serve(PRM, prm())
    api_wants_resource(env, servers)
    make(env, servers, grant(resource_discovery=True))
    assert (await env.request(url=API)).status_code == 200
    assert servers.gets() == [PRM, WELL_KNOWN]
    assert [f.get("resource") for f in servers.forms] == [[API]]
    assert env.api.tokens() == ["t1"]


@pytest.mark.anyio
async def test_m3_an_api_without_resource_metadata_costs_two_lookups_once(env: Env) -> None:
    """No document at either well-known location: carry on, and never look again."""
    servers = Servers()
    servers.metadata()
    make(env, servers, grant(resource_discovery=True))
    for _ in range(2):
        assert (await env.request(url=API)).status_code == 200
    assert servers.gets() == [PRM, PRM_ROOT, WELL_KNOWN]
    assert [f.get("resource") for f in servers.forms] == [None]


@pytest.mark.anyio
async def test_m3_resource_metadata_for_another_resource_is_refused(env: Env) -> None:
    """RFC 9728 §3.3: a resource that is not the API called is a typed error naming both."""
    servers = Servers()
    servers.metadata()
    servers.serve(PRM, prm(resource="https://elsewhere.example/mcp"))
    api_wants_resource(env, servers)
    make(env, servers, grant(), retry=RetryPolicy.off())
    with pytest.raises(ResourceMismatchError) as info:
        await env.request(url=API)
    assert info.value.resource == "https://elsewhere.example/mcp"
    assert info.value.request_url == API
    assert len(servers.posts()) == 1  # the first token only; none after the bad document


@pytest.mark.anyio
async def test_m2_an_authorization_server_not_allowed_is_never_contacted(env: Env) -> None:
    """The resource names another AS: a typed error naming it; no request goes there."""
    servers = Servers()
    servers.metadata()
    evil = "https://evil.example"
    servers.serve(PRM, prm(servers_=[evil]))
    servers.metadata(as_doc(issuer=evil, endpoint=evil + "/token"), url=evil + "/.well-known/x")
    api_wants_resource(env, servers)
    make(env, servers, grant(), retry=RetryPolicy.off())
    with pytest.raises(UntrustedAuthorizationServerError) as info:
        await env.request(url=API)
    assert info.value.authorization_servers == (evil,)
    assert info.value.allowed_issuers == (ISSUER,)
    assert evil in str(info.value)
    assert all(urlsplit(u).hostname != "evil.example" for _, u in servers.seen)
    with pytest.raises(UntrustedAuthorizationServerError):  # every time, not only once
        await env.request(url=API)
    assert servers.gets(PRM) == [PRM]


@pytest.mark.anyio
async def test_m2_an_allowed_other_authorization_server_is_used(env: Env) -> None:
    """allowed_issuers= lets the resource pick another AS: its metadata, its endpoint, aud."""
    servers = Servers()
    servers.metadata()
    servers.metadata(
        as_doc(issuer=OTHER, endpoint=OTHER_ENDPOINT),
        url="https://other.example/.well-known/oauth-authorization-server",
    )
    servers.serve(PRM, prm(servers_=["https://evil.example", OTHER]))
    api_wants_resource(env, servers)
    make(env, servers, grant(allowed_issuers=[OTHER]), retry=RetryPolicy.off())
    assert (await env.request(url=API)).status_code == 200
    assert servers.posts() == [ENDPOINT, OTHER_ENDPOINT]
    assert servers.forms[1]["resource"] == [API]
    assert all(urlsplit(u).hostname != "evil.example" for _, u in servers.seen)


@pytest.mark.anyio
async def test_m2_a_token_exchange_asks_its_sources_for_the_other_allowed_server(
    env: Env,
) -> None:
    """A token exchange sent to another allowed authorization server (named by the protected
    resource) has its subject and actor tokens read for that server, not the configured one."""
    servers = Servers()
    servers.metadata()
    servers.metadata(
        as_doc(issuer=OTHER, endpoint=OTHER_ENDPOINT),
        url="https://other.example/.well-known/oauth-authorization-server",
    )
    servers.serve(PRM, prm(servers_=[OTHER]))
    api_wants_resource(env, servers)
    asked: list[tuple[str, str]] = []

    def source(name: str) -> Callable[[str], str]:
        def read(audience: str) -> str:
            asked.append((name, audience))
            return f"{name}-token"

        return read

    exchange = TokenExchangeGrant.from_issuer(
        ISSUER,
        subject_token=source("subject"),
        subject_token_type="access_token",
        actor_token=source("actor"),
        actor_token_type="access_token",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        allowed_issuers=[OTHER],
    )
    make(env, servers, exchange, retry=RetryPolicy.off())
    assert (await env.request(url=API)).status_code == 200
    assert servers.posts() == [OTHER_ENDPOINT]
    assert asked == [("subject", OTHER), ("actor", OTHER)]
    assert servers.forms[0]["resource"] == [API]


@pytest.mark.anyio
async def test_m2_a_401_naming_metadata_over_plain_http_is_not_fetched(env: Env) -> None:
    """A resource_metadata URL that is not https is refused before any request."""
    servers = Servers()
    servers.metadata()
    env.api.accept = lambda token: False
    env.api.challenge = 'Bearer error="invalid_token", resource_metadata="http://api.example/m"'
    make(env, servers, grant(), retry=RetryPolicy.off())
    with pytest.raises(DiscoveryError, match="not an https URL"):
        await env.request(url=API)
    assert servers.gets() == [WELL_KNOWN]


# -- secrets and the one-shot helpers -----------------------------------------------------


@pytest.mark.anyio
async def test_u10_discovery_logs_and_errors_carry_no_secret(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything discovery logs or raises is free of the secret and the tokens."""
    caplog.set_level(logging.DEBUG, logger="httpx_tokenauth")
    servers = Servers()
    servers.metadata()
    servers.serve(PRM, prm(servers_=["https://evil.example"]))
    api_wants_resource(env, servers)
    make(env, servers, grant(resource_discovery=True), retry=RetryPolicy.off())
    with pytest.raises(UntrustedAuthorizationServerError) as info:
        await env.request(url=API)
    text = caplog.text + str(info.value) + repr(env.auth)
    assert SECRET not in text
    assert base64.b64encode(SECRET.encode()).decode() not in text


def test_m1_fetch_token_on_a_grant_made_by_issuer_discovers_too() -> None:
    """grant.fetch_token() goes through discovery like a TokenAuth does."""
    servers = Servers()
    servers.metadata()
    with httpx.Client(transport=httpx.MockTransport(servers.handler)) as client:
        token = grant().fetch_token(token_client=client)
    assert token.access_token == "t1"
    assert servers.gets() == [WELL_KNOWN]
    assert servers.posts() == [ENDPOINT]


def test_f1_a_shared_store_learns_the_resource_in_its_entry_name(tmp_path: Any) -> None:
    """SPEC F1 with a store: the entry name changes once the resource and AS are learned."""
    store = FileTokenStore(tmp_path, encryption_key=generate_encryption_key())
    servers = Servers()
    servers.metadata()
    servers.serve(PRM, prm())
    with httpx.Client(transport=httpx.MockTransport(servers.handler)) as client:
        auth = TokenAuth(grant(resource_discovery=True), token_client=client, store=store)
        before = auth._acquisition.names
        with httpx.Client(
            auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))
        ) as api:
            assert api.get(API).status_code == 200
        assert auth._acquisition.names != before
        assert servers.forms[0]["resource"] == [API]


# -- the program, stepped ------------------------------------------------------------------


def doc_response(doc: dict[str, Any], **headers: str) -> RawResponse:
    return RawResponse(
        200, {"content-type": "application/json", **headers}, json.dumps(doc).encode()
    )


def token_response(token: str) -> RawResponse:
    return RawResponse(
        200, {"content-type": "application/json"}, json.dumps(token_json(token)).encode()
    )


class Mono:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def stepped_auth() -> tuple[TokenAuth, Mono]:
    mono = Mono()
    auth = TokenAuth(grant(), retry=RetryPolicy.off(), token_client=httpx.Client())
    auth._acquisition.monotonic = mono
    return auth, mono


def test_m5_max_age_decides_when_the_metadata_is_read_again() -> None:
    """Stepped: max-age=120 is used for 120 s, then the next fetch reads it again."""
    auth, mono = stepped_auth()
    acq = auth._acquisition

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, FetchDocument):
            return doc_response(as_doc(), **{"cache-control": "max-age=120"})
        assert isinstance(effect, Send)
        return token_response("t")

    effects, _ = step(acq._fetch(renewing=False, blocking=True), respond)
    assert [type(e) for e in effects] == [FetchDocument, Send]
    mono.now += 119
    effects, _ = step(acq._fetch(renewing=False, blocking=True), respond)
    assert [type(e) for e in effects] == [Send]
    mono.now += 2
    effects, _ = step(acq._fetch(renewing=False, blocking=True), respond)
    assert [type(e) for e in effects] == [FetchDocument, Send]


def test_m5_a_failed_refresh_keeps_the_last_good_document(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stepped: the stale document's refresh fails; the last good one is used, and warned of."""
    auth, mono = stepped_auth()
    acq = auth._acquisition
    refresh: list[object] = [doc_response(as_doc())]

    def respond(effect: Effect[Any]) -> object:
        if isinstance(effect, FetchDocument):
            answer = refresh.pop(0) if refresh else None
            if answer is None:
                raise DiscoveryError("unavailable", url=effect.url, status_code=503)
            return answer
        assert isinstance(effect, Send)
        assert effect.request.url == ENDPOINT
        return token_response("t")

    step(acq._fetch(renewing=False, blocking=True), respond)
    mono.now += 3601
    effects, token = step(acq._fetch(renewing=False, blocking=True), respond)
    assert [type(e) for e in effects] == [FetchDocument, Send]
    assert not isinstance(token, TokenError)
    assert "last good document stays in use" in caplog.text
    effects, _ = step(acq._fetch(renewing=False, blocking=True), respond)
    assert [type(e) for e in effects] == [Send]  # looked at again a minute later, not now


def test_m1_without_any_document_the_failure_reaches_the_caller() -> None:
    """Stepped: no document yet and the fetch fails: the caller gets the error, no Send."""
    auth, _ = stepped_auth()

    def respond(effect: Effect[Any]) -> object:
        assert isinstance(effect, FetchDocument)
        return RawResponse(200, {"content-type": "text/html"}, b"<html>")

    effects, result = step(auth._acquisition._fetch(renewing=False, blocking=True), respond)
    assert isinstance(result, DiscoveryError)
    assert all(isinstance(e, FetchDocument) for e in effects)


def test_m4_pem_keys_in_discovery_are_never_in_messages() -> None:
    """A key whose algorithm no listed one fits: the message names algorithms, not the key."""
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    auth = TokenAuth(
        grant(client_auth=PrivateKeyJWT(pem)), retry=RetryPolicy.off(), token_client=httpx.Client()
    )

    def respond(effect: Effect[Any]) -> object:
        assert isinstance(effect, FetchDocument)
        return doc_response(as_doc(token_endpoint_auth_signing_alg_values_supported=["ES256"]))

    _, result = step(auth._acquisition._fetch(renewing=False, blocking=True), respond)
    assert isinstance(result, DiscoveryError)
    assert "ES384" in str(result)
    assert pem.splitlines()[1] not in str(result)


@pytest.mark.anyio
async def test_m5_many_callers_at_cold_start_cost_one_lookup_and_one_token(env: Env) -> None:
    """Single flight covers discovery: 20 concurrent first requests, one GET each, one POST."""
    servers = Servers()
    servers.metadata()
    servers.serve(PRM, prm())
    make(env, servers, grant(resource_discovery=True))
    responses = await env.gather(20, url=API)
    assert [r.status_code for r in responses] == [200] * 20
    assert servers.gets() == [PRM, WELL_KNOWN]
    assert servers.posts() == [ENDPOINT]


@pytest.mark.anyio
async def test_m3_an_api_host_the_token_client_cannot_reach_is_not_probed_again(
    env: Env,
) -> None:
    """The well-known probe fails to connect: no second location, the token comes anyway."""
    servers = Servers()
    servers.metadata()
    probe = servers.handler

    def refuse_api(request: Any) -> httpx.Response:
        if urlsplit(str(request.url)).hostname == "api.example":
            servers.seen.append((request.method, str(request.url)))
            raise httpx.ConnectError("connection refused", request=request)
        return probe(request)

    async def arefuse_api(request: Any) -> httpx.Response:
        return refuse_api(request)

    make(
        env,
        servers,
        grant(resource_discovery=True),
        token_client=env.http.Client(transport=env.transport(refuse_api)),
        async_token_client=env.http.AsyncClient(transport=env.transport(arefuse_api)),
    )
    assert (await env.request(url=API)).status_code == 200
    assert servers.gets() == [PRM, WELL_KNOWN]
    assert [f.get("resource") for f in servers.forms] == [None]
