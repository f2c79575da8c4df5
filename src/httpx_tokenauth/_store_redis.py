"""RedisTokenStore: the shared token store on Redis or Valkey, through redis-py.

Each operation is written once: :meth:`RedisTokenStore._commands` turns it
into Redis commands, :meth:`RedisTokenStore._result` turns the replies into
its result; the sync and async paths only differ in how they send the
commands. redis-py is imported only by :meth:`RedisTokenStore.from_url`
(``pip install 'httpx-tokenauth[redis]'``); clients you pass may be any
object with redis-py's ``execute_command`` (``redis.Redis``,
``redis.cluster.RedisCluster``, a Sentinel ``master_for`` client, their
``redis.asyncio`` counterparts, valkey-py's).
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar
from urllib.parse import urlsplit

from ._errors import ConfigurationError
from ._store import (
    DeleteIf,
    EncryptionKey,
    Get,
    GetDocument,
    Lock,
    Put,
    PutDocument,
    StoreOperation,
    StoreUnavailable,
    TokenStore,
    Unlock,
    check_timeout,
    logger,
    verb,
)
from ._transport import on_asyncio

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncRedisClient", "RedisTokenStore", "SyncRedisClient"]

T = TypeVar("T")

Command: TypeAlias = tuple[str | int, ...]

DEFAULT_PREFIX = "httpx-tokenauth:"

#: Release the lease only if it still holds the caller's fence (SPEC F2).
_UNLOCK = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
#: Delete the entry only if it still holds the token whose value prefix is ARGV[1] (SPEC F3).
_DELETE_IF = (
    "local v = redis.call('get', KEYS[1]) "
    "if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) end "
    "return 0"
)


class SyncRedisClient(Protocol):
    """What RedisTokenStore needs of a blocking client: redis-py's ``execute_command``."""

    def execute_command(self, *args: str | int) -> object: ...


class AsyncRedisClient(Protocol):
    """What RedisTokenStore needs of an asyncio client: an awaitable ``execute_command``."""

    def execute_command(self, *args: str | int) -> Awaitable[object]: ...


def _is_async(client: object) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def _check_client(client: object, *, asynchronous: bool) -> None:
    name = "async_client" if asynchronous else "client"
    if not callable(getattr(client, "execute_command", None)):
        raise ConfigurationError(
            f"{name} must be a redis-py client (redis.Redis, redis.cluster.RedisCluster, "
            f"or their redis.asyncio versions), got {type(client).__name__}"
        )
    if _is_async(client) != asynchronous:
        got, other = ("a blocking", "client") if asynchronous else ("an asyncio", "async_client")
        raise ConfigurationError(
            f"{name}= got {got} client ({type(client).__name__}); pass it as {other}= instead"
        )


def _socket_timeout_unset(client: object) -> bool:
    """Best effort: whether a redis-py client was built without a socket_timeout."""
    for attribute in ("connection_pool", "nodes_manager"):  # Redis, RedisCluster
        holder = getattr(client, attribute, None)
        kwargs = getattr(holder, "connection_kwargs", None)
        if isinstance(kwargs, dict):
            return kwargs.get("socket_timeout") is None
    return False


def _ok(reply: object) -> bool | None:
    """SET's reply: True for OK, False for nil (NX lost), None for anything else."""
    if reply is True or reply in (b"OK", "OK"):
        return True
    if reply is None or reply is False:
        return False
    return None


class RedisTokenStore(TokenStore):
    """A token cache shared by every process that reaches one Redis or Valkey.

    ::

        store = RedisTokenStore.from_url(
            "redis://cache:6379/0", encryption_key=os.environ["TOKEN_CACHE_KEY"]
        )
        auth = TokenAuth(ClientCredentials(...), store=store)

    or with clients you configure (TLS, ACL user, Sentinel, cluster)::

        RedisTokenStore(redis.Redis(..., socket_timeout=0.5),
                        redis.asyncio.Redis(..., socket_timeout=0.5),
                        encryption_key=key)

    Either client may be left out. With only ``client``, async callers run
    its calls in a worker thread. With only ``async_client``, sync callers
    get a ConfigurationError (pass ``client`` too); and since redis.asyncio
    runs on asyncio only, trio callers need ``client`` as well. Async
    operations are bounded by ``timeout``; a blocking client you pass is
    bounded by its own ``socket_timeout`` (a warning is logged if it has
    none). ``from_url`` sets both clients' socket and connect timeouts to
    ``timeout``, retries a dropped connection once, never a timeout, and
    keeps one asyncio client per event loop (``await store.aclose()`` closes
    the current loop's; ``store.close()`` the blocking one).

    ``encryption_key`` is required: 32 random bytes or their url-safe base64
    text (:func:`generate_encryption_key`), or a list for rotation (first
    encrypts, all decrypt). ``None`` stores tokens in plaintext and logs a
    warning. ``prefix`` starts every key name.
    """

    documents = True

    def __init__(
        self,
        client: SyncRedisClient | None = None,
        async_client: AsyncRedisClient | None = None,
        *,
        encryption_key: EncryptionKey | None,
        timeout: float = 0.5,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if client is None and async_client is None:
            raise ConfigurationError(
                "RedisTokenStore needs client=redis.Redis(...) and/or "
                "async_client=redis.asyncio.Redis(...); or use RedisTokenStore.from_url(url, ...)"
            )
        if client is not None:
            _check_client(client, asynchronous=False)
        if async_client is not None:
            _check_client(async_client, asynchronous=True)
        super().__init__(encryption_key=encryption_key, timeout=timeout, prefix=prefix)
        self._client = client
        self._async_client = async_client
        self._owns_client = False
        self._async_factory: Callable[[], AsyncRedisClient] | None = None
        self._loop_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncRedisClient
        ] = weakref.WeakKeyDictionary()
        if client is not None and _socket_timeout_unset(client):
            logger.warning(
                "RedisTokenStore: the client has no socket_timeout, so a Redis that stops "
                "answering blocks sync callers; create it with socket_timeout=%s and "
                "socket_connect_timeout=%s, or use RedisTokenStore.from_url",
                self.timeout,
                self.timeout,
            )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        encryption_key: EncryptionKey | None,
        timeout: float = 0.5,
        prefix: str = DEFAULT_PREFIX,
    ) -> RedisTokenStore:
        """A store with its own redis-py clients for ``url`` (``redis://``, ``rediss://``, ``unix://``).

        Socket and connect timeouts are ``timeout`` (default 0.5 s, well
        under an API call's own).
        """
        seconds = check_timeout(timeout)
        if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                "url must be a redis://, rediss:// or unix:// URL, such as redis://cache:6379/0"
            )
        try:
            import redis  # noqa: PLC0415
            import redis.asyncio  # noqa: PLC0415
            import redis.asyncio.retry  # noqa: PLC0415
            import redis.backoff  # noqa: PLC0415
            import redis.exceptions  # noqa: PLC0415
            import redis.retry  # noqa: PLC0415
        except ImportError as exc:
            raise ConfigurationError(
                "RedisTokenStore.from_url needs redis-py: pip install 'httpx-tokenauth[redis]'"
            ) from exc
        dropped = (redis.exceptions.ConnectionError,)

        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=seconds,
                socket_connect_timeout=seconds,
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 1, dropped),
            )
        except ValueError:
            raise ConfigurationError(
                "url is not a Redis URL that redis-py understands: check the scheme, host, "
                "port and /db number"
            ) from None

        def async_client() -> AsyncRedisClient:
            retry = redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 1, dropped)
            new: AsyncRedisClient = redis.asyncio.Redis.from_url(
                url, socket_timeout=seconds, socket_connect_timeout=seconds, retry=retry
            )
            return new

        store = cls(client, encryption_key=encryption_key, timeout=seconds, prefix=prefix)
        store._owns_client = True
        store._async_factory = async_client
        return store

    # -- one description of every operation ----------------------------------------------

    def _commands(self, op: StoreOperation[object]) -> list[Command]:
        """The Redis commands that carry out ``op`` (one per name; usually one in all)."""
        if isinstance(op, (Get, GetDocument)):
            return [("GET", name) for name in op.names.reads]
        if isinstance(op, Put):
            return [("SET", op.names.entry, self._seal(op.names, op.token), "PX", op.ttl_ms)]
        if isinstance(op, PutDocument):
            sealed = self._seal_document(op.names, op.document)
            return [("SET", op.names.entry, sealed, "PX", op.ttl_ms)]
        if isinstance(op, Lock):
            return [("SET", op.names.lock, op.fence, "NX", "PX", op.ttl_ms)]
        if isinstance(op, Unlock):
            return [("EVAL", _UNLOCK, 1, op.names.lock, op.fence)]
        if isinstance(op, DeleteIf):
            return [
                ("EVAL", _DELETE_IF, 1, name, prefix)
                for name, prefix in self._markers(op.names, op.token)
            ]
        raise ConfigurationError(f"RedisTokenStore cannot carry out {type(op).__name__}")

    def _result(self, op: StoreOperation[object], replies: list[object]) -> object:
        """The operation's result from its commands' replies; StoreUnavailable if ill-shaped."""
        if isinstance(op, (Get, GetDocument)):
            opener = self._open if isinstance(op, Get) else self._open_document
            for index, (name, reply) in enumerate(zip(op.names.reads, replies, strict=True)):
                if reply is None:
                    continue
                if not isinstance(reply, (bytes, str)):
                    raise self._ill_shaped(op, reply)
                found = opener(index, name, reply)
                if found is not None:
                    return found
            return None
        if isinstance(op, (Put, PutDocument, Lock)):
            ok = _ok(replies[0])
            if ok is None or (not isinstance(op, Lock) and not ok):
                raise self._ill_shaped(op, replies[0])
            return ok if isinstance(op, Lock) else None
        deleted = 0
        for reply in replies:
            if isinstance(reply, bool) or not isinstance(reply, int):
                raise self._ill_shaped(op, reply)
            deleted += reply
        return deleted > 0

    def _ill_shaped(self, op: StoreOperation[object], reply: object) -> StoreUnavailable:
        return StoreUnavailable(
            f"Redis token store could not {verb(op)}: "
            f"a reply of the wrong shape ({type(reply).__name__})"
        )

    def _failed(self, op: StoreOperation[object], exc: Exception) -> StoreUnavailable:
        what = type(exc).__name__
        if isinstance(exc, TimeoutError):
            what += f" (no answer within {self.timeout:g} s)"
        return StoreUnavailable(f"Redis token store could not {verb(op)}: {what}")

    # -- the two ways to send them -------------------------------------------------------

    def execute(self, op: StoreOperation[T]) -> T:
        """Carry out ``op`` with the blocking client; StoreUnavailable if Redis fails."""
        client = self._client
        if client is None:
            raise ConfigurationError(
                "this RedisTokenStore has only an async_client, so sync callers "
                "(httpx.Client) cannot use it: pass client=redis.Redis(...) as well"
            )
        commands = self._commands(op)
        try:
            replies = [client.execute_command(*command) for command in commands]
        except Exception as exc:
            raise self._failed(op, exc) from exc
        return op.result(self._result(op, replies))

    async def aexecute(self, op: StoreOperation[T]) -> T:
        """Carry out ``op`` on this event loop, bounded by ``timeout``."""
        client = self._async_side()
        if client is None:  # a blocking client only, or trio: in a worker thread
            import anyio.to_thread  # noqa: PLC0415

            return await anyio.to_thread.run_sync(
                self.execute, op, limiter=anyio.CapacityLimiter(1)
            )
        import anyio  # noqa: PLC0415

        commands = self._commands(op)
        try:
            with anyio.fail_after(self.timeout):
                replies = [await client.execute_command(*command) for command in commands]
        except Exception as exc:
            raise self._failed(op, exc) from exc
        return op.result(self._result(op, replies))

    def _async_side(self) -> AsyncRedisClient | None:
        """The asyncio client for this loop, or None to run the blocking client in a thread."""
        if not on_asyncio():
            if self._client is None:
                raise ConfigurationError(
                    "redis.asyncio clients run on asyncio only; to use this RedisTokenStore "
                    "under trio, pass client=redis.Redis(...) as well (it then runs in a "
                    "worker thread)"
                )
            return None
        if self._async_client is not None:
            return self._async_client
        if self._async_factory is None:
            return None
        loop = sys.modules["asyncio"].get_running_loop()
        client = self._loop_clients.get(loop)
        if client is None:
            client = self._loop_clients[loop] = self._async_factory()
        return client

    def close(self) -> None:
        """Close the blocking client ``from_url`` created (never a client you passed)."""
        close = getattr(self._client, "close", None)
        if self._owns_client and close is not None:
            close()

    async def aclose(self) -> None:
        """Close the asyncio client ``from_url`` created for the current event loop."""
        if self._async_factory is None or not on_asyncio():
            return
        client = self._loop_clients.pop(sys.modules["asyncio"].get_running_loop(), None)
        aclose = getattr(client, "aclose", None)
        if aclose is not None:
            await aclose()

    def _describe(self) -> str:
        return f"prefix={self._prefix!r}, {super()._describe()}"
