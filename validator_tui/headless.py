"""Run the engine without a UI until SIGINT/SIGTERM, logging what happens; its consoles attach
over the control socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from validator_tui.control.host import EngineHost
from validator_tui.control.interface import EngineMode
from validator_tui.control.paths import log_path
from validator_tui.control.terminal import release_terminal
from validator_tui.engine.validator import Validator
from validator_tui.logs import setup_file_logging

logger = logging.getLogger("validator_tui.headless")

STATUS_EVERY_S = 30.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def run_headless(
    validator: Validator,
    *,
    mode: EngineMode = EngineMode.HEADLESS,
    status_every: float = STATUS_EVERY_S,
    log_format: str = "text",
) -> None:
    """Run `validator` with its control socket until a stop signal, then shut it down
    cleanly. SIGHUP (the terminal of a `run --headless` started by hand went away) moves the
    log lines to the state dir's `validator.log` and carries on."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    hung_up = False

    def hang_up() -> None:
        nonlocal hung_up
        if not hung_up:
            hung_up = True
            path = log_path(validator.config.state_path)
            logger.warning("the terminal went away: log lines go to %s from now on", path)
            release_terminal()
            setup_file_logging(path, log_format)
            logger.warning("the terminal went away: the validator keeps running")

    for sig, handler in zip(_SIGNALS, (stopping.set, stopping.set, hang_up), strict=True):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
    host = EngineHost(validator, mode=mode)
    engine = asyncio.create_task(host.run())
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
        for sig in _SIGNALS:
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
