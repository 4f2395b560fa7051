"""The console processes: `run`/`demo` (the console embeds the engine) and `attach`.

What the process does with its signals and its terminal:
- SIGTERM, SIGINT: the console closes (the terminal restored) and the engine stops the
  graceful way: no new claims, running jobs get their result, the outbox is flushed; exit 0.
- SIGHUP, or a terminal that goes away (EIO): the console closes; an embedded engine keeps
  running in this process without a terminal (standard fds on /dev/null, log lines in the
  state dir's `validator.log`), still serving its control socket; `validator-tui attach`
  brings a console back.
- The console's own choice (`ConsoleExit`): DETACH leaves the engine running as after SIGHUP,
  STOP (or the app simply ending) stops it the graceful way.
- The engine stopping on its own (stopped from an attached console, or crashed) closes the
  console. Every path ends in Textual's own exit, which restores the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from validator_tui.control.client import EngineUnavailable, SocketEngine
from validator_tui.control.inprocess import InProcessEngine
from validator_tui.control.interface import ConsoleExit, EngineMode
from validator_tui.control.paths import ensure_private_dir, log_path, state_dir_key
from validator_tui.control.terminal import release_terminal, terminal_alive
from validator_tui.engine.validator import Validator
from validator_tui.logs import setup_file_logging
from validator_tui.tui.app import ValidatorApp
from validator_tui.tui.terminal import ConsoleDriver

logger = logging.getLogger("validator_tui.console")

#: How often the console checks that its terminal is still there (a hangup without SIGHUP).
TERMINAL_CHECK_S = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _say(text: str) -> None:
    """A line for the operator on the terminal, if there still is one."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


class _Signals:
    """Signal handlers on the running loop, removed again by `remove()`."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._installed: list[signal.Signals] = []

    def on(self, signals: tuple[signal.Signals, ...], handler: Callable[[], None]) -> None:
        for sig in signals:
            self._loop.add_signal_handler(sig, handler)
            self._installed.append(sig)

    def remove(self) -> None:
        for sig in self._installed:
            self._loop.remove_signal_handler(sig)
        self._installed.clear()


async def _watch_terminal(on_gone: Callable[[], None]) -> None:
    """Call `on_gone` once the terminal on stdin stops answering (only if there was one)."""
    if not terminal_alive(0):
        return
    while terminal_alive(0):
        await asyncio.sleep(TERMINAL_CHECK_S)
    on_gone()


def _console(engine: InProcessEngine | SocketEngine) -> ValidatorApp:
    app = ValidatorApp(engine)
    app.driver_class = ConsoleDriver
    return app


class EmbeddedConsole:
    """`validator-tui run` / `demo`: the engine on its own thread, the console in front."""

    def __init__(self, validator: Validator, mode: EngineMode, log_format: str = "text") -> None:
        self.validator = validator
        self.engine = InProcessEngine(validator, mode=mode)
        self.log_file = log_path(validator.config.state_path)
        self.log_format = log_format
        self.detached = False

    async def run(self) -> int:
        """Run engine and console; return the exit code once the engine has stopped."""
        ensure_private_dir(state_dir_key(self.validator.config.state_path))
        setup_file_logging(self.log_file, self.log_format)
        engine = self.engine
        engine.start()
        app = _console(engine)
        signals = _Signals()
        signals.on(STOP_SIGNALS, lambda: self._stop_signal(app))
        signals.on((signal.SIGHUP,), lambda: self._hang_up(app))
        watchers = [
            asyncio.create_task(self._close_when_engine_stops(app)),
            asyncio.create_task(_watch_terminal(lambda: self._hang_up(app))),
        ]
        try:
            result = await app.run_async()
            choice = result if isinstance(result, ConsoleExit) else None
            if choice is ConsoleExit.DETACH and not engine.join(0):
                if not self.detached:
                    self._detach()
            elif not self.detached:
                engine.request_stop()
                if not engine.join(0):
                    _say("stopping the validator: running jobs get their result…")
            code = await self._wait_engine()
            return code if app.return_code in (0, None) else 1
        finally:
            signals.remove()
            for task in watchers:
                task.cancel()

    def _stop_signal(self, app: ValidatorApp) -> None:
        logger.info("stop signal: stopping the validator the graceful way")
        self.engine.request_stop()
        if app.is_running:
            app.exit()

    def _hang_up(self, app: ValidatorApp) -> None:
        """The terminal is gone: close the console, keep the engine (once)."""
        if not self.detached:
            self.detached = True
            release_terminal()
            logger.warning(
                "the terminal went away: the console closed, the validator keeps running "
                "(pid %d); `validator-tui attach` brings a console back",
                self.engine.info.pid,
            )
        if app.is_running:
            app.exit()

    def _detach(self) -> None:
        """The operator chose to leave the engine running: leave the terminal to them."""
        self.detached = True
        _say(
            f"detached: the validator keeps running in this process (pid {self.engine.info.pid})"
            f", logging to {self.log_file}.\n`validator-tui attach` brings the console back; "
            "this terminal may be closed (ctrl+c here stops the validator)."
        )
        release_terminal()
        logger.info("console detached: the validator keeps running")

    async def _close_when_engine_stops(self, app: ValidatorApp) -> None:
        with contextlib.suppress(BaseException):
            await self.engine.wait_stopped()
        if app.is_running:
            app.exit()

    async def _wait_engine(self) -> int:
        try:
            await self.engine.wait_stopped()
        except Exception as exc:
            logger.exception("the engine stopped on an error")
            _say(f"validator-tui: the engine stopped on an error: {exc!r}")
            return 1
        logger.info("stopped")
        return 0


async def run_attached(state_dir: Path, *, read_only: bool) -> int:
    """`validator-tui attach`: a console on the engine of `state_dir`; quitting detaches."""
    client = SocketEngine(state_dir, read_only=read_only)
    try:
        await client.connect()
    except EngineUnavailable as exc:
        _say(
            f"validator-tui: {exc}\n"
            "Start one with `validator-tui run` (or `validator-tui run --headless` under "
            "systemd), then attach."
        )
        return 1
    app = _console(client)
    gone = False

    def close(hangup: bool = False) -> None:
        nonlocal gone
        if hangup and not gone:
            gone = True
            release_terminal()
        if app.is_running:
            app.exit()

    signals = _Signals()
    signals.on(STOP_SIGNALS, close)
    signals.on((signal.SIGHUP,), lambda: close(hangup=True))
    watcher = asyncio.create_task(_watch_terminal(lambda: close(hangup=True)))
    try:
        await app.run_async()
    finally:
        watcher.cancel()
        signals.remove()
        await client.close()
    return 0 if app.return_code in (0, None) else 1
