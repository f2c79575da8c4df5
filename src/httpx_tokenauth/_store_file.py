"""FileTokenStore: the shared token store for the processes of one host, on SQLite.

One database file in a directory the store creates 0700, itself created 0600
(SQLite gives its -wal and -shm files the database's mode). Cross-process
exclusion is SQLite's own locking: every operation is one atomic statement,
and a statement that cannot get the lock within ``timeout`` (SQLite's busy
timeout) is a store failure. Entries and leases expire by the absolute time
stored with them. Each operation opens its own connection, so the store is
safe across threads and ``fork()``; operations are rare (only when the
per-process cache would fetch), so the cost does not show.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

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
    logger,
    verb,
)

if TYPE_CHECKING:
    import sqlite3

__all__ = ["FileTokenStore"]

T = TypeVar("T")

FILENAME = "httpx-tokenauth-store.sqlite3"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS store ("
    "name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at INTEGER NOT NULL"
    ") WITHOUT ROWID"
)
_GET = "SELECT value FROM store WHERE name = ? AND expires_at > ?"
_PUT = (
    "INSERT INTO store (name, value, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
_PURGE = "DELETE FROM store WHERE expires_at <= ?"
# SET NX PX: insert, or take over a row whose lease has run out; rowcount says which.
_LOCK = _PUT + " WHERE store.expires_at <= ?"
_UNLOCK = "DELETE FROM store WHERE name = ? AND value = ? AND expires_at > ?"
_DELETE_IF = "DELETE FROM store WHERE name = ? AND substr(value, 1, ?) = ? AND expires_at > ?"


class FileTokenStore(TokenStore):
    """A token cache shared by the processes of one host, with no server.

    ::

        store = FileTokenStore("/var/cache/billing-tokens",
                               encryption_key=os.environ["TOKEN_CACHE_KEY"])

    For gunicorn/uvicorn workers, cron jobs, CLIs run in a loop: the same
    guarantees as RedisTokenStore (one fetch per renewal among them,
    leases, compare-and-delete, encrypted entries) for processes that see the
    same local directory. Not for network file systems (SQLite's locking is
    unreliable there).

    ``directory`` is created 0700 if absent; the database file in it is
    created 0600. ``timeout`` bounds how long an operation waits for another
    process's write (SQLite's busy timeout). ``clock`` is the wall clock
    entries and leases expire by (for tests).
    """

    documents = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        encryption_key: EncryptionKey | None,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
            raise ConfigurationError(f"directory must be a path, got {type(directory).__name__}")
        if not callable(clock):
            raise ConfigurationError("clock must be a callable that returns seconds")
        super().__init__(encryption_key=encryption_key, timeout=timeout)
        folder = os.fspath(directory)
        self.path = os.path.join(folder, FILENAME)
        self._clock = clock
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder, mode=0o700, exist_ok=True)
                os.chmod(folder, 0o700)
            connection = self._connect()
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            finally:
                connection.close()
            mode = os.stat(self.path).st_mode
        except Exception as exc:
            raise ConfigurationError(
                f"FileTokenStore cannot keep its database in {folder!r}: {_reason(exc)}; "
                "give a local directory this process can create and write"
            ) from exc
        if mode & 0o077:
            logger.warning(
                "FileTokenStore: %s can be read by other users (mode %o); chmod 600 it",
                self.path,
                mode & 0o777,
            )

    def _connect(self) -> sqlite3.Connection:
        import sqlite3  # noqa: PLC0415

        flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:  # create it 0600 before SQLite opens it, whatever the umask
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
        except FileExistsError:
            fd = os.open(self.path, flags)  # refuses a symbolic link in its place
        os.close(fd)
        connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        return connection

    def _run(self, connection: sqlite3.Connection, op: StoreOperation[object]) -> object:
        """Carry out ``op`` in SQL: each change is one atomic statement."""
        now = int(self._clock() * 1000)
        if isinstance(op, (Get, GetDocument)):
            opener = self._open if isinstance(op, Get) else self._open_document
            for index, name in enumerate(op.names.reads):
                row = connection.execute(_GET, (name, now)).fetchone()
                if row is not None and isinstance(row[0], (str, bytes)):
                    found = opener(index, name, row[0])
                    if found is not None:
                        return found
            return None
        if isinstance(op, (Put, PutDocument)):
            if isinstance(op, Put):
                sealed = self._seal(op.names, op.token)
            else:
                sealed = self._seal_document(op.names, op.document)
            connection.execute(_PURGE, (now,))
            connection.execute(_PUT, (op.names.entry, sealed, now + op.ttl_ms))
            return None
        if isinstance(op, Lock):
            cursor = connection.execute(_LOCK, (op.names.lock, op.fence, now + op.ttl_ms, now))
            return cursor.rowcount == 1
        if isinstance(op, Unlock):
            return connection.execute(_UNLOCK, (op.names.lock, op.fence, now)).rowcount > 0
        assert isinstance(op, DeleteIf)  # noqa: S101 - execute checked the type
        deleted = 0
        for name, prefix in self._markers(op.names, op.token):
            deleted += connection.execute(_DELETE_IF, (name, len(prefix), prefix, now)).rowcount
        return deleted > 0

    def execute(self, op: StoreOperation[T]) -> T:
        """Carry out ``op``, blocking; StoreUnavailable if the database cannot answer."""
        _check_op(op)
        try:
            connection = self._connect()
            try:
                value = self._run(connection, op)
            finally:
                connection.close()
        except Exception as exc:
            raise StoreUnavailable(
                f"file token store could not {verb(op)}: {_reason(exc)}"
            ) from exc
        return op.result(value)

    async def aexecute(self, op: StoreOperation[T]) -> T:
        """Carry out ``op`` in a worker thread, so the event loop never blocks on the file."""
        import anyio.to_thread  # noqa: PLC0415

        return await anyio.to_thread.run_sync(self.execute, op, limiter=anyio.CapacityLimiter(1))

    def _describe(self) -> str:
        return f"path={self.path!r}, {super()._describe()}"


def _check_op(op: object) -> None:
    if not isinstance(op, (Get, Put, Lock, Unlock, DeleteIf, GetDocument, PutDocument)):
        raise ConfigurationError(f"FileTokenStore cannot carry out {type(op).__name__}")


def _reason(exc: Exception) -> str:
    """What went wrong, in SQLite's or the OS's fixed words: never an entry's content."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    import sqlite3  # noqa: PLC0415

    if isinstance(exc, sqlite3.Error) and exc.args:
        return f"{type(exc).__name__}: {str(exc.args[0])[:100]}"
    return type(exc).__name__
