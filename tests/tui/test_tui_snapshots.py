"""Snapshot tests (pytest-textual-snapshot) of the console's screens.

Deterministic by construction: seeded simulators serving from their own thread, auto-claim
off, instant boots, a frozen clock, no cursor blink, a fixed terminal size; each snapshot
waits until every challenge CVM is active and the pending jobs are listed, puts the
cursors on the first rows, and clears the event log (concurrent CVM boots log in any order).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.support.tui import SimThread, frozen_clock, settled, wait_until
from validator_tui.control.inprocess import InProcessEngine
from validator_tui.demo import build_validator
from validator_tui.tui.app import ValidatorApp
from validator_tui.tui.widgets.event_log import EventLog

PENDING = 5
#: The VMM simulator derives VM ids from (seed, VM name), so concurrent CVM creation
#: still gives the same ids every run.
CHALLENGES = 3


@pytest.fixture
def sims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimThread]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    sims = SimThread(tmp_path, challenges=CHALLENGES)
    sims.call(sims.env.platform.add_jobs, PENDING)
    try:
        yield sims
    finally:
        sims.close()
        monkeypatch.undo()
        time.tzset()


@pytest.fixture
def engine(sims: SimThread) -> Iterator[InProcessEngine]:
    """The engine on its own thread against the simulators; stopped the graceful way."""
    assert sims.env.config is not None
    engine = InProcessEngine(build_validator(sims.env.config))
    engine.start()
    try:
        yield engine
    finally:
        engine.request_stop()
        assert engine.join(30), "the engine did not stop"


def _app(engine: InProcessEngine) -> ValidatorApp:
    return ValidatorApp(engine, clock=frozen_clock, cursor_blink=False)


async def _settle(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, ValidatorApp)
    await wait_until(pilot, lambda: settled(app, PENDING), "engine settled")
    app.main.feed.move_cursor(row=0)
    app.main.challenge_table.move_cursor(row=0)
    app.main.feed.focus()
    app.main.query_one(EventLog).clear()
    await pilot.pause()


def test_main_screen_160x48(engine: InProcessEngine, snap_compare: Any) -> None:
    assert snap_compare(_app(engine), terminal_size=(160, 48), run_before=_settle)


def test_main_screen_80x24(engine: InProcessEngine, snap_compare: Any) -> None:
    assert snap_compare(_app(engine), terminal_size=(80, 24), run_before=_settle)


def test_help_screen(engine: InProcessEngine, snap_compare: Any) -> None:
    assert snap_compare(
        _app(engine), press=["question_mark"], terminal_size=(120, 36), run_before=_settle
    )


def test_confirm_dialog(engine: InProcessEngine, snap_compare: Any) -> None:
    async def open_confirm(pilot: Pilot[Any]) -> None:
        await _settle(pilot)
        await pilot.app.main.run_action("rebuild_challenge")

    assert snap_compare(_app(engine), terminal_size=(120, 36), run_before=open_confirm)


def test_job_details_screen(engine: InProcessEngine, snap_compare: Any) -> None:
    assert snap_compare(_app(engine), press=["enter"], terminal_size=(120, 36), run_before=_settle)


def test_orm_screen(engine: InProcessEngine, snap_compare: Any) -> None:
    async def run_query(pilot: Pilot[Any]) -> None:
        await _settle(pilot)
        await pilot.press("o")
        await pilot.press("ctrl+r")
        table = pilot.app.screen.query_one("#orm-results")
        await wait_until(pilot, lambda: table.row_count > 0, "query rows")

    assert snap_compare(_app(engine), terminal_size=(120, 36), run_before=run_query)
