"""The HTTP-library side of the token request: sending it, reading a capped body, replayability.

This is the only module that turns neutral TokenRequest / RawResponse values
into HTTP calls. It speaks to httpx and to httpx2 alike through HTTPLib, a
record of the classes it needs from one of them; the decisions stay in the
core.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx

from ._errors import TokenError, TokenTransportError, UnexpectedTokenResponseError
from ._request import TokenRequest
from ._token import MAX_RESPONSE_BYTES, RawResponse
from ._url import redacted_url

__all__ = [
    "HTTPX",
    "TIMEOUT_SECONDS",
    "DeadlineExceededError",
    "HTTPLib",
    "replayable",
    "root_cause",
    "send_async",
    "send_sync",
]

#: Timeout of the token clients TokenAuth creates: 10 s for each phase.
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
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
        )

    def new_client(self) -> Any:
        """The sync token client TokenAuth makes: verification on, finite timeout, no redirects."""
        return self.Client(timeout=self.Timeout(TIMEOUT_SECONDS), follow_redirects=False)

    def new_async_client(self, ssl_context: Any) -> Any:
        """The async mirror, with a TLS context made once and reused."""
        return self.AsyncClient(
            timeout=self.Timeout(TIMEOUT_SECONDS), follow_redirects=False, verify=ssl_context
        )


HTTPX = HTTPLib.of(httpx)


class DeadlineExceededError(TokenTransportError):
    """A token request the retry deadline ended (raised by the drivers, turned into a message)."""


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
    a retry deadline. Any failure to send is a TokenTransportError: an error
    from the HTTP library, or anything else a client or transport raises.
    """
    extra = {} if timeout is None else {"timeout": timeout}
    try:
        with client.stream(
            request.method,
            request.url,
            headers=request.headers,
            content=request.body,
            follow_redirects=False,
            auth=None,
            **extra,
        ) as response:
            chunks = _Capped(response, request.url, deadline_at)
            for chunk in response.iter_bytes():
                chunks.add(chunk)
    except TokenError:
        raise
    except Exception as exc:
        raise _transport_error(lib, exc, request.url) from exc
    return chunks.raw()


async def send_async(lib: HTTPLib, client: Any, request: TokenRequest) -> RawResponse:
    """The async mirror of send_sync."""
    try:
        async with client.stream(
            request.method,
            request.url,
            headers=request.headers,
            content=request.body,
            follow_redirects=False,
            auth=None,
        ) as response:
            chunks = _Capped(response)
            body = response.aiter_bytes()
            try:
                async for chunk in body:
                    chunks.add(chunk)
            finally:
                await body.aclose()
    except TokenError:
        raise
    except Exception as exc:
        raise _transport_error(lib, exc, request.url) from exc
    return chunks.raw()


class _Capped:
    """Collects a response body up to MAX_RESPONSE_BYTES, then refuses it."""

    __slots__ = ("_chunks", "_deadline_at", "_response", "_size", "_url")

    def __init__(self, response: Any, url: str = "", deadline_at: float | None = None) -> None:
        self._response = response
        self._chunks: list[bytes] = []
        self._size = 0
        self._url = url
        self._deadline_at = deadline_at

    def add(self, chunk: bytes) -> None:
        if self._deadline_at is not None and time.monotonic() >= self._deadline_at:
            where = redacted_url(self._url)
            raise DeadlineExceededError(
                f"token request to {where} did not finish within the retry deadline",
                token_url=where,
            )
        self._size += len(chunk)
        if self._size > MAX_RESPONSE_BYTES:
            raise UnexpectedTokenResponseError(
                f"token endpoint response is larger than {MAX_RESPONSE_BYTES} bytes; "
                "refusing to read more",
                status_code=self._response.status_code,
                content_type=self._response.headers.get("content-type"),
            )
        self._chunks.append(chunk)

    def raw(self) -> RawResponse:
        headers = {k.lower(): v for k, v in self._response.headers.items()}
        return RawResponse(self._response.status_code, headers, b"".join(self._chunks))


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
