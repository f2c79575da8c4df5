"""Fuzzing: whatever the token endpoint or the API sends, the outcome is a Token or a TokenError.

Runs thousands of examples in CI; ``HYPOTHESIS_PROFILE=deep ./scripts/test -k fuzz``
runs fifty thousand per test.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from httpx_tokenauth import ClientCredentials, RetryPolicy, Token, TokenAuth, TokenError
from httpx_tokenauth._token import RawResponse, parse_token_response

from conftest import FUZZ_EXAMPLES, TOKEN_URL

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = (
    JSON
    | st.sampled_from(["Bearer", "bearer", "mac", "", "3600", "-1", "NaN", "1e400", " 60 "])
    | st.integers(min_value=-(10**30), max_value=10**30)
)
TOKEN_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "access_token": FIELD_VALUES,
        "token_type": FIELD_VALUES,
        "expires_in": FIELD_VALUES,
        "scope": FIELD_VALUES,
        "error": FIELD_VALUES,
        "error_description": FIELD_VALUES,
        "error_uri": FIELD_VALUES,
        "refresh_token": FIELD_VALUES,
    },
)
BODIES = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | TOKEN_OBJECTS.map(lambda v: json.dumps(v).encode())
    | TOKEN_OBJECTS.map(lambda v: json.dumps(v).encode()[: len(json.dumps(v)) // 2])
)
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(["application/json", "text/html", ""]) | HEADER_TEXT,
        "retry-after": st.sampled_from(["5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"])
        | HEADER_TEXT,
        "www-authenticate": HEADER_TEXT,
    },
)
STATUSES = st.sampled_from(
    [200, 201, 204, 301, 302, 400, 401, 403, 429, 500, 502, 503]
) | st.integers(100, 599)


def raw(pairs: Any) -> list[tuple[bytes, bytes]]:
    """Headers as bytes on the wire (latin-1), as a server would send them."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


@given(STATUSES, HEADERS, BODIES)
def test_fuzz_token_response_gives_token_or_token_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """parse_token_response on any status, headers, body: a Token or a TokenError, nothing else."""
    try:
        token = parse_token_response(RawResponse(status, headers, body), received_at=1000.0)
    except TokenError:
        return
    assert isinstance(token, Token)
    assert 200 <= status < 300
    assert token.authorization.startswith("Bearer ")
    assert token.expires_at is None or token.expires_at > 1000.0


@settings(max_examples=max(50, FUZZ_EXAMPLES // 10))
@given(STATUSES, HEADERS, BODIES)
def test_fuzz_token_endpoint_through_token_auth(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """Through a real httpx.Client: a response, or a TokenError; never a request without a token."""
    api_seen: list[str | None] = []

    def api(request: httpx.Request) -> httpx.Response:
        api_seen.append(request.headers.get("authorization"))
        return httpx.Response(200)

    token_endpoint = httpx.MockTransport(
        lambda request: httpx.Response(status, headers=raw(headers.items()), content=body)
    )
    auth = TokenAuth(
        ClientCredentials(TOKEN_URL, client_id="c", client_secret="s"),
        token_client=httpx.Client(transport=token_endpoint),
        retry=RetryPolicy.off(),
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        try:
            response = client.get("https://api.example/")
        except TokenError:
            assert api_seen == []
            return
    assert response.status_code == 200
    assert len(api_seen) == 1
    assert api_seen[0] is not None
    assert api_seen[0].startswith("Bearer ")


@settings(max_examples=max(50, FUZZ_EXAMPLES // 10))
@given(st.sampled_from([400, 401, 403]), st.lists(HEADER_TEXT, max_size=3))
def test_fuzz_challenges_through_token_auth(status: int, challenges: list[str]) -> None:
    """Any WWW-Authenticate values on a 400/401/403: handed back, at most one replay, no crash."""
    tokens = iter(range(1, 10))
    api_seen: list[Any] = []

    def token(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"access_token": f"t{next(tokens)}", "token_type": "Bearer"}
        )

    def api(request: httpx.Request) -> httpx.Response:
        api_seen.append(request.headers["authorization"])
        return httpx.Response(status, headers=raw(("WWW-Authenticate", c) for c in challenges))

    auth = TokenAuth(
        ClientCredentials(TOKEN_URL, client_id="c", client_secret="s"),
        token_client=httpx.Client(transport=httpx.MockTransport(token)),
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        response = client.get("https://api.example/")
    assert response.status_code == status
    assert api_seen in (["Bearer t1"], ["Bearer t1", "Bearer t2"])
    if status != 401:
        assert api_seen == ["Bearer t1"]
