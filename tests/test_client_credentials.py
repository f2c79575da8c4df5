"""The client credentials grant's token request, built by calling the sans-I/O core.

SPEC T1, T4, T5 (transport), B1-B7 (client authentication), C1-C4 (request
parameters). No network: every assertion is on ``token_request(now)``.
"""

from __future__ import annotations

import base64
import contextlib
from urllib.parse import parse_qsl, quote_plus, unquote_plus

import pytest

from httpx_tokenauth import (
    ClientCredentials,
    ClientSecretBasic,
    ClientSecretPost,
    ConfigurationError,
    InsecureTransportError,
    NonVSCHARWarning,
)
from httpx_tokenauth._client_auth import ClientAuth
from httpx_tokenauth._request import TokenRequest

TOKEN_URL = "https://as.example/oauth2/token"
CLIENT_ID = "svc-client"
SECRET = "s3cr3t-Value-42"
NOW = 1_700_000_000.0

BASE_HEADERS = (
    ("Content-Type", "application/x-www-form-urlencoded"),
    ("Accept", "application/json"),
    ("Cache-Control", "no-store"),
)

B1_CLIENT_ID = "client %&+-_.!~*'()"
B1_SECRET = "p+q:r%s=é"


def _request(**kwargs: object) -> TokenRequest:
    """The token request of a ClientCredentials built from TOKEN_URL/CLIENT_ID/SECRET defaults."""
    config: dict[str, object] = {"client_id": CLIENT_ID, "client_secret": SECRET}
    config.update(kwargs)
    token_url = config.pop("token_url", TOKEN_URL)
    return ClientCredentials(token_url, **config).token_request(NOW)  # type: ignore[arg-type]


def _basic_userpass(request: TokenRequest) -> str:
    """The base64-decoded user-pass of the single Basic Authorization header."""
    values = [v for k, v in request.headers if k.lower() == "authorization"]
    assert len(values) == 1
    scheme, _, encoded = values[0].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded, validate=True).decode("ascii")


def _body_pairs(request: TokenRequest) -> list[tuple[str, str]]:
    """The body decoded as a strict application/x-www-form-urlencoded UTF-8 form."""
    return parse_qsl(
        request.body.decode("ascii"),
        keep_blank_values=True,
        strict_parsing=True,
        encoding="utf-8",
        errors="strict",
    )


# --- T5: POST, form encoding, UTF-8 --------------------------------------------------------------


def test_t5_request_is_post_with_form_content_type_and_exact_headers() -> None:
    """T5: the token request is a POST with the form content type, JSON accept and no-store."""
    request = _request()
    assert request.method == "POST"
    assert request.url == TOKEN_URL
    assert request.headers[:3] == BASE_HEADERS
    assert [k for k, _ in request.headers] == [
        "Content-Type",
        "Accept",
        "Cache-Control",
        "Authorization",
    ]


def test_r11_request_forbids_http_caching() -> None:
    """R11: the token request carries Cache-Control: no-store so no cache layer keeps it."""
    headers = dict(_request().headers)
    assert headers["Cache-Control"] == "no-store"


def test_t5_body_is_form_urlencoded_utf8_bytes() -> None:
    """T5: the body is the form, urlencoded, with non-ASCII sent as UTF-8 percent-escapes."""
    with pytest.warns(NonVSCHARWarning, match="client_secret"):  # ä: outside VSCHAR (B9)
        request = _request(
            client_id="svc",
            client_secret="pässword",
            client_auth=ClientSecretPost(),
            extra_params={"tenant": "zürich & co"},
        )
    assert request.body == (
        b"grant_type=client_credentials&tenant=z%C3%BCrich+%26+co"
        b"&client_id=svc&client_secret=p%C3%A4ssword"
    )
    assert _body_pairs(request) == list(request.form)


# --- T1: TLS for the token endpoint --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://as.example/token",
        "HTTP://as.example/token",
        "http://10.0.0.1/token",
        "http://0.0.0.0/token",
        "http://[2001:db8::1]/token",
        "http://localhost.evil.example/token",
        "http://127.0.0.1.nip.io/token",
    ],
)
def test_t1_http_token_url_is_refused(url: str) -> None:
    """T1: a plain-http token URL to a non-loopback host is refused at construction."""
    with pytest.raises(InsecureTransportError):
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=SECRET)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/token",
        "http://127.5.5.5:8080/token",
        "http://[::1]/token",
        "http://[::1]:9000/oauth/token",
        "http://localhost/token",
        "http://LOCALHOST:8000/token",
        "http://auth.localhost/token",
    ],
)
def test_t1_http_token_url_allowed_for_loopback(url: str) -> None:
    """T1: plain http is allowed to loopback hosts, and the URL is used unchanged."""
    assert _request(token_url=url).url == url


def test_t1_http_token_url_allowed_with_explicit_opt_in() -> None:
    """T1: allow_insecure_http=True lets a non-loopback http token URL through unchanged."""
    url = "http://as.internal.example/token"
    assert _request(token_url=url, allow_insecure_http=True).url == url


def test_t1_insecure_url_error_does_not_echo_query_or_userinfo() -> None:
    """T1/U10: the refusal names the endpoint without its query string."""
    with pytest.raises(InsecureTransportError) as exc_info:
        ClientCredentials(
            "http://as.example/token?api_key=key-in-query",
            client_id=CLIENT_ID,
            client_secret=SECRET,
        )
    message = str(exc_info.value)
    assert "key-in-query" not in message
    assert "http://as.example/token" in message


@pytest.mark.parametrize(
    "url",
    ["https://user:pw-in-url@as.example/token", "http://user:pw-in-url@as.example/token"],
)
def test_b5_credentials_in_the_token_url_are_refused(url: str) -> None:
    """B1/B5: user:password in the URL would add (or replace) client authentication: refused."""
    with pytest.raises(ConfigurationError, match="user name or password") as exc_info:
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=SECRET)
    assert "pw-in-url" not in str(exc_info.value)


@pytest.mark.parametrize("url", ["https://as.example/token\r\n", "https://as.example/to ken"])
def test_t4_control_characters_in_the_token_url_are_refused(url: str) -> None:
    """A token URL read with its line ending, or with a space, is refused at construction."""
    with pytest.raises(ConfigurationError, match="control character"):
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=SECRET)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "as.example/token",
        "/token",
        "ftp://as.example/token",
        "https:///token",
        "https://as.example:99999/token",
    ],
)
def test_t1_malformed_token_url_is_refused(url: str) -> None:
    """T1: a token URL that is not an absolute http(s) URL with a host is a ConfigurationError."""
    with pytest.raises(ConfigurationError) as exc_info:
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=SECRET)
    assert exc_info.type is ConfigurationError


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:pw-in-url@as.example/token?api_key=key-in-query",
        "https://user:pw-in-url@as.example:99999/token?api_key=key-in-query",
        "https://user:pw-in-url@/token?api_key=key-in-query",
        "https://user:pw-in-url@[::1/token?api_key=key-in-query",
        "https://user:pw-in-url@as.example/token?api_key=key-in-query#frag",
        "as.example/token?api_key=key-in-query",
    ],
)
def test_u10_malformed_token_url_error_does_not_echo_credentials(url: str) -> None:
    """U10: refusing a malformed token URL never quotes its userinfo password or query."""
    with pytest.raises(ConfigurationError) as exc_info:
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=SECRET)
    assert "pw-in-url" not in str(exc_info.value)
    assert "key-in-query" not in str(exc_info.value)


# --- T4: query kept, fragment refused ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://as.example/token?tenant=a%20b&api-version=2.0&flag",
        "https://as.example/t/oken?x=%2F+%C3%A9",
        "https://as.example/token?",
    ],
)
def test_t4_query_in_token_url_is_kept_verbatim(url: str) -> None:
    """T4: the token URL's query is sent exactly as configured and not moved into the body."""
    request = _request(token_url=url)
    assert request.url == url
    assert request.form == (("grant_type", "client_credentials"),)


@pytest.mark.parametrize(
    "url",
    [
        "https://as.example/token#frag",
        "https://as.example/token#",
        "https://as.example/token?x=1#y",
    ],
)
def test_t4_fragment_in_token_url_is_refused(url: str) -> None:
    """T4: a token URL with a fragment (even an empty one) is refused at construction."""
    with pytest.raises(ConfigurationError) as exc_info:
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=SECRET)
    assert exc_info.type is ConfigurationError


# --- B1-B3: client_secret_basic ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [
        (B1_CLIENT_ID, B1_SECRET),
        ("svc", "s3cret"),
        ("a:b", "c:d:e"),
        ("ü-client", "密码 with spaces"),
        ("+", "%"),
    ],
)
def test_b1_basic_header_round_trips_reserved_characters(
    client_id: str, client_secret: str
) -> None:
    """B1: decode, split on the first ':', unquote_plus each half: the originals come back."""
    ascii_only = (client_id + client_secret).isascii()  # else outside VSCHAR: warned (B9)
    with contextlib.nullcontext() if ascii_only else pytest.warns(NonVSCHARWarning):
        userpass = _basic_userpass(_request(client_id=client_id, client_secret=client_secret))
    encoded_id, sep, encoded_secret = userpass.partition(":")
    assert sep == ":"
    assert unquote_plus(encoded_id, errors="strict") == client_id
    assert unquote_plus(encoded_secret, errors="strict") == client_secret


def test_b1_basic_encodes_with_form_urlencoding_before_base64() -> None:
    """B1: id and secret are form-urlencoded (space as '+', ':' escaped) inside the base64."""
    with pytest.warns(NonVSCHARWarning, match="client_secret"):  # é: outside VSCHAR (B9)
        userpass = _basic_userpass(_request(client_id=B1_CLIENT_ID, client_secret=B1_SECRET))
    assert userpass.count(":") == 1
    encoded_id, _, encoded_secret = userpass.partition(":")
    assert encoded_id.startswith("client+%25%26%2B")
    assert " " not in userpass
    assert encoded_secret == "p%2Bq%3Ar%25s%3D%C3%A9"


def test_b2_basic_uses_standard_base64_alphabet() -> None:
    """B2: the Basic credentials use standard base64 ('+'), not the URL-safe alphabet ('-')."""
    # '~' at offset 2 of a 3-byte group encodes to '+'. '/' cannot be provoked: it needs
    # '?', DEL or a byte >= 0xC0 in the user-pass, and form-urlencoding escapes all of them.
    request = _request(client_id="ab~", client_secret="secret")
    header = dict(request.headers)["Authorization"]
    encoded = header.removeprefix("Basic ")
    assert encoded == "YWJ+OnNlY3JldA=="
    assert "+" in encoded
    assert "-" not in encoded
    assert "_" not in encoded
    assert encoded == base64.b64encode(b"ab~:secret").decode("ascii")
    assert encoded != base64.urlsafe_b64encode(b"ab~:secret").decode("ascii")


def test_b3_default_method_with_a_secret_is_client_secret_basic() -> None:
    """B3: given only a secret, the request uses Basic and matches explicit ClientSecretBasic()."""
    default = _request()
    explicit = _request(client_auth=ClientSecretBasic())
    assert default.headers == explicit.headers
    assert default.form == explicit.form == (("grant_type", "client_credentials"),)
    expected = base64.b64encode(f"{CLIENT_ID}:{quote_plus(SECRET)}".encode()).decode()
    assert dict(default.headers)["Authorization"] == f"Basic {expected}"
    assert ClientSecretBasic.method == "client_secret_basic"


# --- B4, B5: client_secret_post, exactly one method ----------------------------------------------


@pytest.mark.parametrize(
    "url", [TOKEN_URL, "https://as.example/token?tenant=t1", "http://127.0.0.1:8080/token"]
)
def test_b4_post_puts_id_and_secret_in_body_only(url: str) -> None:
    """B4: client_secret_post sends id and secret as form fields; the URL is left unchanged."""
    request = _request(token_url=url, client_auth=ClientSecretPost())
    assert request.url == url
    assert SECRET not in request.url
    assert request.headers == BASE_HEADERS
    assert request.form == (
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
    )
    assert _body_pairs(request) == list(request.form)


@pytest.mark.parametrize("client_auth", [None, ClientSecretBasic(), ClientSecretPost()])
def test_b5_exactly_one_authentication_method_per_request(client_auth: ClientAuth | None) -> None:
    """B5: credentials appear in exactly one place: a Basic header or the body, never both."""
    request = _request(client_auth=client_auth, scope="read")
    header_names = [k.lower() for k, _ in request.headers]
    form_names = [k for k, _ in request.form]
    assert len(header_names) == len(set(header_names))
    assert len(form_names) == len(set(form_names))
    in_header = header_names.count("authorization")
    in_body = form_names.count("client_secret")
    assert in_header + in_body == 1
    if in_header:
        assert "client_id" not in form_names
    else:
        assert form_names.count("client_id") == 1


# --- B6, B7: secrets required, never empty -------------------------------------------------------


@pytest.mark.parametrize("client_auth", [None, ClientSecretBasic(), ClientSecretPost()])
@pytest.mark.parametrize("client_secret", ["", b"secret", 42])
def test_b6_empty_or_non_string_secret_refused_at_construction(
    client_auth: ClientAuth | None, client_secret: object
) -> None:
    """B6: an empty or non-string secret is refused at construction: `client_secret=` never sent."""
    with pytest.raises(ConfigurationError) as exc_info:
        ClientCredentials(
            TOKEN_URL,
            client_id=CLIENT_ID,
            client_secret=client_secret,  # type: ignore[arg-type]
            client_auth=client_auth,
        )
    assert exc_info.type is ConfigurationError


@pytest.mark.parametrize("client_auth", [ClientSecretBasic(), ClientSecretPost()])
def test_b6_secret_method_without_secret_refused(client_auth: ClientAuth) -> None:
    """B6: a secret-based method with no secret is refused, never sent as `id:None`."""
    with pytest.raises(ConfigurationError) as exc_info:
        ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_auth=client_auth)
    assert exc_info.type is ConfigurationError


def test_b7_client_credentials_without_any_client_authentication_refused() -> None:
    """B7: no secret and no client_auth is a ConfigurationError at construction."""
    with pytest.raises(ConfigurationError) as exc_info:
        ClientCredentials(TOKEN_URL, client_id=CLIENT_ID)
    assert exc_info.type is ConfigurationError


@pytest.mark.parametrize("client_id", ["", None, 42, b"svc"])
def test_client_id_must_be_a_non_empty_string(client_id: object) -> None:
    """A missing, empty or non-string client_id is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        ClientCredentials(TOKEN_URL, client_id=client_id, client_secret=SECRET)  # type: ignore[arg-type]


@pytest.mark.parametrize("client_auth", [ClientSecretBasic, "client_secret_basic", object()])
def test_client_auth_must_be_a_client_auth_instance(client_auth: object) -> None:
    """client_auth that is not a ClientAuth instance (a class, a name) is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        ClientCredentials(
            TOKEN_URL,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            client_auth=client_auth,  # type: ignore[arg-type]
        )


# --- C1-C4: the grant's parameters ---------------------------------------------------------------


def test_c1_c4_minimal_request_has_grant_type_and_no_scope() -> None:
    """C1, C4: grant_type=client_credentials is the only body field unless scope is configured."""
    request = _request()
    assert request.form == (("grant_type", "client_credentials"),)
    assert request.body == b"grant_type=client_credentials"
    assert ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_secret=SECRET).scope is None


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("read", ("read",)),
        ("read write", ("read", "write")),
        (["read", "write"], ("read", "write")),
        (("read", "write", "admin"), ("read", "write", "admin")),
        ("api://svc/.default", ("api://svc/.default",)),
        (
            ["https://graph.example/User.Read", "!#$&~"],
            ("https://graph.example/User.Read", "!#$&~"),
        ),
    ],
)
def test_c2_scope_string_or_list_joined_by_single_spaces(
    scope: str | list[str] | tuple[str, ...], expected: tuple[str, ...]
) -> None:
    """C1, C2: a scope string or list becomes one `scope` field joined by single spaces."""
    grant = ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_secret=SECRET, scope=scope)
    assert grant.scope == expected
    request = grant.token_request(NOW)
    assert request.form == (
        ("grant_type", "client_credentials"),
        ("scope", " ".join(expected)),
    )
    assert _body_pairs(request) == [
        ("grant_type", "client_credentials"),
        ("scope", " ".join(expected)),
    ]


@pytest.mark.parametrize(
    "scope",
    [
        "",
        [],
        [""],
        "read  write",
        " read",
        "read ",
        "read\twrite",
        ["read write"],
        'say"hi',
        ['a"b'],
        "back\\slash",
        ["back\\slash"],
        "café",
        ["naïve"],
        "read\n",
        "\x00",
        "read read",
        ["read", "write", "read"],
        42,
        [1],
        b"read",
        {"read"},
    ],
)
def test_c2_bad_scope_refused_at_construction(scope: object) -> None:
    """C2: empty, spaced, quoted, backslashed, non-ASCII, repeated or non-string scope refused."""
    with pytest.raises(ConfigurationError) as exc_info:
        ClientCredentials(
            TOKEN_URL,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            scope=scope,  # type: ignore[arg-type]
        )
    assert exc_info.type is ConfigurationError


def test_c3_resource_and_audience_repeat_and_survive_form_encoding() -> None:
    """C3: several resources and audiences are repeated fields that parse back exactly."""
    resources = ["https://api.example/a?x=1&y=2", "urn:example:resource:b", "https://api.example/ü"]
    audiences = ["aud one", "aud&two=2+2", "%41"]
    request = _request(resource=resources, audience=audiences, scope="read")
    expected = [
        ("grant_type", "client_credentials"),
        ("scope", "read"),
        *(("audience", a) for a in audiences),
        *(("resource", r) for r in resources),
    ]
    assert list(request.form) == expected
    assert _body_pairs(request) == expected


def test_c3_single_resource_and_audience_strings() -> None:
    """C3: a single resource or audience string is sent as one field."""
    request = _request(resource="https://api.example/", audience="api")
    assert request.form == (
        ("grant_type", "client_credentials"),
        ("audience", "api"),
        ("resource", "https://api.example/"),
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("resource", ""),
        ("resource", []),
        ("resource", [""]),
        ("resource", "api.example/relative"),
        ("resource", "https://api.example/x#frag"),
        ("resource", ["https://a.example/", "https://a.example/"]),
        ("resource", [42]),
        ("audience", ""),
        ("audience", []),
        ("audience", ["api", ""]),
        ("audience", ["api", "api"]),
        ("audience", [None]),
        ("audience", 42),
    ],
)
def test_c3_bad_resource_or_audience_refused(name: str, value: object) -> None:
    """C3: empty, repeated, non-string (resource: relative or with fragment) values are refused."""
    with pytest.raises(ConfigurationError) as exc_info:
        _request(**{name: value})
    assert exc_info.type is ConfigurationError


def test_c3_extra_params_appended_once_each() -> None:
    """C3: extra_params are added after the grant's fields, once each, values unchanged."""
    request = _request(extra_params={"tenant": "t-1", "requested_token_use": "on_behalf_of"})
    assert request.form == (
        ("grant_type", "client_credentials"),
        ("tenant", "t-1"),
        ("requested_token_use", "on_behalf_of"),
    )


@pytest.mark.parametrize(
    "name",
    [
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "assertion",
        "resource",
        "audience",
    ],
)
def test_c3_extra_params_cannot_override_reserved_names(name: str) -> None:
    """C3: extra_params may not set a parameter the library owns."""
    with pytest.raises(ConfigurationError) as exc_info:
        _request(extra_params={name: "x"})
    assert exc_info.type is ConfigurationError


@pytest.mark.parametrize(
    "extra",
    [{"tenant": ""}, {"": "x"}, {"tenant": None}, {"tenant": 1}, {1: "x"}, [("tenant", "x")]],
)
def test_c3_extra_params_cannot_be_empty_or_non_string(extra: object) -> None:
    """C3: an empty or non-string extra parameter name or value (or a non-mapping) is refused."""
    with pytest.raises(ConfigurationError) as exc_info:
        _request(extra_params=extra)
    assert exc_info.type is ConfigurationError


def test_c3_full_request_has_no_empty_and_no_duplicate_fields() -> None:
    """C3: with every option set, no field is empty and only resource/audience repeat."""
    request = _request(
        client_auth=ClientSecretPost(),
        scope=["a", "b"],
        resource=["https://r1.example/", "https://r2.example/"],
        audience=["x", "y"],
        extra_params={"tenant": "t"},
    )
    assert all(value for _, value in request.form)
    names = [k for k, _ in request.form if k not in ("resource", "audience")]
    assert len(names) == len(set(names))
    assert [k for k, _ in request.form].count("resource") == 2
    assert [k for k, _ in request.form].count("audience") == 2


def test_token_request_is_the_same_at_any_time_for_static_credentials() -> None:
    """A secret-based request does not depend on ``now``: same URL, headers and form."""
    grant = ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_secret=SECRET, scope="a")
    first, later = grant.token_request(0.0), grant.token_request(NOW)
    assert (first.url, first.headers, first.form) == (later.url, later.headers, later.form)


# --- Secrets stay out of reprs and messages ------------------------------------------------------


@pytest.mark.parametrize("client_auth", [ClientSecretBasic(), ClientSecretPost()])
def test_u10_secret_not_in_repr_or_str(client_auth: ClientAuth) -> None:
    """U10: repr/str of grant, method, bound authenticator and request never show the secret."""
    secret = "Sup3r-S3cret:Value é"
    with pytest.warns(NonVSCHARWarning):  # é: outside VSCHAR (B9)
        grant = ClientCredentials(
            "https://as.example/token?tenant=t",
            client_id=CLIENT_ID,
            client_secret=secret,
            client_auth=client_auth,
            scope="read",
        )
    with pytest.warns(NonVSCHARWarning):
        bound = client_auth.bind(client_id=CLIENT_ID, client_secret=secret, token_url=TOKEN_URL)
    request = grant.token_request(NOW)
    header_value = dict(request.headers).get("Authorization", "<none>")
    forbidden = [secret, quote_plus(secret), header_value.removeprefix("Basic "), "S3cret"]
    for obj in (grant, client_auth, bound, request):
        for text in (repr(obj), str(obj)):
            for needle in forbidden:
                assert needle not in text
    assert CLIENT_ID in repr(grant)
    assert type(client_auth).__name__ in repr(grant)


def test_u10_secret_not_in_configuration_error_messages() -> None:
    """U10: a configuration error raised alongside a secret does not quote the secret."""
    secret = "Sup3r-S3cret-Value"
    with pytest.raises(ConfigurationError) as exc_info:
        ClientCredentials(
            TOKEN_URL,
            client_id=CLIENT_ID,
            client_secret=secret,
            extra_params={"client_secret": secret},
        )
    assert secret not in str(exc_info.value)
    assert secret not in repr(exc_info.value)
