"""The console attached to a running `validator-tui run --headless` (a real engine process):
the same panels and keys, its commands done by the engine, a second console beside it, a
read-only one refused by the engine, and `q` that detaches."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.identities import ALICE
from tests.support.tui import env_options, frozen_clock, select_row, settled, wait_until
from validator_tui.config_io import write_config
from validator_tui.control.client import SocketEngine
from validator_tui.control.interface import ConsoleExit, LinkStatus
from validator_tui.control.paths import find_socket
from validator_tui.demo import DemoEnvironment
from validator_tui.shared.records import ChallengeState, JobState
from validator_tui.tui.app import ValidatorApp
from validator_tui.tui.format import wall_time
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.widgets.quota_panel import QuotaGauges
from validator_tui.tui.widgets.status_bar import StatusBar


@contextlib.asynccontextmanager
async def headless_engine(
    env: DemoEnvironment, workdir: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`validator-tui run --headless` for `env`, up once its control socket answers."""
    assert env.config is not None
    config = write_config(env.config, workdir / "validator.toml")
    with (workdir / "engine.log").open("wb") as log:
        engine = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "validator_tui",
            "run",
            "--headless",
            "--config",
            str(config),
            stdout=log,
            stderr=log,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
    try:
        socket = find_socket(env.config.state_path)
        for _ in range(300):
            if socket.exists():
                break
            await asyncio.sleep(0.1)
        yield engine
    finally:
        if engine.returncode is None:
            engine.send_signal(signal.SIGTERM)
            await asyncio.wait_for(engine.wait(), 60)


async def test_the_attached_console_works_the_engine_of_another_process(tmp_path: Path) -> None:
    async with DemoEnvironment(**env_options(tmp_path, hotkey=ALICE)) as env:
        env.vmm.set_evaluator(latency_s=30.0)
        jobs = [job["id"] for job in env.platform.add_jobs(3)]
        async with headless_engine(env, tmp_path) as engine:
            assert env.config is not None
            state = env.config.state_path
            console = SocketEngine(state)
            await console.connect()
            other = SocketEngine(state, client="second")
            await other.connect()
            viewer = SocketEngine(state, read_only=True)
            await viewer.connect()
            app = ValidatorApp(console, clock=frozen_clock, cursor_blink=False)
            try:
                async with app.run_test(size=(140, 40)) as pilot:
                    await wait_until(pilot, lambda: settled(app, 3), "the engine's state shown")
                    assert app.engine.info.pid == engine.pid and not app.engine.embedded

                    select_row(app.main.feed, jobs[0])
                    await pilot.press("c")
                    await wait_until(
                        pilot,
                        lambda: app.main.feed.jobs[jobs[0]].state is JobState.RUNNING,
                        "claimed through the socket and running",
                    )
                    assert env.platform.job(jobs[0])["claimed_by"] == ALICE

                    select_row(app.main.feed, jobs[0])
                    await pilot.press("x")
                    assert isinstance(app.screen, ConfirmScreen)
                    await pilot.press("y")
                    await wait_until(
                        pilot, lambda: jobs[0] in env.platform.results(), "the cancel result"
                    )
                    assert env.platform.results()[jobs[0]][0]["error"] == "cancelled by operator"

                    table = app.main.challenge_table
                    table.focus()
                    challenge = table.row_keys()[0]
                    select_row(table, challenge)
                    old_vm = table.challenges[challenge].vm_id
                    await pilot.press("r")
                    assert isinstance(app.screen, ConfirmScreen)
                    await pilot.press("y")
                    await wait_until(
                        pilot,
                        lambda: (
                            table.challenges[challenge].vm_id not in (None, old_vm)
                            and table.challenges[challenge].state is ChallengeState.ACTIVE
                        ),
                        "the rebuilt CVM active",
                    )

                    by_other = await other.claim(jobs[1])
                    assert by_other.ok, by_other.message
                    await wait_until(
                        pilot,
                        lambda: app.main.feed.jobs[jobs[1]].state is JobState.RUNNING,
                        "the other console's claim shown here",
                    )
                    refused = await viewer.claim(jobs[2])
                    assert not refused.ok and "read-only console" in refused.message
                    assert env.platform.job(jobs[2])["claimed_by"] is None

                    await pilot.press("q")
                    await pilot.pause(0.2)
                assert app.return_value is ConsoleExit.DETACH
                assert console.link.status is LinkStatus.CONNECTED
                assert engine.returncode is None, "q in an attached console only detaches"
                seen = await other.changes_since(0, 0)
                lines = [e.message for e in seen.events]
                assert any(
                    line.startswith(f"{console.origin}: claim job {jobs[0]}") for line in lines
                )
                assert any(
                    line.startswith(f"{other.origin}: claim job {jobs[1]}") for line in lines
                )
                assert any(
                    line.startswith(f"{viewer.origin}: claim job {jobs[2]} -> refused")
                    for line in lines
                )
            finally:
                for client in (console, other, viewer):
                    await client.close()


async def test_an_attached_console_whose_engine_stops_shows_its_state_as_of_then(
    tmp_path: Path,
) -> None:
    async with DemoEnvironment(**env_options(tmp_path, hotkey=ALICE)) as env:
        env.vmm.set_evaluator(latency_s=60.0)
        jobs = [job["id"] for job in env.platform.add_jobs(2)]
        async with headless_engine(env, tmp_path) as engine:
            assert env.config is not None
            console = SocketEngine(env.config.state_path)
            await console.connect()
            app = ValidatorApp(console, clock=frozen_clock, cursor_blink=False)
            try:
                async with app.run_test(size=(140, 40)) as pilot:
                    main = app.main
                    await wait_until(pilot, lambda: settled(app, 2), "the engine's state shown")
                    for job_id in jobs:
                        assert (await console.claim(job_id)).ok
                    await wait_until(
                        pilot, lambda: main.header.counters.running == 2, "two jobs running"
                    )
                    status = main.query_one(StatusBar)
                    assert not main.has_class("-stale")
                    # Auto-claim is off here: the banner leads, and the counters follow it.
                    assert status.texts[2].startswith(
                        "⚠ claims blocked: auto-claim off │ ● running 2"
                    )
                    assert main.feed.border_subtitle in (None, "")

                    engine.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(engine.wait(), 60)
                    await wait_until(
                        pilot,
                        lambda: "✗ engine gone" in status.texts[0],
                        "the header says the engine is gone",
                        timeout=30,
                    )
                    await pilot.pause(1.1)  # the once-a-second refresh
                    as_of = f"as of {wall_time(frozen_clock(), frozen_clock())}"
                    assert main.has_class("-stale")
                    assert (
                        status.texts[1].startswith(f"{as_of} │ ") and "platform" in status.texts[1]
                    )
                    assert status.texts[2].startswith(f"{as_of} │ ")
                    assert "running" in status.texts[2]
                    header = status._texts[2]
                    assert all(span.style == "dim" for span in header.spans[1:])
                    for panel in ("#jobs", "#challenges", "#quota", "#events", "#console"):
                        assert main.query_one(panel).border_subtitle == as_of, panel
                    assert main.feed.styles.text_opacity < 1
                    assert main.query_one("#quota-line", QuotaGauges).texts[0].startswith(as_of)
            finally:
                await console.close()


async def test_an_attached_console_at_80x24_explains_blocked_claims_and_reaches_every_panel(
    tmp_path: Path,
) -> None:
    """The banner, the single host's drain (`h`, then its state in the header) and `tab`/`z`
    to the event log, in a console attached to a real engine process."""
    async with DemoEnvironment(**env_options(tmp_path, hotkey=ALICE)) as env:
        env.platform.add_jobs(2)
        async with headless_engine(env, tmp_path):
            assert env.config is not None
            console = SocketEngine(env.config.state_path)
            await console.connect()
            app = ValidatorApp(console, clock=frozen_clock, cursor_blink=False)
            try:
                async with app.run_test(size=(80, 24)) as pilot:
                    main = app.main
                    await wait_until(pilot, lambda: settled(app, 2), "the engine's state shown")
                    status = main.query_one(StatusBar)
                    await wait_until(
                        pilot,
                        lambda: status.texts[2].startswith(
                            "⚠ claims blocked: auto-claim off (2 pending jobs wait)"
                        ),
                        "the banner",
                    )
                    host = main.only_host()
                    assert host is not None and not main.host_table.display
                    main.challenge_table.focus()
                    await pilot.pause()
                    await pilot.press("h")
                    assert isinstance(app.screen, ConfirmScreen)
                    await pilot.press("y")
                    await wait_until(
                        pilot,
                        # Its CVMs have no other host to move to: it stays draining.
                        lambda: "vmm ● connected · ◐ draining │" in status.texts[1],
                        f"the host's drain in the header: {status.texts[1]!r}",
                    )
                    await pilot.press("tab", "z")
                    assert main.maximized is main.event_log
                    assert main.event_log.region.height >= 20
                    assert any("drain" in line for line in main.event_log.lines)
            finally:
                await console.close()
