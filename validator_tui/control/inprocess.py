"""`InProcessEngine`: the engine on a thread and event loop of its own, and the `EngineClient`
of a console running in the same process.

The engine's loop never runs console code: a long repaint cannot delay a claim. Every call
from the console is handed to the engine's loop (`run_coroutine_threadsafe`) and its answer
handed back, so the engine's state is only ever touched by the engine's thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from validator_tui.control import frames
from validator_tui.control.frame_commands import ClientCommands
from validator_tui.control.host import EngineHost
from validator_tui.control.interface import (
    VM_LOG_SETTLE_S,
    EngineInfo,
    EngineMode,
    Link,
    LinkStatus,
)
from validator_tui.engine.validator import Validator
from validator_tui.shared.delta import Header, StateDelta
from validator_tui.shared.records import JobRecord, OutboxRow, Outcome

T = TypeVar("T")
#: VM log lines waiting for the console, at most (the engine side waits beyond it).
LOG_QUEUE_LINES = 500
#: While waiting for an answer, how often to check that the engine still runs.
STOP_CHECK_S = 0.25


class EngineStopped(RuntimeError):
    """The engine's loop is not running: the call cannot be answered."""


class InProcessEngine(ClientCommands):
    """Runs a `Validator` on its own thread and serves a console from it.

    `start()` runs the engine; `wait_stopped()` returns once it has shut down (after
    `stop_validator()`, or `request_stop()` from a signal handler). Safe to use from any
    other thread's event loop.
    """

    def __init__(
        self,
        validator: Validator,
        *,
        mode: EngineMode = EngineMode.CONSOLE,
        host: EngineHost | None = None,
    ) -> None:
        self.validator = validator
        self.host = host or EngineHost(validator, mode=mode)
        self._info = self.host.info
        self._origin = f"embedded console (pid {os.getpid()})"
        self._header = Header(hotkey=validator.config.validator_hotkey)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="engine", daemon=True)
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle (the process owner's side) ---------------------------------------------------

    def start(self) -> None:
        """Start the engine's thread (once)."""
        if not self._thread.is_alive() and not self._stopped.is_set():
            self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        except BaseException as exc:  # kept for wait_stopped(), which re-raises it
            self._error = exc
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
            self._stopped.set()

    async def _run(self) -> None:
        async def mark_started() -> None:
            await self.validator.wait_started()
            self._started.set()

        marker = asyncio.create_task(mark_started())
        try:
            await self.host.run()
        finally:
            marker.cancel()

    async def wait_started(self) -> None:
        """Return once recovery is done and the engine's loops run."""
        while not self._started.is_set():
            if self._stopped.is_set():
                raise EngineStopped("the engine stopped before it started")
            await asyncio.sleep(0.01)

    async def wait_stopped(self) -> None:
        """Return once the engine has shut down (re-raising what crashed it, if anything)."""
        while not self._stopped.is_set():
            await asyncio.sleep(0.02)
        if self._error is not None:
            raise self._error

    def join(self, timeout: float | None = None) -> bool:
        """Block this thread until the engine has shut down; True if it has."""
        return self._stopped.wait(timeout)

    def request_stop(self) -> None:
        """Ask the engine to stop gracefully; callable from any thread or a signal handler."""
        if not self._stopped.is_set():
            self._loop.call_soon_threadsafe(self._stop_soon)

    def _stop_soon(self) -> None:
        self._loop.create_task(self.validator.stop())

    async def call(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `work()` on the engine's loop and return its result here; EngineStopped if the
        engine stops first (also while the work waits: its answer may then never come)."""
        if self._stopped.is_set() or self._loop.is_closed():
            raise EngineStopped("the engine has stopped")
        coroutine = work()
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:  # the loop closed since the check above
            coroutine.close()
            raise EngineStopped("the engine has stopped") from None
        answer = asyncio.wrap_future(future)
        while not answer.done():
            await asyncio.wait({answer}, timeout=STOP_CHECK_S)
            if not answer.done() and self._stopped.is_set():
                answer.cancel()
                raise EngineStopped("the engine stopped before it answered")
        return answer.result()

    # -- EngineClient -------------------------------------------------------------------------

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def read_only(self) -> bool:
        return self.validator.read_only

    @property
    def embedded(self) -> bool:
        return True

    @property
    def link(self) -> Link:
        if self._stopped.is_set():
            return Link(LinkStatus.GONE, self._info.started_at, "the engine has stopped")
        return Link(since=self._info.started_at)

    async def changes_since(self, version: int, event_seq: int) -> StateDelta:
        """The engine's changes; once it has stopped, nothing changes any more (the console
        keeps what it shows until it closes)."""

        async def delta() -> StateDelta:
            return self.validator.state.changes_since(version, event_seq)

        try:
            answer = await self.call(delta)
        except EngineStopped:
            return StateDelta(version, False, [], [], [], [], [], [], [], self._header)
        self._header = answer.header
        return answer

    async def job(self, job_id: str) -> JobRecord | None:
        async def lookup() -> JobRecord | None:
            return self.validator.state.job_copy(job_id)

        try:
            return await self.call(lookup)
        except EngineStopped:
            return None

    async def command(self, command: frames.Command) -> Outcome:
        """Through the engine's command desk, like every console's commands."""
        try:
            return await self.call(
                lambda: self.host.desk.run(self._origin, command, read_only=False)
            )
        except EngineStopped:
            return Outcome.refused("the engine has stopped")

    async def list_outbox(self, limit: int = 1000) -> list[OutboxRow]:
        async def rows() -> list[OutboxRow]:
            return self.validator.commands.list_outbox(limit)

        return await self.call(rows)

    async def vm_logs(
        self, vm_id: str, *, lines: int = 200, follow: bool = True
    ) -> AsyncIterator[str]:
        """The VM's log, read on the engine's loop and handed over line by line; the engine
        side waits (never buffers without bound) while the console is behind."""
        here = asyncio.get_running_loop()
        handed: asyncio.Queue[str | BaseException | None] = asyncio.Queue(LOG_QUEUE_LINES)

        async def hand_over(item: str | BaseException | None) -> None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(handed.put(item), here))

        async def pump() -> None:
            await asyncio.sleep(VM_LOG_SETTLE_S)
            try:
                async for line in self.validator.commands.vm_logs(
                    vm_id, lines=lines, follow=follow
                ):
                    await hand_over(line)
            except Exception as exc:
                await hand_over(exc)
            else:
                await hand_over(None)

        pumping = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while (item := await handed.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            pumping.cancel()
