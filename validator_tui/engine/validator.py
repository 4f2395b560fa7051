"""Validator: wires the engine together, runs its loops, recovers after a crash, and takes
the operator's commands. The same object runs headless and inside the TUI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from validator_tui.clients.errors import ApiError, ClientError, QueryRefused
from validator_tui.clients.orm_guard import check_read_only
from validator_tui.clients.platform import PlatformClient, WsState
from validator_tui.clients.pool import http_transport
from validator_tui.config import ValidatorConfig
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.executor import DstackExecutor
from validator_tui.engine.foreign import ForeignVms
from validator_tui.engine.health import ServerHealth
from validator_tui.engine.hosts import Host, build_pool
from validator_tui.engine.jobs import JobManager
from validator_tui.engine.log_file import keep_log_file, release_log_file
from validator_tui.engine.metrics import EngineMetrics, MetricsServer
from validator_tui.engine.naming import VmNaming
from validator_tui.engine.notify import SystemdNotifier
from validator_tui.engine.outbox import ResultOutbox
from validator_tui.engine.reconciler import Reconciler
from validator_tui.engine.recovery import Recovery
from validator_tui.engine.state import EngineState
from validator_tui.engine.store import Store, StoreError
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.logs import RepeatLimiter
from validator_tui.models.platform import (
    ChallengeUpdatedMessage,
    JobCancelledMessage,
    NewJobMessage,
    WsMessage,
)
from validator_tui.sanitize import clean_line
from validator_tui.shared.records import (
    ConnectionView,
    JobRecord,
    JobState,
    OutboxRow,
    Outcome,
    ResultStatus,
    VmKind,
)

logger = logging.getLogger("validator_tui.engine")

RECONCILE_INTERVAL_S = 5.0
#: While a host's VMM does not answer, the reconciler asks it this often (it notices the
#: return).
VMM_PROBE_INTERVAL_S = 1.0
HOUSEKEEPING_INTERVAL_S = 300.0
#: While claims are suspended because the state database stopped taking writes, it is tried
#: this often (claims resume by themselves once it takes them again).
STORE_PROBE_INTERVAL_S = 2.0
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
        self._loops: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        store, claims_allowed = self._open_store()
        self.ctx = self._context(store)
        #: Frames of unknown types: one line per type per minute, with a count.
        self._unknown_frames = RepeatLimiter(partial(self.ctx.log, "warn", "ws"))
        self._poll_failures = RepeatLimiter(partial(self.ctx.log, "warn", "poll"))
        self.challenges = ChallengeManager(self.ctx)
        self.jobs = JobManager(
            self.ctx,
            self.challenges,
            DstackExecutor(self.ctx, self.challenges),
            ResultOutbox(self.ctx, self._on_result_done),
        )
        self.jobs.claims_allowed = claims_allowed
        self.challenges.on_active(self._on_challenge_active)
        self.recovery = Recovery(self.ctx, self.jobs, self.challenges, ForeignVms(self.ctx))
        self.reconciler = Reconciler(self.ctx, self.jobs, self.challenges, self.recovery)
        self.metrics = EngineMetrics(self.state, self.ctx.platform_health)
        #: Serves `GET /metrics` while the engine runs, when `[metrics] listen` is set.
        self.metrics_server: MetricsServer | None = None
        self.notifier = SystemdNotifier()
        self.ctx.platform_health.subscribe(self._on_health_change)
        for host in self.ctx.hosts:
            host.health.subscribe(self._on_health_change)
        self.ctx.hosts.on_down(self._on_host_down)
        self.ctx.hosts.on_up(self._on_host_up)
        self._restore_draining()
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

    def _restore_draining(self) -> None:
        """Hosts the operator drained stay drained across restarts (the store keeps them)."""
        try:
            draining = self.ctx.store.draining_hosts()
        except StoreError:
            return
        for host in self.ctx.hosts:
            host.draining = host.name in draining

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every loop until `stop()`; then shut down cleanly. The engine's lines go to
        `<state_dir>/validator.log` meanwhile (see `log_file`)."""
        log_file = keep_log_file(self.config.state_path)
        try:
            await self._serve_metrics()
            if not await self._recovered():
                return
            self._loops = [
                self._loop("websocket", self._websocket_loop),
                self._loop("poll", self._poll_loop),
                self._loop("challenges", self._challenge_loop),
                self._loop("reconciler", self._reconcile_loop),
                self._loop("housekeeping", self._housekeeping_loop),
                self._loop("store-probe", self._store_probe_loop),
                self.ctx.tasks.spawn(self.notifier.run(self.status_line), name="engine-notify"),
            ]
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
        stopping = [*self._loops, *self._tasks]
        for task in stopping:
            task.cancel()
        if stopping:
            await asyncio.wait(stopping, timeout=_left(deadline - final))
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
                    self.state.event(
                        "error", "engine", f"{name} loop error: {clean_line(str(exc))}"
                    )
                    await asyncio.sleep(1.0)

        return self.ctx.tasks.spawn(guarded(), name=f"engine-{name}")

    # -- loops ------------------------------------------------------------------------------

    async def _websocket_loop(self) -> None:
        await self.ctx.platform.connect_websocket(
            self._on_message, on_state=self._on_ws_state, on_connect=self._poll_once
        )

    async def _poll_loop(self) -> None:
        interval = self.config.engine.poll_interval_s
        while True:
            await self._poll_once()
            await asyncio.sleep(interval)

    async def _poll_once(self) -> None:
        try:
            await self.jobs.fetch_pending_jobs()
        except ClientError as exc:
            # While the platform is not answering, its one "not answering" line says it all.
            if not self._refuses_us(exc) and self.ctx.platform_health.up:
                self._poll_failures.say("poll failed", f"poll failed: {exc}")

    def _refuses_us(self, exc: ClientError) -> bool:
        """A 401/403 to a request about no particular job (a poll) means the platform refuses
        our hotkey, not one request: an auth outage (claims pause, results are retried). True
        if `exc` is one (logged once, by the platform's health)."""
        if not isinstance(exc, ApiError) or not exc.refused:
            return False
        words = f" {exc.detail}" if exc.detail else ""
        self.ctx.platform_health.refused(f"platform refuses our hotkey: {exc.status}{words}")
        return True

    async def _challenge_loop(self) -> None:
        interval = self.config.engine.challenge_check_interval_s
        while True:
            await self.check_challenge_updates()
            await asyncio.sleep(interval)

    async def check_challenge_updates(self) -> None:
        """Fetch the active challenges and make the CVMs follow them."""
        try:
            challenges = await self.ctx.platform.get_challenges()
        except ClientError as exc:
            if not self._refuses_us(exc):
                self.ctx.log("warn", "challenges", f"cannot fetch challenges: {exc}")
            return
        adopting = self.challenges.adoption_pending
        await self.challenges.sync(challenges)
        if adopting:
            self.jobs.on_health_change()

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
                await self.reconcile()
            else:
                await self.reconciler.reconcile(
                    [host for host in self.ctx.hosts if not host.answering]
                )

    async def reconcile(self) -> None:
        """One reconciler pass over every host (see `Reconciler.reconcile`)."""
        await self.reconciler.reconcile()

    async def _housekeeping_loop(self) -> None:
        while True:
            with contextlib.suppress(StoreError):
                self.ctx.store.prune(keep_rows=self.config.engine.max_job_history)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    async def _store_probe_loop(self) -> None:
        while True:
            await asyncio.sleep(STORE_PROBE_INTERVAL_S)
            self.jobs.probe_store()

    # -- platform messages ----------------------------------------------------------------------

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
                self._background(self.check_challenge_updates())
        else:
            self._unknown_frames.say(
                message.type, f"ignored a WebSocket frame of unknown type {message.type!r}"
            )

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without holding up the WebSocket reader (a new_job may be next)."""
        task = self.ctx.tasks.spawn(work, name="engine-background")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_ws_state(self, ws: WsState) -> None:
        self.state.header.platform = ConnectionView(
            ws.status, ws.retry_in, ws.last_error, time.time()
        )
        self.state.header_changed()

    def _on_health_change(self) -> None:
        """The platform's or a VMM's health changed: header, claims, waiting CVMs; a VMM that
        answers again has its VM list read at once (claims for its CVMs wait for that)."""
        hosts = list(self.ctx.hosts)
        quiet = [host for host in hosts if not host.answering]
        if not quiet:
            view = ConnectionView("connected")
        elif len(quiet) == len(hosts):
            errors = "; ".join(host.health.last_error for host in quiet)
            view = ConnectionView("error", last_error=errors or None)
        else:
            errors = "; ".join(f"{host.name}: {host.health.last_error}" for host in quiet)
            up = len(hosts) - len(quiet)
            view = ConnectionView(f"{up}/{len(hosts)} hosts up", last_error=errors or None)
        current = self.state.header.vmm
        if (current.status, current.last_error) != (view.status, view.last_error):
            self.state.header.vmm = view
        slow = self.ctx.platform_health.slow or next(
            (host.health.slow for host in hosts if host.health.slow), ""
        )
        self.state.header.slow_request = slow
        self.state.header.platform_up = self.ctx.platform_health.up
        self.state.header_changed()
        unsettled = [host for host in hosts if host.answering and not host.settled]
        if unsettled and not self.jobs.stopping:
            self._background(self.reconciler.reconcile(unsettled))
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
        self._background(self.reconciler.reconcile([host]))
        self.challenges.capacity_freed()
        self.jobs.claim_what_fits()

    def _on_challenge_active(self, challenge_id: str) -> None:
        """A challenge's CVM serves (again): claim the jobs it lets in, when auto-claiming."""
        if self.jobs.auto_claim:
            self.jobs.claim_what_fits()

    def _on_result_done(self, job_id: str, status: ResultStatus, detail: str) -> None:
        self.metrics.on_result(status)
        self.jobs.on_result_done(job_id, status, detail)

    # -- operator commands --------------------------------------------------------------------
    # Each runs for its command frame (control/frames.py) through the command desk, which
    # refuses every command of a read-only console or engine before it gets here.

    async def claim(self, job_id: str) -> Outcome:
        """Claim a pending job now (whatever the auto-claim setting)."""
        return await self.jobs.claim_job(job_id)

    async def cancel(self, job_id: str) -> Outcome:
        """Abort a claimed or running job; its result says `cancelled by operator`."""
        return await self.jobs.cancel_by_operator(job_id)

    async def rebuild(self, challenge_id: str) -> Outcome:
        """Provision a fresh CVM for the challenge, switch to it, destroy the old one."""
        if not self.challenges.request_rebuild(challenge_id):
            return Outcome.refused("unknown challenge, or it is leaving the active list")
        return Outcome.done("rebuild started: the new CVM replaces the old one when active")

    async def start_vm(self, vm_id: str) -> Outcome:
        """Start one of our VMs."""
        return await self._vm_command(vm_id, "start")

    async def stop_vm(self, vm_id: str) -> Outcome:
        """Stop (hard) one of our VMs; a job running in it fails."""
        return await self._vm_command(vm_id, "stop")

    async def remove_vm(self, vm_id: str) -> Outcome:
        """Remove one of our VMs; a job in it fails, a challenge is re-provisioned later."""
        return await self._vm_command(vm_id, "remove")

    async def _vm_command(self, vm_id: str, action: str) -> Outcome:
        record = self.state.vms.get(vm_id)
        if record is None:
            job = self._job_of_vm(vm_id)
            if job is not None and job.state.finished:
                return Outcome.refused(
                    f"VM {vm_id} of job {job.id} was removed when the job finished "
                    f"({job.state.value})"
                )
            return Outcome.refused(f"VM {vm_id} is not one of this validator's VMs")
        host = self.ctx.hosts.get(record.host)
        if host is None:
            return Outcome.refused(f"VM {vm_id} is on host {record.host!r}, not in the pool")
        vmm = host.vmm
        calls = {"start": vmm.start_vm, "stop": vmm.stop_vm, "remove": vmm.remove_vm}
        try:
            await calls[action](vm_id)
        except ClientError as exc:
            return Outcome.refused(f"{action} failed: {exc}")
        if record.kind is VmKind.CHALLENGE:
            if action == "remove":
                self.challenges.forget_vm(vm_id)
                self.state.drop_vm(vm_id)
            elif action == "stop":
                self.challenges.operator_stopped(vm_id)
            else:
                self.challenges.operator_started(vm_id)
        where = f" on host {host.name}" if self.ctx.hosts.several else ""
        self.ctx.log("info", "operator", f"operator {action} VM {vm_id}{where}", vm_id=vm_id)
        with contextlib.suppress(ClientError):
            info = await vmm.get_info(vm_id)
            if info is not None and vm_id in self.state.vms:
                self.state.set_vm_status(vm_id, info.status, info.boot_progress)
                if record.kind is VmKind.CHALLENGE:
                    self.challenges.on_vm_info(info)
        return Outcome.done(f"{action} sent to VM {vm_id}{where}")

    async def drain_host(self, name: str) -> Outcome:
        """Drain a host: no new VMs there; its challenge CVMs move (a new one active elsewhere
        first, then the old one removed); its running jobs finish; then it shows `drained`.
        Kept across restarts until undrained."""
        host = self._set_draining(name, True)
        if isinstance(host, Outcome):
            return host
        moving = self.challenges.move_off(host)
        self.ctx.publish_quota()
        self.jobs.claim_what_fits()
        running = sum(
            1 for job in self.state.jobs.values() if job.state.active and job.host == name
        )
        others = [h for h in self.ctx.hosts if h.takes_vms]
        note = "" if others else "; no other host takes VMs: its CVMs stay until one does"
        return Outcome.done(
            f"draining host {name}: {moving} challenge CVMs move, {running} running jobs "
            f"finish there{note}"
        )

    async def undrain_host(self, name: str) -> Outcome:
        """Return a drained (or draining) host to the pool; challenge CVMs that have not moved
        off it yet stay (their moves are cancelled): undoing a drain changes nothing else."""
        host = self._set_draining(name, False)
        if isinstance(host, Outcome):
            return host
        stayed = self.challenges.stay_on(host)
        self.ctx.publish_quota()
        self.challenges.capacity_freed()
        self.jobs.claim_what_fits()
        note = f"; {stayed} challenge CVM moves cancelled (they stay)" if stayed else ""
        return Outcome.done(f"host {name} takes VMs again{note}")

    def _set_draining(self, name: str, draining: bool) -> Host | Outcome:
        """Drain (or undrain) host `name`, recorded in the store first; the host, or the
        refusal (no such host, already so, the store cannot record it)."""
        host = self.ctx.hosts.get(name)
        if host is None:
            names = ", ".join(h.name for h in self.ctx.hosts)
            return Outcome.refused(f"no host named {name!r} (hosts: {names})")
        if draining and host.draining:
            return Outcome.refused(f"host {name} is already {host.state.value}")
        if not draining and not host.draining:
            return Outcome.refused(f"host {name} is not draining")
        try:
            self.ctx.store.set_draining(name, draining)
        except StoreError as exc:
            return Outcome.refused(f"cannot record the {'drain' if draining else 'undrain'}: {exc}")
        host.draining = draining
        return host

    async def set_auto_claim(self, enabled: bool) -> Outcome:
        """Turn auto-claim on or off; when on, pending jobs that fit are claimed at once."""
        self.jobs.auto_claim = enabled
        self.state.header.auto_claim = enabled
        self.state.header_changed()
        self.jobs.claim_what_fits()
        return Outcome.done(f"auto-claim {'on' if enabled else 'off'}")

    async def orm_query(self, challenge_id: str, sql: str, params: list[object]) -> Outcome:
        """Run a read-only ORM query on a challenge; rows come back in the outcome."""
        try:
            check_read_only(sql)
            rows = await self.ctx.platform.execute_orm_query(challenge_id, sql, params)
        except QueryRefused as exc:
            return Outcome.refused(str(exc))
        except ApiError as exc:
            return Outcome.refused(f"server refused the query: {exc.detail or exc}")
        except ClientError as exc:
            return Outcome.refused(str(exc))
        return Outcome.done(f"{len(rows)} rows", tuple(rows))

    def list_outbox(self, limit: int = 1000) -> list[OutboxRow]:
        """The results outbox (dead letters first, then unsent, then the latest answered):
        status, attempts and the last error (for a dead letter, the server's words)."""
        try:
            return self.ctx.store.outbox_entries(limit)
        except StoreError:
            return []

    async def retry_dead_letter(self, job_id: str) -> Outcome:
        """Send a result the platform refused (a dead letter) again, now."""
        return self.jobs.outbox.retry_dead_letter(job_id)

    async def discard_dead_letter(self, job_id: str) -> Outcome:
        """Give up on a result the platform refused (kept in the store as `discarded`)."""
        return self.jobs.outbox.discard_dead_letter(job_id)

    async def vm_logs(
        self, vm_id: str, *, lines: int = 200, follow: bool = True
    ) -> AsyncIterator[str]:
        """The VM's serial log lines (raw, untrusted: sanitise before display). For a job VM
        that is gone, the lines kept with its job's record (see `JobRecord.vm_log`)."""
        if vm_id not in self.state.vms:
            job = self._job_of_vm(vm_id)
            if job is not None:
                for line in job.vm_log[-lines:]:
                    yield line
                kept = f"its last {len(job.vm_log)} log lines" if job.vm_log else "no log"
                yield f"[validator] VM {vm_id} of job {job.id} is gone: {kept} kept"
                return
        record = self.state.vms.get(vm_id)
        hosts = self.ctx.hosts
        host = hosts.get(record.host) if record is not None else None
        if host is None and not hosts.several:
            host = next(iter(hosts))
        if host is None:
            yield f"[validator] VM {vm_id} is not one of this validator's VMs"
            return
        async for line in host.vmm.logs(vm_id, follow=follow, lines=lines, ansi=False):
            yield line

    def _job_of_vm(self, vm_id: str) -> JobRecord | None:
        """The job (still in the history) that ran in VM `vm_id`."""
        for job in reversed(self.state.jobs.values()):
            if job.vm_id == vm_id:
                return job
        return None

    def running_job_count(self) -> int:
        return sum(1 for job in self.state.jobs.values() if job.state.active)


def _left(until: float) -> float:
    """Seconds from now until `until` (time.monotonic), never negative."""
    return max(0.0, until - time.monotonic())


__all__ = ["JobState", "Validator"]
