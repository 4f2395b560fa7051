"""Every task the engine starts, so that shutdown can cancel and await all of them before it
closes the clients and the store they use: no task outlives what it writes to."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from validator_tui.sanitize import clean_line

logger = logging.getLogger("validator_tui.engine")

T = TypeVar("T")


class EngineStopped(RuntimeError):
    """A task was started after the engine closed its task registry."""


class TaskRegistry:
    """Starts tasks and keeps them until they end; `cancel_all` ends every one of them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._quiet: set[asyncio.Task[Any]] = set()
        self.closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, work: Coroutine[Any, Any, T], *, name: str | None = None, quiet: bool = False
    ) -> asyncio.Task[T]:
        """Run `work` as a tracked task.

        An exception the task ends with is logged (with its traceback) unless `quiet`: say
        `quiet` when the caller awaits the task and handles its exceptions itself. Raises
        EngineStopped (and closes `work`) once `cancel_all` has run.
        """
        if self.closed:
            work.close()
            raise EngineStopped("the engine is stopped: no new work")
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        if quiet:
            self._quiet.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        quiet = task in self._quiet
        self._quiet.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so asyncio never reports it as unretrieved
        if exc is not None and not quiet:
            logger.error(
                "engine task %s failed: %s",
                task.get_name(),
                clean_line(f"{type(exc).__name__}: {exc}", 300),
                exc_info=exc,
            )

    async def cancel_all(self, timeout: float) -> list[str]:
        """Cancel every task (and any task they start while ending) and wait for them, at
        most `timeout` seconds; close the registry. Returns the names of tasks still running
        (empty unless a task ignores cancellation)."""
        deadline = time.monotonic() + max(0.0, timeout)
        current = asyncio.current_task()
        while True:
            tasks = {task for task in self._tasks if task is not current and not task.done()}
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait(tasks, timeout=remaining)
        self.closed = True
        return sorted(task.get_name() for task in self._tasks if not task.done())
