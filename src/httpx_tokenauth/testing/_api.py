"""LocalAPI: a bearer-token protected API (Starlette under uvicorn), over TLS on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._authorization_server import LocalAuthorizationServer
from ._ca import LocalCA

__all__ = ["APIRequestRecord", "LocalAPI"]

logger = logging.getLogger("httpx_tokenauth.testing")

#: How long start() waits for uvicorn to be ready, and stop() for it to finish.
STARTUP_TIMEOUT = 10.0
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: RFC 9728 §3.1: where a protected resource without a path publishes its metadata.
PRM_PATH = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class APIRequestRecord:
    """One request the API answered, as the API saw it."""

    method: str
    path: str
    status_code: int
    #: The RFC 6750 error code of the answer (``invalid_token``, ``insufficient_scope``,
    #: ``invalid_request``), or None.
    error: str | None
    #: The bearer token the request carried, verbatim (None: no bearer token).
    token: str | None = field(repr=False)
    body: bytes = field(default=b"", repr=False)


class _Rejection(Exception):  # noqa: N818 - a control-flow signal, not an error
    def __init__(self, status_code: int, error: str | None, description: str, **extra: str):
        super().__init__(description)
        self.status_code = status_code
        self.error = error
        self.description = description
        self.extra = extra


class LocalAPI:
    """A resource server (RFC 6750) on ``https://127.0.0.1:<free port>``, for any path.

    It accepts only access tokens ``authorization_server`` issued: the JWT is
    verified with the server's public key (ES256), its ``iss``, ``aud``,
    ``exp`` and ``iat``. Otherwise it answers 401 with ``WWW-Authenticate:
    Bearer realm="...", error="invalid_token"`` (or no error code when the
    request carried no token, RFC 6750 §3.1). A token in the query string is a
    400 ``invalid_request`` (one method only, RFC 6750 §2).

    ``revoke_all_issued_before()`` makes it reject every token issued before a
    moment (now, by default), as when tokens are revoked or keys rotated.
    ``require_scope(path, scope)`` makes paths under ``path`` demand a scope:
    a valid token without it gets 403 ``error="insufficient_scope"``,
    ``scope="..."``. A request that passes gets 200 and a JSON summary
    (``path``, ``client_id``, ``sub``, ``scope``).

    ``resource_metadata=True`` makes it a protected resource that publishes
    its metadata (RFC 9728): ``/.well-known/oauth-protected-resource`` names
    ``resource`` (its URL unless set) and ``authorization_servers`` (the
    authorization server's issuer unless set), every 401 carries
    ``resource_metadata="..."``, and only tokens issued for ``resource``
    (their ``aud``, from the RFC 8707 ``resource`` of the token request) are
    accepted. ``resource_metadata_requests`` counts the document's fetches.

    ``requests`` lists every request answered. Use it as a context manager or
    call ``start()`` / ``stop()``; it serves before ``start`` returns.
    """

    def __init__(
        self,
        authorization_server: LocalAuthorizationServer,
        *,
        ca: LocalCA,
        realm: str = "local-api",
        required_scopes: Mapping[str, str] | None = None,
        resource_metadata: bool = False,
    ) -> None:
        self._as = authorization_server
        self.resource_metadata = resource_metadata
        #: The ``resource`` its metadata names (None: the API's URL).
        self.resource: str | None = None
        #: The ``authorization_servers`` its metadata names (None: the server's issuer).
        self.authorization_servers: list[str] | None = None
        self.resource_metadata_requests = 0
        self._ca = ca
        self.realm = realm
        self._default_scopes = dict(required_scopes or {})
        self._scopes = dict(self._default_scopes)
        self._revoked_before: float | None = None
        self._records: list[APIRequestRecord] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._base_url: str | None = None
        self.app = Starlette(
            routes=[
                Route(PRM_PATH, self._resource_metadata, methods=["GET"]),
                Route(PRM_PATH + "/{path:path}", self._resource_metadata, methods=["GET"]),
                Route("/{path:path}", self._endpoint, methods=_METHODS),
            ]
        )

    # -- configuration ---------------------------------------------------------------

    def require_scope(self, path: str, scope: str) -> None:
        """Requests to ``path`` and below need a token with ``scope`` (until ``reset()``)."""
        with self._lock:
            self._scopes[path.rstrip("/") or "/"] = scope

    def revoke_all_issued_before(self, when: float | None = None) -> float:
        """Reject every token issued before ``when`` (``time.time()`` by default); returns it.

        Tokens carry their issue time with sub-second precision, so a token
        issued after this call is accepted.
        """
        cutoff = time.time() if when is None else when
        with self._lock:
            self._revoked_before = cutoff
        return cutoff

    def reset(self) -> None:
        """Forget the requests seen, lift revocations, restore the scope requirements."""
        with self._lock:
            self._records.clear()
            self.resource_metadata_requests = 0
            self._revoked_before = None
            self._scopes = dict(self._default_scopes)

    # -- what the API saw --------------------------------------------------------------

    @property
    def requests(self) -> list[APIRequestRecord]:
        """Every request answered since the last ``reset()``, in order of answer."""
        with self._lock:
            return list(self._records)

    @property
    def url(self) -> str:
        """The API's base URL, ``https://127.0.0.1:<port>``."""
        if self._base_url is None:
            raise RuntimeError("the API is not running: call start() first")
        return self._base_url

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and serve from a thread; ready on return."""
        if self._server is not None:
            raise RuntimeError("the API is already running")
        # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off only for
        # sockets that say they are TCP (otherwise every response waits ~40 ms
        # for a delayed ACK); TCP_NODELAY on the listener for good measure.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(2048)
            config = uvicorn.Config(
                self.app,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=int(STARTUP_TIMEOUT),
                # uvicorn closes idle connections after 5 s by default; a client
                # that reuses one just then gets "server disconnected" instead of
                # an answer. Tests under load pause longer than that.
                timeout_keep_alive=120,
            )
            config.load()
            # The TLS context is set after load() so no certificate file is needed;
            # uvicorn hands config.ssl to asyncio's create_server.
            config.ssl = self._ca.server_context()
            server = _Server(config)
            thread = threading.Thread(
                target=server.run_with, args=(sock,), name="LocalAPI", daemon=True
            )
            thread.start()
        except BaseException:
            sock.close()
            raise
        self._server, self._thread, self._socket = server, thread, sock
        if not server.ready.wait(STARTUP_TIMEOUT) or not server.started:
            self.stop()
            raise RuntimeError("the API did not start") from server.failure
        self._base_url = f"https://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        """Stop serving, close connections and the socket. Safe to call more than once."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(STARTUP_TIMEOUT)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(STARTUP_TIMEOUT)
        if sock is not None:
            sock.close()

    def __enter__(self) -> LocalAPI:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._base_url if self._server is not None else "stopped"
        return f"<LocalAPI {where}>"

    # -- the app ---------------------------------------------------------------------

    @property
    def resource_identifier(self) -> str:
        """The ``resource`` its metadata names: ``resource``, or the API's URL."""
        return self.resource if self.resource is not None else self.url

    async def _resource_metadata(self, request: Request) -> Response:
        if not self.resource_metadata or request.url.path != PRM_PATH:
            return JSONResponse({"detail": "not found"}, status_code=404)
        with self._lock:
            self.resource_metadata_requests += 1
        servers = self.authorization_servers
        return JSONResponse(
            {
                "resource": self.resource_identifier,
                "authorization_servers": [self._as.issuer] if servers is None else servers,
                "bearer_methods_supported": ["header"],
            }
        )

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        token = _bearer_token(request)
        try:
            claims = self._authorize(request, token, path)
        except _Rejection as rejection:
            response = self._reject(rejection)
            self._record(
                APIRequestRecord(
                    request.method, path, response.status_code, rejection.error, token, body
                )
            )
            return response
        self._record(APIRequestRecord(request.method, path, 200, None, token, body))
        return JSONResponse(
            {
                "path": path,
                "client_id": claims.get("client_id"),
                "sub": claims.get("sub"),
                "scope": claims.get("scope"),
            }
        )

    def _authorize(self, request: Request, token: str | None, path: str) -> dict[str, Any]:
        if "access_token" in request.query_params:
            raise _Rejection(400, "invalid_request", "access tokens do not go in the URL")
        if token is None:
            raise _Rejection(401, None, "no bearer token")
        audience = self.resource_identifier if self.resource_metadata else self._as.audience
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._as.public_key,
                algorithms=["ES256"],
                issuer=self._as.issuer,
                audience=audience,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise _Rejection(401, "invalid_token", "the access token expired") from None
        except jwt.InvalidTokenError:
            raise _Rejection(401, "invalid_token", "the access token is not valid") from None
        with self._lock:
            revoked_before = self._revoked_before
            required = _required_scope(self._scopes, path)
        if revoked_before is not None and float(claims["iat"]) < revoked_before:
            raise _Rejection(401, "invalid_token", "the access token was revoked")
        if required is not None and required not in str(claims.get("scope", "")).split():
            raise _Rejection(
                403, "insufficient_scope", f"this needs scope {required}", scope=required
            )
        return claims

    def _reject(self, rejection: _Rejection) -> Response:
        params = [f'realm="{self.realm}"']
        if rejection.error is not None:
            params.append(f'error="{rejection.error}"')
            params.append(f'error_description="{rejection.description}"')
        params.extend(f'{name}="{value}"' for name, value in rejection.extra.items())
        if self.resource_metadata and rejection.status_code == 401:
            params.append(f'resource_metadata="{self.url}{PRM_PATH}"')
        return JSONResponse(
            {"error": rejection.error, "error_description": rejection.description},
            status_code=rejection.status_code,
            headers={"WWW-Authenticate": "Bearer " + ", ".join(params)},
        )

    def _record(self, record: APIRequestRecord) -> None:
        with self._lock:
            self._records.append(record)


class _Server(uvicorn.Server):
    """uvicorn's server, run in a thread, saying when it is ready (or why it is not)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.failure: BaseException | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()

    def run_with(self, sock: socket.socket) -> None:
        # uvicorn installs signal handlers only in the main thread, so a thread is fine.
        try:
            self.run(sockets=[sock])
        except BaseException as exc:  # SystemExit on a failed startup
            self.failure = exc
            logger.debug("LocalAPI server failed", exc_info=True)
        finally:
            self.ready.set()


def _bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _required_scope(scopes: Mapping[str, str], path: str) -> str | None:
    """The scope of the longest registered path that ``path`` is at or below."""
    best: tuple[int, str] | None = None
    for prefix, scope in scopes.items():
        if (prefix in ("/", path) or path.startswith(prefix + "/")) and (
            best is None or len(prefix) > best[0]
        ):
            best = (len(prefix), scope)
    return None if best is None else best[1]
