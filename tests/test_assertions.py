"""Externally issued assertions, without TokenAuth: sources, checks, ClientAssertion, Token N_A.

SPEC A1 (read fresh), A6 (bad input: a typed error naming the source, never its
content, at construction where it can be known then), A7 (the cache identity
names the source, never a token), K1 for ClientAssertion's form fields.
"""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from httpx_tokenauth import (
    AssertionExpiredError,
    AssertionSource,
    AssertionSourceError,
    ClientAssertion,
    ClientCredentials,
    ConfigurationError,
    FileAssertion,
    JWTBearerGrant,
    PrivateKeyJWT,
    Token,
    TokenError,
)
from httpx_tokenauth._assertions import (
    ASSERTION_SKEW,
    MAX_ASSERTION_BYTES,
    check_assertion,
    unverified_claims,
)
from httpx_tokenauth.testing import LocalIssuer

TOKEN_URL = "https://as.example/token"
NOW = 1_700_000_000.0
ISSUER = LocalIssuer("https://kubernetes.example", clock=lambda: NOW)
SUBJECT = "system:serviceaccount:billing:api"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def platform_token(lifetime: float = 600, issued_at: float = NOW) -> str:
    return ISSUER.mint(
        SUBJECT, "api://AzureADTokenExchange", lifetime=lifetime, issued_at=issued_at
    )


#: The platform token the files and functions of these tests hold (a jti makes each new).
PLATFORM_TOKEN = platform_token()


def segment(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def form(request: Any) -> dict[str, str]:
    return dict(request.form)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "azure-identity-token"
    path.write_text(PLATFORM_TOKEN)
    return path


# -- A6: what a source gives is checked, and never quoted ---------------------------------


NOT_JWTS = {
    "opaque": "an-opaque-token-value-123",
    "two parts": "abc.def",
    "four parts": "a.b.c.d",
    "header not JSON": "bm90IGpzb24." + segment({"exp": NOW}) + ".sig",
    "no alg": segment({"typ": "JWT"}) + "." + segment({"exp": NOW}) + ".sig",
    "claims a list": segment({"alg": "ES256"}) + "." + segment([1]) + ".sig",  # type: ignore[arg-type]
    "bad base64url": segment({"alg": "ES256"}) + ".@@@." + "sig",
}


@pytest.mark.parametrize("value", list(NOT_JWTS.values()), ids=list(NOT_JWTS))
def test_a6_what_is_not_a_jwt_is_refused_where_one_is_required_without_quoting_it(
    value: str,
) -> None:
    """A6: a value that is not a JWS compact JWT is an AssertionSourceError naming the source."""
    with pytest.raises(AssertionSourceError) as info:
        check_assertion(value, source="assertion file '/t'", jwt_required=True)
    assert info.value.source == "assertion file '/t'"
    assert "does not hold a JWT" in str(info.value)
    assert value not in str(info.value)


def test_a6_an_opaque_token_passes_where_no_jwt_is_required() -> None:
    """A6: a subject token of a non-JWT type may be opaque: sent as is, expiry unknown."""
    checked = check_assertion("  an-opaque-token  \n", source="s", jwt_required=False)
    assert (checked.value, checked.expires_at) == ("an-opaque-token", None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "returned int, not a string"),
        (None, "returned NoneType, not a string"),
        (b"eyJ.x.y", "returned bytes, not a string (decode it to str)"),
        ("", "is empty"),
        (" \n\t", "is empty"),
        ("two tokens", "spaces, control or non-ASCII"),
        ("tok\x00en", "spaces, control or non-ASCII"),
        ("t\u00f6ken", "spaces, control or non-ASCII"),
        ("x" * (MAX_ASSERTION_BYTES + 1), f"more than {MAX_ASSERTION_BYTES} bytes"),
    ],
)
def test_a6_non_text_empty_or_malformed_values_are_typed_errors(
    value: object, message: str
) -> None:
    """A6: a non-string, an empty value, several words, control characters, a huge blob."""
    with pytest.raises(AssertionSourceError) as info:
        check_assertion(value, source="assertion callable m.f", jwt_required=False)
    assert message in str(info.value)
    assert info.value.source == "assertion callable m.f"


def test_a6_a_jwt_without_exp_is_refused_where_a_jwt_is_required() -> None:
    """A6: RFC 7523 §3 requires exp; without it an expired token cannot be told apart."""
    value = segment({"alg": "ES256"}) + "." + segment({"iss": "k8s"}) + ".sig"
    with pytest.raises(AssertionSourceError, match="without an 'exp' claim"):
        check_assertion(value, source="s", jwt_required=True)
    assert check_assertion(value, source="s", jwt_required=False).expires_at is None


@pytest.mark.parametrize("exp", ["soon", True, None, [1], 1e400])
def test_a6_a_jwt_whose_exp_is_not_a_number_is_refused(exp: object) -> None:
    """A6: exp must be a number of seconds; a string, a boolean, a list is refused."""
    claims = {"exp": exp} if exp is not None else {"exp": {"at": 1}}
    value = segment({"alg": "ES256"}) + "." + segment(claims) + ".sig"
    with pytest.raises(AssertionSourceError, match="'exp' is not a number"):
        check_assertion(value, source="s", jwt_required=False)


def test_a3_exp_is_read_unverified_from_the_payload() -> None:
    """A3: the JWT's exp is read without verifying the signature (not ours to verify)."""
    checked = check_assertion(platform_token(lifetime=600), source="s", jwt_required=True)
    assert checked.expires_at == NOW + 600
    assert checked.fresh(NOW + 600 - ASSERTION_SKEW - 1)
    assert not checked.fresh(NOW + 600 - ASSERTION_SKEW)
    assert not checked.expired(NOW + 599)
    assert checked.expired(NOW + 600)
    assert unverified_claims("not.a.jwt") is None


# -- A6: FileAssertion, at construction and at read time ------------------------------------


def test_a6_a_missing_file_is_refused_at_construction_naming_its_path(tmp_path: Path) -> None:
    """A6: ClientAssertion(FileAssertion(missing)) fails at construction, naming the path."""
    path = tmp_path / "absent"
    with pytest.raises(AssertionSourceError) as info:
        ClientAssertion(FileAssertion(path))
    assert str(path) in info.value.source
    assert "does not exist" in str(info.value)


def test_a6_an_empty_file_and_a_file_that_is_not_a_jwt_are_refused_at_construction(
    tmp_path: Path,
) -> None:
    """A6: an empty file and one holding something else: typed errors, content never quoted."""
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.write_text("\n")
    other.write_text("secret-looking-opaque-value")
    with pytest.raises(AssertionSourceError, match="is empty"):
        ClientAssertion(FileAssertion(empty))
    with pytest.raises(AssertionSourceError) as info:
        ClientAssertion(FileAssertion(other))
    assert "does not hold a JWT" in str(info.value)
    assert "secret-looking-opaque-value" not in str(info.value)


def test_a6_unreadable_paths_name_the_problem(tmp_path: Path) -> None:
    """A6: a directory, a path through a regular file, a huge file, a binary file."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "huge").write_bytes(b"a" * (MAX_ASSERTION_BYTES + 10))
    (tmp_path / "binary").write_bytes(b"\xff\xfe token")
    cases = {
        tmp_path: "is a directory",
        tmp_path / "file" / "below": "cannot read",
        tmp_path / "huge": f"larger than {MAX_ASSERTION_BYTES} bytes",
        tmp_path / "binary": "is not ASCII text",
    }
    for path, message in cases.items():
        with pytest.raises(AssertionSourceError) as info:
            FileAssertion(path).read("aud")
        assert message in str(info.value), path
        assert info.value.source == f"assertion file {str(path)!r}"


def test_a6_check_now_false_defers_the_checks_to_the_first_request(tmp_path: Path) -> None:
    """A6: for a file written after start-up, construction succeeds and the read fails later."""
    path = tmp_path / "written-later"
    auth = ClientAssertion(FileAssertion(path, check_now=False))
    grant = ClientCredentials(TOKEN_URL, client_id="svc", client_auth=auth)
    with pytest.raises(AssertionSourceError, match="does not exist"):
        grant.token_request(NOW)
    path.write_text(PLATFORM_TOKEN)
    assert form(grant.token_request(NOW))["client_assertion"] == PLATFORM_TOKEN


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (b"/var/run/token", "needs a path"),
        (42, "needs a path"),
        ("", "non-empty path"),
        ("/var/run/token\n", "surrounding whitespace"),
        ("/var/run/\x00token", "control character"),
    ],
)
def test_a6_a_path_that_is_not_one_is_a_configuration_error(path: Any, message: str) -> None:
    """A6: bytes, numbers, empty paths, a path with a line ending: refused at construction."""
    with pytest.raises(ConfigurationError, match=message):
        FileAssertion(path)


def test_a6_check_now_must_be_a_bool(tmp_path: Path) -> None:
    """A6: check_now="false" is refused, not read as true."""
    with pytest.raises(ConfigurationError, match="check_now must be True or False"):
        FileAssertion(tmp_path / "t", check_now="false")  # type: ignore[arg-type]


def test_a1_a_file_is_read_again_for_every_request(token_file: Path) -> None:
    """A1: a request built after the platform rewrote the file carries the new token."""
    grant = ClientCredentials(
        TOKEN_URL, client_id="svc", client_auth=ClientAssertion(FileAssertion(token_file))
    )
    first = form(grant.token_request(NOW))["client_assertion"]
    rotated = ISSUER.write(token_file, SUBJECT, "api://AzureADTokenExchange", issued_at=NOW + 300)
    second = form(grant.token_request(NOW + 300))["client_assertion"]
    assert first != second == rotated


def test_a3_a_request_built_by_hand_refuses_an_expired_file(token_file: Path) -> None:
    """A3: token_request(now) reads the file and refuses an assertion past its exp."""
    grant = ClientCredentials(
        TOKEN_URL, client_id="svc", client_auth=ClientAssertion(FileAssertion(token_file))
    )
    with pytest.raises(AssertionExpiredError) as info:
        grant.token_request(NOW + 601)
    assert info.value.expired_at == NOW + 600
    assert str(token_file) in str(info.value)


# -- K1, RFC 7523 §2.2: what ClientAssertion sends -------------------------------------------


def test_k1_client_assertion_sends_the_platform_jwt_with_its_type_and_the_client_id(
    token_file: Path,
) -> None:
    """K1: client_assertion_type jwt-bearer, client_assertion = the file's JWT, client_id; no
    secret, no Authorization header."""
    grant = ClientCredentials(
        TOKEN_URL,
        client_id="svc",
        client_auth=ClientAssertion(FileAssertion(token_file)),
        scope="api://billing/.default",
    )
    request = grant.token_request(NOW)
    assert request.form == (
        ("grant_type", "client_credentials"),
        ("scope", "api://billing/.default"),
        ("client_id", "svc"),
        ("client_assertion_type", CLIENT_ASSERTION_TYPE),
        ("client_assertion", PLATFORM_TOKEN),
    )
    assert "Authorization" not in dict(request.headers)


def test_k1_client_assertion_authenticates_a_jwt_bearer_grant_too(token_file: Path) -> None:
    """K1: the JWT-bearer grant's client may authenticate with a platform JWT."""
    grant = JWTBearerGrant(
        TOKEN_URL,
        issuer="svc",
        subject="alice",
        key=ec.generate_private_key(ec.SECP256R1()),
        client_id="svc",
        client_auth=ClientAssertion(FileAssertion(token_file)),
    )
    fields = form(grant.token_request(NOW))
    assert fields["client_assertion"] == PLATFORM_TOKEN
    assert fields["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert [need.name for need in grant.assertion_sources()] == ["client_assertion"]


def test_a6_client_assertion_refuses_a_client_secret_and_what_is_not_a_source(
    token_file: Path,
) -> None:
    """A6: one method per request (B5); a path or token string instead of a source is refused
    without quoting it."""
    with pytest.raises(ConfigurationError, match="one method per request"):
        ClientCredentials(
            TOKEN_URL,
            client_id="svc",
            client_secret="s" * 32,
            client_auth=ClientAssertion(FileAssertion(token_file)),
        )
    token = PLATFORM_TOKEN
    for wrong in (token, token.encode(), token_file):
        with pytest.raises(ConfigurationError) as info:
            ClientAssertion(wrong)  # type: ignore[arg-type]
        assert "FileAssertion(path)" in str(info.value)
        assert token not in str(info.value)
    with pytest.raises(ConfigurationError, match="got int"):
        ClientAssertion(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="audience must be a non-empty string"):
        ClientAssertion(FileAssertion(token_file), audience="")


def test_a6_a_callable_must_take_the_audience() -> None:
    """A6: a function that cannot be given the audience is refused at construction."""

    def no_arguments() -> str:
        return "x"

    with pytest.raises(ConfigurationError, match="must take one argument, the audience"):
        ClientAssertion(no_arguments)  # type: ignore[arg-type]


def test_a6_a_sync_callable_returning_an_awaitable_is_refused() -> None:
    """A6: a coroutine returned from a sync call is closed, and refused with advice."""

    async def produce() -> str:
        return PLATFORM_TOKEN

    grant = ClientCredentials(
        TOKEN_URL, client_id="svc", client_auth=ClientAssertion(lambda audience: produce())
    )
    with pytest.raises(AssertionSourceError, match="returned an awaitable"):
        grant.token_request(NOW)


def test_a1_a_callable_is_given_the_token_url_or_the_configured_audience() -> None:
    """A1: the function is asked for an assertion meant for the token URL by default."""
    asked: list[str] = []

    def platform(audience: str) -> str:
        asked.append(audience)
        return PLATFORM_TOKEN

    for auth in (ClientAssertion(platform), ClientAssertion(platform, audience="api://x")):
        ClientCredentials(TOKEN_URL, client_id="svc", client_auth=auth).token_request(NOW)
    assert asked == [TOKEN_URL, "api://x"]


def test_a6_a_callable_that_raises_is_an_assertion_source_error_with_the_cause() -> None:
    """A6: the function's exception is the __cause__; its message (which may quote a token) is
    not repeated."""

    def broken(audience: str) -> str:
        raise RuntimeError("token eyJ-leaked-in-a-message")

    grant = ClientCredentials(TOKEN_URL, client_id="svc", client_auth=ClientAssertion(broken))
    with pytest.raises(AssertionSourceError) as info:
        grant.token_request(NOW)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "RuntimeError" in str(info.value)
    assert "eyJ-leaked" not in str(info.value)
    assert "test_assertions.test_a6_a_callable_that_raises" in info.value.source


# -- A7, F1: cache identities name sources, never tokens ------------------------------------


def identity(auth: ClientAssertion, client_id: str = "svc") -> tuple[str, ...]:
    return ClientCredentials(TOKEN_URL, client_id=client_id, client_auth=auth).cache_identity()


def module_level_source(audience: str) -> str:
    return PLATFORM_TOKEN


def test_a7_the_identity_names_the_file_by_absolute_path_never_its_token(
    token_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A7: identity = method, client, audience and the file's absolute path; rotating the file
    leaves it unchanged; another path or client changes it."""
    monkeypatch.chdir(tmp_path)
    relative = identity(ClientAssertion(FileAssertion(token_file.name)))
    absolute = identity(ClientAssertion(FileAssertion(token_file)))
    assert relative == absolute
    assert str(token_file) in absolute
    assert not any(PLATFORM_TOKEN in part for part in absolute)
    ISSUER.write(token_file, SUBJECT, "api://x", issued_at=NOW + 1)
    assert identity(ClientAssertion(FileAssertion(token_file))) == absolute
    other = tmp_path / "other-token"
    other.write_text(PLATFORM_TOKEN)
    assert identity(ClientAssertion(FileAssertion(other))) != absolute
    assert identity(ClientAssertion(FileAssertion(token_file)), "svc-2") != absolute


def test_a7_a_callable_is_named_by_its_qualified_name_and_lambdas_are_refused() -> None:
    """A7: a module-level function is named by module and qualname; a lambda has no name
    another process knows, so a shared store's identity refuses it."""
    named = identity(ClientAssertion(module_level_source))
    assert "test_assertions.module_level_source" in named
    with pytest.raises(ConfigurationError, match="lambda or a local function"):
        identity(ClientAssertion(lambda audience: PLATFORM_TOKEN))


def test_a7_the_identity_differs_from_a_private_key_clients(token_file: Path) -> None:
    """A7: a platform-token client and a private_key_jwt client never share a token."""
    key = PrivateKeyJWT(ec.generate_private_key(ec.SECP256R1()))
    assert identity(ClientAssertion(FileAssertion(token_file))) != identity(key)


class PlatformSource(AssertionSource):
    """A source of one's own: a subclass with a name and a read()."""

    @property
    def name(self) -> str:
        return "workload API"

    def read(self, audience: str) -> object:
        return PLATFORM_TOKEN


def test_a1_a_source_of_ones_own_subclasses_assertion_source() -> None:
    """A1: a subclass with name and read() serves; its default identity is its class and name."""
    auth = ClientAssertion(PlatformSource())
    grant = ClientCredentials(TOKEN_URL, client_id="svc", client_auth=auth)
    assert form(grant.token_request(NOW))["client_assertion"] == PLATFORM_TOKEN
    assert f"{__name__}.PlatformSource" in grant.cache_identity()
    assert repr(PlatformSource()) == "<PlatformSource: workload API>"


# -- secrets: the assertion is in no repr, str or message -----------------------------------


def test_a6_reprs_name_sources_and_never_hold_the_token(token_file: Path) -> None:
    """A6: FileAssertion, ClientAssertion, the grant and its authenticator show the path only."""
    auth = ClientAssertion(FileAssertion(token_file), audience="api://AzureADTokenExchange")
    grant = ClientCredentials(TOKEN_URL, client_id="svc", client_auth=auth)
    texts = [
        repr(auth),
        repr(grant),
        str(grant),
        repr(grant._authenticator),
        repr(grant.assertion_sources()),
        repr(check_assertion(PLATFORM_TOKEN, source="s", jwt_required=True)),
    ]
    for text in texts:
        assert PLATFORM_TOKEN not in text
    assert repr(auth) == (
        f"ClientAssertion(FileAssertion({str(token_file)!r}), "
        "audience='api://AzureADTokenExchange')"
    )


def test_every_new_error_is_a_token_error() -> None:
    """One exception root: AssertionSourceError and AssertionExpiredError are TokenErrors."""
    assert issubclass(AssertionExpiredError, AssertionSourceError)
    assert issubclass(AssertionSourceError, TokenError)


# -- A5: Token.issued_token_type and N_A ----------------------------------------------------

ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def test_a5_an_n_a_token_is_kept_but_never_made_a_bearer_header() -> None:
    """A5: N_A with a non-access-token type is a Token; its authorization is a typed error."""
    token = Token("an-id-token", token_type="n_a", issued_token_type=ID_TOKEN)
    assert token.token_type == "N_A"
    with pytest.raises(ConfigurationError) as info:
        _ = token.authorization
    assert "not an access token" in str(info.value)
    assert "an-id-token" not in str(info.value)
    assert ID_TOKEN in repr(token)
    assert "an-id-token" not in repr(token)


@pytest.mark.parametrize("issued", [None, ACCESS])
def test_a5_n_a_is_refused_for_an_access_token_or_an_unnamed_type(issued: str | None) -> None:
    """A5: N_A says 'not an access token': with no type or the access_token type it is refused."""
    with pytest.raises(ConfigurationError, match="N_A"):
        Token("t", token_type="N_A", issued_token_type=issued)


@pytest.mark.parametrize("issued", ["", 3])
def test_a5_issued_token_type_must_be_a_string(issued: Any) -> None:
    """A5: an empty or non-string issued_token_type is refused."""
    with pytest.raises(ConfigurationError, match="issued_token_type"):
        Token("t", issued_token_type=issued)


def test_a5_issued_token_type_survives_pickling_and_copying() -> None:
    """A5, R12: pickling keeps issued_token_type and the N_A type."""
    import copy

    token = Token("t", token_type="N_A", issued_token_type=ID_TOKEN, expires_at=NOW)
    for again in (pickle.loads(pickle.dumps(token)), copy.deepcopy(token)):  # noqa: S301
        assert (again.token_type, again.issued_token_type) == ("N_A", ID_TOKEN)
    bearer = pickle.loads(pickle.dumps(Token("t", issued_token_type=ACCESS)))  # noqa: S301
    assert (bearer.token_type, bearer.issued_token_type) == ("Bearer", ACCESS)
