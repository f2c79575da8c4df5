"""DPoP without a client (SPEC D1-D3): proofs, thumbprints, htu normalization, nonces per
origin, configuration errors, and the token-endpoint nonce rule stepped in the program."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from httpx_tokenauth import (
    ClientCredentials,
    ConfigurationError,
    DPoP,
    DPoPNonceError,
    Token,
    TokenAuth,
)
from httpx_tokenauth._dpop import normalize_htu, thumbprint
from httpx_tokenauth._program import Send
from httpx_tokenauth._token import RawResponse
from httpx_tokenauth.testing import DPoPProofError, DPoPVerifier
from test_program import Times, kinds, step

NOW = 1_700_000_000.0


def test_d3_thumbprint_matches_the_rfc_7638_example() -> None:
    """RFC 7638 §3.1's RSA key has the thumbprint the RFC gives."""
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
        "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vM"
        "QFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("url", "origin", "htu"),
    [
        ("https://API.Example/a/b?q=1#f", "https://api.example", "https://api.example/a/b"),
        ("https://api.example:443", "https://api.example", "https://api.example/"),
        ("http://127.0.0.1:80/x", "http://127.0.0.1", "http://127.0.0.1/x"),
        (
            "https://api.example:8443/x%2Fy",
            "https://api.example:8443",
            "https://api.example:8443/x%2Fy",
        ),
        ("https://[::1]:9000/p", "https://[::1]:9000", "https://[::1]:9000/p"),
    ],
)
def test_d1_htu_is_normalized_without_query_and_fragment(url: str, origin: str, htu: str) -> None:
    """RFC 9449 §4.3: lower-case scheme and host, no default port, no query, no fragment."""
    assert normalize_htu(url) == (origin, htu)


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ("ES256", None),
        ("ES384", None),
        ("EdDSA", None),
        ("PS256", None),
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
    ],
)
def test_d1_proofs_verify_for_every_algorithm(algorithm: str, key: Any) -> None:
    """A proof is a dpop+jwt JWS with a public jwk only, verifying with that jwk."""
    prover = DPoP(key, algorithm=algorithm).bind()
    verifier = DPoPVerifier(clock=lambda: NOW)
    proof = prover.proof("GET", "https://api.example/x?y=1", NOW, access_token="tok")
    claims = verifier.verify(proof, method="GET", url="https://api.example/x", access_token="tok")
    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == algorithm
    assert "d" not in header["jwk"]
    assert thumbprint(header["jwk"]) == prover.jkt
    assert claims["iat"] == int(NOW)
    assert claims["htu"] == "https://api.example/x"


def test_d1_a_thousand_proofs_have_a_thousand_jti() -> None:
    """jti is unique per proof; the verifier refuses a replayed proof."""
    prover = DPoP().bind()
    verifier = DPoPVerifier(clock=lambda: NOW)
    made = [prover.proof("POST", "https://as.example/token", NOW) for _ in range(1000)]
    assert len({jwt.decode(p, options={"verify_signature": False})["jti"] for p in made}) == 1000
    verifier.verify(made[0], method="POST", url="https://as.example/token")
    with pytest.raises(DPoPProofError, match="jti"):
        verifier.verify(made[0], method="POST", url="https://as.example/token")


def test_d1_the_key_given_is_used_and_never_shown() -> None:
    """A PEM key signs the proofs; neither DPoP's repr nor TokenAuth's shows any part of it."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    dpop = DPoP(pem)
    prover = dpop.bind()
    assert prover.jwk["x"] == DPoP(key).bind().jwk["x"]
    d = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True)["d"]
    auth = TokenAuth(
        ClientCredentials("https://as.example/token", client_id="c", client_secret="s" * 16),
        dpop=dpop,
    )
    for text in (repr(dpop), str(dpop), repr(auth), repr(prover)):
        assert d not in text
        assert "PRIVATE" not in text


def test_d1_a_generated_key_is_one_per_tokenauth() -> None:
    """DPoP() generates a key per binding: two TokenAuths never share a generated key."""
    dpop = DPoP()
    assert dpop.bind().jkt != dpop.bind().jkt


def test_d2_nonces_are_kept_per_origin() -> None:
    """A nonce from one origin is used only for that origin's proofs."""
    prover = DPoP().bind()
    assert prover.learn("https://api.example/a", "n-api")
    assert not prover.learn("https://api.example/b", "n-api")  # same origin, same nonce
    assert prover.nonce_for("https://as.example/token") is None

    def nonce(url: str) -> Any:
        return jwt.decode(prover.proof("GET", url, NOW), options={"verify_signature": False}).get(
            "nonce"
        )

    assert nonce("https://api.example/other") == "n-api"
    assert nonce("https://api.example:8443/other") is None
    assert nonce("https://as.example/token") is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"algorithm": "HS256"}, "shared secret"),
        ({"algorithm": "none"}, "unsigned"),
        ({"key": ed25519.Ed25519PrivateKey.generate(), "algorithm": "ES256"}, "ES256"),
        ({"allow_bearer": "yes"}, "allow_bearer"),
    ],
)
def test_d1_bad_dpop_configuration_is_refused_at_construction(
    kwargs: dict[str, Any], match: str
) -> None:
    """Wrong algorithms, mismatched keys and non-bool flags are ConfigurationErrors."""
    with pytest.raises(ConfigurationError, match=match):
        DPoP(**kwargs)


def test_d1_dpop_needs_a_grant_and_a_dpop_object() -> None:
    """dpop= with a custom provider, or something other than DPoP(...), is refused."""

    class Provider:
        def fetch_token(self) -> Token:
            return Token("t")

    with pytest.raises(ConfigurationError, match="grant"):
        TokenAuth(Provider(), dpop=DPoP())
    grant = ClientCredentials("https://as.example/token", client_id="c", client_secret="s" * 16)
    with pytest.raises(ConfigurationError, match="DPoP"):
        TokenAuth(grant, dpop="yes")  # type: ignore[arg-type]


def _response(status: int, body: dict[str, Any], nonce: str | None = None) -> RawResponse:
    headers = {"content-type": "application/json"}
    if nonce is not None:
        headers["dpop-nonce"] = nonce
    return RawResponse(status, headers, json.dumps(body).encode())


def _auth(times: Times) -> TokenAuth:
    grant = ClientCredentials("https://as.example/token", client_id="c", client_secret="s" * 16)
    auth = TokenAuth(grant, clock=times.clock, dpop=DPoP())
    auth._acquisition.monotonic = times.monotonic
    return auth


def test_d2_the_program_retries_a_nonce_demand_at_once_with_the_nonce() -> None:
    """400 use_dpop_nonce: a second Send right away (no Sleep), its proof carrying the nonce."""
    times = Times()
    auth = _auth(times)
    answers = [
        _response(400, {"error": "use_dpop_nonce"}, nonce="n1"),
        _response(200, {"access_token": "t1", "token_type": "DPoP", "expires_in": 60}, "n2"),
    ]
    effects, result = step(auth._acquisition.acquire(blocking=True), lambda e: answers.pop(0))
    assert kinds(effects) == ["Send", "Send"]
    sent = [dict(e.request.headers)["DPoP"] for e in effects if isinstance(e, Send)]
    claims = [jwt.decode(p, options={"verify_signature": False}) for p in sent]
    assert "nonce" not in claims[0]
    assert claims[1]["nonce"] == "n1"
    assert isinstance(result, Token)
    assert result.token_type == "DPoP"
    assert result.authorization == "DPoP t1"
    assert auth._dpop is not None
    assert auth._dpop.nonce_for("https://as.example/x") == "n2"


def test_d2_the_program_stops_at_a_second_nonce_demand() -> None:
    """Two use_dpop_nonce answers in a row: DPoPNonceError after two Sends, no third."""
    times = Times()
    auth = _auth(times)
    answers = [
        _response(400, {"error": "use_dpop_nonce"}, nonce="n1"),
        _response(400, {"error": "use_dpop_nonce"}, nonce="n2"),
    ]
    effects, result = step(auth._acquisition.acquire(blocking=True), lambda e: answers.pop(0))
    assert kinds(effects) == ["Send", "Send"]
    assert isinstance(result, DPoPNonceError)
    assert (result.origin, result.status_code) == ("https://as.example", 400)


def test_d2_a_nonce_demand_without_a_nonce_is_not_retried() -> None:
    """use_dpop_nonce with no DPoP-Nonce header: nothing to retry with, a DPoPNonceError."""
    times = Times()
    auth = _auth(times)
    effects, result = step(
        auth._acquisition.acquire(blocking=True),
        lambda e: _response(400, {"error": "use_dpop_nonce"}),
    )
    assert kinds(effects) == ["Send"]
    assert isinstance(result, DPoPNonceError)
    assert "no DPoP-Nonce" in str(result)


def test_x9_dpop_takes_the_algorithm_from_the_key() -> None:
    """DPoP(key) without an algorithm uses the one the key fits: EdDSA for Ed25519, by curve
    for EC keys; an algorithm that does not fit the key is still refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from httpx_tokenauth import ConfigurationError, DPoP

    def pem(key: Any) -> bytes:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    assert DPoP(pem(ed25519.Ed25519PrivateKey.generate())).algorithm == "EdDSA"
    assert DPoP(pem(ec.generate_private_key(ec.SECP384R1()))).algorithm == "ES384"
    assert DPoP().algorithm == "ES256"
    with pytest.raises(ConfigurationError):
        DPoP(pem(ed25519.Ed25519PrivateKey.generate()), algorithm="ES256")
