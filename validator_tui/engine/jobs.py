"""JobManager: sees pending jobs (WebSocket and polling), claims them within capacity, runs
each in its own task through the executor, and hands results to the outbox.

Job states: pending → claimed → provisioning → running → submitting → completed | failed |
cancelled | lost. A job's quota allocation is taken before the claim request and released
exactly once when its VM is gone, on every path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from validator_tui.clients.errors import ClaimLost, ClientError, NetworkError
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.executor import DstackExecutor
from validator_tui.engine.outbox import ResultOutbox
from validator_tui.engine.quota import Allocation, CapacityError
from validator_tui.engine.records import JobRecord, JobState, Outcome, Resources
from validator_tui.engine.store import StoreError
from validator_tui.models.platform import Job, JobResults
from validator_tui.sanitize import clean_line

CLAIM_RETRY_S = 5.0

logger = logging.getLogger("validator_tui.engine")


@dataclass(slots=True)
class _Run:
    task: asyncio.Task[None]
    allocation: Allocation
    cancel_reason: str = ""


class JobManager:
    """Claims and runs jobs; the only writer of job records."""

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
        self._runs: dict[str, _Run] = {}
        self._claiming: set[str] = set()
        self._claim_tasks: set[asyncio.Task[Outcome]] = set()
        self.stopping = False
        self._retry_claim_at: dict[str, float] = {}
        self._pending: dict[str, None] = {}
        self._poll_lock = asyncio.Lock()
        self.claim_sent_ns: dict[str, int] = {}

    # -- capacity ---------------------------------------------------------------------------

    def job_resources(self) -> Resources:
        vm = self.ctx.config.job_vm
        return Resources(vm.vcpu, vm.memory_mb, vm.disk_mb, vm.gpu)

    def has_capacity(self, job: JobRecord | Job) -> bool:
        """True when a job VM fits in the quota and the job's challenge CVM is active."""
        return self.challenges.is_active(job.challenge_id) and self.ctx.quota.check_capacity(
            self.job_resources()
        )

    # -- discovery --------------------------------------------------------------------------

    async def fetch_pending_jobs(self) -> list[Job]:
        """Poll the platform's pending jobs, show them, and claim what fits (auto-claim)."""
        async with self._poll_lock:
            jobs = await self.ctx.platform.get_pending_jobs()
            self.ctx.state.header.last_poll_at = time.time()
            self.ctx.state.header_changed()
            listed = set()
            for job in jobs:
                listed.add(job.id)
                self._see(job.id, job.challenge_id, job.submission_id, job.miner_hotkey)
            for job_id, record in list(self.ctx.state.jobs.items()):
                gone = job_id not in listed and job_id not in self._claiming
                if record.state is JobState.PENDING and gone:
                    self.ctx.state.drop_job(job_id)
                    self._retry_claim_at.pop(job_id, None)
            if self.auto_claim:
                self.claim_what_fits()
            return jobs

    def _see(self, job_id: str, challenge_id: str, submission_id: str, miner: str) -> JobRecord:
        record = self.ctx.state.jobs.get(job_id)
        if record is None:
            record = JobRecord(
                id=job_id,
                challenge_id=challenge_id,
                submission_id=clean_line(submission_id, 200),
                miner_hotkey=clean_line(miner, 100),
            )
            self.ctx.state.put_job(record, "seen pending")
            self._pending[job_id] = None
        elif record.state is JobState.PENDING and (submission_id and not record.submission_id):
            record.submission_id = clean_line(submission_id, 200)
            record.miner_hotkey = clean_line(miner, 100)
            self.ctx.state.put_job(record)
        return record

    def on_new_job(self, job_id: str, challenge_id: str) -> None:
        """A `new_job` notification: show it and, with auto-claim, claim it right away."""
        record = self._see(job_id, challenge_id, "", "")
        if self.auto_claim and record.state is JobState.PENDING:
            self._spawn_claim(job_id)

    def claim_what_fits(self) -> None:
        """Start claims for pending jobs, oldest first, while capacity allows."""
        for job_id in list(self._pending):
            record = self.ctx.state.jobs.get(job_id)
            if record is None or record.state is not JobState.PENDING:
                del self._pending[job_id]
                continue
            if record.id in self._claiming or not self.has_capacity(record):
                continue
            if self._retry_claim_at.get(record.id, 0.0) > time.monotonic():
                continue
            self._spawn_claim(record.id)

    def _spawn_claim(self, job_id: str) -> None:
        task = asyncio.create_task(self.claim_job(job_id))
        self._claim_tasks.add(task)
        task.add_done_callback(self._claim_done)

    def _claim_done(self, task: asyncio.Task[Outcome]) -> None:
        self._claim_tasks.discard(task)
        if not task.cancelled():
            task.exception()

    # -- claiming -------------------------------------------------------------------------

    async def claim_job(self, job_id: str) -> Outcome:
        """Claim one pending job and start running it; refused with a reason otherwise."""
        record = self.ctx.state.jobs.get(job_id)
        if record is None:
            return Outcome.refused(f"unknown job {job_id}")
        if record.state is not JobState.PENDING or job_id in self._claiming:
            return Outcome.refused(f"job is {record.state.value}, not pending")
        if self.stopping:
            return Outcome.refused("the validator is shutting down")
        if not self.claims_allowed:
            return Outcome.refused("claims are suspended: the state database is not writable")
        if not self.challenges.is_active(record.challenge_id):
            return Outcome.refused("the job's challenge CVM is not active")
        try:
            allocation = self.ctx.quota.allocate(self.job_resources(), owner=f"job {job_id}")
        except CapacityError as exc:
            return Outcome.refused(f"no capacity: {exc}")
        self._claiming.add(job_id)
        try:
            self.ctx.store.upsert_job(job_id, record.challenge_id, "claiming")
        except StoreError as exc:
            self._claiming.discard(job_id)
            self.ctx.quota.release(allocation)
            self._suspend_claims(str(exc))
            return Outcome.refused(str(exc))
        self.ctx.publish_quota()
        return await self._claim_request(record, allocation)

    async def _claim_request(self, record: JobRecord, allocation: Allocation) -> Outcome:
        job_id = record.id
        self.claim_sent_ns[job_id] = time.monotonic_ns()
        if len(self.claim_sent_ns) > 10000:
            self.claim_sent_ns.pop(next(iter(self.claim_sent_ns)))
        note = "claimed"
        try:
            claim = await self.ctx.platform.claim_job(job_id)
        except ClaimLost as exc:
            self._claiming.discard(job_id)
            record.state, record.finished_at = JobState.LOST, time.time()
            self.ctx.state.header.counters.lost += 1
            self.ctx.state.put_job(record, f"claim lost (HTTP {exc.status})")
            self._forget_stored(job_id)
            self._release(allocation)
            return Outcome.refused("another validator claimed it first")
        except NetworkError as exc:
            note = f"claim answer lost ({exc}); running it, the platform decides on the result"
        except ClientError as exc:
            self._claiming.discard(job_id)
            self._retry_claim_at[job_id] = time.monotonic() + CLAIM_RETRY_S
            self._forget_stored(job_id)
            self._release(allocation)
            self.ctx.state.put_job(record, f"claim failed: {exc}")
            self.ctx.log("warn", "claim", f"claim failed: {exc}", job_id=job_id)
            return Outcome.refused(f"claim failed: {exc}")
        else:
            if claim.submission_id:
                record.submission_id = clean_line(claim.submission_id, 200)
        self._claiming.discard(job_id)
        self._retry_claim_at.pop(job_id, None)
        record.state, record.claimed_at = JobState.CLAIMED, time.time()
        try:
            self.ctx.store.upsert_job(
                job_id,
                record.challenge_id,
                "claimed",
                submission_id=record.submission_id,
                miner_hotkey=record.miner_hotkey,
            )
        except StoreError as exc:
            self._suspend_claims(str(exc))
        counters = self.ctx.state.header.counters
        counters.claimed_total += 1
        self.ctx.state.put_job(record, note)
        if self.stopping:
            self._release(allocation)
            self._submit(record, _error_result(record, "validator shutting down"))
            return Outcome.refused("claimed while shutting down: error result queued")
        task = asyncio.create_task(self._run(record, allocation))
        self._runs[job_id] = _Run(task, allocation)
        return Outcome.done(f"claimed job {job_id}")

    def _suspend_claims(self, reason: str) -> None:
        if self.claims_allowed:
            self.claims_allowed = False
            self.ctx.log("error", "store", f"claims suspended: {reason}")

    # -- running --------------------------------------------------------------------------

    async def _run(self, job: JobRecord, allocation: Allocation) -> None:
        counters = self.ctx.state.header.counters
        counters.running += 1
        self._count_challenge_job(job.challenge_id, +1)
        results: JobResults | None = None
        try:
            results = await self.executor.execute_job(job, allocation)
        except asyncio.CancelledError:
            reason = self._runs[job.id].cancel_reason if job.id in self._runs else "shutdown"
            results = self._after_cancel(job, reason)
            if reason == "platform":
                return
        except Exception as exc:
            results = self._internal_error(job, exc)
        finally:
            self._runs.pop(job.id, None)
            self._release(allocation)
            counters.running -= 1
            self._count_challenge_job(job.challenge_id, -1)
            if results is not None:
                self._submit(job, results)

    def _internal_error(self, job: JobRecord, exc: Exception) -> JobResults:
        """A bug or an unexpected failure must not leave a claimed job unanswered."""
        error = f"validator error: {clean_line(str(exc) or type(exc).__name__, 300)}"
        self.ctx.log("error", "job", error, job_id=job.id)
        return JobResults(
            score=0.0,
            metrics={},
            logs=[f"[validator] {error}"],
            execution_time_ms=int(job.elapsed() * 1000),
            error=error,
        )

    def _after_cancel(self, job: JobRecord, reason: str) -> JobResults | None:
        if reason == "platform":
            job.state, job.finished_at = JobState.CANCELLED, time.time()
            self.ctx.state.header.counters.cancelled += 1
            self._forget_stored(job.id, state="cancelled")
            self.ctx.state.put_job(job, "cancelled by the platform: VM destroyed, no result")
            return None
        error = "cancelled by operator" if reason == "operator" else "validator shutting down"
        return _error_result(job, error)

    def _submit(self, job: JobRecord, results: JobResults) -> None:
        body = results.to_json_bytes()
        job.score, job.error = results.score, results.error
        job.metrics, job.logs = dict(results.metrics), list(results.logs)
        job.execution_time_ms = results.execution_time_ms
        job.state = JobState.SUBMITTING
        try:
            self.ctx.store.finish_job_with_result(job.id, "submitting", body)
        except StoreError as exc:
            self._suspend_claims(str(exc))
        self.ctx.state.put_job(job, "result queued" if results.error is None else results.error)
        self.outbox.enqueue(job.id, body)

    def on_result_done(self, job_id: str, status: str, detail: str) -> None:
        """Outbox callback: the platform answered for this job's result."""
        job = self.ctx.state.jobs.get(job_id)
        counters = self.ctx.state.header.counters
        if job is None:
            return
        job.finished_at = time.time()
        job.result_status = status
        if status == "sent" and job.error is None:
            job.state = JobState.COMPLETED
            counters.completed += 1
            self.ctx.state.count_completion()
        elif status == "dropped":
            job.state = JobState.CANCELLED
            counters.cancelled += 1
        else:
            job.state = JobState.FAILED
            counters.failed += 1
        note = f"result {status}" + (f": {detail}" if detail and status != "sent" else "")
        self._forget_stored(job_id, state=job.state.value)
        self.ctx.state.put_job(job, note)
        logger.info(
            "%s, score %s in %s ms%s",
            job.state.value,
            "-" if job.score is None else f"{job.score:.6f}",
            job.execution_time_ms,
            f" ({clean_line(job.error, 200)})" if job.error else "",
            extra={"kind": "job", "job_id": job_id, "challenge_id": job.challenge_id},
        )

    # -- cancelling -----------------------------------------------------------------------

    def on_job_cancelled(self, job_id: str) -> None:
        """`job_cancelled` from the platform: drop it, abort it, or unqueue its result."""
        job = self.ctx.state.jobs.get(job_id)
        run = self._runs.get(job_id)
        if run is not None:
            run.cancel_reason = "platform"
            run.task.cancel()
        elif self.outbox.drop(job_id):
            if job is not None:
                job.state, job.finished_at = JobState.CANCELLED, time.time()
                self.ctx.state.header.counters.cancelled += 1
                self.ctx.state.put_job(job, "cancelled by the platform: result not sent")
        elif job is not None and job.state is JobState.PENDING:
            job.state, job.finished_at = JobState.CANCELLED, time.time()
            self.ctx.state.put_job(job, "cancelled by the platform while pending")
        if job is not None:
            self.ctx.log("info", "cancel", "job cancelled by the platform", job_id=job_id)

    async def cancel_by_operator(self, job_id: str) -> Outcome:
        """Abort a running job: VM destroyed, result `cancelled by operator` sent."""
        run = self._runs.get(job_id)
        if run is None:
            job = self.ctx.state.jobs.get(job_id)
            state = job.state.value if job else "unknown"
            return Outcome.refused(f"job is {state}: only claimed or running jobs can be cancelled")
        run.cancel_reason = "operator"
        run.task.cancel()
        with contextlib.suppress(BaseException):
            await run.task
        return Outcome.done(f"cancelled job {job_id}; VM destroyed, result sent")

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Claim nothing more; let claims in flight settle; cancel running jobs (VMs destroyed,
        error results queued)."""
        self.stopping = True
        if self._claim_tasks:
            await asyncio.wait(list(self._claim_tasks), timeout=timeout)
        runs = list(self._runs.values())
        for run in runs:
            run.cancel_reason = run.cancel_reason or "shutdown"
            run.task.cancel()
        if runs:
            await asyncio.wait([r.task for r in runs], timeout=timeout)

    # -- helpers --------------------------------------------------------------------------

    def _release(self, allocation: Allocation) -> None:
        """Give a job's resources back and, with auto-claim, use them for waiting jobs."""
        if self.ctx.quota.release(allocation):
            self.ctx.publish_quota()
            if self.auto_claim and not self.stopping:
                self.claim_what_fits()

    def _forget_stored(self, job_id: str, state: str = "lost") -> None:
        try:
            self.ctx.store.upsert_job(job_id, "", state)
        except StoreError:
            return

    def _count_challenge_job(self, challenge_id: str, delta: int) -> None:
        record = self.ctx.state.challenges.get(challenge_id)
        if record is not None:
            record.jobs_running = max(0, record.jobs_running + delta)
            record.jobs_run += max(0, delta)
            self.ctx.state.put_challenge(record)
        self.ctx.state.header_changed()


def _error_result(job: JobRecord, error: str) -> JobResults:
    """A score-0 result carrying `error`, for a job that could not be evaluated."""
    return JobResults(
        score=0.0,
        metrics={},
        logs=[f"[validator] {error}"],
        execution_time_ms=int(job.elapsed() * 1000),
        error=error,
    )
