"""The engine's one in-memory state, with a versioned change feed and a bounded event log.

Writers (engine components) call the `put_*`/`drop_*`/`event` methods; every change bumps
`version`. Readers call `changes_since(version)` whenever they like: they get copies of what
changed since then, so a slow reader costs the engine nothing and memory stays bounded
(finished jobs beyond `max_job_history`, events beyond `max_events` are dropped).
"""

from __future__ import annotations

import copy
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, Unpack

from validator_tui.engine.records import (
    ChallengeRecord,
    ConnectionView,
    Counters,
    Event,
    EventRefs,
    HostRecord,
    JobRecord,
    JobState,
    QuotaUsage,
    Resources,
    TimelineEntry,
    VmRecord,
)

THROUGHPUT_BUCKET_S = 10.0
THROUGHPUT_BUCKETS = 60
MAX_TIMELINE = 50
#: Finished jobs keep their logs, metrics and full timeline only while among the latest this many;
#: older ones keep state, score, error and a short timeline (bounded memory over weeks).
DETAILED_FINISHED_JOBS = 200
SHORT_TIMELINE = 2
#: Removals a change feed remembers (per kind of record) for readers that ask what changed; a
#: reader further behind gets everything instead. Readers ask every 0.1-0.5 s; at 100 jobs a
#: second this is 40 s of removals, and each remembered id costs ~180 bytes for good.
MAX_TOMBSTONES = 4096
#: Timeline notes up to this long are interned: the common ones ("claimed", "result sent", …)
#: are then one string for every job in the history.
INTERNED_NOTE_CHARS = 48

T = TypeVar("T")


def _shared_note(note: str) -> str:
    """One copy of a common timeline note for every job. A note with a digit in it (a VM id,
    an HTTP status, a count) is returned as it is: one interned per job would grow the
    interpreter's table of interned strings, which never shrinks."""
    if len(note) <= INTERNED_NOTE_CHARS and not any(ch.isdigit() for ch in note):
        return sys.intern(note)
    return note


#: The column of the throughput history a finished job counts in.
_FINISH_COLUMN = {JobState.COMPLETED: 1, JobState.FAILED: 2}


@dataclass(slots=True)
class Header:
    """Everything the header line shows."""

    hotkey: str = ""
    platform: ConnectionView = field(default_factory=ConnectionView)
    vmm: ConnectionView = field(default_factory=ConnectionView)
    last_poll_at: float | None = None
    auto_claim: bool = True
    read_only: bool = False
    counters: Counters = field(default_factory=Counters)
    quota: QuotaUsage = field(default_factory=lambda: QuotaUsage(Resources(), Resources(), 0, 0, 0))
    #: Jobs completed per THROUGHPUT_BUCKET_S bucket, oldest first (the sparkline).
    throughput: tuple[int, ...] = ()
    #: Jobs failed per bucket, the same buckets.
    failures: tuple[int, ...] = ()
    #: Set while VMs of another validator with this hotkey are on the VMM (see engine/foreign).
    conflict: str = ""
    #: Why claims are paused (platform unreachable, VMM not answering, …); "" when they run.
    claims_paused: str = ""
    #: The latest slow request to the platform or the VMM; "" once requests are in time again.
    slow_request: str = ""
    #: Challenges without a CVM for lack of capacity; "" when every challenge has room.
    capacity_warning: str = ""
    #: The platform API answers its REST requests (presumed until one is answered).
    platform_up: bool = True
    #: Where Prometheus metrics are served ("" while they are off).
    metrics_url: str = ""

    def warnings(self) -> tuple[str, ...]:
        """The operator-facing warnings in force, most important first."""
        return tuple(
            text for text in (self.claims_paused, self.capacity_warning, self.slow_request) if text
        )


@dataclass(slots=True)
class StateDelta:
    """What changed between two versions. `full` means: replace everything you hold."""

    version: int
    full: bool
    jobs: list[JobRecord]
    removed_jobs: list[str]
    challenges: list[ChallengeRecord]
    removed_challenges: list[str]
    vms: list[VmRecord]
    removed_vms: list[str]
    events: list[Event]
    header: Header
    #: The dstack hosts of the pool (state, usage, VM count): those changed, or all when
    #: `full`. The pool is fixed for an engine's life: hosts are never removed.
    hosts: list[HostRecord] = field(default_factory=list)


class _Keyed(Generic[T]):
    """Records by key, remembering the version at which each last changed."""

    def __init__(self) -> None:
        self.items: dict[str, T] = {}
        #: Keys by the version of their last change, oldest change first (a plain dict keeps
        #: insertion order; a key touched again is moved to the end).
        self.touched: dict[str, int] = {}
        self.removed: deque[tuple[int, str]] = deque(maxlen=MAX_TOMBSTONES)

    def touch(self, key: str, version: int) -> None:
        self.touched.pop(key, None)
        self.touched[key] = version

    def drop(self, key: str, version: int) -> None:
        if self.items.pop(key, None) is not None:
            self.touched.pop(key, None)
            self.removed.append((version, key))

    def since(self, version: int) -> tuple[list[T], list[str], bool]:
        """Changed items, removed keys, and whether `version` is too old to answer exactly."""
        full = self.removed.maxlen is not None and len(self.removed) == self.removed.maxlen
        if full and self.removed[0][0] > version:
            return [], [], True
        changed: list[T] = []
        for key in reversed(self.touched):
            if self.touched[key] <= version:
                break
            changed.append(copy.copy(self.items[key]))
        removed = [key for v, key in self.removed if v > version]
        return changed, removed, False


class EngineState:
    """The single source of truth the engine writes and the UI (or a log writer) reads."""

    def __init__(
        self, hotkey: str, *, max_job_history: int = 10000, max_events: int = 2000
    ) -> None:
        self.version = 0
        self.header = Header(hotkey=hotkey)
        self._jobs: _Keyed[JobRecord] = _Keyed()
        self._challenges: _Keyed[ChallengeRecord] = _Keyed()
        self._vms: _Keyed[VmRecord] = _Keyed()
        self._hosts: _Keyed[HostRecord] = _Keyed()
        self._finished: deque[str] = deque()
        self._finished_ids: set[str] = set()
        self._detailed: deque[str] = deque()
        self._max_job_history = max_job_history
        self.events: deque[Event] = deque(maxlen=max_events)
        self._event_seq = 0
        #: [bucket, completed, failed] per THROUGHPUT_BUCKET_S bucket.
        self._throughput: deque[list[int]] = deque(maxlen=THROUGHPUT_BUCKETS)
        #: Called with every job record put and its note (the metrics count from them).
        self.job_watchers: list[Callable[[JobRecord, str | None], None]] = []

    def _bump(self) -> int:
        self.version += 1
        return self.version

    @property
    def jobs(self) -> dict[str, JobRecord]:
        return self._jobs.items

    @property
    def challenges(self) -> dict[str, ChallengeRecord]:
        return self._challenges.items

    @property
    def vms(self) -> dict[str, VmRecord]:
        return self._vms.items

    @property
    def hosts(self) -> dict[str, HostRecord]:
        return self._hosts.items

    def put_job(self, job: JobRecord, note: str | None = None) -> None:
        """Insert or mark changed; `note` adds a timeline entry. Finished jobs age out."""
        if note:
            note = _shared_note(note)
            job.timeline.append(TimelineEntry(time.time(), note))
            if len(job.timeline) > MAX_TIMELINE:
                del job.timeline[: len(job.timeline) - MAX_TIMELINE]
        for watch in self.job_watchers:
            watch(job, note)
        is_new = job.id not in self._jobs.items
        self._jobs.items[job.id] = job
        self._jobs.touch(job.id, self._bump())
        if job.state.finished and job.id not in self._finished_ids:
            self._finished.append(job.id)
            self._finished_ids.add(job.id)
            self._detailed.append(job.id)
            if len(self._detailed) > DETAILED_FINISHED_JOBS:
                self._strip_details(self._detailed.popleft())
            self._trim_history()
        elif is_new and len(self._jobs.items) > 4 * self._max_job_history:
            self.event("warn", "history", "more than 4x max_job_history jobs are unfinished")

    def _strip_details(self, job_id: str) -> None:
        job = self._jobs.items.get(job_id)
        if job is not None and job.state.finished:
            job.logs = []
            job.metrics = {}
            job.vm_log = ()
            job.timeline = job.timeline[-SHORT_TIMELINE:]

    def _trim_history(self) -> None:
        while len(self._finished) > self._max_job_history:
            old = self._finished.popleft()
            self._finished_ids.discard(old)
            job = self._jobs.items.get(old)
            if job is not None and job.state.finished:
                self._jobs.drop(old, self._bump())

    def job_copy(self, job_id: str) -> JobRecord | None:
        """A copy of one job's record (also one that no change feed reader holds any more)."""
        job = self._jobs.items.get(job_id)
        return None if job is None else copy.copy(job)

    def drop_job(self, job_id: str) -> None:
        self._finished_ids.discard(job_id)
        self._jobs.drop(job_id, self._bump())

    def put_challenge(self, challenge: ChallengeRecord) -> None:
        self._challenges.items[challenge.id] = challenge
        self._challenges.touch(challenge.id, self._bump())

    def drop_challenge(self, challenge_id: str) -> None:
        self._challenges.drop(challenge_id, self._bump())

    def put_vm(self, vm: VmRecord) -> None:
        self._vms.items[vm.id] = vm
        self._vms.touch(vm.id, self._bump())

    def set_vm_status(
        self, vm_id: str, status: str, boot_progress: str, boot_error: str | None = None
    ) -> VmRecord | None:
        """Record what the VMM says of one of our VMs (`boot_error` None: keep the known one);
        a change is published, an unchanged status costs nothing. Returns the VM's record, or
        None when we hold no record of it."""
        vm = self._vms.items.get(vm_id)
        if vm is None:
            return None
        error = vm.boot_error if boot_error is None else boot_error
        if (vm.status, vm.boot_progress, vm.boot_error) != (status, boot_progress, error):
            vm.status, vm.boot_progress, vm.boot_error = status, boot_progress, error
            self.put_vm(vm)
        return vm

    def drop_vm(self, vm_id: str) -> None:
        self._vms.drop(vm_id, self._bump())

    def put_host(self, host: HostRecord) -> None:
        """Publish a host's record (records are frozen: a new one replaces the old)."""
        self._hosts.items[host.id] = host
        self._hosts.touch(host.id, self._bump())

    def header_changed(self) -> None:
        self._bump()

    def count_finish(self, state: JobState, now: float | None = None) -> None:
        """Feed the per-bucket history of finished jobs (completed and failed ones count)."""
        column = _FINISH_COLUMN.get(state)
        if column is None:
            return
        now = time.time() if now is None else now
        bucket = int(now // THROUGHPUT_BUCKET_S)
        if not self._throughput or self._throughput[-1][0] != bucket:
            self._throughput.append([bucket, 0, 0])
        self._throughput[-1][column] += 1

    def throughput(self, now: float | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Completions and failures per 10 s bucket, oldest first, the last THROUGHPUT_BUCKETS
        buckets each."""
        now = time.time() if now is None else now
        current = int(now // THROUGHPUT_BUCKET_S)
        counts = {bucket: (done, failed) for bucket, done, failed in self._throughput}
        first = current - THROUGHPUT_BUCKETS + 1
        window = [counts.get(bucket, (0, 0)) for bucket in range(first, current + 1)]
        return tuple(done for done, _ in window), tuple(failed for _, failed in window)

    def event(self, level: str, kind: str, message: str, **refs: Unpack[EventRefs]) -> Event:
        """Append to the bounded event log (the message must already be sanitised)."""
        self._event_seq += 1
        ev = Event(
            self._event_seq,
            time.time(),
            level,
            kind,
            message,
            refs.get("job_id"),
            refs.get("challenge_id"),
            refs.get("vm_id"),
        )
        self.events.append(ev)
        self._bump()
        return ev

    def changes_since(self, version: int, event_seq: int = 0) -> StateDelta:
        """Copies of everything changed after `version`, plus events after `event_seq`."""
        jobs, removed_jobs, stale_j = self._jobs.since(version)
        chals, removed_chals, stale_c = self._challenges.since(version)
        vms, removed_vms, stale_v = self._vms.since(version)
        hosts, _, _ = self._hosts.since(version)
        full = version == 0 or stale_j or stale_c or stale_v
        if full:
            jobs = [copy.copy(j) for j in self._jobs.items.values()]
            chals = [copy.copy(c) for c in self._challenges.items.values()]
            vms = [copy.copy(v) for v in self._vms.items.values()]
            hosts = list(self._hosts.items.values())
            removed_jobs, removed_chals, removed_vms = [], [], []
        events = [e for e in self.events if e.seq > event_seq]
        header = copy.copy(self.header)
        header.counters = copy.copy(self.header.counters)
        header.throughput, header.failures = self.throughput()
        return StateDelta(
            self.version,
            full,
            jobs,
            removed_jobs,
            chals,
            removed_chals,
            vms,
            removed_vms,
            events,
            header,
            hosts,
        )
