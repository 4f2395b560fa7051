"""Helpers for outage tests: the engine talks to the simulators through fault proxies."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

from tests.support.proxy import FaultProxy
from validator_tui.config import ValidatorConfig
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator


@contextlib.asynccontextmanager
async def behind_proxies(
    env: DemoEnvironment,
) -> AsyncIterator[tuple[ValidatorConfig, FaultProxy, FaultProxy]]:
    """`env.config` with the platform and the VMM behind one FaultProxy each."""
    assert env.config is not None
    async with FaultProxy(env.platform.url) as platform, FaultProxy(env.vmm.url) as vmm:
        config = env.config.model_copy(
            update={"platform_api_url": platform.url, "dstack_vmm_url": vmm.url}
        )
        yield config, platform, vmm


def events(validator: Validator, text: str, level: str | None = None) -> list[str]:
    """Messages of the engine's events that contain `text` (at `level`, if given)."""
    return [
        e.message
        for e in validator.state.events
        if text in e.message and (level is None or e.level == level)
    ]


@contextlib.contextmanager
def loop_errors() -> Iterator[list[str]]:
    """Collect what the event loop reports as unhandled (e.g. "Task exception was never
    retrieved"); garbage is collected at the end so unretrieved exceptions show up."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    previous = loop.get_exception_handler()

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(str(context.get("message")) + ": " + repr(context.get("exception")))

    loop.set_exception_handler(handler)
    try:
        yield seen
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
