"""A console process's signals and terminal, and `validator-tui attach` (the embedded
console of `run`/`demo` builds on this in validator_tui.embedded).

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
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from validator_tui.control.client import EngineUnavailable, SocketEngine
from validator_tui.control.interface import EngineClient
from validator_tui.control.terminal import release_terminal, terminal_alive
from validator_tui.tui.app import ValidatorApp
from validator_tui.tui.terminal import ConsoleDriver

logger = logging.getLogger("validator_tui.console")

#: How often a console process checks whether its console should close, and whether its
#: terminal is still there (a hangup without SIGHUP).
SUPERVISE_S = 0.5
#: An attached console runs this much nicer than the engine: on a busy host, rendering yields
#: the CPU to the engine's claims.
ATTACH_NICENESS = 10
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def say(text: str) -> None:
    """A line for the operator on the terminal, if there still is one."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


class Signals:
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


async def supervise(
    app: ValidatorApp,
    *,
    close_when: Callable[[], bool],
    on_terminal_gone: Callable[[], None],
    parent: int | None = None,
) -> None:
    """Close the console once `close_when()` holds (a signal may arrive before the app runs,
    or while it starts), and call `on_terminal_gone` once when the terminal on stdin stops
    answering (if there was one), or when the process `parent` (the server relaying this
    console to a browser) is no longer this process's parent. Checks every SUPERVISE_S until
    cancelled."""
    watching = terminal_alive(0)
    closed = False
    while True:
        if watching and not terminal_alive(0):
            watching = False
            on_terminal_gone()
        if parent is not None and os.getppid() != parent:
            parent = None
            on_terminal_gone()
        if not closed and close_when() and app.is_running:
            closed = True
            app.exit()
        await asyncio.sleep(SUPERVISE_S)


def console_app(engine: EngineClient) -> ValidatorApp:
    """The console for `engine`: in a real terminal on a driver that survives the terminal
    going away; elsewhere (a browser through `validator-tui serve`, which names its driver
    in $TEXTUAL_DRIVER) on the driver Textual chooses."""
    app = ValidatorApp(engine)
    terminal = sys.__stdout__ is not None and sys.__stdout__.isatty()
    if terminal and "TEXTUAL_DRIVER" not in os.environ:
        app.driver_class = ConsoleDriver
    return app


async def run_attached(state_dir: Path, *, read_only: bool) -> int:
    """`validator-tui attach`: a console on the engine of `state_dir`; quitting detaches."""
    with contextlib.suppress(OSError):
        os.nice(ATTACH_NICENESS)
    client = SocketEngine(state_dir, read_only=read_only)
    try:
        await client.connect()
    except EngineUnavailable as exc:
        say(
            f"validator-tui: {exc}\n"
            "Start one with `validator-tui run` (or `validator-tui run --headless` under "
            "systemd), then attach."
        )
        return 1
    app = console_app(client)
    closing = gone = False

    def close(hangup: bool = False) -> None:
        nonlocal closing, gone
        closing = True
        if hangup and not gone:
            gone = True
            release_terminal()
        if app.is_running:
            app.exit()

    signals = Signals()
    signals.on(STOP_SIGNALS, close)
    signals.on((signal.SIGHUP,), lambda: close(hangup=True))
    # Served to a browser (`validator-tui serve` names the driver): the server is the
    # "terminal"; if it dies, nobody sees this console any more.
    served = "TEXTUAL_DRIVER" in os.environ
    watcher = asyncio.create_task(
        supervise(
            app,
            close_when=lambda: closing,
            on_terminal_gone=lambda: close(hangup=True),
            parent=os.getppid() if served else None,
        )
    )
    try:
        await app.run_async()
    finally:
        watcher.cancel()
        signals.remove()
        await client.close()
    return 0 if app.return_code in (0, None) else 1
