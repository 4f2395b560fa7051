"""A console whose engine crashes two seconds in, for the terminal-restore test:
`python -m tests.support.crashing_console STATE_DIR` (exit code: the console's)."""

from __future__ import annotations

import asyncio
import sys

from validator_tui.control.interface import EngineMode
from validator_tui.demo import DemoEnvironment
from validator_tui.embedded import EmbeddedConsole
from validator_tui.engine.validator import Validator

CRASH_AFTER_S = 2.0


class CrashingValidator(Validator):
    """Runs normally, shuts down cleanly after CRASH_AFTER_S, then raises."""

    async def run(self) -> None:
        runner = asyncio.create_task(super().run())
        await asyncio.sleep(CRASH_AFTER_S)
        await self.stop()
        await runner
        raise RuntimeError("the engine crashed on purpose (test)")


async def main(state_dir: str) -> int:
    async with DemoEnvironment(state_dir=state_dir, jobs_per_minute=0, boot_seconds=0) as env:
        assert env.config is not None
        return await EmbeddedConsole(CrashingValidator(env.config), EngineMode.DEMO).run()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
