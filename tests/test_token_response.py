"""Token responses, token errors and the Token value object, by calling the parser directly.

SPEC R1-R10 (RFC 6749 §5.1), E1-E5 (§5.2), U10 for tokens. No network: each
test builds a RawResponse and calls ``parse_token_response`` or a grant's
``parse_response``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import pytest

from httpx_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTokenResponseError,
    Token,
    TokenEndpointError,
    TokenError,
    TokenResponseError,
    UnauthorizedClientError,
    UnexpectedTokenResponseError,
    UnsupportedGrantTypeError,
    UnsupportedTokenTypeError,
)
from httpx_tokenauth._token import MAX_EXPIRES_IN, RawResponse, parse_token_response

NOW = 1_700_000_000.25
JSON_TYPE = "application/json"
ACCESS_TOKEN = "2YotnFZFEjr1zCsicMWpAA"


def _raw(
    body: object,
    status: int = 200,
    content_type: str | None = JSON_TYPE,
    headers: Mapping[str, str] | None = None,
) -> RawResponse:
    """A RawResponse; a non-bytes body is JSON-encoded (NaN/Infinity literals allowed)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    all_headers = {} if content_type is None else {"content-type": content_type}
    all_headers.update(headers or {})
    return RawResponse(status, all_headers, data)


_DELETE = object()  # as a field value in _ok(): leave the field out


def _ok(**fields: Any) -> dict[str, Any]:
    """A minimal successful token response body with ``fields`` merged in."""
    body: dict[str, Any] = {"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
    for name, value in fields.items():
        if value is _DELETE:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def _parse(body: object, status: int = 200, **kwargs: Any) -> Token:
    return parse_token_response(_raw(body, status), received_at=NOW, **kwargs)


def _refused(raw: RawResponse) -> TokenError:
    """The TokenError the parser raises for ``raw`` (the test fails if it returns)."""
    with pytest.raises(TokenError) as exc_info:
        parse_token_response(raw, received_at=NOW)
    return exc_info.value


# --- A good response -----------------------------------------------------------------------------


def test_r_minimal_response_gives_exact_token() -> None:
    """A body with access_token, token_type and expires_in gives a Token with exact fields."""
    token = _parse(_ok(expires_in=3600))
    assert token.access_token == ACCESS_TOKEN
    assert token.token_type == "Bearer"
    assert token.expires_at == NOW + 3600
    assert token.received_at == NOW
    assert token.scope is None
    assert dict(token.extra) == {}
    assert token.authorization == f"Bearer {ACCESS_TOKEN}"


def test_grant_parse_response_uses_the_requested_scope_when_server_names_none() -> None:
    """RFC 6749 §5.1: no `scope` in the answer means the requested scope was granted."""
    grant = ClientCredentials(
        "https://as.example/token", client_id="svc", client_secret="s", scope="read write"
    )
    token = grant.parse_response(_raw(_ok(expires_in=60)), received_at=NOW)
    assert token.scope == ("read", "write")
    assert token.expires_at == NOW + 60


def test_granted_scope_from_the_server_wins_over_the_requested_one() -> None:
    """A `scope` string in the answer is split on spaces and replaces the requested scope."""
    token = _parse(_ok(scope="read  admin"), requested_scope=("read", "write"))
    assert token.scope == ("read", "admin")


def test_no_scope_requested_and_none_granted_is_none() -> None:
    """No scope requested and none named in the answer: Token.scope is None."""
    assert _parse(_ok()).scope is None


@pytest.mark.parametrize("scope", [["read"], 1, {"a": "b"}, True])
def test_non_string_scope_is_an_invalid_token_response(scope: object) -> None:
    """RFC 6749 §3.3: a `scope` that is not a string is an InvalidTokenResponseError."""
    exc = _refused(_raw(_ok(scope=scope)))
    assert type(exc) is InvalidTokenResponseError
    assert exc.status_code == 200


# --- R1: required fields -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [_DELETE, None, "", 123, ["tok"], {"v": "tok"}, True])
def test_r1_missing_or_non_string_access_token_refused(value: object) -> None:
    """R1: a missing, empty or non-string access_token is an InvalidTokenResponseError."""
    exc = _refused(_raw(_ok(access_token=value)))
    assert type(exc) is InvalidTokenResponseError
    assert exc.status_code == 200


@pytest.mark.parametrize("value", [_DELETE, None, "", 1, ["Bearer"], False])
def test_r1_missing_or_non_string_token_type_refused(value: object) -> None:
    """R1: a missing, empty or non-string token_type is an InvalidTokenResponseError."""
    exc = _refused(_raw(_ok(token_type=value)))
    assert type(exc) is InvalidTokenResponseError
    assert exc.status_code == 200


@pytest.mark.parametrize("value", ["has space", "tab\there", "new\nline", "tök", "\x7f"])
def test_r1_access_token_that_cannot_go_in_a_header_refused(value: str) -> None:
    """R1/U1: an access_token with spaces, controls or non-ASCII is refused, and not echoed."""
    exc = _refused(_raw(_ok(access_token=value)))
    assert type(exc) is InvalidTokenResponseError
    assert value not in str(exc)


# --- R2, R3: token type --------------------------------------------------------------------------


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_r2_token_type_is_case_insensitive_and_normalised(token_type: str) -> None:
    """R2: any casing of 'bearer' is accepted and the header is always 'Bearer <token>'."""
    token = _parse(_ok(token_type=token_type))
    assert token.token_type == "Bearer"
    assert token.authorization == f"Bearer {ACCESS_TOKEN}"


@pytest.mark.parametrize("token_type", ["mac", "N_A", "DPoP", "Basic", "bearer "])
def test_r3_unknown_token_type_refused_with_its_name(token_type: str) -> None:
    """R3: a non-Bearer token type is an UnsupportedTokenTypeError naming the type."""
    exc = _refused(_raw(_ok(token_type=token_type, expires_in=3600)))
    assert type(exc) is UnsupportedTokenTypeError
    assert isinstance(exc, UnsupportedTokenTypeError)
    assert exc.token_type == token_type
    assert exc.status_code == 200
    assert isinstance(exc, InvalidTokenResponseError)
    assert ACCESS_TOKEN not in str(exc)


# --- R4-R6: expiry -------------------------------------------------------------------------------


@pytest.mark.parametrize("received_at", [0.0, 1.5, NOW])
@pytest.mark.parametrize(("expires_in", "seconds"), [(1, 1.0), (3599, 3599.0), (0.5, 0.5)])
def test_r4_expires_at_counts_from_received_at(
    received_at: float, expires_in: float, seconds: float
) -> None:
    """R4: expires_at is exactly received_at + expires_in, with the injected time of receipt."""
    token = parse_token_response(_raw(_ok(expires_in=expires_in)), received_at=received_at)
    assert token.expires_at == received_at + seconds
    assert token.received_at == received_at
    assert token.expires_in(received_at) == seconds


@pytest.mark.parametrize("body", [_ok(), _ok(expires_in=None)])
def test_r5_no_expires_in_means_no_invented_expiry(body: dict[str, Any]) -> None:
    """R5: without expires_in (absent or null) expires_at is None, not a guessed value."""
    token = _parse(body)
    assert token.expires_at is None
    assert token.expires_in(NOW + 10**9) is None
    assert token.received_at == NOW


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        ("3600", 3600.0),
        (" 3600 ", 3600.0),
        ("3599.5", 3599.5),
        ("1", 1.0),
        (3600, 3600.0),
        (3600.0, 3600.0),
    ],
)
def test_r6_numeric_expires_in_accepted(expires_in: object, seconds: float) -> None:
    """R6: expires_in as a JSON number or a numeric string ("3600", Azure AD v1) is seconds."""
    assert _parse(_ok(expires_in=expires_in)).expires_at == NOW + seconds


@pytest.mark.parametrize(
    "expires_in",
    [
        -1,
        0,
        0.0,
        -0.5,
        "0",
        "-5",
        "+5",
        "abc",
        "",
        " ",
        "1e3",
        "0x10",
        "3600s",
        "٣٦٠٠",  # Arabic-Indic digits: only ASCII digits are numeric here
        "\uff13\uff16\uff10\uff10",  # fullwidth digits
        "1" * 13,
        "NaN",
        "nan",
        "Infinity",
        "inf",
        float("nan"),
        float("inf"),
        float("-inf"),
        pytest.param(-(10**400), id="int-minus-1e400"),
        True,
        False,
        [3600],
        {"seconds": 3600},
    ],
)
def test_r6_bad_expires_in_refused(expires_in: object) -> None:
    """R6: non-positive, NaN, infinite, non-numeric, boolean or structured expires_in is refused."""
    exc = _refused(_raw(_ok(expires_in=expires_in)))
    assert type(exc) is InvalidTokenResponseError
    assert exc.status_code == 200
    assert ACCESS_TOKEN not in str(exc)


@pytest.mark.parametrize(
    "expires_in",
    [MAX_EXPIRES_IN + 1, 10**12, 1e300, "999999999999", pytest.param(10**400, id="int-1e400")],
)
def test_r6_huge_expires_in_clamped_to_max(expires_in: object) -> None:
    """R6: an absurdly large expires_in (even beyond float range) is clamped to MAX_EXPIRES_IN."""
    assert _parse(_ok(expires_in=expires_in)).expires_at == NOW + MAX_EXPIRES_IN


def test_r6_max_expires_in_itself_is_not_clamped() -> None:
    """R6: exactly MAX_EXPIRES_IN (ten years) is kept as sent."""
    assert MAX_EXPIRES_IN == 10 * 365 * 24 * 3600
    assert _parse(_ok(expires_in=MAX_EXPIRES_IN)).expires_at == NOW + MAX_EXPIRES_IN
    assert _parse(_ok(expires_in=MAX_EXPIRES_IN - 1)).expires_at == NOW + MAX_EXPIRES_IN - 1


# --- R8, R10: extra fields, opaque token ---------------------------------------------------------


def test_r8_unknown_fields_kept_in_extra() -> None:
    """R8: every field other than the four known ones is in Token.extra, unchanged and read-only."""
    unknown = {
        "refresh_token": "tGzv3JOkF0XG5Qx2TlKWIA",
        "id_token": "eyJhbGciOiJub25lIn0.e30.",
        "ext_expires_in": 7200,
        "nested": {"a": [1, 2, {"b": None}]},
        "nothing": None,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }
    token = _parse(_ok(expires_in=60, scope="read", **unknown))
    assert dict(token.extra) == unknown
    with pytest.raises(TypeError):
        token.extra["refresh_token"] = "x"  # type: ignore[index]
    text = repr(token) + str(token)
    assert "tGzv3JOkF0XG5Qx2TlKWIA" not in text
    assert "eyJhbGciOiJub25lIn0" not in text


@pytest.mark.parametrize(
    "access_token",
    [
        "x",
        "a" * 10_000,
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzdmMifQ.c2ln-_~+/==",
        "".join(chr(c) for c in range(0x21, 0x7F)),
        "ya29.a0AfH6SMB-_~+/=..==",
    ],
)
def test_r10_access_token_kept_byte_for_byte(access_token: str) -> None:
    """R10: the token is opaque: any length and any visible ASCII, kept and sent verbatim."""
    token = _parse(_ok(access_token=access_token))
    assert token.access_token == access_token
    assert token.authorization == "Bearer " + access_token
    assert token.authorization.encode("ascii") == b"Bearer " + access_token.encode("ascii")


def test_r10_access_token_not_decoded_even_when_it_looks_like_a_jwt() -> None:
    """R10: a JWT-shaped token with a broken payload is accepted as is (never decoded)."""
    access_token = "eyJub3QiOiJqc29u.!!!not-base64!!!.sig"
    assert _parse(_ok(access_token=access_token)).access_token == access_token


# --- E1-E3: OAuth error responses ----------------------------------------------------------------


def test_e1_error_response_carries_all_three_fields_and_status() -> None:
    """E1: a 400 error object becomes one exception with error, description, uri and status."""
    exc = _refused(
        _raw(
            {
                "error": "invalid_request",
                "error_description": "grant_type is missing",
                "error_uri": "https://as.example/errors/invalid_request",
            },
            status=400,
        )
    )
    assert type(exc) is InvalidRequestError
    assert isinstance(exc, TokenEndpointError)
    assert exc.status_code == 400
    assert exc.error == "invalid_request"
    assert exc.error_description == "grant_type is missing"
    assert exc.error_uri == "https://as.example/errors/invalid_request"
    assert "grant_type is missing" in str(exc)


def test_e1_optional_fields_absent_or_wrongly_typed_are_none() -> None:
    """E1: a missing or non-string error_description/error_uri is None; error is still kept."""
    exc = _refused(_raw({"error": "invalid_scope", "error_description": 42}, status=400))
    assert type(exc) is InvalidScopeError
    assert exc.error == "invalid_scope"
    assert exc.error_description is None
    assert exc.error_uri is None
    assert exc.status_code == 400


def test_e2_invalid_client_on_401_with_basic_challenge() -> None:
    """E2: a 401 with WWW-Authenticate: Basic and JSON invalid_client is an InvalidClientError."""
    exc = _refused(
        _raw(
            {"error": "invalid_client", "error_description": "bad secret"},
            status=401,
            headers={"www-authenticate": 'Basic realm="as.example"'},
        )
    )
    assert type(exc) is InvalidClientError
    assert exc.status_code == 401
    assert exc.error == "invalid_client"
    assert exc.error_description == "bad secret"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_request", InvalidRequestError),
        ("invalid_client", InvalidClientError),
        ("invalid_grant", InvalidGrantError),
        ("unauthorized_client", UnauthorizedClientError),
        ("unsupported_grant_type", UnsupportedGrantTypeError),
        ("invalid_scope", InvalidScopeError),
    ],
)
def test_e3_each_known_error_code_has_its_class(code: str, cls: type[TokenEndpointError]) -> None:
    """E3: each of the six RFC 6749 §5.2 codes raises its own TokenEndpointError subclass."""
    exc = _refused(_raw({"error": code}, status=400))
    assert type(exc) is cls
    assert isinstance(exc, TokenEndpointError)
    assert exc.error == code
    assert exc.status_code == 400


def test_e3_the_six_classes_are_distinct() -> None:
    """E3: the six codes map to six different classes, none of them TokenEndpointError itself."""
    codes = [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]
    classes = {type(_refused(_raw({"error": c}, status=400))) for c in codes}
    assert len(classes) == 6
    assert TokenEndpointError not in classes


@pytest.mark.parametrize(
    "code", ["invalid_target", "use_dpop_nonce", "slow_down", "Invalid_Request", "x"]
)
def test_e3_unknown_error_codes_kept_as_is(code: str) -> None:
    """E3: an unknown code is a plain TokenEndpointError whose .error is the code verbatim."""
    exc = _refused(_raw({"error": code, "error_uri": "https://as.example/e"}, status=400))
    assert type(exc) is TokenEndpointError
    assert exc.error == code
    assert exc.error_uri == "https://as.example/e"
    assert exc.status_code == 400


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        (
            {"error": "invalid_grant", "access_token": ACCESS_TOKEN, "token_type": "Bearer"},
            InvalidGrantError,
        ),
        ({"error": "server_error"}, TokenEndpointError),
    ],
)
def test_error_field_in_a_200_is_a_token_endpoint_error(
    body: dict[str, Any], cls: type[TokenEndpointError]
) -> None:
    """A 200 that carries `error` is a token error (status 200 kept), never a token."""
    exc = _refused(_raw(body, status=200))
    assert type(exc) is cls
    assert exc.status_code == 200
    assert ACCESS_TOKEN not in str(exc)


@pytest.mark.parametrize("status", [200, 400])
@pytest.mark.parametrize("error", ["", None, 42, ["invalid_grant"]])
def test_error_field_that_is_not_a_non_empty_string(status: int, error: object) -> None:
    """An `error` that is empty or not a string is an UnexpectedTokenResponseError."""
    exc = _refused(_raw({"error": error}, status=status))
    assert type(exc) is UnexpectedTokenResponseError
    assert exc.status_code == status
    assert exc.content_type == JSON_TYPE


# --- E5: not an OAuth response at all ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (502, "text/html", b"<html><body>502 Bad Gateway secret-page</body></html>"),
        (200, JSON_TYPE, b""),
        (500, None, b""),
        (429, "text/plain", b"Too Many Requests secret-page"),
        (503, JSON_TYPE, b'{"error": "temporarily_unavailable"'),
        (200, "text/html", b"<html>login secret-page</html>"),
        (302, "text/html", b""),
        (401, "text/html", b"Unauthorized secret-page"),
        (400, JSON_TYPE, b"[1, 2]"),
        (500, JSON_TYPE, b'"oops"'),
        (404, JSON_TYPE, b"null"),
        (200, JSON_TYPE, b"\xff\xfe\xfa"),
        (200, JSON_TYPE, b"[" * 100_000 + b"]" * 100_000),
        (400, JSON_TYPE, b'{"detail": "no error field"}'),
    ],
)
def test_e5_non_oauth_body_is_a_typed_error_with_status(
    status: int, content_type: str | None, body: bytes
) -> None:
    """E5: HTML, text, empty, broken or unrelated bodies are UnexpectedTokenResponseError."""
    exc = _refused(_raw(body, status=status, content_type=content_type))
    assert type(exc) is UnexpectedTokenResponseError
    assert exc.status_code == status
    assert exc.content_type == content_type
    assert not isinstance(exc, (ValueError, KeyError, TypeError))
    assert "secret-page" not in str(exc)


@pytest.mark.parametrize("body", [b"[]", b'["access_token"]', b'"tok"', b"3600", b"null", b"true"])
def test_json_that_is_not_an_object_in_a_200_is_a_token_error(body: bytes) -> None:
    """RFC 6749 §5.1: a 200 with a JSON array/string/number/null/bool is an invalid response."""
    exc = _refused(_raw(body))
    assert type(exc) is InvalidTokenResponseError
    assert isinstance(exc, TokenResponseError)
    assert exc.status_code == 200


# --- The Token value object ----------------------------------------------------------------------


def test_token_defaults() -> None:
    """Token("...") alone is a Bearer token with no expiry, no scope and empty extra."""
    token = Token("abc")
    assert token.access_token == "abc"
    assert token.token_type == "Bearer"
    assert token.expires_at is None
    assert token.received_at is None
    assert token.scope is None
    assert dict(token.extra) == {}
    assert token.expires_in(NOW) is None


def test_token_normalises_type_and_scope() -> None:
    """Token stores any casing of 'bearer' as 'Bearer' and a scope list as a tuple."""
    token = Token("abc", token_type="bEARER", scope=["a", "b"], expires_at=100, received_at=40)  # type: ignore[arg-type]
    assert token.token_type == "Bearer"
    assert token.scope == ("a", "b")
    assert token.expires_in(70.0) == 30


@pytest.mark.parametrize(
    "kwargs",
    [
        {"access_token": ""},
        {"access_token": "a b"},
        {"access_token": "tök"},
        {"access_token": "tok\n"},
        {"access_token": None},
        {"access_token": b"tok"},
        {"access_token": 123},
        {"token_type": "mac"},
        {"token_type": ""},
        {"token_type": None},
        {"expires_at": math.nan},
        {"expires_at": math.inf},
        {"expires_at": "1"},
        {"expires_at": True},
        pytest.param({"expires_at": 10**400}, id="expires_at-int-1e400"),
        {"received_at": -math.inf},
        {"received_at": "now"},
        {"scope": "a b"},
        {"scope": [1]},
        {"extra": None},
        {"extra": [("a", 1)]},
    ],
)
def test_token_invalid_construction_raises_configuration_error(kwargs: dict[str, Any]) -> None:
    """Token refuses a bad access_token, type, time, scope or extra with ConfigurationError."""
    args = {"access_token": "abc", **kwargs}
    with pytest.raises(ConfigurationError) as exc_info:
        Token(**args)
    assert exc_info.type is ConfigurationError


def test_u10_access_token_not_in_token_repr_or_str() -> None:
    """U10: repr() and str() of a Token do not contain the access token."""
    token = _parse(_ok(expires_in=60, scope="read"))
    for text in (repr(token), str(token)):
        assert ACCESS_TOKEN not in text
        assert "Token(" in text


def test_token_is_immutable_and_compared_by_identity() -> None:
    """A Token cannot be changed, and two Tokens with the same value are distinct objects."""
    token = Token("abc")
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.access_token = "other"  # type: ignore[misc]
    assert token == token  # noqa: PLR0124
    assert token != Token("abc")
