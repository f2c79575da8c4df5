"""12. DPoP: what a DPoP request costs over a Bearer request, and what one proof costs.

* Request overhead: the same full ``client.get()`` through the same
  ``httpx.MockTransport`` handler, with ``TokenAuth(provider)`` (a Bearer
  token) and with ``TokenAuth(provider, dpop=DPoP(key))`` (a DPoP token and a
  fresh proof on every request), for ES256 and EdDSA, in one process, in
  rotated order round after round; the ratio of a round is taken against the
  Bearer variant of the same round, and the table shows the median over rounds.
  The static-header ``httpx.Auth`` of benchmark 1 runs alongside for scale.
* Proof cost: ``Prover.proof(method, url, now, access_token=...)``, the work a
  DPoP request adds, against the one signature it contains (``key.sign`` on
  a message of the same length, with cryptography directly), so the rest of
  the proof (claims, ``jti``, base64url) shows as the difference.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import httpx
from _common import (
    API_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_PATH,
    TOKEN_URL,
    Row,
    Section,
    StaticHeader,
    iqr,
    median,
    rotations,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from httpx_tokenauth import ClientCredentials, DPoP, TokenAuth

ALGORITHMS = ("ES256", "EdDSA")
ACCESS_TOKEN = "t1"


def _key(algorithm: str) -> Any:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _handler(request: httpx.Request) -> httpx.Response:
    """A token endpoint that binds the token when the request carries a proof; 200 elsewhere."""
    if request.url.path == TOKEN_PATH:
        token_type = "DPoP" if "dpop" in request.headers else "Bearer"
        body = {"access_token": ACCESS_TOKEN, "token_type": token_type, "expires_in": 3600}
        return httpx.Response(200, json=body)
    return httpx.Response(200, content=b"ok")


def _transport() -> httpx.MockTransport:
    return httpx.MockTransport(_handler)


def _client(dpop: DPoP | None) -> httpx.Client:
    provider = ClientCredentials(TOKEN_URL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    auth = TokenAuth(provider, dpop=dpop, token_client=httpx.Client(transport=_transport()))
    return httpx.Client(auth=auth, transport=_transport())


def _check(response: httpx.Response, name: str, scheme: str, proof: bool) -> None:
    sent = response.request.headers.get("authorization")
    has_proof = "dpop" in response.request.headers
    if response.status_code != 200 or sent != f"{scheme} {ACCESS_TOKEN}" or has_proof != proof:
        raise RuntimeError(f"{name}: unexpected {response.status_code}, sent {sent!r}")


def _batch(fn: Callable[[], object], n: int) -> float:
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n


def _measure(
    variants: dict[str, Callable[[], object]], n: int, rounds: int
) -> dict[str, list[float]]:
    for fn in variants.values():  # warm-up, discarded
        _batch(fn, max(n // 4, 5))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for order in rotations(list(variants), rounds):
        for name in order:
            times[name].append(_batch(variants[name], n))
    return times


def _requests(keys: dict[str, Any], n: int, rounds: int) -> dict[str, list[float]]:
    clients = {
        "static header": httpx.Client(auth=StaticHeader(), transport=_transport()),
        "Bearer": _client(None),
        **{f"DPoP {alg}": _client(DPoP(keys[alg], algorithm=alg)) for alg in ALGORITHMS},
    }
    try:
        variants: dict[str, Callable[[], object]] = {}
        for name, client in clients.items():
            dpop = name.startswith("DPoP")
            _check(client.get(API_URL), name, "DPoP" if dpop else "Bearer", dpop)
            variants[name] = _bind_get(client)
        return _measure(variants, n, rounds)
    finally:
        for client in clients.values():
            client.close()


def _bind_get(client: httpx.Client) -> Callable[[], object]:
    def get() -> httpx.Response:
        return client.get(API_URL)

    return get


def _proofs(keys: dict[str, Any], n: int, rounds: int) -> dict[str, list[float]]:
    variants: dict[str, Callable[[], object]] = {}
    for alg in ALGORITHMS:
        prover = DPoP(keys[alg], algorithm=alg).bind()
        proof = prover.proof("GET", API_URL, time.time(), access_token=ACCESS_TOKEN)
        message = proof.rpartition(".")[0].encode("ascii")  # what the proof's signature covers
        key = keys[alg]
        variants[f"proof {alg}"] = _bind_proof(prover)
        variants[f"signature {alg}"] = _bind_sign(key, message)
    return _measure(variants, n, rounds)


def _bind_proof(prover: Any) -> Callable[[], object]:
    def proof() -> str:
        result: str = prover.proof("GET", API_URL, time.time(), access_token=ACCESS_TOKEN)
        return result

    return proof


def _bind_sign(key: Any, message: bytes) -> Callable[[], object]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda: key.sign(message, ecdsa)
    return lambda: key.sign(message)


def _stats(values: list[float], base: list[float]) -> dict[str, float]:
    ratios = [v / b for v, b in zip(values, base, strict=True)]
    extra = [v - b for v, b in zip(values, base, strict=True)]
    lo, hi = iqr(values)
    rlo, rhi = iqr(ratios)
    return {
        "ns_median": median(values),
        "ns_p25": lo,
        "ns_p75": hi,
        "ratio_median": median(ratios),
        "ratio_p25": rlo,
        "ratio_p75": rhi,
        "extra_ns_median": median(extra),
    }


def run(*, quick: bool) -> Section:
    n, rounds = (20, 2) if quick else (200, 100)
    pn, prounds = (20, 2) if quick else (200, 100)
    keys = {alg: _key(alg) for alg in ALGORITHMS}
    req = _requests(keys, n, rounds)
    proof = _proofs(keys, pn, prounds)
    bearer = req["Bearer"]
    req_stats = {name: _stats(values, bearer) for name, values in req.items()}
    proof_stats = {
        alg: _stats(proof[f"proof {alg}"], proof[f"signature {alg}"]) for alg in ALGORITHMS
    }
    sign_stats = {
        alg: _stats(proof[f"signature {alg}"], proof[f"signature {alg}"]) for alg in ALGORITHMS
    }
    b = req_stats["Bearer"]
    rows: list[Row] = []
    for key, alg in zip("ab", ALGORITHMS, strict=True):
        s = req_stats[f"DPoP {alg}"]
        rows.append(
            Row(
                key=f"12{key}",
                measurement=f"DPoP request overhead, {alg} (ratio to the same request with a "
                "Bearer token, end-to-end get())",
                ours=f"{s['ratio_median']:.3f}x ({s['extra_ns_median'] / 1000:+.1f} µs)",
                baseline=f"1x = {b['ns_median'] / 1000:.1f} µs/request (Bearer TokenAuth)",
                authlib="n/a (no DPoP)",
                httpx_auth="n/a (no DPoP)",
            )
        )
    for key, alg in zip("cd", ALGORITHMS, strict=True):
        s = proof_stats[alg]
        rows.append(
            Row(
                key=f"12{key}",
                measurement=f"DPoP proof cost, {alg} (one proof vs its one signature)",
                ours=f"{s['ns_median'] / 1000:.1f} µs/proof ({s['ratio_median']:.3f}x, "
                f"{s['extra_ns_median'] / 1000:+.1f} µs)",
                baseline=f"1x = {sign_stats[alg]['ns_median'] / 1000:.1f} µs/signature",
                authlib="n/a (no DPoP)",
                httpx_auth="n/a (no DPoP)",
            )
        )
    details: list[list[str]] = []
    for name, s in req_stats.items():
        details.append(
            [
                "request",
                name,
                f"{s['ns_median'] / 1000:.2f}",
                f"{s['ns_p25'] / 1000:.2f}-{s['ns_p75'] / 1000:.2f}",
                f"{s['ratio_median']:.3f} (vs Bearer)",
                f"{s['ratio_p25']:.3f}-{s['ratio_p75']:.3f}",
                f"{s['extra_ns_median'] / 1000:+.2f}",
            ]
        )
    for alg in ALGORITHMS:
        for name, s in ((f"signature {alg}", sign_stats[alg]), (f"proof {alg}", proof_stats[alg])):
            details.append(
                [
                    "proof",
                    name,
                    f"{s['ns_median'] / 1000:.2f}",
                    f"{s['ns_p25'] / 1000:.2f}-{s['ns_p75'] / 1000:.2f}",
                    f"{s['ratio_median']:.3f} (vs signature)",
                    f"{s['ratio_p25']:.3f}-{s['ratio_p75']:.3f}",
                    f"{s['extra_ns_median'] / 1000:+.2f}",
                ]
            )
    return Section(
        title="12. DPoP",
        rows=rows,
        details_header=[
            "part",
            "variant",
            "µs (median)",
            "IQR",
            "ratio (median)",
            "ratio IQR",
            "extra µs",
        ],
        details=details,
        notes=[
            f"Requests: {rounds} rounds x {n} sequential httpx.Client.get() per variant, "
            "variants in rotated order, one MockTransport handler; ratio = variant / Bearer "
            "TokenAuth of the same round, median over rounds. The static-header row is "
            "benchmark 1's baseline, for scale.",
            f"Proofs: {prounds} rounds x {pn} calls of Prover.proof() (claims, jti, ath from "
            "a cached hash, base64url, one signature) against key.sign() of a message of the "
            "same length with cryptography directly (for ES256 without the DER-to-raw step).",
            "Sync only: the async driver makes the same proof with the same code.",
        ],
        data={
            "n": n,
            "rounds": rounds,
            "proof_n": pn,
            "proof_rounds": prounds,
            "requests": req_stats,
            "proofs": proof_stats,
            "signatures": sign_stats,
        },
    )
