"""Quit, detach and stop (issue 9, the console's side), on a FakeEngine: `q` in the embedded
console asks stop / detach / back and says how many jobs run; `q` in an attached console
detaches at once and never stops the engine; `Q` stops the validator after a confirm that
says what happens to the running jobs. The app runs as `run` runs it (`run_async`), so what
it returns is what the process gets."""

from __future__ import annotations

from textual.widgets import Button

from tests.support.console import Console, fake_console, run_to_exit, static_texts
from tests.support.fake_engine import FakeEngine, demo_state
from validator_tui.control import ConsoleExit, Outcome
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.screens.quit import QuitScreen


def buttons(console: Console) -> list[str]:
    return [str(button.label) for button in console.app.screen.query(Button)]


async def test_q_in_the_embedded_console_asks_and_back_keeps_it() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine) as console:
        await console.pilot.press("q")
        await console.until(lambda: isinstance(console.app.screen, QuitScreen), "quit dialog")
        text = static_texts(console.app.screen)
        assert "Quit the console? 5 jobs are running." in text
        assert "The 5 running jobs stop" in text and "“validator shutting down”" in text
        assert f"`validator-tui attach --state-dir {engine.info.state_dir}`" in text
        assert buttons(console) == ["Stop validator (s)", "Detach (d)", "Back (esc)"]
        await console.pilot.press("escape")
        assert console.app.screen is console.app.main and console.app.is_running
        await console.pilot.press("q", "n")
        assert console.app.screen is console.app.main and console.app.is_running
    assert engine.sent("stop_validator") == []


async def test_detach_leaves_the_validator_running() -> None:
    engine = demo_state(FakeEngine())

    async def detach(console: Console) -> None:
        await console.press_closing("q", "d")

    assert await run_to_exit(engine, detach) is ConsoleExit.DETACH
    assert engine.sent("stop_validator") == []
    assert not engine.stopping


async def test_stop_from_the_quit_dialog_stops_the_validator() -> None:
    engine = demo_state(FakeEngine())

    async def stop(console: Console) -> None:
        await console.pilot.press("q")
        await console.until(lambda: isinstance(console.app.screen, QuitScreen), "quit dialog")
        await console.press_closing("s")

    assert await run_to_exit(engine, stop) is ConsoleExit.STOP
    assert engine.sent("stop_validator") == [()]
    assert engine.stopping


async def test_quit_with_no_job_running_says_so() -> None:
    engine = FakeEngine()
    async with fake_console(engine) as console:
        await console.pilot.press("q")
        await console.until(lambda: isinstance(console.app.screen, QuitScreen), "quit dialog")
        text = static_texts(console.app.screen)
        assert "No job is running." in text and "no job is affected" in text


async def test_q_in_an_attached_console_detaches_at_once() -> None:
    engine = demo_state(FakeEngine(embedded=False))

    async def quit_(console: Console) -> None:
        await console.press_closing("q")

    assert await run_to_exit(engine, quit_) is ConsoleExit.DETACH
    assert engine.sent("stop_validator") == []


async def test_stop_validator_key_confirms_with_the_running_jobs() -> None:
    engine = demo_state(FakeEngine(embedded=False))
    seen: dict[str, object] = {}

    async def stop(console: Console) -> None:
        await console.pilot.press("Q")
        await console.until(lambda: isinstance(console.app.screen, ConfirmScreen), "confirm")
        seen["text"] = static_texts(console.app.screen)
        seen["buttons"] = buttons(console)
        await console.pilot.press("n")
        seen["after no"] = list(engine.sent("stop_validator"))
        await console.pilot.press("Q")
        await console.until(lambda: isinstance(console.app.screen, ConfirmScreen), "confirm")
        await console.press_closing("y")

    assert await run_to_exit(engine, stop) is ConsoleExit.STOP
    text = str(seen["text"])
    assert "Stop the validator? 5 jobs are running." in text
    assert "The 5 running jobs stop" in text and "this console closes" in text
    assert seen["buttons"] == ["Stop validator (y)", "Keep it running (n · esc)"]
    assert seen["after no"] == []
    assert engine.sent("stop_validator") == [()]


async def test_a_refused_stop_keeps_the_attached_console_open_and_says_why() -> None:
    engine = demo_state(FakeEngine(embedded=False))
    engine.answer("stop_validator", Outcome.refused("the engine refuses: another stop is running"))
    async with fake_console(engine) as console:
        await console.pilot.press("Q", "y")
        await console.until(
            lambda: any("another stop is running" in t for t in console.toasts()), "refusal"
        )
        assert console.app.is_running
        assert engine.sent("stop_validator") == [()]


async def test_read_only_console_cannot_stop_the_validator_but_can_quit() -> None:
    engine = demo_state(FakeEngine(read_only=True, embedded=False))
    toasts: list[str] = []

    async def try_stop_then_quit(console: Console) -> None:
        await console.pilot.press("Q")
        await console.until(lambda: bool(console.toasts()), "a toast")
        toasts.extend(console.toasts())
        await console.press_closing("q")

    assert await run_to_exit(engine, try_stop_then_quit) is ConsoleExit.DETACH
    assert any("read-only console" in toast for toast in toasts)
    assert engine.sent("stop_validator") == []
