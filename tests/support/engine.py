"""Helpers for engine tests: run a Validator against the simulators and wait on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from validator_tui.config import ValidatorConfig
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import ChallengeState, Resources


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll `predicate` until true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def all_challenges_active(validator: Validator, count: int = 3) -> bool:
    challenges = validator.state.challenges.values()
    return len(challenges) == count and all(
        c.state is ChallengeState.ACTIVE and c.vm_status == "running" for c in challenges
    )


@contextlib.asynccontextmanager
async def running(
    config: ValidatorConfig, *, challenges: int = 3, read_only: bool = False
) -> AsyncIterator[Validator]:
    """A started Validator whose challenge CVMs are all active; stopped cleanly after."""
    validator = Validator(config, read_only=read_only)
    task = asyncio.create_task(validator.run())
    try:
        await asyncio.wait_for(validator.wait_started(), 10)
        await wait_for(
            lambda: all_challenges_active(validator, challenges), 15, "challenge CVMs active"
        )
        yield validator
    finally:
        await validator.stop()
        await asyncio.wait_for(task, 30)


FAST = {"poll_interval_s": 0.5, "vm_poll_interval_s": 0.05}


def job_vms(env: DemoEnvironment) -> list[dict[str, Any]]:
    return [vm for vm in env.vmm.vms() if "-job-" in vm["name"]]


def challenge_resources(n: int = 3) -> Resources:
    return Resources(vcpu=2 * n, memory_mb=2048 * n, disk_mb=20 * 1024 * n)
