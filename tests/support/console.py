"""Helpers for console tests on a `FakeEngine` (no simulators, no engine thread)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console as RichConsole
from rich.text import Text
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Button, Static

from tests.support.fake_engine import FakeEngine
from validator_tui.control import ConsoleExit, JobState
from validator_tui.tui.app import ValidatorApp
from validator_tui.tui.screens.confirm import ConfirmScreen


@dataclass
class Console:
    """A running app on a fake engine, and its Pilot."""

    engine: FakeEngine
    app: ValidatorApp
    pilot: Pilot[Any]

    async def sync(self) -> None:
        """Apply what the test changed in the fake engine now (as the 4 Hz timer would)."""
        await self.app.refresh_from_engine()
        await self.pilot.pause()

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Let the app run until `predicate()` holds; fail with `what` after `timeout` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for: {what}")
            await self.pilot.pause(0.02)

    async def press_closing(self, *keys: str) -> None:
        """Press `keys`, the last of which closes the app (Pilot's `press` would wait for the
        screens it closed); return once the app is exiting."""
        await self.pilot.press(*keys[:-1])
        self.app.simulate_key(keys[-1])
        await self.until(lambda: self.app._exit, "the console closing")

    async def press_for_toast(self, key: str) -> str:
        """Press `key`; the text of the notification it brought (title and message)."""
        before = len(self.toasts())
        await self.pilot.press(key)
        await self.until(lambda: len(self.toasts()) > before, f"a toast after {key!r}")
        return self.toasts()[-1]

    def text(self) -> str:
        """What the terminal shows now, as plain text."""
        return screen_text(self.app)

    def toasts(self) -> list[str]:
        """The text of every notification shown so far (title and message)."""
        return [f"{n.title}: {n.message}" for n in self.app._notifications]


def screen_text(app: App[Any]) -> str:
    """What the terminal shows now, as plain text (the screen and the ones under a dialog)."""
    width, height = app.size
    console = RichConsole(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


def static_texts(screen: Screen[Any]) -> str:
    """The text of every Static on `screen`, one per line, whatever the terminal width."""
    return "\n".join(plain(static.content) for static in screen.query(Static))


def plain(renderable: object) -> str:
    """A Static's content as plain text (a Rich renderable rendered without colour)."""
    if isinstance(renderable, Text):
        return renderable.plain
    if isinstance(renderable, str):
        return renderable
    console = RichConsole(width=300, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def console_app(engine: FakeEngine) -> ValidatorApp:
    """The console on `engine`, with the engine's clock and no cursor blink."""
    return ValidatorApp(engine, clock=lambda: engine.now, cursor_blink=False)


async def run_to_exit(
    engine: FakeEngine,
    steps: Callable[[Console], Awaitable[None]],
    *,
    size: tuple[int, int] = (140, 40),
    timeout: float = 30.0,
) -> ConsoleExit | None:
    """Run the console on `engine` as `run` does (`run_async`), play `steps` once it shows
    the engine's state, and return what the app returned when it closed. `steps` must end
    by closing it (`press_closing`); an assertion failing in `steps` fails the caller."""
    app = console_app(engine)
    failures: list[BaseException] = []

    async def autopilot(pilot: Pilot[Any]) -> None:
        console = Console(engine, app, pilot)
        try:
            await console.until(lambda: app.shown_version == engine.state.version, "state shown")
            await steps(console)
        except BaseException as exc:
            failures.append(exc)
            app.exit()

    result = await asyncio.wait_for(
        app.run_async(headless=True, size=size, auto_pilot=autopilot), timeout
    )
    if failures:
        raise failures[0]
    return result


@asynccontextmanager
async def fake_console(
    engine: FakeEngine, *, size: tuple[int, int] = (140, 40)
) -> AsyncIterator[Console]:
    """The console on `engine`, once it shows the engine's state."""
    app = console_app(engine)
    async with app.run_test(size=size) as pilot:
        console = Console(engine, app, pilot)
        await console.until(
            lambda: app.shown_version == engine.state.version,
            "the engine's state shown",
        )
        await pilot.pause()
        yield console


def job_in(engine: FakeEngine, state: JobState) -> str:
    """The id of the first job of `engine` in `state`."""
    return next(job.id for job in engine.state.jobs.values() if job.state is state)


async def select(console: Console, table_id: str, key: str) -> None:
    """Focus the table `table_id` and put its cursor on the row with `key`."""
    table = console.app.main.query_one(f"#{table_id}")
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await console.pilot.pause()


async def open_dialog(console: Console, key: str) -> tuple[str, list[str]]:
    """Press `key`; the confirm dialog's text and its buttons' labels."""
    await console.pilot.press(key)
    await console.until(lambda: isinstance(console.app.screen, ConfirmScreen), "a dialog")
    screen = console.app.screen
    return static_texts(screen), [str(button.label) for button in screen.query(Button)]
