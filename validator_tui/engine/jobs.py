"""JobManager: sees pending jobs (WebSocket and polling), claims them within capacity, runs
each in its own task through the executor, and hands results to the outbox.

Job states: pending → claimed → provisioning → running → submitting → completed | failed |
cancelled | lost. A job's quota allocation is taken before the claim request and released
exactly once when its VM is gone, on every path.

Claims run only while the platform and the VMM answer and the store is writable. A claim
whose request never left leaves the job pending. A claim whose answer was lost is *unsure*:
the job keeps its allocation (state claimed) until a poll asked after the claim says whether
it is ours (gone from `/jobs/pending`: run it) or not (still listed: claim it again). A job the
platform lists as pending is claimable whatever our history says, unless we are running it; one
whose claim answered 404/409/410 waits for a backoff first (`lost_claim_backoff_s`, doubled at
each further loss). A 5xx with an empty body (a lost race as the v1 server answers it) says
nothing about the job: no backoff.

Claim order: announced jobs (`new_job`), then jobs first seen in a listing, then re-tries of
lost claims; the order they joined within each. A pass costs what changed (claims started,
reasons that changed), not the length of the pending list.

A claim's quota is taken on the host the pool's placement picks (engine/hosts); the job's VM
runs there. When that host goes down (several hosts), a job not yet evaluating fails with an
error naming the host; one evaluating goes on while its evaluator answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import sys
import time
from dataclasses import dataclass, field

from validator_tui.clients.errors import AnswerLost, ClaimLost, ClientError, DecodeError, NotSent
from validator_tui.engine.challenge_stats import ChallengeStatsBook
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
    check_transition,
)
from validator_tui.engine.store import StoredJob, StoredState, StoreError, stored_state
from validator_tui.models.platform import ClaimResponse, Job, JobResults, Listing
from validator_tui.sanitize import clean_line

CLAIM_RETRY_S = 5.0
#: A lost claim's backoff doubles at each further loss up to this many times the first one.
LOST_BACKOFF_MAX_FACTOR = 32
#: Claim tiers, first claimed first: announced (`new_job`), first seen listed, lost before.
ANNOUNCED, LISTED, RETRY = 0, 1, 2
#: Re-tries of lost claims start at most this many claims a second (each is an HTTP request:
#: thousands of leftovers must not take the engine's core).
RETRIES_PER_S = 20.0
RETRIES_PACED = f"re-try of a lost claim: at most {RETRIES_PER_S:g} such claims a second"
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
class _Queue:
    """One challenge's pending jobs that only what holds every job of the challenge keeps
    waiting (auto-claim, a pause, its CVM, capacity), in claim order (tier, then arrival);
    `shown` is the waiting reason all of them show."""

    heap: list[tuple[int, int, str]] = field(default_factory=list)
    members: dict[str, tuple[int, int]] = field(default_factory=dict)
    shown: str = ""

    def add(self, job_id: str, tier: int, seq: int) -> None:
        self.members[job_id] = (tier, seq)
        heapq.heappush(self.heap, (tier, seq, job_id))

    def discard(self, job_id: str) -> None:
        """Forget `job_id` (its heap entry goes when it reaches the head, or at a rebuild)."""
        if (
            self.members.pop(job_id, None) is not None
            and len(self.heap) > 2 * len(self.members) + 64
        ):
            self.heap = [(tier, seq, job) for job, (tier, seq) in self.members.items()]
            heapq.heapify(self.heap)

    def head(self) -> str | None:
        """The job this queue would claim first, if any."""
        heap = self.heap
        while heap and self.members.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)
        return heap[0][2] if heap else None


@dataclass(slots=True)
class _Pace:
    """A token bucket: at most `rate` spends a second, bursts of at most `rate`."""

    rate: float
    tokens: float = 0.0
    at: float = 0.0

    def ready(self) -> bool:
        """Whether a spend is allowed now (refilling the bucket for the time passed)."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens >= 1.0

    def spend(self) -> None:
        self.tokens -= 1.0


@dataclass(slots=True)
class _Lost:
    """Claims of a job that answered 404/409/410: how many, and when it may be claimed again."""

    losses: int
    due: float
    due_wall: float
    status: int


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
        #: When claims were suspended for the store (time.monotonic), if they were mid-run.
        self._suspended_at: float | None = None
        self._runs: dict[str, _Run] = {}
        self._claiming: set[str] = set()
        self._claim_tasks: set[asyncio.Task[Outcome]] = set()
        self._unsure: dict[str, _Unsure] = {}
        self._maybe_ours: dict[str, None] = {}
        self._cancel_requested: dict[str, CancelReason] = {}
        #: Jobs the operator cancelled whose result is not answered yet: they end `cancelled`.
        self._operator_cancelled: set[str] = set()
        self.stopping = False
        #: Pending jobs waiting only for what holds their whole challenge, per challenge.
        self._queues: dict[str, _Queue] = {}
        #: Pending jobs held back by a timer of their own: job id → (due, reason).
        self._held: dict[str, tuple[float, str]] = {}
        self._held_heap: list[tuple[float, str]] = []
        #: The reason holding every job (auto-claim off, a pause) last shown on held jobs.
        self._held_shown = ""
        self._lost: dict[str, _Lost] = {}
        self._retry_pace = _Pace(RETRIES_PER_S)
        #: The wake-up that resumes paced re-tries (None when none is due).
        self._pace_wake: asyncio.TimerHandle | None = None
        self._arrivals = itertools.count()
        self._poll_lock = asyncio.Lock()
        self.challenge_stats = ChallengeStatsBook()

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

    def on_health_change(self) -> None:
        """The platform's or the VMM's health changed: pause or resume claims."""
        self.publish_claim_state()
        self.claim_what_fits()

    def _capacity_reason(self) -> str:
        """Why no job VM fits on any host now ("" when one does), in human units."""
        return self.ctx.hosts.job_capacity_reason(self.job_resources())

    def _challenge_hold(self, challenge_id: str) -> str:
        """Why no job of `challenge_id` may be claimed now ("" when its jobs may be): the one
        place that says whether a challenge takes claims."""
        return self.challenges.claims_wait(challenge_id)

    def _queued_reason(self, challenge_id: str, blocker: str, capacity: str) -> str:
        """Why a queued job of `challenge_id` is not being claimed now ("" if nothing holds it)."""
        if not self.auto_claim:
            return "auto-claim off"
        return blocker or self._challenge_hold(challenge_id) or capacity

    def _show_waiting(self, record: JobRecord, reason: str) -> None:
        if record.waiting_reason != reason:
            record.waiting_reason = reason
            self.ctx.state.put_job(record)

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
                self._suspend_claims(str(exc))
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

    # -- discovery --------------------------------------------------------------------------

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
        queue = self._queues.get(record.challenge_id)
        queued = queue is not None and job_id in queue.members
        if queue is not None and queued and queue.members[job_id][0] != ANNOUNCED:
            queue.add(job_id, ANNOUNCED, next(self._arrivals))  # a listing saw it first
        if queued and self.auto_claim and not self.claim_blocker() and self._spawn_claim(job_id):
            return
        self.claim_what_fits()

    def claim_what_fits(self) -> None:
        """With auto-claim, start claims for pending jobs in claim order (jobs that may already
        be ours first) while capacity allows; every pending job left says why it waits. Costs
        the claims started and the reasons that changed, not the length of the pending list."""
        if self._maybe_ours:
            self._run_maybe_ours()
        self._release_due()
        blocker = self.claim_blocker()
        if self.auto_claim and not blocker:
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
        overall = "auto-claim off" if not self.auto_claim else blocker
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
        queue = self._queues.setdefault(record.challenge_id, _Queue())
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
        self._lost[job_id] = _Lost(losses, time.monotonic() + delay, time.time() + delay, status)

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
        hold = self._challenge_hold(record.challenge_id)
        if hold:
            return Outcome.refused(hold)
        try:
            allocation = self.ctx.hosts.place_job(self.job_resources(), owner=f"job {job_id}")
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
            if exc.status in (404, 409, 410):
                self._note_lost(job_id, exc.status)
            self.ctx.state.header.counters.lost += 1
            self.set_state(record, JobState.LOST, f"claim lost (HTTP {exc.status})")
            self._release(allocation)
            return Outcome.refused("another validator claimed it first")
        except NotSent as exc:
            self._claiming.discard(job_id)
            self._cancel_requested.pop(job_id, None)
            self._withdraw_claim(record)
            self._queue_job(record, LISTED)
            self.ctx.state.put_job(record, f"claim not sent, still pending: {exc}")
            self._release(allocation)
            return Outcome.refused(f"claim not sent (the job stays pending): {exc}")
        except AnswerLost as exc:
            self._claiming.discard(job_id)
            self._unsure[job_id] = _Unsure(record, allocation, time.monotonic())
            record.claim_unsure = True
            self.set_state(record, JobState.CLAIMED, f"claim answer lost: {exc}", settled=False)
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
            self._hold(record, time.monotonic() + CLAIM_RETRY_S, "claim failed: retrying shortly")
            self._withdraw_claim(record)
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
        self._unqueue(record)
        self._lost.pop(job_id, None)
        record.claim_unsure = unsure
        record.host = sys.intern(allocation.host)
        self.ctx.state.header.counters.claimed_total += 1
        self.set_state(record, JobState.CLAIMED, note)
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
                self._queue_job(record, LISTED)
                note = "still pending at the platform: not ours, claimable"
                self.set_state(record, JobState.PENDING, note)
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
            if self._challenge_hold(record.challenge_id):
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
            claim_unsure=True,
        )
        note = "claim interrupted by a restart: asking the platform"
        self.set_state(record, JobState.CLAIMED, note, settled=False)
        self._unsure[stored.id] = _Unsure(record, None, time.monotonic(), recovered=True)

    def _suspend_claims(self, reason: str) -> None:
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
        self.ctx.state.header.counters.cancelled += 1
        self.set_state(job, JobState.CANCELLED, note)

    def _submit(self, job: JobRecord, results: JobResults) -> None:
        """Record the result on the job and queue it: serialised once, stored, then sent."""
        body = results.to_json_bytes()
        job.score, job.error = results.score, results.error
        job.metrics, job.logs = dict(results.metrics), list(results.logs)
        job.execution_time_ms = results.execution_time_ms
        note = "result queued" if results.error is None else results.error
        self.set_state(job, JobState.SUBMITTING, note, body=body)
        self.outbox.enqueue(job.id, body, claim_unsure=job.claim_unsure)

    def on_result_done(self, job_id: str, status: ResultStatus, detail: str) -> None:
        """Outbox callback: the platform answered for this job's result."""
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
                self._mark_cancelled(job, "cancelled by the platform: result not sent")
        elif job is not None and job.state is JobState.PENDING:
            self.set_state(job, JobState.CANCELLED, "cancelled by the platform while pending")
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
        if self._pace_wake is not None:
            self._pace_wake.cancel()
            self._pace_wake = None
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

    def _count_for_challenge(self, job: JobRecord) -> None:
        """Update the numbers of the finished `job`'s challenge (shown in its details)."""
        challenge = self.ctx.state.challenges.get(job.challenge_id)
        if challenge is not None and self.challenge_stats.record(job):
            challenge.stats = self.challenge_stats.summary(job.challenge_id)
            self.ctx.state.put_challenge(challenge)

    def _withdraw_claim(self, record: JobRecord) -> None:
        """The claim of the pending `record` never reached the platform: its row says pending
        again (best effort: a restart finding it `claiming` asks the platform)."""
        with contextlib.suppress(StoreError):
            self.ctx.store.upsert_job(record.id, record.challenge_id, StoredState.PENDING)

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
            ctx.store.upsert_job(job.id, job.challenge_id, StoredState.PROVISIONING, vm_id=vm_id)
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
