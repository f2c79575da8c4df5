"""The two interpreters of the acquisition program: blocking calls, or awaits. No rules.

Each takes a program (``_program``), executes the effects it yields and sends
back their results, or throws their exceptions into it, until it returns. What
to do and when is the program's; how to do it with threads or an event loop
is here. Adding a kind of I/O is one effect class and one branch in each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable
from types import ModuleType
from typing import TYPE_CHECKING, Generic, NoReturn, Protocol, TypeVar, cast

from ._program import (
    AnyEffect,
    CallProvider,
    Detach,
    FetchDocument,
    Program,
    ReadAssertion,
    Send,
    Sleep,
    StoreCall,
    Wait,
)
from ._request import TokenRequest
from ._token import RawResponse, Token
from ._transport import on_asyncio

if TYPE_CHECKING:
    import asyncio

    from ._program import Acquisition

__all__ = ["Driver", "run_async", "run_sync"]

T = TypeVar("T")


class Driver(Protocol):
    """What the interpreters need from TokenAuth: its acquisition and its token clients."""

    _acquisition: Acquisition

    def _send_sync(self, request: TokenRequest, deadline_at: float) -> RawResponse: ...

    async def _send_async(self, request: TokenRequest, deadline_at: float) -> RawResponse: ...


class _Steps(Generic[T]):
    """Feeds a program the results of its effects; the interpreters only execute them."""

    __slots__ = ("error", "program", "result", "value")

    def __init__(self, program: Program[T]) -> None:
        self.program = program
        self.value: object = None
        self.error: BaseException | None = None  # thrown in next: cancellation too, so flights land

    def next(self) -> AnyEffect | None:
        """The next effect, or None once the program has returned its ``result``."""
        try:
            if self.error is None:
                effect = self.program.send(self.value)
            else:
                effect = self.program.throw(self.error)
        except StopIteration as stop:
            self.result: T = stop.value
            return None
        self.value, self.error = None, None
        return effect


def run_sync(driver: Driver, program: Program[T]) -> T:
    """Run ``program`` to its end in this thread, blocking for each effect."""
    steps = _Steps(program)
    while (effect := steps.next()) is not None:
        try:
            steps.value = _execute_sync(driver, effect)
        except BaseException as exc:
            steps.error = exc
    return steps.result


def _execute_sync(driver: Driver, effect: AnyEffect) -> object:
    if isinstance(effect, Send):
        return driver._send_sync(effect.request, effect.deadline_at)
    if isinstance(effect, Sleep):
        time.sleep(effect.seconds)
        return None
    if isinstance(effect, Wait):
        return effect.flight.done.wait(max(0.0, effect.until - time.monotonic()))
    if isinstance(effect, StoreCall):
        return effect.store.execute(effect.op)
    if isinstance(effect, FetchDocument):
        return driver._send_sync(_document_request(effect.url), effect.deadline_at)
    if isinstance(effect, CallProvider):
        return effect.fetch()
    if isinstance(effect, ReadAssertion):
        return effect.source.read(effect.audience)
    if isinstance(effect, Detach):
        return run_sync(driver, effect.program)
    _unknown(effect)


async def run_async(driver: Driver, program: Program[T]) -> T:
    """Run ``program`` to its end in this task, awaiting each effect."""
    steps = _Steps(program)
    while (effect := steps.next()) is not None:
        try:
            steps.value = await _execute_async(driver, effect)
        except BaseException as exc:
            steps.error = exc
    return steps.result


async def _execute_async(driver: Driver, effect: AnyEffect) -> object:
    anyio = _anyio()
    if isinstance(effect, Send):
        return await driver._send_async(effect.request, effect.deadline_at)
    if isinstance(effect, Sleep):
        await anyio.sleep(effect.seconds)
        return None
    if isinstance(effect, Wait):
        return await _wait(driver, effect)
    if isinstance(effect, StoreCall):
        if effect.shielded:  # a lease handed back while the caller is cancelled
            with anyio.CancelScope(shield=True):
                return await effect.store.aexecute(effect.op)
        return await effect.store.aexecute(effect.op)
    if isinstance(effect, FetchDocument):
        return await driver._send_async(_document_request(effect.url), effect.deadline_at)
    if isinstance(effect, CallProvider):
        if effect.is_async:
            return await cast(Awaitable[object], effect.fetch())
        # A thread from a limiter of its own, not the shared pool, which sync callers
        # waiting for this very fetch may be holding.
        return await anyio.to_thread.run_sync(effect.fetch, limiter=anyio.CapacityLimiter(1))
    if isinstance(effect, ReadAssertion):
        return await effect.source.aread(effect.audience)
    if isinstance(effect, Detach):
        if not on_asyncio():
            return await run_async(driver, effect.program)
        # On asyncio the fetch runs as a task of its own, so that a caller's timeout
        # or cancellation cannot abort the fetch others wait for.
        import asyncio  # noqa: PLC0415  (already loaded: we are running on it)

        task = asyncio.ensure_future(run_async(driver, effect.program))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)
    _unknown(effect)


async def _wait(driver: Driver, effect: Wait) -> bool:
    """Wait for a flight without blocking the event loop; cancellable; bounded."""
    anyio, flight = _anyio(), effect.flight
    with anyio.move_on_after(max(0.0, effect.until - time.monotonic())):
        if flight.owner == threading.get_ident():  # a task on this loop is fetching
            landed = anyio.Event()
            if driver._acquisition.register_waker(flight, landed.set):
                await landed.wait()
            return True
        # A thread, or a loop in another thread, is fetching: its events cannot wake
        # this loop, so look at its threading.Event now and then.
        pause = 0.001
        while not flight.done.is_set():
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.02)
    return flight.done.is_set()


def _unknown(effect: NoReturn) -> NoReturn:  # pragma: no cover - mypy proves it unreachable
    """Every effect has a branch above: mypy checks it, this says so at run time."""
    raise TypeError(f"unknown effect {effect!r}")


def _document_request(url: str) -> TokenRequest:
    from ._discovery import document_request  # noqa: PLC0415  (only grants made by issuer)

    return document_request(url)


def _anyio() -> ModuleType:
    """anyio, for the async interpreter only: sync users do not pay for importing it."""
    import anyio.to_thread  # noqa: PLC0415

    return anyio


def _retrieve(task: asyncio.Future[Token]) -> None:
    """Mark a detached fetch's outcome as seen: its callers may have gone away."""
    if not task.cancelled():
        task.exception()
