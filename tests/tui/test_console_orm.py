"""ORM screen (issue 12), on a FakeEngine: one clear refusal reason, results cleared when a
query is refused, long errors wrap, a cell is viewable whole, the challenge picker starts at
the selected job's (or CVM's) challenge, bad params are explained."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Select, Static, TextArea

from tests.support.console import Console, fake_console, plain
from tests.support.fake_engine import FakeEngine, demo_state
from validator_tui.control import JobState, Outcome
from validator_tui.tui.screens.orm import CellScreen, OrmScreen

LONG = "x" * 150 + " the end of a long cell " + "y" * 300
ROWS = (
    {"id": "sub-1", "code": LONG, "meta": {"lang": "python", "files": ["a.py", "b.py"]}},
    {"id": "sub-2", "code": "print(1)", "meta": None},
)


async def open_orm(console: Console) -> OrmScreen:
    await console.pilot.press("o")
    await console.until(lambda: isinstance(console.app.screen, OrmScreen), "ORM screen")
    screen = console.app.screen
    assert isinstance(screen, OrmScreen)
    return screen


def status_text(screen: OrmScreen) -> str:
    return plain(screen.query_one("#orm-status", Static).content)


async def run(console: Console, screen: OrmScreen, sql: str) -> None:
    screen.query_one("#orm-sql", TextArea).text = sql
    before = len(console.engine.sent("orm_query"))
    await console.pilot.press("ctrl+r")
    await console.until(lambda: len(console.engine.sent("orm_query")) > before, "query sent")
    await console.until(lambda: "running" not in status_text(screen), "answer shown")


async def test_refusal_is_one_clear_reason_and_clears_the_results() -> None:
    engine = demo_state(FakeEngine())
    refusal = "query refused: this WITH query modifies data (DELETE); only reading is allowed"
    engine.answer("orm_query", Outcome.done("2 rows", ROWS), Outcome.refused(refusal))
    async with fake_console(engine) as console:
        screen = await open_orm(console)
        results = screen.query_one("#orm-results", DataTable)
        await run(console, screen, "SELECT * FROM submissions")
        assert results.row_count == 2 and "2 rows" in status_text(screen)
        await run(console, screen, "WITH d AS (DELETE FROM x RETURNING *) SELECT * FROM d")
        assert status_text(screen) == f"✗ {refusal}"
        assert status_text(screen).count("refused") == 1
        assert results.row_count == 0 and len(results.columns) == 0


async def test_long_errors_wrap_inside_the_screen() -> None:
    engine = demo_state(FakeEngine())
    words = " ".join(f"word{i}" for i in range(60))
    engine.answer("orm_query", Outcome.refused(f"server refused the query: {words} END"))
    async with fake_console(engine, size=(80, 24)) as console:
        screen = await open_orm(console)
        await run(console, screen, "SELECT 1")
        await console.pilot.pause()
        status = screen.query_one("#orm-status", Static)
        assert status.size.height >= 4
        assert status.size.width <= 80
        shown = " ".join(console.text().split())
        assert "word59 END" in shown


async def test_enter_on_a_cell_shows_it_whole() -> None:
    engine = demo_state(FakeEngine())
    engine.answer("orm_query", Outcome.done("2 rows", ROWS))
    async with fake_console(engine) as console:
        screen = await open_orm(console)
        await run(console, screen, "SELECT * FROM submissions")
        results = screen.query_one("#orm-results", DataTable)
        results.focus()
        results.move_cursor(row=0, column=1)
        await console.pilot.press("enter")
        assert isinstance(console.app.screen, CellScreen)
        whole = plain(console.app.screen.query_one("#cell-value", Static).content)
        assert whole == LONG
        await console.pilot.press("escape")
        results.move_cursor(row=0, column=2)
        await console.pilot.press("enter")
        whole = plain(console.app.screen.query_one("#cell-value", Static).content)
        assert '"lang": "python"' in whole and '"b.py"' in whole
        await console.pilot.press("escape")
        assert console.app.screen is screen


async def test_picker_starts_at_the_selected_jobs_challenge() -> None:
    engine = demo_state(FakeEngine())
    job = next(
        j
        for j in engine.state.jobs.values()
        if j.challenge_id == "chal-2" and j.state is JobState.COMPLETED
    )
    async with fake_console(engine) as console:
        feed = console.app.main.feed
        feed.move_cursor(row=feed.get_row_index(job.id))
        await console.pilot.pause()
        screen = await open_orm(console)
        assert screen.query_one("#orm-challenge", Select).value == "chal-2"
        await console.pilot.press("escape")
        table = console.app.main.challenge_table
        table.focus()
        table.move_cursor(row=table.get_row_index("chal-3"))
        await console.pilot.pause()
        screen = await open_orm(console)
        assert screen.query_one("#orm-challenge", Select).value == "chal-3"


async def test_bad_params_are_explained_and_nothing_is_sent() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine) as console:
        screen = await open_orm(console)
        screen.query_one("#orm-params", Input).value = "{not json"
        await console.pilot.press("ctrl+r")
        assert "params are not valid JSON" in status_text(screen)
        screen.query_one("#orm-params", Input).value = '{"a": 1}'
        await console.pilot.press("ctrl+r")
        assert "params must be a JSON array" in status_text(screen)
        assert engine.sent("orm_query") == []
