"""ValidatorApp: the operator's console of one engine. It holds the engine connection, drains
the change feed on a timer into the main screen, and owns quit and the global screens.

The app returns what the operator chose when it closes (`ConsoleExit`): DETACH leaves the
validator running (the only way out of an attached console, which never stops its engine),
STOP means the validator has been asked to stop the graceful way.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import ClassVar

from rich.console import RenderableType
from textual import events, work
from textual._compositor import CompositorUpdate
from textual.app import App
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from validator_tui.control import ConsoleExit, EngineClient, StateDelta
from validator_tui.control.paths import attach_command
from validator_tui.sanitize import clean_line
from validator_tui.tui.actions import Owner, bindings
from validator_tui.tui.commands import ActionsProvider
from validator_tui.tui.screens.help import HelpScreen
from validator_tui.tui.screens.main import MainScreen
from validator_tui.tui.screens.quit import QuitScreen
from validator_tui.tui.terminal_diff import ShadowScreen
from validator_tui.tui.widgets.event_log import EventLog

#: Polls without a change after which the console polls the engine once a second.
QUIET_POLLS = 8
#: When the console has shown its first frames, what exists then lives as long as the process.
GC_SETTLE_S = 2.0


def calm_garbage_collector() -> None:
    """Stop the garbage collector from stalling the console (and the engine beside it).

    A full (generation 2) collection walks every tracked object and holds the GIL while it
    does: with the console and the engine in one process that was ~110,000 objects, 70-360 ms
    per pause, 30 pauses in 40 s under 27 jobs/s, the p95 of key → repaint and of claims.
    The objects that exist once the console runs (modules, the app, the engine) never become
    garbage: `gc.freeze()` moves them out of every collection (measured: gen-2 pauses 71 → 20
    ms median, all pauses 2.7 → 1.2 s per 40 s). A young collection's pause grows with its
    threshold (10,000: up to 14 ms, the claims' p99 with the console busy; 2,000: up to 5 ms
    for the same total); full collections keep their pace (one per million allocations: with
    a fifth of that pace, RSS after 31,000 jobs was 3.5 MB higher)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(2_000, 10, 50)


def _active(delta: StateDelta) -> bool:
    """Whether `delta` changes more than the header."""
    return bool(
        delta.jobs
        or delta.removed_jobs
        or delta.challenges
        or delta.removed_challenges
        or delta.vms
        or delta.removed_vms
        or delta.events
    )


class ValidatorApp(App[ConsoleExit]):
    """Shows one engine through its `EngineClient` (in-process or attached)."""

    CSS_PATH = "app.tcss"
    TITLE = "validator-tui"
    #: Our actions only: Textual's own (Keys, Maximize, …) open panels that esc does not close
    #: and keys the help does not document.
    COMMANDS: ClassVar = {ActionsProvider}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-medium"), (150, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = bindings(Owner.APP)

    def __init__(
        self,
        engine: EngineClient,
        *,
        clock: Callable[[], float] = time.time,
        refresh_hz: float = 4.0,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.clock = clock
        self.refresh_hz = refresh_hz
        self.cursor_blink = cursor_blink
        self.read_only = engine.read_only
        self.main = MainScreen()
        self._version = 0
        self._event_seq = 0
        self._last_second = -1
        self._leaving = False
        self._shadow = ShadowScreen()
        self._polls = 0
        self._quiet_polls = 0

    def _display(self, screen: Screen[object], renderable: RenderableType | None) -> None:
        """Write only the cells that changed since the last frame (see `ShadowScreen`).

        Textual 8.2.8's `App._display` writes the update when it is not batching, running in
        a terminal (not headless, not inline); the diff is taken under the same conditions, so
        the shadow only records what reaches the terminal."""
        if (
            isinstance(renderable, CompositorUpdate)
            and not self._batch_count
            and self._running
            and not self._closed
            and not self.is_headless
            and self._driver is not None
            and not self._driver.is_inline
        ):
            renderable = self._shadow.diff(renderable, self.console)
        super()._display(screen, renderable)

    def on_resize(self, event: events.Resize) -> None:
        """The terminal may have reflowed or cleared: the next full frame is sent whole."""
        self._shadow.invalidate()

    def action_redraw(self) -> None:
        """Send the whole screen again (repairs a terminal something else wrote to)."""
        self._shadow.invalidate()
        self.screen.refresh()

    @property
    def shown_version(self) -> int:
        """The engine state version the console shows."""
        return self._version

    def on_mount(self) -> None:
        self.push_screen(self.main)
        self.set_interval(1.0 / self.refresh_hz, self.poll_engine)
        self.call_later(self.refresh_from_engine)
        self.set_timer(GC_SETTLE_S, calm_garbage_collector)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A command that failed is shown (toast + event log); the app stays up."""
        worker = event.worker
        if event.state is WorkerState.ERROR:
            error = clean_line(f"{type(worker.error).__name__}: {worker.error}", 300)
            self.notify(error, title="command error", severity="error", markup=False)
            self.main.query_one(EventLog).note("error", f"command error: {error}", self.clock())

    async def poll_engine(self) -> None:
        """The refresh timer: every tick while jobs, CVMs, VMs or events change; once a second
        after `QUIET_POLLS` ticks without such a change (header-only changes, such as the
        time of the last poll, do not count). An idle console costs less; a change then shows
        within a second, and the clock still ticks every second."""
        self._polls += 1
        if self._quiet_polls >= QUIET_POLLS and self._polls % max(1, round(self.refresh_hz)):
            return
        await self.refresh_from_engine()

    async def refresh_from_engine(self) -> None:
        """Apply what changed in the engine since the last call, and once a second refresh the
        relative times (nothing at all when neither is due)."""
        delta = await self.engine.changes_since(self._version, self._event_seq)
        now = self.clock()
        changed = delta.version != self._version
        self._quiet_polls = 0 if changed and _active(delta) else self._quiet_polls + 1
        new_second = int(now) != self._last_second
        if not changed and not new_second:
            return
        try:
            with self.batch_update():
                if changed:
                    self._version = delta.version
                    if delta.events:
                        self._event_seq = delta.events[-1].seq
                    self.main.apply(delta, now)
                if new_second:
                    self._last_second = int(now)
                    self.main.tick(now)
        except NoMatches:
            # The main screen always has these widgets: they are missing only while the app
            # is being torn down, and a last tick then has nothing to update.
            return

    # -- global actions -----------------------------------------------------------------------

    def action_help(self) -> None:
        """Show the keys. The help screen is built once and kept (installed): showing it again
        costs one frame, not a compose, a stylesheet pass and a table layout."""
        if not isinstance(self.screen, HelpScreen):
            if not self.is_screen_installed("help"):
                self.install_screen(HelpScreen(read_only=self.read_only), "help")
            self.push_screen("help")

    async def action_quit(self) -> None:
        """Quit. An attached console detaches at once (it never stops the engine); the
        embedded one asks: stop the validator, detach and keep it running, or go back."""
        if self._leaving or isinstance(self.screen, QuitScreen):
            return
        if not self.engine.embedded:
            self._leaving = True
            self.exit(ConsoleExit.DETACH)
            return
        quit_screen = QuitScreen(
            self.main.running_jobs(), attach_command(self.engine.info.state_dir)
        )
        self.push_screen(quit_screen, self._quit_chosen)

    def _quit_chosen(self, choice: ConsoleExit | None) -> None:
        if choice is ConsoleExit.DETACH:
            self._leaving = True
            self.exit(ConsoleExit.DETACH)
        elif choice is ConsoleExit.STOP:
            self.stop_validator_and_exit()

    @work(exit_on_error=False, group="shutdown")
    async def stop_validator_and_exit(self) -> None:
        """Ask the engine to stop, then close with STOP. The embedded console closes with STOP
        whatever the answer (its process stops the engine then); an attached console whose
        request is refused stays open and says why."""
        if self._leaving:
            return
        self._leaving = True
        self.notify("stopping the validator…", title="quit", markup=False)
        outcome = await self.engine.stop_validator()
        if not outcome.ok and not self.engine.embedded:
            self._leaving = False
            self.notify(
                clean_line(outcome.message, 300),
                title="stop validator: refused",
                severity="error",
                markup=False,
            )
            return
        self.exit(ConsoleExit.STOP)
