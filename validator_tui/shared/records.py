"""Plain records of what the engine knows: jobs, challenges, VMs, events, quota, connections,
outbox rows. The engine writes them; the console (in-process or attached) reads them.

Records are plain dataclasses (serialisable with `dataclasses.asdict`) so that a consumer in
another process could receive them. Consumers treat what they receive as read-only copies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict

from validator_tui.models.resources import Resources as Resources


class JobState(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    SUBMITTING = "submitting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def finished(self) -> bool:
        return self in _FINISHED_JOB_STATES

    @property
    def active(self) -> bool:
        """Claimed by us and not finished: it holds (or is about to hold) a VM."""
        return self in _ACTIVE_JOB_STATES


_FINISHED_JOB_STATES = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.LOST}
)
_ACTIVE_JOB_STATES = frozenset(
    {JobState.CLAIMED, JobState.PROVISIONING, JobState.RUNNING, JobState.SUBMITTING}
)

_RESULT_ANSWERED = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.LOST}
)

#: The states a job may move to from each state (`JobRecord.enter` refuses any other move).
#: Pending: claimed (the claim won, or its answer was lost: claimed but unsure), lost (another
#: validator won the claim), cancelled (by the platform). Claimed: pending again (an unsure
#: claim settled as not ours), claimed again (an unsure claim settled as ours: run it), its VM
#: being created, its result queued without a VM (ended early), cancelled. Provisioning and
#: running: evaluating, the result queued, cancelled by the platform. Submitting: the
#: platform's answer to the result. Failed: a dead letter sent again and answered.
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.CLAIMED, JobState.LOST, JobState.CANCELLED}),
    JobState.CLAIMED: frozenset(
        {
            JobState.PENDING,
            JobState.CLAIMED,
            JobState.PROVISIONING,
            JobState.SUBMITTING,
            JobState.CANCELLED,
        }
    ),
    JobState.PROVISIONING: frozenset({JobState.RUNNING, JobState.SUBMITTING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.SUBMITTING, JobState.CANCELLED}),
    JobState.SUBMITTING: _RESULT_ANSWERED,
    JobState.FAILED: _RESULT_ANSWERED,
    JobState.COMPLETED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.LOST: frozenset(),
}


class IllegalTransition(Exception):
    """A job was asked to move between two states JOB_TRANSITIONS does not join: a bug."""


def check_transition(before: JobState, after: JobState) -> None:
    """Raise IllegalTransition unless a job in `before` may move to `after`."""
    if after not in JOB_TRANSITIONS[before]:
        raise IllegalTransition(f"a job cannot move from {before.value} to {after.value}")


class ChallengeState(StrEnum):
    PENDING = "pending"
    FETCHING = "fetching"
    PROVISIONING = "provisioning"
    BOOTING = "booting"
    ACTIVE = "active"
    UPDATING = "updating"
    FAILED = "failed"
    DESTROYING = "destroying"
    #: The operator stopped the CVM: no jobs run on it until it is started again.
    STOPPED = "stopped"


#: State changes a challenge record keeps.
MAX_CHALLENGE_HISTORY = 50


class ResultStatus(StrEnum):
    """Where a job's result stands in the outbox."""

    PENDING = "pending"  # not answered yet: being sent
    SENT = "sent"  # accepted (or a duplicate of one accepted)
    DEAD = "dead"  # refused by the platform: a dead letter, until retried or discarded
    DROPPED = "dropped"  # the platform cancelled the job: never sent, or refused as cancelled
    NOT_OURS = "not_ours"  # the job turned out not to be ours (a lost claim answer)
    DISCARDED = "discarded"  # a dead letter the operator gave up on

    @property
    def words(self) -> str:
        """How the operator reads this status, the same in the CLI, the console and the docs."""
        return _RESULT_WORDS[self]


_RESULT_WORDS = {
    ResultStatus.PENDING: "unsent",
    ResultStatus.SENT: "accepted",
    ResultStatus.DEAD: "dead letter",
    ResultStatus.DROPPED: "dropped (job cancelled)",
    ResultStatus.NOT_OURS: "not ours",
    ResultStatus.DISCARDED: "discarded",
}


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox entry as the operator sees it (no body)."""

    job_id: str
    status: ResultStatus
    attempts: int
    last_error: str
    created_at: float
    updated_at: float


class CancelReason(StrEnum):
    """Why a claimed job is being ended early."""

    PLATFORM = "platform"  # `job_cancelled`: no result is sent
    OPERATOR = "operator"  # the result says "cancelled by operator"
    VM_LOST = "vm_lost"  # the VMM no longer has the job's VM
    SHUTDOWN = "shutdown"  # the validator is stopping
    HOST_DOWN = "host_down"  # the job VM's host is down: its evaluation cannot finish


class VmKind(StrEnum):
    CHALLENGE = "challenge"
    JOB = "job"


@dataclass(slots=True)
class TimelineEntry:
    at: float
    text: str


@dataclass(slots=True)
class JobRecord:
    """One job as this validator sees it."""

    id: str
    challenge_id: str
    submission_id: str = ""
    miner_hotkey: str = ""
    state: JobState = JobState.PENDING
    created_at: float = field(default_factory=time.time)
    claimed_at: float | None = None
    finished_at: float | None = None
    vm_id: str | None = None
    host_port: int | None = None
    score: float | None = None
    metrics: dict[str, object] = field(default_factory=dict)
    error: str | None = None
    execution_time_ms: int | None = None
    logs: list[str] = field(default_factory=list)
    result_status: str = ""
    timeline: list[TimelineEntry] = field(default_factory=list)
    #: A claim of this job got no answer: it may be ours or not (the platform decides when a
    #: result is sent; a lasting 403 then means "not ours", not a dead letter).
    claim_unsure: bool = False
    #: Why a pending job is not being claimed ("auto-claim off", "waiting for capacity (needs
    #: 4 vCPU, 0 free)", …); "" when it is not waiting.
    waiting_reason: str = ""
    #: The last lines of the job VM's serial log (sanitised), kept after the VM is removed.
    vm_log: tuple[str, ...] = ()
    #: The host its VM was placed on ("" before the claim).
    host: str = ""

    def enter(self, state: JobState, *, settled: bool = True) -> None:
        """Move to `state` (IllegalTransition if JOB_TRANSITIONS has no such move), stamping
        it: a settled claim sets `claimed_at` (a claim whose answer was lost, `settled`
        False, does not), a return to pending clears it, an end sets `finished_at`."""
        check_transition(self.state, state)
        self.state = state
        if state is JobState.CLAIMED and settled:
            self.claimed_at = time.time()
        elif state is JobState.PENDING:
            self.claimed_at = None
        elif state.finished:
            self.finished_at = time.time()

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the claim (or creation), up to the finish."""
        start = self.claimed_at or self.created_at
        end = self.finished_at or (now if now is not None else time.time())
        return max(0.0, end - start)


@dataclass(slots=True, frozen=True)
class ChallengeStats:
    """A challenge's finished jobs over the last hour (see engine/challenge_stats)."""

    completed: int = 0
    failed: int = 0
    mean_score: float | None = None
    p50_ms: int | None = None
    p95_ms: int | None = None

    @property
    def success_rate(self) -> float | None:
        """Completed over completed and failed (None before any job finished)."""
        total = self.completed + self.failed
        return self.completed / total if total else None


@dataclass(slots=True)
class ChallengeRecord:
    """One active challenge and its long-lived CVM."""

    id: str
    name: str
    state: ChallengeState = ChallengeState.PENDING
    github_repo: str = ""
    github_commit: str = ""
    compose_hash: str = ""
    mechanism_id: int = 0
    emission_share: float = 0.0
    vm_id: str | None = None
    vm_status: str = ""
    boot_progress: str = ""
    host_port: int | None = None
    active_since: float | None = None
    reason: str = ""
    jobs_running: int = 0
    #: Every state change, oldest first (the latest MAX_CHALLENGE_HISTORY), with its reason.
    #: A tuple, replaced on change: a copy handed to a reader never changes under it.
    history: tuple[TimelineEntry, ...] = ()
    #: The latest failure's reason, kept after the CVM recovers ("" if it never failed).
    last_error: str = ""
    #: Jobs of this challenge this engine has run (counted from the engine's start).
    jobs_run: int = 0
    #: The host of its CVM ("" while it has none).
    host: str = ""
    #: Its finished jobs over the last hour, as of the latest one.
    stats: ChallengeStats = field(default_factory=ChallengeStats)

    def enter(self, state: ChallengeState, reason: str | None = None) -> None:
        """Move to `state` (and `reason`, when given), noting the change in `history`; a
        failure's reason is kept in `last_error`."""
        self.state = state
        if reason is not None:
            self.reason = reason
            if state is ChallengeState.FAILED and reason:
                self.last_error = reason
        text = f"{state.value}: {reason}" if reason else state.value
        if not self.history or self.history[-1].text != text:
            entry = TimelineEntry(time.time(), text)
            self.history = (*self.history, entry)[-MAX_CHALLENGE_HISTORY:]


@dataclass(slots=True)
class VmRecord:
    """A VM this validator owns (by name prefix)."""

    id: str
    name: str
    kind: VmKind
    owner_id: str
    status: str = ""
    boot_progress: str = ""
    boot_error: str = ""
    host_port: int | None = None
    created_at: float = field(default_factory=time.time)
    #: The host whose VMM runs it.
    host: str = ""


class EventRefs(TypedDict, total=False):
    """What an event is about (each optional)."""

    job_id: str | None
    challenge_id: str | None
    vm_id: str | None


@dataclass(slots=True, frozen=True)
class Event:
    """One line of the engine's event log: what happened, when, why."""

    seq: int
    at: float
    level: str
    kind: str
    message: str
    job_id: str | None = None
    challenge_id: str | None = None
    vm_id: str | None = None


@dataclass(slots=True, frozen=True)
class QuotaUsage:
    """Used and total of every resource the quota manager accounts for."""

    used: Resources
    total: Resources
    ports_used: int
    ports_total: int
    allocations: int


class HostState(StrEnum):
    """A dstack host as the pool sees it."""

    UP = "up"
    #: Its VMM does not answer (yet within the grace period): no new VMs there meanwhile.
    UNREACHABLE = "unreachable"
    #: Not answering for longer than the grace period: its challenge CVMs moved away.
    DOWN = "down"
    #: The operator drains it: no new VMs; its CVMs move, its running jobs finish.
    DRAINING = "draining"
    #: Drained: none of our VMs is left on it.
    DRAINED = "drained"


@dataclass(slots=True, frozen=True)
class HostRecord:
    """One dstack host of the pool as the console shows it (`id` is the host's name)."""

    id: str
    url: str
    state: HostState = HostState.UP
    #: When the state began (wall time): `down since`, `unreachable since`.
    since: float | None = None
    draining: bool = False
    last_error: str = ""
    usage: QuotaUsage = field(default_factory=lambda: QuotaUsage(Resources(), Resources(), 0, 0, 0))
    #: Our VMs on it (challenge CVMs and job VMs, those being created included).
    vms: int = 0
    #: GPU slots its VMM lists, and how many of them our VMs hold.
    gpu_slots: tuple[str, ...] = ()
    gpus_held: int = 0


@dataclass(slots=True, frozen=True)
class ConnectionView:
    """State of one upstream connection as shown to the operator."""

    status: str = "connecting"
    retry_in: float | None = None
    last_error: str | None = None
    since: float = field(default_factory=time.time)


@dataclass(slots=True)
class Counters:
    running: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    cancelled: int = 0
    claimed_total: int = 0
    outbox_pending: int = 0
    dead_letters: int = 0

    def count_end(self, state: JobState) -> None:
        """Count one job whose result was answered, ending it in `state`."""
        if state is JobState.COMPLETED:
            self.completed += 1
        elif state is JobState.CANCELLED:
            self.cancelled += 1
        elif state is JobState.LOST:
            self.lost += 1
        else:
            self.failed += 1


@dataclass(slots=True, frozen=True)
class Outcome:
    """The answer to an operator command: done, or refused with the reason."""

    ok: bool
    message: str
    rows: tuple[dict[str, object], ...] = ()

    @classmethod
    def done(cls, message: str, rows: tuple[dict[str, object], ...] = ()) -> Outcome:
        return cls(True, message, rows)

    @classmethod
    def refused(cls, message: str) -> Outcome:
        return cls(False, message)
