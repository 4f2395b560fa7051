"""Kill the headless engine with SIGKILL at random moments and restart it (crash safety)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from validator_tui.config import ValidatorConfig
from validator_tui.config_io import write_config


async def start_engine(config_path: Path, log_path: Path) -> asyncio.subprocess.Process:
    """`validator-tui run --headless` as a child process, appending to `log_path`."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "validator_tui",
            "run",
            "--headless",
            "--config",
            str(config_path),
            "--log-format",
            "json",
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def crash_cycles(
    config: ValidatorConfig, workdir: Path, cycles: int, rng: random.Random, *, max_up: float
) -> int:
    """Run the engine `cycles` times, each killed with SIGKILL after a random time."""
    config_path = write_config(config, workdir / "config.toml")
    log_path = workdir / "engine.log"
    for _ in range(cycles):
        process = await start_engine(config_path, log_path)
        await asyncio.sleep(rng.uniform(0.2, max_up))
        process.send_signal(signal.SIGKILL)
        await process.wait()
    return cycles


@contextlib.asynccontextmanager
async def final_engine(
    config: ValidatorConfig, workdir: Path
) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[int]]]:
    """`final_run` on a task: set the event to stop the engine, await the task for its exit
    code. A test that fails first leaves no engine running (it is killed)."""
    settle = asyncio.Event()
    runner = asyncio.create_task(final_run(config, workdir, settle))
    try:
        yield settle, runner
    finally:
        if not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


async def final_run(config: ValidatorConfig, workdir: Path, settle: asyncio.Event) -> int:
    """Run the engine until `settle` is set, then stop it with SIGTERM; returns its exit code."""
    process = await start_engine(workdir / "config.toml", workdir / "engine.log")
    try:
        await settle.wait()
        process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:  # the test failed first: leave no engine behind
            process.kill()
            await process.wait()
