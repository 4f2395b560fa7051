"""Helpers for the end-to-end console tests (no tests here): the app against the real engine
and simulators. `running_app` runs simulators, engine and app in the test's event loop; the
engine on a thread of its own, as in `validator-tui run`. Console tests that need no engine
use the FakeEngine (tests/support/fake_engine.py, tests/support/console.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from textual.pilot import Pilot

# The frozen "now" of every test app: before any real timestamp, so every age reads 0s.
from tests.support.fake_engine import FIXED_NOW
from validator_tui.control.inprocess import InProcessEngine
from validator_tui.demo import DemoEnvironment, build_validator
from validator_tui.engine.state import EngineState
from validator_tui.shared.records import ChallengeState, JobState
from validator_tui.tui.actions import by_binding
from validator_tui.tui.app import ValidatorApp

T = TypeVar("T")


def frozen_clock() -> float:
    return FIXED_NOW


def env_options(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A quiet, deterministic demo: no job stream, instant boots, auto-claim off."""
    options: dict[str, Any] = {
        "seed": 7,
        "jobs_per_minute": 0.0,
        "boot_seconds": 0.0,
        "auto_claim": False,
        "state_dir": str(tmp_path / "state"),
        "engine": {"poll_interval_s": 0.5, "challenge_check_interval_s": 1.0},
    }
    options.update(overrides)
    return options


async def wait_until(
    pilot: Pilot[Any], predicate: Callable[[], bool], what: str, timeout: float = 20.0
) -> None:
    """Let the app run until `predicate()` holds; fail with `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await pilot.pause(0.05)


def settled(app: ValidatorApp, pending: int) -> bool:
    """Every challenge CVM active and running, exactly `pending` pending jobs fully listed."""
    challenges = app.main.challenge_table.challenges.values()
    jobs = list(app.main.feed.jobs.values())
    return (
        len(challenges) > 0
        and all(
            c.state is ChallengeState.ACTIVE and c.vm_status == "running" and c.vm_id
            for c in challenges
        )
        and len(jobs) == pending
        and all(j.state is JobState.PENDING and j.miner_hotkey for j in jobs)
        and app.main.feed.row_count == pending
        and app.main.header.last_poll_at is not None
    )


def select_row(table: Any, key: str) -> None:
    """Put the table's cursor on the row with `key`."""
    table.move_cursor(row=table.get_row_index(key))


@dataclass
class Running:
    env: DemoEnvironment
    app: ValidatorApp
    pilot: Pilot[Any]
    engine: InProcessEngine

    async def state(self, read: Callable[[EngineState], T]) -> T:
        """`read(state)` run on the engine's own thread (its state is only touched there)."""

        async def reading() -> T:
            return read(self.engine.validator.state)

        return await self.engine.call(reading)


@asynccontextmanager
async def running_app(
    tmp_path: Path,
    *,
    pending: int = 0,
    read_only: bool = False,
    size: tuple[int, int] = (140, 40),
    **env_overrides: Any,
) -> AsyncIterator[Running]:
    """Simulators + engine + app; yields once the app has settled with `pending` jobs listed.

    The engine runs on its own thread, as in `validator-tui run`; on exit it is stopped the
    graceful way, then the simulators.
    """
    async with DemoEnvironment(**env_options(tmp_path, **env_overrides)) as env:
        if pending:
            env.platform.add_jobs(pending)
        assert env.config is not None
        engine = InProcessEngine(build_validator(env.config, read_only=read_only))
        engine.start()
        try:
            app = ValidatorApp(engine, clock=frozen_clock, cursor_blink=False)
            async with app.run_test(size=size) as pilot:
                await wait_until(pilot, lambda: settled(app, pending), "engine settled")
                yield Running(env, app, pilot, engine)
        finally:
            engine.request_stop()
            await engine.wait_stopped()


def sim_job_ids(env: Any) -> list[str]:
    """Ids of every job the platform simulator holds."""
    return [job["id"] for job in env.platform.jobs()]


def footer_actions(app: Any) -> set[str]:
    """Actions of the action table the active screen's footer offers as enabled."""
    shown = (by_binding(b.binding.action) for b in app.screen.active_bindings.values() if b.enabled)
    return {action.name for action in shown if action is not None}


def enabled_actions(app: Any) -> set[str]:
    """Which of the selection-dependent actions apply to the selection now."""
    return {
        name
        for name in ("claim_job", "cancel_job", "details", "start_vm", "stop_vm", "remove_vm")
        if app.main.why_not(name) is None
    }
