"""ClaimManager: the claim path of the JobManager. It sees pending jobs (WebSocket and
polling), queues them in claim order, claims them within capacity and settles each claim's
outcome (won, lost, not sent, unsure); a won claim's job is handed to the JobManager to run.

Claims run only while the platform and the VMM answer and the store is writable. A claim
whose request never left leaves the job pending. A claim whose answer was lost is *unsure*:
the job keeps its allocation (state claimed, its row `claiming`) until a poll asked after the
claim says whether it is ours (gone from `/jobs/pending`: run it) or not (still listed: claim
it again). A job the platform lists as pending is claimable whatever our history says, unless
we are running it; one whose claim answered 404/409/410 waits for a backoff first
(`lost_claim_backoff_s`, doubled at each further loss). A 5xx with an empty body (a lost race
as the v1 server answers it) says nothing about the job: no backoff.

Claim order: announced jobs (`new_job`), then jobs first seen in a listing, then re-tries of
lost claims; the order they joined within each. A pass costs what changed (claims started,
reasons that changed), not the length of the pending list.

Where a claim stands is kept in one structure per step, each documented where it is kept
(`ClaimManager.__init__`): claim requests under way (`_claiming`), claims whose answer was
lost (`_unsure`), jobs a lost answer may have made ours (`_maybe_ours`), and the waiting
pending jobs (`_queues`, `_held`, `_lost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import sys
import time
from typing import TYPE_CHECKING

from validator_tui.clients.errors import AnswerLost, ClaimLost, ClientError, DecodeError, NotSent
from validator_tui.engine.claim_order import (
    ANNOUNCED,
    CLAIM_RETRY_S,
    LISTED,
    LOST_BACKOFF_MAX_FACTOR,
    RETRIES_PACED,
    RETRIES_PER_S,
    RETRY,
    ClaimCancel,
    Lost,
    Pace,
    Queue,
    Unsure,
)
from validator_tui.engine.context import EngineContext
from validator_tui.engine.quota import Allocation, CapacityError
from validator_tui.engine.store import StoredJob, StoreError, stored_state
from validator_tui.models.platform import ClaimResponse, Job, Listing
from validator_tui.sanitize import clean_line
from validator_tui.shared.records import CancelReason, JobRecord, JobState, Outcome

if TYPE_CHECKING:
    from validator_tui.engine.jobs import JobManager

RESTARTED = "validator restarted"


class ClaimManager:
    """Claims pending jobs for its JobManager, which runs them and is told of each outcome."""

    def __init__(self, ctx: EngineContext, jobs: JobManager) -> None:
        self.ctx = ctx
        self.jobs = jobs
        #: Jobs whose claim request is out (their row `claiming`), not answered yet.
        self._claiming: set[str] = set()
        self._claim_tasks: set[asyncio.Task[Outcome]] = set()
        #: Claims whose answer was lost (the job claimed, unsure), until a poll settles them.
        self._unsure: dict[str, Unsure] = {}
        #: Pending jobs gone from the listing after a lost claim answer: they may be ours.
        self._maybe_ours: dict[str, None] = {}
        #: Cancels of jobs whose claim request is out, acted on when it is answered.
        self._cancel_requested: dict[str, CancelReason] = {}
        #: Pending jobs waiting only for what holds their whole challenge, per challenge.
        self._queues: dict[str, Queue] = {}
        #: Pending jobs held back by a timer of their own: job id → (due, reason).
        self._held: dict[str, tuple[float, str]] = {}
        self._held_heap: list[tuple[float, str]] = []
        #: The reason holding every job (auto-claim off, a pause) last shown on held jobs.
        self._held_shown = ""
        #: Jobs whose claim answered 404/409/410, with their backoff.
        self._lost: dict[str, Lost] = {}
        self._retry_pace = Pace(RETRIES_PER_S)
        #: The wake-up that resumes paced re-tries (None when none is due).
        self._pace_wake: asyncio.TimerHandle | None = None
        self._arrivals = itertools.count()
        self._poll_lock = asyncio.Lock()

    # -- cancels and shutdown -----------------------------------------------------------------

    def cancel(self, job_id: str, reason: CancelReason) -> ClaimCancel | None:
        """A cancel (by the platform or the operator) of `job_id` while its claim is under
        way; None when no claim of it is."""
        if job_id in self._claiming:
            self._cancel_requested[job_id] = reason
            return ClaimCancel.NOTED
        if job_id in self._unsure:
            self._end_unsure(job_id, reason)
            return ClaimCancel.ENDED
        return None

    async def stop(self, timeout: float) -> None:
        """Claim nothing more: let claim requests under way settle (within `timeout`
        seconds) and give back the allocations of unsure claims."""
        if self._pace_wake is not None:
            self._pace_wake.cancel()
            self._pace_wake = None
        if self._claim_tasks:
            await asyncio.wait(list(self._claim_tasks), timeout=timeout)
        for job_id in list(self._unsure):
            unsure = self._unsure.pop(job_id)
            if unsure.allocation is not None:
                self.jobs.release(unsure.allocation)

    # -- waiting ------------------------------------------------------------------------------

    def _capacity_reason(self) -> str:
        """Why no job VM fits on any host now ("" when one does), in human units."""
        return self.ctx.hosts.job_capacity_reason(self.jobs.job_resources())

    def _challenge_hold(self, challenge_id: str) -> str:
        """Why no job of `challenge_id` may be claimed now ("" when its jobs may be): the one
        place that says whether a challenge takes claims."""
        return self.jobs.challenges.claims_wait(challenge_id)

    def _queued_reason(self, challenge_id: str, blocker: str, capacity: str) -> str:
        """Why a queued job of `challenge_id` is not being claimed now ("" if nothing holds it)."""
        if not self.jobs.auto_claim:
            return "auto-claim off"
        return blocker or self._challenge_hold(challenge_id) or capacity

    def _show_waiting(self, record: JobRecord, reason: str) -> None:
        if record.waiting_reason != reason:
            record.waiting_reason = reason
            self.ctx.state.put_job(record)

    # -- discovery ----------------------------------------------------------------------------

    async def fetch_pending_jobs(self) -> Listing[Job]:
        """Poll the platform's pending jobs, show them, settle unsure claims, and claim what
        fits (auto-claim). An entry skipped as unreadable still counts as listed."""
        async with self._poll_lock:
            asked_at, asked_wall = time.monotonic(), time.time()
            jobs = await self.ctx.platform.get_pending_jobs()
            self.ctx.state.header.last_poll_at = time.time()
            self.ctx.state.header_changed()
            listed = {job.id for job in jobs} | jobs.skipped_ids
            self._settle_unsure(listed, asked_at)
            for job in jobs:
                self._see(job.id, job.challenge_id, job.submission_id, job.miner_hotkey, asked_wall)
            for job_id in [job_id for job_id in self._lost if job_id not in listed]:
                del self._lost[job_id]
            for job_id, record in list(self.ctx.state.jobs.items()):
                gone = job_id not in listed and job_id not in self._claiming
                if record.state is not JobState.PENDING or not gone:
                    continue
                self._unqueue(record)
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
        """Show a job the platform offers (announced, or listed at `listed_at`) and queue it
        for a claim. A finished record of it (failed, lost, …) finished before `listed_at`
        gives way to a new pending one: the platform offers it again."""
        record = self.ctx.state.jobs.get(job_id)
        note = "seen pending"
        if record is not None and listed_at is not None and self._offered_again(record, listed_at):
            was = record.state.value
            note = f"listed as pending again (was {was}): " + (
                "claimable after its backoff" if job_id in self._lost else "claimable"
            )
            self.ctx.state.drop_job(job_id)
            record = None
        if record is None:
            record = JobRecord(
                id=job_id,
                challenge_id=sys.intern(challenge_id),
                submission_id=clean_line(submission_id, 200),
                miner_hotkey=sys.intern(clean_line(miner, 100)),
            )
            self._queue_job(record, ANNOUNCED if listed_at is None else LISTED)
            self.ctx.state.put_job(record, note)
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
            and job_id not in self.jobs.runs
            and job_id not in self._claiming
            and job_id not in self._unsure
        )

    def on_new_job(self, job_id: str, challenge_id: str) -> None:
        """A `new_job` notification: show it and, with auto-claim, claim it right away (its
        quota is taken before this returns; the claim request goes out on its own task)."""
        record = self._see(job_id, challenge_id, "", "")
        if record.state is not JobState.PENDING or job_id in self._claiming:
            return
        queue = self._queues.get(record.challenge_id)
        queued = queue is not None and job_id in queue.members
        if queue is not None and queued and queue.members[job_id][0] != ANNOUNCED:
            queue.add(job_id, ANNOUNCED, next(self._arrivals))  # a listing saw it first
        if (
            queued
            and self.jobs.auto_claim
            and not self.jobs.claim_blocker()
            and self._spawn_claim(job_id)
        ):
            return
        self.claim_what_fits()

    def claim_what_fits(self) -> None:
        """With auto-claim, start claims for pending jobs in claim order (jobs that may already
        be ours first) while capacity allows; every pending job left says why it waits. Costs
        the claims started and the reasons that changed, not the length of the pending list."""
        if self._maybe_ours:
            self._run_maybe_ours()
        self._release_due()
        blocker = self.jobs.claim_blocker()
        if self.jobs.auto_claim and not blocker:
            while (job_id := self._next_claimable()) is not None and self._spawn_claim(job_id):
                pass
        self._show_reasons(blocker)

    def _next_claimable(self) -> str | None:
        """The queued job to claim next: the first in claim order among challenges that take
        claims (jobs no longer pending leave their queue on the way)."""
        best: tuple[tuple[int, int], str] | None = None
        for challenge_id, queue in self._queues.items():
            if self._challenge_hold(challenge_id):
                continue
            while (job_id := queue.head()) is not None and not self._waits(job_id):
                queue.discard(job_id)
            if job_id is not None and (best is None or queue.members[job_id] < best[0]):
                best = (queue.members[job_id], job_id)
        if best is None:
            return None
        if best[0][0] == RETRY:
            if not self._retry_pace.ready():
                self._wake_for_pace()
                return None
            self._retry_pace.spend()
        return best[1]

    def _wake_for_pace(self) -> None:
        """Run a pass when the next paced re-try is allowed (one wake-up at a time)."""
        if self._pace_wake is None:
            self._pace_wake = asyncio.get_running_loop().call_later(
                1.0 / RETRIES_PER_S, self._paced_pass
            )

    def _paced_pass(self) -> None:
        self._pace_wake = None
        self.claim_what_fits()

    def _waits(self, job_id: str) -> bool:
        """Whether `job_id` is pending with no claim of ours under way."""
        record = self.ctx.state.jobs.get(job_id)
        if record is None or record.state is not JobState.PENDING:
            return False
        return job_id not in self._claiming and job_id not in self._unsure

    def _show_reasons(self, blocker: str) -> None:
        """Show every waiting job why it waits, touching only the groups whose reason changed:
        a challenge's queue, or the jobs held back by a timer of their own."""
        capacity = self._capacity_reason()
        for challenge_id, queue in list(self._queues.items()):
            if not queue.members:
                del self._queues[challenge_id]
                continue
            reason = self._queued_reason(challenge_id, blocker, capacity)
            head = queue.head()
            if not reason and head is not None and queue.members[head][0] == RETRY:
                reason = RETRIES_PACED
            if reason == queue.shown:
                continue
            queue.shown = reason
            for job_id in list(queue.members):
                record = self.ctx.state.jobs.get(job_id)
                if record is None or record.state is not JobState.PENDING:
                    queue.discard(job_id)
                elif job_id not in self._claiming:
                    self._show_waiting(record, reason)
        overall = "auto-claim off" if not self.jobs.auto_claim else blocker
        if overall != self._held_shown:
            self._held_shown = overall
            for job_id, (_, own) in self._held.items():
                record = self.ctx.state.jobs.get(job_id)
                if record is not None and record.state is JobState.PENDING:
                    self._show_waiting(record, overall or own)

    def _queue_job(self, record: JobRecord, tier: int) -> None:
        """Queue the pending `record` for a claim in `tier` (a job that lost a claim goes in
        RETRY, behind its backoff first). Sets the reason it shows; the caller puts it."""
        lost = self._lost.get(record.id)
        if lost is not None:
            if lost.due > time.monotonic():
                when = time.strftime("%H:%M:%S", time.localtime(lost.due_wall))
                times = "" if lost.losses == 1 else f" {lost.losses} times"
                reason = f"lost its claim (HTTP {lost.status}){times}: claimed again at {when}"
                self._hold(record, lost.due, reason)
                return
            tier = RETRY
        queue = self._queues.setdefault(record.challenge_id, Queue())
        queue.add(record.id, tier, next(self._arrivals))
        record.waiting_reason = queue.shown

    def _hold(self, record: JobRecord, due: float, reason: str) -> None:
        """Keep the pending `record` from claims until `due` (time.monotonic), saying `reason`
        (unless what holds every job says more). Sets its reason; the caller puts it."""
        self._held[record.id] = (due, reason)
        heapq.heappush(self._held_heap, (due, record.id))
        record.waiting_reason = self._held_shown or reason

    def _release_due(self) -> None:
        """Queue the held jobs whose timer has run out."""
        now, heap = time.monotonic(), self._held_heap
        while heap and heap[0][0] <= now:
            due, job_id = heapq.heappop(heap)
            held = self._held.get(job_id)
            if held is None or held[0] != due:
                continue
            del self._held[job_id]
            record = self.ctx.state.jobs.get(job_id)
            if record is not None and record.state is JobState.PENDING:
                self._queue_job(record, LISTED)
                self.ctx.state.put_job(record)

    def _unqueue(self, record: JobRecord) -> None:
        """`record` waits no more (claimed, or gone from the platform)."""
        self._held.pop(record.id, None)
        queue = self._queues.get(record.challenge_id)
        if queue is not None:
            queue.discard(record.id)

    def _note_lost(self, job_id: str, status: int) -> None:
        """The claim of `job_id` answered `status` (404/409/410): if the platform lists it
        again, claim it only after a backoff that doubles with each loss."""
        previous = self._lost.get(job_id)
        losses = 1 if previous is None else previous.losses + 1
        delay = self.ctx.config.engine.lost_claim_backoff_s * min(
            2 ** (losses - 1), LOST_BACKOFF_MAX_FACTOR
        )
        self._lost[job_id] = Lost(losses, time.monotonic() + delay, time.time() + delay, status)

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
        blocker = self.jobs.claim_blocker()
        if blocker:
            return Outcome.refused(blocker)
        hold = self._challenge_hold(record.challenge_id)
        if hold:
            return Outcome.refused(hold)
        try:
            allocation = self.ctx.hosts.place_job(self.jobs.job_resources(), owner=f"job {job_id}")
        except CapacityError as exc:
            return Outcome.refused(f"no capacity: {exc}")
        self._claiming.add(job_id)
        self._unqueue(record)
        try:
            forgot_answer = self.ctx.store.begin_claim(job_id, record.challenge_id)
        except StoreError as exc:
            self._claiming.discard(job_id)
            self._queue_job(record, LISTED)
            self.ctx.hosts.release(allocation)
            self.jobs.suspend_claims(str(exc))
            return Outcome.refused(str(exc))
        if forgot_answer:
            self.jobs.outbox.count_dead_letters()
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
            if exc.status in (404, 409, 410):
                self._note_lost(job_id, exc.status)
            self.ctx.state.header.counters.lost += 1
            self.jobs.set_state(record, JobState.LOST, f"claim lost (HTTP {exc.status})")
            self.jobs.release(allocation)
            return Outcome.refused("another validator claimed it first")
        except NotSent as exc:
            self._claiming.discard(job_id)
            self._cancel_requested.pop(job_id, None)
            self._withdraw_claim(record)
            self._queue_job(record, LISTED)
            self.ctx.state.put_job(record, f"claim not sent, still pending: {exc}")
            self.jobs.release(allocation)
            return Outcome.refused(f"claim not sent (the job stays pending): {exc}")
        except AnswerLost as exc:
            self._claiming.discard(job_id)
            self._unsure[job_id] = Unsure(record, allocation, time.monotonic())
            record.claim_unsure = True
            self.jobs.set_state(
                record, JobState.CLAIMED, f"claim answer lost: {exc}", settled=False
            )
            self.ctx.log(
                "warn",
                "claim",
                "claim answer lost: the next poll tells whether the job is ours",
                job_id=job_id,
            )
            cancel = self._cancel_requested.pop(job_id, None)
            if cancel is not None:
                self._end_unsure(job_id, cancel)
            return Outcome.done("claim sent, answer lost: the next poll settles it")
        except DecodeError as exc:
            return self._claimed(record, allocation, f"claimed (answer unreadable: {exc})")
        except ClientError as exc:
            self._claiming.discard(job_id)
            self._cancel_requested.pop(job_id, None)
            self._hold(record, time.monotonic() + CLAIM_RETRY_S, "claim failed: retrying shortly")
            self._withdraw_claim(record)
            self.jobs.release(allocation)
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
        self._unqueue(record)
        self._lost.pop(job_id, None)
        record.claim_unsure = unsure
        record.host = sys.intern(allocation.host)
        self.ctx.state.header.counters.claimed_total += 1
        self.jobs.set_state(record, JobState.CLAIMED, note)
        cancel = self._cancel_requested.pop(job_id, None)
        if cancel is CancelReason.PLATFORM:
            self.jobs.release(allocation)
            self.jobs.mark_cancelled(record, "cancelled by the platform during the claim: no VM")
            return Outcome.refused("cancelled by the platform during the claim")
        if cancel is CancelReason.OPERATOR or self.jobs.stopping:
            self.jobs.release(allocation)
            reason = CancelReason.OPERATOR if cancel else CancelReason.SHUTDOWN
            error = self.jobs.end_early(record, reason)
            return Outcome.refused(f"claimed, then {error}: error result queued, no VM")
        self.jobs.start_run(record, allocation)
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
                self._queue_job(record, LISTED)
                note = "still pending at the platform: not ours, claimable"
                self.jobs.set_state(record, JobState.PENDING, note)
                if unsure.allocation is not None:
                    self.jobs.release(unsure.allocation)
                continue
            note = "no longer pending at the platform: running it (the platform decides)"
            if unsure.recovered or unsure.allocation is None:
                self.jobs.submit_error(record, RESTARTED)
                continue
            self._claimed(record, unsure.allocation, note, unsure=True)

    def _run_maybe_ours(self) -> None:
        """Run the jobs that left the pending list after a lost claim answer of ours (they may
        be ours), as capacity allows; the platform decides on their results."""
        for job_id in list(self._maybe_ours):
            record = self.ctx.state.jobs.get(job_id)
            if record is None or record.state is not JobState.PENDING or self.jobs.stopping:
                del self._maybe_ours[job_id]
                continue
            if self._challenge_hold(record.challenge_id):
                continue
            try:
                allocation = self.ctx.hosts.place_job(
                    self.jobs.job_resources(), owner=f"job {job_id}"
                )
            except CapacityError:
                return
            del self._maybe_ours[job_id]
            self.ctx.publish_quota()
            note = "left the pending list after a lost claim answer: may be ours, running it"
            self._claimed(record, allocation, note, unsure=True)

    def _end_unsure(self, job_id: str, reason: CancelReason) -> None:
        """End the job whose claim is unsure: cancelled by the platform, or by the operator."""
        unsure = self._unsure.pop(job_id)
        if unsure.allocation is not None:
            self.jobs.release(unsure.allocation)
        if reason is CancelReason.PLATFORM:
            self.jobs.mark_cancelled(
                unsure.record, "cancelled by the platform before it was settled"
            )
        else:
            self.jobs.end_early(unsure.record, reason)

    def recover_unsure(self, stored: StoredJob) -> None:
        """A claim a previous run sent without hearing the answer: the first poll settles it
        (still pending → claimable; gone → the error result "validator restarted")."""
        record = JobRecord(
            id=stored.id,
            challenge_id=stored.challenge_id,
            submission_id=stored.submission_id,
            miner_hotkey=stored.miner_hotkey,
            claim_unsure=True,
        )
        note = "claim interrupted by a restart: asking the platform"
        self.jobs.set_state(record, JobState.CLAIMED, note, settled=False)
        self._unsure[stored.id] = Unsure(record, None, time.monotonic(), recovered=True)

    def _withdraw_claim(self, record: JobRecord) -> None:
        """The claim of the pending `record` never reached the platform: its row says pending
        again (best effort: a restart finding it `claiming` asks the platform)."""
        with contextlib.suppress(StoreError):
            self.ctx.store.upsert_job(
                record.id, record.challenge_id, stored_state(JobState.PENDING)
            )
