"""Externally issued assertions: where they come from, and how they are checked. No rules of when.

The platform a service runs on hands it a short-lived signed JWT that an
authorization server trusts: a Kubernetes projected service-account token, a
GitHub Actions OIDC token, a SPIFFE JWT-SVID. Such a token is *read*, never
minted here, and it rotates underneath us, so it is read again for every
token request (SPEC A1). This module holds:

* the sources: ``FileAssertion`` (a file the platform keeps current),
  ``GitHubActionsOIDC`` (the job's OIDC token, asked for over HTTP), and any
  sync or async callable given the audience (wrapped in ``_CallableAssertion``);
* ``check_assertion``: what was read is text, a JWT where one is required, and
  its ``exp`` (read *unverified*: verifying it is the authorization server's
  job, we only refuse to send what has visibly expired);
* ``ClientAssertion``: client authentication with such a JWT (RFC 7521 §4.2,
  RFC 7523 §2.2).

*When* a source is read, re-read and given up on is the acquisition
program's (``_program.Acquisition``): it reads through the ``ReadAssertion``
effect, which the sync interpreter runs with ``source.read(audience)`` and
the async one with ``await source.aread(audience)``. Messages name a source
(a file's path, a callable's qualified name, the GitHub audience), never
what it holds.
"""

from __future__ import annotations

import abc
import base64
import binascii
import copy
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ._client_auth import Authenticator, ClientAuth, Credentials, check_client_id
from ._errors import (
    AssertionExpiredError,
    AssertionSourceError,
    ConfigurationError,
    TokenError,
)
from ._url import check_token_url, redacted_url

if TYPE_CHECKING:
    from ._discovery import ServerMetadata

__all__ = [
    "ASSERTION_SKEW",
    "CLIENT_ASSERTION_TYPE",
    "MAX_ASSERTION_BYTES",
    "NEAR_EXPIRY",
    "Assertion",
    "AssertionAuthenticator",
    "AssertionNeed",
    "AssertionSource",
    "ClientAssertion",
    "FileAssertion",
    "GitHubActionsOIDC",
    "as_source",
    "check_assertion",
    "needs_of",
    "read_failed",
    "read_now",
]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: An assertion that expires within this many seconds is read again before it is sent
#: (SPEC A3): it would likely expire in transit, or by the server's clock. Projected
#: service-account tokens are rotated at 80 % of their life, GitHub's live 5 minutes or
#: more: 30 s is well inside what any platform leaves.
ASSERTION_SKEW = 30.0

#: A request refused with ``invalid_client``/``invalid_grant``/``invalid_request`` while
#: one of its assertions had at most this many seconds left is tried once more with a
#: re-read assertion (SPEC A4): the refusal was likely the assertion expiring on the way.
NEAR_EXPIRY = 60.0

#: The most a source may hand over. Platform tokens are a few hundred bytes to a few KiB;
#: a path pointing at a log file or /dev/zero is refused instead of read whole.
MAX_ASSERTION_BYTES = 64 * 1024

#: GitHub's answer is a small JSON object; more than this is not it.
_MAX_GITHUB_BODY = 256 * 1024
#: Timeout of each phase of the request to the GitHub Actions token service.
_GITHUB_TIMEOUT = 10.0

_VISIBLE = re.compile(r"[\x21-\x7e]+")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_B64URL_OR_EMPTY = re.compile(r"[A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- what a grant needs read, and what was read --------------------------------------------


@dataclass(frozen=True, slots=True)
class AssertionNeed:
    """One externally issued assertion a token request carries.

    ``name`` is the form field it fills (``client_assertion``, ``subject_token``,
    ``actor_token``); ``audience`` is what the source is told the assertion is
    for; ``jwt_required``: it must be a JWT with an ``exp`` (client assertions,
    token types ``jwt`` and ``id_token``), rather than any token (an opaque
    access token, a SAML assertion), whose expiry is checked if it is a JWT.
    """

    name: str
    source: AssertionSource
    audience: str
    jwt_required: bool


@dataclass(frozen=True, slots=True)
class Assertion:
    """An assertion as read, checked, with its unverified ``exp`` (None: not known)."""

    value: str = field(repr=False)
    expires_at: float | None
    source: str

    def fresh(self, now: float) -> bool:
        """More than ASSERTION_SKEW left, or no known expiry: send it without a second look."""
        return self.expires_at is None or self.expires_at - now > ASSERTION_SKEW

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def near_expiry(self, now: float) -> bool:
        """At most NEAR_EXPIRY left: a refusal may be its expiry, so a re-read may help."""
        return self.expires_at is not None and self.expires_at - now <= NEAR_EXPIRY


def check_assertion(value: object, *, source: str, jwt_required: bool) -> Assertion:
    """What a source gave, checked (SPEC A6): text, one token, a JWT where one is required.

    ``exp`` is read from the JWT's payload without verifying the signature: it
    is not ours to verify, only to not send once it has visibly passed. No
    message quotes the value.
    """
    if not isinstance(value, str):
        hint = " (decode it to str)" if isinstance(value, (bytes, bytearray)) else ""
        raise AssertionSourceError(
            f"{source} returned {type(value).__name__}, not a string{hint}: it must give the "
            "token as text",
            source=source,
        )
    text = value.strip()
    if not text:
        raise AssertionSourceError(
            f"{source} is empty: it holds no token (has the platform written it yet?)",
            source=source,
        )
    if len(text) > MAX_ASSERTION_BYTES:
        raise AssertionSourceError(
            f"{source} holds more than {MAX_ASSERTION_BYTES} bytes: that is not a token",
            source=source,
        )
    if not _VISIBLE.fullmatch(text):
        raise AssertionSourceError(
            f"{source} holds spaces, control or non-ASCII characters inside the token: that "
            "is not one token (a JWT is three base64url parts joined by dots)",
            source=source,
        )
    claims = unverified_claims(text)
    if claims is None:
        if jwt_required:
            raise AssertionSourceError(
                f"{source} does not hold a JWT (three base64url parts with a JSON header and "
                "claims): point it at the platform's token",
                source=source,
            )
        return Assertion(text, None, source)
    exp = claims.get("exp")
    if exp is None:
        if jwt_required:
            raise AssertionSourceError(
                f"{source} holds a JWT without an 'exp' claim, which RFC 7523 §3 requires: "
                "it cannot be told apart from an expired one",
                source=source,
            )
        return Assertion(text, None, source)
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not _finite(exp):
        raise AssertionSourceError(
            f"{source} holds a JWT whose 'exp' is not a number of seconds (RFC 7519 §4.1.4)",
            source=source,
        )
    return Assertion(text, float(exp), source)


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWS compact JWT, NOT verified; None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    if not (
        _B64URL.fullmatch(parts[0])
        and _B64URL.fullmatch(parts[1])
        and _B64URL_OR_EMPTY.fullmatch(parts[2])
    ):
        return None
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(header, dict) or "alg" not in header or not isinstance(claims, dict):
        return None
    return claims


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def read_failed(exc: Exception, source: str) -> AssertionSourceError:
    """A source that raised something other than a TokenError: its exception is the cause.

    The message names the exception's type only: its text may quote the token.
    """
    error = AssertionSourceError(
        f"{source} failed: {type(exc).__name__} (see the exception's __cause__)", source=source
    )
    error.__cause__ = exc
    return error


def read_now(needs: tuple[AssertionNeed, ...], now: float) -> dict[str, str]:
    """Read every source once, blocking, and refuse an expired one: for ``token_request(now)``.

    TokenAuth does not use this: its program reads through effects, re-reading
    stale assertions (SPEC A3). This serves a grant's request built by hand
    (to inspect it, or from a script).
    """
    values: dict[str, str] = {}
    for need in needs:
        try:
            raw = need.source.read(need.audience)
        except TokenError:
            raise
        except Exception as exc:
            raise read_failed(exc, need.source.name) from exc
        assertion = check_assertion(raw, source=need.source.name, jwt_required=need.jwt_required)
        if assertion.expired(now):
            raise expired_error(assertion, now)
        values[need.name] = assertion.value
    return values


def expired_error(assertion: Assertion, now: float) -> AssertionExpiredError:
    expired_at = assertion.expires_at if assertion.expires_at is not None else now
    return AssertionExpiredError(
        f"the assertion from {assertion.source} expired {round(now - expired_at)} s ago and "
        "reading it again gave no newer one; nothing was sent. Is the platform still rotating "
        "it (kubelet, the SPIFFE agent, the sidecar that writes it), and is this machine's "
        "clock right?",
        source=assertion.source,
        expired_at=expired_at,
    )


# -- sources -------------------------------------------------------------------------------


class AssertionSource(abc.ABC):
    """Where an externally issued assertion comes from: FileAssertion, GitHubActionsOIDC, or
    your own.

    A plain function (sync or async) taking the audience and returning the
    token is a source too, wherever one is taken. Subclass this for a source
    that needs more: ``name`` (how messages name it; never what it holds),
    ``read(audience)`` (blocking, for sync clients) and, if it can do better
    than a worker thread, ``aread(audience)``.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The source as messages and logs name it, e.g. ``assertion file '/var/run/token'``."""

    @abc.abstractmethod
    def read(self, audience: str) -> object:
        """The assertion now, as text. Blocking: called from sync code."""

    async def aread(self, audience: str) -> object:
        """The async mirror of ``read``; by default ``read`` in a worker thread of its own, so
        the event loop never blocks (and never waits for a thread sync callers hold)."""
        import anyio.to_thread  # noqa: PLC0415  (async users only)

        return await anyio.to_thread.run_sync(self.read, audience, limiter=anyio.CapacityLimiter(1))

    def identity(self, audience: str) -> tuple[str, ...]:
        """What names this source in a shared store's cache identity (SPEC F1): never its
        content."""
        return (f"{type(self).__module__}.{type(self).__qualname__}", self.name)

    def check(self, *, jwt_required: bool) -> None:
        """Called when a credential using this source is constructed: raise what is already
        known to be wrong. Nothing by default."""
        return

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


class FileAssertion(AssertionSource):
    """A token file that the platform keeps current, read again for every token request.

    A Kubernetes projected service-account token (``AZURE_FEDERATED_TOKEN_FILE``
    on AKS, ``AWS_WEB_IDENTITY_TOKEN_FILE`` on EKS, any ``serviceAccountToken``
    volume), a SPIFFE JWT-SVID written by spiffe-helper, a file a CI step
    wrote. It is a few hundred bytes: reading it costs less than the request it
    authenticates, and it is never sent after the platform has replaced it.
    Surrounding whitespace (a final newline) is dropped.

    The file is checked here, at construction: it must exist, be readable and
    hold a token (a JWT, for a client assertion). ``check_now=False`` skips
    that, for a file another process writes after start-up; problems then
    show at the first token request. Either way each read is checked again,
    and an error names the path, never the content.

    With an async client the read runs in a worker thread: on a tmpfs volume it
    takes microseconds, but on a network or FUSE filesystem (the secrets-store
    CSI driver) it can block, and the event loop must not.
    """

    __slots__ = ("_check_now", "_path")

    def __init__(self, path: str | os.PathLike[str], *, check_now: bool = True) -> None:
        if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(
                f"FileAssertion needs a path (str or pathlib.Path), got {type(path).__name__}"
            )
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise ConfigurationError("FileAssertion needs a non-empty path")
        if text != text.strip() or _CONTROL.search(text):
            raise ConfigurationError(
                "the FileAssertion path has surrounding whitespace or a control character (a "
                "line ending read from an environment file?): strip it"
            )
        if not isinstance(check_now, bool):
            raise ConfigurationError(f"check_now must be True or False, got {check_now!r}")
        self._path = text
        self._check_now = check_now

    @property
    def path(self) -> str:
        return self._path

    @property
    def name(self) -> str:
        return f"assertion file {self._path!r}"

    def read(self, audience: str) -> str:
        """The file's content now (the platform chose the audience when it wrote it)."""
        path = self._path
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ASSERTION_BYTES + 1)
        except FileNotFoundError:
            raise AssertionSourceError(
                f"{self.name} does not exist: is the volume that holds it mounted (the "
                "projected service-account token, the workload identity webhook)?",
                source=self.name,
            ) from None
        except IsADirectoryError:
            raise AssertionSourceError(
                f"{self.name} is a directory: name the token file in it", source=self.name
            ) from None
        except OSError as exc:  # permission denied (the volume's mode, the process's user), ...
            raise AssertionSourceError(
                f"cannot read {self.name}: {exc.strerror or type(exc).__name__}",
                source=self.name,
            ) from None
        if len(data) > MAX_ASSERTION_BYTES:
            raise AssertionSourceError(
                f"{self.name} is larger than {MAX_ASSERTION_BYTES} bytes: that is not a token file",
                source=self.name,
            )
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            raise AssertionSourceError(
                f"{self.name} is not ASCII text: that is not a token file", source=self.name
            ) from None

    def identity(self, audience: str) -> tuple[str, ...]:
        return ("file", os.path.abspath(self._path))

    def check(self, *, jwt_required: bool) -> None:
        if self._check_now:
            check_assertion(self.read(""), source=self.name, jwt_required=jwt_required)

    def __repr__(self) -> str:
        return f"FileAssertion({self._path!r})"


class _CallableAssertion(AssertionSource):
    """A sync or async function given the audience, returning the token (as text)."""

    __slots__ = ("_func", "_is_async", "_qualname")

    def __init__(self, func: Callable[[str], Any]) -> None:
        import inspect  # noqa: PLC0415  (only for callable sources: keeps the import light)

        self._func = func
        self._is_async = _is_async_callable(func)
        self._qualname = _qualified_name(func)
        try:
            inspect.signature(func).bind("audience")
        except TypeError:
            raise ConfigurationError(
                f"the assertion callable {self._qualname} must take one argument, the "
                "audience: def platform_token(audience: str) -> str"
            ) from None
        except ValueError:  # pragma: no cover - a builtin without a signature: try at call time
            pass

    @property
    def name(self) -> str:
        return f"assertion callable {self._qualname}"

    def read(self, audience: str) -> object:
        if self._is_async:
            raise ConfigurationError(
                f"{self.name} is async: use this credential with an AsyncClient (or "
                "aget_token()), or pass a sync function"
            )
        import inspect  # noqa: PLC0415

        value = self._func(audience)
        if inspect.isawaitable(value):
            close = getattr(value, "close", None)
            if callable(close):
                close()  # a coroutine never awaited would warn
            raise AssertionSourceError(
                f"{self.name} returned an awaitable from a sync call: pass the async function "
                "itself (used with an AsyncClient), or a sync one",
                source=self.name,
            )
        return value

    async def aread(self, audience: str) -> object:
        if self._is_async:
            return await self._func(audience)
        return await super().aread(audience)

    def identity(self, audience: str) -> tuple[str, ...]:
        if "<" in self._qualname:
            raise ConfigurationError(
                f"a shared token store names each credential by where its assertion comes "
                f"from, and {self._qualname} is a lambda or a local function, which another "
                "process cannot name the same way: pass a module-level function"
            )
        return ("callable", self._qualname)

    def __repr__(self) -> str:
        return f"<assertion callable {self._qualname}>"


def _is_async_callable(func: object) -> bool:
    import inspect  # noqa: PLC0415

    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _qualified_name(func: object) -> str:
    target = getattr(func, "func", func)  # functools.partial
    module = getattr(target, "__module__", None) or type(target).__module__
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}"


class GitHubActionsOIDC(AssertionSource):
    """The running GitHub Actions job's OIDC token, asked for again for each token request.

    The workflow needs ``permissions: id-token: write``; the runner then sets
    ``ACTIONS_ID_TOKEN_REQUEST_URL`` and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``,
    read here, at construction (an error names what is missing). Each read is
    a GET of that URL with ``audience=`` and ``Authorization: bearer <request
    token>``; the answer's ``value`` is the JWT.

    ``audience`` is the ``aud`` to ask for: ``api://AzureADTokenExchange`` for
    Entra ID, the workload identity provider's resource URL for Google. None
    asks for the audience the credential names (the token URL).

    ``client`` / ``async_client`` (an ``httpx.Client`` / ``httpx.AsyncClient``)
    carry the request, for a proxy, a private CA or tests; by default a client
    of its own is used, with certificate verification on, 10-second timeouts
    and no redirects. The request token is a credential: it is in no repr,
    message or log.
    """

    __slots__ = ("_async_client", "_audience", "_client", "_request_token", "_url")

    def __init__(
        self,
        audience: str | None = None,
        *,
        client: Any = None,
        async_client: Any = None,
    ) -> None:
        if audience is not None and (not isinstance(audience, str) or not audience):
            raise ConfigurationError("GitHubActionsOIDC audience must be a non-empty string")
        import httpx  # noqa: PLC0415  (already loaded by TokenAuth; a runtime dependency)

        if client is not None and not isinstance(client, httpx.Client):
            raise ConfigurationError(
                f"GitHubActionsOIDC client must be an httpx.Client, got {type(client).__name__}"
            )
        if async_client is not None and not isinstance(async_client, httpx.AsyncClient):
            raise ConfigurationError(
                "GitHubActionsOIDC async_client must be an httpx.AsyncClient, got "
                f"{type(async_client).__name__}"
            )
        self._audience = audience
        self._client = client
        self._async_client = async_client
        self._url = self._environment_url()
        self._request_token = self._environment_token()

    def _environment_url(self) -> str:
        url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
        if not url:
            raise AssertionSourceError(
                f"ACTIONS_ID_TOKEN_REQUEST_URL is not set, so {self.name} cannot be asked "
                "for: this is not a GitHub Actions job, or its workflow lacks "
                "'permissions: id-token: write'",
                source=self.name,
            )
        try:
            return check_token_url(url, allow_insecure_http=False)
        except ConfigurationError as exc:
            raise AssertionSourceError(
                f"ACTIONS_ID_TOKEN_REQUEST_URL is not a URL the token can be asked from: {exc}",
                source=self.name,
            ) from None

    def _environment_token(self) -> str:
        token = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if not token:
            raise AssertionSourceError(
                f"ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set, so {self.name} cannot be asked "
                "for: the workflow needs 'permissions: id-token: write'",
                source=self.name,
            )
        if not _VISIBLE.fullmatch(token):
            raise AssertionSourceError(
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN holds spaces or control characters",
                source=self.name,
            )
        return token

    @property
    def audience(self) -> str | None:
        return self._audience

    @property
    def name(self) -> str:
        if self._audience is None:
            return "GitHub Actions OIDC token"
        return f"GitHub Actions OIDC token for audience {self._audience!r}"

    def _request(self, audience: str) -> tuple[str, dict[str, str]]:
        url = self._url + ("&" if "?" in self._url else "?")
        url += urlencode({"audience": self._audience or audience})
        headers = {
            "Authorization": f"bearer {self._request_token}",
            "Accept": "application/json",
        }
        return url, headers

    def read(self, audience: str) -> str:
        url, headers = self._request(audience)
        try:
            if self._client is not None:
                return self._get(self._client, url, headers)
            from ._transport import HTTPX  # noqa: PLC0415

            with HTTPX.Client(
                timeout=HTTPX.Timeout(_GITHUB_TIMEOUT),
                follow_redirects=False,
                transport=HTTPX.shared_transport(),
            ) as own:
                return self._get(own, url, headers)
        except TokenError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    async def aread(self, audience: str) -> str:
        url, headers = self._request(audience)
        try:
            if self._async_client is not None:
                return await self._aget(self._async_client, url, headers)
            import anyio.to_thread  # noqa: PLC0415

            from ._transport import HTTPX  # noqa: PLC0415

            if not HTTPX.has_ssl_context():  # the CA bundle is read from disk once, off-loop
                await anyio.to_thread.run_sync(HTTPX.ssl_context, limiter=anyio.CapacityLimiter(1))
            async with HTTPX.AsyncClient(
                timeout=HTTPX.Timeout(_GITHUB_TIMEOUT),
                follow_redirects=False,
                verify=HTTPX.ssl_context(),
            ) as own:
                return await self._aget(own, url, headers)
        except TokenError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    def _get(self, client: Any, url: str, headers: Mapping[str, str]) -> str:
        with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _MAX_GITHUB_BODY:
                    break
            return self._value(response.status_code, bytes(body))

    async def _aget(self, client: Any, url: str, headers: Mapping[str, str]) -> str:
        from ._transport import _wind_down  # noqa: PLC0415

        async with client.stream("GET", url, headers=headers, follow_redirects=False) as response:
            body = bytearray()
            chunks = response.aiter_bytes()
            try:
                async for chunk in chunks:
                    body += chunk
                    if len(body) > _MAX_GITHUB_BODY:
                        # Abandoned mid-body: let httpx's inner generators end (trio warns
                        # about each one left suspended).
                        await _wind_down(response, chunks)
                        break
            finally:
                await chunks.aclose()
            return self._value(response.status_code, bytes(body))

    def _value(self, status: int, body: bytes) -> str:
        if status != 200:
            hint = ""
            if status in (401, 403):
                hint = (
                    ": the request token was refused (has the job ended, or does the workflow "
                    "lack 'permissions: id-token: write'?)"
                )
            raise AssertionSourceError(
                f"the GitHub Actions token service answered HTTP {status} when asked for "
                f"{self.name}{hint}",
                source=self.name,
            )
        if len(body) > _MAX_GITHUB_BODY:
            raise AssertionSourceError(
                f"the GitHub Actions token service answered with more than {_MAX_GITHUB_BODY} "
                "bytes: that is not its answer",
                source=self.name,
            )
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        value = data.get("value") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise AssertionSourceError(
                f"the GitHub Actions token service answered without a token ('value') for "
                f"{self.name}",
                source=self.name,
            )
        return value

    def _failed(self, exc: Exception) -> AssertionSourceError:
        from ._transport import root_cause  # noqa: PLC0415

        return AssertionSourceError(
            f"asking {redacted_url(self._url)} for {self.name} failed: {type(exc).__name__}: "
            f"{root_cause(exc)[:200]}",
            source=self.name,
        )

    def identity(self, audience: str) -> tuple[str, ...]:
        return ("github-actions-oidc", self._audience or audience)

    def __repr__(self) -> str:
        if self._audience is None:
            return "GitHubActionsOIDC()"
        return f"GitHubActionsOIDC(audience={self._audience!r})"


def as_source(source: object, where: str) -> AssertionSource:
    """An AssertionSource from what the user passed: a source, or a function of the audience."""
    if isinstance(source, AssertionSource):
        return source
    if isinstance(source, (str, bytes, bytearray, os.PathLike)):
        raise ConfigurationError(
            f"{where} takes where the token comes from, not a path or the token itself (got "
            f"{type(source).__name__}): pass FileAssertion(path) for a token file, "
            "GitHubActionsOIDC(...) in GitHub Actions, or a function of the audience that "
            "returns the token"
        )
    if callable(source):
        return _CallableAssertion(source)
    raise ConfigurationError(
        f"{where} needs FileAssertion(path), GitHubActionsOIDC(...) or a function of the "
        f"audience returning the token, got {type(source).__name__}"
    )


# -- client authentication with an externally issued JWT -----------------------------------


class AssertionAuthenticator:
    """Bound ClientAssertion: a ``client_assertion`` read from the source for each request."""

    __slots__ = ("_client_id", "_need")

    def __init__(self, client_id: str, need: AssertionNeed) -> None:
        self._client_id = client_id
        self._need = need

    @property
    def assertion_needs(self) -> tuple[AssertionNeed, ...]:
        return (self._need,)

    @property
    def identity(self) -> tuple[str, ...]:
        """SPEC F1: the client, the audience and the source by name; never the assertion."""
        need = self._need
        return (
            ClientAssertion.method,
            self._client_id,
            need.audience,
            *need.source.identity(need.audience),
        )

    def authenticate(self, now: float) -> Credentials:
        """Reads the source now, blocking (a request built by hand; TokenAuth reads through
        its program, see ``authenticate_with``)."""
        return self.authenticate_with(now, read_now(self.assertion_needs, now))

    def authenticate_with(self, now: float, assertions: Mapping[str, str]) -> Credentials:
        """RFC 7521 §4.2, RFC 7523 §2.2: the assertion read for this request, and client_id."""
        return (), (
            ("client_id", self._client_id),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertions[self._need.name]),
        )

    def __repr__(self) -> str:
        return f"<client assertion from {self._need.source.name}>"


def needs_of(authenticator: Authenticator | None) -> tuple[AssertionNeed, ...]:
    """The assertions an authenticator needs read for each request (none for most)."""
    if isinstance(authenticator, AssertionAuthenticator):
        return authenticator.assertion_needs
    return ()


class ClientAssertion(ClientAuth):
    """Client authentication with an externally issued JWT: no secret, no key of yours.

    The platform issues a short-lived JWT that the authorization server trusts
    (Entra ID workload identity federation, Google workload identity
    federation, Keycloak's federated client authentication): a Kubernetes
    projected service-account token, a GitHub Actions OIDC token, a SPIFFE
    JWT-SVID. Each token request reads ``source`` again and sends what it holds
    as ``client_assertion``, with ``client_assertion_type=
    urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and ``client_id``
    (RFC 7521 §4.2, RFC 7523 §2.2).

    ``source`` is a FileAssertion, a GitHubActionsOIDC, or a sync or async
    function given the audience and returning the JWT. ``audience`` is what
    the source is told the assertion is for (a function and GitHubActionsOIDC
    without an audience of its own use it); the token URL by default, and for
    a grant made by ``from_issuer`` the issuer.

    Before each request the JWT's ``exp`` is read (unverified); one that has
    expired or expires within ASSERTION_SKEW (30 s) is read again, and if it
    has still expired, AssertionExpiredError names the source and nothing is
    sent. A refusal (``invalid_client``) of an assertion that had at most
    NEAR_EXPIRY (60 s) left is followed by one re-read and, when that gives a
    new assertion, one more request.
    """

    method = "client_assertion"

    __slots__ = ("_audience", "_source")

    def __init__(
        self, source: AssertionSource | Callable[[str], Any], *, audience: str | None = None
    ):
        self._source = as_source(source, "ClientAssertion")
        if audience is not None and (not isinstance(audience, str) or not audience):
            raise ConfigurationError("ClientAssertion audience must be a non-empty string")
        self._audience = audience
        self._source.check(jwt_required=True)

    @property
    def source(self) -> AssertionSource:
        return self._source

    def bind(self, *, client_id: str, client_secret: str | None, token_url: str) -> Authenticator:
        client_id = check_client_id(client_id)
        if client_secret is not None:
            raise ConfigurationError(
                "ClientAssertion authenticates with the platform's JWT, and a client_secret "
                "was given too; RFC 6749 §2.3 allows one method per request: drop "
                "client_secret="
            )
        audience = self._audience if self._audience is not None else token_url
        need = AssertionNeed("client_assertion", self._source, audience, jwt_required=True)
        return AssertionAuthenticator(client_id, need)

    def _for_server(self, metadata: ServerMetadata, client_secret: str | None) -> ClientAssertion:
        """SPEC M4: for a grant made by issuer, the source is told the issuer as the
        audience (as JWT client authentication addresses its assertion), unless
        ``audience`` was given."""
        if self._audience is not None:
            return self
        new = copy.copy(self)
        new._audience = metadata.issuer
        return new

    def __repr__(self) -> str:
        audience = "" if self._audience is None else f", audience={self._audience!r}"
        return f"ClientAssertion({self._source!r}{audience})"
