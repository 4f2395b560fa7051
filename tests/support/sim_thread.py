"""Simulators serving from a thread and event loop of their own (for tests whose engine or
console runs in another process or loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from tests.support.tui import env_options
from validator_tui.demo import DemoEnvironment

T = TypeVar("T")


class SimThread:
    """A DemoEnvironment serving from its own thread and event loop."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def start() -> DemoEnvironment:
            return await DemoEnvironment(**env_options(tmp_path, **overrides)).__aenter__()

        self.env: DemoEnvironment = self._run(start())

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the simulators' loop and return its result."""

        async def invoke() -> T:
            return fn(*args)

        return self._run(invoke())

    def close(self) -> None:
        self._run(self.env.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
