"""Regenerate the SVG screenshots in this directory from the real app.

Runs the console headless against a DemoEnvironment (both simulators on loopback, a steady
job stream, auto-claim on), lets jobs flow for a few seconds, and saves the main screen at
160x48 and 80x24, the job details, the challenge CVM details, the ORM query, the help screen,
the stop-or-detach question `q` asks, the event log at 80x24 (tab) and zoomed (`z`) with
auto-claim off, a console attached to the engine over its control
socket (`validator-tui attach`), and three dstack hosts with one of them down.

    .venv/bin/python screenshots/make_screenshots.py [--seed N] [--seconds S] [--only SET]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable

from validator_tui.control import EngineMode
from validator_tui.control.client import SocketEngine
from validator_tui.control.inprocess import InProcessEngine
from validator_tui.demo import DemoEnvironment, build_validator
from validator_tui.shared.records import JobState
from validator_tui.tui.app import ValidatorApp

HERE = Path(__file__).resolve().parent


async def _wait(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate() and loop.time() < deadline:
        await pilot.pause(0.1)


def _save(app: ValidatorApp, name: str) -> None:
    app.save_screenshot(filename=name, path=str(HERE))
    print(f"wrote {HERE / name}")


def _select_running_job(app: ValidatorApp) -> None:
    running = [j for j in app.main.feed.jobs.values() if j.state is JobState.RUNNING and j.vm_id]
    if running:
        app.main.feed.move_cursor(row=app.main.feed.get_row_index(running[0].id))


def _select_completed_job(app: ValidatorApp) -> None:
    done = [j for j in app.main.feed.jobs.values() if j.state is JobState.COMPLETED]
    if done:
        app.main.feed.move_cursor(row=app.main.feed.get_row_index(done[0].id))


def _engine(env: DemoEnvironment) -> InProcessEngine:
    """The demo's engine on its own thread, as `validator-tui demo` runs it."""
    assert env.config is not None
    engine = InProcessEngine(build_validator(env.config), mode=EngineMode.DEMO)
    engine.start()
    return engine


async def _stop(engine: InProcessEngine) -> None:
    engine.request_stop()
    await engine.wait_stopped()


async def _large(env: DemoEnvironment, seconds: float) -> None:
    assert env.config is not None
    engine = _engine(env)
    app = ValidatorApp(engine, cursor_blink=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(seconds)
        _select_running_job(app)
        await _wait(pilot, lambda: len(app.main.vm_console.lines) > 5, timeout=3.0)
        await pilot.pause(0.5)
        _save(app, "main-160x48.svg")

        _select_completed_job(app)
        await pilot.press("enter")
        await pilot.pause(0.3)
        _save(app, "job-details.svg")
        await pilot.press("escape")

        app.main.challenge_table.focus()
        app.main.challenge_table.move_cursor(row=0)
        await pilot.press("enter")
        await _wait(pilot, lambda: len(app.screen.query_one("#cvm-log").lines) > 3, timeout=3.0)
        await pilot.pause(0.3)
        _save(app, "challenge-details.svg")
        await pilot.press("escape")
        app.main.feed.focus()

        await pilot.press("o")
        await pilot.press("ctrl+r")
        table = app.screen.query_one("#orm-results", DataTable)
        await _wait(pilot, lambda: table.row_count > 0, timeout=5.0)
        _save(app, "orm-query.svg")
        await pilot.press("escape")

        await pilot.press("question_mark")
        await pilot.pause(0.3)
        _save(app, "help.svg")
        await pilot.press("escape")
    await _stop(engine)


async def _small(env: DemoEnvironment, seconds: float) -> None:
    assert env.config is not None
    engine = _engine(env)
    app = ValidatorApp(engine, cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(seconds)
        _select_running_job(app)
        await pilot.pause(1.0)
        _save(app, "main-80x24.svg")
        await pilot.press("q")
        await pilot.pause(0.3)
        _save(app, "quit-dialog.svg")
        await pilot.press("escape")
        # Auto-claim off (the header's banner says claims are blocked), then tab to the event
        # log, which takes the jobs' place at this width, and zoom it.
        await pilot.press("a", "tab", "tab")
        await _wait(pilot, lambda: not app.main.header.auto_claim, timeout=3.0)
        await pilot.pause(1.0)
        _save(app, "events-80x24.svg")
        await pilot.press("z")
        await pilot.pause(0.3)
        _save(app, "events-zoomed-80x24.svg")
        await pilot.press("z", "a")
    await _stop(engine)


async def _attached(env: DemoEnvironment, seconds: float) -> None:
    """A console attached over the control socket, as `validator-tui attach` shows it."""
    engine = _engine(env)
    await engine.wait_started()
    client = SocketEngine(Path(engine.info.state_dir))
    await client.connect()
    app = ValidatorApp(client, cursor_blink=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(seconds)
        _select_running_job(app)
        await _wait(pilot, lambda: len(app.main.vm_console.lines) > 5, timeout=3.0)
        await pilot.pause(0.5)
        _save(app, "attached-160x48.svg")
    await client.close()
    await _stop(engine)


async def _hosts(seed: int, seconds: float) -> None:
    """Three dstack hosts (the third over a unix socket), one of them failed a while ago: the
    Hosts panel shows it down and its challenge CVM runs on another host."""
    engine_settings = {"host_down_grace_s": 3.0}
    async with DemoEnvironment(
        seed=seed,
        jobs_per_minute=120,
        boot_seconds=1.0,
        evaluator_latency_s=3.0,
        engine=engine_settings,
        hosts=3,
        unix_hosts=1,
    ) as env:
        engine = _engine(env)
        app = ValidatorApp(engine, cursor_blink=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(seconds / 2)
            await env.host_of("h2").go_down()

            def moved() -> bool:
                records = app.main.challenge_table.records.values()
                hosts = app.main.host_table.hosts
                return (
                    "h2" in hosts
                    and hosts["h2"].state.value == "down"
                    and all(c.host != "h2" and c.state.value == "active" for c in records)
                )

            await _wait(pilot, moved, timeout=30.0)
            await pilot.pause(seconds / 2)
            _select_running_job(app)
            await pilot.pause(1.0)
            _save(app, "hosts-120x36.svg")
        await _stop(engine)


SETS = {"main": ("large", "small"), "attached": ("attached",), "hosts": ("hosts",)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=12.0, help="let jobs flow this long")
    parser.add_argument("--only", choices=sorted(SETS), help="make only this set")
    args = parser.parse_args()
    wanted = (
        set(SETS[args.only]) if args.only else {name for set_ in SETS.values() for name in set_}
    )
    async with DemoEnvironment(
        seed=args.seed, jobs_per_minute=120, boot_seconds=1.0, evaluator_latency_s=3.0
    ) as env:
        if "large" in wanted:
            await _large(env, args.seconds)
        if "small" in wanted:
            await _small(env, args.seconds / 2)
        if "attached" in wanted:
            await _attached(env, args.seconds)
    if "hosts" in wanted:
        await _hosts(args.seed, args.seconds)


if __name__ == "__main__":
    asyncio.run(main())
