"""Snapshot tests (pytest-textual-snapshot) of the console's screens, on a FakeEngine.

Deterministic by construction: a hand-filled engine state at fixed instants, a frozen clock
(`FIXED_NOW`), TZ=UTC, no cursor blink, a fixed terminal size; no simulators, no engine
thread. The main screen at the three sizes the console is designed for (80x24, 120x36,
200x50), then every dialog and screen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.support.console import console_app
from tests.support.fake_engine import FakeEngine, demo_state, with_hosts
from validator_tui.control import JobState, Outcome
from validator_tui.tui.app import ValidatorApp
from validator_tui.tui.screens.orm import OrmScreen

ROWS = (
    {"id": "sub-0001", "miner": "5GrwvaEF…", "code": "def solve():\n    return 42", "size": 27},
    {"id": "sub-0002", "miner": "5FHneW46…", "code": "x" * 300, "size": 300},
)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def app_on(engine: FakeEngine | None = None) -> ValidatorApp:
    return console_app(engine or demo_state(FakeEngine()))


async def shown(pilot: Pilot[Any]) -> None:
    """Until the app shows the engine's state; then the operator picks the newest job, and
    until the VM console shows its VM's first lines."""
    app = pilot.app
    assert isinstance(app, ValidatorApp)
    engine = app.engine
    assert isinstance(engine, FakeEngine)
    while app.shown_version != engine.state.version:
        await pilot.pause(0.02)
    app.main.feed.move_cursor(row=0)
    while not app.main.vm_console.lines:
        await pilot.pause(0.02)
    await pilot.pause(0.2)


def select_challenge(row: int) -> Any:
    async def run(pilot: Pilot[Any]) -> None:
        await shown(pilot)
        app = pilot.app
        assert isinstance(app, ValidatorApp)
        app.main.challenge_table.focus()
        app.main.challenge_table.move_cursor(row=row)
        await pilot.pause(0.2)

    return run


@pytest.mark.parametrize(
    "size", [(80, 24), (120, 36), (200, 50)], ids=["80x24", "120x36", "200x50"]
)
def test_main_screen(size: tuple[int, int], snap_compare: Any) -> None:
    assert snap_compare(app_on(), terminal_size=size, run_before=shown)


def test_main_screen_with_three_hosts(snap_compare: Any) -> None:
    """The Hosts panel (one host down, one draining), the host columns, and the event log
    keeping its lines at 120x36 (the sparkline gives way)."""
    engine = with_hosts(demo_state(FakeEngine()))
    assert snap_compare(app_on(engine), terminal_size=(120, 36), run_before=shown)


def test_events_and_hosts_at_80x24(snap_compare: Any) -> None:
    """Too narrow for the right column: tab to the event log, and Hosts and Events take the
    place of Jobs and Challenge CVMs."""
    engine = with_hosts(demo_state(FakeEngine()))
    assert snap_compare(
        app_on(engine), press=["tab", "tab", "tab"], terminal_size=(80, 24), run_before=shown
    )


def test_event_log_zoomed_at_80x24(snap_compare: Any) -> None:
    """`z` on the event log: it fills the screen above the footer."""
    assert snap_compare(
        app_on(), press=["tab", "tab", "z"], terminal_size=(80, 24), run_before=shown
    )


def test_help_screen(snap_compare: Any) -> None:
    assert snap_compare(
        app_on(), press=["question_mark"], terminal_size=(120, 36), run_before=shown
    )


def test_stop_cvm_dialog(snap_compare: Any) -> None:
    assert snap_compare(
        app_on(), press=["S"], terminal_size=(120, 36), run_before=select_challenge(1)
    )


def test_quit_dialog_80x24(snap_compare: Any) -> None:
    assert snap_compare(app_on(), press=["q"], terminal_size=(80, 24), run_before=shown)


def test_stop_validator_dialog(snap_compare: Any) -> None:
    assert snap_compare(app_on(), press=["Q"], terminal_size=(120, 36), run_before=shown)


def test_job_details_screen(snap_compare: Any) -> None:
    engine = demo_state(FakeEngine())
    failed = next(job for job in engine.state.jobs.values() if job.state is JobState.FAILED)

    async def open_details(pilot: Pilot[Any]) -> None:
        await shown(pilot)
        app = pilot.app
        assert isinstance(app, ValidatorApp)
        app.main.feed.move_cursor(row=app.main.feed.get_row_index(failed.id))
        await pilot.press("enter")
        await pilot.pause(0.3)

    assert snap_compare(app_on(engine), terminal_size=(120, 36), run_before=open_details)


def test_challenge_details_screen(snap_compare: Any) -> None:
    async def open_details(pilot: Pilot[Any]) -> None:
        await select_challenge(2)(pilot)
        await pilot.press("enter")
        await pilot.pause(0.5)

    assert snap_compare(app_on(), terminal_size=(120, 36), run_before=open_details)


def test_orm_screen_with_rows(snap_compare: Any) -> None:
    engine = demo_state(FakeEngine())
    engine.answer("orm_query", Outcome.done("2 rows", ROWS))

    async def run_query(pilot: Pilot[Any]) -> None:
        await shown(pilot)
        await pilot.press("o", "ctrl+r")
        screen = pilot.app.screen
        assert isinstance(screen, OrmScreen)
        while screen.query_one("#orm-results").row_count == 0:
            await pilot.pause(0.02)
        await pilot.pause(0.2)

    assert snap_compare(app_on(engine), terminal_size=(120, 36), run_before=run_query)


def test_orm_screen_refused_80x24(snap_compare: Any) -> None:
    engine = demo_state(FakeEngine())
    engine.answer(
        "orm_query",
        Outcome.refused(
            "query refused: this WITH query modifies data (DELETE); only reading is allowed"
        ),
    )

    async def run_query(pilot: Pilot[Any]) -> None:
        await shown(pilot)
        await pilot.press("o", "ctrl+r")
        while not engine.sent("orm_query"):
            await pilot.pause(0.02)
        await pilot.pause(0.3)

    assert snap_compare(app_on(engine), terminal_size=(80, 24), run_before=run_query)


def test_outbox_screen(snap_compare: Any) -> None:
    async def open_outbox(pilot: Pilot[Any]) -> None:
        await shown(pilot)
        await pilot.press("u")
        await pilot.pause(0.3)

    assert snap_compare(app_on(), terminal_size=(120, 36), run_before=open_outbox)
