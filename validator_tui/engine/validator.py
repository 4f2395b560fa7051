"""Validator: builds the engine's parts and wires them to each other, recovers after a crash,
starts the loops (engine/loops.py) and stops everything within one deadline. The operator's
commands are `Validator.commands` (engine/commands.py). The same object runs headless and
inside the TUI."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx

from validator_tui.clients.platform import PlatformClient
from validator_tui.clients.pool import http_transport
from validator_tui.config import ValidatorConfig
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.commands import OperatorCommands
from validator_tui.engine.context import EngineContext
from validator_tui.engine.executor import DstackExecutor
from validator_tui.engine.foreign import ForeignVms
from validator_tui.engine.health import ServerHealth
from validator_tui.engine.hosts import Host, build_pool
from validator_tui.engine.jobs import JobManager
from validator_tui.engine.log_file import keep_log_file, release_log_file
from validator_tui.engine.loops import EngineLoops
from validator_tui.engine.metrics import EngineMetrics, MetricsServer
from validator_tui.engine.naming import VmNaming
from validator_tui.engine.notify import SystemdNotifier
from validator_tui.engine.outbox import ResultOutbox
from validator_tui.engine.reconciler import Reconciler
from validator_tui.engine.recovery import Recovery
from validator_tui.engine.state import EngineState
from validator_tui.engine.store import Store, StoreError
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.shared.records import JobState

logger = logging.getLogger("validator_tui.engine")

#: Shares of the shutdown deadline: running jobs (and their VM removal) may use up to this
#: share; the final cancel-and-await of every task keeps at least FINAL_SHARE.
JOBS_SHARE = 0.6
FINAL_SHARE = 0.1


class Validator:
    """A complete validator: construct, `await run()`, and `await stop()` from elsewhere.

    Every part is built here (no network is touched before `run()`); the store is opened
    here too, and an unusable one is replaced by an in-memory store with claims suspended.
    """

    def __init__(self, config: ValidatorConfig, *, read_only: bool = False) -> None:
        self.config = config
        self.read_only = read_only
        self.state = EngineState(
            config.validator_hotkey, max_job_history=config.engine.max_job_history
        )
        self.state.header.auto_claim = config.engine.auto_claim
        self.state.header.read_only = read_only
        self._stop = asyncio.Event()
        self._stop_at: float | None = None
        self._started = asyncio.Event()
        store, claims_allowed = self._open_store()
        self.ctx = self._context(store)
        self.challenges = ChallengeManager(self.ctx)
        outbox = ResultOutbox(self.ctx)
        self.jobs = JobManager(
            self.ctx, self.challenges, DstackExecutor(self.ctx, self.challenges), outbox
        )
        self.jobs.claims_allowed = claims_allowed
        self.challenges.on_active(self.jobs.on_challenge_active)
        self.recovery = Recovery(self.ctx, self.jobs, self.challenges, ForeignVms(self.ctx))
        self.reconciler = Reconciler(self.ctx, self.jobs, self.challenges, self.recovery)
        self.loops = EngineLoops(self.ctx, self.jobs, self.challenges, self.reconciler)
        #: What the operator can do (each console command frame runs one of them).
        self.commands = OperatorCommands(self.ctx, self.jobs, self.challenges)
        self.metrics = EngineMetrics(self.state, self.ctx.platform_health)
        outbox.on_done(self.metrics.on_result)
        outbox.on_done(self.jobs.on_result_done)
        #: Serves `GET /metrics` while the engine runs, when `[metrics] listen` is set.
        self.metrics_server: MetricsServer | None = None
        self.notifier = SystemdNotifier()
        self.ctx.platform_health.subscribe(self._on_health_change)
        for host in self.ctx.hosts:
            host.health.subscribe(self._on_health_change)
        self.ctx.hosts.on_down(self._on_host_down)
        self.ctx.hosts.on_up(self._on_host_up)
        self.commands.restore_draining()
        self.ctx.publish_quota()
        self.jobs.publish_claim_state()

    def _open_store(self) -> tuple[Store, bool]:
        """The state directory's store, and whether claims may run with it."""
        path = self.config.state_path / "state.sqlite3"
        try:
            return Store(path), True
        except StoreError as exc:
            self.state.event("error", "store", f"{exc}; running without claims")
            logger.error("%s; running without claims", exc)
            return Store(Path(":memory:")), False

    def _context(self, store: Store) -> EngineContext:
        config = self.config
        timeout = config.engine.request_timeout_s
        platform = PlatformClient(
            config.platform_api_url,
            config.validator_hotkey,
            timeout=timeout,
            ws_backoff_cap=config.engine.ws_backoff_cap_s,
        )
        platform_health = ServerHealth(self.state, platform.name, "platform", down_on_5xx=False)
        platform.observer = platform_health.observe
        # Evaluator connections go to a new host port per job VM: keep few idle ones, as
        # httpx scans every pooled connection on each request (a profiled hotspot).
        http = httpx.AsyncClient(
            timeout=timeout,
            transport=http_transport(
                httpx.Limits(max_connections=1000, max_keepalive_connections=16), trust_env=False
            ),
            trust_env=False,
        )
        tasks = TaskRegistry()
        hosts = build_pool(
            config.host_settings(),
            state=self.state,
            http=http,
            tasks=tasks,
            timeout=timeout,
            vm_poll_interval=config.engine.vm_poll_interval_s,
            placement=config.engine.placement,
            grace=config.engine.host_down_grace_s,
        )
        return EngineContext(
            config=config,
            state=self.state,
            store=store,
            hosts=hosts,
            platform=platform,
            http=http,
            naming=VmNaming(config.validator_hotkey),
            tasks=tasks,
            platform_health=platform_health,
        )

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every loop until `stop()`; then shut down cleanly. The engine's lines go to
        `<state_dir>/validator.log` meanwhile (see `log_file`)."""
        log_file = keep_log_file(self.config.state_path)
        try:
            await self._serve_metrics()
            if not await self._recovered():
                return
            self.loops.start()
            self.loops.background(self.notifier.run(self.status_line), name="engine-notify")
            self._started.set()
            self.notifier.send("READY=1", f"STATUS={self.status_line()}")
            await self._stop.wait()
        finally:
            self.notifier.send("STOPPING=1")
            await self._shutdown()
            if self.metrics_server is not None:
                await self.metrics_server.close()
            self.notifier.close()
            release_log_file(log_file)

    async def _serve_metrics(self) -> None:
        """Start the metrics server when `[metrics] listen` is set; one that cannot listen is
        an error in the event log, not a reason to stop validating."""
        listen = self.config.metrics.listen
        if not listen:
            return
        server = MetricsServer(self.metrics, listen)
        try:
            await server.start()
        except OSError as exc:
            self.ctx.log("error", "metrics", f"cannot serve metrics on {listen}: {exc}")
            return
        self.metrics_server = server
        self.state.header.metrics_url = server.url
        self.state.header_changed()

    def status_line(self) -> str:
        """The counts in one line (systemd's STATUS=, shown by `systemctl status`)."""
        c = self.state.header.counters
        return (
            f"running {c.running}, completed {c.completed}, failed {c.failed}, lost {c.lost}, "
            f"cancelled {c.cancelled}, outbox {c.outbox_pending}, dead letters {c.dead_letters}"
        )

    async def _recovered(self) -> bool:
        """Run start-up recovery; False if `stop()` came first. Recovery (results queued, our
        orphaned job VMs removed) then gets the jobs' share of the shutdown deadline to finish
        before the shutdown cancels it, so a VMM that does not answer cannot delay the exit."""
        tasks = self.ctx.tasks
        recovery = tasks.spawn(self.recovery.recover(), name="engine-recover", quiet=True)
        stopped = tasks.spawn(self._stop.wait(), name="engine-stop-wait", quiet=True)
        await asyncio.wait({recovery, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if recovery.done():
            recovery.result()
            return True
        share = self.config.engine.shutdown_deadline_s * JOBS_SHARE
        await asyncio.wait({recovery}, timeout=_left(self._stop_requested_at() + share))
        return False

    def _stop_requested_at(self) -> float:
        """When `stop()` was called (time.monotonic); now if it was not."""
        return self._stop_at if self._stop_at is not None else time.monotonic()

    async def wait_started(self) -> None:
        """Return once recovery is done and the loops run."""
        await self._started.wait()

    async def stop(self) -> None:
        """Ask `run()` to finish within `engine.shutdown_deadline_s`: claims stop, running jobs
        end with an error result and their VMs are removed, results are flushed."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self._stop.set()

    async def _shutdown(self) -> None:
        """Stop within one deadline (`engine.shutdown_deadline_s`): stop claims and the loops →
        cancel running jobs (their VMs removed, CreateVm in flight included; error results
        queued) → flush the outbox → cancel and await every task → close the clients and the
        store. Whatever is still unsent stays in the store for the next start."""
        ctx = self.ctx
        total = self.config.engine.shutdown_deadline_s
        started = self._stop_requested_at()
        deadline = started + total
        final = max(total * FINAL_SHARE, min(1.0, total / 2))
        self.jobs.stopping = True
        self.jobs.publish_claim_state()
        await self.loops.stop(_left(deadline - final))
        jobs_until = started + total * JOBS_SHARE
        await asyncio.gather(
            self.challenges.shutdown(until=jobs_until), self.jobs.shutdown(until=jobs_until)
        )
        flushed = await self.jobs.outbox.flush(_left(deadline - final))
        if not flushed:
            ctx.log("warn", "shutdown", "some results are unsent; the next start resends them")
        stuck = await ctx.tasks.cancel_all(_left(deadline))
        if stuck:
            ctx.log("error", "shutdown", f"tasks still running at the deadline: {stuck}")
        await self.close()
        logger.info(
            "engine stopped in %.1fs (deadline %gs)",
            time.monotonic() - started,
            total,
            extra={"kind": "shutdown"},
        )

    async def close(self) -> None:
        """Close the engine's clients, connection pools and store, once its tasks have ended
        (also for an engine that was built and never run)."""
        ctx = self.ctx
        ctx.hosts.close()
        await ctx.platform.aclose()
        for host in ctx.hosts:
            await host.vmm.aclose()
        await ctx.http.aclose()
        ctx.store.close()

    # -- what one part tells the others --------------------------------------------------------

    def _on_health_change(self) -> None:
        """The platform's or a VMM's health changed: header, claims, waiting CVMs; a VMM that
        answers again has its VM list read at once (claims for its CVMs wait for that)."""
        hosts = self.ctx.hosts
        header = self.state.header
        view = hosts.vmm_view()
        if (header.vmm.status, header.vmm.last_error) != (view.status, view.last_error):
            header.vmm = view
        slow = self.ctx.platform_health.slow or next(
            (host.health.slow for host in hosts if host.health.slow), ""
        )
        header.slow_request = slow
        header.platform_up = self.ctx.platform_health.up
        self.state.header_changed()
        unsettled = [host for host in hosts if host.answering and not host.settled]
        if unsettled and not self.jobs.stopping:
            self.loops.background(self.reconciler.reconcile(unsettled))
        self.challenges.capacity_freed()
        self.jobs.on_health_change()

    def _on_host_down(self, host: Host) -> None:
        """`host` has not answered for the grace period: with other hosts to go to, its
        challenge CVMs move and its jobs that cannot finish fail naming it."""
        if not self.ctx.hosts.several:
            return
        ended = self.jobs.on_host_down(host)
        if ended:
            self.ctx.log("warn", "host", f"host {host.name} is down: {ended} jobs there end")
        self.challenges.on_host_down(host)
        self.jobs.claim_what_fits()

    def _on_host_up(self, host: Host) -> None:
        """`host` answers again after being down: clean up what was left on it now."""
        self.loops.background(self.reconciler.reconcile([host]))
        self.challenges.capacity_freed()
        self.jobs.claim_what_fits()

    def running_job_count(self) -> int:
        """How many jobs are ours and not finished (each holds, or is about to hold, a VM)."""
        return sum(1 for job in self.state.jobs.values() if job.state.active)


def _left(until: float) -> float:
    """Seconds from now until `until` (time.monotonic), never negative."""
    return max(0.0, until - time.monotonic())


__all__ = ["JobState", "Validator"]
