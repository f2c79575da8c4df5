"""WWW-Authenticate parsing and the 401 decision, by calling the core directly.

SPEC U5 (RFC 9110 §11.6.1 grammar), U6-U8 (RFC 6750 §3.1). The parser must
never raise, whatever the server sends: a property test checks that.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from httpx_tokenauth import BearerChallenge, bearer_challenge
from httpx_tokenauth._challenge import Challenge, Decision, decide_after_401, parse_www_authenticate

from conftest import FUZZ_EXAMPLES

_TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

Parsed = list[tuple[str, dict[str, str], str | None]]


def _parsed(values: list[str]) -> Parsed:
    """The parse result as plain (scheme, params, token68) tuples."""
    return [(c.scheme, dict(c.params), c.token68) for c in parse_www_authenticate(values)]


# --- U5: the grammar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["Bearer"], [("Bearer", {}, None)], id="bare-scheme"),
        pytest.param(
            ['bearer realm="example"'],
            [("bearer", {"realm": "example"}, None)],
            id="scheme-as-sent",
        ),
        pytest.param(
            ['BEARER REALM="x", Error=invalid_token'],
            [("BEARER", {"realm": "x", "error": "invalid_token"}, None)],
            id="param-names-lowercased-token-values",
        ),
        pytest.param(
            [
                'Bearer realm="example", error="invalid_token", '
                'error_description="The access token expired"'
            ],
            [
                (
                    "Bearer",
                    {
                        "realm": "example",
                        "error": "invalid_token",
                        "error_description": "The access token expired",
                    },
                    None,
                )
            ],
            id="rfc6750-example",
        ),
        pytest.param(
            ['Basic realm="a", Bearer error="invalid_token"'],
            [("Basic", {"realm": "a"}, None), ("Bearer", {"error": "invalid_token"}, None)],
            id="two-challenges-one-header",
        ),
        pytest.param(
            ['Basic realm="a"', 'Bearer error="invalid_token"'],
            [("Basic", {"realm": "a"}, None), ("Bearer", {"error": "invalid_token"}, None)],
            id="two-headers",
        ),
        pytest.param(
            ['Bearer realm="a,b", scope="x, y", error="invalid_token"'],
            [("Bearer", {"realm": "a,b", "scope": "x, y", "error": "invalid_token"}, None)],
            id="commas-inside-quotes",
        ),
        pytest.param(
            [r'Bearer error_description="say \"hi\" and \\o/", realm="r"'],
            [("Bearer", {"error_description": 'say "hi" and \\o/', "realm": "r"}, None)],
            id="escaped-quote-and-backslash",
        ),
        pytest.param(
            [r'Bearer realm="ends with backslash \\"'],
            [("Bearer", {"realm": "ends with backslash \\"}, None)],
            id="escaped-backslash-before-closing-quote",
        ),
        pytest.param(
            [r'Bearer realm="\a\b\c"'],
            [("Bearer", {"realm": "abc"}, None)],
            id="quoted-pair-of-ordinary-chars",
        ),
        pytest.param(
            ['Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'],
            [
                ("Newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}, None),
                ("Basic", {"realm": "simple"}, None),
            ],
            id="rfc9110-example",
        ),
        pytest.param(
            ['Negotiate a87421000492aa874209af8bc028==, Bearer error="invalid_token"'],
            [
                ("Negotiate", {}, "a87421000492aa874209af8bc028=="),
                ("Bearer", {"error": "invalid_token"}, None),
            ],
            id="token68-then-challenge",
        ),
        pytest.param(
            ["Basic YWxhZGRpbjpvcGVuc2VzYW1l"],
            [("Basic", {}, "YWxhZGRpbjpvcGVuc2VzYW1l")],
            id="token68-alone",
        ),
        pytest.param(
            ['Bearer error = "invalid_token" ,\trealm=api'],
            [("Bearer", {"error": "invalid_token", "realm": "api"}, None)],
            id="whitespace-around-equals-and-commas",
        ),
        pytest.param(
            [', , Bearer realm="a" ,, ', ","],
            [("Bearer", {"realm": "a"}, None)],
            id="empty-list-elements",
        ),
        pytest.param(
            ['Bearer realm=""'], [("Bearer", {"realm": ""}, None)], id="empty-quoted-value"
        ),
        pytest.param(
            [
                'Bearer foo="bar", error="invalid_token", '
                'resource_metadata="https://rs.example/.well-known/oauth-protected-resource"'
            ],
            [
                (
                    "Bearer",
                    {
                        "foo": "bar",
                        "error": "invalid_token",
                        "resource_metadata": (
                            "https://rs.example/.well-known/oauth-protected-resource"
                        ),
                    },
                    None,
                )
            ],
            id="unknown-params-kept",
        ),
        pytest.param(
            ['Bearer error="invalid_token", error="insufficient_scope"'],
            [("Bearer", {"error": "invalid_token"}, None)],
            id="repeated-param-first-wins",
        ),
        pytest.param(['Bearer realm="é ü"'], [("Bearer", {"realm": "é ü"}, None)], id="non-ascii"),
        pytest.param([], [], id="no-header"),
        pytest.param([""], [], id="empty-header"),
    ],
)
def test_u5_parse_www_authenticate(values: list[str], expected: Parsed) -> None:
    """U5: the RFC 9110 grammar: case, quoting, escapes, commas, token68, several challenges."""
    assert _parsed(values) == expected


def test_u5_parse_accepts_any_iterable() -> None:
    """U5: header values may come from any iterable, such as a generator."""

    def values() -> Iterator[str]:
        yield "Basic realm=a"
        yield "Bearer"

    parsed = parse_www_authenticate(values())
    assert [(c.scheme, dict(c.params)) for c in parsed] == [
        ("Basic", {"realm": "a"}),
        ("Bearer", {}),
    ]
    assert decide_after_401(values()).renew is True


def test_u5_challenge_params_are_read_only() -> None:
    """U5: a parsed challenge cannot be altered through its params mapping."""
    (challenge,) = parse_www_authenticate(['Bearer error="invalid_token"'])
    with pytest.raises(TypeError):
        challenge.params["error"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "value",
    [
        '"',
        "\\",
        "=",
        "===",
        ",",
        'Bearer "',
        'Bearer error="unterminated',
        "Bearer error=",
        "Bearer error=,",
        "Bearer ,,,, =",
        'Bearer realm="a\\',
        "\x00\x01\x7f",
        "é ü ß",
        "=Bearer",
        'error="invalid_token"',
        '"Bearer"',
        "Bearer \\\n",
        "Bearer a=b=c",
        'Bearer realm="a" garbage "b" , , Basic',
        " " * 10_000,
        "Bearer " + "\\" * 10_000,
        '"' * 10_001,
        "a=" * 5_000,
        'Bearer x="' + "a" * 100_000,
        "Bearer " + "a" * 100_000 + "=" * 100_000 + " b",
        "x, " * 10_000,
    ],
)
def test_u5_garbage_never_raises(value: str) -> None:
    """U5: malformed or huge headers give a (possibly empty) list, never an exception."""
    challenges = parse_www_authenticate([value])
    assert all(isinstance(c, Challenge) for c in challenges)
    assert isinstance(decide_after_401([value]), Decision)


def test_u5_parameters_without_a_scheme_are_not_a_challenge() -> None:
    """U5: a header of bare parameters names no scheme, so it holds no challenge."""
    assert _parsed(['error="invalid_token", realm="x"']) == []


def test_u5_unterminated_quote_runs_to_the_end() -> None:
    """U5: an unterminated quoted-string is read to the end of the header, not dropped."""
    assert _parsed(['Bearer error="invalid_token']) == [
        ("Bearer", {"error": "invalid_token"}, None)
    ]


# --- U5: property tests --------------------------------------------------------------------------

_SPECIAL = st.sampled_from(list('Bearer Basic error="invalid_token"\\,= \t;"\x00é'))
_NASTY_TEXT = st.text(alphabet=_SPECIAL, max_size=120) | st.text(max_size=120)


@settings(max_examples=FUZZ_EXAMPLES // 4)
@given(st.lists(_NASTY_TEXT, max_size=4))
def test_u5_property_parse_never_raises_and_decide_always_decides(values: list[str]) -> None:
    """U5: for any header values, parsing gives well-formed challenges and decide a Decision."""
    challenges = parse_www_authenticate(values)
    assert isinstance(challenges, list)
    for challenge in challenges:
        assert isinstance(challenge, Challenge)
        assert _TOKEN_RE.fullmatch(challenge.scheme)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in challenge.params.items())
        assert all(k == k.lower() for k in challenge.params)
        assert challenge.token68 is None or not challenge.params
    decision = decide_after_401(values)
    assert isinstance(decision, Decision)
    assert isinstance(decision.renew, bool)
    assert isinstance(decision.reason, str)
    assert decision.reason


_token = st.text(alphabet=_TCHAR, min_size=1, max_size=12)
_token68 = st.builds(
    lambda body, pad: body + "=" * pad,
    st.text(alphabet="ABCXYZabcxyz0189-._~+/", min_size=1, max_size=20),
    st.integers(0, 2),
)
_qdtext = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    | st.sampled_from(["\t", "é", "\xa0", "\xff"]),
    max_size=20,
)


@st.composite
def _challenges(draw: st.DrawFn) -> tuple[str, dict[str, str], str | None, str]:
    """A random well-formed challenge and its serialisation."""
    scheme = draw(_token)
    if draw(st.booleans()):
        token68 = draw(_token68)
        return scheme, {}, token68, f"{scheme} {token68}"
    names = draw(st.lists(_token, max_size=4, unique_by=str.lower))
    params: dict[str, str] = {}
    parts = []
    for name in names:
        value = draw(_qdtext)
        params[name.lower()] = value
        if _TOKEN_RE.fullmatch(value) and draw(st.booleans()):
            wire = value
        else:
            wire = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        eq = draw(st.sampled_from(["=", " = ", "\t=\t"]))
        parts.append(f"{name}{eq}{wire}")
    sep = draw(st.sampled_from([", ", ",", " , ", ",\t"]))
    text = scheme if not parts else f"{scheme} {sep.join(parts)}"
    return scheme, params, None, text


@settings(max_examples=FUZZ_EXAMPLES // 4)
@given(st.lists(_challenges(), max_size=4), st.data())
def test_u5_property_well_formed_challenges_round_trip(
    challenges: list[tuple[str, dict[str, str], str | None, str]], data: st.DataObject
) -> None:
    """U5: any RFC 9110 challenge list, in one header or split across several, parses back."""
    texts = [text for *_, text in challenges]
    headers: list[str] = []
    for i, text in enumerate(texts):
        if headers and data.draw(st.booleans(), label=f"same header {i}"):
            headers[-1] += data.draw(st.sampled_from([", ", ",", " ,  "])) + text
        else:
            headers.append(text)
    expected = [(scheme, params, token68) for scheme, params, token68, _ in challenges]
    assert _parsed(headers) == expected


# --- bearer_challenge (U7: the scope is available to the caller) ---------------------------------


def _response(status: int, *challenges: str) -> httpx.Response:
    return httpx.Response(status, headers=[("WWW-Authenticate", c) for c in challenges])


@pytest.mark.parametrize("status", [401, 403])
def test_u7_insufficient_scope_exposes_required_scope(status: int) -> None:
    """U7: bearer_challenge gives the error and the required scope, split on spaces."""
    response = _response(
        status,
        'Bearer realm="api", error="insufficient_scope", scope="read:things write:things"',
    )
    assert bearer_challenge(response) == BearerChallenge(
        error="insufficient_scope",
        error_description=None,
        error_uri=None,
        realm="api",
        scope=("read:things", "write:things"),
        params={
            "realm": "api",
            "error": "insufficient_scope",
            "scope": "read:things write:things",
        },
    )


def test_u5_bearer_challenge_found_among_several_headers() -> None:
    """U5: the Bearer challenge is found after a Basic one in a separate header."""
    response = _response(
        401,
        'Basic realm="a"',
        'Bearer error="invalid_token", error_description="expired", error_uri="https://as/e"',
    )
    challenge = bearer_challenge(response)
    assert challenge is not None
    assert (challenge.error, challenge.error_description, challenge.error_uri) == (
        "invalid_token",
        "expired",
        "https://as/e",
    )
    assert challenge.realm is None
    assert challenge.scope is None


def test_u5_bearer_challenge_is_case_insensitive_and_takes_the_first() -> None:
    """U5: 'BEARER' counts as Bearer, and the first Bearer challenge is the one returned."""
    response = _response(
        401, 'BEARER ERROR="insufficient_scope", SCOPE="admin"', 'Bearer error="invalid_token"'
    )
    challenge = bearer_challenge(response)
    assert challenge is not None
    assert challenge.error == "insufficient_scope"
    assert challenge.scope == ("admin",)


@pytest.mark.parametrize(
    "challenges", [(), ('Basic realm="as"',), ("Negotiate abc==", 'DPoP algs="ES256"')]
)
def test_bearer_challenge_none_without_a_bearer_challenge(challenges: tuple[str, ...]) -> None:
    """No Bearer challenge (no header, Basic only, other schemes): bearer_challenge is None."""
    assert bearer_challenge(_response(401, *challenges)) is None


# --- decide_after_401 (U6-U8) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "renew"),
    [
        pytest.param([], True, id="U6-no-challenge"),
        pytest.param([""], True, id="U6-empty-header"),
        pytest.param(["Bearer"], True, id="U6-bare-bearer"),
        pytest.param(['Bearer realm="api"'], True, id="U6-bearer-no-error"),
        pytest.param(['Bearer error="invalid_token"'], True, id="U6-invalid-token"),
        pytest.param(
            ['bearer ERROR="invalid_token", error_description="expired"'],
            True,
            id="U6-case-insensitive",
        ),
        pytest.param(['Basic realm="a", Bearer error="invalid_token"'], True, id="U6-after-basic"),
        pytest.param(['Basic realm="a"', "Bearer"], True, id="U6-second-header"),
        pytest.param(
            ['Bearer error="insufficient_scope", scope="admin"'], False, id="U7-insufficient-scope"
        ),
        pytest.param(
            ['Basic realm="a", Bearer error="insufficient_scope"'], False, id="U7-after-basic"
        ),
        pytest.param(['Bearer error="invalid_request"'], False, id="U8-invalid-request"),
        pytest.param(['Bearer error="some_future_code"'], False, id="unknown-error"),
        pytest.param(['Basic realm="as"'], False, id="basic-only"),
        pytest.param(["Negotiate", 'Basic realm="x"'], False, id="no-bearer-offered"),
        pytest.param(['DPoP error="invalid_token"'], False, id="dpop-only"),
    ],
)
def test_u6_u8_decide_after_401(values: list[str], renew: bool) -> None:
    """U6-U8: renew only on no challenge, a bare Bearer challenge or invalid_token."""
    decision = decide_after_401(values)
    assert isinstance(decision, Decision)
    assert decision.renew is renew
    assert decision.reason


def test_decision_reason_bounded_for_huge_server_values() -> None:
    """A server's long error code or scheme list does not blow up the decision's reason."""
    huge_error = decide_after_401([f'Bearer error="{"e" * 10_000}"'])
    huge_scheme = decide_after_401([("X" * 10_000 + ", ") * 50])
    assert huge_error.renew is False
    assert huge_scheme.renew is False
    assert len(huge_error.reason) < 200
    assert len(huge_scheme.reason) < 2_000
