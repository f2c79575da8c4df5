"""Hostile and careless inputs: compressed bodies, dripping servers, URLs, secrets, server text.

Token responses are read through a real TokenAuth on the harness (MockTransport
serving raw bytes, sync/asyncio/trio, httpx/httpx2) and from real servers on
127.0.0.1; memory is measured with tracemalloc.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import gzip
import importlib
import pickle
import re
import socket
import threading
import time
import tracemalloc
import warnings
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote_plus

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from httpx_tokenauth import (
    ClientCredentials,
    ClientSecretBasic,
    ClientSecretJWT,
    ClientSecretPost,
    ConfigurationError,
    InvalidClientError,
    InvalidGrantError,
    JWTBearerGrant,
    NonVSCHARWarning,
    PrivateKeyJWT,
    RetryPolicy,
    Token,
    TokenEndpointError,
    TokenError,
    TokenTransportError,
    UnexpectedTokenResponseError,
    UnsupportedTokenTypeError,
)
from httpx_tokenauth._request import BASE_HEADERS, TokenRequest
from httpx_tokenauth._token import MAX_RESPONSE_BYTES, RawResponse, parse_token_response
from httpx_tokenauth._transport import DeadlineExceededError, HTTPLib, send_async, send_sync
from httpx_tokenauth._url import redacted_url

from conftest import CLIENT_ID, CLIENT_SECRET, FUZZ_EXAMPLES, WAIT, Env, dumps, token_json

pytestmark = pytest.mark.anyio

#: Peak memory allowed while reading any token response: a small multiple of the cap.
MEMORY_BOUND = 8 * MAX_RESPONSE_BYTES
MiB = 1 << 20


# -- compressed bodies ----------------------------------------------------------------


@functools.cache
def _compress_zeros(size: int, wbits: int) -> bytes:
    """``size`` zero bytes compressed with zlib's ``wbits``, without holding them all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    return b"".join(parts) + compressor.flush()


def gzip_zeros(size: int) -> bytes:
    return _compress_zeros(size, 16 + zlib.MAX_WBITS)


def zlib_zeros(size: int) -> bytes:
    return _compress_zeros(size, zlib.MAX_WBITS)


def raw_deflate_zeros(size: int) -> bytes:
    return _compress_zeros(size, -zlib.MAX_WBITS)


def _optional(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


BROTLI = _optional("brotli", "brotlicffi")
ZSTD = _optional("compression.zstd", "backports.zstd")
#: Whether br and zstd bodies can be decoded here: brotli needs 1.2+ (output limits per call).
DECODABLE = {
    "br": BROTLI is not None and hasattr(BROTLI.Decompressor(), "can_accept_more_data"),
    "zstd": ZSTD is not None,
}
PLACEHOLDER = b"\x8b\x00 not decodable here \x00"  # a br/zstd body where no module decodes it


@functools.cache
def brotli_zeros(size: int) -> bytes:
    if BROTLI is None:
        return PLACEHOLDER
    compressor = BROTLI.Compressor(quality=1)
    block = bytes(MiB)
    step = getattr(compressor, "process", None) or compressor.compress
    parts = [step(block) for _ in range(size // MiB)]
    return b"".join(parts) + compressor.finish()


@functools.cache
def zstd_zeros(size: int) -> bytes:
    if ZSTD is None:
        return PLACEHOLDER
    compressor = ZSTD.ZstdCompressor()
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    return b"".join(parts) + compressor.flush()


def encode(coding: str, data: bytes) -> bytes:
    """``data`` encoded with one Content-Encoding (a placeholder where no module can)."""
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "deflate-raw":
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()
    if coding == "br":
        return PLACEHOLDER if BROTLI is None else bytes(BROTLI.compress(data))
    if coding == "zstd":
        return PLACEHOLDER if ZSTD is None else bytes(ZSTD.compress(data))
    raise AssertionError(coding)


BOMB = 256 * MiB  # inflated size of each bomb: 256 times the cap


def _bombs() -> Iterator[Any]:
    yield pytest.param("gzip", lambda: gzip_zeros(BOMB), id="gzip")
    yield pytest.param("gzip, gzip", lambda: gzip.compress(gzip_zeros(BOMB)), id="gzip-gzip")
    yield pytest.param(
        "gzip, gzip, gzip",
        lambda: gzip.compress(gzip.compress(gzip_zeros(BOMB))),
        id="gzip-gzip-gzip",
    )
    yield pytest.param("deflate", lambda: zlib_zeros(BOMB), id="deflate-zlib")
    yield pytest.param("deflate", lambda: raw_deflate_zeros(BOMB), id="deflate-raw")
    yield pytest.param(
        "deflate, gzip", lambda: gzip.compress(zlib_zeros(BOMB)), id="deflate-then-gzip"
    )
    yield pytest.param("br", lambda: brotli_zeros(BOMB), id="br")
    yield pytest.param("zstd", lambda: zstd_zeros(BOMB), id="zstd")


def refusal(coding: str) -> str:
    """What a bomb in ``coding`` is refused with: the cap, or (no module) the coding's name."""
    name = coding.rsplit(",", maxsplit=1)[-1].strip()
    if DECODABLE.get(name, True):
        return "larger than 1048576 bytes"
    return f"Content-Encoding {name!r}, which this client cannot decode"


def raw_reply(
    body: bytes, coding: str | None, status: int = 200, content_type: str = "application/json"
) -> Callable[[httpx.Request, int], httpx.Response]:
    """A token endpoint that answers with ``body`` as it is on the wire (not yet decoded)."""
    headers = {"Content-Type": content_type}
    if coding is not None:
        headers["Content-Encoding"] = coding

    def reply(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))

    return reply


class PeakMemory:
    """Peak traced memory above what was in use when measuring began."""

    def __enter__(self) -> PeakMemory:
        tracemalloc.start()
        self._base = tracemalloc.get_traced_memory()[0]
        self.peak = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = tracemalloc.get_traced_memory()[1] - self._base
        tracemalloc.stop()


@pytest.mark.parametrize(("coding", "make_body"), list(_bombs()))
async def test_t7_compression_bombs_are_refused_within_bounded_memory(
    env: Env, coding: str, make_body: Callable[[], bytes]
) -> None:
    """T7: a body that inflates to 256 MiB (one layer or stacked) is refused at the 1 MiB cap,
    and reading it never holds more than a few MiB."""
    body = make_body()
    assert len(body) < MAX_RESPONSE_BYTES  # small on the wire: only decoding makes it big
    env.auth_server.reply = raw_reply(body, coding)
    env.make()
    with PeakMemory() as memory, pytest.raises(UnexpectedTokenResponseError) as info:
        await env.request()
    assert refusal(coding) in str(info.value)
    assert info.value.status_code == 200
    assert memory.peak < MEMORY_BOUND, f"peak {memory.peak / MiB:.1f} MiB"
    assert env.api.requests == []


@pytest.mark.parametrize(
    "coding",
    [
        "gzip",
        "x-gzip",
        "deflate",
        "deflate-raw",
        "identity",
    ],
)
async def test_t7_compressed_token_responses_still_parse(env: Env, coding: str) -> None:
    """T7: a token response in any coding we decode gives its token to the API request."""
    token = dumps(token_json("compressed-token", scope="a b"))
    wire = token if coding == "identity" else encode(coding.removeprefix("x-"), token)
    header = "deflate" if coding == "deflate-raw" else coding
    env.auth_server.reply = raw_reply(wire, header)
    env.make()
    response = await env.request()
    assert response.status_code == 200
    assert env.api.tokens() == ["compressed-token"]


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_t7_br_and_zstd_decode_where_a_module_can(env: Env, coding: str) -> None:
    """T7: br (brotli 1.2+) and zstd (compression.zstd, backports.zstd) token responses parse
    where such a module is installed; elsewhere the error names the coding and what to install."""
    env.auth_server.reply = raw_reply(encode(coding, dumps(token_json("packed"))), coding)
    env.make()
    if DECODABLE[coding]:
        await env.request()
        assert env.api.tokens() == ["packed"]
        return
    with pytest.raises(UnexpectedTokenResponseError, match="install") as info:
        await env.request()
    assert f"Content-Encoding {coding!r}, which this client cannot decode" in str(info.value)


class Dribble(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that arrives ``size`` bytes at a time, sync or async."""

    def __init__(self, body: bytes, size: int) -> None:
        self._chunks = [body[i : i + size] for i in range(0, len(body), size)]

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def dribbled_reply(
    body: bytes, coding: str, size: int
) -> Callable[[httpx.Request, int], httpx.Response]:
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    return lambda request, n: httpx.Response(200, headers=headers, stream=Dribble(body, size))


@pytest.mark.parametrize(
    ("coding", "wire"),
    [
        ("gzip", gzip.compress(dumps(token_json("dribbled")))),
        ("deflate", zlib.compress(dumps(token_json("dribbled")))),
        ("deflate", encode("deflate-raw", dumps(token_json("dribbled")))),
        ("deflate, gzip", gzip.compress(zlib.compress(dumps(token_json("dribbled"))))),
        ("gzip", gzip.compress(dumps(token_json("dribbled"))) + b"trailing garbage"),
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw", "stacked", "gzip-then-garbage"],
)
async def test_t7_bodies_arriving_a_byte_at_a_time_decode(
    env: Env, coding: str, wire: bytes
) -> None:
    """T7: decoding works across chunk boundaries (a deflate header split in two included);
    data after the end of a gzip stream is ignored, as httpx does."""
    env.auth_server.reply = dribbled_reply(wire, coding, 1)
    env.make()
    await env.request()
    assert env.api.tokens() == ["dribbled"]


async def test_t7_a_bomb_in_small_chunks_is_refused_within_bounded_memory(env: Env) -> None:
    """T7: a gzip bomb arriving 4 KiB at a time is refused at the cap, a few MiB at most."""
    env.auth_server.reply = dribbled_reply(gzip.compress(gzip_zeros(BOMB)), "gzip, gzip", 4096)
    env.make()
    with PeakMemory() as memory, pytest.raises(UnexpectedTokenResponseError, match="larger"):
        await env.request()
    assert memory.peak < MEMORY_BOUND, f"peak {memory.peak / MiB:.1f} MiB"


async def test_t7_stacked_codings_are_undone_last_first(env: Env) -> None:
    """T7: ``Content-Encoding: deflate, gzip`` means gzip(deflate(body)); decoded in reverse."""
    wire = gzip.compress(zlib.compress(dumps(token_json("stacked"))))
    env.auth_server.reply = raw_reply(wire, "deflate, identity, GZIP")
    env.make()
    await env.request()
    assert env.api.tokens() == ["stacked"]


async def test_t7_error_bodies_are_decoded_too(env: Env) -> None:
    """T7: a gzip-encoded RFC 6749 §5.2 error still gives the typed error with its fields."""
    wire = gzip.compress(dumps({"error": "invalid_client", "error_description": "who?"}))
    env.auth_server.reply = raw_reply(wire, "gzip", status=401)
    env.make()
    with pytest.raises(InvalidClientError) as info:
        await env.request()
    assert info.value.error_description == "who?"


async def test_t7_empty_encoded_body_is_an_empty_body(env: Env) -> None:
    """T7: a 503 with ``Content-Encoding: gzip`` and no body is the usual 'not OAuth' error."""
    env.auth_server.reply = raw_reply(b"", "gzip", status=503, content_type="text/html")
    env.make(retry=None)
    with pytest.raises(UnexpectedTokenResponseError, match="HTTP 503 without an OAuth") as info:
        await env.request()
    assert info.value.status_code == 503


@pytest.mark.parametrize(
    ("coding", "name"),
    [
        ("compress", "compress"),
        ("x-custom\x1b[31m", "x-custom [31m"),
        ("gzip, snappy", "snappy"),
    ],
)
async def test_t7_a_coding_we_cannot_decode_is_named(env: Env, coding: str, name: str) -> None:
    """T7: an unknown Content-Encoding is an UnexpectedTokenResponseError naming it, sanitized."""
    env.auth_server.reply = raw_reply(b"\x00\x01\x02", coding)
    env.make()
    with pytest.raises(UnexpectedTokenResponseError) as info:
        await env.request()
    assert f"Content-Encoding {name!r}" in str(info.value)
    assert "\x1b" not in str(info.value)
    assert info.value.status_code == 200
    assert env.api.requests == []


@pytest.mark.parametrize(
    ("coding", "wire", "message"),
    [
        ("gzip", b"this is not gzip at all", "not valid gzip data"),
        ("deflate", b"\x78\x9c\xff\xff\xff\xff", "not valid deflate data"),
        ("gzip", gzip.compress(b'{"access_token": "x"}')[:-12], "ends before its gzip data"),
        ("deflate", b"\x78", "ends before its deflate data"),
        ("gzip, gzip, gzip, gzip, gzip, gzip", b"x", "6 stacked Content-Encodings"),
    ],
    ids=["bad-gzip", "bad-deflate", "truncated-gzip", "one-byte-deflate", "six-codings"],
)
async def test_t7_broken_encoded_bodies_are_typed_errors(
    env: Env, coding: str, wire: bytes, message: str
) -> None:
    """T7: corrupt, truncated or absurdly stacked bodies are UnexpectedTokenResponseError."""
    env.auth_server.reply = raw_reply(wire, coding)
    env.make()
    with pytest.raises(UnexpectedTokenResponseError, match=message) as info:
        await env.request()
    assert info.value.status_code == 200
    assert info.value.content_type == "application/json"


async def test_t7_raw_body_is_capped_before_decoding(env: Env) -> None:
    """T7: more than 1 MiB on the wire is refused even if it would decode to little."""
    wire = gzip.compress(dumps(token_json("t"))) + b"\x00" * (MAX_RESPONSE_BYTES + 1)
    env.auth_server.reply = raw_reply(wire, "gzip")
    env.make()
    with pytest.raises(UnexpectedTokenResponseError, match="larger than"):
        await env.request()


async def test_t7_we_ask_only_for_codings_we_decode(env: Env) -> None:
    """T7: the token request's Accept-Encoding lists gzip and deflate, and every coding it lists
    decodes: the client's own default (which may offer zstd or br) is not what is sent."""
    env.make()
    await env.request()
    offered = [c.strip() for c in env.auth_server.requests[0].headers["accept-encoding"].split(",")]
    assert offered[:2] == ["gzip", "deflate"]
    assert set(offered) <= {"gzip", "deflate", "br", "zstd"}
    assert ("br" in offered) == DECODABLE["br"]
    assert ("zstd" in offered) == DECODABLE["zstd"]
    for coding in offered:
        env.auth_server.reply = raw_reply(encode(coding, dumps(token_json(coding))), coding)
        env.clock.advance(7200)  # the token expired: the next request fetches again
        await env.request()
    assert env.api.tokens()[1:] == offered


# -- a real server on 127.0.0.1 ---------------------------------------------------------


class LoopbackServer:
    """A token endpoint on 127.0.0.1 that writes whatever ``respond`` writes to the socket."""

    def __init__(self, respond: Callable[[socket.socket], None]) -> None:
        self._respond = respond
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/token"
        self.requests = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(WAIT)
                self._read_request(conn)
                self.requests += 1
                with contextlib.suppress(OSError):  # the client went away, as a drip test expects
                    self._respond(conn)

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)

    def stopped(self) -> bool:
        return self._stop.is_set()


def send_body(body: bytes, coding: str | None) -> Callable[[socket.socket], None]:
    def respond(conn: socket.socket) -> None:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        )
        if coding:
            head += f"Content-Encoding: {coding}\r\n"
        conn.sendall(head.encode() + b"\r\n" + body)

    return respond


@pytest.mark.parametrize(
    ("coding", "make_body"),
    [
        pytest.param("gzip", lambda: gzip_zeros(BOMB), id="gzip"),
        pytest.param("gzip, gzip", lambda: gzip.compress(gzip_zeros(BOMB)), id="gzip-gzip"),
    ],
)
async def test_t7_bombs_from_a_real_server_stay_within_bounded_memory(
    env: Env, coding: str, make_body: Callable[[], bytes]
) -> None:
    """T7: over a real loopback connection, TokenAuth's own token client refuses a bomb
    at the cap and peak memory stays a few MiB."""
    body = make_body()
    with LoopbackServer(send_body(body, coding)) as server:
        env.make(ClientCredentials(server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET))
        with PeakMemory() as memory, pytest.raises(UnexpectedTokenResponseError, match="larger"):
            await env.request()
    assert memory.peak < MEMORY_BOUND, f"peak {memory.peak / MiB:.1f} MiB"
    assert server.requests == 1


async def test_t7_gzip_token_from_a_real_server_parses(env: Env) -> None:
    """T7: a gzip-encoded token response from a real loopback server authenticates the call."""
    body = gzip.compress(dumps(token_json("from-loopback")))
    with LoopbackServer(send_body(body, "gzip")) as server:
        env.make(ClientCredentials(server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET))
        response = await env.request()
    assert response.status_code == 200
    assert env.api.tokens() == ["from-loopback"]


# -- the retry deadline while the body drips in ------------------------------------------


def drip(conn: socket.socket) -> None:
    """Headers at once, then the body one byte every 0.2 s (each byte resets a read timeout)."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    for _ in range(int(WAIT / 0.2)):  # gives up after WAIT seconds: a deadlock guard
        conn.sendall(b" ")
        time.sleep(0.2)


def token_request(url: str) -> TokenRequest:
    return TokenRequest(url=url, headers=BASE_HEADERS, form=(("grant_type", "client_credentials"),))


@pytest.fixture
def http_lib(lib: str) -> HTTPLib:
    """The HTTPLib record of the library under test."""
    return HTTPLib.of(importlib.import_module(lib))


def test_t8_send_sync_gives_up_on_a_dripping_body_at_the_deadline(http_lib: HTTPLib) -> None:
    """T8: a body dripping a byte per 0.2 s raises DeadlineExceededError once deadline_at passes,
    though no read ever times out."""
    with (
        LoopbackServer(drip) as server,
        http_lib.Client(timeout=WAIT) as client,
        pytest.raises(DeadlineExceededError) as info,
    ):
        send_sync(
            http_lib,
            client,
            token_request(server.url + "?tenant=x"),
            deadline_at=time.monotonic() + 1.0,
        )
    assert str(info.value) == (
        f"token request to {server.url} did not finish within the retry deadline"
    )
    assert isinstance(info.value, TokenTransportError)  # what retry logic and callers expect
    assert info.value.token_url == server.url
    assert server.requests == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_t8_send_async_gives_up_on_a_dripping_body_at_the_deadline(
    http_lib: HTTPLib,
) -> None:
    """T8: the async mirror: a dripping body raises DeadlineExceededError at deadline_at."""
    with LoopbackServer(drip) as server:
        async with http_lib.AsyncClient(timeout=WAIT) as client:
            with anyio.fail_after(WAIT), pytest.raises(DeadlineExceededError) as info:
                await send_async(
                    http_lib, client, token_request(server.url), deadline_at=time.monotonic() + 1.0
                )
    assert info.value.token_url == server.url


def test_t8_deadline_in_the_past_stops_before_the_body(http_lib: HTTPLib, lib: str) -> None:
    """T8: a response whose headers arrive after deadline_at is abandoned; None means no limit."""
    env = Env("sync", lib)
    body = dumps(token_json("in-time"))
    transport = env.transport(lambda request: httpx.Response(200, stream=httpx.ByteStream(body)))
    request = token_request("https://as.example/token")
    with http_lib.Client(transport=transport) as client:
        with pytest.raises(DeadlineExceededError):
            send_sync(http_lib, client, request, deadline_at=time.monotonic() - 1.0)
        assert send_sync(http_lib, client, request, deadline_at=None).body == body
        late = time.monotonic() + 3600.0
        assert send_sync(http_lib, client, request, deadline_at=late).body == body


# -- URLs: no userinfo in any message, no invisible characters, no port 0 -----------------

PASSWORD = "Secr3tPassw0rd"


@pytest.mark.parametrize(
    "url",
    [
        f"https://svc:{PASSWORD}/x@as.example/token",
        f"https://svc:{PASSWORD}#x@as.example/token",
        f"https://svc:{PASSWORD}?x@as.example/token",
        f"https://svc:x/{PASSWORD}@as.example/token",
        f"https://svc:x#{PASSWORD}@as.example/token",
        f"https://svc:x?{PASSWORD}@as.example/token",
        f"https://svc:{PASSWORD}@as.example/token",
        f"https://svc:{PASSWORD}@as.example:99999/token",
        f"https://svc:{PASSWORD}@[::1/token",
        f"https://svc/{PASSWORD}@as.example/token",
        f"https://sv/c:{PASSWORD}@as.example/token",
        f"https://svc:{PASSWORD}@as.example:0/token",
        f"http://svc:{PASSWORD}@as.example/token",
        f"svc:{PASSWORD}@as.example/token",
        f"//svc:{PASSWORD}@as.example/token",
        f"https:svc:{PASSWORD}@as.example/token",
        f"ftp://svc:{PASSWORD}/x@as.example/token",
        "https://svc:48213/x@as.example/token",  # a password of digits, up to a '/'
        "https://svc:48213?x@as.example/token",
    ],
)
def test_t9_url_errors_never_carry_the_userinfo(url: str) -> None:
    """T9: a token URL with user:password, however the password breaks the parse, is refused
    by a ConfigurationError whose str and repr hold no part of the password."""
    with pytest.raises(ConfigurationError) as info:
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    secret = "48213" if "48213" in url else PASSWORD
    for text in (str(info.value), repr(info.value)):
        assert secret not in text
        assert "x@" not in text


_URL_CHARS = st.sampled_from(list("/?#@:[]%.-_~!$&'()*+,;=") + list("aZ09"))


@given(
    user=st.text(_URL_CHARS, max_size=6),
    before=st.text(_URL_CHARS, max_size=6),
    after=st.text(_URL_CHARS, max_size=6),
    host=st.sampled_from(["as.example", "127.0.0.1", "[::1]", "as.example:8443", ""]),
    scheme=st.sampled_from(["https://", "http://", "ftp://", "https:", "//", ""]),
    tail=st.sampled_from(["/token", "", "/t?x=1", "#f", "/a@b"]),
)
@settings(max_examples=FUZZ_EXAMPLES // 2)
def test_t9_no_url_shape_leaks_the_password(
    user: str, before: str, after: str, host: str, scheme: str, tail: str
) -> None:
    """T9: for any user:password@ shape (delimiters in user or password included), neither the
    token URL refusal nor redacted_url quotes the password."""
    url = f"{scheme}{user}:{before}{PASSWORD}{after}@{host}{tail}"
    assert PASSWORD not in redacted_url(url)
    with pytest.raises(ConfigurationError) as info:
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://as.example/token", "https://as.example/token"),
        ("https://as.example:8443/oauth2/token?tenant=x#f", "https://as.example:8443/oauth2/token"),
        ("https://u:p@as.example/token", "https://as.example/token"),
        ("http://[::1]:9000/token", "http://[::1]:9000/token"),
        ("https://api.example/users?email=a@b.example", "https://api.example/users"),
        ("https://api.example/u?email=a@b.example#x", "https://api.example/u"),
        ("https://api.example:8443/u?email=a@b.example", "https://…@b.example"),
        ("https://[::1]/u?email=a@b.example", "https://[::1]/u"),
        ("https://svc:pw/x@as.example/token", "https://…@as.example/token"),
        ("https://as.example:99999/token", "<invalid URL>"),
    ],
)
def test_t9_redacted_url_keeps_scheme_host_port_and_path(url: str, shown: str) -> None:
    """T9: redacted_url shows where a request goes, and when an '@' makes that ambiguous,
    only what follows the last '@'."""
    assert redacted_url(url) == shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://as.example:0/token", "port 0"),
        ("https://as.example/token\u00a0", "whitespace or an invisible character"),
        ("https://as.example/to\u2003ken", "whitespace or an invisible character"),
        ("\u3000https://as.example/token", "whitespace or an invisible character"),
        ("https://as.example/token\u200b", "whitespace or an invisible character"),
        ("https://as.example/token\ufeff", "whitespace or an invisible character"),
        ("https://as.example/token\u2028", "whitespace or an invisible character"),
        ("https://as.example/token\x85", "control character"),
        ("https://as.example/tenant@x/token", "'@'"),
        ("https://as.example:99999/token", "port"),
        ("https://[::1/token", "IPv6"),
    ],
)
def test_t10_questionable_token_urls_are_refused_at_construction(url: str, message: str) -> None:
    """T10: port 0, Unicode whitespace and invisible characters, an unencoded '@', and
    unparseable ports or hosts are ConfigurationErrors that say what to fix."""
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        ClientCredentials(url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.mark.parametrize(
    "url",
    [
        "https://as.example/token",
        "https://as.example:8443/oauth2/v2.0/token?tenant=x",
        "https://bücher.example/token",
        "https://as.example/tenant%40x/token",
        "http://127.0.0.1:1/token",
    ],
)
def test_t10_ordinary_token_urls_are_still_accepted(url: str) -> None:
    """T10: the stricter checks leave ordinary URLs (IDN hosts, %40, any real port) alone."""
    assert ClientCredentials(url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET).token_url == url


# -- retry policies that cannot work are refused --------------------------------------------


@pytest.mark.parametrize("name", ["backoff", "max_backoff", "retry_after_cap", "deadline"])
@pytest.mark.parametrize(
    "value", [1e300, 86_400.5, 10**400], ids=["1e300", "a-day-and-a-bit", "10**400"]
)
def test_t11_retry_seconds_beyond_a_day_are_refused(name: str, value: float) -> None:
    """T11: a backoff, cap or deadline over one day (1e300 used to overflow time.sleep, or
    sleep forever in async) is a ConfigurationError at construction."""
    with pytest.raises(ConfigurationError, match=rf"{name} must be .* at most 86400") as info:
        RetryPolicy(**{name: value})  # type: ignore[arg-type]
    assert isinstance(info.value, TokenError)


def test_t11_a_zero_deadline_is_refused() -> None:
    """T11: deadline=0 would give up before the first attempt: refused, saying why."""
    with pytest.raises(ConfigurationError, match="deadline must be more than 0"):
        RetryPolicy(deadline=0)


def test_t11_a_day_is_the_largest_accepted_value() -> None:
    """T11: one day for every bound is accepted, and its delays stay within a day."""
    day = 86_400
    policy = RetryPolicy(
        attempts=3, backoff=day, max_backoff=day, retry_after_cap=day, deadline=day
    )
    state = policy.start(0.0)
    delay = state.delay(TokenTransportError("x", token_url="https://as.example/t"), 0.0)
    assert delay is not None
    assert 0 <= delay < day


def test_t11_many_attempts_never_overflow_the_backoff() -> None:
    """T11: the 2000th retry's delay is the capped bound, not an OverflowError from 2.0**n."""
    policy = RetryPolicy(
        attempts=5000, backoff=0.5, max_backoff=8, deadline=86_400, random=lambda: 0.5
    )
    state = policy.start(0.0)
    error = TokenTransportError("x", token_url="https://as.example/t")
    delays = [state.delay(error, 0.0) for _ in range(2000)]
    assert delays[-1] == 4.0
    assert state.attempt == 2001


# -- client ids and secrets: questionable values refused, non-VSCHAR ones warned about -----

TOKEN_URL_OK = "https://as.example/token"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ID = "svc-client"
SECRET_BASE = "Zq9-" + "k" * 40  # long enough for client_secret_jwt with HS256
SECRET_METHODS = {
    "basic": ClientSecretBasic,
    "post": ClientSecretPost,
    "jwt": ClientSecretJWT,
}
_QUESTIONABLE = [
    pytest.param("", "must be a non-empty string", id="empty"),
    pytest.param("   ", "blank", id="blank"),
    pytest.param("\t\n", "blank", id="blank-controls"),
    pytest.param("{}\n", "leading or trailing whitespace", id="line-ending"),
    pytest.param("{}\r\n", "leading or trailing whitespace", id="crlf"),
    pytest.param(" {}", "leading or trailing whitespace", id="leading-space"),
    pytest.param("{} ", "leading or trailing whitespace", id="trailing-space"),
    pytest.param("{}\u00a0", "leading or trailing whitespace", id="trailing-nbsp"),
    pytest.param("\u3000{}", "leading or trailing whitespace", id="leading-ideographic"),
    pytest.param("{}\u2003", "leading or trailing whitespace", id="trailing-em-space"),
    pytest.param("a\x00{}", "control or invisible character", id="nul"),
    pytest.param("a\x1b[31m{}", "control or invisible character", id="escape"),
    pytest.param("a\x7f{}", "control or invisible character", id="del"),
    pytest.param("a\x85{}", "control or invisible character", id="c1-nel"),
    pytest.param("a\u200b{}", "control or invisible character", id="zero-width-space"),
    pytest.param("a\u2028{}", "control or invisible character", id="line-separator"),
    pytest.param("\ufeff{}", "control or invisible character", id="byte-order-mark"),
    pytest.param("a\u202e{}", "control or invisible character", id="bidi-override"),
]


@pytest.mark.parametrize(("template", "message"), _QUESTIONABLE)
@pytest.mark.parametrize("method", sorted(SECRET_METHODS))
def test_b8_questionable_secrets_are_refused_without_echoing_them(
    template: str, message: str, method: str
) -> None:
    """B8: a blank secret, one with leading/trailing whitespace (Unicode spaces included) or
    with a control or invisible character is refused at construction; the message names
    client_secret and holds no part of the secret."""
    secret = template.format(SECRET_BASE if "{}" in template else "")
    with pytest.raises(ConfigurationError, match=message) as info:
        ClientCredentials(
            TOKEN_URL_OK, client_id=ID, client_secret=secret, client_auth=SECRET_METHODS[method]()
        )
    for text in (str(info.value), repr(info.value)):
        assert "client_secret" in text
        assert SECRET_BASE[:8] not in text


CLIENT_ID_TAKERS: dict[str, Callable[[str], object]] = {
    "client-credentials": lambda client_id: ClientCredentials(
        TOKEN_URL_OK, client_id=client_id, client_secret=SECRET_BASE
    ),
    "jwt-bearer": lambda client_id: JWTBearerGrant(
        TOKEN_URL_OK,
        issuer="svc@example",
        subject="user@example",
        key=EC_KEY,
        algorithm="ES256",
        client_id=client_id,
        client_secret=SECRET_BASE,
    ),
    "private-key-jwt": lambda client_id: ClientCredentials(
        TOKEN_URL_OK, client_id=client_id, client_auth=PrivateKeyJWT(key=EC_KEY, algorithm="ES256")
    ),
}


@pytest.mark.parametrize(("template", "message"), _QUESTIONABLE)
@pytest.mark.parametrize("where", sorted(CLIENT_ID_TAKERS))
def test_b8_questionable_client_ids_are_refused(template: str, message: str, where: str) -> None:
    """B8: the same client_id values are refused wherever a client id is taken."""
    client_id = template.format("svc-client" if "{}" in template else "")
    with pytest.raises(ConfigurationError, match=message) as info:
        CLIENT_ID_TAKERS[where](client_id)
    assert "client_id" in str(info.value)


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        ("client %&+-_.!~*'()", "p+q:r%s=é"),  # SPEC B1's pair: é is outside VSCHAR
        ("ü-client", "plain-secret"),
        ("svc", "密码 with spaces"),
        ("svc", "pässword-Zq9"),
    ],
)
def test_b9_non_vschar_credentials_warn_but_still_work(client_id: str, secret: str) -> None:
    """B9: an id or secret outside RFC 6749 Appendix A's VSCHAR (%x20-7E) gets a
    NonVSCHARWarning pointing at the caller, without the secret in it, and is still sent
    correctly encoded (SPEC B1)."""
    with pytest.warns(NonVSCHARWarning) as caught:
        grant = ClientCredentials(TOKEN_URL_OK, client_id=client_id, client_secret=secret)
    assert {w.filename for w in caught} == {__file__}  # the line that made the grant
    for warning in caught:
        text = str(warning.message)
        assert secret not in text
        assert "VSCHAR" in text
        assert isinstance(warning.message, UserWarning)
        assert isinstance(warning.message, TokenError)  # with -W error, still one root
    fields = {str(w.message).split(" ", 1)[0] for w in caught}
    expected = {"client_id"} if not client_id.isascii() else set()
    expected |= {"client_secret"} if not secret.isascii() else set()
    assert fields == expected
    header = dict(grant.token_request(0.0).headers)["Authorization"]
    encoded_id, _, encoded_secret = (
        base64.b64decode(header.removeprefix("Basic ")).decode("ascii").partition(":")
    )
    assert (unquote_plus(encoded_id), unquote_plus(encoded_secret)) == (client_id, secret)


def test_b9_vschar_credentials_do_not_warn() -> None:
    """B9: printable ASCII, inner spaces and every reserved character included, is silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ClientCredentials(
            TOKEN_URL_OK, client_id="client %&+-_.!~*'()", client_secret='p+q:r%s= ~"{}'
        )
        ClientCredentials(
            TOKEN_URL_OK,
            client_id="svc",
            client_secret=SECRET_BASE,
            client_auth=ClientSecretJWT(),
        )


def test_b9_non_vschar_warning_for_secret_jwt_and_jwt_bearer() -> None:
    """B9: client_secret_jwt secrets and a JWT-bearer grant's client id warn the same way."""
    with pytest.warns(NonVSCHARWarning, match="client_secret"):
        ClientCredentials(
            TOKEN_URL_OK, client_id="svc", client_secret="é" * 16, client_auth=ClientSecretJWT()
        )
    with pytest.warns(NonVSCHARWarning, match="client_id"):
        JWTBearerGrant(
            TOKEN_URL_OK,
            issuer="svc@example",
            subject="user@example",
            key=EC_KEY,
            algorithm="ES256",
            client_id="clïent",
            client_auth=PrivateKeyJWT(key=EC_KEY, algorithm="ES256"),
        )


# -- server text in messages ------------------------------------------------------------------

HOSTILE = "bad\r\nX-Injected: yes\x00\x1b[31m\u2028\u2029\x85\u202e\ufeffend"
_CONTROLS = ["\r", "\n", "\x00", "\x1b", "\u2028", "\u2029", "\x85", "\u202e", "\ufeff"]


def parse(status: int, body: dict[str, Any]) -> TokenError:
    """The error parse_token_response raises for this JSON answer."""
    headers = {"content-type": "application/json"}
    with pytest.raises(TokenError) as info:
        parse_token_response(RawResponse(status, headers, dumps(body)), received_at=0.0)
    return info.value


def assert_clean(message: str) -> None:
    for char in _CONTROLS:
        assert char not in message, repr(char)


def test_e6_error_description_in_the_message_is_sanitized_and_short() -> None:
    """E6: a hostile error_description reaches the message without CR/LF, NUL, C0/C1 or
    Unicode line, paragraph and bidi controls, cut to 200 characters with an ellipsis;
    error_description keeps the server's text exactly."""
    description = HOSTILE + "x" * 5000
    error = parse(400, {"error": "invalid_grant", "error_description": description})
    assert isinstance(error, InvalidGrantError)
    message = str(error)
    assert_clean(message)
    assert "bad X-Injected: yes [31m end" in message
    quoted = message.split("invalid_grant: ", 1)[1].rsplit(" (HTTP 400)", 1)[0]
    assert len(quoted) == 200
    assert quoted.endswith("…")
    assert error.error_description == description


def test_e6_error_code_and_uri_in_the_message_are_sanitized() -> None:
    """E6: an unknown error code and an error_uri with controls are cleaned in the message and
    kept as sent in .error and .error_uri."""
    code = "weird_code\r\nSet-Cookie: x"
    uri = "https://as.example/errors\r\n\x1b[2J" + "/" * 1000
    error = parse(400, {"error": code, "error_uri": uri})
    assert isinstance(error, TokenEndpointError)
    message = str(error)
    assert_clean(message)
    assert "weird_code Set-Cookie: x" in message
    assert len(message) < 400
    assert (error.error, error.error_uri) == (code, uri)


def test_e6_token_type_and_content_type_in_messages_are_sanitized() -> None:
    """E6: a hostile token_type or Content-Type never brings control characters into the
    message; .token_type and .content_type keep what was sent."""
    error = parse(200, {"access_token": "t", "token_type": HOSTILE})
    assert isinstance(error, UnsupportedTokenTypeError)
    assert_clean(str(error))
    assert error.token_type == HOSTILE
    content_type = "text/html\x85\u2028; charset=\x1b[31m"
    with pytest.raises(UnexpectedTokenResponseError) as info:
        parse_token_response(
            RawResponse(502, {"content-type": content_type}, b"<html>down</html>"),
            received_at=0.0,
        )
    assert_clean(str(info.value))
    assert "text/html" in str(info.value)
    assert info.value.content_type == content_type


async def test_e6_server_text_is_sanitized_through_token_auth(env: Env) -> None:
    """E6: the caller of a TokenAuth request sees the cleaned message and the raw fields."""
    body = {"error": "invalid_client", "error_description": HOSTILE}
    env.auth_server.reply = lambda request, n: httpx.Response(401, json=body)
    env.make()
    with pytest.raises(InvalidClientError) as info:
        await env.request()
    assert_clean(str(info.value))
    assert info.value.error_description == HOSTILE


# -- Token pickles and deep-copies ----------------------------------------------------------


def _parsed_token() -> Token:
    body = token_json(
        "opaque-access-token-value",
        expires_in=3600,
        scope="read write",
        refresh_token="refresh-value",
        id_token="header.payload.sig",
        nested={"a": [1, 2, {"b": None}]},
    )
    raw = RawResponse(200, {"content-type": "application/json"}, dumps(body))
    return parse_token_response(raw, received_at=1_000.0)


def _fields(token: Token) -> tuple[object, ...]:
    return (
        token.access_token,
        token.token_type,
        token.expires_at,
        token.received_at,
        token.scope,
        dict(token.extra),
    )


COPIES: dict[str, Callable[[Token], Token]] = {
    **{
        f"pickle-{protocol}": lambda t, p=protocol: pickle.loads(pickle.dumps(t, protocol=p))  # noqa: S301
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1)
    },
    "deepcopy": copy.deepcopy,
    "copy": copy.copy,
}


@pytest.mark.parametrize("how", sorted(COPIES))
def test_r12_token_round_trips_through_pickle_and_copy(how: str) -> None:
    """R12: pickle (every protocol), deepcopy and copy give a Token with every field, extra
    included and still read-only, the access token still out of repr, identity equality."""
    token = _parsed_token()
    restored = COPIES[how](token)
    assert type(restored) is Token
    assert _fields(restored) == _fields(token)
    assert isinstance(restored.extra, MappingProxyType)
    with pytest.raises(TypeError):
        restored.extra["refresh_token"] = "changed"  # type: ignore[index]
    assert "opaque-access-token-value" not in repr(restored)
    assert "refresh-value" not in repr(restored)
    assert restored.authorization == "Bearer opaque-access-token-value"
    assert restored != token  # eq=False: equality is identity, as before
    assert restored == restored  # noqa: PLR0124


def test_r12_deepcopy_copies_extra_and_keeps_a_plain_mapping_plain() -> None:
    """R12: deepcopy does not share extra's nested values; a Token built with a dict keeps one."""
    token = _parsed_token()
    clone = copy.deepcopy(token)
    assert clone.extra["nested"] == token.extra["nested"]
    assert clone.extra["nested"] is not token.extra["nested"]
    handmade = Token("abc", expires_at=5.0, extra={"k": [1]})
    again = pickle.loads(pickle.dumps(handmade))  # noqa: S301
    assert type(again.extra) is dict
    assert again.extra == {"k": [1]}
    assert (again.expires_at, again.received_at, again.scope) == (5.0, None, None)
