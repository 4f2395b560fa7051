"""`validator-tui run` / `demo`: the engine on a thread of its own in this process, the console
in front of it; the console may go (detach, SIGHUP, EIO) and the engine runs on. See
validator_tui.console for what each signal does."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from validator_tui.console import STOP_SIGNALS, Signals, console_app, say, supervise
from validator_tui.control.inprocess import InProcessEngine
from validator_tui.control.interface import ConsoleExit, EngineMode
from validator_tui.control.paths import attach_command, ensure_private_dir, log_path, state_dir_key
from validator_tui.control.terminal import release_terminal
from validator_tui.engine.validator import Validator
from validator_tui.logs import setup_file_logging
from validator_tui.tui.app import ValidatorApp

logger = logging.getLogger("validator_tui.console")

#: The GIL hand-over period between the engine's thread and the console's.
ENGINE_SWITCH_INTERVAL_S = 0.002
PYTHON_SWITCH_INTERVAL_S = 0.005


class EmbeddedConsole:
    """`validator-tui run` / `demo`: the engine on its own thread, the console in front."""

    def __init__(
        self,
        validator: Validator,
        mode: EngineMode,
        log_format: str = "text",
        *,
        stop_on_hangup: bool = False,
    ) -> None:
        self.validator = validator
        #: A lost terminal stops the engine instead of leaving it running (a demo in a
        #: temporary state dir: nobody is looking at it any more, nothing is kept).
        self.stop_on_hangup = stop_on_hangup
        self.engine = InProcessEngine(validator, mode=mode)
        self.log_file = log_path(validator.config.state_path)
        self.log_format = log_format
        self.detached = False
        self.stopping = False

    async def run(self) -> int:
        """Run engine and console; return the exit code once the engine has stopped."""
        ensure_private_dir(state_dir_key(self.validator.config.state_path))
        setup_file_logging(self.log_file, self.log_format)
        # The engine's thread and the console's share the GIL; a thread that wants it back
        # waits up to this interval (5 ms by default) for the other to let go: every socket
        # read or SQLite call a claim makes is such a wait while the console renders. Shorter
        # bounds what a render adds to a claim, but slices the render that shows a key press
        # (measured, claims p99 / key median: 5 ms 19.7 / 24.4 ms, 2 ms 8.5 / 21.4 ms, 1 ms
        # 6.3 / 35.0 ms; BENCHMARKS.md).
        switch_interval = sys.getswitchinterval()
        if switch_interval == PYTHON_SWITCH_INTERVAL_S:  # unless set already (the benches)
            sys.setswitchinterval(ENGINE_SWITCH_INTERVAL_S)
        engine = self.engine
        engine.start()
        app = console_app(engine)
        signals = Signals()
        signals.on(STOP_SIGNALS, lambda: self._stop_signal(app))
        signals.on((signal.SIGHUP,), lambda: self._hang_up(app))
        watcher = asyncio.create_task(
            supervise(
                app,
                close_when=lambda: self.detached or self.stopping or engine.join(0),
                on_terminal_gone=lambda: self._hang_up(app),
            )
        )
        try:
            result = await app.run_async()
            choice = result if isinstance(result, ConsoleExit) else None
            if choice is ConsoleExit.DETACH and not engine.join(0):
                if not self.detached:
                    self._detach()
            elif not self.detached:
                engine.request_stop()
                if not engine.join(0):
                    say("stopping the validator: running jobs get their result…")
            code = await self._wait_engine()
            return code if app.return_code in (0, None) else 1
        finally:
            signals.remove()
            watcher.cancel()
            sys.setswitchinterval(switch_interval)

    def _stop_signal(self, app: ValidatorApp) -> None:
        logger.info("stop signal: stopping the validator the graceful way")
        self.stopping = True
        self.engine.request_stop()
        if app.is_running:
            app.exit()

    def _hang_up(self, app: ValidatorApp) -> None:
        """The terminal is gone: close the console, keep the engine (once); or, with
        `stop_on_hangup`, stop it the graceful way."""
        if self.stop_on_hangup and not self.detached:
            release_terminal()
            logger.warning(
                "the terminal went away: the demo (temporary state dir) stops; "
                "`validator-tui demo --state-dir DIR` keeps running without a terminal"
            )
            self._stop_signal(app)
            return
        if not self.detached:
            self.detached = True
            release_terminal()
            logger.warning(
                "the terminal went away: the console closed, the validator keeps running "
                "(pid %d); `%s` brings a console back",
                self.engine.info.pid,
                attach_command(self.engine.info.state_dir),
            )
        if app.is_running:
            app.exit()

    def _detach(self) -> None:
        """The operator chose to leave the engine running: leave the terminal to them."""
        self.detached = True
        say(
            f"detached: the validator keeps running in this process (pid {self.engine.info.pid})"
            f", logging to {self.log_file}.\n`{attach_command(self.engine.info.state_dir)}` "
            "brings the console back; "
            "this terminal may be closed (ctrl+c here stops the validator)."
        )
        release_terminal()
        logger.info("console detached: the validator keeps running")

    async def _wait_engine(self) -> int:
        try:
            await self.engine.wait_stopped()
        except Exception as exc:
            logger.exception("the engine stopped on an error")
            say(f"validator-tui: the engine stopped on an error: {exc!r}")
            return 1
        logger.info("stopped")
        return 0
