"""4. Assertion minting: one private_key_jwt client assertion, one JWT-bearer grant request.

Against a bare ``jwt.encode(claims, key, algorithm=..., headers=...)`` with a
preloaded cryptography key object and the same claims and headers; the
baseline also reads the clock and makes a ``jti`` with
``secrets.token_urlsafe(16)``, as ours does, to be fair.

* private_key_jwt: ``PrivateKeyJWT(pem, ...).bind(...).authenticate(now)``,
  the client assertion and the form fields that carry it.
* JWT-bearer: ``JWTBearerGrant(...).token_request(now)``, the assertion plus
  the whole token request (form body encoded, headers), a little more work
  than the baseline does.
"""

from __future__ import annotations

import gc
import importlib
import secrets
import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt
from _common import CLIENT_ID, TOKEN_URL, Row, Section, iqr, median, peers, rotations, verdict
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from httpx_tokenauth import JWTBearerGrant, PrivateKeyJWT

TARGET = 1.2
ALGORITHMS = ("RS256", "ES256", "EdDSA")
SUBJECT = "user@example.org"


def _key(algorithm: str) -> Any:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _pem(key: Any) -> bytes:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem


def _baseline(key: Any, algorithm: str, *, issuer: str, subject: str, lifetime: int) -> Any:
    headers = {"typ": "JWT", "kid": "bench-key"}

    def mint() -> str:
        iat = int(time.time())
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": TOKEN_URL,
            "iat": iat,
            "exp": iat + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)

    return mint


def _authlib_variants(algorithm: str, pem: bytes) -> dict[str, Callable[[], object]]:
    """authlib's own signing functions (joserfc underneath), with a preloaded joserfc key."""
    if peers().authlib is None:
        return {}
    try:
        jwk = importlib.import_module("joserfc.jwk")
        assertion = importlib.import_module("authlib.oauth2.rfc7523.assertion")
    except ImportError:
        return {}
    # joserfc warns that RFC 9864 deprecates the name "EdDSA" (for "Ed25519"); the
    # same name is used by every variant here, so that the tokens are alike.
    warnings.filterwarnings("ignore", message="EdDSA is deprecated")
    key_class = {"RS256": jwk.RSAKey, "ES256": jwk.ECKey, "EdDSA": jwk.OKPKey}[algorithm]
    key = key_class.import_key(pem)

    def client_assertion() -> object:
        return assertion.private_key_jwt_sign(
            key, CLIENT_ID, TOKEN_URL, alg=algorithm, expires_in=60,
            header={"typ": "JWT", "kid": "bench-key"},
        )  # fmt: skip

    def grant_assertion() -> object:
        return assertion.sign_jwt_bearer_assertion(
            key, CLIENT_ID, TOKEN_URL, SUBJECT, alg=algorithm, expires_in=300,
            header={"typ": "JWT", "kid": "bench-key"},
        )  # fmt: skip

    return {"authlib private_key_jwt": client_assertion, "authlib JWT-bearer": grant_assertion}


def _variants(algorithm: str) -> dict[str, Callable[[], object]]:
    key = _key(algorithm)
    pem = _pem(key)
    authenticator = PrivateKeyJWT(pem, algorithm=algorithm, key_id="bench-key").bind(
        client_id=CLIENT_ID, client_secret=None, token_url=TOKEN_URL
    )
    grant = JWTBearerGrant(
        TOKEN_URL, issuer=CLIENT_ID, subject=SUBJECT, key=pem, algorithm=algorithm,
        key_id="bench-key",
    )  # fmt: skip
    return {
        "baseline private_key_jwt": _baseline(
            key, algorithm, issuer=CLIENT_ID, subject=CLIENT_ID, lifetime=60
        ),
        "private_key_jwt": lambda: authenticator.authenticate(time.time()),
        "baseline JWT-bearer": _baseline(
            key, algorithm, issuer=CLIENT_ID, subject=SUBJECT, lifetime=300
        ),
        "JWT-bearer": lambda: grant.token_request(time.time()),
        **_authlib_variants(algorithm, pem),
    }


def _batch(fn: Callable[[], object], n: int) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n


def _measure(algorithm: str, n: int, rounds: int) -> dict[str, list[float]]:
    variants = _variants(algorithm)
    for fn in variants.values():
        _batch(fn, max(n // 4, 2))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for order in rotations(list(variants), rounds):
        for name in order:
            times[name].append(_batch(variants[name], n))
    return times


def run(*, quick: bool) -> Section:
    # Short batches, many rounds: drift on a shared machine hits every variant alike.
    rounds = 2 if quick else 100
    sizes = {"RS256": 5, "ES256": 20, "EdDSA": 20} if quick else {
        "RS256": 20, "ES256": 150, "EdDSA": 150,
    }  # fmt: skip
    rows: list[Row] = []
    details: list[list[str]] = []
    data: dict[str, object] = {"rounds": rounds, "sizes": sizes}
    results: dict[tuple[str, str], dict[str, float]] = {}
    for algorithm in ALGORITHMS:
        times = _measure(algorithm, sizes[algorithm], rounds)
        for kind in ("private_key_jwt", "JWT-bearer"):
            ours, base = times[kind], times[f"baseline {kind}"]
            ratios = [o / b for o, b in zip(ours, base, strict=True)]
            lo, hi = iqr(ratios)
            s = {
                "ours_ns": median(ours),
                "baseline_ns": median(base),
                "ratio": median(ratios),
                "ratio_p25": lo,
                "ratio_p75": hi,
            }
            peer = times.get(f"authlib {kind}")
            if peer:
                s["authlib_ns"] = median(peer)
                s["authlib_ratio"] = median([a / b for a, b in zip(peer, base, strict=True)])
            results[(kind, algorithm)] = s
            data[f"{kind}/{algorithm}"] = s
            details.append(
                [
                    kind,
                    algorithm,
                    f"{s['ours_ns'] / 1000:.1f}",
                    f"{s['baseline_ns'] / 1000:.1f}",
                    f"{s['ratio']:.3f}",
                    f"{lo:.3f}-{hi:.3f}",
                    f"{s['authlib_ns'] / 1000:.1f} ({s['authlib_ratio']:.3f}x)"
                    if "authlib_ns" in s
                    else "-",
                ]
            )
    keys = iter("abcdef")
    for kind in ("private_key_jwt", "JWT-bearer"):
        for algorithm in ALGORITHMS:
            s = results[(kind, algorithm)]
            what = "client assertion" if kind == "private_key_jwt" else "grant request"
            rows.append(
                Row(
                    key=f"4{next(keys)}",
                    measurement=f"Minting: {kind} {what}, {algorithm} (vs bare jwt.encode)",
                    ours=f"{s['ratio']:.3f}x ({s['ours_ns'] / 1000:.1f} µs)",
                    baseline=f"1x = {s['baseline_ns'] / 1000:.1f} µs",
                    authlib=f"{s['authlib_ratio']:.3f}x ({s['authlib_ns'] / 1000:.1f} µs)"
                    if "authlib_ns" in s
                    else str(peers().missing("authlib")),
                    httpx_auth="n/a (no JWT client auth)",
                    target=f"≤ {TARGET}x",
                    result=verdict(s["ratio"] <= TARGET),
                )
            )
    return Section(
        title="4. Assertion minting",
        rows=rows,
        details_header=[
            "kind",
            "algorithm",
            "ours µs (median)",
            "baseline µs (median)",
            "ratio (median)",
            "ratio IQR",
            "authlib µs (ratio)",
        ],
        details=details,
        notes=[
            f"{rounds} rounds per algorithm, the variants in rotated order; ratio = "
            "ours / baseline of the same round, median over rounds.",
            "The baseline includes the clock read and secrets.token_urlsafe(16) for the "
            "jti, as ours does; the JWT-bearer row also builds the whole token request.",
            "authlib: authlib.oauth2.rfc7523 private_key_jwt_sign / "
            "sign_jwt_bearer_assertion (joserfc) with a preloaded joserfc key, the "
            "assertion only.",
        ],
        data=data,
    )
