"""Quiet logs (issue: the console explains itself): a repeating failure is said once, then
at most one summary a minute. With the platform down, the one "not answering" line says it:
polls that fail meanwhile add no line each."""

from __future__ import annotations

import asyncio

from tests.support.engine import FAST, running, wait_for
from tests.support.outage import behind_proxies, events
from validator_tui.demo import DemoEnvironment

ENGINE = FAST | {"poll_interval_s": 0.1, "request_timeout_s": 1.0}


async def test_polls_failing_while_the_platform_is_down_add_no_line_each():
    async with DemoEnvironment(seed=12, jobs_per_minute=0, boot_seconds=0, engine=ENGINE) as env:
        async with behind_proxies(env) as (config, platform, _vmm):
            async with running(config) as validator:
                await platform.set_mode("refuse")
                name = validator.ctx.platform.name
                await wait_for(
                    lambda: events(validator, f"{name} is not answering"), 5, "not answering"
                )
                await asyncio.sleep(2.0)  # ~20 polls fail
                assert len(events(validator, "poll failed")) <= 1
                await platform.set_mode("up")
                await wait_for(lambda: events(validator, f"{name} answers again"), 5, "back")


async def test_a_poll_failing_again_and_again_is_said_once_a_minute():
    async with DemoEnvironment(seed=13, jobs_per_minute=0, boot_seconds=0, engine=ENGINE) as env:
        async with running(env.config) as validator:
            polls = env.platform.stats["GET /jobs/pending"]
            env.platform.inject_fault(status=400, count=30, path_prefix="/jobs/pending")
            await wait_for(
                lambda: env.platform.stats["GET /jobs/pending"] >= polls + 10,
                10,
                "ten failed polls",
            )
            failed = events(validator, "poll failed")
            assert len(failed) == 1 and "HTTP 400" in failed[0]
