"""The HTTP-library side of the token request: sending it, reading a capped body, replayability.

The body is read raw and its Content-Encoding undone here, in bounded steps,
so that no answer, however compressed, costs more than a few MiB to refuse.

This is the only module that turns neutral TokenRequest / RawResponse values
into HTTP calls. It speaks to httpx and to httpx2 alike through HTTPLib, a
record of the classes it needs from one of them; the decisions stay in the
core.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import httpx

from ._errors import (
    TokenError,
    TokenTransportError,
    UnexpectedTokenResponseError,
    printable,
)
from ._request import TokenRequest
from ._token import MAX_RESPONSE_BYTES, RawResponse
from ._url import redacted_url

__all__ = [
    "HTTPX",
    "TIMEOUT_SECONDS",
    "DeadlineExceededError",
    "HTTPLib",
    "on_asyncio",
    "replayable",
    "root_cause",
    "send_async",
    "send_sync",
]

#: Timeout of the token clients TokenAuth creates: 10 s for each phase.
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True, eq=False)
class HTTPLib:
    """The classes the drivers need from one HTTP library (httpx or httpx2)."""

    name: str
    Client: Any
    AsyncClient: Any
    HTTPError: type[Exception]
    TimeoutException: type[Exception]
    ByteStream: type[Any]
    MultipartStream: type[Any] | None
    Timeout: Any
    create_ssl_context: Any
    BaseTransport: Any = None
    HTTPTransport: Any = None
    Limits: Any = None

    @classmethod
    def of(cls, module: ModuleType) -> HTTPLib:
        try:  # the multipart stream can be rendered again; its class is not public.
            multipart = importlib.import_module(f"{module.__name__}._multipart").MultipartStream
        except (ImportError, AttributeError):  # pragma: no cover - a release without it
            multipart = None
        return cls(
            name=module.__name__,
            Client=module.Client,
            AsyncClient=module.AsyncClient,
            HTTPError=module.HTTPError,
            TimeoutException=module.TimeoutException,
            ByteStream=module.ByteStream,
            MultipartStream=multipart,
            Timeout=module.Timeout,
            create_ssl_context=module.create_ssl_context,
            BaseTransport=module.BaseTransport,
            HTTPTransport=module.HTTPTransport,
            Limits=module.Limits,
        )

    def new_client(self) -> Any:
        """The sync token client TokenAuth makes: verification on, finite timeout, no redirects.

        Every such client in the process shares one TLS context and one
        connection pool (``shared_transport``), so a service holding a
        thousand credentials pays for the CA bundle once, not a thousand times.
        Cookies stay per client: nothing one credential's token endpoint sets
        reaches another's requests.
        """
        if proxies_configured():
            # httpx uses HTTP(S)_PROXY / NO_PROXY only for clients it builds its own
            # transport for; with a proxy configured, keep that (the TLS context is
            # still the shared one).
            return self.Client(
                timeout=self.Timeout(TIMEOUT_SECONDS),
                follow_redirects=False,
                verify=self.ssl_context(),
            )
        return self.Client(
            timeout=self.Timeout(TIMEOUT_SECONDS),
            follow_redirects=False,
            transport=self.shared_transport(),
        )

    def new_async_client(self) -> Any:
        """The async mirror, with the process's shared TLS context (its pool is per client)."""
        return self.AsyncClient(
            timeout=self.Timeout(TIMEOUT_SECONDS),
            follow_redirects=False,
            verify=self.ssl_context(),
        )

    def _shared_key(self) -> tuple[str, str | None, str | None]:
        # The default context honours SSL_CERT_FILE / SSL_CERT_DIR when it is made:
        # a process that changes them gets a context (and a pool) for the new ones.
        return (self.name, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))

    def has_ssl_context(self) -> bool:
        """Whether ``ssl_context()`` is ready (else it reads the CA bundle from disk)."""
        return self._shared_key() in _SSL_CONTEXTS

    def ssl_context(self) -> Any:
        """The default TLS context (certificate verification on), made once per process
        (and per SSL_CERT_FILE / SSL_CERT_DIR setting)."""
        key = self._shared_key()
        with _SHARED_LOCK:
            context = _SSL_CONTEXTS.get(key)
            if context is None:
                context = _SSL_CONTEXTS[key] = self.create_ssl_context()
            return context

    def shared_transport(self) -> Any:
        """One connection pool for every token client TokenAuth makes; closing a client
        leaves it open for the others."""
        key = self._shared_key()
        with _SHARED_LOCK:
            transport = _TRANSPORTS.get(key)
        if transport is None:
            # No cap on connections in use: with httpx's default of 100, a hundred fetches
            # hung at one tenant's token endpoint would hold up every other credential's.
            limits = self.Limits(max_connections=None, max_keepalive_connections=20)
            inner = self.HTTPTransport(verify=self.ssl_context(), limits=limits)
            with _SHARED_LOCK:
                transport = _TRANSPORTS.setdefault(key, _unclosable(self, inner))
        return transport


def proxies_configured() -> bool:
    """Whether httpx would send through a proxy it reads from the environment or the system
    (``urllib.request.getproxies()``): httpx uses the http, https and all entries only, so
    ``NO_PROXY`` alone, or ``FTP_PROXY``, names none."""
    import urllib.request  # noqa: PLC0415  (heavy; only when a token client is made)

    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies())


_SHARED_LOCK = threading.Lock()
_SSL_CONTEXTS: dict[tuple[str, str | None, str | None], Any] = {}
_TRANSPORTS: dict[tuple[str, str | None, str | None], Any] = {}


def _unclosable(lib: HTTPLib, inner: Any) -> Any:
    """``inner`` behind a transport whose close() does nothing: it is shared."""

    class SharedTransport(lib.BaseTransport):  # type: ignore[misc,name-defined]
        def handle_request(self, request: Any) -> Any:
            return inner.handle_request(request)

        def close(self) -> None:
            """Left open: other TokenAuth instances use this pool too."""

    return SharedTransport()


def _reset_after_fork() -> None:
    """A forked child gets pools of its own: the parent's sockets are not its to use."""
    global _SHARED_LOCK  # noqa: PLW0603
    _SHARED_LOCK = threading.Lock()
    _TRANSPORTS.clear()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)


HTTPX = HTTPLib.of(httpx)


class DeadlineExceededError(TokenTransportError):
    """A token request that the retry deadline ended.

    Raised by the drivers, and here while the body is read: for a server that
    sends its headers and then the body a byte at a time (each byte restarts
    the read timeout), the answer is still arriving when the deadline passes.
    """


def send_sync(
    lib: HTTPLib,
    client: Any,
    request: TokenRequest,
    *,
    timeout: Any = None,
    deadline_at: float | None = None,
) -> RawResponse:
    """POST the token request; no redirects, no client-level auth, body capped (SPEC T5, T6).

    ``timeout`` (the library's Timeout) overrides the client's, to keep within
    a retry deadline. ``deadline_at`` is a ``time.monotonic()`` value: a body
    still arriving then is abandoned with DeadlineExceededError. The body is read
    raw and its Content-Encoding decoded here, in bounded steps, so memory
    stays within a few times MAX_RESPONSE_BYTES whatever the server sends.
    Any failure to send is a TokenTransportError: an error from the HTTP
    library, or anything else a client or transport raises.
    """
    try:
        with client.stream(**_stream_args(request, timeout)) as response:
            body = _Body(response, request.url, deadline_at, _what(request))
            if response.is_stream_consumed:  # a transport that handed over a read response
                body.add_decoded(response.content)
            else:
                for chunk in response.iter_raw():
                    body.add(chunk)
            raw = body.raw()
    except TokenError:
        raise
    except Exception as exc:
        raise _transport_error(lib, exc, request.url) from exc
    return raw


def _stream_args(request: TokenRequest, timeout: Any = None) -> dict[str, Any]:
    """The token request as ``client.stream(...)`` arguments: no redirects, no client auth."""
    args: dict[str, Any] = {
        "method": request.method,
        "url": request.url,
        "headers": _with_accept_encoding(request.headers),
        "content": _content(request),
        "follow_redirects": False,
        "auth": None,
    }
    if timeout is not None:
        args["timeout"] = timeout
    return args


async def send_async(
    lib: HTTPLib, client: Any, request: TokenRequest, *, deadline_at: float | None = None
) -> RawResponse:
    """The async mirror of send_sync."""
    try:
        async with client.stream(**_stream_args(request)) as response:
            body = _Body(response, request.url, deadline_at, _what(request))
            if response.is_stream_consumed:
                body.add_decoded(response.content)
            else:
                chunks = response.aiter_raw()
                try:
                    async for chunk in chunks:
                        body.add(chunk)
                except Exception:
                    await _wind_down(response, chunks)
                    raise
                finally:
                    await chunks.aclose()
            raw = body.raw()
    except TokenError:
        raise
    except Exception as exc:
        raise _transport_error(lib, exc, request.url) from exc
    return raw


def _content(request: TokenRequest) -> bytes | None:
    """The body to send: the form for a token request, nothing for a metadata GET."""
    return None if request.method == "GET" else request.body


def _what(request: TokenRequest) -> str:
    """What the answer is, for messages about its body."""
    return "metadata document" if request.method == "GET" else "token endpoint response"


#: Steps a body iterator may take to reach its end once its response is closed.
_WIND_DOWN_STEPS = 4


async def _wind_down(response: Any, chunks: Any) -> None:
    """Close a response left unread, then let its chunk iterators come to their end.

    httpx (unlike httpx2) leaves the async generators under ``aiter_raw``
    suspended when it is abandoned, and trio warns about each one as it is
    collected. Once the response is closed, they end at their next step: a
    read from the closed connection fails, an in-memory stream runs out.
    """
    with contextlib.suppress(Exception):  # StopAsyncIteration, or the closed stream's error
        await response.aclose()
        for _ in range(_WIND_DOWN_STEPS):
            await chunks.__anext__()


# -- the body reader: raw size capped, Content-Encoding decoded in bounded steps -----------

#: The most one decompression step may produce: what a tiny hostile body can make us
#: hold at once, instead of the whole inflated body (httpx inflates a chunk in one go).
_STEP = 64 * 1024

#: Stacked Content-Encodings decoded at most (``gzip, gzip, ...``); urllib3 stops at 5 too.
_MAX_CODINGS = 5

#: RFC 8878 §3.1.1.1.2 / RFC 9659: HTTP zstd decoders need windows up to 8 MiB, no more.
_ZSTD_WINDOW_LOG_MAX = 23


class _Body:
    """Collects one token response body, refusing it past MAX_RESPONSE_BYTES.

    The cap applies to the bytes on the wire and to the output of every
    decoding stage; decoders are driven in steps of at most ``_STEP`` bytes
    and stop as soon as a stage passes the cap. ``deadline_at`` is checked
    as each chunk arrives.
    """

    __slots__ = ("_chunks", "_deadline_at", "_received", "_response", "_stages", "_url", "what")

    def __init__(
        self,
        response: Any,
        url: str,
        deadline_at: float | None,
        what: str = "token endpoint response",
    ) -> None:
        self.what = what
        self._response = response
        self._url = url
        self._deadline_at = deadline_at
        self._chunks: list[bytes] = []
        self._received = 0
        codings = response.headers.get("content-encoding") or ""
        self._stages = [_Stage(name, decoder, self) for name, decoder in _decoders(codings, self)]
        self._check_deadline()

    # what the stages and decoders report through
    def error(self, message: str) -> UnexpectedTokenResponseError:
        return UnexpectedTokenResponseError(
            message,
            status_code=self._response.status_code,
            content_type=self._response.headers.get("content-type"),
        )

    def too_large(self) -> UnexpectedTokenResponseError:
        return self.error(
            f"{self.what} is larger than {MAX_RESPONSE_BYTES} bytes; refusing to read more"
        )

    def _check_deadline(self) -> None:
        if self._deadline_at is not None and time.monotonic() >= self._deadline_at:
            where = redacted_url(self._url)
            raise DeadlineExceededError(
                f"token request to {where} did not finish within the retry deadline",
                token_url=where,
            )

    def add(self, chunk: bytes) -> None:
        """One chunk as it came off the wire (still content-encoded)."""
        self._check_deadline()
        self._received += len(chunk)
        if self._received > MAX_RESPONSE_BYTES:
            raise self.too_large()
        self._push(0, chunk)

    def add_decoded(self, content: bytes) -> None:
        """A body the HTTP library has already read and decoded."""
        self._stages = []
        if len(content) > MAX_RESPONSE_BYTES:
            raise self.too_large()
        self._chunks.append(content)

    def _push(self, index: int, data: bytes) -> None:
        if index == len(self._stages):
            self._chunks.append(data)
            return
        for piece in self._stages[index].feed(data):
            self._push(index + 1, piece)

    def raw(self) -> RawResponse:
        """The decoded body, once every stage has seen the end of its input."""
        for stage in self._stages:
            stage.end()
        headers = {k.lower(): v for k, v in self._response.headers.items()}
        return RawResponse(self._response.status_code, headers, b"".join(self._chunks))


class _Stage:
    """One decoding stage: a decoder, the size of what it produced, and its errors."""

    __slots__ = ("_body", "_decoder", "_name", "_produced")

    def __init__(self, name: str, decoder: _Decoder, body: _Body) -> None:
        self._name = name
        self._decoder = decoder
        self._body = body
        self._produced = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        pieces = self._decoder.feed(data)
        while True:
            try:
                piece = next(pieces)
            except StopIteration:
                return
            except Exception as exc:
                raise self._undecodable(exc) from None
            self._produced += len(piece)
            if self._produced > MAX_RESPONSE_BYTES:
                raise self._body.too_large()
            yield piece

    def end(self) -> None:
        if not self._decoder.complete():
            raise self._body.error(
                f"{self._body.what} body ends before its {self._name} data does "
                "(a truncated response)"
            )

    def _undecodable(self, exc: Exception) -> UnexpectedTokenResponseError:
        return self._body.error(
            f"{self._body.what} is not valid {self._name} data, as its "
            f"Content-Encoding says: {type(exc).__name__}: {printable(str(exc), 120)}"
        )


class _Decoder:
    """Incremental decoding in bounded steps: ``feed`` yields pieces of at most _STEP bytes."""

    __slots__ = ()

    def feed(self, data: bytes) -> Iterator[bytes]:  # pragma: no cover - overridden
        raise NotImplementedError

    def complete(self) -> bool:
        """Whether the input so far is a whole stream (or nothing at all)."""
        raise NotImplementedError  # pragma: no cover - overridden


class _Zlib(_Decoder):
    """gzip, and deflate in both of its forms: zlib-wrapped (RFC 1950) and raw (RFC 1951).

    Which form a deflate body uses is read from its first two bytes, as a
    zlib header is recognisable. Data after the end of the stream is
    ignored, as httpx does.
    """

    __slots__ = ("_head", "_obj", "_wbits")

    def __init__(self, wbits: int | None) -> None:
        self._wbits = wbits  # None: deflate, form not yet known
        self._obj: Any = None
        self._head = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._obj is None:
            self._head += data
            if self._wbits is None and len(self._head) < 2:
                return
            if not self._head:
                return
            data, self._head = self._head, b""
            wbits = self._wbits
            if wbits is None:
                wbits = zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS
            self._obj = zlib.decompressobj(wbits)
        obj = self._obj
        while not obj.eof:
            out = obj.decompress(data, _STEP)
            if out:
                yield out
            data = obj.unconsumed_tail
            if not data and len(out) < _STEP:
                return  # all input consumed, nothing held back

    def complete(self) -> bool:
        return (self._obj is None and not self._head) or bool(
            self._obj is not None and self._obj.eof
        )


def _zlib_header(data: bytes) -> bool:
    """RFC 1950 §2.2: CM 8 (deflate), CINFO at most 7, FCHECK making it a multiple of 31."""
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


class _Brotli(_Decoder):
    """br (RFC 7932) with brotli or brotlicffi 1.2+, whose output can be limited per call."""

    __slots__ = ("_fed", "_obj", "_process")

    def __init__(self, module: Any) -> None:
        self._obj = module.Decompressor()
        self._process: Callable[..., bytes] = _brotli_process(self._obj)
        self._fed = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        obj = self._obj
        if not data or obj.is_finished():
            return  # data after the end of the stream is ignored
        self._fed = True
        out = self._process(data, output_buffer_limit=_STEP)
        while True:
            if out:
                yield out
            if obj.is_finished() or (not out and obj.can_accept_more_data()):
                return
            out = self._process(b"", output_buffer_limit=_STEP)

    def complete(self) -> bool:
        return not self._fed or bool(self._obj.is_finished())


class _Zstd(_Decoder):
    """zstd (RFC 8878) with compression.zstd (Python 3.14+) or backports.zstd; frames in a row."""

    __slots__ = ("_module", "_obj", "_pending")

    def __init__(self, module: Any) -> None:
        self._module = module
        self._obj: Any = None
        self._pending = False  # a frame has begun and not ended

    def _new(self) -> Any:
        option = self._module.DecompressionParameter.window_log_max
        return self._module.ZstdDecompressor(options={option: _ZSTD_WINDOW_LOG_MAX})

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._obj is None or self._obj.eof:
                self._obj = self._new()
            obj = self._obj
            self._pending = True
            out = obj.decompress(data, _STEP)
            while True:
                if out:
                    yield out
                if obj.eof or obj.needs_input:
                    break
                out = obj.decompress(b"", _STEP)
            if not obj.eof:
                return
            self._pending = False
            data = obj.unused_data  # the next frame, if any

    def complete(self) -> bool:
        return not self._pending


def _brotli_process(obj: Any) -> Callable[..., bytes]:
    process: Callable[..., bytes] | None = getattr(obj, "process", None)  # brotli
    return process if process is not None else obj.decompress


@lru_cache(maxsize=1)
def _brotli() -> Any:
    """The brotli module if one is installed that can limit its output per call, else None."""
    for name in ("brotli", "brotlicffi"):
        try:
            module = importlib.import_module(name)
            probe = module.Decompressor()
            _brotli_process(probe)(b"", output_buffer_limit=1)
            probe.can_accept_more_data()
            probe.is_finished()
        except Exception:  # noqa: S112 - not installed, or a release without output limits
            continue
        return module
    return None


@lru_cache(maxsize=1)
def _zstd() -> Any:
    """compression.zstd or backports.zstd if importable (their decompress takes max_length)."""
    for name in ("compression.zstd", "backports.zstd"):
        try:
            module = importlib.import_module(name)
            module.DecompressionParameter.window_log_max  # noqa: B018
            module.ZstdDecompressor  # noqa: B018
        except Exception:  # noqa: S112 - not installed
            continue
        return module
    return None


@lru_cache(maxsize=1)
def accept_encoding() -> str:
    """The Accept-Encoding we send: the codings this module can decode within bounds."""
    codings = ["gzip", "deflate"]
    if _brotli() is not None:
        codings.append("br")
    if _zstd() is not None:
        codings.append("zstd")
    return ", ".join(codings)


def _with_accept_encoding(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Ask only for codings we decode (the client's default may name others, e.g. zstd)."""
    if any(name.lower() == "accept-encoding" for name, _ in headers):
        return headers
    return (*headers, ("Accept-Encoding", accept_encoding()))


def _decoders(value: str, body: _Body) -> list[tuple[str, _Decoder]]:
    """The decoders for a Content-Encoding header value, in the order they are to run.

    RFC 9110 §8.4: codings are listed in the order they were applied, so they
    are undone last first. ``identity`` is no coding; ``x-gzip`` is gzip.
    """
    names = [c.strip().lower() for c in value.split(",")]
    names = [n for n in names if n and n != "identity"]
    if len(names) > _MAX_CODINGS:
        raise body.error(
            f"{body.what} has {len(names)} stacked Content-Encodings; "
            f"at most {_MAX_CODINGS} are decoded"
        )
    return [(name, _decoder(name, body)) for name in reversed(names)]


def _decoder(name: str, body: _Body) -> _Decoder:
    if name in ("gzip", "x-gzip"):
        return _Zlib(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return _Zlib(None)
    if name == "br" and (brotli := _brotli()) is not None:
        return _Brotli(brotli)
    if name == "zstd" and (zstd := _zstd()) is not None:
        return _Zstd(zstd)
    hint = {
        "br": " (install brotli 1.2 or later to accept it)",
        "zstd": " (install backports.zstd, or use Python 3.14, to accept it)",
    }.get(name, "")
    raise body.error(
        f"{body.what} has Content-Encoding {printable(name, 40)!r}, which "
        f"this client cannot decode{hint}; the request asked for {accept_encoding()}"
    )


def _transport_error(lib: HTTPLib, exc: Exception, url: str) -> TokenTransportError:
    where = redacted_url(url)
    kind = "timed out" if isinstance(exc, lib.TimeoutException) else "failed"
    return TokenTransportError(
        f"token request to {where} {kind}: {type(exc).__name__}: {root_cause(exc)[:300]}",
        token_url=where,
    )


def root_cause(exc: BaseException) -> str:
    """The most specific message in the exception chain, e.g. the TLS verification error.

    httpx's own message is sometimes empty (on trio, a failed TLS handshake is a
    bare ConnectError whose cause carries ``CERTIFICATE_VERIFY_FAILED``).
    """
    detail = type(exc).__name__
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            break
        text = str(current).strip()
        if text:
            detail = text
        current = current.__cause__ or current.__context__
    return detail


def on_asyncio() -> bool:
    """Whether this task runs on asyncio (else trio), without importing asyncio for it."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def replayable(lib: HTTPLib, request: Any) -> bool:
    """Whether the request body can be sent again byte-identical without buffering it.

    True for bytes, form, JSON and empty bodies (held in memory by httpx) and
    for multipart bodies whose files are bytes or seekable. False for
    generators, async iterators and other one-shot streams.
    """
    stream = request.stream
    if isinstance(stream, lib.ByteStream):
        return True
    if lib.MultipartStream is not None and isinstance(stream, lib.MultipartStream):
        return all(_rereadable(getattr(f, "file", b"")) for f in stream.fields)
    return False


def _rereadable(file: object) -> bool:
    if isinstance(file, (bytes, str)):
        return True
    seekable = getattr(file, "seekable", None)
    try:
        return bool(seekable()) if callable(seekable) else False
    except (OSError, ValueError):
        return False
