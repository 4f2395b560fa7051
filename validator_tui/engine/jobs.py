"""JobManager: sees pending jobs (WebSocket and polling), claims them within capacity, runs
each in its own task through the executor, and hands results to the outbox.

Job states: pending → claimed → provisioning → running → submitting → completed | failed |
cancelled | lost. A job's quota allocation is taken before the claim request and released
exactly once when its VM is gone, on every path.

Claims run only while the platform and the VMM answer and the store is writable. A claim
whose request never left leaves the job pending. A claim whose answer was lost is *unsure*:
the job keeps its allocation (state claimed) until a poll asked after the claim says whether
it is ours (gone from `/jobs/pending`: run it) or not (still listed: claim it again). A job the
platform lists as pending is claimable whatever our history says, unless we are running it.

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

from validator_tui.clients.errors import AnswerLost, ClaimLost, ClientError, DecodeError, NotSent
from validator_tui.engine.challenges import ChallengeManager
from validator_tui.engine.context import EngineContext
from validator_tui.engine.executor import DstackExecutor, JobFailed
from validator_tui.engine.hosts import Host
from validator_tui.engine.outbox import ResultOutbox
from validator_tui.engine.quota import Allocation, CapacityError
from validator_tui.engine.records import (
    CancelReason,
    JobRecord,
    JobState,
    Outcome,
    Resources,
    ResultStatus,
    VmKind,
    VmRecord,
)
from validator_tui.engine.store import StoredJob, StoredState, StoreError
from validator_tui.models.platform import ClaimResponse, Job, JobResults
from validator_tui.sanitize import clean_line

CLAIM_RETRY_S = 5.0
VM_LOST = "VM lost: the VMM no longer has it"
CANCELLED_BY_OPERATOR = "cancelled by operator"
RESTARTED = "validator restarted"
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


@dataclass(slots=True)
class _Unsure:
    """A claim whose answer was lost, waiting for a poll to say whether the job is ours."""

    record: JobRecord
    allocation: Allocation | None
    since: float
    recovered: bool = False


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
        self._unsure: dict[str, _Unsure] = {}
        self._maybe_ours: dict[str, None] = {}
        self._cancel_requested: dict[str, CancelReason] = {}
        #: Jobs the operator cancelled whose result is not answered yet: they end `cancelled`.
        self._operator_cancelled: set[str] = set()
        self.stopping = False
        self._retry_claim_at: dict[str, float] = {}
        self._pending: dict[str, None] = {}
        #: Bumped whenever a job joins `_pending`.
        self._pending_joined = 0
        #: What the last `claim_what_fits` pass saw when it could claim nothing (see there).
        self._idle_pass: tuple[object, ...] | None = None
        self._poll_lock = asyncio.Lock()

    # -- capacity ---------------------------------------------------------------------------

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

    def on_health_change(self) -> None:
        """The platform's or the VMM's health changed: pause or resume claims."""
        self.publish_claim_state()
        self.claim_what_fits()

    def _capacity_reason(self) -> str:
        """Why no job VM fits on any host now ("" when one does), in human units."""
        return self.ctx.hosts.job_capacity_reason(self.job_resources())

    def _waiting_reason(self, record: JobRecord, blocker: str, capacity: str) -> str:
        """Why the pending `record` is not being claimed now ("" if nothing holds it)."""
        if not self.auto_claim:
            return "auto-claim off"
        if blocker:
            return blocker
        waits = self.challenges.claims_wait(record.challenge_id)
        if waits:
            return waits
        if capacity:
            return capacity
        if self._retry_claim_at.get(record.id, 0.0) > time.monotonic():
            return "claim failed: retrying shortly"
        return ""

    def _show_waiting(self, record: JobRecord, reason: str) -> None:
        if record.waiting_reason != reason:
            record.waiting_reason = reason
            self.ctx.state.put_job(record)

    # -- discovery --------------------------------------------------------------------------

    async def fetch_pending_jobs(self) -> list[Job]:
        """Poll the platform's pending jobs, show them, settle unsure claims, and claim what
        fits (auto-claim)."""
        async with self._poll_lock:
            asked_at, asked_wall = time.monotonic(), time.time()
            jobs = await self.ctx.platform.get_pending_jobs()
            self.ctx.state.header.last_poll_at = time.time()
            self.ctx.state.header_changed()
            listed = {job.id for job in jobs}
            self._settle_unsure(listed, asked_at)
            for job in jobs:
                self._see(job.id, job.challenge_id, job.submission_id, job.miner_hotkey, asked_wall)
            for job_id, record in list(self.ctx.state.jobs.items()):
                gone = job_id not in listed and job_id not in self._claiming
                if record.state is not JobState.PENDING or not gone:
                    continue
                self._retry_claim_at.pop(job_id, None)
                if record.claim_unsure:
                    # Our own lost claim may be what took it: it may be ours to run.
                    self._maybe_ours[job_id] = None
                else:
                    self.ctx.state.drop_job(job_id)
            self.claim_what_fits()
            return jobs

    def _see(
        self,
        job_id: str,
        challenge_id: str,
        submission_id: str,
        miner: str,
        listed_at: float | None = None,
    ) -> JobRecord:
        """Show a job the platform offers. A finished record of it (failed, lost, …) finished
        before `listed_at` gives way to a new pending one: the platform offers it again."""
        record = self.ctx.state.jobs.get(job_id)
        note = "seen pending"
        if record is not None and listed_at is not None and self._offered_again(record, listed_at):
            note = f"listed as pending again (was {record.state.value}): claimable"
            self.ctx.state.drop_job(job_id)
            record = None
        if record is None:
            record = JobRecord(
                id=job_id,
                challenge_id=sys.intern(challenge_id),
                submission_id=clean_line(submission_id, 200),
                miner_hotkey=sys.intern(clean_line(miner, 100)),
            )
            self.ctx.state.put_job(record, note)
            self._pending[job_id] = None
            self._pending_joined += 1
        elif record.state is JobState.PENDING and (submission_id and not record.submission_id):
            record.submission_id = clean_line(submission_id, 200)
            record.miner_hotkey = sys.intern(clean_line(miner, 100))
            self.ctx.state.put_job(record)
        return record

    def _offered_again(self, record: JobRecord, listed_at: float) -> bool:
        job_id = record.id
        return (
            record.state.finished
            and record.finished_at is not None
            and record.finished_at < listed_at
            and job_id not in self._runs
            and job_id not in self._claiming
            and job_id not in self._unsure
        )

    def on_new_job(self, job_id: str, challenge_id: str) -> None:
        """A `new_job` notification: show it and, with auto-claim, claim it right away (its
        quota is taken before this returns; the claim request goes out on its own task)."""
        record = self._see(job_id, challenge_id, "", "")
        if record.state is not JobState.PENDING or job_id in self._claiming:
            return
        blocker = self.claim_blocker()
        # Whether a job VM fits is the placement's to say: the reason is worded only if not.
        if not self._waiting_reason(record, blocker, "") and self._spawn_claim(job_id):
            return
        self._show_waiting(record, self._waiting_reason(record, blocker, self._capacity_reason()))

    def claim_what_fits(self) -> None:
        """With auto-claim, start claims for pending jobs, oldest first, while capacity allows
        (jobs that may already be ours come first); every pending job left says why it waits."""
        if self._maybe_ours:
            self._run_maybe_ours()
        blocker = self.claim_blocker()
        capacity = self._capacity_reason()
        # Every job completion asks for a pass; with 10,000 jobs waiting for capacity a pass
        # costs ~6 ms. When what decides every job's reason is as in the last pass that could
        # claim nothing, this one would change nothing: skip it.
        seen = (
            self.auto_claim,
            blocker,
            capacity,
            self._pending_joined,
            len(self._claiming),
            self.challenges.active_ids(),
        )
        if seen == self._idle_pass:
            return
        claimed = False
        for job_id in list(self._pending):
            record = self.ctx.state.jobs.get(job_id)
            if record is None or record.state is not JobState.PENDING:
                del self._pending[job_id]
                continue
            if job_id in self._claiming:
                continue
            reason = self._waiting_reason(record, blocker, capacity)
            if not reason and self._spawn_claim(job_id):
                capacity = self._capacity_reason()
                claimed = True
                continue
            self._show_waiting(record, reason)
        # Only reasons that depend on nothing else than `seen` (not a claim retry's timer).
        settled = not claimed and (capacity or blocker or not self.auto_claim)
        self._idle_pass = seen if settled else None

    def _spawn_claim(self, job_id: str) -> bool:
        """Take the job's quota and send its claim on a task of its own; False if refused."""
        started = self._begin_claim(job_id)
        if isinstance(started, Outcome):
            return False
        task = self.ctx.tasks.spawn(
            self._claim_request(*started), name=f"claim-{job_id}", quiet=True
        )
        self._claim_tasks.add(task)
        task.add_done_callback(self._claim_tasks.discard)
        return True

    # -- claiming -------------------------------------------------------------------------

    async def claim_job(self, job_id: str) -> Outcome:
        """Claim one pending job and start running it; refused with a reason otherwise."""
        started = self._begin_claim(job_id)
        if isinstance(started, Outcome):
            return started
        return await self._claim_request(*started)

    def _begin_claim(self, job_id: str) -> tuple[JobRecord, Allocation] | Outcome:
        """Check that `job_id` may be claimed now, take its quota and commit the intent to
        claim it; the refusal (with its reason) otherwise."""
        record = self.ctx.state.jobs.get(job_id)
        if record is None:
            return Outcome.refused(f"unknown job {job_id}")
        if job_id in self._unsure:
            return Outcome.refused("its claim's answer was lost: the next poll settles it")
        if record.state is not JobState.PENDING or job_id in self._claiming:
            return Outcome.refused(f"job is {record.state.value}, not pending")
        blocker = self.claim_blocker()
        if blocker:
            return Outcome.refused(blocker)
        waits = self.challenges.claims_wait(record.challenge_id)
        if waits:
            return Outcome.refused(f"the job's challenge: {waits}")
        try:
            allocation = self.ctx.hosts.place_job(self.job_resources(), owner=f"job {job_id}")
        except CapacityError as exc:
            return Outcome.refused(f"no capacity: {exc}")
        self._claiming.add(job_id)
        try:
            forgot_answer = self.ctx.store.begin_claim(job_id, record.challenge_id)
        except StoreError as exc:
            self._claiming.discard(job_id)
            self.ctx.hosts.release(allocation)
            self._suspend_claims(str(exc))
            return Outcome.refused(str(exc))
        if forgot_answer:
            self.outbox.count_dead_letters()
        record.waiting_reason = ""
        return record, allocation

    async def _claim_request(self, record: JobRecord, allocation: Allocation) -> Outcome:
        job_id = record.id
        try:
            claim = await self._send_claim(job_id)
        except ClaimLost as exc:
            if record.claim_unsure and exc.status != 410 and exc.status != 404:
                # Our own earlier claim, whose answer was lost, may be what holds the job.
                note = f"claim conflict (HTTP {exc.status}) after a lost claim answer: may be ours"
                return self._claimed(record, allocation, note, unsure=True)
            self._claiming.discard(job_id)
            self._cancel_requested.pop(job_id, None)
            record.state, record.finished_at = JobState.LOST, time.time()
            self.ctx.state.header.counters.lost += 1
            self.ctx.state.put_job(record, f"claim lost (HTTP {exc.status})")
            self._forget_stored(job_id)
            self._release(allocation)
            return Outcome.refused("another validator claimed it first")
        except NotSent as exc:
            self._claiming.discard(job_id)
            self._cancel_requested.pop(job_id, None)
            self._forget_stored(job_id, StoredState.PENDING)
            self.ctx.state.put_job(record, f"claim not sent, still pending: {exc}")
            self._release(allocation)
            return Outcome.refused(f"claim not sent (the job stays pending): {exc}")
        except AnswerLost as exc:
            self._claiming.discard(job_id)
            self._unsure[job_id] = _Unsure(record, allocation, time.monotonic())
            record.claim_unsure = True
            record.state = JobState.CLAIMED
            self.ctx.state.put_job(record, f"claim answer lost: {exc}")
            self.ctx.log(
                "warn",
                "claim",
                "claim answer lost: the next poll tells whether the job is ours",
                job_id=job_id,
            )
            cancel = self._cancel_requested.pop(job_id, None)
            if cancel is CancelReason.PLATFORM:
                self._cancel_unsure(job_id)
            elif cancel is CancelReason.OPERATOR:
                self._cancel_unsure_by_operator(job_id)
            return Outcome.done("claim sent, answer lost: the next poll settles it")
        except DecodeError as exc:
            return self._claimed(record, allocation, f"claimed (answer unreadable: {exc})")
        except ClientError as exc:
            self._claiming.discard(job_id)
            self._cancel_requested.pop(job_id, None)
            self._retry_claim_at[job_id] = time.monotonic() + CLAIM_RETRY_S
            self._forget_stored(job_id, StoredState.PENDING)
            self._release(allocation)
            self.ctx.state.put_job(record, f"claim failed: {exc}")
            self.ctx.log("warn", "claim", f"claim failed: {exc}", job_id=job_id)
            return Outcome.refused(f"claim failed: {exc}")
        if claim.submission_id:
            record.submission_id = clean_line(claim.submission_id, 200)
        return self._claimed(record, allocation, "claimed")

    async def _send_claim(self, job_id: str) -> ClaimResponse:
        """The claim request. The quota it took is shown once it is answered (or failed):
        nothing but the claim's own intent stands before the request."""
        try:
            return await self.ctx.platform.claim_job(job_id)
        finally:
            self.ctx.publish_quota()

    def _claimed(
        self, record: JobRecord, allocation: Allocation, note: str, *, unsure: bool = False
    ) -> Outcome:
        """The job is ours (or, `unsure`, may be): record it and run it, unless a cancel or
        the shutdown came first (then no VM is created)."""
        job_id = record.id
        self._claiming.discard(job_id)
        self._retry_claim_at.pop(job_id, None)
        record.state, record.claimed_at = JobState.CLAIMED, time.time()
        record.claim_unsure = unsure
        record.host = sys.intern(allocation.host)
        try:
            self.ctx.store.upsert_job(
                job_id,
                record.challenge_id,
                StoredState.CLAIMED,
                submission_id=record.submission_id,
                miner_hotkey=record.miner_hotkey,
            )
        except StoreError as exc:
            self._suspend_claims(str(exc))
        self.ctx.state.header.counters.claimed_total += 1
        self.ctx.state.put_job(record, note)
        cancel = self._cancel_requested.pop(job_id, None)
        if cancel is CancelReason.PLATFORM:
            self._release(allocation)
            self._mark_cancelled(record, "cancelled by the platform during the claim: no VM")
            return Outcome.refused("cancelled by the platform during the claim")
        if cancel is CancelReason.OPERATOR or self.stopping:
            self._release(allocation)
            reason = CancelReason.OPERATOR if cancel else CancelReason.SHUTDOWN
            error = self._end_early(record, reason)
            return Outcome.refused(f"claimed, then {error}: error result queued, no VM")
        task = self.ctx.tasks.spawn(self._run(record, allocation), name=f"job-{job_id}")
        self._runs[job_id] = _Run(task, allocation)
        return Outcome.done(f"claimed job {job_id}")

    def _settle_unsure(self, listed: set[str], asked_at: float) -> None:
        """Settle lost claim answers with a listing asked after them: still pending → not
        ours, claimable again; gone → ours (or someone else's): run it."""
        for job_id, unsure in list(self._unsure.items()):
            if unsure.since >= asked_at:
                continue
            del self._unsure[job_id]
            record = unsure.record
            if job_id in listed:
                record.state, record.claimed_at = JobState.PENDING, None
                self._forget_stored(job_id, StoredState.PENDING)
                self._pending[job_id] = None
                self._pending_joined += 1
                self.ctx.state.put_job(record, "still pending at the platform: not ours, claimable")
                if unsure.allocation is not None:
                    self._release(unsure.allocation)
                continue
            note = "no longer pending at the platform: running it (the platform decides)"
            if unsure.recovered or unsure.allocation is None:
                self._submit(record, _error_result(record, RESTARTED))
                continue
            self._claimed(record, unsure.allocation, note, unsure=True)

    def _run_maybe_ours(self) -> None:
        """Run the jobs that left the pending list after a lost claim answer of ours (they may
        be ours), as capacity allows; the platform decides on their results."""
        for job_id in list(self._maybe_ours):
            record = self.ctx.state.jobs.get(job_id)
            if record is None or record.state is not JobState.PENDING or self.stopping:
                del self._maybe_ours[job_id]
                continue
            if self.challenges.claims_wait(record.challenge_id):
                continue
            try:
                allocation = self.ctx.hosts.place_job(self.job_resources(), owner=f"job {job_id}")
            except CapacityError:
                return
            del self._maybe_ours[job_id]
            self.ctx.publish_quota()
            note = "left the pending list after a lost claim answer: may be ours, running it"
            self._claimed(record, allocation, note, unsure=True)

    def _cancel_unsure(self, job_id: str) -> None:
        unsure = self._unsure.pop(job_id)
        if unsure.allocation is not None:
            self._release(unsure.allocation)
        self._mark_cancelled(unsure.record, "cancelled by the platform before it was settled")

    def _cancel_unsure_by_operator(self, job_id: str) -> None:
        unsure = self._unsure.pop(job_id)
        if unsure.allocation is not None:
            self._release(unsure.allocation)
        self._end_early(unsure.record, CancelReason.OPERATOR)

    def recover_unsure(self, stored: StoredJob) -> None:
        """A claim a previous run sent without hearing the answer: the first poll settles it
        (still pending → claimable; gone → the error result "validator restarted")."""
        record = JobRecord(
            id=stored.id,
            challenge_id=stored.challenge_id,
            submission_id=stored.submission_id,
            miner_hotkey=stored.miner_hotkey,
            state=JobState.CLAIMED,
            claim_unsure=True,
        )
        self.ctx.state.put_job(record, "claim interrupted by a restart: asking the platform")
        self._unsure[stored.id] = _Unsure(record, None, time.monotonic(), recovered=True)

    def _suspend_claims(self, reason: str) -> None:
        if self.claims_allowed:
            self.claims_allowed = False
            self.ctx.log("error", "store", f"claims suspended: {reason}")
            self.publish_claim_state()

    # -- running --------------------------------------------------------------------------

    async def _run(self, job: JobRecord, allocation: Allocation) -> None:
        counters = self.ctx.state.header.counters
        counters.running += 1
        self._count_challenge_job(job.challenge_id, +1)
        results: JobResults | None = None
        reason: CancelReason | None = None
        try:
            results = await self.executor.execute_job(job, allocation, _Progress(self, job))
        except asyncio.CancelledError:
            run = self._runs.get(job.id)
            reason = (run.cancel_reason if run else None) or CancelReason.SHUTDOWN
            if reason is CancelReason.PLATFORM:
                self._mark_cancelled(job, "cancelled by the platform: VM destroyed, no result")
        except Exception as exc:
            results = self._internal_error(job, exc)
        finally:
            self._runs.pop(job.id, None)
            self._release(allocation)
            counters.running -= 1
            self._count_challenge_job(job.challenge_id, -1)
            if results is not None:
                self._submit(job, results)
            elif reason is not None and reason is not CancelReason.PLATFORM:
                self._end_early(job, reason)

    def _internal_error(self, job: JobRecord, exc: Exception) -> JobResults:
        """A bug or an unexpected failure must not leave a claimed job unanswered."""
        error = f"validator error: {clean_line(str(exc) or type(exc).__name__, 300)}"
        self.ctx.log("error", "job", error, job_id=job.id)
        return _error_result(job, error)

    def _end_early(self, job: JobRecord, reason: CancelReason) -> str:
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
        self._submit(job, _error_result(job, error))
        return error

    def _mark_cancelled(self, job: JobRecord, note: str) -> None:
        job.state, job.finished_at = JobState.CANCELLED, time.time()
        self.ctx.state.header.counters.cancelled += 1
        self._forget_stored(job.id, StoredState.CANCELLED)
        self.ctx.state.put_job(job, note)

    def _submit(self, job: JobRecord, results: JobResults) -> None:
        """Record the result on the job and queue it: serialised once, stored, then sent."""
        body = results.to_json_bytes()
        job.score, job.error = results.score, results.error
        job.metrics, job.logs = dict(results.metrics), list(results.logs)
        job.execution_time_ms = results.execution_time_ms
        job.state = JobState.SUBMITTING
        try:
            self.ctx.store.finish_job_with_result(job.id, StoredState.SUBMITTING, body)
        except StoreError as exc:
            self._suspend_claims(str(exc))
        self.ctx.state.put_job(job, "result queued" if results.error is None else results.error)
        self.outbox.enqueue(job.id, body, claim_unsure=job.claim_unsure)

    def on_result_done(self, job_id: str, status: ResultStatus, detail: str) -> None:
        """Outbox callback: the platform answered for this job's result."""
        by_operator = job_id in self._operator_cancelled
        self._operator_cancelled.discard(job_id)
        job = self.ctx.state.jobs.get(job_id)
        counters = self.ctx.state.header.counters
        if job is None:
            return
        job.finished_at = time.time()
        job.result_status = status
        sent = status is ResultStatus.SENT
        if sent and job.error is None:
            job.state = JobState.COMPLETED
            counters.completed += 1
            self.ctx.state.count_completion()
        elif status is ResultStatus.DROPPED or (sent and by_operator):
            job.state = JobState.CANCELLED
            counters.cancelled += 1
        elif status is ResultStatus.NOT_OURS:
            job.state = JobState.LOST
            counters.lost += 1
        else:
            job.state = JobState.FAILED
            counters.failed += 1
        note = f"result {status}" + (f": {detail}" if detail and not sent else "")
        self._forget_stored(job_id, StoredState(job.state.value))
        self.ctx.state.put_job(job, note)
        logger.info(
            "%s, score %s in %s ms%s",
            job.state.value,
            "-" if job.score is None else f"{job.score:.6f}",
            job.execution_time_ms,
            f" ({clean_line(job.error, 200)})" if job.error else "",
            extra={"kind": "job", "job_id": job_id, "challenge_id": job.challenge_id},
        )

    def on_host_down(self, host: Host) -> int:
        """`host` is down: every job of ours there that is not evaluating yet ends with an error
        naming the host (an evaluation under way goes on while its evaluator answers).
        Returns how many were ended."""
        ended = 0
        for job_id, run in list(self._runs.items()):
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
        run = self._runs.get(job_id)
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
        run = self._runs.get(job_id)
        if run is not None:
            run.cancel_reason = CancelReason.PLATFORM
            run.task.cancel()
        elif job_id in self._claiming:
            self._cancel_requested[job_id] = CancelReason.PLATFORM
        elif job_id in self._unsure:
            self._cancel_unsure(job_id)
        elif self.outbox.drop(job_id):
            self._operator_cancelled.discard(job_id)
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
        """Abort a claimed or running job: VM destroyed, result `cancelled by operator` sent."""
        run = self._runs.get(job_id)
        if run is None:
            if job_id in self._claiming:
                self._cancel_requested[job_id] = CancelReason.OPERATOR
                return Outcome.done(f"cancel noted: job {job_id} ends when its claim answers")
            if job_id in self._unsure:
                self._cancel_unsure_by_operator(job_id)
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
        if self._claim_tasks:
            await asyncio.wait(list(self._claim_tasks), timeout=_left(until))
        for job_id in list(self._unsure):
            unsure = self._unsure.pop(job_id)
            if unsure.allocation is not None:
                self._release(unsure.allocation)
        runs = list(self._runs.values())
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

    def _release(self, allocation: Allocation) -> None:
        """Give a job's resources back: to waiting challenge CVMs first, then (auto-claim)
        to waiting jobs."""
        if self.ctx.hosts.release(allocation):
            self.ctx.publish_quota()
            if not self.stopping:
                self.challenges.capacity_freed()
                if self.auto_claim:
                    self.claim_what_fits()

    def _forget_stored(self, job_id: str, state: StoredState = StoredState.LOST) -> None:
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


def _left(until: float) -> float:
    return max(0.0, until - time.monotonic())


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
        job, ctx = self.job, self.jobs.ctx
        try:
            ctx.store.upsert_job(
                job.id, job.challenge_id, StoredState.PROVISIONING, vm_name=vm_name
            )
        except StoreError as exc:
            raise JobFailed(f"not creating a VM: {exc}") from None
        job.state = JobState.PROVISIONING
        ctx.state.put_job(job, "creating VM")

    def vm_created(self, vm_id: str, host_port: int | None) -> None:
        job, ctx = self.job, self.jobs.ctx
        with contextlib.suppress(StoreError):  # the committed name finds the VM after a crash
            ctx.store.upsert_job(job.id, job.challenge_id, StoredState.PROVISIONING, vm_id=vm_id)
        job.vm_id, job.host_port = vm_id, host_port
        name = ctx.naming.job_vm(job.id)
        ctx.state.put_vm(
            VmRecord(vm_id, name, VmKind.JOB, job.id, host_port=host_port, host=job.host)
        )
        ctx.state.put_job(job, f"VM {vm_id} created")

    def evaluating(self) -> None:
        self.job.state = JobState.RUNNING
        self.jobs.ctx.state.put_job(self.job, "evaluating")

    def vm_log(self, lines: tuple[str, ...]) -> None:
        self.job.vm_log = lines
        self.jobs.ctx.state.put_job(self.job)
