"""Run the engine without a UI until SIGINT/SIGTERM, logging what happens."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from validator_tui.engine.validator import Validator

logger = logging.getLogger("validator_tui.headless")

STATUS_EVERY_S = 30.0


async def run_headless(validator: Validator, *, status_every: float = STATUS_EVERY_S) -> None:
    """Run `validator` until a stop signal, then shut it down cleanly."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    engine = asyncio.create_task(validator.run())
    status = asyncio.create_task(_status_lines(validator, status_every))
    waiter = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({engine, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not engine.done():
            logger.info("stopping: finishing in-flight results")
            await validator.stop()
        await engine
    finally:
        for task in (status, waiter):
            task.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    logger.info("stopped")


async def _status_lines(validator: Validator, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        header = validator.state.header
        c = header.counters
        q = header.quota
        warnings = header.warnings()
        logger.info(
            "status ws=%s vmm=%s running=%d completed=%d failed=%d lost=%d cancelled=%d "
            "outbox=%d dead_letters=%d cpu=%d/%d mem=%d/%dMB ports=%d/%d%s",
            header.platform.status,
            header.vmm.status,
            c.running,
            c.completed,
            c.failed,
            c.lost,
            c.cancelled,
            c.outbox_pending,
            c.dead_letters,
            q.used.vcpu,
            q.total.vcpu,
            q.used.memory_mb,
            q.total.memory_mb,
            q.ports_used,
            q.ports_total,
            "".join(f" | {text}" for text in warnings),
        )
