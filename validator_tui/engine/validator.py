"""Validator: wires the engine together, runs its loops, recovers after a crash, and takes
the operator's commands. The same object runs headless and inside the TUI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from validator_tui.clients.errors import ApiError, ClientError, QueryRefused
from validator_tui.clients.orm_guard import check_read_only
from validator_tui.clients.platform import PlatformClient, WsState
from validator_tui.clients.vmm import VmmClient
from validator_tui.config import ValidatorConfig
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.executor import DstackExecutor
from validator_tui.engine.health import ServerHealth
from validator_tui.engine.jobs import VM_LOST, JobManager
from validator_tui.engine.naming import VmNaming
from validator_tui.engine.outbox import ResultOutbox
from validator_tui.engine.quota import CVMQuotaManager
from validator_tui.engine.records import ConnectionView, JobState, Outcome, VmKind, VmRecord
from validator_tui.engine.state import EngineState
from validator_tui.engine.store import OutboxRow, Store, StoreError
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.models.platform import (
    ChallengeUpdatedMessage,
    JobCancelledMessage,
    JobResults,
    NewJobMessage,
    WsMessage,
)
from validator_tui.sanitize import clean_line

logger = logging.getLogger("validator_tui.engine")

RECONCILE_INTERVAL_S = 5.0
#: While the VMM does not answer, the reconciler asks it this often (it notices the return).
VMM_PROBE_INTERVAL_S = 1.0
HOUSEKEEPING_INTERVAL_S = 300.0
#: Shares of the shutdown deadline: running jobs (and their VM removal) may use up to this
#: share; the final cancel-and-await of every task keeps at least FINAL_SHARE.
JOBS_SHARE = 0.6
FINAL_SHARE = 0.1


class Validator:
    """A complete validator: construct, `await run()`, and `await stop()` from elsewhere."""

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
        self.ctx: EngineContext | None = None
        self._orphans_pending = False
        self.jobs: JobManager | None = None
        self.challenges: ChallengeManager | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every loop until `stop()`; then shut down cleanly."""
        ctx = self._build()
        try:
            if not await self._recovered(ctx):
                return
            self._loops = [
                self._loop("websocket", self._websocket_loop),
                self._loop("poll", self._poll_loop),
                self._loop("challenges", self._challenge_loop),
                self._loop("reconciler", self._reconcile_loop),
                self._loop("housekeeping", self._housekeeping_loop),
            ]
            self._started.set()
            await self._stop.wait()
        finally:
            await self._shutdown(ctx)

    async def _recovered(self, ctx: EngineContext) -> bool:
        """Run start-up recovery; False if `stop()` came first. Recovery (results queued, our
        orphaned job VMs removed) then gets the jobs' share of the shutdown deadline to finish
        before the shutdown cancels it, so a VMM that does not answer cannot delay the exit."""
        recovery = ctx.tasks.spawn(self._recover(ctx), name="engine-recover", quiet=True)
        stopped = ctx.tasks.spawn(self._stop.wait(), name="engine-stop-wait", quiet=True)
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

    def _build(self) -> EngineContext:
        config = self.config
        store_path = config.state_path / "state.sqlite3"
        claims_allowed = True
        try:
            store = Store(store_path)
        except StoreError as exc:
            store = Store(Path(":memory:"))
            claims_allowed = False
            self.state.event("error", "store", f"{exc}; running without claims")
            logger.error("%s; running without claims", exc)
        timeout = config.engine.request_timeout_s
        token = config.dstack_vmm_token.get_secret_value() if config.dstack_vmm_token else None
        platform_health = ServerHealth(self.state, "platform", "platform", down_on_5xx=False)
        vmm_health = ServerHealth(self.state, "VMM", "vmm", down_on_5xx=True)
        ctx = EngineContext(
            config=config,
            state=self.state,
            store=store,
            quota=CVMQuotaManager(config.resource_limits, config.host_ports),
            platform=PlatformClient(
                config.platform_api_url,
                config.validator_hotkey,
                timeout=timeout,
                ws_backoff_cap=config.engine.ws_backoff_cap_s,
                observer=platform_health.observe,
            ),
            vmm=VmmClient(
                config.dstack_vmm_url, token, timeout=timeout, observer=vmm_health.observe
            ),
            # Evaluator connections go to a new host port per job VM: keep few idle ones, as
            # httpx scans every pooled connection on each request (a profiled hotspot).
            http=httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=16),
                trust_env=False,
            ),
            naming=VmNaming(config.validator_hotkey),
            tasks=TaskRegistry(),
            platform_health=platform_health,
            vmm_health=vmm_health,
        )
        self.ctx = ctx
        self.challenges = ChallengeManager(ctx, self._on_challenge_active)
        executor = DstackExecutor(ctx, self.challenges)
        outbox = ResultOutbox(ctx, self._on_result_done)
        self.jobs = JobManager(ctx, self.challenges, executor, outbox)
        self.jobs.claims_allowed = claims_allowed
        platform_health.subscribe(self._on_health_change)
        vmm_health.subscribe(self._on_health_change)
        ctx.publish_quota()
        self.jobs.publish_claim_state()
        return ctx

    async def _recover(self, ctx: EngineContext) -> None:
        """Resume the outbox, finish jobs a previous run left in flight, sort out our VMs."""
        assert self.jobs is not None and self.challenges is not None
        resumed = self.jobs.outbox.resume()
        if resumed:
            ctx.log("info", "recover", f"resending {resumed} unsent results")
        self.jobs.outbox.count_dead_letters()
        dead = self.state.header.counters.dead_letters
        if dead:
            ctx.log(
                "warn",
                "result",
                f"{dead} results were refused by the platform (dead letters): "
                "see `validator-tui outbox list`",
            )
        for stored in ctx.store.in_flight_jobs():
            if ctx.store.has_result(stored.id):
                continue
            if stored.state == "claiming":
                self.jobs.recover_unsure(stored)
                continue
            results = JobResults(
                score=0.0,
                metrics={},
                logs=["[validator] validator restarted while the job was running"],
                execution_time_ms=0,
                error="validator restarted",
            )
            body = results.to_json_bytes()
            ctx.store.finish_job_with_result(stored.id, "submitting", body)
            self.jobs.outbox.enqueue(stored.id, body)
            ctx.log(
                "warn",
                "recover",
                "job interrupted by a restart: error result queued",
                job_id=stored.id,
            )
        await self._sort_out_vms(ctx)

    async def _sort_out_vms(self, ctx: EngineContext, *, late: bool = False) -> None:
        """List our VMs: remove job VMs (their jobs cannot resume) and offer challenge CVMs for
        adoption. `late` (the VMM did not answer at start-up and is back): challenge CVMs the
        engine does not hold by now are removed instead of adopted."""
        assert self.challenges is not None
        try:
            listing = await ctx.vmm.status(keyword=ctx.naming.prefix, brief=False)
        except ClientError as exc:
            ctx.log("error", "vmm", f"cannot list VMs at start-up: {exc}")
            self._orphans_pending = True
            return
        self._orphans_pending = False
        ours = [vm for vm in listing.vms if ctx.naming.owns(vm.name) and vm.status != "removing"]
        for info in ours:
            if ctx.naming.is_job_vm(info.name):
                with contextlib.suppress(ClientError):
                    await ctx.vmm.remove_vm(info.id)
                ctx.log("warn", "recover", f"removed orphaned job VM {info.id}", vm_id=info.id)
        cvms = [vm for vm in ours if ctx.naming.is_challenge_vm(vm.name)]
        if not late:
            self.challenges.offer_existing(cvms)
            return
        for info in cvms:
            if not self.challenges.holds(info.id):
                with contextlib.suppress(ClientError):
                    await ctx.vmm.remove_vm(info.id)
                ctx.log("warn", "recover", f"removed stale CVM {info.id}", vm_id=info.id)

    async def _shutdown(self, ctx: EngineContext) -> None:
        """Stop within one deadline (`engine.shutdown_deadline_s`): stop claims and the loops →
        cancel running jobs (their VMs removed, CreateVm in flight included; error results
        queued) → flush the outbox → cancel and await every task → close the clients and the
        store. Whatever is still unsent stays in the store for the next start."""
        assert self.jobs is not None and self.challenges is not None
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
        await ctx.platform.aclose()
        await ctx.vmm.aclose()
        await ctx.http.aclose()
        ctx.store.close()
        logger.info(
            "engine stopped in %.1fs (deadline %gs)",
            time.monotonic() - started,
            total,
            extra={"kind": "shutdown"},
        )

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

        assert self.ctx is not None
        return self.ctx.tasks.spawn(guarded(), name=f"engine-{name}")

    # -- loops ------------------------------------------------------------------------------

    async def _websocket_loop(self) -> None:
        assert self.ctx is not None
        await self.ctx.platform.connect_websocket(
            self._on_message, on_state=self._on_ws_state, on_connect=self._poll_once
        )

    async def _poll_loop(self) -> None:
        interval = self.config.engine.poll_interval_s
        while True:
            await self._poll_once()
            await asyncio.sleep(interval)

    async def _poll_once(self) -> None:
        assert self.jobs is not None and self.ctx is not None
        try:
            await self.jobs.fetch_pending_jobs()
        except ClientError as exc:
            self.ctx.log("warn", "poll", f"poll failed: {exc}")

    async def _challenge_loop(self) -> None:
        interval = self.config.engine.challenge_check_interval_s
        while True:
            await self.check_challenge_updates()
            await asyncio.sleep(interval)

    async def check_challenge_updates(self) -> None:
        """Fetch the active challenges and make the CVMs follow them."""
        assert self.challenges is not None and self.ctx is not None
        try:
            challenges = await self.ctx.platform.get_challenges()
        except ClientError as exc:
            self.ctx.log("warn", "challenges", f"cannot fetch challenges: {exc}")
            return
        await self.challenges.sync(challenges)

    async def _reconcile_loop(self) -> None:
        assert self.ctx is not None
        while True:
            vmm_up = self.ctx.vmm_health.up
            await asyncio.sleep(RECONCILE_INTERVAL_S if vmm_up else VMM_PROBE_INTERVAL_S)
            await self.reconcile()

    async def reconcile(self) -> None:
        """Compare the VMM's VMs with ours: refresh statuses, remove orphaned job VMs, and
        notice VMs we hold that the VMM no longer lists (a VMM restart): a challenge CVM is
        provisioned again, a job fails with "VM lost", their quota is released."""
        assert self.ctx is not None and self.challenges is not None and self.jobs is not None
        ctx = self.ctx
        held = {vm_id: (vm.kind, vm.owner_id) for vm_id, vm in ctx.state.vms.items()}
        try:
            listing = await ctx.vmm.status(keyword=ctx.naming.prefix, brief=True)
        except ClientError:
            return
        if self._orphans_pending:
            await self._sort_out_vms(ctx, late=True)
        listed = {info.id for info in listing.vms}
        for vm_id, (kind, owner) in held.items():
            if vm_id in listed or vm_id not in ctx.state.vms:
                continue
            if kind is VmKind.CHALLENGE:
                self.challenges.on_vm_lost(vm_id)
            else:
                ctx.state.drop_vm(vm_id)
                if self.jobs.on_vm_lost(owner):
                    ctx.log("warn", "vm", f"job VM {vm_id} lost: {VM_LOST}", job_id=owner)
        active_names = {
            ctx.naming.job_vm(job.id) for job in ctx.state.jobs.values() if job.state.active
        }
        for info in listing.vms:
            if not ctx.naming.owns(info.name) or info.status == "removing":
                continue
            record = ctx.state.vms.get(info.id)
            if record is not None and (record.status, record.boot_progress) != (
                info.status,
                info.boot_progress,
            ):
                record.status, record.boot_progress = info.status, info.boot_progress
                ctx.state.put_vm(record)
            if ctx.naming.is_challenge_vm(info.name):
                self.challenges.on_vm_info(info)
            elif info.name not in active_names:
                with contextlib.suppress(ClientError):
                    await ctx.vmm.remove_vm(info.id)
                ctx.state.drop_vm(info.id)
                ctx.log("warn", "reconcile", f"removed orphaned job VM {info.id}", vm_id=info.id)

    async def _housekeeping_loop(self) -> None:
        assert self.ctx is not None
        while True:
            with contextlib.suppress(StoreError):
                self.ctx.store.prune(keep_rows=self.config.engine.max_job_history)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    # -- platform messages ----------------------------------------------------------------------

    async def _on_message(self, message: WsMessage) -> None:
        assert self.jobs is not None and self.challenges is not None and self.ctx is not None
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
            self.ctx.log("warn", "ws", f"ignored unknown message type {message.type!r}")

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without holding up the WebSocket reader (a new_job may be next)."""
        assert self.ctx is not None
        task = self.ctx.tasks.spawn(work, name="engine-background")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_ws_state(self, ws: WsState) -> None:
        self.state.header.platform = ConnectionView(
            ws.status, ws.retry_in, ws.last_error, time.time()
        )
        self.state.header_changed()

    def _on_health_change(self) -> None:
        """The platform's or the VMM's health changed: header, claims."""
        assert self.ctx is not None and self.jobs is not None
        vmm = self.ctx.vmm_health
        view = ConnectionView("connected" if vmm.up else "error", last_error=vmm.last_error or None)
        current = self.state.header.vmm
        if (current.status, current.last_error) != (view.status, view.last_error):
            self.state.header.vmm = view
        slow = self.ctx.platform_health.slow or vmm.slow
        self.state.header.slow_request = slow
        self.state.header_changed()
        self.jobs.on_health_change()

    def _on_challenge_active(self, challenge_id: str) -> None:
        if self.jobs is not None and self.jobs.auto_claim:
            self.jobs.claim_what_fits()

    def _on_result_done(self, job_id: str, status: str, detail: str) -> None:
        if self.jobs is not None:
            self.jobs.on_result_done(job_id, status, detail)

    # -- operator commands --------------------------------------------------------------------

    def _refuse_if_read_only(self) -> Outcome | None:
        if self.read_only:
            return Outcome.refused("read-only mode: commands are disabled")
        if self.jobs is None:
            return Outcome.refused("the engine is not running yet")
        return None

    async def claim(self, job_id: str) -> Outcome:
        """Claim a pending job now (whatever the auto-claim setting)."""
        refused = self._refuse_if_read_only()
        if refused:
            return refused
        assert self.jobs is not None
        return await self.jobs.claim_job(job_id)

    async def cancel(self, job_id: str) -> Outcome:
        """Abort a claimed or running job; its result says `cancelled by operator`."""
        refused = self._refuse_if_read_only()
        if refused:
            return refused
        assert self.jobs is not None
        return await self.jobs.cancel_by_operator(job_id)

    async def rebuild(self, challenge_id: str) -> Outcome:
        """Provision a fresh CVM for the challenge, switch to it, destroy the old one."""
        refused = self._refuse_if_read_only()
        if refused:
            return refused
        assert self.challenges is not None
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
        refused = self._refuse_if_read_only()
        if refused:
            return refused
        assert self.ctx is not None and self.challenges is not None
        record = self.state.vms.get(vm_id)
        if record is None:
            return Outcome.refused(f"VM {vm_id} is not one of this validator's VMs")
        vmm = self.ctx.vmm
        calls = {"start": vmm.start_vm, "stop": vmm.stop_vm, "remove": vmm.remove_vm}
        try:
            await calls[action](vm_id)
        except ClientError as exc:
            return Outcome.refused(f"{action} failed: {exc}")
        if action == "remove" and record.kind is VmKind.CHALLENGE:
            self.challenges.forget_vm(vm_id)
            self.state.drop_vm(vm_id)
        self.ctx.log("info", "operator", f"operator {action} VM {vm_id}", vm_id=vm_id)
        with contextlib.suppress(ClientError):
            info = await vmm.get_info(vm_id)
            if info is not None and vm_id in self.state.vms:
                _update_vm(self.state, self.state.vms[vm_id], info.status, info.boot_progress)
                if record.kind is VmKind.CHALLENGE:
                    self.challenges.on_vm_info(info)
        return Outcome.done(f"{action} sent to VM {vm_id}")

    async def set_auto_claim(self, enabled: bool) -> Outcome:
        """Turn auto-claim on or off; when on, pending jobs that fit are claimed at once."""
        refused = self._refuse_if_read_only()
        if refused:
            return refused
        assert self.jobs is not None
        self.jobs.auto_claim = enabled
        self.state.header.auto_claim = enabled
        self.state.header_changed()
        if enabled:
            self.jobs.claim_what_fits()
        return Outcome.done(f"auto-claim {'on' if enabled else 'off'}")

    async def orm_query(self, challenge_id: str, sql: str, params: list[object]) -> Outcome:
        """Run a read-only ORM query on a challenge; rows come back in the outcome."""
        if self.ctx is None:
            return Outcome.refused("the engine is not running yet")
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
        if self.ctx is None:
            return []
        try:
            return self.ctx.store.outbox_entries(limit)
        except StoreError:
            return []

    async def retry_dead_letter(self, job_id: str) -> Outcome:
        """Send a result the platform refused (a dead letter) again, now."""
        refused = self._refuse_if_read_only()
        if refused:
            return refused
        assert self.jobs is not None
        return self.jobs.outbox.retry_dead_letter(job_id)

    async def discard_dead_letter(self, job_id: str) -> Outcome:
        """Give up on a result the platform refused (kept in the store as `discarded`)."""
        refused = self._refuse_if_read_only()
        if refused:
            return refused
        assert self.jobs is not None
        return self.jobs.outbox.discard_dead_letter(job_id)

    async def vm_logs(
        self, vm_id: str, *, lines: int = 200, follow: bool = True
    ) -> AsyncIterator[str]:
        """The VM's serial log lines (raw, untrusted: sanitise before display)."""
        if self.ctx is None:
            return
        async for line in self.ctx.vmm.logs(vm_id, follow=follow, lines=lines, ansi=False):
            yield line

    def running_job_count(self) -> int:
        return sum(1 for job in self.state.jobs.values() if job.state.active)


def _left(until: float) -> float:
    """Seconds from now until `until` (time.monotonic), never negative."""
    return max(0.0, until - time.monotonic())


def _update_vm(state: EngineState, vm: VmRecord, status: str, progress: str) -> None:
    vm.status, vm.boot_progress = status, progress
    state.put_vm(vm)


__all__ = ["JobState", "Validator"]
