"""JobManager: runs each claimed job in its own task through the executor, hands results to
the outbox, and ends jobs (cancelled, host down, VM lost, shutdown).

Job states: pending → claimed → provisioning → running → submitting → completed | failed |
cancelled | lost. A job's quota allocation is taken before the claim request and released
exactly once when its VM is gone, on every path.

The claim path (discovery, claim order, claim outcomes, unsure claims) is the ClaimManager's
(engine/claims); a won claim's job comes back here to run. A job's state is set in one place,
`JobManager.set_state`, along the moves records.JOB_TRANSITIONS allows.

A claim's quota is taken on the host the pool's placement picks (engine/hosts); the job's VM
runs there. When that host goes down (several hosts), a job not yet evaluating fails with an
error naming the host; one evaluating goes on while its evaluator answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass

from validator_tui.clients.errors import ClientError
from validator_tui.engine.challenge_stats import ChallengeStatsBook
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.claim_order import ClaimCancel
from validator_tui.engine.claims import RESTARTED, ClaimManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.executor import DstackExecutor, JobFailed
from validator_tui.engine.hosts import Host
from validator_tui.engine.outbox import ResultOutbox
from validator_tui.engine.quota import Allocation
from validator_tui.engine.store import StoredJob, StoreError, stored_state
from validator_tui.models.platform import Job, JobResults, Listing
from validator_tui.sanitize import clean_line
from validator_tui.shared.records import (
    CancelReason,
    JobRecord,
    JobState,
    Outcome,
    Resources,
    ResultStatus,
    VmKind,
    VmRecord,
    check_transition,
)

VM_LOST = "VM lost: the VMM no longer has it"
CANCELLED_BY_OPERATOR = "cancelled by operator"
SHUTTING_DOWN = "validator shutting down"
#: The error result of a job ended early, by why it ended (none when the platform cancelled it).
_CANCEL_ERRORS = {
    CancelReason.OPERATOR: CANCELLED_BY_OPERATOR,
    CancelReason.VM_LOST: VM_LOST,
    CancelReason.SHUTDOWN: SHUTTING_DOWN,
}

logger = logging.getLogger("validator_tui.engine")


@dataclass(slots=True)
class _Run:
    task: asyncio.Task[None]
    allocation: Allocation
    cancel_reason: CancelReason | None = None


class JobManager:
    """Runs the jobs its ClaimManager claims and ends them; `set_state` is the one place a
    job's state is set."""

    def __init__(
        self,
        ctx: EngineContext,
        challenges: ChallengeManager,
        executor: DstackExecutor,
        outbox: ResultOutbox,
    ) -> None:
        self.ctx = ctx
        self.challenges = challenges
        self.executor = executor
        self.outbox = outbox
        self.auto_claim = ctx.config.engine.auto_claim
        self.claims_allowed = True
        #: When claims were suspended for the store (time.monotonic), if they were mid-run.
        self._suspended_at: float | None = None
        #: Jobs running (their VM being created, evaluating, or being removed).
        self.runs: dict[str, _Run] = {}
        #: Jobs the operator cancelled whose result is not answered yet: they end `cancelled`.
        self._operator_cancelled: set[str] = set()
        self.stopping = False
        self.challenge_stats = ChallengeStatsBook()
        self.claims = ClaimManager(ctx, self)

    # -- claims (engine/claims) -----------------------------------------------------------

    async def fetch_pending_jobs(self) -> Listing[Job]:
        """Poll the platform's pending jobs, settle unsure claims, claim what fits."""
        return await self.claims.fetch_pending_jobs()

    def on_new_job(self, job_id: str, challenge_id: str) -> None:
        """A `new_job` notification: show it and (auto-claim) claim it right away."""
        self.claims.on_new_job(job_id, challenge_id)

    def claim_what_fits(self) -> None:
        """With auto-claim, claim pending jobs in claim order while capacity allows."""
        self.claims.claim_what_fits()

    async def claim_job(self, job_id: str) -> Outcome:
        """Claim one pending job and start running it; refused with a reason otherwise."""
        return await self.claims.claim_job(job_id)

    def recover_unsure(self, stored: StoredJob) -> None:
        """A claim a previous run sent without hearing the answer: the first poll settles it."""
        self.claims.recover_unsure(stored)

    async def check_challenge_updates(self) -> None:
        """Fetch the active challenges and make the challenge CVMs follow them; jobs waiting
        for a challenge to be adopted are claimed once it is."""
        try:
            challenges = await self.ctx.platform.get_challenges()
        except ClientError as exc:
            if not self.ctx.platform_health.refuses_us(exc):
                self.ctx.log("warn", "challenges", f"cannot fetch challenges: {exc}")
            return
        adopting = self.challenges.adoption_pending
        await self.challenges.sync(challenges)
        if adopting:
            self.on_health_change()

    # -- capacity ---------------------------------------------------------------------------

    def has_capacity(self, job: JobRecord | Job) -> bool:
        """True when `job` could be claimed now: claims run, its challenge takes them, and a
        host has room for its VM. (`claim_job` takes the room itself, so a claim never
        overcommits whatever this said.)"""
        return not (
            self.claim_blocker()
            or self.challenges.claims_wait(job.challenge_id)
            or self.ctx.hosts.job_capacity_reason(self.job_resources())
        )

    def job_resources(self) -> Resources:
        """What one job VM holds from the quota."""
        return self.ctx.config.job_vm.resources

    def claim_blocker(self) -> str:
        """Why no job may be claimed now ("" when claims may run)."""
        if self.stopping:
            return "the validator is shutting down"
        if not self.claims_allowed:
            return "claims are suspended: the state database is not writable"
        if not self.ctx.platform_health.up:
            return "claims paused: the platform is unreachable"
        if self.ctx.platform_health.refusing:
            return f"claims paused: {self.ctx.platform_health.refusing}"
        if self.challenges.adoption_pending:
            return "claims wait: adopting the challenge CVMs found at start-up"
        hosts = self.ctx.hosts
        if not any(host.answering for host in hosts):
            if hosts.several:
                return "claims paused: no VMM host is answering"
            return "claims paused: the VMM is not answering"
        return ""

    def publish_claim_state(self) -> None:
        """Show in the header why claims are paused (nothing while they run)."""
        reason = self.claim_blocker()
        header = self.ctx.state.header
        if header.claims_paused != reason:
            header.claims_paused = reason
            self.ctx.state.header_changed()

    def on_challenge_active(self, challenge_id: str) -> None:
        """A challenge's CVM serves (again): claim the jobs it lets in, when auto-claiming."""
        if self.auto_claim:
            self.claim_what_fits()

    def on_health_change(self) -> None:
        """The platform's or the VMM's health changed: pause or resume claims."""
        self.publish_claim_state()
        self.claim_what_fits()

    # -- state --------------------------------------------------------------------------------

    def set_state(
        self,
        record: JobRecord,
        state: JobState,
        note: str | None = None,
        *,
        settled: bool = True,
        body: bytes | None = None,
        vm_name: str | None = None,
    ) -> None:
        """The one place a job's state is set: checks the move (records.JOB_TRANSITIONS),
        writes the job's row (`body`: its result queued in the same transaction; `vm_name`:
        the name of the VM about to be created), stamps the record and publishes it with
        `note`. `settled` False: a claim whose answer was lost (its row stays `claiming`).

        With a `vm_name`, a row not written raises StoreError and changes nothing. Otherwise
        a row not written suspends claims when the job is active (a restart would not know
        it); the row of a job that ended or is pending again is best effort."""
        check_transition(record.state, state)
        try:
            self._write_row(record, state, settled, body, vm_name)
        except StoreError as exc:
            if vm_name is not None:
                raise
            if state.active:
                self.suspend_claims(str(exc))
        record.enter(state, settled=settled)
        self.ctx.state.put_job(record, note)

    def _write_row(
        self,
        record: JobRecord,
        state: JobState,
        settled: bool,
        body: bytes | None,
        vm_name: str | None,
    ) -> None:
        row = stored_state(state, settled=settled)
        if body is not None:
            self.ctx.store.finish_job_with_result(record.id, row, body)
            return
        self.ctx.store.upsert_job(
            record.id,
            record.challenge_id,
            row,
            submission_id=record.submission_id,
            miner_hotkey=record.miner_hotkey,
            vm_name=vm_name,
        )

    def finish_interrupted(self, stored: StoredJob) -> None:
        """A job a previous run was running when it stopped (not in this run's state): its
        row says `submitting` and its error result is queued, in one transaction."""
        body = JobResults.failure(
            RESTARTED, 0, ["[validator] validator restarted while the job was running"]
        ).to_json_bytes()
        self.ctx.store.finish_job_with_result(stored.id, stored_state(JobState.SUBMITTING), body)
        self.outbox.enqueue(stored.id, body)

    # -- the store ----------------------------------------------------------------------------

    def suspend_claims(self, reason: str) -> None:
        """The state database stopped taking writes: no claims until `probe_store` succeeds."""
        if self.claims_allowed:
            self.claims_allowed = False
            self._suspended_at = time.monotonic()
            self.ctx.log("error", "store", f"claims suspended: {reason}")
            self.publish_claim_state()

    def probe_store(self) -> bool:
        """While claims are suspended because the state database stopped taking writes, try
        it once; when it takes them again, resume claims (and log it). True if resumed.

        Claims suspended at start-up (the store is the in-memory stand-in) stay suspended:
        only a restart reopens the state directory."""
        if self.claims_allowed or self.ctx.store.in_memory:
            return False
        try:
            self.ctx.store.probe()
        except StoreError:
            return False
        self.claims_allowed = True
        down_for = time.monotonic() - (self._suspended_at or time.monotonic())
        self.ctx.log(
            "info",
            "store",
            f"claims resumed: the state database takes writes again ({down_for:.1f}s suspended)",
        )
        self.on_health_change()
        return True

    # -- running --------------------------------------------------------------------------

    def start_run(self, job: JobRecord, allocation: Allocation) -> None:
        """Run the claimed `job` on its own task, holding `allocation` until its VM is gone."""
        task = self.ctx.tasks.spawn(self._run(job, allocation), name=f"job-{job.id}")
        self.runs[job.id] = _Run(task, allocation)

    async def _run(self, job: JobRecord, allocation: Allocation) -> None:
        counters = self.ctx.state.header.counters
        counters.running += 1
        self._count_challenge_job(job.challenge_id, +1)
        results: JobResults | None = None
        reason: CancelReason | None = None
        try:
            results = await self.executor.execute_job(job, allocation, _Progress(self, job))
        except asyncio.CancelledError:
            run = self.runs.get(job.id)
            reason = (run.cancel_reason if run else None) or CancelReason.SHUTDOWN
            if reason is CancelReason.PLATFORM:
                self.mark_cancelled(job, "cancelled by the platform: VM destroyed, no result")
        except Exception as exc:
            results = self._internal_error(job, exc)
        finally:
            self.runs.pop(job.id, None)
            self.release(allocation)
            counters.running -= 1
            self._count_challenge_job(job.challenge_id, -1)
            if results is not None:
                self.submit(job, results)
            elif reason is not None and reason is not CancelReason.PLATFORM:
                self.end_early(job, reason)

    def _internal_error(self, job: JobRecord, exc: Exception) -> JobResults:
        """A bug or an unexpected failure must not leave a claimed job unanswered."""
        error = f"validator error: {clean_line(str(exc) or type(exc).__name__, 300)}"
        self.ctx.log("error", "job", error, job_id=job.id)
        return _error_result(job, error)

    def end_early(self, job: JobRecord, reason: CancelReason) -> str:
        """Queue the error result of a job ended early (not by the platform); returns the
        error. A job the operator cancelled ends `cancelled` once its result is answered."""
        if reason is CancelReason.HOST_DOWN:
            host = self.ctx.hosts[job.host]
            error = (
                f"host {host.name} is down ({host.vmm.name} not answering for "
                f"{self.ctx.hosts.grace:g}s): the job's VM cannot be reached"
            )
        else:
            error = _CANCEL_ERRORS[reason]
        if reason is CancelReason.OPERATOR:
            self._operator_cancelled.add(job.id)
        self.submit_error(job, error)
        return error

    def submit_error(self, job: JobRecord, error: str) -> None:
        """Queue the score-0 result carrying `error` of a job that could not be evaluated."""
        self.submit(job, _error_result(job, error))

    def mark_cancelled(self, job: JobRecord, note: str) -> None:
        self.ctx.state.header.counters.cancelled += 1
        self.set_state(job, JobState.CANCELLED, note)

    def submit(self, job: JobRecord, results: JobResults) -> None:
        """Record the result on the job and queue it: serialised once, stored, then sent."""
        body = results.to_json_bytes()
        job.score, job.error = results.score, results.error
        job.metrics, job.logs = dict(results.metrics), list(results.logs)
        job.execution_time_ms = results.execution_time_ms
        note = "result queued" if results.error is None else results.error
        self.set_state(job, JobState.SUBMITTING, note, body=body)
        self.outbox.enqueue(job.id, body, claim_unsure=job.claim_unsure)

    def on_result_done(self, job_id: str, status: ResultStatus, detail: str) -> None:
        """The platform answered for this job's result (a `ResultOutbox.on_done` listener)."""
        by_operator = job_id in self._operator_cancelled
        self._operator_cancelled.discard(job_id)
        job = self.ctx.state.jobs.get(job_id)
        if job is None or job.state not in _AWAITING_ANSWER:
            return  # not ours to finish: a new offer of the job since its result was queued
        job.result_status = status
        sent = status is ResultStatus.SENT
        state = _answered_state(status, job.error is None, by_operator)
        self.ctx.state.header.counters.count_end(state)
        self.ctx.state.count_finish(state)
        note = f"result {status}" + (f": {detail}" if detail and not sent else "")
        self.set_state(job, state, note)
        self._count_for_challenge(job)
        logger.info(
            "%s, score %s in %s ms%s%s",
            job.state.value,
            "-" if job.score is None else f"{job.score:.6f}",
            job.execution_time_ms,
            f" ({clean_line(job.error, 200)})" if job.error else "",
            "" if sent else f"; result {_fate(status)}: {clean_line(detail, 300)}",
            extra={"kind": "job", "job_id": job_id, "challenge_id": job.challenge_id},
        )

    def on_host_down(self, host: Host) -> int:
        """`host` is down: every job of ours there that is not evaluating yet ends with an error
        naming the host (an evaluation under way goes on while its evaluator answers).
        Returns how many were ended."""
        ended = 0
        for job_id, run in list(self.runs.items()):
            record = self.ctx.state.jobs.get(job_id)
            if run.allocation.host != host.name or record is None:
                continue
            if record.state is JobState.RUNNING or run.cancel_reason is not None:
                continue
            run.cancel_reason = CancelReason.HOST_DOWN
            run.task.cancel()
            ended += 1
        return ended

    def on_vm_lost(self, job_id: str) -> bool:
        """The VMM no longer has this job's VM: the job fails with VM_LOST. True if it ran."""
        run = self.runs.get(job_id)
        if run is None:
            return False
        run.cancel_reason = run.cancel_reason or CancelReason.VM_LOST
        run.task.cancel()
        return True

    # -- cancelling -----------------------------------------------------------------------

    def on_job_cancelled(self, job_id: str) -> None:
        """`job_cancelled` from the platform: drop it, abort it, or unqueue its result. Seen
        before the job's VM exists, it stops the job before it costs a VM."""
        job = self.ctx.state.jobs.get(job_id)
        run = self.runs.get(job_id)
        if run is not None:
            run.cancel_reason = CancelReason.PLATFORM
            run.task.cancel()
        elif self.claims.cancel(job_id, CancelReason.PLATFORM) is None:
            self._cancel_unclaimed(job_id, job)
        if job is not None:
            self.ctx.log("info", "cancel", "job cancelled by the platform", job_id=job_id)

    def _cancel_unclaimed(self, job_id: str, job: JobRecord | None) -> None:
        """The platform cancelled a job with no run or claim of ours under way: its queued
        result is never sent, or (pending) it ends before any claim."""
        if self.outbox.drop(job_id):
            self._operator_cancelled.discard(job_id)
            if job is not None:
                self.mark_cancelled(job, "cancelled by the platform: result not sent")
        elif job is not None and job.state is JobState.PENDING:
            self.set_state(job, JobState.CANCELLED, "cancelled by the platform while pending")

    async def cancel_by_operator(self, job_id: str) -> Outcome:
        """Abort a claimed or running job: VM destroyed, result `cancelled by operator` sent."""
        run = self.runs.get(job_id)
        if run is None:
            cancel = self.claims.cancel(job_id, CancelReason.OPERATOR)
            if cancel is ClaimCancel.NOTED:
                return Outcome.done(f"cancel noted: job {job_id} ends when its claim answers")
            if cancel is ClaimCancel.ENDED:
                return Outcome.done(f"cancelled job {job_id}; result sent")
            job = self.ctx.state.jobs.get(job_id)
            state = job.state.value if job else "unknown"
            return Outcome.refused(f"job is {state}: only claimed or running jobs can be cancelled")
        run.cancel_reason = CancelReason.OPERATOR
        run.task.cancel()
        with contextlib.suppress(BaseException):
            await run.task
        return Outcome.done(f"cancelled job {job_id}; VM destroyed, result sent")

    async def shutdown(self, until: float) -> None:
        """Claim nothing more; let claims in flight settle; cancel running jobs (their VMs
        removed, error results queued). Returns by `until` (time.monotonic) at the latest."""
        self.stopping = True
        self.publish_claim_state()
        await self.claims.stop(_left(until))
        runs = list(self.runs.values())
        for run in runs:
            run.cancel_reason = run.cancel_reason or CancelReason.SHUTDOWN
            run.task.cancel()
        if not runs:
            return
        _, waiting = await asyncio.wait([r.task for r in runs], timeout=_left(until))
        # Still removing their VMs (a VMM that does not answer): stop waiting for that, so their
        # results are queued now; the removals go on until the final deadline.
        for task in waiting:
            task.cancel()
        if waiting:
            await asyncio.wait(waiting, timeout=1.0)

    # -- helpers --------------------------------------------------------------------------

    def release(self, allocation: Allocation) -> None:
        """Give a job's resources back: to waiting challenge CVMs first, then (auto-claim)
        to waiting jobs."""
        if self.ctx.hosts.release(allocation):
            self.ctx.publish_quota()
            if not self.stopping:
                self.challenges.capacity_freed()
                if self.auto_claim:
                    self.claim_what_fits()

    def _count_for_challenge(self, job: JobRecord) -> None:
        """Update the numbers of the finished `job`'s challenge (shown in its details)."""
        challenge = self.ctx.state.challenges.get(job.challenge_id)
        if challenge is not None and self.challenge_stats.record(job):
            challenge.stats = self.challenge_stats.summary(job.challenge_id)
            self.ctx.state.put_challenge(challenge)

    def _count_challenge_job(self, challenge_id: str, delta: int) -> None:
        record = self.ctx.state.challenges.get(challenge_id)
        if record is not None:
            record.jobs_running = max(0, record.jobs_running + delta)
            record.jobs_run += max(0, delta)
            self.ctx.state.put_challenge(record)
        self.ctx.state.header_changed()


#: The states of a job whose result the outbox may answer: queued, or a dead letter sent again.
_AWAITING_ANSWER = frozenset({JobState.SUBMITTING, JobState.FAILED})


def _answered_state(status: ResultStatus, no_error: bool, by_operator: bool) -> JobState:
    """The state a job ends in once the platform answered its result with `status`."""
    sent = status is ResultStatus.SENT
    if sent and no_error:
        return JobState.COMPLETED
    if status is ResultStatus.DROPPED or (sent and by_operator):
        return JobState.CANCELLED
    if status is ResultStatus.NOT_OURS:
        return JobState.LOST
    return JobState.FAILED


def _left(until: float) -> float:
    return max(0.0, until - time.monotonic())


def _fate(status: ResultStatus) -> str:
    """What happened to a result that was not accepted, in the job's log line."""
    return "refused (dead letter)" if status is ResultStatus.DEAD else str(status)


def _error_result(job: JobRecord, error: str) -> JobResults:
    """The score-0 result carrying `error` of a job that could not be evaluated."""
    return JobResults.failure(error, int(job.elapsed() * 1000))


class _Progress:
    """The executor's reports on one running job, recorded by its `JobManager`."""

    __slots__ = ("job", "jobs")

    def __init__(self, jobs: JobManager, job: JobRecord) -> None:
        self.jobs = jobs
        self.job = job

    def submission_fetched(self, miner_hotkey: str) -> None:
        if miner_hotkey and not self.job.miner_hotkey:
            self.job.miner_hotkey = sys.intern(miner_hotkey)

    def waiting(self, reason: str) -> None:
        self.jobs.ctx.state.put_job(self.job, reason)

    def creating_vm(self, vm_name: str) -> None:
        try:
            self.jobs.set_state(self.job, JobState.PROVISIONING, "creating VM", vm_name=vm_name)
        except StoreError as exc:
            raise JobFailed(f"not creating a VM: {exc}") from None

    def vm_created(self, vm_id: str, host_port: int | None) -> None:
        job, ctx = self.job, self.jobs.ctx
        with contextlib.suppress(StoreError):  # the committed name finds the VM after a crash
            ctx.store.upsert_job(job.id, job.challenge_id, stored_state(job.state), vm_id=vm_id)
        job.vm_id, job.host_port = vm_id, host_port
        name = ctx.naming.job_vm(job.id)
        ctx.state.put_vm(
            VmRecord(vm_id, name, VmKind.JOB, job.id, host_port=host_port, host=job.host)
        )
        ctx.state.put_job(job, f"VM {vm_id} created")

    def evaluating(self) -> None:
        self.jobs.set_state(self.job, JobState.RUNNING, "evaluating")

    def vm_log(self, lines: tuple[str, ...]) -> None:
        self.job.vm_log = lines
        self.jobs.ctx.state.put_job(self.job)
