"""TokenExchangeGrant (RFC 8693), sans-I/O: the request fields, the response, bad input.

SPEC A2 (the request carries subject_token/subject_token_type and the actor
pair; issued_token_type is kept on the Token), A5 (N_A only for a token that is
not an access token), A6 (bad input), A7 (cache identity), and the §2.2.2 error
invalid_target typed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from httpx_tokenauth import (
    AssertionSourceError,
    ClientAssertion,
    ConfigurationError,
    FileAssertion,
    InvalidRequestError,
    InvalidTargetError,
    InvalidTokenResponseError,
    TokenEndpointError,
    TokenExchangeGrant,
    UnsupportedTokenTypeError,
)
from httpx_tokenauth._token import RawResponse
from httpx_tokenauth.testing import LocalIssuer

TOKEN_URL = "https://sts.example/v1/token"
NOW = 1_700_000_000.0
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
TYPES = "urn:ietf:params:oauth:token-type:"
ISSUER = LocalIssuer("https://token.actions.githubusercontent.com", clock=lambda: NOW)
SUBJECT_TOKEN = ISSUER.mint("repo:acme/billing:ref:refs/heads/main", TOKEN_URL)
ACTOR_TOKEN = ISSUER.mint("deploy-bot", TOKEN_URL)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"subject": tmp_path / "subject.jwt", "actor": tmp_path / "actor.jwt"}
    paths["subject"].write_text(SUBJECT_TOKEN)
    paths["actor"].write_text(ACTOR_TOKEN + "\n")
    return paths


def exchange(files: dict[str, Path], **kwargs: Any) -> TokenExchangeGrant:
    kwargs.setdefault("subject_token", FileAssertion(files["subject"]))
    kwargs.setdefault("subject_token_type", "jwt")
    return TokenExchangeGrant(TOKEN_URL, **kwargs)


def fields(grant: TokenExchangeGrant) -> list[tuple[str, str]]:
    return list(grant.token_request(NOW).form)


def answer(body: dict[str, Any], status: int = 200) -> RawResponse:
    return RawResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


# -- A2: the request --------------------------------------------------------------------


def test_a2_the_request_carries_grant_type_subject_token_and_its_type(
    files: dict[str, Path],
) -> None:
    """A2: grant_type token-exchange, the subject token read now, its type as a URI; nothing
    else, no client_id, no Authorization header."""
    request = exchange(files).token_request(NOW)
    assert list(request.form) == [
        ("grant_type", GRANT_TYPE),
        ("subject_token", SUBJECT_TOKEN),
        ("subject_token_type", TYPES + "jwt"),
    ]
    assert "Authorization" not in dict(request.headers)
    assert request.url == TOKEN_URL


def test_a2_every_optional_field_is_sent_as_given(files: dict[str, Path]) -> None:
    """A2: the actor pair, requested_token_type, several audiences and resources, scope."""
    grant = exchange(
        files,
        actor_token=FileAssertion(files["actor"]),
        actor_token_type="urn:ietf:params:oauth:token-type:jwt",
        requested_token_type="access_token",
        audience=["https://billing.example", "https://ledger.example"],
        resource="https://api.example/invoices",
        scope="invoices:read invoices:write",
    )
    assert fields(grant) == [
        ("grant_type", GRANT_TYPE),
        ("subject_token", SUBJECT_TOKEN),
        ("subject_token_type", TYPES + "jwt"),
        ("actor_token", ACTOR_TOKEN),
        ("actor_token_type", TYPES + "jwt"),
        ("requested_token_type", TYPES + "access_token"),
        ("audience", "https://billing.example"),
        ("audience", "https://ledger.example"),
        ("resource", "https://api.example/invoices"),
        ("scope", "invoices:read invoices:write"),
    ]


def test_a2_short_names_and_custom_uris_for_token_types(files: dict[str, Path]) -> None:
    """A2: RFC 8693 §3's short names become their URIs; another URI is sent verbatim."""
    for short in ("access_token", "refresh_token", "id_token", "saml1", "saml2", "jwt"):
        assert exchange(files, subject_token_type=short).subject_token_type == TYPES + short
    aws = "urn:ietf:params:aws:token-type:aws4_request"
    assert dict(fields(exchange(files, subject_token_type=aws)))["subject_token_type"] == aws


def test_a2_client_authentication_is_optional_and_each_kind_works(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """A2: none by default; client_id alone is a form field; a secret is Basic; a
    ClientAssertion adds its own platform token."""
    public = exchange(files, client_id="billing")
    assert ("client_id", "billing") in fields(public)
    secret = exchange(files, client_id="billing", client_secret="s" * 32)
    assert dict(secret.token_request(NOW).headers)["Authorization"].startswith("Basic ")
    client_token = tmp_path / "client.jwt"
    client_token.write_text(ISSUER.mint("billing", TOKEN_URL))
    federated = exchange(
        files, client_id="billing", client_auth=ClientAssertion(FileAssertion(client_token))
    )
    sent = dict(fields(federated))
    assert sent["client_assertion"] == client_token.read_text()
    assert sent["subject_token"] == SUBJECT_TOKEN
    assert [n.name for n in federated.assertion_sources()] == ["subject_token", "client_assertion"]


def test_a2_sources_are_told_the_token_url_and_a_function_serves(files: dict[str, Path]) -> None:
    """A2: a function given the audience (the token URL) may supply the subject token."""
    asked: list[str] = []

    def subject(audience: str) -> str:
        asked.append(audience)
        return SUBJECT_TOKEN

    assert dict(fields(exchange(files, subject_token=subject)))["subject_token"] == SUBJECT_TOKEN
    assert asked == [TOKEN_URL]


def test_a2_an_opaque_subject_token_of_a_non_jwt_type_is_sent_as_it_is(tmp_path: Path) -> None:
    """A2: an access token or SAML assertion need not be a JWT: no expiry check applies."""
    opaque = tmp_path / "opaque"
    opaque.write_text("2YotnFZFEjr1zCsicMWpAA")
    grant = TokenExchangeGrant(
        TOKEN_URL, subject_token=FileAssertion(opaque), subject_token_type="access_token"
    )
    assert dict(fields(grant))["subject_token"] == "2YotnFZFEjr1zCsicMWpAA"
    with pytest.raises(AssertionSourceError, match="does not hold a JWT"):
        TokenExchangeGrant(TOKEN_URL, subject_token=FileAssertion(opaque), subject_token_type="jwt")


# -- A6: bad input, at construction ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subject_token_type": "bogus"}, "is not a token type"),
        ({"subject_token_type": ""}, "must be a token type"),
        ({"subject_token_type": "urn:x y"}, "is not a token type"),
        ({"requested_token_type": 7}, "must be a token type"),
        ({"actor_token_type": "jwt"}, "go together"),
        ({"audience": []}, "audience is an empty list"),
        ({"resource": "relative/path"}, "absolute URI"),
        ({"extra_params": {"subject_token": "x"}}, "may not set 'subject_token'"),
        ({"extra_params": {"requested_token_type": "x"}}, "may not set"),
        ({"client_secret": "s" * 32}, "needs the client's id"),
        ({"subject_token": "eyJhbGciOi.inline.token"}, "not a path or the token itself"),
    ],
)
def test_a6_bad_arguments_are_configuration_errors_at_construction(
    files: dict[str, Path], kwargs: dict[str, Any], message: str
) -> None:
    """A6: every argument is checked when the grant is made; no token value is echoed."""
    with pytest.raises(ConfigurationError) as info:
        exchange(files, **kwargs)
    assert message in str(info.value)
    assert "inline.token" not in str(info.value)


def test_a6_an_actor_token_without_its_type_is_refused(files: dict[str, Path]) -> None:
    """A6: the actor pair goes together (RFC 8693 §2.1)."""
    with pytest.raises(ConfigurationError, match="go together"):
        exchange(files, actor_token=FileAssertion(files["actor"]))


# -- A2, A5: the response ------------------------------------------------------------------


def test_a2_issued_token_type_is_kept_on_the_token(files: dict[str, Path]) -> None:
    """A2: issued_token_type moves from the answer onto Token; other fields stay in extra."""
    token = exchange(files).parse_response(
        answer(
            {
                "access_token": "exchanged",
                "issued_token_type": TYPES + "access_token",
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": "r",
            }
        ),
        received_at=NOW,
    )
    assert token.issued_token_type == TYPES + "access_token"
    assert token.authorization == "Bearer exchanged"
    assert token.expires_at == NOW + 3600
    assert dict(token.extra) == {"refresh_token": "r"}


def test_a5_n_a_for_a_token_that_is_not_an_access_token_is_accepted(
    files: dict[str, Path],
) -> None:
    """A5: N_A with issued_token_type id_token gives a Token that is never a Bearer header."""
    token = exchange(files, requested_token_type="id_token").parse_response(
        answer(
            {
                "access_token": "an-id-token",
                "issued_token_type": TYPES + "id_token",
                "token_type": "N_A",
            }
        ),
        received_at=NOW,
    )
    assert (token.token_type, token.issued_token_type) == ("N_A", TYPES + "id_token")
    with pytest.raises(ConfigurationError, match="not an access token"):
        _ = token.authorization


@pytest.mark.parametrize("issued", [TYPES + "access_token", None])
def test_a5_n_a_for_an_access_token_or_an_unnamed_type_is_a_clear_error(
    files: dict[str, Path], issued: str | None
) -> None:
    """A5: N_A contradicts an access token, and means nothing without a type: refused."""
    body = {"access_token": "x", "token_type": "N_A"}
    if issued:
        body["issued_token_type"] = issued
    with pytest.raises(UnsupportedTokenTypeError) as info:
        exchange(files).parse_response(answer(body), received_at=NOW)
    assert "cannot be sent as 'Authorization: Bearer'" in str(info.value)
    assert info.value.token_type == "N_A"


@pytest.mark.parametrize("issued", [3, "", "two words"])
def test_a2_an_issued_token_type_that_is_not_a_uri_is_an_invalid_response(
    files: dict[str, Path], issued: object
) -> None:
    """A2: issued_token_type must be a URI string (RFC 8693 §2.2.1)."""
    body = {"access_token": "x", "token_type": "Bearer", "issued_token_type": issued}
    with pytest.raises(InvalidTokenResponseError, match="issued_token_type"):
        exchange(files).parse_response(answer(body), received_at=NOW)


def test_a2_invalid_target_is_typed_and_names_what_was_asked_for(files: dict[str, Path]) -> None:
    """RFC 8693 §2.2.2: invalid_target is an InvalidTargetError with the server's fields."""
    grant = exchange(files, audience="https://nowhere.example")
    body = {"error": "invalid_target", "error_description": "unknown audience"}
    with pytest.raises(InvalidTargetError) as info:
        grant.parse_response(answer(body, status=400), received_at=NOW)
    error = info.value
    assert isinstance(error, TokenEndpointError)
    assert (error.error, error.error_description, error.status_code) == (
        "invalid_target",
        "unknown audience",
        400,
    )
    assert "https://nowhere.example" in str(error)


def test_a2_other_errors_keep_their_classes(files: dict[str, Path]) -> None:
    """A2: invalid_request (RFC 8693's code for a bad subject token) stays InvalidRequestError."""
    with pytest.raises(InvalidRequestError):
        exchange(files).parse_response(answer({"error": "invalid_request"}, 400), received_at=NOW)


# -- A7: identity, repr ------------------------------------------------------------------------


def test_a7_identity_names_sources_and_types_never_tokens(files: dict[str, Path]) -> None:
    """A7: subject and actor files by path, their types and the form; no token in it."""
    grant = exchange(files, actor_token=FileAssertion(files["actor"]), actor_token_type="jwt")
    identity = grant.cache_identity()
    assert str(files["subject"]) in identity
    assert str(files["actor"]) in identity
    assert f"subject_token_type={TYPES}jwt" in identity
    assert not any(SUBJECT_TOKEN in part or ACTOR_TOKEN in part for part in identity)
    assert (
        exchange(files, audience="https://a.example").cache_identity()
        != exchange(files).cache_identity()
    )
    assert exchange(files, subject_token_type="id_token").cache_identity() != identity


def test_a6_repr_shows_sources_and_types_not_tokens(files: dict[str, Path]) -> None:
    """A6: the grant's repr names its files, types, audience and client; never a token."""
    grant = exchange(
        files,
        actor_token=FileAssertion(files["actor"]),
        actor_token_type="jwt",
        audience="https://billing.example",
        requested_token_type="access_token",
        resource="https://api.example/",
        scope="read",
        client_id="billing",
        client_secret="s" * 32,
    )
    text = repr(grant)
    assert str(files["subject"]) in text
    assert "audience=['https://billing.example']" in text
    for secret in (SUBJECT_TOKEN, ACTOR_TOKEN, "s" * 32):
        assert secret not in text
