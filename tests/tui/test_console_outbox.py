"""The outbox view (issue 12), on a FakeEngine: each result the platform refused with its
words, dead letters first; `r` sends a dead letter again, `d` discards it after a confirm;
what cannot be done says why; a read-only console refuses both."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from tests.support.console import Console, fake_console, plain, static_texts
from tests.support.fake_engine import FakeEngine, demo_state
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.screens.outbox import OutboxScreen

WORDS = "422 Unprocessable Entity: score must be within [0, 1]"


async def open_outbox(console: Console) -> OutboxScreen:
    await console.pilot.press("u")
    await console.until(lambda: isinstance(console.app.screen, OutboxScreen), "outbox")
    screen = console.app.screen
    assert isinstance(screen, OutboxScreen)
    table = screen.query_one(DataTable)
    await console.until(lambda: table.row_count == len(console.engine.outbox), "rows listed")
    return screen


async def test_dead_letters_first_with_the_platforms_words() -> None:
    engine = demo_state(FakeEngine())
    dead = engine.outbox[0]
    async with fake_console(engine) as console:
        screen = await open_outbox(console)
        table = screen.query_one(DataTable)
        first = [cell.plain for cell in table.get_row_at(0)]
        assert first[0] == dead.job_id[:8] and first[1] == "‼ dead letter"
        assert WORDS in first[4]
        assert "1 dead letter · 1 unsent" in str(screen.query_one("#outbox-dialog").border_title)
        row = plain(screen.query_one("#outbox-row", Static).content)
        assert (
            dead.job_id in row and f"platform said  platform http://127.0.0.1:3000: {WORDS}" in row
        )
        assert "2023-11-14 22:08:20 (5m00s ago)" in row


async def test_retry_sends_a_dead_letter_again_and_other_rows_say_why_not() -> None:
    engine = demo_state(FakeEngine())
    dead, unsent = engine.outbox[0], engine.outbox[1]
    async with fake_console(engine) as console:
        screen = await open_outbox(console)
        await console.pilot.press("r")
        await console.until(lambda: engine.sent("retry_dead_letter") == [(dead.job_id,)], "retry")
        screen.query_one(DataTable).move_cursor(row=1)
        await console.pilot.press("r")
        await console.until(
            lambda: any(
                "only a dead letter can be sent again; this result is unsent" in t
                for t in console.toasts()
            ),
            "refusal",
        )
        assert unsent.job_id not in {args[0] for args in engine.sent("retry_dead_letter")}


async def test_discard_asks_first() -> None:
    engine = demo_state(FakeEngine())
    dead = engine.outbox[0]
    async with fake_console(engine) as console:
        await open_outbox(console)
        await console.pilot.press("d")
        assert isinstance(console.app.screen, ConfirmScreen)
        text = static_texts(console.app.screen)
        assert f"Discard the result of job {dead.job_id[:8]}?" in text and WORDS in text
        await console.pilot.press("n")
        assert engine.sent("discard_dead_letter") == []
        await console.pilot.press("d", "y")
        await console.until(
            lambda: engine.sent("discard_dead_letter") == [(dead.job_id,)], "discard sent"
        )


async def test_read_only_console_lists_but_refuses() -> None:
    engine = demo_state(FakeEngine(read_only=True))
    async with fake_console(engine) as console:
        await open_outbox(console)
        for key in ("r", "d"):
            await console.pilot.press(key)
        await console.until(
            lambda: sum("read-only console" in t for t in console.toasts()) == 2, "refusals"
        )
        assert engine.sent("retry_dead_letter") == engine.sent("discard_dead_letter") == []


async def test_an_empty_outbox_says_so() -> None:
    async with fake_console(FakeEngine()) as console:
        screen = await open_outbox(console)
        assert "The outbox is empty" in plain(screen.query_one("#outbox-row", Static).content)
        await console.pilot.press("r")
        await console.until(lambda: any("empty" in t for t in console.toasts()), "refusal")
