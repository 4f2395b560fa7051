"""TaskRegistry: every task tracked, failures logged, cancel_all ends them (and their heirs)."""

import asyncio
import logging

import pytest

from validator_tui.engine.tasks import EngineStopped, TaskRegistry


async def test_cancel_all_ends_tasks_and_the_tasks_they_start_while_ending():
    registry = TaskRegistry()
    ended: list[str] = []

    async def cleanup() -> None:
        await asyncio.sleep(0.05)
        ended.append("cleanup")

    async def worker() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.shield(registry.spawn(cleanup(), name="cleanup"))
            raise

    registry.spawn(worker(), name="worker")
    await asyncio.sleep(0)
    assert len(registry) == 1
    assert await registry.cancel_all(2.0) == []
    assert len(registry) == 0
    with pytest.raises(EngineStopped):
        registry.spawn(cleanup())


async def test_cancel_all_reports_a_task_that_ignores_cancellation():
    registry = TaskRegistry()
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    task = registry.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    assert await registry.cancel_all(0.1) == ["stubborn"]
    release.set()
    await task


async def test_a_failing_task_is_logged_unless_quiet(caplog):
    registry = TaskRegistry()

    async def boom() -> None:
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR)
    loud = registry.spawn(boom(), name="loud")
    quiet = registry.spawn(boom(), name="quiet", quiet=True)
    await asyncio.wait({loud, quiet})
    assert "engine task loud failed: RuntimeError: boom" in caplog.text
    assert "quiet" not in caplog.text
