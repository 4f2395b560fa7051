"""The engine's background loops: the platform's WebSocket and its messages, the pending-jobs
poll, the challenge check, the reconciler, housekeeping and the store probe, plus the work
they (and the Validator's listeners) start in the background. A loop that raises is logged and
started again a second later; `stop` cancels every loop and that work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from validator_tui.clients.errors import ClientError
from validator_tui.clients.platform import WsState
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.jobs import JobManager
from validator_tui.engine.reconciler import Reconciler
from validator_tui.engine.store import StoreError
from validator_tui.logs import RepeatLimiter
from validator_tui.models.platform import (
    ChallengeUpdatedMessage,
    JobCancelledMessage,
    NewJobMessage,
    WsMessage,
)
from validator_tui.sanitize import clean_line
from validator_tui.shared.records import ConnectionView

logger = logging.getLogger("validator_tui.engine")

RECONCILE_INTERVAL_S = 5.0
#: While a host's VMM does not answer, the reconciler asks it this often (it notices the
#: return).
VMM_PROBE_INTERVAL_S = 1.0
HOUSEKEEPING_INTERVAL_S = 300.0
#: While claims are suspended because the state database stopped taking writes, it is tried
#: this often (claims resume by themselves once it takes them again).
STORE_PROBE_INTERVAL_S = 2.0


class EngineLoops:
    """Runs the engine's loops once `start` is called, and the background work they start."""

    def __init__(
        self,
        ctx: EngineContext,
        jobs: JobManager,
        challenges: ChallengeManager,
        reconciler: Reconciler,
    ) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.challenges = challenges
        self.reconciler = reconciler
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        #: Frames of unknown types: one line per type per minute, with a count.
        self._unknown_frames = RepeatLimiter(partial(ctx.log, "warn", "ws"))
        self._poll_failures = RepeatLimiter(partial(ctx.log, "warn", "poll"))

    def start(self) -> None:
        """Start every loop (recovery is done: claims may begin)."""
        self._loops = [
            self._loop("websocket", self._websocket_loop),
            self._loop("poll", self._poll_loop),
            self._loop("challenges", self._challenge_loop),
            self._loop("reconciler", self._reconcile_loop),
            self._loop("housekeeping", self._housekeeping_loop),
            self._loop("store-probe", self._store_probe_loop),
        ]

    def background(self, work: Coroutine[Any, Any, None], name: str = "engine-background") -> None:
        """Run `work` without holding up its caller (the WebSocket reader: a new_job may be
        next); `stop` cancels it with the loops."""
        task = self.ctx.tasks.spawn(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self, timeout: float) -> None:
        """Cancel every loop and the background work; wait for them at most `timeout` s."""
        stopping = [*self._loops, *self._background]
        for task in stopping:
            task.cancel()
        if stopping:
            await asyncio.wait(stopping, timeout=timeout)

    def _loop(self, name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        async def guarded() -> None:
            while True:
                try:
                    await body()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.exception("engine loop %s crashed", name)
                    self.ctx.state.event(
                        "error", "engine", f"{name} loop error: {clean_line(str(exc))}"
                    )
                    await asyncio.sleep(1.0)

        return self.ctx.tasks.spawn(guarded(), name=f"engine-{name}")

    # -- the platform -----------------------------------------------------------------------

    async def _websocket_loop(self) -> None:
        await self.ctx.platform.connect_websocket(
            self._on_message, on_state=self._on_ws_state, on_connect=self._poll_once
        )

    def _on_ws_state(self, ws: WsState) -> None:
        state = self.ctx.state
        state.header.platform = ConnectionView(ws.status, ws.retry_in, ws.last_error, time.time())
        state.header_changed()

    async def _on_message(self, message: WsMessage) -> None:
        if isinstance(message, NewJobMessage):
            self.jobs.on_new_job(message.job_id, message.challenge_id)
        elif isinstance(message, JobCancelledMessage):
            self.jobs.on_job_cancelled(message.job_id)
        elif isinstance(message, ChallengeUpdatedMessage):
            if self.challenges.on_challenge_updated(message.challenge_id, message.github_commit):
                self.ctx.log(
                    "info",
                    "challenges",
                    "challenge updated: rebuilding its CVM",
                    challenge_id=message.challenge_id,
                )
                self.background(self.jobs.check_challenge_updates())
        else:
            self._unknown_frames.say(
                message.type, f"ignored a WebSocket frame of unknown type {message.type!r}"
            )

    async def _poll_loop(self) -> None:
        interval = self.ctx.config.engine.poll_interval_s
        while True:
            await self._poll_once()
            await asyncio.sleep(interval)

    async def _poll_once(self) -> None:
        try:
            await self.jobs.fetch_pending_jobs()
        except ClientError as exc:
            # While the platform is not answering, its one "not answering" line says it all.
            if not self.ctx.platform_health.refuses_us(exc) and self.ctx.platform_health.up:
                self._poll_failures.say("poll failed", f"poll failed: {exc}")

    async def _challenge_loop(self) -> None:
        interval = self.ctx.config.engine.challenge_check_interval_s
        while True:
            await self.jobs.check_challenge_updates()
            await asyncio.sleep(interval)

    # -- the hosts and the store ------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        """Every host every RECONCILE_INTERVAL_S; a host whose VMM does not answer every
        VMM_PROBE_INTERVAL_S meanwhile."""
        since_full = 0.0
        while True:
            quiet = [host for host in self.ctx.hosts if not host.answering]
            step = VMM_PROBE_INTERVAL_S if quiet else RECONCILE_INTERVAL_S
            await asyncio.sleep(step)
            since_full += step
            if since_full >= RECONCILE_INTERVAL_S:
                since_full = 0.0
                await self.reconciler.reconcile()
            else:
                await self.reconciler.reconcile(
                    [host for host in self.ctx.hosts if not host.answering]
                )

    async def _housekeeping_loop(self) -> None:
        while True:
            with contextlib.suppress(StoreError):
                self.ctx.store.prune(keep_rows=self.ctx.config.engine.max_job_history)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    async def _store_probe_loop(self) -> None:
        while True:
            await asyncio.sleep(STORE_PROBE_INTERVAL_S)
            self.jobs.probe_store()
